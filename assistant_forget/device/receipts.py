"""Forget receipts: an append-only JSON-lines audit log at DIR/receipts.jsonl (format 1).

A receipt says that a forget happened — when, which tier, what it matched in non-identifying form (dates and
counts; for a phrase or utterance ids only the kind of selector), the model versions before and after,
timings, and a slot for the verification summary. It never holds forgotten content, nor anything derived
from it that a guesser could test a candidate against (no hash of a phrase: a word list confirms a salted
hash in a millisecond). Appends are fsynced; a receipt is updated only by appending a newer line with the
same `id` (`attach_verification`), so the log stays append-only.

Every line read is checked: a JSON object with a string `id`; after the lines of one id are merged, a
known `type` with the fields `history` and the verifier rely on. Anything else is a CorruptFile naming the
file and the line.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from ..core.errors import CorruptFile
from ..core.fsio import fsync_dir

FORMAT = 1
FILENAME = "receipts.jsonl"


REQUIRED = {  # type -> fields every receipt of that type carries (with the type of each)
    "forget": {"time_utc": str, "tier": str, "days": dict, "utterances": int, "selector": dict},
    "exact_pass": {"time_utc": str, "tier": str},
    "reforget": {"time_utc": str, "tier": str, "days": dict},
    "ledger_discarded": {"time_utc": str, "tier": str},
}


def new_id() -> str:
    """A receipt id: random, so it says nothing about what was forgotten."""
    return secrets.token_hex(16)


def append(root: Path, receipt: dict) -> None:
    """Append one receipt line durably."""
    path = Path(root) / FILENAME
    line = json.dumps({"format": FORMAT, **receipt}, sort_keys=True, ensure_ascii=True) + "\n"
    new = not path.exists()
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
    if new:
        fsync_dir(path.parent)


def read_all(root: Path) -> list[dict]:
    """Every receipt, latest line per id wins, in order of first appearance."""
    path = Path(root) / FILENAME
    if not path.exists() and not path.is_symlink():
        return []
    if path.is_symlink() or not path.is_file():
        raise CorruptFile(f"{path} is not a regular file; move it away (receipts are an append-only file)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorruptFile(f"{path}: not UTF-8 text (byte {e.start}); the receipts were damaged") from None
    except OSError as e:
        raise CorruptFile(f"{path}: unreadable ({e.strerror})") from None
    out: dict[str, dict] = {}
    first: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except ValueError:
            r = None
        if not isinstance(r, dict) or not isinstance(r.get("id"), str) or not r["id"]:
            raise CorruptFile(f"{path}: line {n} is not a valid receipt (a JSON object with a string id)")
        first.setdefault(r["id"], n)
        out[r["id"]] = {**out.get(r["id"], {}), **r}
    for rid, r in out.items():
        need = REQUIRED.get(r.get("type"))
        bad = ["type"] if need is None else [k for k, t in need.items()
                                              if not isinstance(r.get(k), t) or isinstance(r.get(k), bool)]
        if bad:
            raise CorruptFile(f"{path}: the receipt on line {first[rid]} lacks a valid {', '.join(bad)}; "
                              "the receipts were damaged")
    return list(out.values())


def attach_verification(root: Path, receipt_id: str, summary: dict) -> None:
    """Record a verification summary for an earlier receipt (appends; never rewrites)."""
    if receipt_id not in {r["id"] for r in read_all(root)}:
        raise CorruptFile(f"{Path(root) / FILENAME}: no receipt {receipt_id}")
    append(root, {"id": receipt_id, "verification": summary})
