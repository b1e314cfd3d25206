"""Benchmark: every registered forgetting method on one harness, the literature baselines beside the project's tiers.

A synthetic persona lives D days (default 40) on a device that trains every night; N of those days
(default 3) are drawn, and for each a canary is planted on that day as in tools/bench_quality.py (same
helpers, tools/bench_devices.py). Every method (default: each one registered, `assistant-forget methods`,
but auto, which runs fast or exact) then forgets the day on its own fresh copy of that device, through the
methods' one in-memory protocol (core/method.py):

  request = the forget's Request (runner/forget.py's make_plan, before the rows go); plan = method.plan(...)
  prepared = method.prepare(engine)         the work done before a forget, with the data (SISA: its ensemble)
  delete the day's rows from the store
  out = method.apply(engine, request, plan, forgotten=rows, prepared=prepared)
  model = out if it is a model (a measured-only method's) else the engine's (a committing method's)

The shipped methods: fast (subtract and repair), exact (rewind and replay), retrain (from the initial state),
subtraction (Amnesiac: subtract, no repair), finetune (fine-tune on retained days, no subtraction), and,
measured only, sisa (SISA: S time shards, retrain only the forgotten day's) and neggrad+ (NegGrad+: ascent
on the forgotten utterances, descent on retained ones). NegGrad+ and fine-tuning get the fast tier's repair
budget for the forget as their steps unless --steps says otherwise; a method of your own, registered through
ASSISTANT_FORGET_METHODS, is benchmarked with --methods NAME.

Timed: `apply`, the model update (wall and CPU, one torch thread), after the day's rows are deleted; a
committing method's includes committing its ledger, as a forget does. Deleting, purging and re-exporting
cost every method the same (tools/bench_forget.py times them end to end). `prepare` is reported as prep
(SISA's ensemble is trained before the forget, with the data, as its nightly training).
Quality: against the oracle (oracle.exact_replay, the exact pass; every exact method that commits, exact
and retrain, must equal it bit for bit), on PyTorch weights (the SISA ensemble has no single exported
graph), with the verify metrics: |MIA AUC - oracle| (loss threshold, forgotten vs the persona's held-out
utterances, pooled over the N days), accuracy gap on held-out utterances, KL(oracle || method) of the intent
head on held-out utterances and of the next-token head on the forgotten ones, canary exposure after - oracle;
LiRA with --lira K (slow: 2K shadow models per day). --json writes every figure; its "configs" are each
method's settings (steps None for NegGrad+ and fine-tuning: the fast tier's budget), and each day's row
names the method that ran, the config it ran with and its planned repair steps.

    python tools/bench_baselines.py                                  # default: 40 days, 3 forgets (a few minutes)
    python tools/bench_baselines.py --days 120 --forgets 10 --candidates 0 --lira 8 --json b.json   # fuller
    python tools/bench_baselines.py --methods fast,exact,sisa --shards 8
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
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from assistant_forget import api
from assistant_forget.core import method as registry
from assistant_forget.core.errors import BadInput
from assistant_forget.core.ledger import state_version
from assistant_forget.core.timeline import personal_state
from assistant_forget.device.device import Device
from assistant_forget.device.store import LogStore
from assistant_forget.families.assistant.personalize import PersonalizationConfig
from assistant_forget.methods.neggrad import NegGradConfig
from assistant_forget.methods.sisa import SisaConfig
from assistant_forget.runner.engine import Engine, open_engine
from assistant_forget.runner.forget import make_plan
from assistant_forget.runner.selector import Selector
from assistant_forget.verify import metrics
from assistant_forget.verify.oracle import Replay, exact_replay
from assistant_forget.verify.scoring import TorchBackend, lm_kl, score
from assistant_forget.verify.verification import VerifyConfig, exposure, lira, only_forgotten, resolve_unseen, retained_sample, \
    trained_texts
from bench_devices import build, heldout, plant, secrets

FIRST = ("fast", "exact", "retrain")  # listed first; then the other registered methods by name
SKIPPED = ("auto",)  # not benchmarked by default: it runs fast or exact
METHODS = tuple(n for n in FIRST if n in registry.names()) + tuple(
    n for n in registry.names() if n not in FIRST + SKIPPED)  # the default: every registered method but auto
# which command-line settings each method's Config takes (None: the Config's default)
CLI_SETTINGS = {"sisa": ("shards", "slice_every"), "neggrad+": ("steps", "alpha"), "finetune": ("steps",)}
BUDGETED = ("neggrad+", "finetune")  # steps None: the fast tier's repair budget for the forget (as many steps)


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    """(wall s, CPU s, result) of fn()."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def settings_for(name: str, given: dict, budget: int | None = None) -> dict:
    """The config settings of method `name`: the command line's that it takes, and for NegGrad+ and fine-tuning
    `steps` = the fast tier's repair budget `budget` when the command line gave none."""
    out = {k: given[k] for k in CLI_SETTINGS.get(name, ()) if given.get(k) is not None}
    if name in BUDGETED and out.get("steps") is None and budget is not None:
        out["steps"] = budget
    return out


def forget_with(name: str, eng: Engine, day: str, given: dict) -> tuple[dict, torch.nn.Module, Replay | None]:
    """Forget `day` on `eng` (a fresh copy) with the registered method `name`, in memory through its
    prepare / apply: (timings, model after, the oracle if name == "exact")."""
    rows = eng.store.by_day(day)  # the forgotten utterances, in memory
    # The forget's request, as a forget computes it before the rows go (the same for every method: make_plan
    # resolves a committing method only, so it is asked for the fast tier's plan, whose repair budget NegGrad+
    # and fine-tuning get as their steps).
    fp = make_plan(eng, Selector("date", day, day), "fast")
    request, budget = fp.request, fp.plan.repair_steps
    method = registry.get(name, settings_for(name, given, budget))
    plan = method.plan(request, eng.family)
    prep_s, _, prepared = timed(lambda: method.prepare(eng))
    eng.store.delete_ids([u.id for u in rows])
    replay = exact_replay(eng, day) if name == "exact" else None
    # a method written before `prepare` existed may lack the `prepared` keyword: it prepared nothing either
    kw = {} if prepared is None else {"prepared": prepared}
    wall, cpu, out = timed(lambda: method.apply(eng, request, plan, forgotten=rows, **kw))
    model = out if isinstance(out, torch.nn.Module) else eng.model
    row = {"method": plan.method, "config": plan.config, "repair_steps": plan.repair_steps,
           "wall_s": wall, "cpu_s": cpu,
           "prep_s": prep_s if prepared is not None else None,
           "replayed_days": getattr(prepared, "replayed", None)}
    if plan.exact and method.commits:  # must be the oracle, bit for bit
        row["version"] = state_version(personal_state(model, eng.timeline.personal))
    return row, model, replay


def measure(eng: Engine, replay: Replay, models: dict[str, torch.nn.Module], forgotten: list[tuple[str, str]],
            unseen: list[tuple[str, str]], canary: str, day: str, vcfg: VerifyConfig) -> tuple[dict, dict]:
    """Per model: the verify metrics against the oracle; and the LM losses (forgotten, unseen) for pooling."""
    backends = {n: TorchBackend(m, eng.base.tokenizer, eng.base.labels)
                for n, m in {"oracle": replay.model, **models}.items()}
    attacked = only_forgotten(forgotten, trained_texts(eng))  # with repeats: LiRA's shadows say them as often
    unseen_rows, _ = resolve_unseen(eng, unseen, forgotten, vcfg)
    sets = {"forgotten": list(dict.fromkeys(attacked)), "unseen": unseen_rows, "retained": retained_sample(eng, vcfg)}
    sc = {n: {s: score(b, d, vcfg.batch_size) for s, d in sets.items()} for n, b in backends.items()}
    expo = exposure(backends, canary, (), vcfg)["rank_bits"]
    lira_auc = lira(eng, replay, day, attacked, unseen_rows, backends, vcfg)[0] if vcfg.lira_pairs else {}
    mia = {n: metrics.loss_threshold_mia_auc(s["forgotten"].lm_loss, s["unseen"].lm_loss) for n, s in sc.items()}
    o = sc["oracle"]
    out = {}
    for n, s in sc.items():
        out[n] = {"mia_auc": mia[n], "mia_gap": abs(mia[n] - mia["oracle"]),
                  "accuracy_unseen": s["unseen"].accuracy, "accuracy_retained": s["retained"].accuracy,
                  "accuracy_gap_points": 100 * abs(s["unseen"].accuracy - o["unseen"].accuracy),
                  "kl_intent": {k: metrics.kl_from_logits(o[k].intent_logits, s[k].intent_logits) for k in sets},
                  "kl_lm": {k: float(lm_kl(backends["oracle"], backends[n], [t for t, _ in d], vcfg.batch_size).mean())
                            for k, d in sets.items()},
                  "forgotten_lm_loss": float(s["forgotten"].lm_loss.mean()),
                  "exposure_bits": expo[n], "exposure_gap_bits": expo[n] - expo["oracle"],
                  "lira_auc": lira_auc.get(n)}
    losses = {n: (s["forgotten"].lm_loss, s["unseen"].lm_loss) for n, s in sc.items()}
    return out, {"counts": {k: len(v) for k, v in sets.items()}, "losses": losses}


def bench_day(work: Path, planted: Path, day: str, canary: str, unseen: list, given: dict,
              vcfg: VerifyConfig, methods: tuple[str, ...]) -> tuple[dict, dict]:
    """Every method on its own copy of `planted`, then all measured against the oracle; (rows, losses)."""
    models, rows, replay = {}, {}, None
    for method in ("exact",) + tuple(m for m in methods if m != "exact"):
        dev = work / f"copy-{method}"
        shutil.copytree(planted, dev)
        with api.session(dev) as eng:
            if method == "exact":
                forgotten = [(u.text, u.intent) for u in eng.store.by_day(day)]
                models["before"] = copy.deepcopy(eng.model)
            rows[method], models[method], r = forget_with(method, eng, day, given)
            replay = r or replay
        if method != "exact":
            shutil.rmtree(dev)
        print(f"    {method}: {rows[method]['wall_s']:.2f} s", file=sys.stderr)
    assert replay is not None
    for row in rows.values():  # the exact methods that commit: exact, retrain (auto when it picked exact)
        if "version" in row:
            row["equals_oracle"] = row.pop("version") == replay.version
    models = {m: models[m] for m in ("before",) + methods}
    d = Device.open(work / "copy-exact")
    with LogStore(d.store_path, readonly=True) as store:
        quality, extra = measure(open_engine(d, store), replay, models, forgotten, unseen, canary, day, vcfg)
    shutil.rmtree(work / "copy-exact")
    fast = rows["fast"]["wall_s"] if "fast" in rows else None
    for name, q in quality.items():
        rows.setdefault(name, {}).update(q)
        if fast and "wall_s" in rows[name]:
            rows[name]["over_fast"] = rows[name]["wall_s"] / fast
    return rows, extra


def summarize(days: list[dict], pooled_losses: dict[str, list]) -> dict[str, dict]:
    """Per method: means over the days, and the MIA AUC gap pooled over every day's utterances."""
    def pooled_auc(n: str) -> float:
        f = np.concatenate([x[0] for x in pooled_losses[n]])
        u = np.concatenate([x[1] for x in pooled_losses[n]])
        return metrics.loss_threshold_mia_auc(f, u)

    orc = pooled_auc("oracle")
    out = {}
    for n in (n for n in pooled_losses if n != "oracle"):
        rs = [d["rows"][n] for d in days]
        mean = lambda k: (statistics.mean(r[k] for r in rs)  # noqa: E731
                          if all(r.get(k) is not None for r in rs) else None)
        out[n] = {"days": len(rs), "wall_s": mean("wall_s"), "cpu_s": mean("cpu_s"), "prep_s": mean("prep_s"),
                  "replayed_days": mean("replayed_days"),
                  "pooled_mia_auc": pooled_auc(n), "pooled_mia_gap": abs(pooled_auc(n) - orc),
                  "mean_mia_gap": mean("mia_gap"), "accuracy_gap_points": mean("accuracy_gap_points"),
                  "accuracy_unseen": mean("accuracy_unseen"),
                  "kl_intent_unseen": statistics.mean(r["kl_intent"]["unseen"] for r in rs),
                  "kl_lm_forgotten": statistics.mean(r["kl_lm"]["forgotten"] for r in rs),
                  "exposure_gap_bits": mean("exposure_gap_bits"), "lira_auc": mean("lira_auc"),
                  "equals_oracle": all(r["equals_oracle"] for r in rs) if "equals_oracle" in rs[0] else None}
    fast = out.get("fast", {}).get("wall_s")
    for s in out.values():
        s["over_fast"] = s["wall_s"] / fast if fast and s["wall_s"] is not None else None
    return out


def table(summary: dict[str, dict], lira_on: bool) -> str:
    """The summary as a Markdown table."""
    f = lambda v, spec: "" if v is None else format(v, spec)  # noqa: E731
    head = ["method", "wall s", "CPU s", "× fast", "prep s", "|MIA − oracle| pooled", "acc gap pt", "KL intent",
            "KL LM forgotten", "exposure − oracle bits"] + (["LiRA AUC"] if lira_on else []) + ["= oracle"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n, s in summary.items():
        eq = "" if s["equals_oracle"] is None else ("yes" if s["equals_oracle"] else "NO")
        cells = [n, f(s["wall_s"], ".3f"), f(s["cpu_s"], ".3f"), f(s["over_fast"], ".1f"), f(s["prep_s"], ".1f"),
                 f(s["pooled_mia_gap"], ".4f"), f(s["accuracy_gap_points"], ".2f"), f(s["kl_intent_unseen"], ".2e"),
                 f(s["kl_lm_forgotten"], ".2e"), f(s["exposure_gap_bits"], ".2f")]
        lines.append("| " + " | ".join(cells + ([f(s["lira_auc"], ".3f")] if lira_on else []) + [eq]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=40, help="simulated days (default 40)")
    ap.add_argument("--forgets", type=int, default=3, help="days drawn and forgotten, one at a time (default 3)")
    ap.add_argument("--mean", type=float, default=20.0, help="mean utterances per day (default 20)")
    ap.add_argument("--seed", type=int, default=5, help="persona, device and draw seed (default 5)")
    ap.add_argument("--canary-repeats", type=int, default=64, help="times the canary is said on its day (default 64)")
    ap.add_argument("--unseen", type=int, default=300, help="held-out utterances of the persona (default 300)")
    ap.add_argument("--retained", type=int, default=300, help="retained utterances sampled for KL (default 300)")
    ap.add_argument("--candidates", type=int, default=5000,
                    help="canary candidates (default 5000; 0: all 10^5 - 1, slow)")
    ap.add_argument("--lira", type=int, default=0, help="LiRA shadows per side (default 0: skip; slow)")
    ap.add_argument("--shards", type=int, default=SisaConfig.shards, help=f"SISA shards (default {SisaConfig.shards})")
    ap.add_argument("--slice-every", type=int, default=SisaConfig.slice_every,
                    help="SISA slice checkpoint every this many shard days (0: retrain the shard from its start)")
    ap.add_argument("--steps", type=int, default=None,
                    help="NegGrad+ / fine-tune steps (default: the fast tier's repair budget for each forget)")
    ap.add_argument("--alpha", type=float, default=NegGradConfig.alpha,
                    help=f"NegGrad+ weight of the retained loss (default {NegGradConfig.alpha})")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help=f"comma-separated registered methods (default {','.join(METHODS)}; registered: "
                         f"{','.join(registry.names())})")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--json", type=Path, help="also write every figure as JSON here")
    args = ap.parse_args(argv)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if not 1 <= args.forgets < args.days:
        ap.error("--forgets must be in [1, --days)")
    if not methods or len(set(methods)) < len(methods) or set(methods) - set(registry.names()):
        ap.error(f"--methods takes distinct registered method names, comma-separated: {','.join(registry.names())}")
    if args.lira == 1:
        ap.error("--lira must be 0 (skip) or >= 2")
    given = {"shards": args.shards, "slice_every": args.slice_every, "steps": args.steps, "alpha": args.alpha}
    configs = {}
    for name in methods:  # every config is checked before anything runs
        try:
            configs[name] = registry.get(name, settings_for(name, given)).settings()
        except BadInput as e:
            ap.error(f"{name}: {e}")
    vcfg = VerifyConfig(weights="torch", lira_pairs=args.lira, unseen=args.unseen, retained=args.retained,
                        canary_candidates=args.candidates, seed=args.seed)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    unseen = heldout(args.seed, args.unseen)
    per_day, pooled = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-baselines-") as tmp:
        work = Path(tmp)
        days = build(work / "trained", args.days, args.seed, args.mean, args.forgets, "bench_baselines")
        canaries = secrets(days, args.seed)
        for i, day in enumerate(days):
            planted = work / f"planted-{day}"
            plant(work / "trained", planted, day, canaries[day], args.days, args.seed, args.mean, args.canary_repeats)
            print(f"  [{i + 1}/{len(days)}] {day}", file=sys.stderr)
            rows, extra = bench_day(work, planted, day, canaries[day], unseen, given, vcfg, methods)
            shutil.rmtree(planted)
            for n, losses in extra.pop("losses").items():
                pooled.setdefault(n, []).append(losses)
            per_day.append({"day": day, **extra, "rows": rows})
    summary = summarize(per_day, {n: pooled[n] for n in ("before",) + methods + ("oracle",)})
    print(f"{len(days)} forgotten days ({', '.join(days)}) of {args.days}, persona seed {args.seed}, canary said "
          f"{args.canary_repeats} times, {args.unseen} held-out utterances, {args.candidates or 'all'} canary "
          f"candidates; means over the days\n")
    print(table(summary, bool(args.lira)))
    def shown(name: str, key: str, value) -> str:
        budgeted = name in BUDGETED and key == "steps" and value is None
        return f"{key}={'the fast repair budget' if budgeted else value}"

    print("\nconfigs: " + ", ".join(f"{n}({', '.join(shown(n, k, v) for k, v in c.items())})"
                                   for n, c in configs.items()))
    print(f"personalisation: {PersonalizationConfig()}\ntotal {time.perf_counter() - t0:.0f} s")
    if args.json:
        out = {"args": {k: str(v) for k, v in vars(args).items()}, "configs": configs,
               "personalization": asdict(PersonalizationConfig()), "days": per_day, "summary": summary}
        args.json.write_text(json.dumps(out, indent=2, default=float), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
