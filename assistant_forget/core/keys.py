"""Keys: the names a family's data is grouped under (a local day, a user, a session), checked once here, and
the seed each key trains with.

A key becomes part of file names (ledger/deltas/<key>-<hash>.safetensors) and of tombstones, so it must be
safe as a file name on every system: no path separator, not `.` or `..`, bounded in length. Item ids obey
the same rule. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import re

from .errors import BadInput

MAX_KEY = 128  # longest key (and item id) a family's data may use
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]*$")


def check_key(key: object, what: str = "key") -> str:
    """`key` if it can name a day's data on disk and in the ledger, else BadInput saying why.

    A key becomes part of file names (ledger/deltas/<key>-....safetensors), so it must not hold a path
    separator, must not be `.` or `..`, and is bounded in length.

    >>> check_key("2026-03-03"), check_key("user-17")
    ('2026-03-03', 'user-17')
    """
    if not isinstance(key, str) or not key:
        raise BadInput(f"{what} must be a non-empty string, got {key!r}")
    if len(key) > MAX_KEY:
        raise BadInput(f"{what} {key[:40]!r}... is {len(key)} characters; at most {MAX_KEY}")
    if "/" in key or "\\" in key or key in (".", "..") or ".." in key:
        raise BadInput(f"{what} {key!r} must not contain a path separator or '..'")
    if not _KEY_RE.match(key):
        raise BadInput(f"{what} {key!r}: use letters, digits and . _ @ + - (starting with a letter or digit)")
    return key


def day_seed(device_seed: int, day: str, purpose: str = "train") -> int:
    """A 63-bit seed for one day, a pure function of (device seed, date, purpose).

    >>> day_seed(0, "2026-03-03") == day_seed(0, "2026-03-03"), day_seed(0, "2026-03-03") == day_seed(1, "2026-03-03")
    (True, False)
    """
    h = hashlib.sha256(f"{device_seed}:{purpose}:{day}".encode()).digest()
    return int.from_bytes(h[:8], "big") >> 1
