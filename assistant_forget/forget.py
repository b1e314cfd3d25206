"""Forget: selectors, the plan, the fast and exact tiers, and the journal that makes a forget crash-safe.

A forget runs in this order, and every step is idempotent so that recovery can simply run it again:

    plan ─► journal (durable) ─► delete rows + purge ─► model: fast (subtract Δ, repair; exact pass pending)
                                                              or exact (rewind, replay) ─► re-export ─► receipt ─► drop journal

Before the journal, a pre-flight check (`preflight`) makes sure every file and folder the forget will write
can be written, so a forget never deletes rows and then stops half-way on an unwritable receipt or export.

The journal (DIR/journal.json, format 1) holds the matched utterance ids and affected days — never text —
and, for a day forgotten only in part, the ids the log keeps on it (the tombstone, tombstones.py). If the
process dies anywhere after it is written, the next command that opens the device for writing finishes the
forget (`recover`), so there is never a state where the logs are gone but the model still holds the day with
nothing pending. `maintain` keeps a journal of its own (DIR/maintain.json: the receipt id and the versions),
so an exact pass always ends with exactly one receipt.

Every forget first removes every verification work copy (workdir.py), in use or not: none outlives it.

Tiers: `fast` subtracts the affected days' deltas, and those of the later days whose replay read an affected
day, and repairs briefly, longer when the subtracted days held many utterances (`repair_budget`; approximate,
exact pass pending);
`exact` rewinds to the checkpoint before the first affected day and replays; `auto` is exact when that
replays at most AUTO_EXACT_MAX_DAYS days, else fast now with the exact pass at the next `maintain`.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

from . import crashpoints, receipts, tombstones, workdir
from .engine import Engine
from .errors import BadInput, CorruptFile, NothingToForget
from .fsio import atomic_write_json, check_writable, clean_temp_files, fsync_dir, remove_durably
from .localtime import latest_local_date, parse_date
from .publish import CURRENT, EXPORTS
from .publish import check_writable as check_publishable
from .store import Utterance

JOURNAL = "journal.json"
MAINTAIN_JOURNAL = "maintain.json"
MODES = ("auto", "fast", "exact")
AUTO_EXACT_MAX_DAYS = 3  # `auto` replays exactly right away when it costs at most this many days
MAX_CONTAINS = 200  # longest phrase `--contains` accepts


@dataclass(frozen=True)
class Selector:
    """What to forget: one local day, an inclusive range of days, utterance ids, or a phrase on any day."""

    kind: str  # "date" | "range" | "utterance" | "contains"
    start: str | None = None  # first day (date and range)
    end: str | None = None  # last day, inclusive (date and range)
    ids: tuple[str, ...] = ()  # utterance ids
    text: str | None = None  # phrase, matched case-insensitively

    @classmethod
    def parse(cls, *, date_: str | None = None, start: str | None = None, end: str | None = None,
              ids: list[str] | None = None, contains: str | None = None, today: date | None = None) -> "Selector":
        """Validate CLI-style arguments (exactly one selector); BadInput says what is wrong."""
        given = [n for n, v in [("--date", date_), ("--from/--to", start or end), ("--utterance", ids),
                                ("--contains", contains)] if v not in (None, [], "")]
        if contains == "" or (contains is not None and not contains.strip()):
            raise BadInput("--contains needs a non-empty phrase (it would match every utterance)")
        if len(given) != 1:
            raise BadInput("give exactly one selector: --date D, --from D1 --to D2, --utterance ID..., "
                           f"or --contains TEXT (got {', '.join(given) or 'none'})")
        today = today or latest_local_date()
        if date_ is not None:
            d = _day(date_, "--date", today)
            return cls("date", d, d)
        if start is not None or end is not None:
            if start is None or end is None:
                raise BadInput("a range needs both --from and --to (use --date for a single day)")
            a, b = _day(start, "--from", today), _day(end, "--to", today)
            if a > b:
                raise BadInput(f"--from {a} is after --to {b}; swap them")
            return cls("range", a, b)
        if ids:
            bad = [i for i in ids if not i.strip() or len(i) > 128]
            if bad:
                raise BadInput(f"--utterance ids must be non-empty and at most 128 characters: {bad[:3]}")
            return cls("utterance", ids=tuple(sorted(set(ids))))
        assert contains is not None
        if len(contains) > MAX_CONTAINS:
            raise BadInput(f"--contains phrase is {len(contains)} characters; at most {MAX_CONTAINS}")
        if "\x00" in contains:
            raise BadInput("--contains phrase must not contain NUL characters")
        return cls("contains", text=contains)

    def match(self, store) -> list[Utterance]:
        """The utterances this selector names, in canonical order."""
        if self.kind in ("date", "range"):
            return store.by_range(self.start, self.end)
        if self.kind == "utterance":
            found = store.by_ids(list(self.ids))
            missing = sorted(set(self.ids) - {u.id for u in found})
            if missing:
                raise NothingToForget(f"no utterance with id {', '.join(missing[:5])}; nothing was changed "
                                      "(list ids with `assistant-forget status --device DIR --json`)")
            return found
        return store.matching(self.text)

    def public(self) -> dict:
        """Non-identifying description for receipts: dates for day selectors, only the kind for a phrase.

        Nothing derived from a phrase is kept (not even a salted hash: a word list confirms one at once).
        """
        if self.kind in ("date", "range"):
            return {"kind": self.kind, "from": self.start, "to": self.end}
        if self.kind == "utterance":
            return {"kind": "utterance", "count": len(self.ids)}
        return {"kind": "contains"}


def _day(s: str, flag: str, today: date) -> str:
    d = parse_date(s)
    if d > today:
        raise BadInput(f"{flag} {d} is in the future (the latest date anywhere on Earth now is {today}); "
                       "nothing can have been said then")
    return d.isoformat()


@dataclass
class Plan:
    mode: str  # tier that will run: "fast" or "exact" (auto resolved)
    ids: list[str]  # matched utterance ids
    days: dict[str, int]  # affected local day -> utterances removed
    trained: list[str]  # affected days the model has trained on
    readers: list[str]  # trained days whose replay read an affected day (the fast tier subtracts them too)
    replay_days: int  # days an exact pass would retrain
    subtracted: int  # utterances (before the forget) of the days whose deltas the fast tier subtracts
    repair_steps: int  # the fast tier's repair budget for them (0 for the exact tier)

    def summary(self) -> dict:
        return {"mode": self.mode, "utterances": len(self.ids), "days": self.days, "trained_days": self.trained,
                "untrained_days": sorted(set(self.days) - set(self.trained)), "readers": self.readers,
                "exact_replay_days": self.replay_days, "subtracted_utterances": self.subtracted,
                "repair_steps": self.repair_steps}


def make_plan(eng: Engine, sel: Selector, mode: str = "auto") -> Plan:
    """Which utterances and days a forget touches, and which tier will run. Changes nothing."""
    if mode not in MODES:
        raise BadInput(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    rows = sel.match(eng.store)
    if not rows:
        raise NothingToForget("nothing matches that selector; nothing was changed")
    days: dict[str, int] = {}
    for u in rows:
        days[u.local_date] = days.get(u.local_date, 0) + 1
    m = eng.manifest()
    trained = sorted(d for d in days if d in m.days)
    replay = 0
    counts = eng.store.day_counts()
    if trained:
        gone = {d for d, n in days.items() if counts.get(d) == n}  # days with nothing left to train on
        ckpt = max((c for c in m.checkpoints if c < trained[0]), default=None)
        replay = sum(1 for d in m.days if (ckpt is None or d > ckpt) and d not in gone)
    if mode == "auto":
        mode = "exact" if replay <= AUTO_EXACT_MAX_DAYS else "fast"
    readers = eng.timeline.readers(trained, m) if trained else []
    subtracted = sum(counts.get(d, 0) for d in trained + readers)
    steps = eng.cfg.repair_budget(subtracted, sum(counts.values()) - len(rows)) if mode == "fast" and trained else 0
    return Plan(mode, [u.id for u in rows], dict(sorted(days.items())), trained, readers, replay, subtracted, steps)


def forget(eng: Engine, sel: Selector, mode: str = "auto", progress=None) -> dict:
    """Forget what `sel` names; returns the receipt. The caller holds the device lock and has run `recover`."""
    plan = make_plan(eng, sel, mode)
    preflight(eng)
    whole = sel.kind in ("date", "range")
    gone = set(plan.ids)
    kept = {} if whole else {d: sorted(u.id for u in eng.store.by_day(d) if u.id not in gone) for d in plan.days}
    journal = {"format": 1, "receipt": receipts.new_id(), "mode": plan.mode, "ids": plan.ids, "days": plan.days,
               "trained": plan.trained, "readers": plan.readers, "repair_steps": plan.repair_steps,
               "selector": sel.public(), "whole_days": sorted(plan.days) if whole else [], "kept": kept,
               "version_before": eng.manifest().version, "requested_mode": mode, "started_utc": _now(),
               "until": eng.last_trained()}
    atomic_write_json(eng.dev.root / JOURNAL, journal)
    crashpoints.hit("forget.journal_written")
    return _apply(eng, journal, progress)


def preflight(eng: Engine) -> None:
    """Refuse a forget, before anything changes, when a file or folder it must write cannot be written."""
    root, ledger = eng.dev.root, eng.timeline.ledger.root
    check_writable(files=[root / receipts.FILENAME, root / JOURNAL, tombstones.path(root), ledger / "manifest.json"],
                   dirs=[root, ledger, ledger / "deltas", ledger / "checkpoints"])
    receipts.read_all(root)  # a damaged receipt log stops the forget here, not after the rows are gone
    tombstones.load(root)
    check_publishable(root)


JOURNAL_FIELDS = {"receipt": str, "mode": str, "ids": list, "days": dict, "trained": list, "readers": list,
                  "selector": dict, "whole_days": list, "kept": dict, "requested_mode": str}


def read_journal(path: Path, fields: dict[str, type]) -> dict:
    """A journal file, checked to hold `fields` with their types; CorruptFile naming it otherwise."""
    try:
        journal = json.loads(path.read_text(encoding="utf-8"))
        bad = [k for k, t in fields.items() if not isinstance(journal.get(k), t)] if isinstance(journal, dict) else ["all"]
    except (OSError, ValueError) as e:
        bad, journal = [f"unreadable: {e}"], None
    if bad or journal.get("mode", "exact") not in ("fast", "exact"):
        raise CorruptFile(f"{path}: damaged journal (bad or missing: {', '.join(bad) or 'mode'}); the operation it "
                          "records cannot be finished automatically: restore the file or remove it and run "
                          "`assistant-forget maintain`") from None
    return journal


def recover(eng: Engine, progress=None) -> dict | None:
    """Finish what a crash interrupted, and undo what a restored backup brought back; the receipt of a
    rolled-forward forget, or None.

    In order: a ledger that is not the one this device last committed (restored from a backup, copied from
    another device) is discarded; every remaining ledger file is verified (a tampered one stops the command
    before it changes anything); half-written temp files, unused verification work copies and ledger files an
    interrupted commit left unreferenced are removed; log rows on forgotten days that a restored log brought
    back are deleted again; an interrupted forget and an interrupted exact pass are finished; and the live
    export is re-published when it is not the current model's complete one (a crash between the model's
    commit and its publication, or a restored export), which also deletes a second export version.
    """
    root, ledger = eng.dev.root, eng.timeline.ledger
    tomb = tombstones.load(root)
    if ledger.exists() and not tomb.binds(ledger.digest()):
        _discard_ledger(eng, tomb)
    if ledger.exists():
        ledger.verify()
    clean_temp_files(root, skip=workdir.WORK)  # a running what-if's copy is its own
    workdir.clean(root)
    if ledger.exists():
        ledger.collect_garbage(eng.manifest())
    _reforget_restored_rows(eng, tomb)
    path = root / JOURNAL
    done = _apply(eng, read_journal(path, JOURNAL_FIELDS), progress, recovered=True) if path.exists() else None
    if (root / MAINTAIN_JOURNAL).exists():
        _finish_exact_pass(eng, read_journal(root / MAINTAIN_JOURNAL, EXACT_PASS_FIELDS), progress)
    if done is None and (eng.manifest().days or (root / EXPORTS / CURRENT).exists()):
        eng.publish()  # rewrites nothing when the live export is already this model's
    return done


def _discard_ledger(eng: Engine, tomb: tombstones.Tombstones) -> None:
    """Remove a ledger this device did not commit last: it may hold a forgotten day (a pre-forget backup).

    The ledger is derived from the log alone; the model returns to the base state and `train` rebuilds it,
    exactly. The receipt says so (no text, no dates: the discarded ledger's days are not this device's to
    report)."""
    root = eng.timeline.ledger.root
    shutil.rmtree(root)
    fsync_dir(root.parent)
    tomb.ledger = []
    tombstones.save(eng.dev.root, tomb)
    eng.timeline.load()
    receipts.append(eng.dev.root, {"id": receipts.new_id(), "type": "ledger_discarded", "time_utc": _now(),
                                   "tier": "exact", "reason": "the ledger was not the one this device last "
                                   "committed (restored from an older backup or copied from another device)",
                                   "state": "exact", "version_after": eng.manifest().version})


def _reforget_restored_rows(eng: Engine, tomb: tombstones.Tombstones) -> None:
    """Delete again the log rows of forgotten days that a restored copy of the log brought back."""
    stale = tomb.restored(eng.store)
    if not stale:
        return
    eng.store.delete_ids([i for ids in stale.values() for i in ids])
    receipts.append(eng.dev.root, {"id": receipts.new_id(), "type": "reforget", "time_utc": _now(), "tier": "exact",
                                   "days": {d: len(ids) for d, ids in stale.items()},
                                   "reason": "log rows of forgotten days came back (a restored log); deleted again",
                                   "state": "approximate" if eng.manifest().approximate else "exact"})


def _apply(eng: Engine, journal: dict, progress, recovered: bool = False) -> dict:
    t0 = time.perf_counter()
    root = eng.dev.root
    workdir.clean(root, include_active=True)  # no verification copy of the device outlives a forget
    eng.store.delete_ids(journal["ids"])  # secure delete + WAL truncate + vacuum
    crashpoints.hit("forget.rows_deleted")
    tomb = tombstones.load(root)
    tomb.record(journal["receipt"], journal["whole_days"], journal["kept"], journal["ids"])
    tombstones.save(root, tomb)
    t1 = time.perf_counter()
    repaired = None
    if journal["mode"] == "exact":
        if journal.get("until") is not None:  # nothing was trained: there is no model to rewind
            eng.sync(until=journal["until"], progress=progress)  # the horizon before the forget
    else:  # the budget is fixed in the journal, so a rolled-forward forget repairs the same
        repaired = fast_update(eng, journal["trained"], journal.get("repair_steps"))
    crashpoints.hit("forget.model_updated")
    t2 = time.perf_counter()
    export_version = eng.publish()
    crashpoints.hit("forget.exported")
    t3 = time.perf_counter()
    m = eng.manifest()
    receipt = {
        "id": journal["receipt"], "type": "forget", "time_utc": _now(), "tier": journal["mode"],
        "requested_mode": journal["requested_mode"], "selector": journal["selector"],
        "days": journal["days"], "utterances": len(journal["ids"]), "trained_days": len(journal["trained"]),
        "reader_days": len(journal.get("readers", [])),
        "repair_steps": repaired, "repair_budget": journal.get("repair_steps"),
        "version_before": journal.get("version_before"), "version_after": m.version, "export_version": export_version,
        "state": "approximate" if m.approximate else "exact", "pending_exact_from": m.pending_exact_from,
        "timings_s": {"delete": round(t1 - t0, 4), "model": round(t2 - t1, 4), "export": round(t3 - t2, 4),
                      "total": round(t3 - t0, 4)},
        "recovered": recovered, "verification": None,
    }
    if journal["receipt"] not in {r["id"] for r in receipts.read_all(root)}:
        receipts.append(root, receipt)
    crashpoints.hit("forget.receipt_appended")
    remove_durably(root / JOURNAL)
    return receipt


def fast_update(eng: Engine, trained: list[str], steps: int | None) -> int | None:
    """The fast tier's model update: subtract the deltas of `trained` and of their readers, then repair with
    a budget of `steps` (None: `repair_steps`). Returns the repair steps taken (None: nothing to subtract).

    A budget past `repair_steps` is a ceiling: the retained loss of the model before the subtraction is
    the mark the repair stops at once it is back there (DayTrainer.repair).
    """
    target = eng.trainer.retained_loss(eng.model) if steps is not None and steps > eng.cfg.repair_steps else None
    taken: list[int] = []
    eng.timeline.fast_forget(trained, lambda model, seed: taken.append(eng.trainer.repair(model, seed, steps, target)))
    return taken[0] if taken else None


EXACT_PASS_FIELDS = {"receipt": str, "replayed_from": str, "version_before": str}


def maintain(eng: Engine, progress=None) -> dict | None:
    """Run the pending exact pass (the charging-window half of `auto`); a receipt if there was one to run."""
    m = eng.manifest()
    if not m.approximate:
        return None
    check_writable(files=[eng.dev.root / receipts.FILENAME, eng.dev.root / MAINTAIN_JOURNAL])
    journal = {"format": 1, "receipt": receipts.new_id(), "replayed_from": m.pending_exact_from,
               "version_before": m.version, "started_utc": _now()}
    atomic_write_json(eng.dev.root / MAINTAIN_JOURNAL, journal)
    crashpoints.hit("forget.exact_pass_journaled")
    return _finish_exact_pass(eng, journal, progress)


def _finish_exact_pass(eng: Engine, journal: dict, progress=None) -> dict:
    """Replay (if still pending), publish, append the receipt once, drop the journal: idempotent."""
    t0 = time.perf_counter()
    eng.sync(until=eng.last_trained(), progress=progress)
    crashpoints.hit("forget.exact_pass_synced")
    t1 = time.perf_counter()
    export_version = eng.publish()
    receipt = {"id": journal["receipt"], "type": "exact_pass", "time_utc": _now(), "tier": "exact",
               "replayed_from": journal["replayed_from"], "version_before": journal["version_before"],
               "version_after": eng.manifest().version, "export_version": export_version, "state": "exact",
               "timings_s": {"model": round(t1 - t0, 4), "total": round(time.perf_counter() - t0, 4)}}
    if journal["receipt"] not in {r["id"] for r in receipts.read_all(eng.dev.root)}:
        receipts.append(eng.dev.root, receipt)
    crashpoints.hit("forget.exact_pass_receipt")
    remove_durably(eng.dev.root / MAINTAIN_JOURNAL)
    return receipt


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

