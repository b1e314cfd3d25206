"""Named crash points: places where a test harness may kill the process to prove crash safety (DESIGN inv. 5).

The library calls `hit("name")` at each point below. Normally that does nothing (one global lookup). With
the environment variable AF_CRASH_AT=name[:n] set when the process starts (or `configure("name:n")`), the
process SIGKILLs itself at the n-th hit of that point (n defaults to 1): no cleanup, no `finally`, no
flush, exactly as if the phone lost power after the preceding line. With AF_CRASH_LOG=FILE (or
`configure(log=FILE)`) every hit appends its name as a line to FILE, so a harness can count how often an
operation passes each point and pick the n-th hit at random (tools/crash_inject.py).

>>> configure(None); hit("forget.journal_written")  # unarmed: a no-op
>>> configure("forget.journal_writen")
Traceback (most recent call last):
...
ValueError: unknown crash point 'forget.journal_writen'; known points: see crashpoints.POINTS
>>> configure(None)
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

ENV_AT = "AF_CRASH_AT"  # name[:n]: die at the n-th hit of that point
ENV_LOG = "AF_CRASH_LOG"  # file to which every hit appends its name

POINTS: dict[str, str] = {  # name -> the window it opens (what is on disk when the process dies there)
    "ledger.tensor_written": "a new delta/checkpoint/state file is on disk but no manifest references it yet",
    "ledger.manifest_replaced": "the new manifest is committed, files it no longer references are not removed",
    "ledger.file_removed": "garbage collection removed one unreferenced file of several",
    "timeline.rewound": "an exact pass committed the rewound state, later days not yet replayed",
    "timeline.day_trained": "a day was trained in memory, its delta and state not yet written",
    "timeline.subtracted": "a fast forget subtracted deltas and repaired in memory, nothing committed",
    "store.rows_deleted": "the delete transaction committed, the WAL not yet checkpointed nor the file vacuumed",
    "store.wal_checkpointed": "the WAL was checkpointed and truncated, VACUUM not yet run",
    "publish.version_built": "a complete export sits in a temp directory, not yet renamed into place",
    "publish.exchanged": "the new copy of a version was exchanged with the old one (the live path holds the new "
                         "one), the old copy not yet deleted",
    "publish.version_renamed": "the new version directory is in place, CURRENT still names the old one",
    "publish.current_swapped": "CURRENT names the new version, old versions not yet deleted",
    "forget.journal_written": "the forget journal is durable, nothing deleted yet",
    "forget.rows_deleted": "the utterances are deleted and purged, the model still holds them",
    "forget.model_updated": "the model and ledger no longer hold the data, the export still does",
    "forget.exported": "the new export is live, no receipt yet",
    "forget.receipt_appended": "the receipt is written, the journal not yet removed",
    "forget.exact_pass_synced": "maintain finished the exact replay, the export is still the approximate one",
    "forget.exact_pass_journaled": "maintain recorded its pending receipt, the exact replay not yet run",
    "forget.exact_pass_receipt": "maintain appended its receipt, its journal not yet removed",
    "verify.copy_made": "a what-if verification copied the device into its work directory, nothing measured yet",
}

_at: str | None = None  # armed point, or None
_nth = 1  # die at this hit of `_at`
_count = 0  # hits of `_at` so far
_log: Path | None = None  # where hits are logged, or None


def parse(spec: str) -> tuple[str, int]:
    """'name[:n]' -> (name, n), checking the name is a known point and n >= 1.

    >>> parse("publish.current_swapped:2")
    ('publish.current_swapped', 2)
    """
    name, _, n = spec.partition(":")
    if name not in POINTS:
        raise ValueError(f"unknown crash point {name!r}; known points: see crashpoints.POINTS")
    if n and (not n.isdigit() or int(n) < 1):
        raise ValueError(f"crash point count must be an integer >= 1, got {n!r} in {spec!r}")
    return name, int(n) if n else 1


def configure(at: str | None = None, log: str | os.PathLike | None = None) -> None:
    """Arm `at` ('name[:n]', or None to disarm) and set the hit log (None: no log); resets the hit count."""
    global _at, _nth, _count, _log
    _at, _nth = parse(at) if at else (None, 1)
    _count = 0
    _log = Path(log) if log else None


def hit(name: str) -> None:
    """Pass the crash point `name`: log it if logging, and SIGKILL this process if it is the armed hit."""
    if _at is None and _log is None:
        return
    if _log is not None:
        with open(_log, "a", encoding="utf-8") as f:
            f.write(name + "\n")
    if name == _at:
        global _count
        _count += 1
        if _count == _nth:
            os.kill(os.getpid(), signal.SIGKILL)


configure(os.environ.get(ENV_AT) or None, os.environ.get(ENV_LOG) or None)
