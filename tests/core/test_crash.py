"""Crash safety (DESIGN invariant 5): SIGKILL at every named crash point, and after random delays, leaves a
device that readers can use and that recovery brings to exactly the uninterrupted result.

The work is done by tools/crash_inject.py (its benchmark mode runs hundreds of random injections); here
each crash point is hit once, plus a few random delays, one kill of the real command line and one more kill
at the directory exchange of a re-export that adds CoreML to the live version.

Two harnesses: a 2-day one for most operations, and a 9-day one for the exact forget, so that its rewind goes
to a real ledger checkpoint (written after the 7th trained day) and its kills land in a replay from there.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assistant_forget.core import crashpoints

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
import crash_inject as ci  # noqa: E402

PLAN = [  # (crash point, an operation that passes it, which hit kills)
    ("forget.journal_written", "forget_fast", 1),
    ("store.rows_deleted", "forget_fast", 1),
    ("store.wal_checkpointed", "forget_exact", 1),
    ("forget.rows_deleted", "forget_exact", 1),
    ("timeline.rewound", "forget_exact", 1),
    ("timeline.day_trained", "forget_exact", 1),
    ("timeline.subtracted", "forget_fast", 1),
    ("ledger.tensor_written", "forget_exact", 3),
    ("ledger.manifest_replaced", "forget_fast", 1),
    ("ledger.file_removed", "forget_fast", 1),
    ("forget.model_updated", "forget_fast", 1),
    ("publish.version_built", "forget_exact", 1),
    ("publish.version_renamed", "maintain", 1),
    ("publish.current_swapped", "train", 1),
    ("publish.exchanged", "export", 1),
    ("forget.exported", "forget_exact", 1),
    ("forget.receipt_appended", "forget_fast", 1),
    ("forget.exact_pass_synced", "maintain", 1),
    ("forget.exact_pass_journaled", "maintain", 1),
    ("forget.exact_pass_receipt", "maintain", 1),
    ("verify.copy_made", "verify_whatif", 1),
]
EXTRA = 4  # jobs besides PLAN: two random delays, the command line, the exchange of an export adding CoreML
SHORT = ci.HarnessConfig(days=2, forget_index=0, untrained=1)
# 9 days with data: a checkpoint after the 7th; the exact forget removes the 8th, so it rewinds to that
# checkpoint and replays one day (from the initial state it would train 8)
CHECKPOINTED = ci.HarnessConfig(days=9, forget_index=7, untrained=1)


@pytest.fixture(scope="module")
def harnesses(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ci.Harness]:
    """The two harnesses, templates built; the checkpointed one also profiled (crash point hits) on its forget."""
    short = ci.Harness(tmp_path_factory.mktemp("crash"), SHORT)
    short.prepare(profile=False)
    long = ci.Harness(tmp_path_factory.mktemp("crash-checkpointed"), CHECKPOINTED)
    long.prepare(profile=True, ops=("forget_exact",))
    return {"short": short, "checkpointed": long}


@pytest.fixture(scope="module")
def outcomes(harnesses: dict[str, ci.Harness]) -> dict[str, ci.Outcome]:
    """Every planned kill, two random delays, one kill of the real command line and the CoreML exchange; every
    exact forget on the checkpointed harness."""
    rng = random.Random(11)
    jobs = {point: {"op": op, "point": point, "n": n} for point, op, n in PLAN}
    jobs |= {f"delay-{op}": {"op": op, "delay": rng.uniform(0.1, 1.0)} for op in ("forget_exact", "forget_fast")}
    jobs["cli"] = {"op": "forget_exact", "point": "forget.rows_deleted", "cli": True}
    jobs["exchange-coreml"] = {"op": "export_coreml", "point": "publish.exchanged"}
    out: dict[str, ci.Outcome] = {}
    for name, h in harnesses.items():
        mine = {k: job for k, job in jobs.items() if (job["op"] == "forget_exact") == (name == "checkpointed")}
        out |= dict(zip(mine, h.inject_many(list(mine.values()), workers=2)))
    return {k: out[k] for k in jobs}


def test_the_exact_forget_rewinds_to_a_real_checkpoint(harnesses: dict[str, ci.Harness]) -> None:
    h = harnesses["checkpointed"]
    days, day = h.info["days"], h.info["day"]
    full = json.loads((h.templates / "full" / "ledger" / "manifest.json").read_text(encoding="utf-8"))
    assert len(days) == 9 and list(full["days"]) == days and day == days[7]
    assert list(full["checkpoints"]) == [days[6]]  # after the 7th trained day, before the forgotten one
    assert h.profile_errors == {}
    hits = h.profiles["forget_exact"].hits
    assert hits.get("timeline.rewound") == 1
    assert hits.get("timeline.day_trained") == len(days[8:]) == 1  # replayed from the checkpoint: day 9 only
    never = json.loads((h.templates / "never" / "ledger" / "manifest.json").read_text(encoding="utf-8"))
    assert never["checkpoints"] == full["checkpoints"]  # the reference keeps the same checkpoint, byte for byte


def test_every_crash_point_is_called_once_in_the_code_and_planned_here() -> None:
    sources = "".join(p.read_text(encoding="utf-8") for p in (REPO / "assistant_forget").rglob("*.py"))
    calls = re.findall(r'crashpoints\.hit\("([^"]+)"\)', sources)
    assert sorted(calls) == sorted(crashpoints.POINTS)  # each point at exactly one place
    assert sorted(p for p, _, _ in PLAN) == sorted(crashpoints.POINTS)


def test_armed_point_kills_at_the_nth_hit_and_unarmed_costs_nothing(tmp_path: Path) -> None:
    code = ("from assistant_forget.core import crashpoints as c\n"
            "c.hit('forget.rows_deleted'); c.hit('forget.exported'); c.hit('forget.rows_deleted')\n"
            "print('alive', flush=True)\nc.hit('forget.rows_deleted')\nprint('survived')\n")
    env = {"AF_CRASH_AT": "forget.rows_deleted:3", "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, encoding="utf-8",
                         cwd=REPO)
    assert res.returncode == -9 and res.stdout == "alive\n"
    crashpoints.configure(None)
    t0 = time.perf_counter()
    for _ in range(100_000):
        crashpoints.hit("forget.rows_deleted")
    assert time.perf_counter() - t0 < 0.5  # ~10 ms: an unarmed point is one global comparison
    crashpoints.configure(None, log=tmp_path / "hits")  # counting mode: every hit is logged, nothing dies
    for name in ("forget.rows_deleted", "forget.exported", "forget.rows_deleted"):
        crashpoints.hit(name)
    crashpoints.configure(None)
    hits = (tmp_path / "hits").read_text(encoding="utf-8").split()
    assert hits == ["forget.rows_deleted", "forget.exported", "forget.rows_deleted"]
    with pytest.raises(ValueError, match="unknown crash point"):
        crashpoints.configure("forget.nowhere")
    with pytest.raises(ValueError, match="integer >= 1"):
        crashpoints.configure("forget.exported:0")


@pytest.mark.parametrize("point,op,n", PLAN, ids=[p for p, _, _ in PLAN])
def test_kill_at_crash_point_then_recover(outcomes: dict[str, ci.Outcome], point: str, op: str, n: int) -> None:
    out = outcomes[point]
    assert out.killed, f"{op} never reached {point} #{n}: {out.after_kill}"
    assert out.after_kill == []  # no known window is left: every kill leaves a device a reader can use
    assert out.after_recovery == []
    if op.startswith("forget"):
        assert out.phase == "pending"  # every point of a forget lies after its journal is durable


def test_random_delays_and_a_killed_command_line(outcomes: dict[str, ci.Outcome]) -> None:
    cli = outcomes["cli"]
    assert cli.killed and cli.phase == "pending"  # AF_CRASH_AT armed the real `assistant-forget forget`
    for key in ("delay-forget_exact", "delay-forget_fast", "cli", "exchange-coreml"):
        assert outcomes[key].after_kill == [] and outcomes[key].after_recovery == [], outcomes[key]
    assert outcomes["exchange-coreml"].killed  # adding CoreML to the live version exchanges its directory
    summary = ci.summarize(list(outcomes.values()))
    assert summary["runs"] == len(PLAN) + EXTRA and summary["failures"] == 0
    assert summary["forgets_completed"] == summary["forgets"] == 3 + sum(op.startswith("forget") for _, op, _ in PLAN)
    assert summary["inconsistent_after_kill"] == {}
    assert summary["runs_with_forgotten_text_left"] == summary["runs_with_traces_outside_device"] == 0


def test_a_journal_killed_before_its_rename_is_removed_on_next_open(tmp_path: Path) -> None:
    """A kill inside the journal's atomic write (found by the random delays) leaves only a temp file."""
    from assistant_forget import api
    from devkit import make_device, persona_log

    dev = make_device(tmp_path / "dev", persona_log(2, mean=3.0))
    half = dev / ".tmp-journal.json.4242"
    half.write_text('{"format": 1, "ids": ["u1"', encoding="utf-8")  # what a kill between write and rename leaves
    assert api.status(dev)["pending_forget"] is False  # never durable: not a pending forget
    api.maintain(dev)  # any write command opens the device and cleans up
    assert not half.exists() and not list(dev.rglob(".tmp-*"))


def test_the_harness_finds_duplicate_exact_pass_lines_and_traces_outside_the_device(tmp_path: Path) -> None:
    """receipts.read_all merges lines of one id, so the harness counts raw lines; TMPDIR copies are found."""
    dev = tmp_path / "dev"
    dev.mkdir()
    line = '{"id": "r1", "type": "exact_pass"}\n'
    (dev / "receipts.jsonl").write_text(line * 2 + '{"id": "r1", "verification": {}}\n', encoding="utf-8")
    problems = ci.receipt_checks(dev, "maintain", "r1")
    assert any("appears 2 times" in p for p in problems) and any("has 2 exact_pass" in p for p in problems)
    (dev / "receipts.jsonl").write_text(line, encoding="utf-8")
    assert ci.receipt_checks(dev, "maintain", "r1") == []
    (dev / ci.MAINTAIN_JOURNAL).write_text('{"receipt": "r2"}', encoding="utf-8")
    assert ci.maintain_journal(dev) == ("r2", [])
    assert ci.receipt_checks(dev, "maintain", "r2")  # journal left, and its pass has no receipt
    tmp = tmp_path / "tmp" / "assistant-forget-whatif-x" / "device"
    tmp.mkdir(parents=True)
    (tmp / "logs.sqlite").write_bytes("\x00remind me about grüße\x00".encode())
    found = ci.outside_checks([tmp_path / "tmp", tmp_path / "missing"], ["Remind me about grüße"])
    assert len(found) == 2 and "text" in found[0] and "copy of the log" in found[1]
    (dev / ci.WORK / "copy-1").mkdir(parents=True)
    assert ci.work_copies(dev) == [f"{ci.WORK}/copy-1 is a verification work copy"]
