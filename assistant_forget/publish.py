"""Atomic publication of a device's export: the app only ever loads one complete version.

Layout (format 1) inside a device directory:

    DIR/exports/CURRENT                 one line: the live version (replaced atomically)
    DIR/exports/<version>/model.onnx    ONNX model, metadata includes the version (export.py)
    DIR/exports/<version>/tokenizer.model
    DIR/exports/<version>/model.mlpackage/   CoreML package, when "coreml" is among the formats
    DIR/exports/<version>/export.json   format, version, state, formats, sha256 of every file; sealed with its own
    DIR/cache/onnx-template.onnx        the ONNX graph without weights, filled at each publish (onnx_template.py)

A version directory is immutable once renamed into place (its name is a hash of its content), so a
reader that resolves CURRENT and then finds the directory gone simply resolves CURRENT again. Only the
live version is kept: two versions side by side would leak their difference (DESIGN threat model).
Writers hold the device's writer lock (`Device.locked()`); readers take no lock.

This module imports no torch at load time, so the app runtime can use the readers below.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from . import crashpoints
from .device import Device
from .errors import BadInput, CorruptFile
from .fsio import TMP_PREFIX, atomic_write_bytes, fsync_dir, sealed_json_bytes, sha256_file, unseal_json

if TYPE_CHECKING:
    from .export import ExportSpec
    from .model import AssistantModel

MANIFEST_FORMAT = 2  # version of export.json's layout (2: sealed with its own SHA-256, fsio.sealed_json_bytes)
EXPORTS = "exports"  # folder under the device directory
CURRENT = "CURRENT"  # file naming the live version
MANIFEST = "export.json"
ONNX_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.model"
COREML_DIR = "model.mlpackage"
CACHE = "cache"  # folder under the device directory for derived, non-personal files (the ONNX template)
_VERSION_RE = re.compile(r"^[0-9a-f]{16}$")


def exports_dir(device_root: Path) -> Path:
    """DIR/exports of a device directory."""
    return Path(device_root) / EXPORTS


def current_version(device_root: Path) -> str | None:
    """The live version named by DIR/exports/CURRENT, or None when nothing has been published yet."""
    path = exports_dir(device_root) / CURRENT
    try:
        version = path.read_text().strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise CorruptFile(f"{path}: unreadable ({e}); publish the export again") from None
    if not _VERSION_RE.match(version):
        raise CorruptFile(f"{path}: {version[:40]!r} is not an export version; publish the export again")
    return version


def current_export(device_root: Path) -> Path | None:
    """Directory of the live export (DIR/exports/<version>), or None when nothing has been published.

    The directory may vanish right after this returns (a newer publish); readers then call it again.
    """
    version = current_version(device_root)
    return None if version is None else exports_dir(device_root) / version


def read_manifest(version_dir: Path) -> dict:
    """export.json of a version directory (FileNotFoundError passes through: the version was replaced)."""
    path = Path(version_dir) / MANIFEST
    try:
        manifest = unseal_json(path.read_bytes())
        ok = manifest["format"] == MANIFEST_FORMAT and manifest["version"] == Path(version_dir).name
        files = manifest["files"]
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CorruptFile(f"{path}: unreadable export manifest ({e}); publish the export again") from None
    if not ok or not isinstance(files, dict):
        raise CorruptFile(f"{path}: format or version does not match its directory; publish the export again")
    return manifest


def verify_export(version_dir: Path) -> dict:
    """Check every file of a version against export.json; return the manifest or raise CorruptFile."""
    version_dir = Path(version_dir)
    manifest = read_manifest(version_dir)
    for rel, digest in manifest["files"].items():
        path = version_dir / rel
        if not path.is_file() or sha256_file(path) != digest:
            raise CorruptFile(f"{path}: missing or checksum mismatch; publish the export again")
    listed = set(manifest["files"]) | {MANIFEST}
    extra = [p for p in _files(version_dir) if p.relative_to(version_dir).as_posix() not in listed]
    if extra:
        raise CorruptFile(f"{extra[0]}: not listed in {MANIFEST}; publish the export again")
    return manifest


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _fsync_tree(root: Path) -> None:
    """fsync every file, then every directory bottom-up, so the tree is durable before its rename."""
    for p in _files(root):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [root]:
        fsync_dir(d)


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    from .export import FORMATS

    if isinstance(formats, str):
        formats = (formats,)
    fmts = tuple(formats)
    bad = [f for f in fmts if f not in FORMATS]
    if bad or len(set(fmts)) != len(fmts):
        raise BadInput(f"formats must be distinct names from {FORMATS}, got {list(fmts)}")
    if "onnx" not in fmts:
        raise BadInput("formats must include 'onnx': the app runtime and verification load model.onnx")
    return tuple(f for f in FORMATS if f in fmts)


def _build(tmp: Path, model: "AssistantModel", tokenizer: bytes, spec: "ExportSpec", formats: tuple[str, ...],
           cache: Path) -> str:
    """Write a complete version into the empty directory `tmp`; return its version.

    The ONNX file is the cached template (`cache`, onnx_template.py) filled with the model's weights.
    """
    from .export import export_coreml, export_onnx, model_version
    from .onnx_template import cached_template

    version = model_version(model, spec)
    template = cached_template(cache, model)
    _write_durably(tmp / ONNX_FILE, export_onnx(model, spec, template=template, version=version))
    _write_durably(tmp / TOKENIZER_FILE, tokenizer)
    if "coreml" in formats:
        export_coreml(model, spec, tmp / COREML_DIR)
    files = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in _files(tmp)}
    manifest = {"format": MANIFEST_FORMAT, "version": version, "state": spec.state, "formats": list(formats),
                "tokenizer_sha256": spec.tokenizer_sha256, "files": files}
    _write_durably(tmp / MANIFEST, sealed_json_bytes(manifest))
    _fsync_tree(tmp)
    return version


def publish(device_root: Path, model: "AssistantModel", tokenizer_path: Path, labels: Sequence[str],
            state: str, formats: Sequence[str] = ("onnx",), oos_threshold: float = 0.0) -> str:
    """Export `model` into DIR/exports/<version>, make it CURRENT, delete every other version; return it.

    Steps: validate (nothing written on bad input), write into a temp directory beside, fsync, rename into
    place, swap CURRENT atomically, remove old versions and temp leftovers. Publishing the version that is
    already live with the same formats rewrites nothing. The caller holds the device's writer lock.
    """
    from .export import make_spec, model_version

    root = Device.open(device_root).root
    fmts = _check_formats(formats)
    try:
        tokenizer = Path(tokenizer_path).read_bytes()
    except OSError as e:
        raise BadInput(f"{tokenizer_path}: cannot read the tokenizer ({e.strerror}); pass the tokenizer.model "
                       "the model was trained with") from None
    spec = make_spec(model, tokenizer, labels, state, oos_threshold)
    version = model_version(model, spec)
    ex = exports_dir(root)
    if ex.exists() and not ex.is_dir():
        raise CorruptFile(f"{ex}: not a directory; move it away and run `assistant-forget export` to publish again")
    ex.mkdir(exist_ok=True)
    final = ex / version
    if not _is_complete(final, fmts):
        tmp = ex / f"{TMP_PREFIX}{version}.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            built = _build(tmp, model, tokenizer, spec, fmts, root / CACHE)
            crashpoints.hit("publish.version_built")
            if built != version:
                raise RuntimeError(f"the model changed while it was being exported ({version} -> {built})")
            if final.exists():  # an incomplete or differently-formatted copy: move it aside first
                os.rename(final, ex / f"{TMP_PREFIX}old-{version}.{os.getpid()}")
                crashpoints.hit("publish.old_moved_aside")
            os.rename(tmp, final)
            fsync_dir(ex)
            crashpoints.hit("publish.version_renamed")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    try:
        live = current_version(root)
    except CorruptFile:
        live = None  # a damaged CURRENT is replaced
    if live != version:
        atomic_write_bytes(ex / CURRENT, (version + "\n").encode())
        crashpoints.hit("publish.current_swapped")
    _remove_all_but(ex, version)
    return version


def _is_complete(version_dir: Path, formats: tuple[str, ...]) -> bool:
    """True when `version_dir` holds a verified export with exactly `formats`."""
    if not version_dir.is_dir():
        return False
    try:
        return tuple(verify_export(version_dir)["formats"]) == formats
    except (CorruptFile, FileNotFoundError):
        return False


def _remove_all_but(ex: Path, version: str) -> list[Path]:
    """Delete every entry of DIR/exports except CURRENT and `version` (old versions, temp dirs and files)."""
    removed = []
    for entry in sorted(ex.iterdir()):
        if entry.name in (CURRENT, version):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        removed.append(entry)
    if removed:
        fsync_dir(ex)
    return removed
