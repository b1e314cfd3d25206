"""Read-only commands start without the model's libraries: no torch, onnx, onnxruntime, coremltools or
matplotlib is imported by `status`, `history`, `forget --dry-run` or any `--help` (each run in a fresh
interpreter, as a person runs it). Timings are a benchmark's (tools/bench_startup.py), not asserted here."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from devkit import make_device, persona_log

HEAVY = ("torch", "onnx", "onnxruntime", "coremltools", "matplotlib", "device_sim.simulate")
PROBE = ("import json, sys\nfrom assistant_forget.cli import main\n"
         "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
         "print(json.dumps({'code': code, 'heavy': [m for m in %r if m in sys.modules]}), file=sys.stderr)" % (HEAVY,))


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    root = make_device(tmp_path_factory.mktemp("startup") / "dev", persona_log(days=3))
    from assistant_forget import api

    day = sorted(api.status(root)["days"])[1]
    api.forget(root, date=day, mode="fast")  # a receipt for `history`, a pending exact pass for `status`
    return root, sorted(api.status(root)["days"])[0]


def run(argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)
    return json.loads(out.stderr.strip().splitlines()[-1])


COMMANDS = {
    "status": lambda d, day: ["status", "--device", d], "status-json": lambda d, day: ["status", "--device", d, "--json"],
    "history": lambda d, day: ["history", "--device", d], "history-json": lambda d, day: ["history", "--device", d, "--json"],
    "dry-run": lambda d, day: ["forget", "--device", d, "--date", day, "--dry-run"],
    "dry-run-contains": lambda d, day: ["forget", "--device", d, "--contains", "a", "--dry-run", "--json"],
    "dry-run-exact": lambda d, day: ["forget", "--device", d, "--date", day, "--mode", "exact", "--dry-run"],
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_read_only_command_imports_no_model_library(device, name):
    root, day = device
    res = run(COMMANDS[name](str(root), day))
    assert res == {"code": 0, "heavy": []}


@pytest.mark.parametrize("command", ["", "init", "status", "train", "maintain", "export", "forget", "methods",
                                     "history", "import", "verify", "simulate"])
def test_every_help_imports_no_model_library(command):
    res = run([command, "--help"] if command else ["--help"])
    heavy = [m for m in res["heavy"] if not (command == "simulate" and m == "device_sim.simulate")]
    assert res["code"] == 0 and heavy == []


def test_the_probe_sees_a_heavy_import():
    """The check itself: a command that does load the model is caught."""
    res = run(["methods"])  # lists every method, SISA's torch code included
    assert "torch" in res["heavy"]
