"""Durable, atomic file operations: write beside, fsync, rename, fsync the directory.

A reader either sees the old file or the new one, never half of either (DESIGN invariant 5); two directories
are swapped in one step where the system can (`exchange_dirs`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sys
from pathlib import Path

from .errors import CorruptFile

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
    if body:  # one encoding: the seal's line is cut out to get the body's, then filled in (see _without_seal)
        placeholder = "0" * 64
        whole = _canonical_json({**body, SEAL: placeholder})
        stripped = _without_seal(whole)
        if stripped is not None and stripped[0] == placeholder:
            return whole.replace(_seal_line(placeholder), _seal_line(sha256_bytes(stripped[1])), 1)
    return _canonical_json({**body, SEAL: sha256_bytes(_canonical_json(body))})


def _seal_line(seal: str) -> bytes:
    return b'\n  "' + SEAL.encode() + b'": "' + seal.encode() + b'"'


def _without_seal(data: bytes) -> tuple[str, bytes] | None:
    """(seal, canonical JSON of the body) cut from the canonical bytes of a sealed object, without re-encoding.

    With indent 2 and sorted keys, the top-level seal is the one line `  "sha256": "<64 hex>"` indented by
    exactly two spaces, with a comma unless it is the last key (then the line before loses its comma).
    None when the bytes are not laid out that way; the caller then checks the slow way.
    """
    start = data.find(b'\n  "' + SEAL.encode() + b'": "')
    end = start + len(_seal_line("0" * 64))
    if start < 0 or data[end - 1:end] != b'"':
        return None
    seal = data[end - 65:end - 1].decode("ascii", "replace")
    if data[end:end + 2] == b",\n":
        return seal, data[:start] + data[end + 1:]
    if data[end:end + 2] == b"\n}" and data[start - 1:start] == b",":
        return seal, data[:start - 1] + data[end:]
    return None


def unseal_json(data: bytes) -> dict:
    """The object of a file written from `sealed_json_bytes`; ValueError if any byte of it changed.

    The check hashes the bytes as they are, with the seal's line cut out (no re-encoding: a 365-day
    ledger manifest is read several times a forget); bytes laid out otherwise are re-encoded and compared.
    """
    obj = json.loads(data)
    if not isinstance(obj, dict) or SEAL not in obj:
        raise ValueError("checksum mismatch: the file was truncated or tampered with")
    stripped = _without_seal(data)
    if stripped is None or stripped[0] != obj[SEAL] or sha256_bytes(stripped[1]) != obj[SEAL]:
        if sealed_json_bytes(obj) != data:
            raise ValueError("checksum mismatch: the file was truncated or tampered with")
    return {k: v for k, v in obj.items() if k != SEAL}


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def read_checked(path: Path, sha256: str | None) -> bytes:
    """The bytes of `path`, checked against `sha256` when given; CorruptFile names the file when it is
    missing, unreadable, truncated or tampered with."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise CorruptFile(f"{path}: file is missing; the device directory is incomplete "
                          "(restore it from a backup or recreate the device)") from None
    except OSError as e:
        raise CorruptFile(f"{path}: cannot be read ({e.strerror})") from None
    if sha256 is not None and sha256_bytes(data) != sha256:
        raise CorruptFile(f"{path}: checksum mismatch (file truncated or tampered with); refusing to load it")
    return data


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


def clean_temp_files(root: Path, skip: str | None = None) -> list[Path]:
    """Delete leftover temp files (from an interrupted atomic write) anywhere under `root`, except under
    its folder `skip` (another process's working copies, which clean themselves)."""
    removed = []
    for p in Path(root).rglob(f"{TMP_PREFIX}*"):
        if skip is not None and p.relative_to(root).parts[0] == skip:
            continue
        if p.is_file():
            p.unlink()
            removed.append(p)
    return removed


def check_writable(files: list[Path] = (), dirs: list[Path] = ()) -> None:
    """Refuse, before anything changes, files and folders a command will have to write but could not.

    Each file in `files` must be absent or a regular file this process can open for writing (an immutable
    file fails here even for root; nothing is truncated); each folder in `dirs` that exists must take a new
    file (a probe is created and removed). Raises CorruptFile for something of the wrong type, ForgetError
    for something unwritable; the message names it and says that nothing was changed.
    """
    from .errors import CorruptFile, ForgetError

    unchanged = "nothing was changed"
    for path in map(Path, files):
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise CorruptFile(f"{path} is not a regular file; move it away ({unchanged})")
        if path.exists():
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
            except OSError as e:
                raise ForgetError(f"{path} cannot be written ({e.strerror}); make it writable and run again "
                                  f"({unchanged})") from None
    for folder in map(Path, dirs):
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise CorruptFile(f"{folder} is not a directory; move it away ({unchanged})")
        if folder.is_dir():
            probe = folder / f"{TMP_PREFIX}probe.{os.getpid()}"
            try:
                os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                os.unlink(probe)
            except OSError as e:
                raise ForgetError(f"{folder} does not take new files ({e.strerror}); make it writable and run "
                                  f"again ({unchanged})") from None


_RENAME_EXCHANGE = 2  # linux/fs.h: atomically exchange two existing paths
_RENAME_SWAP = 2  # macOS sys/stdio.h: renamex_np's atomic exchange
_AT_FDCWD = -100  # linux/fcntl.h: paths relative to the working directory
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}  # kernel or file system lacks it
_exchange_fn = None  # cached (name, function) once looked up; (None, None) when the C library has none


def _exchange_function():
    """renameat2 (Linux) or renamex_np (macOS) from the C library, looked up once; ctypes loads lazily."""
    global _exchange_fn
    if _exchange_fn is None:
        _exchange_fn = (None, None)
        try:
            import ctypes
            import ctypes.util

            libc = ctypes.CDLL(ctypes.util.find_library("c") if sys.platform == "darwin" else None, use_errno=True)
            if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):  # glibc >= 2.28, musl >= 1.2.3
                fn = libc.renameat2
                fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
                fn.restype = ctypes.c_int
                _exchange_fn = ("renameat2", fn)
            elif sys.platform == "darwin" and hasattr(libc, "renamex_np"):  # macOS >= 10.12
                fn = libc.renamex_np
                fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
                fn.restype = ctypes.c_int
                _exchange_fn = ("renamex_np", fn)
        except (ImportError, OSError, AttributeError):
            pass
    return _exchange_fn


def exchange_dirs(a: Path, b: Path) -> bool:
    """Atomically swap the two existing paths `a` and `b`; False (nothing changed) where that is unsupported.

    Linux: renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) (kernel >= 3.15; ENOSYS or EINVAL where the
    kernel or the file system lacks it). macOS: renamex_np(a, b, RENAME_SWAP). Elsewhere (Windows, other C
    libraries) False: the caller falls back to two renames. Any other error is raised as OSError.
    """
    name, fn = _exchange_function()
    if fn is None:
        return False
    import ctypes

    src, dst = os.fsencode(os.path.abspath(a)), os.fsencode(os.path.abspath(b))
    rc = fn(_AT_FDCWD, src, _AT_FDCWD, dst, _RENAME_EXCHANGE) if name == "renameat2" else fn(src, dst, _RENAME_SWAP)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))
