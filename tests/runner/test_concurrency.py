"""Concurrency: the app reads while the device trains, forgets and exports; two forgets at once queue on the lock.

The reader is what a phone app does: `runtime.load_current` + a prediction in a loop, in its own process,
taking no lock. It must never fail and never load a mixed version (the version in the ONNX metadata is the
directory it came from, and export.json agrees). Writers serialise on DIR/.lock (flock, waiting).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assistant_forget import api
from assistant_forget.device import receipts
from assistant_forget.device.device import Device
from assistant_forget.runner.forget import JOURNAL
from assistant_forget.core.ledger import Ledger
from assistant_forget.export.runtime import load_current
from devkit import make_device, model_files, persona_log, private_texts
from scan import find_texts, snapshot

REPO = Path(__file__).resolve().parents[2]
DAYS = 3

READER = r"""
import json, sys
from pathlib import Path
from assistant_forget.export.publish import read_manifest
from assistant_forget.export.runtime import load_current
root, stop = Path(sys.argv[1]), Path(sys.argv[2])
seen, errors, loads = [], [], 0
while not stop.exists() or loads == 0:
    try:
        rt = load_current(root)
        rt.intent("wake me up at seven")
        if rt.version != rt.path.name:
            errors.append(f"ONNX metadata says {rt.version}, loaded from {rt.path.name}")
        try:
            if read_manifest(rt.path)["version"] != rt.version:
                errors.append(f"export.json of {rt.path.name} names another version")
        except FileNotFoundError:
            pass  # replaced since the load: the next load resolves CURRENT again
        if not seen or seen[-1] != rt.version:
            seen.append(rt.version)
        loads += 1
        if loads == 1:
            print("ready", flush=True)
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")
print(json.dumps({"loads": loads, "seen": seen, "errors": errors[:5]}))
"""


def day_of(r: dict) -> str:
    return r["timestamp"][:10]


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return persona_log(DAYS, mean=5.0)


def test_the_app_reads_while_the_device_trains_forgets_and_exports(tmp_path: Path, records: list[dict]) -> None:
    days = sorted({day_of(r) for r in records})
    dev = make_device(tmp_path / "dev", records, train=False)
    api.train(dev, until=days[0])
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(dev), str(stop)], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "ready"
        versions = [api.train(dev)["export_version"]]
        versions.append(api.forget(dev, date=days[1], mode="fast")["export_version"])
        versions.append(api.maintain(dev)["export_version"])
        versions.append(api.forget(dev, date=days[0], mode="exact")["export_version"])
        versions.append(api.export(dev, "onnx")["export_version"])
    finally:
        stop.touch()
        out = json.loads(reader.communicate(timeout=120)[0].splitlines()[-1])
    assert out["errors"] == [] and out["loads"] >= len(versions)
    assert len(set(versions[:4])) == 4 and versions[4] == versions[3]  # every step published a new version
    assert set(out["seen"]) <= set(versions) | {out["seen"][0]}  # only complete, published versions were loaded
    assert load_current(dev).version == versions[-1]


def test_two_forgets_at_once_queue_on_the_lock_and_both_complete(tmp_path: Path, records: list[dict]) -> None:
    days = sorted({day_of(r) for r in records})
    gone = days[:2]
    dev = make_device(tmp_path / "dev", records)
    texts = private_texts([r["text"] for r in records if day_of(r) in gone])
    assert texts and find_texts(dev, texts)  # the scan can fail: the texts are on the device before
    before = snapshot(dev)
    script = Path(sys.executable).with_name("assistant-forget")
    with Device.open(dev).locked():  # hold the lock: both forgets must wait for it
        procs = [subprocess.Popen([str(script), "forget", "--device", str(dev), "--date", day, "--mode", "exact",
                                   "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for day in gone]
        waiting = _wait_for_lock_waiters(dev / ".lock", 2)
        assert all(p.poll() is None for p in procs) and snapshot(dev) == before
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-500:] for _, err in results]
    assert waiting in (2, None)  # None: no /proc/locks on this system to watch the queue
    done = [json.loads(out) for out, _ in results]
    assert sorted(next(iter(r["days"])) for r in done) == gone and all(r["state"] == "exact" for r in done)
    assert sorted(r["id"] for r in receipts.read_all(dev)) == sorted(r["id"] for r in done)
    assert not (dev / JOURNAL).exists() and find_texts(dev, texts) == {}
    assert api.status(dev)["days"].keys() == set(days) - set(gone)
    Ledger(dev / "ledger").verify()
    never = make_device(tmp_path / "never", records, keep=lambda r: day_of(r) not in gone)
    assert model_files(dev) == model_files(never)  # serialised exact forgets equal a device that never saw either


def _wait_for_lock_waiters(lock: Path, n: int, timeout: float = 120.0) -> int | None:
    """Wait until `n` processes are blocked in flock on `lock` (Linux /proc/locks); their number, or None."""
    locks = Path("/proc/locks")
    if not locks.exists():
        time.sleep(10)
        return None
    inode = lock.stat().st_ino
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        blocked = [ln for ln in locks.read_text().splitlines() if "->" in ln and f":{inode} " in ln]
        if len(blocked) >= n:
            return len(blocked)
        time.sleep(0.05)
    return len(blocked)
