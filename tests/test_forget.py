"""Forgetting on a real (small) device: exact tier byte-identity, fast tier purge, receipts, recovery, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant_forget import api, receipts
from assistant_forget.cli import main
from assistant_forget.errors import BadInput, NothingToForget
from assistant_forget.ledger import Ledger
from assistant_forget.publish import current_export
from devkit import make_device, model_files, persona_log, private_texts
from scan import find_texts, snapshot

DAYS = 6


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return persona_log(DAYS)


def day_of(r: dict) -> str:
    return r["timestamp"][:10]


def test_exact_forget_of_a_day_equals_a_device_that_never_saw_it(tmp_path: Path, records: list[dict]) -> None:
    day = sorted({day_of(r) for r in records})[2]
    seen = make_device(tmp_path / "seen", records)
    receipt = api.forget(seen, date=day, mode="exact")
    assert receipt["tier"] == "exact" and receipt["state"] == "exact"
    never = make_device(tmp_path / "never", records, keep=lambda r: day_of(r) != day)
    assert model_files(seen) == model_files(never)


def test_exact_forget_of_a_range_and_a_phrase(tmp_path: Path, records: list[dict]) -> None:
    days = sorted({day_of(r) for r in records})
    seen = make_device(tmp_path / "seen", records)
    api.forget(seen, start=days[1], end=days[2], mode="exact")
    word = records[-1]["text"].split()[-1]  # a word said on the last day, and maybe elsewhere
    api.forget(seen, contains=word.upper(), mode="exact")
    never = make_device(tmp_path / "never", records, keep=lambda r: not (days[1] <= day_of(r) <= days[2])
                        and word.casefold() not in r["text"].casefold())
    assert model_files(seen) == model_files(never)


def test_fast_forget_purges_text_and_delta_then_maintain_is_exact(tmp_path: Path, records: list[dict]) -> None:
    day = sorted({day_of(r) for r in records})[1]
    texts = private_texts([r["text"] for r in records if day_of(r) == day])
    dev = make_device(tmp_path / "dev", records)
    assert find_texts(dev, texts)  # the scan can fail: the day is on disk before
    assert any(day in p.name for p in (dev / "ledger" / "deltas").iterdir())
    readers = [d for d, e in Ledger(dev / "ledger").load_manifest().days.items() if day in e.reads]
    assert readers  # later days replayed it: their deltas carry its data too
    receipt = api.forget(dev, date=day, mode="fast")
    assert receipt["reader_days"] == len(readers)
    assert receipt["tier"] == "fast" and receipt["state"] == "approximate"
    assert receipt["version_after"] != receipt["version_before"]
    assert find_texts(dev, texts) == {}
    assert not any(day in p.name for p in dev.rglob("*"))  # no delta or checkpoint of that day remains
    m = Ledger(dev / "ledger").load_manifest()
    assert m.approximate and all(c < day for c in m.checkpoints)
    assert all(m.days[d].delta is None for d in readers)  # subtracted with the day's own delta
    assert not any(day in e.reads for e in m.days.values() if e.delta is not None)
    assert json.loads((current_export(dev) / "export.json").read_text())["state"] == "approximate"
    exact = api.maintain(dev)
    assert exact is not None and exact["state"] == "exact"
    assert api.maintain(dev) is None  # nothing pending any more
    never = make_device(tmp_path / "never", records, keep=lambda r: day_of(r) != day)
    assert model_files(dev) == model_files(never)
    assert find_texts(dev, texts) == {}


def test_receipts_hold_no_content(tmp_path: Path, records: list[dict]) -> None:
    dev = make_device(tmp_path / "dev", records)
    phrase = records[0]["text"].split()[0] + " " + records[0]["text"].split()[1]
    api.forget(dev, contains=phrase, mode="fast")
    (rec,) = receipts.read_all(dev)
    raw = (dev / receipts.FILENAME).read_text(encoding="utf-8")
    assert phrase.casefold() not in raw.casefold() and records[0]["text"] not in raw
    assert rec["selector"] == {"kind": "contains"}  # nothing a guesser could test a candidate phrase against
    assert rec["verification"] is None and rec["utterances"] >= 1


def test_dry_run_and_bad_input_change_nothing(tmp_path: Path, records: list[dict]) -> None:
    dev = make_device(tmp_path / "dev", records)
    day = day_of(records[0])
    before = snapshot(dev)
    plan = api.forget(dev, date=day, dry_run=True)
    assert plan["dry_run"] and plan["days"] == {day: sum(day_of(r) == day for r in records)}
    for kwargs, err in [({"date": "2026-02-30"}, BadInput), ({"start": "2026-02-05", "end": "2026-02-03"}, BadInput),
                        ({"date": "2999-01-01"}, BadInput), ({"contains": "  "}, BadInput),
                        ({"date": "2025-01-01"}, NothingToForget), ({"contains": "zebra quartet"}, NothingToForget),
                        ({"date": day, "mode": "fastest"}, BadInput), ({}, BadInput)]:
        with pytest.raises(err):
            api.forget(dev, **kwargs)
    assert snapshot(dev) == before
    assert main(["forget", "--device", str(dev), "--date", "2025-01-01"]) == NothingToForget.exit_code
    assert main(["forget", "--device", str(tmp_path / "nope"), "--date", day]) == 3
    assert snapshot(dev) == before


def test_interrupted_forget_is_finished_on_next_open(tmp_path: Path, records: list[dict]) -> None:
    """A journal written, then the process died before deleting: the next write command rolls it forward."""
    day = sorted({day_of(r) for r in records})[3]
    texts = private_texts([r["text"] for r in records if day_of(r) == day])
    dev = make_device(tmp_path / "dev", records)
    from assistant_forget import forget as forgetting
    from assistant_forget.engine import open_engine
    from assistant_forget.device import Device
    from assistant_forget.store import LogStore

    d = Device.open(dev)
    with LogStore(d.store_path) as store:
        eng = open_engine(d, store)
        plan = forgetting.make_plan(eng, forgetting.Selector("date", day, day), "exact")
        journal = {"format": 1, "receipt": "r1", "mode": "exact", "ids": plan.ids, "days": plan.days,
                   "trained": plan.trained, "readers": plan.readers, "whole_days": [day], "kept": {},
                   "selector": {"kind": "date", "from": day, "to": day},
                   "version_before": eng.manifest().version, "requested_mode": "exact", "started_utc": "x"}
        (dev / forgetting.JOURNAL).write_text(json.dumps(journal))  # ... and the process dies here
    assert api.status(dev)["pending_forget"] is True
    api.train(dev)  # any write command recovers first
    assert not (dev / forgetting.JOURNAL).exists()
    assert find_texts(dev, texts) == {}
    assert [r["recovered"] for r in receipts.read_all(dev)] == [True]
    never = make_device(tmp_path / "never", records, keep=lambda r: day_of(r) != day)
    assert model_files(dev) == model_files(never)


def test_a_heavy_day_gets_a_longer_repair_fixed_by_the_journal(tmp_path: Path, monkeypatch) -> None:
    """A day said 400 times over moved the model far: its fast forget repairs longer (the plan's budget, in
    the receipt), and a forget rolled forward after a crash repairs as its journal says."""
    from assistant_forget import forget as forgetting
    from assistant_forget.personalize import DayTrainer, PersonalizationConfig
    from device_sim.canary import Canary

    recs = persona_log(DAYS, canaries=(Canary("my bank pin is 3 1 4 1 5", 2, 400),))
    days = sorted({day_of(r) for r in recs})
    dev = make_device(tmp_path / "dev", recs)
    calls: list[int | None] = []
    repair = DayTrainer.repair
    monkeypatch.setattr(DayTrainer, "repair", lambda self, model, seed, steps=None, target=None: (
        calls.append(steps), repair(self, model, seed, steps, target))[1])
    plan = api.forget(dev, date=days[2], mode="fast", dry_run=True)
    cfg = PersonalizationConfig()
    assert plan["subtracted_utterances"] > 400
    retained = len(recs) - plan["utterances"]
    assert plan["repair_steps"] == cfg.repair_budget(plan["subtracted_utterances"], retained) > cfg.repair_steps
    receipt = api.forget(dev, date=days[2], mode="fast")
    assert receipt["repair_budget"] == plan["repair_steps"] and calls == [plan["repair_steps"]]
    assert cfg.repair_steps <= receipt["repair_steps"] <= plan["repair_steps"]

    with api.session(dev) as eng:
        late = forgetting.make_plan(eng, forgetting.Selector("date", days[4], days[4]), "fast")
    journal = {"format": 1, "receipt": "r2", "mode": "fast", "ids": late.ids, "days": late.days,
               "trained": late.trained, "readers": late.readers, "repair_steps": 3, "whole_days": [days[4]], "kept": {},
               "selector": {"kind": "date", "from": days[4], "to": days[4]}, "version_before": receipt["version_after"],
               "requested_mode": "fast", "started_utc": "x"}
    (dev / forgetting.JOURNAL).write_text(json.dumps(journal))  # ... and the process dies here
    api.train(dev)  # any write command recovers first
    assert calls[1:] == [3] and receipts.read_all(dev)[-1]["repair_steps"] == 3
