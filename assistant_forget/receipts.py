"""Forget receipts: an append-only JSON-lines audit log at DIR/receipts.jsonl (format 1).

A receipt says that a forget happened — when, which tier, what it matched in non-identifying form (dates and
counts; a salted hash for a text selector), the model versions before and after, timings, and a slot for the
verification summary. It never holds forgotten content. Appends are fsynced; a receipt is updated only by
appending a newer line with the same `id` (`attach_verification`), so the log stays append-only.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path

from .errors import CorruptFile
from .fsio import fsync_dir

FORMAT = 1
FILENAME = "receipts.jsonl"


def salted_hash(text: str, salt: str) -> str:
    """Hash of a forgotten phrase that proves what was asked without revealing it.

    >>> salted_hash("Alvarez", "00") == salted_hash("alvarez", "00"), len(salted_hash("x", "00"))
    (True, 64)
    """
    return hashlib.sha256(bytes.fromhex(salt) + text.casefold().encode()).hexdigest()


def new_salt() -> str:
    return secrets.token_hex(16)


def append(root: Path, receipt: dict) -> None:
    """Append one receipt line durably."""
    path = Path(root) / FILENAME
    line = json.dumps({"format": FORMAT, **receipt}, sort_keys=True, ensure_ascii=True) + "\n"
    new = not path.exists()
    with open(path, "a", encoding="ascii") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
    if new:
        fsync_dir(path.parent)


def read_all(root: Path) -> list[dict]:
    """Every receipt, latest line per id wins, in order of first appearance."""
    path = Path(root) / FILENAME
    if not path.exists():
        return []
    out: dict[str, dict] = {}
    for n, line in enumerate(path.read_text(encoding="ascii").splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            out[r["id"]] = {**out.get(r["id"], {}), **r}
        except (ValueError, KeyError, TypeError):
            raise CorruptFile(f"{path}: line {n} is not a valid receipt") from None
    return list(out.values())


def attach_verification(root: Path, receipt_id: str, summary: dict) -> None:
    """Record a verification summary for an earlier receipt (appends; never rewrites)."""
    if receipt_id not in {r["id"] for r in read_all(root)}:
        raise CorruptFile(f"{Path(root) / FILENAME}: no receipt {receipt_id}")
    append(root, {"id": receipt_id, "verification": summary})
