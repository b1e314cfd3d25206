"""What a device remembers of what it forgot, so that a restored backup cannot bring it back: DIR/tombstones.json.

Format 1, sealed with its own SHA-256 (fsio.sealed_json_bytes):

    {"format": 1,
     "days":   {"2026-03-03": {"whole": true,  "kept": [],            "receipts": ["<receipt id>", ...]},
                "2026-03-05": {"whole": false, "kept": ["u12", ...], "receipts": [...]}},
     "ledger": ["<sha256 of a ledger manifest this device committed>", ...]}

`days` holds one tombstone per local day a forget touched. A *whole* day was forgotten by a date or range
selector: no utterance of it may enter the log again (import refuses it). A partly forgotten day (ids, a
phrase) lists the ids of the utterances the log kept on it, plus those imported onto it later: any other row on
that day is one a forget removed, put back by restoring an old copy of `logs.sqlite`, and `recover` deletes it
again. Nothing derived from a forgotten utterance is stored — no id, no hash, no text, no count beyond the
receipts' — and an id leaves every `kept` list when a later forget removes it, so the file never names
anything forgotten.

`ledger` binds the ledger to this device: it lists the manifest the device last committed (two while a
commit is in flight). A manifest that is not listed — a ledger restored from a backup made before a forget,
or copied from another device — is not this device's current ledger, and `recover` discards it (the ledger
is derived from the log alone; `train` rebuilds it exactly). A device directory restored *whole*, this file
included, is indistinguishable from the device before the forget: docs/THREAT_MODEL.md says what the app
must do about backups.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..core.errors import BadInput, CorruptFile
from ..core.fsio import atomic_write_bytes, sealed_json_bytes, unseal_json

FILENAME = "tombstones.json"
FORMAT = 1


@dataclass
class Tombstone:
    whole: bool  # forgotten by a date/range selector: nothing may be logged on this day again
    kept: set[str] = field(default_factory=set)  # ids the log may hold on this day (partial days only)
    receipts: list[str] = field(default_factory=list)  # the forgets that touched this day, oldest first


@dataclass
class Tombstones:
    days: dict[str, Tombstone] = field(default_factory=dict)
    ledger: list[str] = field(default_factory=list)  # accepted ledger manifest digests ([] = none committed yet)

    def to_json(self) -> dict:
        return {"format": FORMAT, "ledger": list(self.ledger),
                "days": {d: {"whole": t.whole, "kept": sorted(t.kept), "receipts": list(t.receipts)}
                         for d, t in sorted(self.days.items())}}

    # -- forgetting ----------------------------------------------------------------------------
    def record(self, receipt: str, whole_days: Iterable[str], partial: dict[str, Iterable[str]],
               forgotten: Iterable[str]) -> None:
        """Add a forget: days it removed whole, days it removed part of (-> ids kept there), ids it removed."""
        gone = set(forgotten)
        for t in self.days.values():
            t.kept -= gone
        for day in whole_days:
            t = self.days.setdefault(day, Tombstone(True))
            t.whole, t.kept = True, set()
            if receipt not in t.receipts:
                t.receipts.append(receipt)
        for day, kept in partial.items():
            t = self.days.setdefault(day, Tombstone(False))
            if not t.whole:
                t.kept = set(kept) - gone  # what the log holds on the day now is the whole truth
            if receipt not in t.receipts:
                t.receipts.append(receipt)

    def stale(self, rows_by_day: dict[str, list[str]]) -> dict[str, list[str]]:
        """Of the log's ids on tombstoned days ({day: [ids]}), those a forget removed: {day: [ids]}."""
        out = {}
        for day, ids in rows_by_day.items():
            t = self.days.get(day)
            bad = [] if t is None else [i for i in ids if t.whole or i not in t.kept]
            if bad:
                out[day] = sorted(bad)
        return out

    def restored(self, store) -> dict[str, list[str]]:
        """The ids in the log `store` that a forget removed (put back by a restored log), by day."""
        if not self.days:
            return {}
        counts = store.day_counts()
        return self.stale({d: [u.id for u in store.by_day(d)] for d in self.days if d in counts})

    def admit(self, rows: Iterable[tuple[str, str]]) -> bool:
        """Check new log rows (id, local day) against the tombstones before they are stored.

        BadInput if one falls on a day forgotten whole; ids on partly forgotten days join its `kept` list.
        Returns whether anything changed (the caller then saves).
        """
        rows = list(rows)
        refused = sorted({d for _, d in rows if d in self.days and self.days[d].whole})
        if refused:
            raise BadInput(f"{len(refused)} local day(s) of the input were forgotten ({', '.join(refused[:5])}); "
                           "nothing is logged on a forgotten day again, so nothing was imported: drop those lines")
        changed = False
        for uid, day in rows:
            t = self.days.get(day)
            if t is not None and uid not in t.kept:
                t.kept.add(uid)
                changed = True
        return changed

    # -- ledger binding ------------------------------------------------------------------------
    def binds(self, manifest_digest: str | None) -> bool:
        """Whether the ledger whose manifest has `manifest_digest` (None: no ledger) is this device's."""
        return manifest_digest is None or not self.ledger or manifest_digest in self.ledger


def path(root: Path) -> Path:
    return Path(root) / FILENAME


def load(root: Path) -> Tombstones:
    """The device's tombstones (empty when the device never forgot and never committed a ledger)."""
    p = path(root)
    if not p.exists() and not p.is_symlink():
        return Tombstones()
    try:
        obj = unseal_json(p.read_bytes())
        if obj.get("format") != FORMAT:
            raise ValueError(f"format {obj.get('format')!r} is not {FORMAT}")
        ledger = obj["ledger"]
        days = {}
        for d, t in obj["days"].items():
            kept, recs = t["kept"], t["receipts"]
            if not (isinstance(t["whole"], bool) and isinstance(kept, list) and isinstance(recs, list)
                    and all(isinstance(x, str) for x in kept + recs)):
                raise ValueError(f"day {d!r} is malformed")
            days[d] = Tombstone(t["whole"], set(kept), list(recs))
        if not (isinstance(ledger, list) and all(isinstance(x, str) for x in ledger)):
            raise ValueError("'ledger' is not a list of digests")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CorruptFile(f"{p}: unreadable tombstones ({e}); the device can no longer tell what it forgot: "
                          "restore this file from the device, never from a backup older than its last forget") from None
    return Tombstones(days, list(ledger))


def save(root: Path, t: Tombstones) -> None:
    atomic_write_bytes(path(root), sealed_json_bytes(t.to_json()))


class LedgerBinding:
    """The ledger's commit hook that keeps `Tombstones.ledger` naming the device's own manifest.

    Before a manifest is replaced its digest joins the accepted list; once the new one is durable it is the
    only one left. A crash in between leaves both accepted, and the next commit settles it.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def before_commit(self, old: str | None, new: str) -> None:
        t = load(self.root)
        t.ledger = sorted({new} | ({old} if old else set()))
        save(self.root, t)

    def after_commit(self, new: str) -> None:
        t = load(self.root)
        if t.ledger != [new]:
            t.ledger = [new]
            save(self.root, t)


def admit_rows(root: Path, rows: Iterable[tuple[str, str]]) -> None:
    """Before new rows (id, local day) enter the log: refuse a forgotten day, remember ids on a partly
    forgotten one. The caller holds the device lock and stores the rows right after; BadInput changes nothing."""
    t = load(root)
    if t.admit(rows):
        save(root, t)
