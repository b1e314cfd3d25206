"""The real-utterance persona (device_sim.real): CLINC150 val/test texts only, a held-out set no log says, the
persona's rhythm and habits, a log that `assistant-forget import` reads and trains on, and `device_sim run
--source clinc150`."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from assistant_forget import api
from assistant_forget.cli import main as cli_main
from assistant_forget.core.errors import BadInput
from assistant_forget.device.clinc import load_clinc
from assistant_forget.device.localtime import zone
from device_sim.__main__ import main as sim_main
from device_sim.canary import Canary
from device_sim.generator import RECORD_KEYS, write_jsonl
from device_sim.persona import make_persona
from device_sim.real import (SOURCE, SPLITS, RealConfig, habits, heldout_real, is_heldout_real, real_days,
                             real_log_summary)
from device_sim.simulate import RunConfig

START = date(2025, 1, 1)
SEED = 5
PIN = "my bank pin is 4 8 1 9 3"


@pytest.fixture(scope="module")
def log60() -> list[dict]:
    return real_days(START, 60, SEED)


def test_the_same_arguments_give_the_same_log_and_a_prefix_of_days_is_the_shorter_log(log60, tmp_path) -> None:
    again = real_days(START, 60, SEED)
    assert write_jsonl(log60, tmp_path / "a.jsonl") == len(log60) > 500
    write_jsonl(again, tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert real_days(START, 60, SEED + 1) != log60 and habits(SEED) != habits(SEED + 1)
    cut = (START + timedelta(days=20)).isoformat()
    assert real_days(START, 20, SEED) == [r for r in log60 if r["timestamp"][:10] < cut]
    planted = real_days(START, 60, SEED, canaries=[Canary(PIN, 7, 3)])  # a canary moves nothing else
    assert [r for r in planted if r["text"] != PIN] == log60
    assert [r["timestamp"][:10] for r in planted if r["text"] == PIN] == [(START + timedelta(7)).isoformat()] * 3


def test_every_text_is_a_clinc150_val_or_test_utterance_with_its_own_intent(log60) -> None:
    data = load_clinc()
    label = {t: i for s in SPLITS for t, i in data[s]}
    trained = {t for t, _ in data["train"] + data["oos_train"]}  # what the base model was fitted on
    assert all(list(r) == list(RECORD_KEYS) and r["source"] == SOURCE for r in log60)
    assert all(r["text"] in label and r["intent"] == label[r["text"]] for r in log60)
    assert not {r["text"] for r in log60} & trained
    assert any(r["intent"] == "oos" for r in log60)
    texts = Counter(r["text"] for r in log60)
    assert max(texts.values()) > 1  # a real user repeats a sentence on another day


def test_the_heldout_set_is_distinct_real_text_no_log_contains_from_the_persona_s_intents(log60) -> None:
    held = heldout_real(SEED, 400)
    assert held == heldout_real(SEED, 400) and len({t for t, _ in held}) == 400
    logged = {r["text"] for r in log60} | {r["text"] for s in (0, 1, 2) for r in real_days(START, 30, s)}
    assert not {t for t, _ in held} & logged
    assert all(is_heldout_real(t) for t, _ in held) and not any(is_heldout_real(t) for t in logged)
    data = load_clinc()
    label = {t: i for s in SPLITS for t, i in data[s]}
    assert all(label[t] == i for t, i in held)
    habitual = {i for i, _ in habits(SEED)}
    share = lambda rows: sum(i in habitual for i in rows) / len(rows)  # noqa: E731
    assert share([i for _, i in held]) > 0.7 and share([r["intent"] for r in log60]) > 0.7
    with pytest.raises(BadInput):
        heldout_real(SEED, 10**5)


def test_the_log_has_the_persona_s_rhythm_silent_and_busy_days_weekends_zone_and_habits(log60) -> None:
    persona = make_persona(SEED)
    s = real_log_summary(log60, START, 60)
    per_day = Counter(r["timestamp"][:10] for r in log60)
    counts = [per_day.get((START + timedelta(k)).isoformat(), 0) for k in range(60)]
    assert s["silent_days"] == counts.count(0) >= 1 and s["busiest_day"] == max(counts)
    busy = [c for c in counts if c]
    assert max(busy) >= 2 * statistics.median(busy) and statistics.pstdev(busy) > statistics.mean(busy) ** 0.5
    for r in log60:  # offsets match the zone at that instant (what the importer checks), home or abroad
        when = datetime.fromisoformat(r["timestamp"])
        assert when.utcoffset() == when.astimezone(zone(r["tz"])).utcoffset()
    assert Counter(r["tz"] for r in log60).most_common(1)[0][0] == persona.tz
    hours = Counter(datetime.fromisoformat(r["timestamp"]).hour for r in log60)
    assert sum(hours[h] for h in range(1, 5)) < 0.1 * len(log60)  # people sleep
    top = Counter(r["intent"] for r in log60).most_common(10)
    habitual = {i for i, _ in habits(SEED)}
    assert sum(i in habitual for i, _ in top) >= 8 and s["intents"] < 150
    with pytest.raises(BadInput):
        RealConfig(quiet_rate=1.5)
    with pytest.raises(BadInput):
        real_days(START, 0, SEED)


def test_assistant_forget_imports_the_jsonl_and_trains_on_it(tmp_path: Path, capsys) -> None:
    records = real_days(START, 3, SEED, mean_per_day=5.0)
    src = tmp_path / "real.jsonl"
    write_jsonl(records, src)
    assert cli_main(["import", str(src), "--device", str(tmp_path / "dev"), "--seed", "1"]) == 0
    out = api.train(tmp_path / "dev")
    assert out["trained_days"] == sorted({r["timestamp"][:10] for r in records})
    assert api.status(tmp_path / "dev")["utterances"] == len(records)


def test_device_sim_run_source_clinc150_ends_with_a_report(tmp_path: Path, capsys) -> None:
    dev = tmp_path / "phone"
    assert sim_main(["run", "--source", "clinc150", "--days", "3", "--mean", "4", "--seed", "2",
                     "--start", "2026-03-01", "--device", str(dev)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "phone-report" / "report.md").is_file() and "report" in out
    assert api.status(dev)["utterances"] > 0
    with pytest.raises(BadInput):
        RunConfig(tmp_path / "x", source="reddit")
    assert sim_main(["generate", "--source", "clinc150", "--days", "4", "--seed", "2",
                     "--out", str(tmp_path / "g.jsonl")]) == 0
    assert "real CLINC150 utterances" in capsys.readouterr().out
