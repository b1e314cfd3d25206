"""Benchmark: the strictest attacks on a forget, fast tier against exact, on the fp32 and the int8 export.

A persona's device (device_sim's generator, or real CLINC150 utterances with `--source clinc150`) lives D
days; N of them are drawn and each is forgotten on a fresh copy of the device into which a canary (a random
secret among 10^5) is planted on that day, said R times (tools/bench_devices.py). Each day is forgotten
with the fast tier, against the exact oracle, and verified with
every attack `verify --attacks all` runs (verify/verification.py) except LiRA (tools/bench_quality.py has it):

  accuracy      held-out accuracy gap to the oracle, with its paired-bootstrap interval (stats.py)
  loss-mia      |MIA AUC - oracle's|, forgotten vs held-out
  u-lira        per-example U-LiRA at 1 % FPR over K method models and K exact oracles (population.py)
  challenge     the NeurIPS'23 challenge's forgetting quality from the per-example epsilons
  model-diff    AUC of an attacker holding the export before and after the forget; exact's is the oracle's
  relearn       canary exposure after a relearning attack, minus the oracle's after the same attack
  int8          the fast tier re-measured on the app's int8 export: MIA gap and canary exposure vs fp32

The exact tier's model is the oracle byte for byte, so it is not forgotten again: its population (exact
method models against oracles) gives its U-LiRA and challenge figures, and its model-diff AUC is the
oracle's. Targets (issue 18): fast accuracy within 0.5 point of the oracle; U-LiRA TPR <= 2 % at 1 % FPR;
challenge quality within 10 % of the exact tier's; relearned exposure <= oracle's + 1 bit; model-diff AUC
<= exact's + 0.05; int8 changes the MIA gap by <= 0.01 and the exposure by <= 0.5 bit. Means over the days.

    python tools/bench_attacks.py                                       # a quick look: 20 days, 2 forgets, K=4
    python tools/bench_attacks.py --days 120 --forgets 10 --models 8 --json a.json          # the targets
    python tools/bench_attacks.py --source clinc150 --days 60 --forgets 10 --models 8       # real text
    python tools/bench_attacks.py --days 30 --forgets 6 --lag 1 --canary-repeats 1024       # the day after
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from assistant_forget import api
from assistant_forget.core import method as methods
from assistant_forget.core.ray_executor import make_executor
from assistant_forget.runner.forget import forget, make_plan
from assistant_forget.runner.selector import Selector
from assistant_forget.verify import metrics
from assistant_forget.verify.oracle import exact_replay
from assistant_forget.verify.runners import per_example_attacks
from assistant_forget.verify.verification import VerifyConfig, evaluate, only_forgotten, trained_texts
from bench_devices import SOURCES, build, heldout, plant, secrets as canary_secrets

TH = metrics.Thresholds()
ATTACKS = ("loss-mia", "exposure", "u-lira", "challenge-eps", "model-diff", "relearn")
INT8_ATTACKS = ("loss-mia", "exposure")


def forget_and_attack(dev: Path, day: str, canary: str, unseen: list, cfg: VerifyConfig, executor,
                      repair_steps: int | None = None) -> dict:
    """Fast-forget `day` on `dev` and run every attack while its texts are in memory (as
    verification.verify_forget does), then the fast model again on the int8 export, and the exact tier's
    population. The exact tier's model is the oracle byte for byte (tests/sim/test_versions.py), so its
    figures against the oracle are zero by construction and are not recomputed: what the exact tier needs
    here is its own population (its U-LiRA and challenge score: exact method models against oracles) and
    its model-diff AUC, the oracle's (before vs oracle), which the fast verification computes. With
    `repair_steps` the fast tier repairs that many steps instead of its budget (the trade-off)."""
    with api.session(dev) as eng:
        sel = Selector("date", day, day)
        method = methods.get("fast", None if repair_steps is None else {"steps": repair_steps})
        plan, exact_plan = make_plan(eng, sel, method), make_plan(eng, sel, "exact")
        rows = sel.match(eng.store)
        forgotten = [(u.text, u.intent) for u in rows]
        before = copy.deepcopy(eng.model)
        t = time.perf_counter()
        receipt = forget(eng, sel, method)
        forget_s = time.perf_counter() - t
        replay = exact_replay(eng, day)
        common = dict(kind="benchmark", tier=receipt["tier"], forgotten=forgotten, unseen=unseen, before=before,
                      canary=canary, day=day)
        ver = evaluate(eng, replay, cfg, rows=rows, plan=plan, executor=executor, **common)
        q = evaluate(eng, replay, replace(cfg, weights="onnx-int8", attacks=INT8_ATTACKS), **common)
        attacked = only_forgotten(forgotten, trained_texts(eng))
        day_rows = [u for u in rows if u.local_date == day]
        pe, _ = per_example_attacks(eng, replay, day, day_rows, list(dict.fromkeys(attacked)), exact_plan, cfg,
                                    executor)
    fast = {"fp32": figures(ver.exact), "int8": figures(q.exact), "forget_s": forget_s}
    exact = {"fp32": {"u_lira_tpr": pe["u_lira"]["tpr"], "u_lira_auc": pe["u_lira"]["auc"],
                      "challenge_quality": pe["challenge"]["quality"],
                      "median_epsilon": pe["challenge"]["median_epsilon"], "population_s": pe["seconds"],
                      "diff_auc": fast["fp32"]["diff_auc_exact"]}}
    return {"fast": fast, "exact": exact}


def figures(e: dict) -> dict:
    """The benchmark's figures from an exact verification summary (memory only: exposure in bits included)."""
    noise = e["accuracy_noise"]["current"]
    pe, md, rl = e.get("per_example") or {}, e.get("model_diff") or {}, e.get("relearn") or {}
    bits = (e.get("exposure") or {}).get("rank_bits", {})
    return {
        "accuracy_gap_points": noise["gap_points"], "accuracy_interval_points": noise["interval_points"],
        "accuracy_significant": noise["significant"],
        "before_gap_points": e["accuracy_noise"].get("before", {}).get("gap_points"),
        "mia_gap": (e.get("mia_auc") or {}).get("gap"), "mia_current": (e.get("mia_auc") or {}).get("current"),
        "u_lira_tpr": (pe.get("u_lira") or {}).get("tpr"), "u_lira_auc": (pe.get("u_lira") or {}).get("auc"),
        "challenge_quality": (pe.get("challenge") or {}).get("quality"),
        "median_epsilon": (pe.get("challenge") or {}).get("median_epsilon"),
        "population_s": pe.get("seconds"),
        "diff_auc": (md.get("current") or {}).get("auc"), "diff_auc_exact": (md.get("oracle") or {}).get("auc"),
        "relearn_gap_bits": rl.get("exposure_after_gap_bits"), "relearn_loss_recovered": rl.get("loss_recovered"),
        "exposure": {k: bits.get(k) for k in ("before", "current", "oracle")},
        "forgotten": e["counts"]["forgotten"],
    }


def mean(rows: list[dict], tier: str, key: str, arm: str = "fp32") -> float | None:
    vals = [r[tier][arm].get(key) for r in rows if r[tier].get(arm, {}).get(key) is not None]
    return statistics.mean(vals) if vals else None


def summarize(rows: list[dict]) -> dict:
    """Means over the forgotten days and the targets, each met or missed."""
    m = {t: {k: mean(rows, t, k) for k in ("accuracy_gap_points", "mia_gap", "u_lira_tpr", "u_lira_auc",
                                           "challenge_quality", "median_epsilon", "diff_auc", "diff_auc_exact",
                                           "relearn_gap_bits", "relearn_loss_recovered", "population_s")}
         for t in ("fast", "exact")}
    int8_mia = [abs(r["fast"]["int8"]["mia_gap"] - r["fast"]["fp32"]["mia_gap"]) for r in rows
                if r["fast"]["int8"]["mia_gap"] is not None]
    int8_exp = [abs(r["fast"]["int8"]["exposure"]["current"] - r["fast"]["fp32"]["exposure"]["current"]) for r in rows]
    m["int8"] = {"mia_gap_change": statistics.mean(int8_mia) if int8_mia else None,
                 "max_mia_gap_change": max(int8_mia) if int8_mia else None,
                 "exposure_change_bits": statistics.mean(int8_exp), "max_exposure_change_bits": max(int8_exp)}
    n = [r["fast"]["fp32"]["forgotten"] for r in rows]  # per day: the forgotten utterances attacked
    for t in ("fast", "exact"):  # U-LiRA pooled over utterances: a day of 2 utterances weighs 2, not 1/N
        m[t]["u_lira_tpr_pooled"] = sum(k * r[t]["fp32"]["u_lira_tpr"] for k, r in zip(n, rows)) / sum(n)
    f, x = m["fast"], m["exact"]
    abs_acc = statistics.mean(abs(r["fast"]["fp32"]["accuracy_gap_points"]) for r in rows)
    targets = {
        "accuracy_within_0.5pt": abs_acc <= TH.accuracy_gap_points,
        "u_lira_tpr_le_2pct": f["u_lira_tpr_pooled"] <= 0.01 + TH.u_lira_tpr_excess,
        "challenge_within_10pct": (f["challenge_quality"] is not None and x["challenge_quality"]
                                   and f["challenge_quality"] >= 0.9 * x["challenge_quality"]),
        "relearn_le_oracle_plus_1bit": f["relearn_gap_bits"] is not None
        and f["relearn_gap_bits"] <= TH.relearn_exposure_gap_bits,
        "model_diff_le_exact_plus_0.05": f["diff_auc"] is not None
        and f["diff_auc"] <= f["diff_auc_exact"] + TH.model_diff_auc_gap,
        "int8_mia_le_0.01": bool(int8_mia) and m["int8"]["mia_gap_change"] <= 0.01,
        "int8_exposure_le_0.5bit": m["int8"]["exposure_change_bits"] <= 0.5,
    }
    return {"forgets": len(rows), "mean": m, "mean_abs_accuracy_gap_points": abs_acc, "targets": targets}


def print_rows(rows: list[dict]) -> None:
    print(f"{'day':10} {'n':>3} {'acc gap':>7} {'interval':>15} {'MIA gap':>7} {'U-LiRA':>6} {'exact':>5} "
          f"{'quality':>7} {'exact':>5} {'med eps':>7} {'diff':>5} {'exact':>5} {'relearn':>7} {'exp bef':>7} "
          f"{'cur':>5} {'orc':>5} {'int8 MIA':>8} {'int8 exp':>8}")
    g = lambda v, w, d: f"{float('nan') if v is None else v:{w}.{d}f}"  # noqa: E731
    for r in rows:
        a, q, x = r["fast"]["fp32"], r["fast"]["int8"], r["exact"]["fp32"]
        lo, hi = a["accuracy_interval_points"]
        e = a["exposure"]
        print(f"{r['day']:10} {a['forgotten']:3d} {a['accuracy_gap_points']:7.2f} [{lo:6.2f},{hi:6.2f}] "
              f"{g(a['mia_gap'], 7, 3)} {g(a['u_lira_tpr'], 6, 3)} {g(x['u_lira_tpr'], 5, 3)} "
              f"{g(a['challenge_quality'], 7, 3)} {g(x['challenge_quality'], 5, 3)} {g(a['median_epsilon'], 7, 2)} "
              f"{g(a['diff_auc'], 5, 2)} {g(a['diff_auc_exact'], 5, 2)} {g(a['relearn_gap_bits'], 7, 2)} "
              f"{g(e['before'], 7, 2)} {g(e['current'], 5, 2)} {g(e['oracle'], 5, 2)} {g(q['mia_gap'], 8, 3)} "
              f"{g(q['exposure']['current'], 8, 2)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", choices=SOURCES, default="generator", help="the log's text (default generator)")
    ap.add_argument("--days", type=int, default=20, help="simulated days (default 20; targets: 120, real: 60)")
    ap.add_argument("--forgets", type=int, default=2, help="days forgotten, each on its own copy (targets: >= 10)")
    ap.add_argument("--mean", type=float, default=20.0, help="mean utterances per day (default 20)")
    ap.add_argument("--seed", type=int, default=5, help="persona, device and draw seed")
    ap.add_argument("--models", type=int, default=4, help="per-example attacks: models per side (default 4)")
    ap.add_argument("--horizon", type=int, default=2, help="per-example attacks: later days each model trains")
    ap.add_argument("--workers", type=int, default=None, help="processes training the models (default: every CPU)")
    ap.add_argument("--canary-repeats", type=int, default=8, help="times the canary is said on its day (default 8)")
    ap.add_argument("--lag", type=int, default=None, help="forget each day N days after it was said, on a device "
                                                         "whose history ends there (default: at the end)")
    ap.add_argument("--repair-steps", type=int, default=None, help="the fast tier repairs this many steps "
                                                                  "instead of its budget (the trade-off)")
    ap.add_argument("--unseen", type=int, default=500, help="held-out utterances (default 500)")
    ap.add_argument("--candidates", type=int, default=0, help="canary candidates (default 0: all 10^5 - 1)")
    ap.add_argument("--json", type=Path, help="also write every figure as JSON here")
    ap.add_argument("--ray", action="store_true", help="train the populations on a local Ray instance (--workers CPUs)")
    ap.add_argument("--ray-address", default=None, metavar="ADDR", help="train them on the Ray cluster at ADDR")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = VerifyConfig(attacks=ATTACKS, models=args.models, horizon=args.horizon, unseen=args.unseen,
                       canary_candidates=args.candidates, workers=args.workers)
    executor = make_executor(ray=args.ray, address=args.ray_address, workers=args.workers)
    unseen = heldout(args.seed, args.unseen, args.source)  # the persona's own held-out utterances, never in its log
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-attacks-") as tmp:
        work = Path(tmp)
        days = build(work / "src", args.days, args.seed, args.mean, args.forgets, "bench-attacks", args.source)
        api.export(work / "src", "onnx,onnx-int8")  # every forget publishes the int8 model too
        rows = []
        for day, secret in canary_secrets(days, args.seed).items():
            t = time.perf_counter()
            planted = work / "planted"
            plant(work / "src", planted, day, secret, args.days, args.seed, args.mean, args.canary_repeats,
                  lag=args.lag, source=args.source)
            if args.lag is not None:
                api.export(planted, "onnx,onnx-int8")
            row = {"day": day, **forget_and_attack(planted, day, secret, unseen, cfg, executor, args.repair_steps)}
            shutil.rmtree(planted)
            row["wall_s"] = time.perf_counter() - t
            rows.append(row)
            print(f"{day}: {row['wall_s']:.0f} s", file=sys.stderr)
            if args.json:  # after every day: a long run interrupted keeps what it measured
                write_json(args, rows, args.json)
    executor.shutdown()  # stops a local Ray instance
    print_rows(rows)
    summary = summarize(rows)
    print(json.dumps({k: summary[k] for k in ("mean_abs_accuracy_gap_points", "targets")}, indent=1))
    print(f"total {time.perf_counter() - t0:.0f} s; {args.source}, {args.days} days, {len(rows)} forgets, "
          f"K={args.models}, horizon {args.horizon}, {type(executor).__name__}")
    if args.json:
        write_json(args, rows, args.json, summary)
    return 0


def write_json(args, rows: list[dict], path: Path, summary: dict | None = None) -> None:
    path.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                                "summary": summary}, indent=1, default=float) + "\n")


if __name__ == "__main__":
    sys.exit(main())
