"""Atomic publication of a device's export: the app only ever loads one complete version.

Layout (format 1) inside a device directory:

    DIR/exports/CURRENT                 one line: the live version (replaced atomically)
    DIR/exports/<version>/model.onnx    ONNX model, metadata includes the version (convert.py)
    DIR/exports/<version>/model.int8.onnx    the same with int8 weights, when "onnx-int8" is among the formats
    DIR/exports/<version>/tokenizer.model
    DIR/exports/<version>/model.mlpackage/   CoreML package, when "coreml" is among the formats
    DIR/exports/<version>/export.json   format, version, state, formats, sha256 of every file; sealed with its own
    DIR/cache/onnx-template.json        the ONNX model without weights, filled at each publish (template.py)

A version's model never changes once renamed into place (its name is a hash of the model, labels, tokenizer
and state); its directory is replaced only by a re-export with other formats (below). A reader that
resolves CURRENT and then finds the directory gone, or a file not matching export.json, resolves CURRENT
again. Only the
live version is kept: two versions side by side would leak their difference (DESIGN threat model).
Writers hold the device's writer lock (`Device.locked()`); readers take no lock.

Re-exporting the live version with other formats replaces its directory in place with one atomic exchange
(`exchange_dirs`: Linux renameat2(RENAME_EXCHANGE), macOS renamex_np(RENAME_SWAP)), so the path CURRENT
names always holds a complete export; the old copy ends up in the temp directory and is deleted. Where
the exchange is unsupported (another OS, a file system without it) the fallback moves the old copy aside and
renames the new one in: a crash between the two renames leaves CURRENT naming a missing directory until the
next write command republishes.

Before it builds anything, `publish` checks that it will be able to write what it writes
(`check_writable`: CURRENT replaceable, the exports directory taking new files, every old entry removable),
and if a later step still fails it rolls back: a new version CURRENT does not name is removed again, so
a failed publish never leaves two versions side by side.

This module imports no torch at load time, so the app runtime can use the readers below.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..core import crashpoints
from ..device.device import Device
from ..core.errors import BadInput, CorruptFile, ForgetError
from ..core.fsio import (TMP_PREFIX, atomic_write_bytes, exchange_dirs, fsync_dir, sealed_json_bytes, sha256_file,
                         unseal_json)
from ..core.fsio import check_writable as check_writable_paths

if TYPE_CHECKING:
    import torch.nn as nn

    from .convert import ExportSpec

FORMATS = ("onnx", "onnx-int8", "coreml")  # the export formats, in the order an export lists them
DEFAULT_FORMATS = ("onnx",)  # what a device exports until it is asked for others
MANIFEST_FORMAT = 2  # version of export.json's layout (2: sealed with its own SHA-256, fsio.sealed_json_bytes)
EXPORTS = "exports"  # folder under the device directory
CURRENT = "CURRENT"  # file naming the live version
MANIFEST = "export.json"
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
MODEL_FILES = {"onnx": ONNX_FILE, "onnx-int8": INT8_FILE}  # the ONNX formats, each a model the runtime can load
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
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):  # a directory, symlink or FIFO (reading a FIFO would block)
            raise CorruptFile(f"{path}: {_kind(st.st_mode)}, not a file; move it away and run "
                              "`assistant-forget export` to publish again")
        version = path.read_bytes().decode("utf-8").strip()
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
    """`formats` as a tuple in FORMATS order; BadInput for an unknown, repeated or missing-onnx list."""
    if isinstance(formats, str):
        formats = (formats,)
    fmts = tuple(formats)
    bad = [f for f in fmts if f not in FORMATS]
    if bad or len(set(fmts)) != len(fmts):
        raise BadInput(f"formats must be distinct names from {FORMATS}, got {list(fmts)}")
    if "onnx" not in fmts:
        raise BadInput("formats must include 'onnx': the app runtime and verification load model.onnx")
    return tuple(f for f in FORMATS if f in fmts)


def _build(tmp: Path, model: "nn.Module", tokenizer: bytes, spec: "ExportSpec", formats: tuple[str, ...],
           cache: Path) -> str:
    """Write a complete version into the empty directory `tmp`; return its version.

    The ONNX file is the cached template (`cache`, template.py) filled with the model's weights: with the
    default formats nothing here imports onnx, onnxruntime or protobuf. The int8 model (opt-in) is quantized
    from that file by onnxruntime.
    """
    from .convert import export_onnx, export_onnx_int8, model_version
    from .coreml import export_coreml
    from .template import cached_template

    version = model_version(model, spec)
    template = cached_template(cache, model)
    _write_durably(tmp / ONNX_FILE, export_onnx(model, spec, template=template, version=version))
    if "onnx-int8" in formats:
        export_onnx_int8(tmp / ONNX_FILE, tmp / INT8_FILE)
    _write_durably(tmp / TOKENIZER_FILE, tokenizer)
    if "coreml" in formats:
        export_coreml(model, spec, tmp / COREML_DIR)
    files = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in _files(tmp)}
    manifest = {"format": MANIFEST_FORMAT, "version": version, "state": spec.state, "formats": list(formats),
                "tokenizer_sha256": spec.tokenizer_sha256, "files": files}
    _write_durably(tmp / MANIFEST, sealed_json_bytes(manifest))
    _fsync_tree(tmp)
    return version


def publish(device_root: Path, model: "nn.Module", tokenizer_path: Path, labels: Sequence[str],
            state: str, formats: Sequence[str] = ("onnx",), oos_threshold: float = 0.0) -> str:
    """Export `model` into DIR/exports/<version>, make it CURRENT, delete every other version; return it.

    Steps: validate (nothing written on bad input), write into a temp directory beside, fsync, rename into
    place, swap CURRENT atomically, remove old versions and temp leftovers. Publishing the version that is
    already live with the same formats rewrites nothing. The caller holds the device's writer lock.
    """
    from .convert import make_spec, model_version

    root = Device.open(device_root).root
    fmts = _check_formats(formats)
    try:
        tokenizer = Path(tokenizer_path).read_bytes()
    except OSError as e:
        raise BadInput(f"{tokenizer_path}: cannot read the tokenizer ({e.strerror}); pass the tokenizer.model "
                       "the model was trained with") from None
    spec = make_spec(model, tokenizer, labels, state, oos_threshold)
    version = model_version(model, spec)
    check_writable(root)
    ex = exports_dir(root)
    ex.mkdir(exist_ok=True)
    final = ex / version
    placed = False  # this call put `final` in place: undone on failure unless CURRENT names it
    try:
        if not _is_complete(final, fmts):
            tmp = ex / f"{TMP_PREFIX}{version}.{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            try:
                built = _build(tmp, model, tokenizer, spec, fmts, root / CACHE)
                crashpoints.hit("publish.version_built")
                if built != version:
                    raise RuntimeError(f"the model changed while it was being exported ({version} -> {built})")
                if final.exists():  # an incomplete or differently-formatted copy (the live one, often)
                    _replace_dir(tmp, final, ex / f"{TMP_PREFIX}old-{version}.{os.getpid()}")
                else:
                    os.rename(tmp, final)
                placed = True
                fsync_dir(ex)
                crashpoints.hit("publish.version_renamed")
            finally:
                shutil.rmtree(tmp, ignore_errors=True)  # the build on failure; the old copy after an exchange
        try:
            live = current_version(root)
        except CorruptFile:
            live = None  # a damaged CURRENT is replaced
        if live != version:
            atomic_write_bytes(ex / CURRENT, (version + "\n").encode("utf-8"))
            crashpoints.hit("publish.current_swapped")
    except BaseException:
        if placed:
            _roll_back(root, version)
        raise
    _remove_all_but(ex, version)
    return version


def _replace_dir(new: Path, target: Path, aside: Path) -> None:
    """Make the complete directory `new` appear at `target`, which exists; the old copy ends up at `new`.

    With an atomic exchange the path `target` always names a complete directory. Without one (see
    `exchange_dirs`) the old copy is moved to `aside` and then deleted: a crash between the two renames
    leaves `target` missing until the next publish.
    """
    if exchange_dirs(new, target):
        crashpoints.hit("publish.exchanged")
        return
    os.rename(target, aside)  # fallback: two renames, not atomic together
    os.rename(new, target)
    shutil.rmtree(aside, ignore_errors=True)


def _roll_back(root: Path, version: str) -> None:
    """After a failed publish that put `version` in place: delete it again unless CURRENT names it, so only one
    version is ever on disk (best effort: the original error is what the caller reports)."""
    ex = exports_dir(root)
    try:
        live = current_version(root)
    except (CorruptFile, OSError):
        live = None
    try:
        if live == version:  # CURRENT was replaced, a later step failed: the old versions go instead
            _remove_all_but(ex, version)
            return
        shutil.rmtree(ex / version, ignore_errors=True)
        (ex / f"{TMP_PREFIX}{CURRENT}.{os.getpid()}").unlink(missing_ok=True)
        fsync_dir(ex)
    except OSError:
        pass


# -- the pre-flight check ------------------------------------------------------------------------------

_FS_IOC_GETFLAGS = 0x80086601  # linux/fs.h, _IOR('f', 1, long)
_FS_IMMUTABLE_FL, _FS_APPEND_FL = 0x10, 0x20  # chattr +i, chattr +a: nothing inside can be removed


def _kind(mode: int) -> str:
    """What a file of this mode is, for messages ("a directory", "a symbolic link", ...)."""
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISREG, "a file"),
             (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device file"),
             (stat.S_ISBLK, "a device file")]
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _inode_flags(path: Path) -> int:
    """Linux inode flags (immutable, append-only) of a directory; 0 where they cannot be read."""
    if not sys.platform.startswith("linux"):
        return 0
    import fcntl
    import struct

    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return 0
    try:
        buf = bytearray(8)
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, buf)
        return struct.unpack_from("i", buf)[0]
    except OSError:
        return 0
    finally:
        os.close(fd)


def check_writable(device_root: Path) -> None:
    """Refuse a publish, before anything is built or changed, that could not finish; None when it can.

    Checks DIR/exports (a real directory, not a symlink, that takes a new file: a probe is created and
    removed; DIR itself when exports does not exist yet), DIR/exports/CURRENT (a regular file that can be
    replaced: opened for writing without truncating it, which fails even for root on an immutable or
    append-only file; a mode without write permission is fine, the rename replaces it), and every other
    entry of DIR/exports, the live version among them, that a publish may delete (directories writable and
    not immutable or append-only, files not immutable). Nothing inside a version directory is created.

    Raises CorruptFile (exit 4) for something of the wrong type (CURRENT a directory, exports a file or a
    symlink) and ForgetError (exit 2) for something that cannot be written; the one-line message names the
    file and says that nothing was changed. `forget` calls it before it deletes anything.
    """
    root = Path(device_root)
    ex = exports_dir(root)
    unchanged = "nothing was changed"
    st = _lstat(ex)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        kind = "" if stat.S_ISREG(st.st_mode) else f"{_kind(st.st_mode)}, "
        raise CorruptFile(f"{ex}: {kind}not a directory; move it away and run the command again ({unchanged})")
    _probe(ex if st is not None else root, unchanged)
    if st is None:
        return
    cur = ex / CURRENT
    st = _lstat(cur)
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise CorruptFile(f"{cur}: {_kind(st.st_mode)}, not a file; move it away and run the command again "
                              f"({unchanged})")
        _openable(cur, "cannot be replaced", unchanged)
    for entry in sorted(ex.iterdir()):
        if entry.name != CURRENT:
            _removable(entry, unchanged)


def _probe(folder: Path, unchanged: str) -> None:
    check_writable_paths(dirs=[folder])


def _openable(path: Path, what: str, unchanged: str) -> None:
    """Open a regular file for writing without truncating it: EPERM for an immutable or append-only file."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK))
    except PermissionError as e:
        if e.errno == errno.EACCES:
            return  # only its mode forbids writing: a rename still replaces or removes it
        raise ForgetError(f"{path}: {what} ({e.strerror}; immutable or append-only?); `chattr -i` it and run the "
                          f"command again ({unchanged})") from None
    except OSError as e:
        raise ForgetError(f"{path}: {what} ({e.strerror}); run the command again once it can be written "
                          f"({unchanged})") from None


def _removable(path: Path, unchanged: str) -> None:
    """`path` and everything under it can be deleted (an old version, a temp leftover)."""
    st = _lstat(path)
    if st is None or stat.S_ISLNK(st.st_mode):
        return  # gone, or a link: unlinking needs only its folder
    if stat.S_ISREG(st.st_mode):
        _openable(path, "cannot be removed", unchanged)
        return
    if not stat.S_ISDIR(st.st_mode):
        return
    if not os.access(path, os.W_OK | os.X_OK) or _inode_flags(path) & (_FS_IMMUTABLE_FL | _FS_APPEND_FL):
        raise ForgetError(f"{path}: its files cannot be removed (not writable, immutable or append-only); make it "
                          f"writable (`chattr -i`?) and run the command again ({unchanged})")
    for child in sorted(path.iterdir()):
        _removable(child, unchanged)


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
