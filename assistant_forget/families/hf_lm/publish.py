"""The `hf-causal-lm` family's export: only the personal LoRA adapter, published atomically for the app.

Layout, the assistant's (export/publish.py: CURRENT, one live version, a sealed export.json listing the
SHA-256 of every file), with other files in the version directory:

    DIR/exports/<version>/adapter.onnx_adapter        the LoRA A/B matrices in ONNX Runtime's adapter format
    DIR/exports/<version>/adapter_model.safetensors   the same matrices, PEFT's names and format
    DIR/exports/<version>/adapter_config.json         PEFT's adapter config (rank, alpha, targets)
    DIR/exports/<version>/export.json                 format, version, state, formats, family, base, files, lm
    DIR/cache/lm-<model id>/model.onnx                the base graph, adapter matrices as inputs (written once)
    DIR/cache/lm-<model id>/tokenizer.json            the base's tokenizer (`tokenizers` format)

The base LM is public and never changes, so a forget rewrites only the adapter (tens of KB on the shipped LM):
the app keeps the base graph and activates the adapter on it (export/lm_runtime.py, torch-free), or loads the
PEFT files onto the base with `peft.PeftModel.from_pretrained(base, version_dir)`. export.json's `lm` entry
names the graph and the tokenizer (paths relative to DIR, with their SHA-256) and the special tokens. The
version is a hash of the base's model id, the state and every file's bytes: the same model gives the same
bytes, so the exact tier's export equals a never-saw device's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from ...core.errors import BadInput, CorruptFile
from ...core.fsio import TMP_PREFIX, atomic_write_bytes, exchange_dirs, fsync_dir, sealed_json_bytes, sha256_file
from ...device.device import Device
from ...export.publish import (CURRENT, MANIFEST, MANIFEST_FORMAT, check_writable, current_version, exports_dir,
                               verify_export)

ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ONNX_ADAPTER = "adapter.onnx_adapter"
FORMAT = "lora-adapter"  # the export this family writes: the adapter, as ONNX Runtime's and PEFT's files
ACCEPTED = ("onnx", FORMAT)  # "onnx": the engine's default request; both give the same files


def check_formats(formats) -> tuple[str, ...]:
    """The formats this family writes for a request; BadInput for one it cannot write."""
    fmts = (formats,) if isinstance(formats, str) else tuple(formats or ())
    bad = [f for f in fmts if f not in ACCEPTED]
    if bad:
        raise BadInput(f"the hf-causal-lm family exports its LoRA adapter for ONNX Runtime and PEFT (--format "
                       f"onnx), not {bad}: the base graph is written once and an adapter never quantised")
    return (FORMAT,)


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _complete(version_dir: Path) -> bool:
    try:
        return version_dir.is_dir() and verify_export(version_dir)["formats"] == [FORMAT]
    except (CorruptFile, FileNotFoundError):
        return False


def publish_adapter(device_root: Path, files: dict[str, bytes], state: str, base_id: str, lm: dict) -> str:
    """Write the adapter as DIR/exports/<version>, make it CURRENT, delete every other version; return it.

    Validated first (`check_writable`: nothing written when the export cannot be), built in a temp directory
    beside, fsynced, renamed into place, CURRENT swapped atomically. Publishing the live version again rewrites
    nothing. The caller holds the device's writer lock."""
    root = Device.open(device_root).root
    h = hashlib.sha256(f"{base_id}\x1f{state}\x1f".encode())
    for name in sorted(files):
        h.update(name.encode() + b"\x1f" + hashlib.sha256(files[name]).digest())
    version = h.hexdigest()[:16]
    check_writable(root)
    ex = exports_dir(root)
    ex.mkdir(exist_ok=True)
    final = ex / version
    placed = False
    try:
        if not _complete(final):
            tmp = ex / f"{TMP_PREFIX}{version}.{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            try:
                for name in sorted(files):
                    _write(tmp / name, files[name])
                sums = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
                _write(tmp / MANIFEST, sealed_json_bytes({
                    "format": MANIFEST_FORMAT, "version": version, "state": state, "formats": [FORMAT],
                    "family": "hf-causal-lm", "base": base_id, "files": sums, "lm": lm}))
                fsync_dir(tmp)
                if final.exists():  # an incomplete copy: swapped out in one step where the system can
                    if not exchange_dirs(tmp, final):
                        shutil.rmtree(final)
                        os.rename(tmp, final)
                else:
                    os.rename(tmp, final)
                placed = True
                fsync_dir(ex)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        try:
            live = current_version(root)
        except CorruptFile:
            live = None  # a damaged CURRENT is replaced
        if live != version:
            atomic_write_bytes(ex / CURRENT, (version + "\n").encode("utf-8"))
    except BaseException:
        if placed and _live_or_none(root) != version:
            shutil.rmtree(final, ignore_errors=True)  # never two versions side by side
        raise
    for entry in sorted(ex.iterdir()):  # only the live version is kept: two would leak their difference
        if entry.name not in (CURRENT, version):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    fsync_dir(ex)
    return version


def _live_or_none(root: Path) -> str | None:
    try:
        return current_version(root)
    except (CorruptFile, OSError):
        return None
