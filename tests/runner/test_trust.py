"""What a forget must withstand from outside: restored backups, another device's ledger, unwritable or damaged
files, "today" east of UTC, a device never trained, a crash around the exact pass's receipt.

Each test reaches the mechanism it names (a tombstone, the ledger binding, the pre-flight check, the exact
pass's journal) and fails without it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest

from assistant_forget import api
from assistant_forget.device import receipts, tombstones
from assistant_forget.cli import main
from assistant_forget.runner.forget import JOURNAL, MAINTAIN_JOURNAL
from assistant_forget.runner.selector import Selector
from assistant_forget.core.ledger import Ledger
from assistant_forget.device.localtime import latest_local_date
from assistant_forget.export.publish import current_version
from devkit import make_device, model_files, persona_log, private_texts
from scan import find_texts, snapshot

DAYS = 6
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return persona_log(DAYS)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, records: list[dict]) -> Path:
    """One trained device, copied by each test that changes it (training is the slow part)."""
    return make_device(tmp_path_factory.mktemp("trained") / "dev", records)


def copy_of(trained: Path, tmp: Path, name: str = "dev") -> Path:
    return Path(shutil.copytree(trained, tmp / name))


def day_of(r: dict) -> str:
    return r["timestamp"][:10]


def days(records: list[dict]) -> list[str]:
    return sorted({day_of(r) for r in records})


# -- restored backups and foreign ledgers -------------------------------------------------------------

def test_a_restored_pre_forget_ledger_is_discarded_not_republished(tmp_path: Path, trained: Path,
                                                                   records: list[dict]) -> None:
    day = days(records)[2]
    dev = copy_of(trained, tmp_path)
    backup = Path(shutil.copytree(dev / "ledger", tmp_path / "ledger-backup"))
    exports = Path(shutil.copytree(dev / "exports", tmp_path / "exports-backup"))
    api.forget(dev, date=day, mode="exact")
    shutil.rmtree(dev / "ledger")
    shutil.copytree(backup, dev / "ledger")  # a phone restores its app data from before the forget
    shutil.rmtree(dev / "exports")
    shutil.copytree(exports, dev / "exports")
    Ledger(dev / "ledger").verify()  # every checksum is valid: only the binding can tell
    st = api.status(dev)
    assert st["state"] == "stale" and "not the one this device last committed" in st["problems"][0]
    api.export(dev)  # a writing command: discards it instead of publishing the pre-forget model again
    assert not (dev / "ledger").exists()
    assert receipts.read_all(dev)[-1]["type"] == "ledger_discarded"
    assert current_version(dev) != current_version(trained)
    api.train(dev)  # rebuilt from the log alone: as if the day had never been said
    never = make_device(tmp_path / "never", records, keep=lambda r: day_of(r) != day)
    assert model_files(dev) == model_files(never)
    assert api.status(dev)["state"] == "exact"


def test_another_devices_ledger_is_not_accepted(tmp_path: Path, trained: Path, records: list[dict]) -> None:
    other = make_device(tmp_path / "other", records, keep=lambda r: day_of(r) != days(records)[0])
    dev = copy_of(trained, tmp_path)
    shutil.rmtree(dev / "ledger")
    shutil.copytree(other / "ledger", dev / "ledger")
    assert api.status(dev)["state"] == "stale"
    api.train(dev)
    assert model_files(dev) == model_files(trained)  # its own ledger, rebuilt from its own log


def test_log_rows_a_restored_log_brings_back_are_deleted_again(tmp_path: Path, trained: Path,
                                                                records: list[dict]) -> None:
    day = days(records)[1]
    texts = private_texts([r["text"] for r in records if day_of(r) == day])
    dev = copy_of(trained, tmp_path)
    old_log = (dev / "logs.sqlite").read_bytes()
    api.forget(dev, date=day, mode="exact")
    (dev / "logs.sqlite").write_bytes(old_log)  # the day's rows are back
    assert find_texts(dev, texts)
    st = api.status(dev)
    assert st["state"] == "stale" and day in st["days"] and day in st["forgotten_days"]
    api.train(dev)
    assert find_texts(dev, texts) == {}
    assert day not in api.status(dev)["days"]
    last = receipts.read_all(dev)[-1]
    assert last["type"] == "reforget" and last["days"] == {day: len([r for r in records if day_of(r) == day])}
    never = make_device(tmp_path / "never", records, keep=lambda r: day_of(r) != day)
    assert model_files(dev) == model_files(never)


def test_a_partly_forgotten_day_keeps_its_other_rows_when_the_log_is_restored(tmp_path: Path, trained: Path,
                                                                               records: list[dict]) -> None:
    day = days(records)[3]
    on_day = [r for r in records if day_of(r) == day]
    target = on_day[0]["text"]
    dev = copy_of(trained, tmp_path)
    old_log = (dev / "logs.sqlite").read_bytes()
    receipt = api.forget(dev, contains=target, mode="exact")
    left = api.status(dev)["days"].get(day, 0)
    assert 0 < left < len(on_day) or receipt["days"] != {day: len(on_day)}
    t = tombstones.load(dev)
    assert not t.days[day].whole and len(t.days[day].kept) == left
    (dev / "logs.sqlite").write_bytes(old_log)
    api.train(dev)
    assert api.status(dev)["days"].get(day, 0) == left  # the kept rows stay, the forgotten ones go again
    assert find_texts(dev, private_texts([target])) == {}


def test_tombstones_never_name_a_forgotten_utterance(tmp_path: Path, trained: Path, records: list[dict]) -> None:
    day = days(records)[4]
    dev = copy_of(trained, tmp_path)
    on_day = [r for r in records if day_of(r) == day]
    api.forget(dev, contains=on_day[0]["text"], mode="fast")
    with api.session(dev) as eng:
        ids = [u.id for u in eng.store.by_day(day)]
    api.forget(dev, ids=ids[:1], mode="fast")  # a later forget removes an id an earlier tombstone kept
    raw = tombstones.path(dev).read_text(encoding="utf-8")
    assert ids[0] not in raw
    assert all(r["text"] not in raw for r in on_day)


def test_import_onto_a_day_forgotten_whole_is_refused(tmp_path: Path, trained: Path, records: list[dict]) -> None:
    day = days(records)[2]
    dev = copy_of(trained, tmp_path)
    api.forget(dev, date=day, mode="fast")
    src = tmp_path / "again.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records if day_of(r) == day), encoding="utf-8")
    before = snapshot(dev)
    assert main(["import", str(src), "--device", str(dev)]) == 2
    assert snapshot(dev) == before


# -- pre-flight: what a forget will write is checked before it deletes ---------------------------------

@contextmanager
def immutable(path: Path) -> Iterator[None]:
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize("target", ["receipts.jsonl", "ledger/manifest.json", "ledger", "exports/CURRENT",
                                    "tombstones.json"])
def test_an_unwritable_file_stops_the_forget_before_anything_changes(tmp_path: Path, trained: Path,
                                                                     records: list[dict], target: str) -> None:
    dev = copy_of(trained, tmp_path)
    if not (dev / receipts.FILENAME).exists():
        (dev / receipts.FILENAME).write_bytes(b"")
    if not tombstones.path(dev).exists():
        tombstones.save(dev, tombstones.Tombstones())
    before = snapshot(dev)
    with immutable(dev / target):
        code = main(["forget", "--device", str(dev), "--date", days(records)[1], "--mode", "fast"])
        assert code == 2 and snapshot(dev) == before
    assert not (dev / JOURNAL).exists()


def test_receipts_that_are_a_directory_stop_the_forget(tmp_path: Path, trained: Path, records: list[dict],
                                                       capsys) -> None:
    dev = copy_of(trained, tmp_path)
    (dev / receipts.FILENAME).unlink(missing_ok=True)
    (dev / receipts.FILENAME).mkdir()
    before = snapshot(dev)
    assert main(["forget", "--device", str(dev), "--date", days(records)[1]]) == 4
    assert "receipts.jsonl" in capsys.readouterr().err
    assert snapshot(dev) == before


# -- damaged files are corrupt files (exit 4), never tracebacks ---------------------------------------

@pytest.mark.parametrize("seed", ['"abc"', "null", "1e400", "1.5", "-5", "true", "9223372036854775808"])
def test_a_bad_seed_in_device_json_is_a_corrupt_file(tmp_path: Path, trained: Path, seed: str, capsys) -> None:
    dev = copy_of(trained, tmp_path)
    (dev / "device.json").write_text('{"format": 1, "seed": %s}' % seed, encoding="utf-8")
    before = snapshot(dev)
    for argv in (["status", "--device", str(dev)], ["history", "--device", str(dev)], ["train", "--device", str(dev)]):
        assert main(argv) == 4
        assert "device.json" in capsys.readouterr().err
    assert snapshot(dev) == before


@pytest.mark.parametrize("drop", ["type", "time_utc", "tier", "id"])
def test_a_receipt_missing_a_field_is_a_corrupt_file(tmp_path: Path, trained: Path, records: list[dict],
                                                     drop: str, capsys) -> None:
    dev = copy_of(trained, tmp_path)
    api.forget(dev, date=days(records)[5], mode="fast")
    path = dev / receipts.FILENAME
    rec = json.loads(path.read_text(encoding="utf-8"))
    del rec[drop]
    path.write_text(json.dumps(rec) + "\n", encoding="utf-8")
    before = snapshot(dev)
    for argv in (["history", "--device", str(dev)], ["status", "--device", str(dev)],
                 ["forget", "--device", str(dev), "--date", days(records)[0]]):
        assert main(argv) == 4
        assert "receipts.jsonl" in capsys.readouterr().err
    assert snapshot(dev) == before


@pytest.mark.parametrize("drop", ["ids", "mode", "receipt", "kept", "days"])
def test_a_journal_missing_a_field_is_a_corrupt_file(tmp_path: Path, trained: Path, records: list[dict],
                                                     drop: str, capsys) -> None:
    dev = copy_of(trained, tmp_path)
    journal = {"format": 1, "receipt": "r", "mode": "fast", "ids": [], "days": {}, "trained": [], "readers": [],
               "selector": {"kind": "date"}, "whole_days": [], "kept": {}, "requested_mode": "fast"}
    del journal[drop]
    (dev / JOURNAL).write_text(json.dumps(journal), encoding="utf-8")
    before = snapshot(dev)
    assert main(["forget", "--device", str(dev), "--date", days(records)[0]]) == 4
    assert "journal.json" in capsys.readouterr().err
    assert snapshot(dev) == before


def test_a_symlink_inside_the_device_is_refused(tmp_path: Path, trained: Path, records: list[dict], capsys) -> None:
    dev = copy_of(trained, tmp_path)
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_bytes(b"")
    (dev / receipts.FILENAME).unlink(missing_ok=True)
    (dev / receipts.FILENAME).symlink_to(outside)
    before = snapshot(dev)
    assert main(["forget", "--device", str(dev), "--date", days(records)[1]]) == 4
    assert "symbolic link" in capsys.readouterr().err
    assert snapshot(dev) == before and outside.read_bytes() == b""


def test_non_ascii_receipts_under_a_c_locale(tmp_path: Path, trained: Path) -> None:
    dev = copy_of(trained, tmp_path)
    receipts.append(dev, {"id": "x", "type": "exact_pass", "time_utc": "2026-01-01T00:00:00Z", "tier": "exact",
                          "note": "größe ✓"})
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONIOENCODING": "", "PYTHONUTF8": "0"}
    for cmd in (["status"], ["history"]):
        out = subprocess.run([sys.executable, "-m", "assistant_forget.cli", *cmd, "--device", str(dev)],
                             capture_output=True, text=True, env=env, cwd=REPO)
        assert out.returncode == 0, out.stderr
        assert "Traceback" not in out.stderr


# -- days that can be forgotten ------------------------------------------------------------------------

def test_today_east_of_utc_can_be_forgotten() -> None:
    # 19:00 UTC on March 3 is 09:00 on March 4 in Pacific/Kiritimati (UTC+14): that user's today is March 4
    assert latest_local_date(datetime(2026, 3, 3, 19, 0, tzinfo=timezone.utc)).isoformat() == "2026-03-04"
    today = latest_local_date()
    assert Selector.parse(date_=today.isoformat()).start == today.isoformat()
    with pytest.raises(Exception, match="in the future"):
        Selector.parse(date_=(today + timedelta(days=1)).isoformat())


def test_forget_on_a_device_never_trained_trains_nothing(tmp_path: Path, records: list[dict]) -> None:
    dev = make_device(tmp_path / "dev", records, train=False)
    day = days(records)[1]
    plan = api.forget(dev, date=day, mode="exact", dry_run=True)
    assert plan["exact_replay_days"] == 0 and plan["trained_days"] == []
    receipt = api.forget(dev, date=day, mode="exact")
    assert receipt["trained_days"] == 0
    assert api.status(dev)["trained_days"] == 0  # the dry run's promise held


# -- the exact pass ends with exactly one receipt, whatever kills it ------------------------------------

@pytest.mark.parametrize("point", ["forget.exact_pass_journaled", "forget.exact_pass_synced",
                                   "forget.exact_pass_receipt"])
def test_a_killed_exact_pass_ends_with_one_receipt(tmp_path: Path, trained: Path, records: list[dict],
                                                   point: str) -> None:
    dev = copy_of(trained, tmp_path)
    api.forget(dev, date=days(records)[1], mode="fast")
    env = {**os.environ, "AF_CRASH_AT": point}
    out = subprocess.run([sys.executable, "-m", "assistant_forget.cli", "maintain", "--device", str(dev)],
                         capture_output=True, text=True, env=env, cwd=REPO)
    assert out.returncode == -9, out.stderr  # killed at the point
    assert (dev / MAINTAIN_JOURNAL).exists()
    api.train(dev)  # any writing command finishes it
    passes = [r for r in receipts.read_all(dev) if r["type"] == "exact_pass"]
    assert len(passes) == 1 and passes[0]["state"] == "exact"
    lines = [json.loads(x) for x in (dev / receipts.FILENAME).read_text(encoding="utf-8").splitlines()]
    assert sum(x["id"] == passes[0]["id"] for x in lines) == 1
    assert not (dev / MAINTAIN_JOURNAL).exists() and api.status(dev)["state"] == "exact"
