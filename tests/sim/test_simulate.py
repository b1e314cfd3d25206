"""The simulated device end to end (`device_sim run`): a short life, then every promise checked on its files."""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest

from assistant_forget import api
from assistant_forget.device import receipts
from assistant_forget.cli import build_parser as cli_parser
from assistant_forget.cli import main as cli_main
from assistant_forget.core.errors import BadInput
from assistant_forget.core.ledger import Ledger
from assistant_forget.export.publish import current_version, exports_dir
from assistant_forget.export.runtime import load_current
from assistant_forget.device.store import LogStore
from assistant_forget.device.utterance import fold
from device_sim.__main__ import build_parser as sim_parser
from device_sim.__main__ import main as sim_main
from device_sim.generator import write_jsonl
from device_sim.report import FILES
from device_sim.simulate import RunConfig, SimResult, request_schedule, run
from devkit import START, private_texts
from scan import find_texts, snapshot

DAYS, SEED, MEAN, KEEP, EVERY = 9, 3, 6.0, 5, 3  # requests on days 3, 6 and 9: date, contact, range


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> SimResult:
    root = tmp_path_factory.mktemp("sim") / "phone"
    return run(RunConfig(root, days=DAYS, seed=SEED, start=START, mean=MEAN, retention=KEEP, forget_every=EVERY))


def day_of(r: dict) -> str:
    return r["timestamp"][:10]


def expected_log(sim: SimResult) -> list[dict]:
    """The records a device must still hold: each day's, minus what each forget of that day selected."""
    kept: list[dict] = []
    for k in range(DAYS):
        today = (START + timedelta(days=k)).isoformat()
        kept += [r for r in sim.records if day_of(r) == today]
        for e in (e for e in sim.events if e.date == today):
            q = e.request
            gone = {"date": lambda r: day_of(r) == q["date"],
                    "range": lambda r: q["start"] <= day_of(r) <= q["end"],
                    "contact": lambda r: fold(q["contains"]) in fold(r["text"]),
                    "retention": lambda r: day_of(r) <= (date.fromisoformat(today) - timedelta(KEEP)).isoformat()}
            kept = [r for r in kept if not gone[e.kind](r)]
    return kept


def contact_names(sim: SimResult) -> list[str]:
    """The contacts the user asked to forget, those a hex digest cannot spell by chance."""
    names = [e.request["contains"] for e in sim.events if e.kind == "contact"]
    return [n for n in names if not set(fold(n)) <= set("0123456789abcdef")]


def stored(root: Path) -> list[tuple[str, str, str]]:
    with LogStore(root / "logs.sqlite", readonly=True) as store:
        return sorted((u.local_date, u.intent, u.text) for u in store.all())


def test_the_schedule_ran_and_the_log_holds_exactly_what_was_not_forgotten(sim: SimResult) -> None:
    assert [e.kind for e in sim.events if e.kind != "retention"] == ["date", "contact", "range"]
    assert request_schedule(DAYS, EVERY) == {2: "date", 5: "contact", 8: "range"}
    assert any(e.kind == "retention" for e in sim.events)
    assert sim.events[0].request == {"date": (START + timedelta(sim.canary.day)).isoformat()}  # canary's day
    kept = expected_log(sim)
    assert 0 < len(kept) < len(sim.records)
    assert stored(sim.config.device) == sorted((day_of(r), r["intent"], r["text"]) for r in kept)


def test_forgotten_texts_are_in_no_file_of_the_device(sim: SimResult, tmp_path: Path) -> None:
    kept = [fold(r["text"]) for r in expected_log(sim)]
    gone = {r["text"] for r in sim.records} - {r["text"] for r in expected_log(sim)}
    forgotten = private_texts(sorted(t for t in gone if not any(fold(t) in k for k in kept)))
    assert sim.canary.text in forgotten and len(forgotten) >= 10
    write_jsonl(sim.records, tmp_path / "log.jsonl")
    assert set(find_texts(tmp_path, forgotten)) == set(forgotten)  # the scan finds each one where it is
    still = private_texts(sorted({r["text"] for r in expected_log(sim)}))
    assert set(find_texts(sim.config.device, still)) == set(still)  # ... and reads the device's files
    assert find_texts(sim.config.device, forgotten) == {}


def test_forgets_change_the_model_and_write_content_free_receipts(sim: SimResult) -> None:
    root = sim.config.device
    trained = [e.receipt for e in sim.events if e.receipt["trained_days"]]
    assert trained and all(r["version_after"] != r["version_before"] for r in trained)
    stored_receipts = {r["id"]: r for r in receipts.read_all(root)}
    assert {e.receipt["id"] for e in sim.events} <= set(stored_receipts)
    assert all(stored_receipts[e.receipt["id"]].get("trigger") == ("retention" if e.kind == "retention" else None)
               for e in sim.events)
    raw = fold((root / receipts.FILENAME).read_text())
    assert contact_names(sim) and not [t for t in contact_names(sim) if fold(t) in raw]
    assert not [t for t in private_texts(sorted({r["text"] for r in sim.records})) if fold(t) in raw]


def test_the_exports_answer_in_onnxruntime_and_accuracy_is_recorded_daily(sim: SimResult) -> None:
    root = sim.config.device
    app = load_current(root)
    assert app.version == current_version(root) == sim.status["export_version"] == sim.days[-1].export_version
    answer = app.intent(sim.records[0]["text"])
    assert answer.label in app.labels and 0.0 <= answer.confidence <= 1.0
    assert sorted(p.name for p in exports_dir(root).iterdir()) == sorted(["CURRENT", app.version])
    assert [d.spoken for d in sim.days] == [sum(day_of(r) == d.date for r in sim.records) for d in sim.days]
    assert all(d.accuracy is None or 0.0 <= d.accuracy <= 1.0 for d in sim.days)
    assert [d.deployed for d in sim.days[1:]] == [d.export_version for d in sim.days[:-1]]  # last night's export
    assert sim.days[0].deployed != sim.days[0].export_version  # day 1 is answered by the base model


def test_retention_left_no_older_day_in_the_log_or_the_ledger(sim: SimResult) -> None:
    cutoff = (START + timedelta(DAYS - 1 - KEEP)).isoformat()
    assert min(day for day, _, _ in stored(sim.config.device)) > cutoff
    assert min(Ledger(sim.config.device / "ledger").load_manifest().days) > cutoff


def test_the_report_is_beside_the_device_and_holds_no_utterance_text(sim: SimResult) -> None:
    out = sim.config.device.parent / "phone-report"
    assert sim.report == out / "report.md" and sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert all((out / f).read_bytes().startswith(b"\x89PNG") for f in ("accuracy.png", "ledger.png"))
    info = json.loads((out / "run.json").read_text())
    assert len(info["days"]) == DAYS and len(info["forgets"]) == len(sim.events)
    assert [f["verification"] for f in info["forgets"]] == [None] * len(sim.events)
    md = (out / "report.md").read_text()
    assert md.count("| not run |") == len(sim.events)
    texts = private_texts(sorted({r["text"] for r in sim.records}))
    assert find_texts(out, texts) == {}
    assert not [n for n in contact_names(sim) if fold(n) in fold(md + json.dumps(info))]


def test_every_command_works_on_the_simulated_device(sim: SimResult, tmp_path: Path) -> None:
    dev = tmp_path / "copy"
    shutil.copytree(sim.config.device, dev)
    day = stored(dev)[-1][0]
    for argv in (["status"], ["history"], ["export", "--format", "onnx"], ["train"], ["maintain"],
                 ["forget", "--date", day, "--mode", "exact"], ["status", "--json"]):
        assert cli_main([*argv, "--device", str(dev)]) == 0, argv
    assert day not in api.status(dev)["days"]
    before = snapshot(dev)
    assert api.retain(dev, KEEP + DAYS, (START + timedelta(DAYS)).isoformat()) is None
    with pytest.raises(BadInput):
        api.retain(dev, 0, day)
    assert snapshot(dev) == before


def test_both_clis_run_the_same_simulation_refuse_to_overwrite_and_start_fresh(tmp_path: Path,
                                                                               capsys: pytest.CaptureFixture) -> None:
    dev = tmp_path / "tiny"
    args = ["--days", "3", "--seed", "5", "--mean", "3", "--start", START.isoformat(), "--retention", "0",
            "--forget-every", "0", "--device", str(dev)]

    def options(parser, name: str) -> dict:
        return {k: v for k, v in vars(parser.parse_args([name, *args])).items() if k not in ("func", "command")}

    assert options(cli_parser(), "simulate") == options(sim_parser(), "run")  # one set of options, one meaning
    assert cli_main(["simulate", *args]) == 0
    out = capsys.readouterr().out
    assert "deployed accuracy" in out and str(tmp_path / "tiny-report" / "report.md") in out
    version = api.status(dev)["model_version"]
    before = snapshot(tmp_path)
    assert sim_main(["run", *args]) == BadInput.exit_code
    assert "--fresh" in capsys.readouterr().err and snapshot(tmp_path) == before
    assert sim_main(["run", *args, "--fresh"]) == 0
    assert api.status(dev)["model_version"] == version  # same seed, same life


@pytest.mark.parametrize("change, words", [
    (lambda dev: {"days": 0}, "--days"), (lambda dev: {"mean": 0.0}, "--mean"),
    (lambda dev: {"retention": -1}, "--retention"), (lambda dev: {"threads": 0}, "--threads"),
    (lambda dev: {"start": date.today() + timedelta(days=2)}, "must end by today"),
    (lambda dev: {"report": dev / "report"}, "inside the device directory"),
], ids=["days", "mean", "retention", "threads", "future", "report-inside-device"])
def test_bad_configs_are_refused_with_what_to_do(tmp_path: Path, change, words: str) -> None:
    dev = tmp_path / "dev"
    with pytest.raises(BadInput, match=words):
        RunConfig(dev, **change(dev))
    assert not dev.exists()


def test_fresh_deletes_only_a_device_directory(tmp_path: Path) -> None:
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    before = snapshot(tmp_path)
    for extra in ([], ["--fresh"]):
        assert sim_main(["run", "--days", "2", "--start", START.isoformat(), "--device", str(other), *extra]) == 2
    assert sim_main(["run", "--start", "2026-13-01", "--device", str(tmp_path / "new")]) == 2
    assert snapshot(tmp_path) == before and not (tmp_path / "new").exists()
