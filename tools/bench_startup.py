"""Start-up of the read-only commands, whole process, side by side with a bare interpreter.

    python tools/bench_startup.py [--runs 5] [--days 6]

Builds a small trained device (a synthetic persona, one fast forget so that `history` has a receipt and
`status` a pending exact pass), then for each command runs, in turn, `python -c "import sqlite3"` and the
command, `--runs` times (paired, so a load spike hits both), and prints the medians, the ratio and the
target of issue 17: a command at most 1.5x the bare interpreter + 0.15 s. Also the peak RSS of each command
(ru_maxrss of the child). The CI never asserts timings; tests/test_startup.py asserts the import rule.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


RSS = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
       "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def timed(argv: list[str]) -> float:
    """Wall seconds of one child process."""
    t = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - t


def peak_mib(argv: list[str]) -> float:
    """Peak RSS of one run of `argv`, measured by a wrapper that has no other child."""
    out = subprocess.run([sys.executable, "-c", RSS, *argv], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--days", type=int, default=6)
    args = ap.parse_args()
    from assistant_forget import api
    from devkit import make_device, persona_log

    with tempfile.TemporaryDirectory() as tmp:
        dev = make_device(Path(tmp) / "dev", persona_log(days=args.days))
        days = sorted(api.status(dev)["days"])
        api.forget(dev, date=days[1], mode="fast")
        cli = [sys.executable, "-m", "assistant_forget.cli"]
        commands = {
            "status": cli + ["status", "--device", str(dev)],
            "history": cli + ["history", "--device", str(dev)],
            "forget --dry-run": cli + ["forget", "--device", str(dev), "--date", days[0], "--dry-run"],
            "verify --help": cli + ["verify", "--help"],
            "forget --mode fast (writes)": cli + ["forget", "--device", str(dev), "--date", days[2], "--mode", "fast"],
        }  # the last one forgets a day: run once, after the read-only ones
        bare = [sys.executable, "-c", "import sqlite3"]
        print(f"{'command':30s} {'median s':>9s} {'bare s':>7s} {'ratio':>6s} {'RSS MiB':>8s}  target (<= 1.5 x bare + 0.15 s)")
        for name, argv in commands.items():
            writes = "writes" in name
            pairs = [(timed(bare), timed(argv)) for _ in range(1 if writes else args.runs)]
            b = statistics.median(p[0] for p in pairs)
            c = statistics.median(p[1] for p in pairs)
            rss = peak_mib(argv) if not writes else float("nan")
            ok = "-" if writes else "met" if c <= 1.5 * b + 0.15 else "missed"
            print(f"{name:30s} {c:9.3f} {b:7.3f} {c / b:6.1f} {rss:8.0f}  {ok}")


if __name__ == "__main__":
    main()
