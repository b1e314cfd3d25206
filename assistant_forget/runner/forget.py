"""Forget: the plan, the journal that makes a forget crash-safe, and recovery — for every method and family.

A forget runs in this order, and every step is idempotent so that recovery can simply run it again:

    plan ─► journal (durable) ─► delete rows + purge ─► tombstones ─► model: the method's `apply`
         ─► re-export ─► receipt ─► drop journal

What the rows are (utterances, items) and how the model changes are not this module's: the selector
(selector.py) names the rows, the model family (core/family.py) trains and exports, and the method
(core/method.py, methods/) plans and applies the model update — fast (subtract Δ, repair; exact pass
pending), exact (rewind, replay), auto (exact when the replay is short, else fast), retrain, subtraction,
finetune, or one a user registers.

Before the journal, a pre-flight check (`preflight`) makes sure every file and folder the forget will write
can be written, so a forget never deletes rows and then stops half-way on an unwritable receipt or export.

The journal (DIR/journal.json, format 2) holds the matched row ids and affected days — never text — the
method's registered name and configuration, the counts its plan read, and, for a day forgotten only in
part, the ids the log keeps on it (the tombstone, device/tombstones.py). If the process dies anywhere after
it is written, the next command that opens the device for writing finishes the forget (`recover`) with the
method the journal names, resolved through the registry, so there is never a state where the logs are gone
but the model still holds the day with nothing pending. `maintain` keeps a journal of its own
(DIR/maintain.json: the receipt id and the versions), so an exact pass always ends with exactly one receipt.

Every forget first removes every verification work copy (device/workdir.py), in use or not: none outlives it.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..core import crashpoints
from ..core import method as methods
from ..core.errors import BadInput, CorruptFile, NothingToForget
from ..core.fsio import atomic_write_json, check_writable, clean_temp_files, fsync_dir, remove_durably
from ..core.method import Method, Plan, Request
from ..device import receipts, tombstones, workdir
from ..device.device import JOURNAL, MAINTAIN_JOURNAL
from ..export.publish import CURRENT, EXPORTS
from ..export.publish import check_writable as check_publishable
from .engine import Engine
from .plan import ForgetPlan, make_plan, resolve  # noqa: F401  (part of this module's API)
from .selector import Selector



def forget(eng: Engine, sel: Selector, mode: str | Method = "auto", progress=None) -> dict:
    """Forget what `sel` names; returns the receipt. The caller holds the device lock and has run `recover`."""
    fp = make_plan(eng, sel, mode)
    preflight(eng)
    r, plan = fp.request, fp.plan
    whole = sel.kind in ("date", "range", "keys")
    gone = set(r.ids)
    kept = {} if whole else {d: sorted(u.id for u in eng.store.by_day(d) if u.id not in gone) for d in r.days}
    journal = {"format": 2, "receipt": receipts.new_id(), "method": plan.method, "config": plan.config,
               "ids": list(r.ids), "days": r.days, "trained": r.trained, "readers": r.readers,
               "replay_days": r.replay_days, "subtracted": r.subtracted, "retained": r.retained,
               "history": r.history, "repair_steps": plan.repair_steps, "selector": sel.public(),
               "whole_days": sorted(r.days) if whole else [], "kept": kept,
               "version_before": eng.manifest().version, "requested_mode": fp.requested, "started_utc": _now(),
               "until": r.until}
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


JOURNAL_FIELDS = {"receipt": str, "method": str, "config": dict, "ids": list, "days": dict, "trained": list,
                  "readers": list, "selector": dict, "whole_days": list, "kept": dict, "requested_mode": str}


def read_journal(path: Path, fields: dict[str, type]) -> dict:
    """A journal file, checked to hold `fields` with their types; CorruptFile naming it otherwise."""
    try:
        journal = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(journal, dict) and journal.get("format") == 1 and "mode" in journal:  # before methods
            journal = {**journal, "method": journal["mode"], "config": {}}
        bad = [k for k, t in fields.items() if not isinstance(journal.get(k), t)] if isinstance(journal, dict) else ["all"]
    except (OSError, ValueError) as e:
        bad, journal = [f"unreadable: {e}"], None
    if not bad and "method" in fields and journal["method"] not in methods.names(commits=True):
        raise BadInput(f"{path}: the interrupted operation used method {journal['method']!r}, which is not "
                       f"registered in this process; register it ({methods.ENV_PLUGINS}=your_module) and run "
                       "the command again to finish it")
    if bad:
        raise CorruptFile(f"{path}: damaged journal (bad or missing: {', '.join(bad)}); the operation it "
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


def _request(journal: dict) -> Request:
    """The request a journal records (the counts a method's plan read are in it; the rows are gone)."""
    return Request(tuple(journal["ids"]), journal["days"], journal["trained"], journal["readers"],
                   journal.get("replay_days", 0), journal.get("subtracted", 0), journal.get("retained", 0),
                   journal.get("until"), journal.get("history", 0))


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
    method = methods.committing(journal["method"], journal["config"])  # as recorded: same method, same config
    request = _request(journal)
    plan = Plan(journal["method"], method.exact, journal["config"], sorted(request.trained + request.readers),
                request.replay_days, journal.get("repair_steps"))  # fixed in the journal: a roll-forward repairs the same
    repaired = method.apply(eng, request, plan, progress)
    crashpoints.hit("forget.model_updated")
    t2 = time.perf_counter()
    export_version = eng.publish()
    crashpoints.hit("forget.exported")
    t3 = time.perf_counter()
    m = eng.manifest()
    receipt = {
        "id": journal["receipt"], "type": "forget", "time_utc": _now(), "tier": journal["method"],
        "method": journal["method"], "config": journal["config"], "family": eng.family.name,
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

