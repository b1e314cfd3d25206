"""Verification work copies live in DIR/.work, are held by their owner, and are removed on exit or by `clean`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from assistant_forget import api
from assistant_forget.verify import oracle
from assistant_forget.device import workdir
from assistant_forget.core.errors import BadInput, CorruptFile
from device_sim.canary import Canary
from devkit import make_device, persona_log, private_texts
from scan import find_texts, snapshot

REPO = Path(__file__).resolve().parents[2]
HOLD = ("import sys, time\nfrom assistant_forget.device import workdir\n"
        "with workdir.working_copy(sys.argv[1], 'held') as p:\n"
        "    (p / 'data').write_text('held copy', encoding='utf-8')\n"
        "    print(p, flush=True)\n    time.sleep(120)\n")


def holder(root: Path) -> tuple[subprocess.Popen, Path]:
    """Another process that holds a work directory of `root` until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            encoding="utf-8")
    line = proc.stdout.readline().strip()
    assert line, "the holder died before making its work directory"
    return proc, Path(line)


def test_working_copy_is_inside_the_device_and_removed_on_exit_and_on_error(device_root: Path) -> None:
    with workdir.working_copy(device_root, "whatif") as p:
        assert p.parent == device_root / workdir.WORK and p.name.startswith("whatif-") and p.is_dir()
        (p / "logs.sqlite").write_bytes(b"the day's texts")
        assert workdir.active(device_root) == [p]
        assert workdir.clean(device_root) == [] and p.exists()  # held by this process: kept
    assert not p.exists() and list((device_root / workdir.WORK).iterdir()) == []
    with pytest.raises(RuntimeError, match="boom"):
        with workdir.working_copy(device_root, "oracle") as q:
            (q / "ledger").mkdir()
            raise RuntimeError("boom")
    assert not q.exists() and workdir.active(device_root) == []


def test_clean_removes_what_no_live_owner_holds_and_everything_with_include_active(device_root: Path) -> None:
    work = device_root / workdir.WORK
    work.mkdir()
    stale = work / "whatif-crashed"  # a work directory whose owner died: nobody holds its lock
    (stale / "device").mkdir(parents=True)
    (stale / "device" / "logs.sqlite").write_bytes(b"texts")
    (work / "stray-file").write_bytes(b"x")
    proc, held = holder(device_root)
    try:
        assert workdir.active(device_root) == [held]
        assert sorted(workdir.clean(device_root)) == sorted([stale, work / "stray-file"])
        assert held.exists() and not stale.exists()
        proc.send_signal(signal.SIGKILL)  # the kernel releases its lock: the next clean finds it unheld
        proc.wait()
        assert workdir.active(device_root) == [] and workdir.clean(device_root) == [held] and not held.exists()
        proc, held = holder(device_root)
        assert workdir.clean(device_root, include_active=True) == [held] and not held.exists()  # what forget does
    finally:
        proc.kill()
        proc.wait()
    with workdir.working_copy(device_root, "mine") as mine:
        assert workdir.clean(device_root, include_active=True) == [mine]
    assert not mine.exists()  # its owner's exit copes with the removal
    assert workdir.clean(device_root) == [] and workdir.clean(device_root.parent / "nowhere") == []


def test_a_work_area_that_is_not_a_directory_is_refused(device_root: Path) -> None:
    (device_root / workdir.WORK).write_bytes(b"")
    with pytest.raises(CorruptFile, match=r"\.work is not a directory"):
        workdir.clean(device_root)
    with pytest.raises(CorruptFile):
        with workdir.working_copy(device_root, "whatif"):
            pass
    with pytest.raises(BadInput):
        with workdir.working_copy(device_root, "../escape"):
            pass


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return persona_log(4, seed=3, canaries=(Canary("my bank pin is 4 8 1 9 3", day=1, repeats=2),))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, records) -> Path:
    return make_device(tmp_path_factory.mktemp("trained") / "dev", records)


def test_oracle_replays_a_ledger_copy_inside_the_device_and_removes_it(tmp_path, trained, monkeypatch,
                                                                          one_thread) -> None:
    import shutil

    dev = Path(shutil.copytree(trained, tmp_path / "dev"))
    seen = []
    real = oracle.Ledger
    monkeypatch.setattr(oracle, "Ledger", lambda root: seen.append(Path(root)) or real(root))
    with api.session(dev) as eng:
        replay = oracle.exact_replay(eng, None)
        assert replay.version == eng.manifest().version
    (root,) = seen
    assert root.parent.parent == dev / workdir.WORK and root.parent.name.startswith("oracle-")
    assert not root.parent.exists() and list((dev / workdir.WORK).iterdir()) == []


def test_a_what_if_killed_after_its_copy_leaves_it_in_the_device_where_clean_and_forget_find_it(
        tmp_path, records, trained, one_thread) -> None:
    import shutil

    dev = Path(shutil.copytree(trained, tmp_path / "dev"))
    day = sorted({r["timestamp"][:10] for r in records})[1]
    kept = {r["text"] for r in records if r["timestamp"][:10] != day}
    gone = private_texts([r["text"] for r in records if r["timestamp"][:10] == day and r["text"] not in kept])
    assert "my bank pin is 4 8 1 9 3" in gone
    stale = dev / workdir.WORK / "whatif-older"  # an unheld copy the what-if must not copy into its own
    stale.mkdir(parents=True)
    (stale / "marker").write_bytes(b"old")
    before = snapshot(dev)
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    code = ("import sys\nfrom assistant_forget.verify.verification import VerifyConfig, what_if\n"
            "what_if(sys.argv[1], sys.argv[2], VerifyConfig(retained=20, unseen=20))\nprint('finished')\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": str(tmp), "HOME": str(tmp),
           "AF_CRASH_AT": "verify.copy_made", "OMP_NUM_THREADS": "1", "MPLCONFIGDIR": str(tmp / "mpl")}
    res = subprocess.run([sys.executable, "-c", code, str(dev), day], env=env, cwd=REPO, capture_output=True,
                         text=True, encoding="utf-8", timeout=300)
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    copies = [p for p in (dev / workdir.WORK).iterdir() if p.name.startswith("whatif-") and p != stale]
    (copy,) = copies
    assert (copy / "device" / "logs.sqlite").is_file()
    assert not (copy / "device" / workdir.WORK).exists() and not (copy / "device" / ".lock").exists()
    assert set(find_texts(copy, gone)) == set(gone)  # the copy holds the day: it is what must not survive
    assert find_texts(tmp, gone) == {}  # and nothing went to the temporary directory
    assert sorted(workdir.clean(dev)) == sorted([copy, stale])  # what every writing command's recovery runs
    assert list((dev / workdir.WORK).iterdir()) == []
    assert snapshot(dev) == {k: v for k, v in before.items() if not k.startswith(workdir.WORK)}
    api.forget(dev, date=day, mode="fast")
    assert find_texts(dev, gone) == {} and find_texts(tmp, gone) == {}
