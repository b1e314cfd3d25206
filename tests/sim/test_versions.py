"""The same device, seed and log give the same bytes as before the toolkit's restructuring.

These are the model and export versions `python -m device_sim run --days 10 --seed 1` and `make demo`
(30 days, seed 7) gave on main before the package became layers with method and family protocols; a change
that alters them changes what a device computes, and must say so here.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

RUNS = {  # arguments -> (model version, export version)
    ("--days", "10", "--seed", "1"): ("aa8330cf60122355", "7a432a351b33c7fa"),
    ("--days", "30", "--seed", "7"): ("b20c382dca3b285e", "83fbb5b955bde3d4"),  # make demo
}


@pytest.mark.parametrize("args", list(RUNS), ids=lambda a: f"days{a[1]}-seed{a[3]}")
def test_a_simulated_device_gives_the_versions_it_gave_before(args, tmp_path):
    out = subprocess.run([sys.executable, "-m", "device_sim", "run", *args, "--device", str(tmp_path / "dev")],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict((line[:24].strip(), line[24:].strip())
                 for line in out.stdout.splitlines() if len(line) > 24)
    model, export = RUNS[args]
    assert lines["model version"] == f"{model} (exact)"
    assert lines["export version"] == export
