"""A fast forget where a person waits: the whole `assistant-forget forget --mode fast` process and the
in-process call, on a long-lived device, side by side with the floors they cannot go under.

    python tools/bench_fast_forget.py                      # 365-day device (built: ~4 min), 5 paired runs
    python tools/bench_fast_forget.py --device DIR --runs 9   # reuse a trained device (it is only copied)

Each run forgets a different day on two fresh copies of the device, and times, in turn (paired, so a load
spike hits all of them): a bare interpreter (`python -c "import sqlite3"`), an interpreter that imports
torch (`python -c "import torch"`, the floor of any process that trains), the CLI's fast forget as a child
process, and `api.forget(mode="fast")` in this process (warmed up by one forget first, as a long-lived app
would be). Prints the medians, the targets of issue 17 (process <= 1.5 s, in-process <= 0.4 s), and which
heavy modules the process imported (from `-X importtime`): torch._dynamo and onnx must not be among them.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from assistant_forget import api
from bench_devices import make_device

TORCH_LABEL = 'python -c "import torch"'
HEAVY = ("torch", "torch._dynamo", "sympy", "onnx", "onnxruntime", "ml_dtypes", "coremltools", "matplotlib")


def timed(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - t


def imported(argv: list[str]) -> dict[str, float]:
    """Cumulative import seconds of each HEAVY module the process `argv` imported (from -X importtime)."""
    out = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], check=True, capture_output=True, text=True)
    found = {}
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            _, cumulative, name = line.split("|")
            if name.strip() in HEAVY:
                found[name.strip()] = int(cumulative) / 1e6
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=365, help="days of the persona when building (default 365)")
    ap.add_argument("--device", type=Path, help="a trained device to copy instead of building one")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = args.device
        if src is None:
            src = work / "device"
            n, train_s = make_device(src, args.days, args.seed, 40.0)
            print(f"built a {args.days}-day device ({n} utterances) in {train_s:.0f} s", file=sys.stderr)
        days = sorted(api.status(src)["days"])
        picks = [days[(i + 1) * len(days) // (args.runs + 3)] for i in range(args.runs + 2)]
        cli = [sys.executable, "-m", "assistant_forget.cli", "forget", "--mode", "fast"]

        warm = work / "warm"
        shutil.copytree(src, warm)
        api.forget(warm, date=picks[-1], mode="fast")  # imports, and the ONNX template cache of this version

        def fresh(name: str) -> Path:
            """A copy of the device with the warm template cache (a phone keeps its cache between forgets)."""
            dst = work / name
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst)
            shutil.copytree(warm / "cache", dst / "cache", dirs_exist_ok=True)
            return dst

        heavy = imported(cli + ["--device", str(fresh("imports")), "--date", picks[-2]])
        rows = []
        for day in picks[:args.runs]:
            a, b = fresh("process"), fresh("inproc")
            bare = timed([sys.executable, "-c", "import sqlite3"])
            torch_floor = timed([sys.executable, "-c", "import torch"])
            process = timed(cli + ["--device", str(a), "--date", day])
            t = time.perf_counter()
            api.forget(b, date=day, mode="fast")
            rows.append((bare, torch_floor, process, time.perf_counter() - t))
        med = [statistics.median(r[i] for r in rows) for i in range(4)]
        print(f"fast forget of one day on a {len(days)}-day device, medians of {args.runs} paired runs:")
        print(f"{'what':34s} {'median s':>9s}  target")
        print(f"{'bare python (import sqlite3)':34s} {med[0]:9.3f}")
        print(f"{TORCH_LABEL:34s} {med[1]:9.3f}  (floor of a process that trains)")
        print(f"{'forget --mode fast (process)':34s} {med[2]:9.3f}  <= 1.5 s: {'met' if med[2] <= 1.5 else 'missed'}")
        print(f"{'api.forget(mode=fast) in-process':34s} {med[3]:9.3f}  <= 0.4 s: {'met' if med[3] <= 0.4 else 'missed'}")
        print(f"process minus torch's import: {med[2] - med[1]:.3f} s")
        print("heavy modules the process imported (cumulative import s): "
              + ", ".join(f"{k} {v:.2f}" for k, v in heavy.items()) if heavy else "none")
        missing = [m for m in ("torch._dynamo", "onnx") if m in heavy]
        print(f"torch._dynamo / onnx on the path: {', '.join(missing) if missing else 'neither'}")


if __name__ == "__main__":
    main()
