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
    python tools/bench_quality.py --days 120 --forgets 20 --lira 16 --ray --workers 2   # shadows on Ray (same figures)
    python tools/bench_quality.py --source clinc150 --days 60 --forgets 10 --lira 0 --canary-repeats 0 \
        --unseen 500 --force-tradeoff --tradeoff-days 10      # the real-utterance device (device_sim.real)

Statistical meaning (issue 18): 500 held-out utterances put 0.2 point on each one, so beside each day's point
figure the bench gives, for the fast model AND for the model before the forget, the paired comparison with
the oracle on the same utterances (verify.stats.compare: the bootstrap interval and McNemar's p), whether it
is significant at all and beyond the 0.5 point margin (stats.significant), and over all forgotten days the
mean signed gap with a bootstrap interval that resamples the held-out utterances jointly for every day (the
days share the utterances, so pooling their pairs as independent would understate the noise).
--canary-repeats 0 plants no canary: each day is forgotten from the trained device itself (exposure not
measured), which isolates the accuracy question from a heavy canary day.
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
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from assistant_forget import api
from assistant_forget.core.errors import BadInput
from assistant_forget.core.ray_executor import make_executor
from assistant_forget.verify import metrics, stats
from assistant_forget.runner.selector import Selector
from assistant_forget.families.assistant.personalize import DayTrainer, PersonalizationConfig
from assistant_forget.verify.scoring import score
from assistant_forget.verify.verification import (MEMORISED_BITS, VerifyConfig, backend_of, current_backend, exposure,
                                                  resolve_unseen, verify_forget)
from bench_devices import SOURCES, build, clinc_test_unseen, heldout, plant, records, secrets as canary_secrets
from device_sim.real import RealConfig

TH = metrics.Thresholds()
BEFORE_BITS = MEMORISED_BITS  # a canary must be at least this many bits more exposed than the oracle before forgetting
MARGIN = TH.accuracy_gap_points / 100  # the accuracy target as a fraction, the margin of stats.significant


def correctness(eng, model, rows, cfg: VerifyConfig) -> np.ndarray:
    """Per utterance of `rows`, whether `model` (None: the device's live export) gets its intent right, scored
    the way verification scores it (cfg.weights, the out-of-scope rule applied)."""
    b = current_backend(eng, cfg) if model is None else backend_of(model, eng, cfg)
    s = score(b, rows, cfg.batch_size)
    return s.pred == s.gold


def gap_figures(a: np.ndarray, b: np.ndarray, seed: int) -> dict:
    """accuracy(a) - accuracy(b) on the same utterances: point, paired-bootstrap interval, McNemar p, verdicts."""
    g = stats.compare(a, b, seed=seed)
    return {**g.figures(), "differs": stats.significant(g), "beyond_margin": stats.significant(g, MARGIN)}


def mean_gap_interval(diffs: np.ndarray, resamples: int = stats.BOOTSTRAP, confidence: float = stats.CONFIDENCE,
                      seed: int = 0) -> dict:
    """Mean over days of a per-day accuracy gap, with a bootstrap interval that resamples utterances.

    `diffs` (days, N): correct(a) - correct(b) in {-1, 0, 1} per day and held-out utterance, every day on the
    same N utterances. A replicate draws N utterance indices with replacement, the same for every day, and
    averages the days' gaps over them; the percentile interval (inverted CDF, as stats.paired_bootstrap_ci)
    of the replicates is the interval in points. Pure numpy, seeded.
    """
    d = np.asarray(diffs, dtype=float)  # (D, N)
    per_utt = d.mean(0)  # (N,): each utterance's gap averaged over days
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, per_utt.size, size=(resamples, per_utt.size))  # (B, N)
    reps = per_utt[idx].mean(1)  # (B,)
    low, high = np.quantile(reps, [(1 - confidence) / 2, (1 + confidence) / 2], method="inverted_cdf")
    return {"gap_points": 100 * float(per_utt.mean()), "interval_points": [100 * float(low), 100 * float(high)],
            "confidence": confidence, "days": int(d.shape[0]), "n": int(d.shape[1])}


def forget_once(src: Path, work: Path, day: str, canary: str, unseen: list, cfg: VerifyConfig,
                repair_steps: int | str | None = None, oracle=None, executor=None):
    """Fast-forget `day` on a fresh copy of `src` and verify it; (row, verification with its oracle).

    With `repair_steps` (the trade-off) only the repair differs from the main run: the oracle is reused,
    and "F:C" stands for the stopping rule instead of a fixed count: at least F steps, then stop once the retained
    loss is back at its pre-subtraction level (checked every F steps), at most C;
    and the canary is scored on the forgetting model alone (before and oracle are the main run's).
    """
    dev = work / "copy"
    shutil.rmtree(dev, ignore_errors=True)
    shutil.copytree(src, dev)
    t = time.perf_counter()
    with api.session(dev) as eng:
        if repair_steps is not None:  # only the repair changes: the ledger's model id stays the device's
            fam = eng.family
            floor, ceiling = (map(int, repair_steps.split(":")) if isinstance(repair_steps, str)
                              else (repair_steps, repair_steps))
            fam.cfg = replace(fam.cfg, repair_steps=floor, repair_steps_max=ceiling,
                              repair_per_step=1 if ceiling > floor else fam.cfg.repair_per_step)
            fam.trainer = DayTrainer(eng.store, fam.base.tokenizer, fam.base.labels, fam.cfg, fam.base.config.max_len)
            fam.min_repair_steps = floor
        taken: list[int] = []
        repair = eng.family.repair
        eng.family.repair = lambda *a, **k: taken.append(repair(*a, **k)) or taken[-1]  # the steps it took
        before = copy.deepcopy(eng.model)  # the model before the forget (verify_forget keeps its own copy private)
        receipt, ver = verify_forget(eng, Selector("date", day, day), "fast", cfg, unseen=unseen,
                                     canary=None if repair_steps is not None else canary, oracle=oracle,
                                     executor=executor)
        t_verified = time.perf_counter()
        if repair_steps is not None and canary is not None:
            ver.exact["exposure"] = exposure({"current": current_backend(eng, cfg)}, canary, (), cfg)
        rows, _ = resolve_unseen(eng, unseen, (), cfg)  # the held-out set verification scored (disjoint from the log)
        right = {"current": correctness(eng, None, rows, cfg), "oracle": correctness(eng, ver.oracle.model, rows, cfg),
                 "before": correctness(eng, before, rows, cfg)}
    shutil.rmtree(dev)
    oos = np.array([i == "oos" for _, i in rows])
    kinds = {"oos": oos, "in_scope": ~oos}  # where a gap comes from: the out-of-scope rule or the intents
    for m, c in right.items():  # the same utterances and models as verification's own accuracy figure
        if abs(c.mean() - ver.exact["accuracy"]["unseen"][m]) > 1e-6:
            raise RuntimeError(f"held-out accuracy of {m} is {c.mean()} here, {ver.exact['accuracy']['unseen'][m]} "
                               "in verification: not the same utterances")
    s = ver.exact  # the exact figures, in memory (the stored summary keeps only buckets and pass/fail)
    row = {"day": day, "forgotten": s["counts"]["forgotten"], "also_retained": s["counts"]["forgotten_also_retained"],
           "mia": s["mia_auc"], "lira": s["lira_auc"], "accuracy_unseen": s["accuracy"]["unseen"],
           "accuracy_retained": s["accuracy"]["retained"],
           "accuracy_gap_points": 100 * abs(s["accuracy"]["unseen"]["current"] - s["accuracy"]["unseen"]["oracle"]),
           "kl": s["kl"], "exposure": s["exposure"], "forget_model_s": receipt["timings_s"]["model"],
           "forget_total_s": receipt["timings_s"]["total"], "verify_s": s["seconds"],
           "wall_s": t_verified - t, "repair_steps": receipt["repair_steps"], "repair_taken": sum(taken),
           "accuracy_stats": {"fast_vs_oracle": gap_figures(right["current"], right["oracle"], cfg.seed),
                              "before_vs_oracle": gap_figures(right["before"], right["oracle"], cfg.seed),
                              "fast_vs_before": gap_figures(right["current"], right["before"], cfg.seed)},
           "by_kind_points": {kind: {m: 100 * float(right[m][sel].mean() - right["oracle"][sel].mean())
                                     for m in ("current", "before")} for kind, sel in kinds.items() if sel.any()},
           "diffs": {"fast_vs_oracle": right["current"].astype(int) - right["oracle"].astype(int),
                     "before_vs_oracle": right["before"].astype(int) - right["oracle"].astype(int)}}
    if repair_steps is None:
        expo = s["exposure"]["rank_bits"] if s["exposure"] else None
        row["pass"] = {"mia_gap": s["mia_auc"] is None or s["mia_auc"]["gap"] <= TH.mia_auc_gap,
                       "lira": s["lira_auc"] is None or s["lira_auc"]["current"] <= TH.lira_auc,
                       "accuracy": row["accuracy_gap_points"] <= TH.accuracy_gap_points + 1e-9,
                       "accuracy_not_significant": not row["accuracy_stats"]["fast_vs_oracle"]["beyond_margin"]}
        if expo is not None:
            row["pass"].update({"exposure_after": expo["current"] <= expo["oracle"] + TH.exposure_gap_bits,
                                "exposure_before": expo["before"] >= expo["oracle"] + BEFORE_BITS})
    return row, ver



def pooled(vers: list) -> dict:
    """One attack over every forgotten and unseen utterance of all forgets: AUC per model."""
    out = {}
    vers = [v for v in vers if "forgotten" in v.losses]  # a day whose every text is also said on another day: none
    for m in ("current", "oracle", "before"):
        f = np.concatenate([v.losses["forgotten"][m] for v in vers])
        u = np.concatenate([v.losses["unseen"][m] for v in vers])
        out[f"mia_{m}"] = metrics.loss_threshold_mia_auc(f, u)
        if all(v.lira for v in vers):
            out[f"lira_{m}"] = metrics.lira_auc(np.concatenate([v.lira[m][0] for v in vers]),
                                                np.concatenate([v.lira[m][1] for v in vers]))
    out["mia_gap"] = abs(out["mia_current"] - out["mia_oracle"])
    return out


def _f(x: float | None, width: int, digits: int) -> str:
    return f"{float('nan') if x is None else x:{width}.{digits}f}"


def print_rows(rows: list[dict]) -> None:
    print(f"{'day':10} {'n':>3} {'MIA cur':>7} {'orc':>6} {'bef':>6} {'|gap|':>6} {'LiRA cur':>8} {'orc':>6} "
          f"{'bef':>6} {'acc gap':>7} {'exp bef':>7} {'aft':>6} {'orc':>6} {'repair':>6} {'fast s':>6} {'wall s':>6}")
    for r in rows:
        m, li, e = r["mia"] or {}, r["lira"] or {}, (r["exposure"] or {}).get("rank_bits", {})
        print(f"{r['day']:10} {r['forgotten']:3d} {_f(m.get('current'), 7, 3)} {_f(m.get('oracle'), 6, 3)} "
              f"{_f(m.get('before'), 6, 3)} {_f(m.get('gap'), 6, 3)} {_f(li.get('current'), 8, 3)} "
              f"{_f(li.get('oracle'), 6, 3)} {_f(li.get('before'), 6, 3)} {r['accuracy_gap_points']:7.2f} "
              f"{_f(e.get('before'), 7, 2)} {_f(e.get('current'), 6, 2)} {_f(e.get('oracle'), 6, 2)} "
              f"{r['repair_steps']:6d} {r['forget_total_s']:6.2f} {r['wall_s']:6.1f}")


def print_accuracy_stats(rows: list[dict], summary: dict) -> None:
    """Per day: fast - oracle and before - oracle accuracy on the held-out utterances, with interval and p."""
    print("held-out accuracy vs the oracle, points (signed: negative = below the oracle), 95 % paired-bootstrap "
          "interval, McNemar p; '*' = significant, '!' = significantly beyond the 0.5 point margin")
    print(f"{'day':10} {'fast-orc':>8} {'interval':>15} {'p':>6}   {'before-orc':>10} {'interval':>15} {'p':>6}"
          f"  {'repair':>6} {'fast s':>6}")
    for r in rows:
        a, b = r["accuracy_stats"]["fast_vs_oracle"], r["accuracy_stats"]["before_vs_oracle"]
        mark = lambda g: "!" if g["beyond_margin"] else "*" if g["differs"] else " "  # noqa: E731
        ia, ib = a["interval_points"], b["interval_points"]
        print(f"{r['day']:10} {a['gap_points']:8.2f} [{ia[0]:6.2f},{ia[1]:6.2f}] {a['p_value']:6.3f}{mark(a)}  "
              f"{b['gap_points']:10.2f} [{ib[0]:6.2f},{ib[1]:6.2f}] {b['p_value']:6.3f}{mark(b)} "
              f"{r['repair_steps']:6d} {r['forget_total_s']:6.2f}")
    kinds = sorted({k for r in rows for k in r["by_kind_points"]})
    print("mean gap to the oracle by kind of held-out utterance, points: " + "; ".join(
        f"{k}: fast {statistics.mean(r['by_kind_points'][k]['current'] for r in rows if k in r['by_kind_points']):.2f}, "
        f"before {statistics.mean(r['by_kind_points'][k]['before'] for r in rows if k in r['by_kind_points']):.2f}"
        for k in kinds))
    for name, label in (("fast_vs_oracle", "fast - oracle"), ("before_vs_oracle", "before - oracle")):
        g = summary["mean_accuracy"][name]
        print(f"mean over {g['days']} forgotten days, {label}: {g['gap_points']:.2f} pt "
              f"[{g['interval_points'][0]:.2f}, {g['interval_points'][1]:.2f}] (utterance bootstrap, n={g['n']}); "
              f"mean |gap| {g['mean_abs_points']:.2f} pt; days significant {g['days_differ']}, beyond 0.5 pt "
              f"{g['days_beyond_margin']}")


def summarize(rows: list[dict], pool: dict, seed: int = 0) -> dict:
    n = len(rows)
    passes = {k: sum(r["pass"].get(k, False) for r in rows) for k in rows[0]["pass"]}
    mean_acc = {}
    for name in ("fast_vs_oracle", "before_vs_oracle"):
        mean_acc[name] = {**mean_gap_interval(np.stack([r["diffs"][name] for r in rows]), seed=seed),
                          "mean_abs_points": statistics.mean(abs(r["accuracy_stats"][name]["gap_points"]) for r in rows),
                          "days_differ": sum(r["accuracy_stats"][name]["differs"] for r in rows),
                          "days_beyond_margin": sum(r["accuracy_stats"][name]["beyond_margin"] for r in rows)}
    with_mia = [r for r in rows if r["mia"]]
    with_expo = [r for r in rows if r["exposure"]]
    return {"forgets": n, "passes": passes,
            "mean_mia_gap": statistics.mean(r["mia"]["gap"] for r in with_mia) if with_mia else None,
            "max_mia_gap": max(r["mia"]["gap"] for r in with_mia) if with_mia else None,
            "mean_accuracy_gap_points": statistics.mean(r["accuracy_gap_points"] for r in rows),
            "mean_accuracy": mean_acc,
            "mean_forget_total_s": statistics.mean(r["forget_total_s"] for r in rows),
            "mean_repair_steps": statistics.mean(r["repair_steps"] for r in rows),
            "mean_exposure_bits": {k: statistics.mean(r["exposure"]["rank_bits"][k] for r in with_expo)
                                   for k in ("before", "current", "oracle")} if with_expo else None,
            "pooled": pool, "targets_met": all(v == n for v in passes.values())
            and pool["mia_gap"] <= TH.mia_auc_gap and pool.get("lira_current", 0.5) <= TH.lira_auc}


def plot_tradeoff(curve: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.4))
    xs = [c["repair_steps"] for c in curve]
    third = (("mean_exposure_gap_bits", "exposure - oracle (bits)") if any(c["mean_exposure_gap_bits"] is not None
                                                                         for c in curve)
             else ("mean_signed_gap_points", "accuracy fast - oracle (pt, 95 %)"))
    panels = (("mean_mia_gap", "|MIA AUC gap|"), ("mean_accuracy_gap_points", "|accuracy gap| (pt)"), third,
              ("mean_forget_model_s", "fast forget, model (s)"))
    for k, (key, label) in enumerate(panels):
        ax = fig.add_subplot(1, 4, k + 1)
        ax.plot(xs, [float("nan") if c[key] is None else c[key] for c in curve], "o-")
        if key == "mean_signed_gap_points":
            ax.fill_between(xs, [c["mean_signed_interval_points"][0] for c in curve],
                            [c["mean_signed_interval_points"][1] for c in curve], alpha=0.2)
            ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xscale("symlog", linthresh=1)
        ax.set(xlabel="repair steps", title=label)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def tradeoff_point(steps: int, pts: list[dict], oracle_bits: dict, seed: int) -> dict:
    """The trade-off curve's point for `steps` repair steps over the re-forgotten days `pts`."""
    expo = [p["exposure"]["rank_bits"]["current"] - oracle_bits[p["day"]] for p in pts
            if p["exposure"] and oracle_bits.get(p["day"]) is not None]
    mean = mean_gap_interval(np.stack([p["diffs"]["fast_vs_oracle"] for p in pts]), seed=seed)
    return {"setting": str(steps), "repair_steps": statistics.mean(p["repair_taken"] for p in pts), "days": len(pts),
            "mean_mia_gap": statistics.mean(p["mia"]["gap"] for p in pts if p["mia"]),
            "mean_accuracy_gap_points": statistics.mean(p["accuracy_gap_points"] for p in pts),
            "mean_signed_gap_points": mean["gap_points"], "mean_signed_interval_points": mean["interval_points"],
            "days_beyond_margin": sum(p["accuracy_stats"]["fast_vs_oracle"]["beyond_margin"] for p in pts),
            "mean_exposure_gap_bits": statistics.mean(expo) if expo else None,
            "mean_forget_model_s": statistics.mean(p["forget_model_s"] for p in pts),
            "mean_forget_total_s": statistics.mean(p["forget_total_s"] for p in pts)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", default="generator", choices=SOURCES,
                    help="the persona's text: the generator's phrasings (default) or real CLINC150 val/test "
                         "utterances (device_sim.real)")
    ap.add_argument("--real", action="append", default=[], metavar="FIELD=VALUE",
                    help="with --source clinc150: a device_sim.real.RealConfig field (e.g. oos_rate=0.13); repeatable")
    ap.add_argument("--days", type=int, default=30, help="simulated days (default 30; the targets: 120)")
    ap.add_argument("--forgets", type=int, default=3,
                    help="days drawn and forgotten one at a time (default 3; the targets: 20)")
    ap.add_argument("--mean", type=float, default=20.0, help="mean utterances per day (default 20)")
    ap.add_argument("--seed", type=int, default=5, help="persona, device and draw seed")
    ap.add_argument("--canary-repeats", type=int, default=1024,
                    help="times the canary is said on its day (default 1024: fewer are hardly memorised; "
                         "0: no canary, each day forgotten from the trained device itself)")
    ap.add_argument("--lag", type=int, default=None,
                    help="forget each drawn day this many days after it, on a device whose history ends there "
                         "(default: at the end of the whole history)")
    ap.add_argument("--lira", type=int, default=4,
                    help="LiRA shadows per side (default 4; the targets: 16; 0 skips LiRA)")
    ap.add_argument("--unseen", type=int, default=200,
                    help="held-out utterances of the persona (default 200; the targets: 500)")
    ap.add_argument("--unseen-from", default="persona", choices=("persona", "clinc150_test"),
                    help="held-out utterances: the persona's own held-out set (default), or CLINC150 test + oos_test "
                         "texts the log never says (what `verify` falls back to on a device with no untrained day)")
    ap.add_argument("--candidates", type=int, default=0, help="canary candidates (default 0: all 10^5 - 1)")
    ap.add_argument("--tradeoff", default="0,8,16,32,64",
                    help="repair steps to compare (default 0,8,16,32,64); F:C is the retained-loss stopping rule: at "
                         "least F steps, stop once the retained loss is back at its pre-forget level, at most C")
    ap.add_argument("--tradeoff-days", type=int, default=3, help="forgotten days in the trade-off (default 3)")
    ap.add_argument("--force-tradeoff", action="store_true", help="run the trade-off even if every target is met")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--workers", type=int, default=1,
                    help="train the LiRA shadows on this many local processes (default 1: this process)")
    ap.add_argument("--ray", action="store_true", help="train the shadows on a local Ray instance (--workers CPUs)")
    ap.add_argument("--ray-address", default=None, metavar="ADDR", help="train them on the Ray cluster at ADDR")
    ap.add_argument("--json", type=Path, help="also write every figure as JSON here")
    ap.add_argument("--plot", type=Path, help="write the trade-off curve as a PNG here")
    args = ap.parse_args(argv)
    if not 1 <= args.forgets < args.days:
        ap.error("--forgets must be in [1, --days)")
    if args.lag is not None and (args.lag < 0 or not args.canary_repeats):
        ap.error("--lag must be >= 0, with a canary (--canary-repeats > 0)")
    if args.canary_repeats < 0:
        ap.error("--canary-repeats must be >= 0")
    try:
        real = RealConfig(**{k: float(v) if "." in v else int(v) for k, v in (f.split("=", 1) for f in args.real)})
    except (TypeError, ValueError, BadInput) as e:
        ap.error(f"--real FIELD=VALUE with a RealConfig field and a number: {e}")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    cfg = VerifyConfig(lira_pairs=args.lira, unseen=args.unseen, canary_candidates=args.candidates, seed=args.seed)
    if args.unseen_from == "persona":
        unseen = heldout(args.seed, args.unseen, args.source, real)
    else:
        said = {r["text"].casefold() for r in records(args.days, args.seed, args.mean, args.source, real=real)}
        unseen = clinc_test_unseen(said, args.unseen, args.seed)
    rows, vers, oracles, curve = [], [], {}, []
    with (make_executor(ray=args.ray, address=args.ray_address, workers=args.workers) as executor,
          tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp):
        work = Path(tmp)
        days = build(work / "trained", args.days, args.seed, args.mean, args.forgets, "bench_quality", args.source, real)
        secrets = canary_secrets(days, args.seed) if args.canary_repeats else dict.fromkeys(days)
        keep = set(days[: args.tradeoff_days])  # planted devices the trade-off reuses
        src = {}
        for i, day in enumerate(days):
            plant_s = 0.0
            if args.canary_repeats:
                src[day] = work / f"planted-{day}"
                plant_s = plant(work / "trained", src[day], day, secrets[day], args.days, args.seed, args.mean,
                                args.canary_repeats, args.lag, args.source, real)
            else:
                src[day] = work / "trained"
            row, ver = forget_once(src[day], work, day, secrets[day], unseen, cfg, executor=executor)
            row["plant_train_s"] = plant_s
            oracles[day] = ver.oracle
            rows.append(row)
            vers.append(ver)
            if day not in keep and args.canary_repeats:
                shutil.rmtree(src[day])
            e = (row["exposure"] or {}).get("rank_bits")
            a = row["accuracy_stats"]["fast_vs_oracle"]
            print(f"  [{i + 1}/{len(days)}] {day}: |MIA gap| {_f((row['mia'] or {}).get('gap'), 5, 3)}, acc fast-oracle "
                  f"{a['gap_points']:.2f} pt [{a['interval_points'][0]:.2f}, {a['interval_points'][1]:.2f}] "
                  f"p={a['p_value']:.3f}, before-oracle {row['accuracy_stats']['before_vs_oracle']['gap_points']:.2f}"
                  + (", exposure before/after/oracle " + "/".join(f"{e[m]:.1f}" for m in ("before", "current", "oracle"))
                     if e else "") + f", repair {row['repair_steps']}, fast {row['forget_total_s']:.2f} s, "
                  f"{row['wall_s'] + plant_s:.0f} s", file=sys.stderr)
        summary = summarize(rows, pooled(vers), args.seed)
        if args.force_tradeoff or not summary["targets_met"]:
            light = replace(cfg, lira_pairs=0)
            oracle_bits = {r["day"]: (r["exposure"] or {}).get("rank_bits", {}).get("oracle") for r in rows}
            for steps in [s if ":" in s else int(s) for s in args.tradeoff.split(",")]:
                pts = [forget_once(src[d], work, d, secrets[d], unseen, light, steps, oracles[d])[0]
                       for d in days[: args.tradeoff_days]]
                curve.append(tradeoff_point(steps, pts, oracle_bits, args.seed))
                print(f"  trade-off repair_steps={steps}: {curve[-1]}", file=sys.stderr)
    print(f"source {args.source}: {args.days} days, seed {args.seed}, mean {args.mean:g}/day, {len(unseen)} held-out "
          f"utterances ({args.unseen_from}, {sum(i == 'oos' for _, i in unseen)} oos)" + (f", {real}" if args.source == "clinc150" else ""))
    print_rows(rows)
    print_accuracy_stats(rows, summary)
    p = summary["pooled"]
    print(f"pooled over {len(rows)} forgets: MIA AUC current {p['mia_current']:.4f}, oracle {p['mia_oracle']:.4f}, "
          f"before {p['mia_before']:.4f}, |gap| {p['mia_gap']:.4f} (target <= {TH.mia_auc_gap})")
    if "lira_current" in p:
        print(f"pooled LiRA AUC ({args.lira} shadows per side): current {p['lira_current']:.4f}, oracle "
              f"{p['lira_oracle']:.4f}, before {p['lira_before']:.4f} (target <= {TH.lira_auc})")
    e = summary["mean_exposure_bits"]
    print(f"mean |MIA gap| {_f(summary['mean_mia_gap'], 6, 4)} (max {_f(summary['max_mia_gap'], 6, 4)}); mean |accuracy "
          f"gap| {summary['mean_accuracy_gap_points']:.2f} pt; mean repair steps {summary['mean_repair_steps']:.1f}, "
          f"mean fast forget {summary['mean_forget_total_s']:.2f} s"
          + (f"; mean exposure bits before {e['before']:.2f}, after {e['current']:.2f}, oracle {e['oracle']:.2f}"
             if e else ""))
    print("days passing each target: " + ", ".join(f"{k} {v}/{len(rows)}" for k, v in summary["passes"].items()))
    if curve:
        print(f"{'setting':>7} {'steps':>6} {'|MIA gap|':>9} {'|acc gap|':>9} {'fast-orc':>8} {'interval':>16} {'beyond':>6} "
              f"{'exp gap':>8} {'model s':>8} {'total s':>8}")
        for c in curve:
            iv = c["mean_signed_interval_points"]
            print(f"{c['setting']:>7} {c['repair_steps']:6.1f} {c['mean_mia_gap']:9.4f} {c['mean_accuracy_gap_points']:9.2f} "
                  f"{c['mean_signed_gap_points']:8.2f} [{iv[0]:6.2f},{iv[1]:6.2f}] {c['days_beyond_margin']:6d} "
                  f"{_f(c['mean_exposure_gap_bits'], 8, 2)} {c['mean_forget_model_s']:8.3f} "
                  f"{c['mean_forget_total_s']:8.3f}")
    print(f"personalisation: {PersonalizationConfig()}")
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        for r in rows:
            r["diffs"] = {k: v.tolist() for k, v in r["diffs"].items()}
        out = {"args": {k: str(v) for k, v in vars(args).items()}, "personalization": asdict(PersonalizationConfig()),
               "real": asdict(real) if args.source == "clinc150" else None,
               "rows": rows, "summary": summary, "tradeoff": curve}
        args.json.write_text(json.dumps(out, indent=2), encoding="utf-8")
    if args.plot and curve:
        plot_tradeoff(curve, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
