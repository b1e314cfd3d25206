"""Forget: selectors, the plan, the fast and exact tiers, and the journal that makes a forget crash-safe.

A forget runs in this order, and every step is idempotent so that recovery can simply run it again:

    plan ─► journal (durable) ─► delete rows + purge ─► model: fast (subtract Δ, repair; exact pass pending)
                                                              or exact (rewind, replay) ─► re-export ─► receipt ─► drop journal

The journal (DIR/journal.json, format 1) holds the matched utterance ids and affected days — never text.
If the process dies anywhere after it is written, the next command that opens the device for writing
finishes the forget (`recover`), so there is never a state where the logs are gone but the model still
holds the day with nothing pending.

Tiers: `fast` subtracts the affected days' deltas, and those of the later days whose replay read an affected
day, and repairs briefly, longer when the subtracted days held many utterances (`repair_budget`; approximate,
exact pass pending);
`exact` rewinds to the checkpoint before the first affected day and replays; `auto` is exact when that
replays at most AUTO_EXACT_MAX_DAYS days, else fast now with the exact pass at the next `maintain`.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone

from . import crashpoints, receipts
from .engine import Engine
from .errors import BadInput, CorruptFile, NothingToForget
from .fsio import atomic_write_json, clean_temp_files, remove_durably
from .localtime import parse_date
from .publish import CURRENT, EXPORTS
from .store import Utterance

JOURNAL = "journal.json"
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
        today = today or datetime.now(timezone.utc).date()
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

    def public(self, salt: str) -> dict:
        """Non-identifying description for receipts: dates for day selectors, a salted hash for a phrase."""
        if self.kind in ("date", "range"):
            return {"kind": self.kind, "from": self.start, "to": self.end}
        if self.kind == "utterance":
            return {"kind": "utterance", "count": len(self.ids)}
        return {"kind": "contains", "salt": salt, "sha256": receipts.salted_hash(self.text or "", salt)}


def _day(s: str, flag: str, today: date) -> str:
    d = parse_date(s)
    if d > today:
        raise BadInput(f"{flag} {d} is in the future (today is {today}); nothing can have been said then")
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
    salt = receipts.new_salt()
    journal = {"format": 1, "receipt": uuid.uuid4().hex, "mode": plan.mode, "ids": plan.ids, "days": plan.days,
               "trained": plan.trained, "readers": plan.readers, "repair_steps": plan.repair_steps,
               "selector": sel.public(salt),
               "version_before": eng.manifest().version, "requested_mode": mode, "started_utc": _now(),
               "until": eng.last_trained()}
    atomic_write_json(eng.dev.root / JOURNAL, journal)
    crashpoints.hit("forget.journal_written")
    return _apply(eng, journal, progress)


def recover(eng: Engine, progress=None) -> dict | None:
    """Finish what a crash interrupted; returns the receipt of a rolled-forward forget, or None.

    First verifies every ledger file (a tampered one stops the command before it changes anything), then
    removes half-written temp files (a journal that never became durable among them) and ledger files an
    interrupted commit left unreferenced (a forgotten day's delta among them), and re-publishes when the
    live export is not the current model's complete one (a crash between the model's commit and its
    publication), which also deletes a second export version left behind.
    """
    ledger = eng.timeline.ledger
    if ledger.exists():
        ledger.verify()
    clean_temp_files(eng.dev.root)
    if ledger.exists():
        ledger.collect_garbage(eng.manifest())
    path = eng.dev.root / JOURNAL
    if not path.exists():
        if eng.manifest().days or (eng.dev.root / EXPORTS / CURRENT).exists():
            eng.publish()  # rewrites nothing when the live export is already this model's
        return None
    try:
        journal = json.loads(path.read_text())
        journal["ids"], journal["mode"], journal["receipt"]  # noqa: B018 - presence check
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CorruptFile(f"{path}: unreadable forget journal ({e}); the forget it records cannot be "
                          "finished automatically") from None
    return _apply(eng, journal, progress, recovered=True)


def _apply(eng: Engine, journal: dict, progress, recovered: bool = False) -> dict:
    t0 = time.perf_counter()
    eng.store.delete_ids(journal["ids"])  # secure delete + WAL truncate + vacuum
    crashpoints.hit("forget.rows_deleted")
    t1 = time.perf_counter()
    repaired = None
    if journal["mode"] == "exact":
        eng.sync(until=journal.get("until", eng.last_trained()), progress=progress)  # the horizon before the forget
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
        "version_before": journal["version_before"], "version_after": m.version, "export_version": export_version,
        "state": "approximate" if m.approximate else "exact", "pending_exact_from": m.pending_exact_from,
        "timings_s": {"delete": round(t1 - t0, 4), "model": round(t2 - t1, 4), "export": round(t3 - t2, 4),
                      "total": round(t3 - t0, 4)},
        "recovered": recovered, "verification": None,
    }
    if journal["receipt"] not in {r["id"] for r in receipts.read_all(eng.dev.root)}:
        receipts.append(eng.dev.root, receipt)
    crashpoints.hit("forget.receipt_appended")
    remove_durably(eng.dev.root / JOURNAL)
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


def maintain(eng: Engine, progress=None) -> dict | None:
    """Run the pending exact pass (the charging-window half of `auto`); a receipt if there was one to run."""
    m = eng.manifest()
    if not m.approximate:
        return None
    t0 = time.perf_counter()
    before = m.version
    eng.sync(until=eng.last_trained(), progress=progress)
    crashpoints.hit("forget.exact_pass_synced")
    t1 = time.perf_counter()
    export_version = eng.publish()
    receipt = {"id": uuid.uuid4().hex, "type": "exact_pass", "time_utc": _now(), "tier": "exact",
               "replayed_from": m.pending_exact_from, "version_before": before,
               "version_after": eng.manifest().version, "export_version": export_version, "state": "exact",
               "timings_s": {"model": round(t1 - t0, 4), "total": round(time.perf_counter() - t0, 4)}}
    receipts.append(eng.dev.root, receipt)
    return receipt


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

