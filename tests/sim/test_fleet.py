"""`device_sim fleet` (device_sim/fleet.py): N simulated devices through an executor, a fleet report without
text, a failing device reported and not fatal, and the same figures serially and on a process pool."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from assistant_forget.core.executor import ProcessExecutor, SerialExecutor
from assistant_forget.device.device import Device
from assistant_forget.device.store import LogStore
from device_sim.__main__ import main as sim_main
from device_sim.fleet import fleet_specs, run_fleet
from scan import find_texts

START = date(2026, 1, 1)
DETERMINISTIC = ("accuracy", "accuracy_last_week", "spoken", "utterances", "ledger_bytes", "state", "model_version")


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("fleet")
    specs = fleet_specs(out, 2, 4, 5, 6.0, START)
    specs.append(replace(specs[0], index=2, root=str(out / "devices" / "bad"), days=0))  # refused by RunConfig
    return out, run_fleet(out, specs, SerialExecutor())


def test_a_fleet_report_has_a_row_per_device_and_a_failing_device_is_only_reported(serial) -> None:
    out, report = serial
    on_disk = json.loads((out / "fleet.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert (out / "fleet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = report["rows"]
    assert [r["index"] for r in rows] == [0, 1, 2]
    assert rows[0]["error"] is None and rows[1]["error"] is None
    assert rows[2]["error"].startswith("BadInput: --days")
    s = report["summary"]
    assert s["devices"] == 3 and [f["device"] for f in s["failed"]] == ["bad"]
    assert s["accuracy"]["n"] == 2 and 0 <= s["accuracy"]["min"] <= s["accuracy"]["max"] <= 1
    assert s["ledger_bytes"]["min"] > 0
    forgets = [f for r in rows[:2] for f in r["forgets"]]
    assert sum(d["n"] for d in s["forget_seconds_by_tier"].values()) == len(forgets)
    assert sum(s["verification"].values()) == len(forgets)


def test_the_fleet_report_holds_no_text_of_any_device(serial) -> None:
    out, _ = serial
    texts = []
    for d in sorted((out / "devices").iterdir()):
        if (d / "device.json").is_file():
            with LogStore(Device.open(d).store_path, readonly=True) as store:
                texts += [u.text for u in store.all()]
    assert texts
    hits = find_texts(out, texts)
    assert not any(p.name in ("fleet.json", "fleet.png") for paths in hits.values() for p in paths)


def test_a_process_pool_gives_the_same_devices(serial, tmp_path) -> None:
    _, report = serial
    specs = fleet_specs(tmp_path, 2, 4, 5, 6.0, START)
    pooled = run_fleet(tmp_path, specs, ProcessExecutor(2))
    pick = lambda rows: [{k: r[k] for k in DETERMINISTIC} for r in rows]  # noqa: E731  (wall times differ)
    assert pick(pooled["rows"]) == pick(report["rows"][:2])


def test_the_command_writes_the_report_and_refuses_a_used_directory(tmp_path, capsys) -> None:
    out = tmp_path / "f"
    assert sim_main(["fleet", "--devices", "1", "--days", "3", "--mean", "5", "--out", str(out), "--workers", "1"]) == 0
    assert "1 devices" in capsys.readouterr().out and (out / "fleet.json").is_file()
    assert sim_main(["fleet", "--devices", "1", "--days", "3", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
