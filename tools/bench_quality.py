"""Benchmark: does a fast forget look like the oracle? Membership attacks, accuracy and canary exposure.

A synthetic persona lives D days (default 30; 120 for the target run) on a device that trains every night.
N of those days (default 3; 20 for the target run) are drawn at random and forgotten one at a time, each on a fresh copy of the trained device
into which a canary (a random secret of device_sim's default format, 10^5 secrets) is planted on that day,
said R times (device_sim's canary option; the copy is then trained, which replays from the checkpoint
before the day, so it is exactly the device whose log had the canary from the start: one canary per
device, none interfering with another). The day is forgotten with the fast tier and verified while its
utterances are still in memory (verify.verify_forget): the oracle is the exact pass; unseen utterances
are the persona's held-out ones (device_sim.heldout_utterances); LiRA uses K shadow pairs (every pooled
utterance IN K shadows and OUT of K).

Targets (metrics.Thresholds): |MIA AUC - oracle's| <= 0.02, LiRA AUC <= 0.55, |accuracy - oracle's|
<= 0.5 point on held-out utterances, canary exposure after the forget <= oracle + 1 bit while before it
>= oracle + 8 bits. Per day, and pooled over all days (one attack over every forgotten and unseen
utterance: a per-day AUC over ~20 utterances moves by ~0.1 from sampling alone). If a target is missed
(or with --force-tradeoff), the fast forget is re-run on the first few days with a fixed number of repair
steps instead of PersonalizationConfig.repair_budget, against the same oracle: repair steps vs gaps vs time.

    python tools/bench_quality.py                              # default: a quick look (30 days, 3 forgets, K=4)
    python tools/bench_quality.py --days 120 --forgets 20 --lira 16 --unseen 500 --force-tradeoff   # targets (~40 min)
    python tools/bench_quality.py --lag 1 --forgets 8 --lira 0 --canary-repeats 4096   # forget the day after
    python tools/bench_quality.py --days 365 --forgets 50 --lira 32 --json q.json --plot q.png   # full size
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from assistant_forget import api
from assistant_forget.verify import metrics
from assistant_forget.runner.selector import Selector
from assistant_forget.families.assistant.personalize import DayTrainer, PersonalizationConfig
from assistant_forget.verify.verification import MEMORISED_BITS, VerifyConfig, current_backend, exposure, verify_forget
from bench_devices import build, heldout, plant, secrets as canary_secrets

TH = metrics.Thresholds()
BEFORE_BITS = MEMORISED_BITS  # a canary must be at least this many bits more exposed than the oracle before forgetting


def forget_once(src: Path, work: Path, day: str, canary: str, unseen: list, cfg: VerifyConfig,
                repair_steps: int | None = None, oracle=None):
    """Fast-forget `day` on a fresh copy of `src` and verify it; (row, verification with its oracle).

    With `repair_steps` (the trade-off) only the repair differs from the main run: the oracle is reused,
    and the canary is scored on the forgetting model alone (before and oracle are the main run's).
    """
    dev = work / "copy"
    shutil.rmtree(dev, ignore_errors=True)
    shutil.copytree(src, dev)
    t = time.perf_counter()
    with api.session(dev) as eng:
        if repair_steps is not None:  # only the repair changes: the ledger's model id stays the device's
            eng.cfg = replace(eng.cfg, repair_steps=repair_steps, repair_steps_max=repair_steps)
            eng.trainer = DayTrainer(eng.store, eng.base.tokenizer, eng.base.labels, eng.cfg, eng.base.config.max_len)
        receipt, ver = verify_forget(eng, Selector("date", day, day), "fast", cfg, unseen=unseen,
                                     canary=None if repair_steps is not None else canary, oracle=oracle)
        if repair_steps is not None:
            ver.exact["exposure"] = exposure({"current": current_backend(eng, cfg)}, canary, (), cfg)
    shutil.rmtree(dev)
    s = ver.exact  # the exact figures, in memory (the stored summary keeps only buckets and pass/fail)
    row = {"day": day, "forgotten": s["counts"]["forgotten"], "also_retained": s["counts"]["forgotten_also_retained"],
           "mia": s["mia_auc"], "lira": s["lira_auc"], "accuracy_unseen": s["accuracy"]["unseen"],
           "accuracy_retained": s["accuracy"]["retained"],
           "accuracy_gap_points": 100 * abs(s["accuracy"]["unseen"]["current"] - s["accuracy"]["unseen"]["oracle"]),
           "kl": s["kl"], "exposure": s["exposure"], "forget_model_s": receipt["timings_s"]["model"],
           "forget_total_s": receipt["timings_s"]["total"], "verify_s": s["seconds"],
           "wall_s": time.perf_counter() - t, "repair_steps": receipt["repair_steps"]}
    if repair_steps is None:
        expo = s["exposure"]["rank_bits"]
        row["pass"] = {"mia_gap": s["mia_auc"]["gap"] <= TH.mia_auc_gap,
                       "lira": s["lira_auc"] is None or s["lira_auc"]["current"] <= TH.lira_auc,
                       "accuracy": row["accuracy_gap_points"] <= TH.accuracy_gap_points + 1e-9,
                       "exposure_after": expo["current"] <= expo["oracle"] + TH.exposure_gap_bits,
                       "exposure_before": expo["before"] >= expo["oracle"] + BEFORE_BITS}
    return row, ver


def pooled(vers: list) -> dict:
    """One attack over every forgotten and unseen utterance of all forgets: AUC per model."""
    out = {}
    for m in ("current", "oracle", "before"):
        f = np.concatenate([v.losses["forgotten"][m] for v in vers])
        u = np.concatenate([v.losses["unseen"][m] for v in vers])
        out[f"mia_{m}"] = metrics.loss_threshold_mia_auc(f, u)
        if all(v.lira for v in vers):
            out[f"lira_{m}"] = metrics.lira_auc(np.concatenate([v.lira[m][0] for v in vers]),
                                                np.concatenate([v.lira[m][1] for v in vers]))
    out["mia_gap"] = abs(out["mia_current"] - out["mia_oracle"])
    return out


def print_rows(rows: list[dict]) -> None:
    print(f"{'day':10} {'n':>3} {'MIA cur':>7} {'orc':>6} {'bef':>6} {'|gap|':>6} {'LiRA cur':>8} {'orc':>6} "
          f"{'bef':>6} {'acc gap':>7} {'exp bef':>7} {'aft':>6} {'orc':>6} {'repair':>6} {'fast s':>6} {'wall s':>6}")
    for r in rows:
        m, li, e = r["mia"], r["lira"] or {}, r["exposure"]["rank_bits"]
        print(f"{r['day']:10} {r['forgotten']:3d} {m['current']:7.3f} {m['oracle']:6.3f} {m['before']:6.3f} "
              f"{m['gap']:6.3f} {li.get('current', float('nan')):8.3f} {li.get('oracle', float('nan')):6.3f} "
              f"{li.get('before', float('nan')):6.3f} {r['accuracy_gap_points']:7.2f} {e['before']:7.2f} "
              f"{e['current']:6.2f} {e['oracle']:6.2f} {r['repair_steps']:6d} {r['forget_total_s']:6.2f} "
              f"{r['wall_s']:6.1f}")


def summarize(rows: list[dict], pool: dict) -> dict:
    n = len(rows)
    passes = {k: sum(r["pass"][k] for r in rows) for k in rows[0]["pass"]}
    return {"forgets": n, "passes": passes,
            "mean_mia_gap": statistics.mean(r["mia"]["gap"] for r in rows),
            "max_mia_gap": max(r["mia"]["gap"] for r in rows),
            "mean_accuracy_gap_points": statistics.mean(r["accuracy_gap_points"] for r in rows),
            "mean_exposure_bits": {k: statistics.mean(r["exposure"]["rank_bits"][k] for r in rows)
                                   for k in ("before", "current", "oracle")},
            "pooled": pool, "targets_met": all(v == n for v in passes.values())
            and pool["mia_gap"] <= TH.mia_auc_gap and pool.get("lira_current", 0.5) <= TH.lira_auc}


def plot_tradeoff(curve: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.4))
    xs = [c["repair_steps"] for c in curve]
    panels = (("mean_mia_gap", "|MIA AUC gap|"), ("mean_accuracy_gap_points", "|accuracy gap| (pt)"),
              ("mean_exposure_gap_bits", "exposure - oracle (bits)"), ("mean_forget_model_s", "fast forget, model (s)"))
    for k, (key, label) in enumerate(panels):
        ax = fig.add_subplot(1, 4, k + 1)
        ax.plot(xs, [c[key] for c in curve], "o-")
        ax.set_xscale("symlog", linthresh=1)
        ax.set(xlabel="repair steps", title=label)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=30, help="simulated days (default 30; the targets: 120)")
    ap.add_argument("--forgets", type=int, default=3,
                    help="days drawn and forgotten one at a time (default 3; the targets: 20)")
    ap.add_argument("--mean", type=float, default=20.0, help="mean utterances per day (default 20)")
    ap.add_argument("--seed", type=int, default=5, help="persona, device and draw seed")
    ap.add_argument("--canary-repeats", type=int, default=1024,
                    help="times the canary is said on its day (default 1024: fewer are hardly memorised)")
    ap.add_argument("--lag", type=int, default=None,
                    help="forget each drawn day this many days after it, on a device whose history ends there "
                         "(default: at the end of the whole history)")
    ap.add_argument("--lira", type=int, default=4,
                    help="LiRA shadows per side (default 4; the targets: 16; 0 skips LiRA)")
    ap.add_argument("--unseen", type=int, default=200,
                    help="held-out utterances of the persona (default 200; the targets: 500)")
    ap.add_argument("--candidates", type=int, default=0, help="canary candidates (default 0: all 10^5 - 1)")
    ap.add_argument("--tradeoff", default="0,8,16,32,64", help="repair steps to compare (default 0,8,16,32,64)")
    ap.add_argument("--tradeoff-days", type=int, default=3, help="forgotten days in the trade-off (default 3)")
    ap.add_argument("--force-tradeoff", action="store_true", help="run the trade-off even if every target is met")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--json", type=Path, help="also write every figure as JSON here")
    ap.add_argument("--plot", type=Path, help="write the trade-off curve as a PNG here")
    args = ap.parse_args(argv)
    if not 1 <= args.forgets < args.days:
        ap.error("--forgets must be in [1, --days)")
    if args.lag is not None and args.lag < 0:
        ap.error("--lag must be >= 0")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    cfg = VerifyConfig(lira_pairs=args.lira, unseen=args.unseen, canary_candidates=args.candidates, seed=args.seed)
    unseen = heldout(args.seed, args.unseen)
    rows, vers, oracles, curve = [], [], {}, []
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        work = Path(tmp)
        days = build(work / "trained", args.days, args.seed, args.mean, args.forgets, "bench_quality")
        secrets = canary_secrets(days, args.seed)
        keep = set(days[: args.tradeoff_days])  # planted devices the trade-off reuses
        for i, day in enumerate(days):
            planted = work / f"planted-{day}"
            plant_s = plant(work / "trained", planted, day, secrets[day], args.days, args.seed, args.mean,
                            args.canary_repeats, args.lag)
            row, ver = forget_once(planted, work, day, secrets[day], unseen, cfg)
            row["plant_train_s"] = plant_s
            oracles[day] = ver.oracle
            rows.append(row)
            vers.append(ver)
            if day not in keep:
                shutil.rmtree(planted)
            print(f"  [{i + 1}/{len(days)}] {day}: |MIA gap| {row['mia']['gap']:.3f}, acc gap "
                  f"{row['accuracy_gap_points']:.2f} pt, exposure before/after/oracle "
                  + "/".join(f"{row['exposure']['rank_bits'][m]:.1f}" for m in ("before", "current", "oracle"))
                  + f", {row['wall_s'] + plant_s:.0f} s", file=sys.stderr)
        summary = summarize(rows, pooled(vers))
        if args.force_tradeoff or not summary["targets_met"]:
            light = replace(cfg, lira_pairs=0)
            oracle_bits = {r["day"]: r["exposure"]["rank_bits"]["oracle"] for r in rows}
            for steps in [int(s) for s in args.tradeoff.split(",")]:
                pts = [forget_once(work / f"planted-{d}", work, d, secrets[d], unseen, light, steps, oracles[d])[0]
                       for d in days[: args.tradeoff_days]]
                curve.append({"repair_steps": steps, "days": len(pts),
                              "mean_mia_gap": statistics.mean(p["mia"]["gap"] for p in pts),
                              "mean_accuracy_gap_points": statistics.mean(p["accuracy_gap_points"] for p in pts),
                              "mean_exposure_gap_bits": statistics.mean(
                                  p["exposure"]["rank_bits"]["current"] - oracle_bits[p["day"]] for p in pts),
                              "mean_forget_model_s": statistics.mean(p["forget_model_s"] for p in pts)})
                print(f"  trade-off repair_steps={steps}: {curve[-1]}", file=sys.stderr)
    print_rows(rows)
    p = summary["pooled"]
    print(f"pooled over {len(rows)} forgets: MIA AUC current {p['mia_current']:.4f}, oracle {p['mia_oracle']:.4f}, "
          f"before {p['mia_before']:.4f}, |gap| {p['mia_gap']:.4f} (target <= {TH.mia_auc_gap})")
    if "lira_current" in p:
        print(f"pooled LiRA AUC ({args.lira} shadows per side): current {p['lira_current']:.4f}, oracle "
              f"{p['lira_oracle']:.4f}, before {p['lira_before']:.4f} (target <= {TH.lira_auc})")
    e = summary["mean_exposure_bits"]
    print(f"mean |MIA gap| {summary['mean_mia_gap']:.4f} (max {summary['max_mia_gap']:.4f}); mean accuracy gap "
          f"{summary['mean_accuracy_gap_points']:.2f} pt; mean exposure bits before {e['before']:.2f}, after "
          f"{e['current']:.2f}, oracle {e['oracle']:.2f}")
    print("days passing each target: " + ", ".join(f"{k} {v}/{len(rows)}" for k, v in summary["passes"].items()))
    if curve:
        print(f"{'repair':>6} {'|MIA gap|':>9} {'acc gap pt':>10} {'exp gap':>8} {'model s':>8}")
        for c in curve:
            print(f"{c['repair_steps']:6d} {c['mean_mia_gap']:9.4f} {c['mean_accuracy_gap_points']:10.2f} "
                  f"{c['mean_exposure_gap_bits']:8.2f} {c['mean_forget_model_s']:8.3f}")
    print(f"personalisation: {PersonalizationConfig()}")
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        out = {"args": {k: str(v) for k, v in vars(args).items()}, "personalization": asdict(PersonalizationConfig()),
               "rows": rows, "summary": summary, "tradeoff": curve}
        args.json.write_text(json.dumps(out, indent=2), encoding="utf-8")
    if args.plot and curve:
        plot_tradeoff(curve, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
