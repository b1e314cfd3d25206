"""`assistant-forget fleet audit` (device_sim/audit.py) on a real fleet of simulated devices: every forget's
receipt checked against the request the replay recomputes, audited by api.verify and byte-scanned; the same
verdicts serially and on a real local Ray, also when Ray must retry a worker killed mid-audit; a device with a
corrupt file reported and not fatal; no forgotten text in anything the audit writes."""

from __future__ import annotations

import json
import os
import shutil
import signal
from datetime import date
from pathlib import Path

import pytest

from assistant_forget.cli import main as cli_main
from assistant_forget.core.executor import SerialExecutor
from assistant_forget.core.ray_executor import RayExecutor
from device_sim.audit import (AuditSpec, audit_device, audit_specs, expected_log, files_holding,
                             forgotten_only, receipt_matches, run_audit, verdicts)
from device_sim.fleet import fleet_specs, run_fleet
from scan import find_texts

START = date(2026, 1, 1)
ATTACKS = "loss-mia"  # cheap: skipped in an audit (the texts are gone); the canary's exposure ranks 10^5 secrets


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Path:
    """Two devices living 6 days (seed 0): a date and a contact forget on one, a date forget on the other."""
    out = tmp_path_factory.mktemp("fleet")
    run_fleet(out, fleet_specs(out, 2, 6, 0, 4.0, START), SerialExecutor())
    return out


@pytest.fixture(scope="module")
def serial(fleet, tmp_path_factory) -> tuple[Path, dict, int]:
    """The reference: the command, serially (one worker)."""
    out = tmp_path_factory.mktemp("audit") / "serial"
    code = cli_main(["fleet", "audit", "--fleet", str(fleet), "--out", str(out), "--workers", "1",
                     "--attacks", ATTACKS])
    return out, json.loads((out / "audit.json").read_text()), code


def texts_of(fleet: Path) -> dict[str, tuple[set[str], set[str]]]:
    """device -> (the texts its forgets removed and no kept utterance holds, the texts its log keeps): from the
    replay, memory only."""
    out = {}
    for s in audit_specs(fleet, fleet / "unused"):
        forgets, kept = expected_log(s)
        kept_texts = {t for _, t in kept.values()}
        out[s.device] = (forgotten_only(frozenset().union(*(f.texts for f in forgets)), kept_texts), kept_texts)
    return out


def test_every_forget_is_checked_and_the_fleet_passes(fleet, serial) -> None:
    out, report, code = serial
    assert code == 0 and (out / "audit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = report["rows"]
    assert [r["device"] for r in rows] == ["d00000", "d00001"] and all(r["error"] is None for r in rows)
    kinds = [f["kind"] for r in rows for f in r["forgets"]]
    assert kinds == ["date", "contact", "date"]
    receipts = [json.loads(line)["id"] for r in rows
                for line in (fleet / "devices" / r["device"] / "receipts.jsonl").read_text().splitlines()
                if json.loads(line).get("type") == "forget"]
    assert [f["receipt"] for r in rows for f in r["forgets"]] == list(dict.fromkeys(receipts))
    for f in (f for r in rows for f in r["forgets"]):
        assert f["receipt_matches"] and f["verification"]["passed"] and f["verification"]["state"] == "exact"
        assert f["verification"]["attacks_skipped"] == ["loss-mia"] and f["texts_found"] == 0
    assert all(r["log_matches"] and r["passed"] for r in rows)
    s = report["summary"]
    assert s["devices_passed"] == 2 and s["audited"] == s["forgets"] == 3 and s["receipts_mismatched"] == 0
    assert s["texts_checked"] > 0 and s["texts_found"] == 0 and s["failed"] == []


def test_the_checks_see_a_forgotten_text_on_disk_and_a_receipt_that_overstates(fleet, tmp_path) -> None:
    spec = audit_specs(fleet, tmp_path / "a", ATTACKS)[1]
    expected, kept = expected_log(spec)
    texts = forgotten_only(expected[0].texts, {t for _, t in kept.values()})
    copy = tmp_path / spec.device
    shutil.copytree(spec.root, copy)
    assert texts and files_holding(copy, texts) == {}
    leaked = sorted(texts)[0]
    (copy / "cache" / "left-behind.bin").write_bytes(b"\x00" + leaked.lower().encode() + b"\x00")
    assert files_holding(copy, texts) == {leaked: ["cache/left-behind.bin"]}
    receipt = next(json.loads(line) for line in (copy / "receipts.jsonl").read_text().splitlines())
    assert receipt_matches(receipt, expected[0])
    assert not receipt_matches({**receipt, "days": {d: n + 1 for d, n in receipt["days"].items()}}, expected[0])
    assert not receipt_matches({**receipt, "utterances": receipt["utterances"] - 1}, expected[0])


def test_no_forgotten_or_logged_text_is_in_anything_the_audit_writes(fleet, serial) -> None:
    out, _, _ = serial
    texts = texts_of(fleet)
    every = set().union(*(gone | kept for gone, kept in texts.values()))
    assert all(gone for gone, _ in texts.values()) and not find_texts(out, every)
    assert list((out / "reports").rglob("verification.json"))  # api.verify's reports were scanned too
    for device, (gone, _) in texts.items():
        assert not find_texts(fleet / "devices" / device, gone)


def dies_once_after_auditing(spec: AuditSpec) -> dict:
    """device_sim.audit.audit_device, except that device 1's first attempt is SIGKILLed after its whole audit
    ran (its receipt got the audit's line, its reports are written): Ray retries it on a new worker."""
    marker = Path(spec.reports).parent / f"killed-{spec.index}"
    if spec.index != 1 or marker.exists():
        return audit_device(spec)
    audit_device(spec)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(os.getpid()))
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


def test_ray_gives_the_serial_verdicts_also_when_a_worker_is_killed_mid_audit(fleet, serial, tmp_path) -> None:
    _, reference, _ = serial
    out = tmp_path / "ray"
    with RayExecutor(num_cpus=2) as ex:
        report = run_audit(out, audit_specs(fleet, out, ATTACKS), ex, task=dies_once_after_auditing)
    assert (out / "reports" / "killed-1").is_file()  # the kill happened; Ray's retry audited the device again
    assert [verdicts(r) for r in report["rows"]] == [verdicts(r) for r in reference["rows"]]  # device 0: no kill
    assert report["summary"]["verdicts_by_tier"] == reference["summary"]["verdicts_by_tier"]
    assert all(r["node"] for r in report["rows"]) and report["executor"].startswith("RayExecutor")
    assert json.loads((out / "audit.json").read_text())["rows"] == json.loads(json.dumps(report["rows"]))


def test_a_device_with_a_corrupt_file_is_reported_and_the_audit_carries_on(fleet, tmp_path) -> None:
    copy = tmp_path / "fleet"
    shutil.copytree(fleet, copy, ignore=shutil.ignore_patterns("audit"))
    receipts = copy / "devices" / "d00000" / "receipts.jsonl"
    receipts.write_bytes(receipts.read_bytes()[:-40])  # cut in the middle of its last line
    (copy / "devices" / "d00001" / "ledger" / "manifest.json").write_text("{not json")
    out = tmp_path / "audit"
    assert cli_main(["fleet", "audit", "--fleet", str(copy), "--out", str(out), "--workers", "1",
                     "--attacks", ATTACKS]) == 1
    rows = json.loads((out / "audit.json").read_text())["rows"]
    assert rows[0]["error"].startswith("CorruptFile") and "receipts.jsonl" in rows[0]["error"]
    assert not rows[0]["passed"] and not rows[1]["passed"]
    assert rows[1]["forgets"][0]["error"].startswith("CorruptFile")  # its verification failed, it was reported


def test_bad_input_is_refused_and_nothing_is_written(fleet, tmp_path, capsys) -> None:
    for argv, text in [(["--fleet", str(tmp_path)], "not a fleet directory"),
                       (["--fleet", str(fleet), "--attacks", "nope"], "--attacks"),
                       (["--fleet", str(fleet), "--out", str(fleet)], "not empty")]:
        assert cli_main(["fleet", "audit", *argv]) == 2
        assert text in capsys.readouterr().err
    assert not (fleet / "audit").exists() and list(tmp_path.iterdir()) == []
