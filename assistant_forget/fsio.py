"""Durable, atomic file operations: write beside, fsync, rename, fsync the directory.

A reader either sees the old file or the new one, never half of either (DESIGN invariant 5).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

TMP_PREFIX = ".tmp-"
SEAL = "sha256"  # key of the checksum a sealed JSON file carries of itself


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically: temp file in the same directory, fsync, rename, fsync dir."""
    path = Path(path)
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: object) -> None:
    """Atomically write `obj` as canonical JSON (sorted keys, so equal objects give equal bytes)."""
    atomic_write_bytes(path, _canonical_json(obj))


def _canonical_json(obj: object) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def sealed_json_bytes(obj: dict) -> bytes:
    """Canonical JSON of `obj` plus SEAL, the SHA-256 of the canonical JSON without it: a self-checking file.

    >>> unseal_json(sealed_json_bytes({"a": 1})) == {"a": 1}
    True
    >>> unseal_json(sealed_json_bytes({"a": 1}).replace(b'"a": 1', b'"a": 2'))
    Traceback (most recent call last):
    ...
    ValueError: checksum mismatch: the file was truncated or tampered with
    """
    body = {k: v for k, v in obj.items() if k != SEAL}
    return _canonical_json({**body, SEAL: sha256_bytes(_canonical_json(body))})


def unseal_json(data: bytes) -> dict:
    """The object of a file written from `sealed_json_bytes`; ValueError if any byte of it changed."""
    obj = json.loads(data)
    if not isinstance(obj, dict) or SEAL not in obj or sealed_json_bytes(obj) != data:
        raise ValueError("checksum mismatch: the file was truncated or tampered with")
    return {k: v for k, v in obj.items() if k != SEAL}


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's contents."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def remove_durably(path: Path) -> None:
    """Unlink a file (if present) and fsync its directory, so the removal survives a crash."""
    path = Path(path)
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_dir(path.parent)


def clean_temp_files(root: Path) -> list[Path]:
    """Delete leftover temp files (from an interrupted atomic write) anywhere under `root`."""
    removed = []
    for p in Path(root).rglob(f"{TMP_PREFIX}*"):
        if p.is_file():
            p.unlink()
            removed.append(p)
    return removed
