"""docs/toolkit.md runs as written: its Python blocks in order in one scratch directory, its `file:` blocks
written to files, its console commands run (with this interpreter) — and what it promises is checked."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "toolkit.md"
BLOCK = re.compile(r"```(\w+)([^\n]*)\n(.*?)```", re.S)


def blocks() -> list[tuple[str, str, str]]:
    return [(lang, info.strip(), body) for lang, info, body in BLOCK.findall(DOC.read_text(encoding="utf-8"))]


def run_console(body: str, cwd: Path, env: dict) -> list[str]:
    """Each `$ ` line: `export K=V` sets the environment, else the command runs; returns their stdouts."""
    outs = []
    for line in body.splitlines():
        if not line.startswith("$ "):
            continue
        argv = shlex.split(line[2:])
        if argv[0] == "export":
            key, _, value = argv[1].partition("=")
            env[key] = value
            continue
        if argv[0] == "python":
            argv[0] = sys.executable
        elif argv[0] == "assistant-forget":
            argv[:1] = [sys.executable, "-m", "assistant_forget.cli"]
        out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, f"{line}\n{out.stderr[-2000:]}"
        outs.append(out.stdout)
    return outs


def test_the_tutorial_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    found = blocks()
    python = [(info, body) for lang, info, body in found if lang == "python"]
    assert len(python) >= 3 and len(python[0][1].splitlines()) <= 30  # the first example: at most 30 lines
    scope: dict = {}
    for info, body in python:
        if info.startswith("file:"):
            (tmp_path / info.removeprefix("file:").strip()).write_text(body, encoding="utf-8")
        else:
            exec(compile(body, str(DOC), "exec"), scope)  # noqa: S102 - the documentation's own code
    assert scope["exact"]["state"] == "exact" and scope["done"]["state"] == "exact"
    assert scope["exact"]["method"] == "exact" and scope["fast"]["method"] == "fast"
    receipts = [json.loads(x) for x in (tmp_path / "my-device" / "receipts.jsonl").read_text().splitlines()]
    assert [r["type"] for r in receipts] == ["forget", "forget", "exact_pass"]

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(DOC.parents[1]), os.environ.get("PYTHONPATH", "")])}
    console = next(body for lang, _, body in found if lang == "console")
    _, listing, forgot, history, _ = run_console(console, tmp_path, env)
    assert re.search(r"^scrub\s+approximate", listing, re.M)
    receipt = json.loads(forgot)
    assert receipt["method"] == "scrub" and receipt["config"] == {"steps": 4, "lr": 0.0005}
    assert receipt["state"] == "approximate" and receipt["repair_steps"] == 4
    assert receipt["id"] in {r["id"] for r in json.loads(history)}
    after = subprocess.run([sys.executable, "-m", "assistant_forget.cli", "status", "--device", "phone", "--json"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert json.loads(after.stdout)["state"] == "exact"  # maintain ran the exact pass


def test_a_method_of_your_own_is_refused_where_it_is_not_registered(tmp_path):
    """Without ASSISTANT_FORGET_METHODS the CLI does not know `scrub`, and says how to make it known."""
    out = subprocess.run([sys.executable, "-m", "assistant_forget.cli", "forget", "--device", str(tmp_path / "x"),
                          "--date", "2026-01-04", "--mode", "scrub"], capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "ASSISTANT_FORGET_METHODS"})
    assert out.returncode == 2 and "--mode must be one of" in out.stderr and "scrub" in out.stderr
