"""Work directories inside the device directory: where verification copies the device or its ledger.

A what-if verification copies the whole device (its log holds the day's texts) and the oracle copies the
ledger. Such copies live at DIR/.work/<prefix>-<random>/, never in $TMPDIR, so that everything a forget or a
recovery must purge is inside the device directory, and a copy left by a killed process is found and removed
by the next command that opens the device for writing:

    DIR/.work/                      created on first use (mode 0700); an empty one may stay
    DIR/.work/<prefix>-<random>/    one work directory; its owner holds an flock on the directory itself

Locks (fcntl.flock, released by the kernel when the owner dies, so a SIGKILL leaves no stale lock):
  - each work directory is held with LOCK_EX on its own open directory descriptor while its owner uses it;
  - DIR/.work itself is held with LOCK_EX while a work directory is created (made and locked in one step)
    and while `clean` scans and removes, so a cleaner never sees a new directory before its owner holds it.

`clean(root)` removes every work directory whose lock is not held (a crashed owner's): every writing
command's recovery calls it. `clean(root, include_active=True)` removes them all, in use or not: a forget
calls it first, so no copy of the data it deletes outlives it (an interrupted what-if then fails; it is run
again after the forget). Removals are durable: DIR/.work is fsynced after them.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..core.errors import BadInput, CorruptFile
from ..core.fsio import fsync_dir

WORK = ".work"  # the work area's name inside the device directory
PREFIX = re.compile(r"[a-z][a-z0-9_]{0,31}")  # what a work directory's prefix may be


def work_root(device_root: Path) -> Path:
    """DIR/.work of the device directory `device_root`."""
    return Path(device_root) / WORK


def _check_area(work: Path) -> bool:
    """True if the work area exists (as a real directory); CorruptFile if something else has its name."""
    if work.is_symlink() or (work.exists() and not work.is_dir()):
        raise CorruptFile(f"{work} is not a directory; it is the device's work area for verification copies: "
                          "move it away (nothing was changed)")
    return work.is_dir()


def _open_dir(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0))


@contextmanager
def _area_locked(work: Path) -> Iterator[None]:
    """Hold LOCK_EX on DIR/.work: creating a work directory and cleaning never interleave."""
    fd = _open_dir(work)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _ignore_missing(func, path, exc_info) -> None:
    if not issubclass(exc_info[0], FileNotFoundError):  # another cleaner removed it first: fine
        raise exc_info[1]


def _remove(path: Path) -> None:
    """Remove a work directory (or a stray entry of the work area) and everything in it; not yet durable."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, onerror=_ignore_missing)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


@contextmanager
def working_copy(device_root: Path, prefix: str) -> Iterator[Path]:
    """A new, empty work directory DIR/.work/<prefix>-<random>/ held by this process; removed (durably) on
    exit, also on an exception. The caller fills it (a copy of the device, of its ledger)."""
    if not isinstance(prefix, str) or not PREFIX.fullmatch(prefix):
        raise BadInput(f"work directory prefix must match {PREFIX.pattern}, got {prefix!r}")
    root = Path(device_root)
    work = work_root(root)
    if not _check_area(work):
        try:
            work.mkdir(mode=0o700)
        except FileExistsError:  # made by a concurrent process in between
            pass
        fsync_dir(root)
    _check_area(work)
    with _area_locked(work):
        path = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=work))
        fd = _open_dir(path)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new: nobody else can hold it
        fsync_dir(work)
    try:
        yield path
    finally:
        try:
            _remove(path)  # a forget may have removed it already (include_active): nothing left to do
            fsync_dir(work)
        finally:
            os.close(fd)


def _held(path: Path) -> tuple[bool, int | None]:
    """(whether another open descriptor holds the work directory's lock, our locked fd if we took it)."""
    try:
        fd = _open_dir(path)
    except FileNotFoundError:
        return False, None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return True, None
    return False, fd


def clean(device_root: Path, include_active: bool = False) -> list[Path]:
    """Remove the work directories under DIR/.work whose lock is not held (a crashed or finished owner's);
    with `include_active`, every one, in use or not. Anything else found in the work area is removed too
    (nothing but work directories belongs there). Returns what was removed; the removal is durable."""
    work = work_root(device_root)
    if not _check_area(work):
        return []
    removed: list[Path] = []
    with _area_locked(work):
        for entry in sorted(work.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                in_use, fd = _held(entry)
                try:
                    if in_use and not include_active:
                        continue
                    _remove(entry)
                finally:
                    if fd is not None:
                        os.close(fd)
            else:
                _remove(entry)
            removed.append(entry)
        if removed:
            fsync_dir(work)
    return removed


def active(device_root: Path) -> list[Path]:
    """The work directories whose owner holds them now (for status and tests)."""
    work = work_root(device_root)
    if not _check_area(work):
        return []
    out = []
    with _area_locked(work):  # a probe must not take the lock of a directory being created
        for entry in sorted(work.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                in_use, fd = _held(entry)
                if fd is not None:
                    os.close(fd)
                if in_use:
                    out.append(entry)
    return out
