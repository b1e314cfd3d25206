"""Forgetting on a real (small) device: exact tier byte-identity, fast tier purge, receipts, recovery, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from assistant_forget import api
from assistant_forget.device import receipts
from assistant_forget.cli import main
from assistant_forget.core.errors import BadInput, NothingToForget
from assistant_forget.core.ledger import Ledger
from assistant_forget.export.publish import current_export, current_version
from devkit import make_device, model_files, persona_log, private_texts
from scan import find_texts, snapshot

DAYS = 6
LONG = 11  # days of the long device: a ledger checkpoint after the 7th trained day, then four more days


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
    from assistant_forget.runner import forget as forgetting
    from assistant_forget.runner.engine import open_engine
    from assistant_forget.device.device import Device
    from assistant_forget.device.store import LogStore

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
    from assistant_forget.runner import forget as forgetting
    from assistant_forget.families.assistant.personalize import DayTrainer, PersonalizationConfig
    from device_sim.canary import Canary

    recs = persona_log(DAYS, canaries=(Canary("my bank pin is 3 1 4 1 5", 2, 400),))
    days = sorted({day_of(r) for r in recs})
    dev = make_device(tmp_path / "dev", recs)
    calls: list[int | None] = []
    repair = DayTrainer.repair
    monkeypatch.setattr(DayTrainer, "repair", lambda self, model, seed, steps=None, target=None, lr=None: (
        calls.append(steps), repair(self, model, seed, steps, target, lr))[1])
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


# -- a device long enough to hold a ledger checkpoint (after every 7th trained day) ------------------------

@pytest.fixture(scope="module")
def long_records() -> list[dict]:
    return persona_log(LONG)


@pytest.fixture(scope="module")
def long_days(long_records: list[dict]) -> list[str]:
    days = sorted({day_of(r) for r in long_records})
    assert len(days) == LONG  # every day has data, so every day is trained
    return days


@pytest.fixture(scope="module")
def long_device(tmp_path_factory: pytest.TempPathFactory, long_records: list[dict], long_days: list[str]) -> Path:
    """Trained on 11 days; each test that changes it works on a copy."""
    return make_device(tmp_path_factory.mktemp("long") / "dev", long_records)


@pytest.fixture(scope="module")
def never_device(tmp_path_factory: pytest.TempPathFactory, long_records: list[dict], long_days: list[str]) -> Path:
    """The long device's log without its 8th day (the first day after the checkpoint), imported and trained."""
    gone = long_days[7]
    return make_device(tmp_path_factory.mktemp("never") / "dev", long_records, keep=lambda r: day_of(r) != gone)


def copy_device(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst))


def raw_manifest(dev: Path) -> dict:
    """The ledger manifest as plain JSON (read without the library's Ledger)."""
    return json.loads((dev / "ledger" / "manifest.json").read_text(encoding="utf-8"))


def ledger_tensors(dev: Path, ref: dict) -> dict[str, torch.Tensor]:
    """A ledger tensor file named by a manifest reference, read with safetensors, as float32."""
    return {k: v.float() for k, v in load_file(str(dev / "ledger" / ref["file"])).items()}


def test_exact_forget_after_a_checkpoint_replays_from_it_and_equals_a_device_that_never_saw_the_day(
        tmp_path: Path, long_device: Path, never_device: Path, long_days: list[str], monkeypatch) -> None:
    from assistant_forget.families.assistant.personalize import DayTrainer
    from assistant_forget.runner import forget as forgetting

    day = long_days[7]  # the first day after the checkpoint
    seen = copy_device(long_device, tmp_path / "seen")
    m = raw_manifest(seen)
    assert list(m["days"]) == long_days and list(m["checkpoints"]) == [long_days[6]]  # after the 7th trained day
    with api.session(seen) as eng:
        fp = forgetting.make_plan(eng, forgetting.Selector("date", day, day), "exact")
        sync = eng.timeline.plan([d for d in long_days if d != day])  # what the replay will do once the day is gone
    assert fp.mode == "exact" and fp.trained == [day]
    assert fp.replay_days == len(long_days[8:]) == 3 < len(long_days)  # not a replay of the whole history
    assert (sync.rewind_to, sync.resume, sync.days) == (long_days[6], False, long_days[8:])
    trained: list[str] = []
    train_day = DayTrainer.train_day
    monkeypatch.setattr(DayTrainer, "train_day", lambda self, model, d, seed: (
        trained.append(d), train_day(self, model, d, seed))[1])
    receipt = api.forget(seen, date=day, mode="exact")
    assert trained == long_days[8:]  # rewound to the checkpoint, not to the initial state
    assert receipt["tier"] == receipt["method"] == "exact" and receipt["state"] == "exact"
    after, never = raw_manifest(seen), raw_manifest(never_device)
    assert list(after["checkpoints"]) == [long_days[6]] and after["checkpoints"] == never["checkpoints"]
    assert receipt["version_after"] == after["version"] == never["version"] != receipt["version_before"]
    assert receipt["export_version"] == current_version(seen) == current_version(never_device)
    state = after["state"]["file"]
    assert state == never["state"]["file"]
    assert (seen / "ledger" / state).read_bytes() == (never_device / "ledger" / state).read_bytes()
    assert model_files(seen) == model_files(never_device)  # every ledger and export file, byte for byte


def test_auto_is_exact_up_to_three_replayed_days_and_fast_beyond(tmp_path: Path, long_device: Path,
                                                                never_device: Path, long_days: list[str]) -> None:
    from assistant_forget.device.device import Device
    from assistant_forget.device.store import LogStore
    from assistant_forget.runner import forget as forgetting
    from assistant_forget.runner.engine import open_engine

    after = long_days[7]  # checkpoint on long_days[6]: forgetting this whole day replays days 8, 9 and 10
    d = Device.open(long_device)
    with LogStore(d.store_path, readonly=True) as store:
        eng = open_engine(d, store)
        one = store.by_day(after)[0].id
        cases = [(forgetting.Selector("date", after, after), 3, "exact"),
                 (forgetting.Selector("utterance", ids=(one,)), 4, "fast"),  # the day keeps rows: replayed too
                 (forgetting.Selector("date", long_days[-1], long_days[-1]), 3, "exact"),  # days 7, 8 and 9
                 (forgetting.Selector("range", long_days[9], long_days[10]), 2, "exact"),
                 (forgetting.Selector("date", long_days[2], long_days[2]), LONG - 1, "fast")]  # no checkpoint before
        for sel, replay, mode in cases:
            fp = forgetting.make_plan(eng, sel, "auto")
            assert (fp.replay_days, fp.mode, fp.requested, fp.plan.exact) == (replay, mode, "auto", mode == "exact"), sel

    exact = api.forget(copy_device(long_device, tmp_path / "a"), date=after, mode="auto")
    assert exact["tier"] == exact["method"] == "exact" and exact["requested_mode"] == "auto"
    assert exact["state"] == "exact" and exact["pending_exact_from"] is None
    assert model_files(tmp_path / "a") == model_files(never_device)
    fast = api.forget(copy_device(long_device, tmp_path / "b"), ids=[one], mode="auto")
    assert fast["tier"] == fast["method"] == "fast" and fast["requested_mode"] == "auto"
    assert fast["state"] == "approximate" and fast["pending_exact_from"] == after and fast["utterances"] == 1


def test_fast_forget_drops_the_readers_deltas_and_subtracts_them_from_the_state(tmp_path: Path, long_device: Path,
                                                                                long_days: list[str]) -> None:
    """Every later day whose replay read the forgotten day loses its delta with the day's own; with the
    repair off (`subtraction`) the state is exactly the old state minus those stored deltas."""
    m = raw_manifest(long_device)
    readers_of = {d: sorted(r for r, e in m["days"].items() if d in e["reads"]) for d in long_days}
    day = max(long_days[:-1], key=lambda d: (len(readers_of[d]), d))  # the day read by the most later days
    readers = readers_of[day]
    assert readers and all(r > day for r in readers)
    before = ledger_tensors(long_device, m["state"])
    deltas = {d: ledger_tensors(long_device, m["days"][d]["delta"]) for d in [day, *readers]}
    states = {}
    for name in ("fast", "subtraction"):
        dev = copy_device(long_device, tmp_path / name)
        receipt = api.forget(dev, date=day, mode=name)
        assert receipt["method"] == name and receipt["reader_days"] == len(readers)
        after = raw_manifest(dev)
        assert day not in after["days"] and sorted(after["days"]) == [d for d in long_days if d != day]
        assert all(after["days"][r]["delta"] is None for r in readers)
        assert all(after["days"][d]["delta"] == m["days"][d]["delta"] for d in after["days"] if d not in readers)
        assert not [p.name for p in (dev / "ledger" / "deltas").iterdir() if p.name.startswith(day)]
        assert not list((dev / "ledger").rglob(f"{day}*"))
        assert after["pending_exact_from"] == day and all(c < day for c in after["checkpoints"])
        states[name] = ledger_tensors(dev, after["state"])
        assert states[name].keys() == before.keys()
    fast, subtracted = states["fast"], states["subtraction"]
    expected = {n: before[n] - sum(deltas[d][n] for d in [day, *readers]) for n in before}
    own_only = {n: before[n] - deltas[day][n] for n in before}
    assert all(torch.allclose(subtracted[n], expected[n], rtol=0, atol=1e-6) for n in before)
    assert max((own_only[n] - expected[n]).abs().max().item() for n in before) > 1e-4  # the readers' part counts
    assert max((fast[n] - subtracted[n]).abs().max().item() for n in before) > 1e-5  # fast repaired after it
