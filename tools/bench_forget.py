"""Benchmark: the cost of forgetting one day, per tier, against history length and the day's position.

For each history length H (days of a synthetic persona, trained nightly) and each forgotten day k (early,
middle, recent), on copies of the same trained device, side by side in one run:

  fast     api.forget(mode="fast"): subtract Δ_k, repair, purge, re-export ONNX (end to end)
  exact    api.forget(mode="exact"): rewind to the checkpoint before k, replay the later days, re-export
  retrain  delete the day, then retrain every retained day from the base model and re-export

Wall and CPU time (the library trains on one torch thread); ratios retrain/fast and exact/fast; exact cost
per replayed day. Run:

    python tools/bench_forget.py                       # default: H=60, a few minutes
    python tools/bench_forget.py --histories 30,90,180,365 --json out.json --plot docs/forget_cost.png
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from assistant_forget import api
from assistant_forget.core.ledger import Ledger
from bench_devices import make_device


def timed(fn) -> tuple[float, float, object]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def retrain_from_base(dev: Path, day: str) -> None:
    """The reference tier: forget the rows, throw the ledger and exports away, train every retained day."""
    from assistant_forget.device.device import Device
    from assistant_forget.device.store import LogStore

    with LogStore(Device.open(dev).store_path) as store:
        store.delete_day(day)
    shutil.rmtree(dev / "ledger")
    shutil.rmtree(dev / "exports", ignore_errors=True)
    api.train(dev)


def bench_history(work: Path, days: int, seed: int, mean: float, repeats: int, retrain_all: bool) -> list[dict]:
    src = work / f"h{days}"
    train_s = make_device(src, days, seed, mean)[1]
    trained = sorted(Ledger(src / "ledger").load_manifest().days)
    picks = {"early": trained[len(trained) // 10], "middle": trained[len(trained) // 2], "recent": trained[-2]}
    rows = []
    for where, day in picks.items():
        after = sum(1 for d in trained if d > day)
        tiers = ("fast", "exact", "retrain") if retrain_all or where == "middle" else ("fast", "exact")
        for tier in tiers:
            n = repeats if tier == "fast" else 1
            walls, cpus = [], []
            for _ in range(n):
                dev = work / f"copy-{days}-{where}-{tier}"
                shutil.rmtree(dev, ignore_errors=True)
                shutil.copytree(src, dev)
                if tier == "retrain":
                    w, c, _ = timed(lambda: retrain_from_base(dev, day))
                else:
                    w, c, _ = timed(lambda: api.forget(dev, date=day, mode=tier))
                walls.append(w)
                cpus.append(c)
                shutil.rmtree(dev)
            rows.append({"history_days": days, "position": where, "day": day, "days_after": after, "tier": tier,
                         "wall_s_p50": statistics.median(walls), "cpu_s_p50": statistics.median(cpus),
                         "runs": n})
        print(f"  H={days} {where:6s} k={day}: " + ", ".join(
            f"{r['tier']} {r['wall_s_p50']:.2f}s" for r in rows if r["position"] == where), file=sys.stderr)
    for r in rows:
        r["nightly_train_s_per_day"] = train_s / days
    return rows


def ratios(rows: list[dict]) -> list[dict]:
    out = []
    key = lambda r: (r["history_days"], r["position"])  # noqa: E731
    for k in sorted({key(r) for r in rows}):
        by = {r["tier"]: r for r in rows if key(r) == k}
        if "retrain" not in by:  # retraining costs the same wherever the day is: measured once, at the middle
            by["retrain"] = next(r for r in rows if r["tier"] == "retrain" and r["history_days"] == k[0])
        f, e, rt = by["fast"]["wall_s_p50"], by["exact"]["wall_s_p50"], by["retrain"]["wall_s_p50"]
        out.append({"history_days": k[0], "position": k[1], "days_after": by["exact"]["days_after"],
                    "fast_s": f, "exact_s": e, "retrain_s": rt, "retrain_over_fast": rt / f, "exact_over_fast": e / f,
                    "exact_s_per_replayed_day": e / max(by["exact"]["days_after"], 1)})
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for tier, style in (("fast", "o-"), ("exact", "s-"), ("retrain", "^-")):
        pts = sorted((r["history_days"], r["wall_s_p50"]) for r in rows if r["tier"] == tier and r["position"] == "middle")
        axes[0].plot(*zip(*pts), style, label=tier)
        pts = sorted((r["days_after"], r["wall_s_p50"]) for r in rows if r["tier"] == tier)
        if pts:
            axes[1].plot(*zip(*pts), style, label=tier)
    axes[0].set(xlabel="history length (days)", ylabel="wall time (s)", yscale="log",
                title="forget the middle day")
    axes[1].set(xlabel="trained days after the forgotten day", ylabel="wall time (s)", yscale="log",
                title="all positions and histories")
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--histories", default="60", help="comma-separated history lengths in days (default 60)")
    ap.add_argument("--seed", type=int, default=11, help="persona and device seed")
    ap.add_argument("--mean", type=float, default=40.0, help="mean utterances per day (default 40)")
    ap.add_argument("--repeats", type=int, default=5, help="runs of the fast tier per point (p50 reported)")
    ap.add_argument("--retrain-all", action="store_true", help="retrain from base for every position, not "
                                                                   "only the middle day")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--plot", type=Path, help="write a PNG of cost against history length here")
    args = ap.parse_args(argv)
    histories = [int(h) for h in args.histories.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-forget-") as tmp:
        for h in histories:
            rows += bench_history(Path(tmp), h, args.seed, args.mean, args.repeats, args.retrain_all)
    summary = ratios(rows)
    print(f"{'H':>4} {'where':7} {'after':>5} {'fast s':>7} {'exact s':>8} {'retrain s':>9} "
          f"{'retrain/fast':>12} {'exact/fast':>10} {'exact s/day':>11}")
    for s in summary:
        print(f"{s['history_days']:4d} {s['position']:7} {s['days_after']:5d} {s['fast_s']:7.3f} {s['exact_s']:8.2f} "
              f"{s['retrain_s']:9.2f} {s['retrain_over_fast']:12.1f} {s['exact_over_fast']:10.1f} "
              f"{s['exact_s_per_replayed_day']:11.3f}")
    print(f"nightly training: {rows[0]['nightly_train_s_per_day']:.3f} s/day (H={rows[0]['history_days']})")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
