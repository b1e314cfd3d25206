"""A device directory: the on-device state of one phone, in one folder.

Layout (format 1):

    DIR/device.json        format version and the device seed (fixed at creation)
    DIR/logs.sqlite        the utterance log store (plus SQLite's -wal/-shm side files while open)
    DIR/.lock              advisory lock file: one writer process at a time

Later parts of the loop add their own entries (ledger, exports, receipts, journal); each documents its own.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..core.errors import BadInput, CorruptFile, DeviceBusy, DeviceNotFound, ForgetError
from ..core.fsio import atomic_write_json

FORMAT_VERSION = 1
DEFAULT_SEED = 0  # the seed a device gets when `--seed` is not given
JOURNAL = "journal.json"  # only while a forget runs (runner/forget.py)
MAINTAIN_JOURNAL = "maintain.json"  # only while an exact pass runs (runner/forget.py)


def valid_seed(seed: object) -> bool:
    """A device seed is an integer in [0, 2**63) (not a bool, not a float that happens to be whole).

    >>> [valid_seed(s) for s in (0, 7, -5, 1.5, 1.0, True, "3", None, 2**63)]
    [True, True, False, False, False, False, False, False, False]
    """
    return isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**63


def refuse_links(root: Path) -> None:
    """CorruptFile if anything inside the device directory is a symbolic link.

    The library writes and purges files inside the directory only; a planted link would make it write the
    receipts, or read a log, somewhere else, and a purge would miss what lies behind it.
    """
    folders = [str(root)]
    while folders:  # scandir's entries know their type from the directory listing: no stat per file
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.is_symlink():
                    raise CorruptFile(f"{entry.path} is a symbolic link; a device directory holds only its own "
                                      "files and folders: remove the link (nothing was changed)")
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)


class Device:
    """Handle on a device directory. Create with `Device.create`, open an existing one with `Device.open`."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root = Path(root)
        self.seed = seed

    # -- paths -------------------------------------------------------------------------------
    @property
    def meta_path(self) -> Path:
        return self.root / "device.json"

    @property
    def store_path(self) -> Path:
        return self.root / "logs.sqlite"

    @property
    def lock_path(self) -> Path:
        return self.root / ".lock"

    # -- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, seed: int = DEFAULT_SEED) -> "Device":
        """Create a new device directory with `seed`. Refuses to overwrite an existing device."""
        root = Path(root)
        if not valid_seed(seed):
            raise BadInput(f"seed must be an integer in [0, 2**63), got {seed!r}")
        if (root / "device.json").exists():
            raise BadInput(f"{root} is already a device directory; open it instead of creating it")
        if root.exists() and any(root.iterdir()):
            raise BadInput(f"{root} exists and is not empty; choose a new directory for the device")
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(root / "device.json", {"format": FORMAT_VERSION, "seed": seed})
        return cls(root, seed)

    @classmethod
    def open(cls, root: Path) -> "Device":
        """Open an existing device directory; DeviceNotFound if it is not one."""
        root = Path(root)
        meta = root / "device.json"
        if not root.is_dir():
            raise DeviceNotFound(f"{root}: no such device directory (create one with "
                                 f"`assistant-forget import FILE --device {root}`)")
        if not meta.is_file():
            raise DeviceNotFound(f"{root}: not a device directory (device.json is missing)")
        refuse_links(root)
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
            fmt, seed = info["format"], info["seed"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CorruptFile(f"{meta}: unreadable device metadata ({e}); it must be a JSON object with an "
                              "integer format and seed") from None
        if fmt != FORMAT_VERSION or isinstance(fmt, bool):
            raise CorruptFile(f"{meta}: device format {fmt!r} is not supported (this version reads {FORMAT_VERSION})")
        if not valid_seed(seed):
            raise CorruptFile(f"{meta}: seed {seed!r} is not an integer in [0, 2**63); the seed is fixed at "
                              "creation: restore device.json or recreate the device")
        return cls(root, seed)

    @classmethod
    def open_or_create(cls, root: Path, seed: int | None = None) -> "Device":
        """Open `root` if it is a device, else create it with `seed` (DEFAULT_SEED when None)."""
        if (Path(root) / "device.json").is_file():
            dev = cls.open(root)
            if seed is not None and seed != dev.seed:
                raise BadInput(f"{root} already has seed {dev.seed}; a device's seed is fixed at creation "
                               f"(drop --seed or use a new directory)")
            return dev
        return cls.create(root, DEFAULT_SEED if seed is None else seed)

    @contextmanager
    def locked(self, wait: bool = True) -> Iterator["Device"]:
        """Hold the device's writer lock (an flock on DIR/.lock) for the duration of the block."""
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise ForgetError(f"{self.lock_path}: cannot open the device's lock file ({e.strerror}); the device "
                              "directory must be writable by this user (nothing was changed)") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise DeviceBusy(f"{self.root} is busy: another assistant-forget process holds its lock; "
                                 "try again when it finishes") from None
            yield self
        finally:
            os.close(fd)
