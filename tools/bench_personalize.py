"""Benchmark: nightly personalisation — does it personalise, does it keep the base, what does the ledger cost.

On a synthetic persona (device_sim), trained day by day on one torch thread:
  - intent accuracy and next-token loss on the persona's held-out utterances, base vs personalised;
  - CLINC150 test in-scope accuracy, base vs after all days (catastrophic forgetting check);
  - training time per day, ledger bytes per day (amortised over deltas + checkpoints + state);
  - `--compare`: the same for each choice of personal parameters (PERSONAL_SETS, "all" included);
  - `--compression`: fp32 deltas compressed as fp16 / bf16 / int8 / top-10% sparse / rank-2, with bytes and
    what each does to subtraction (relative error of Δ̂, KL of the subtracted model's outputs to exact).

    python tools/bench_personalize.py                               # 90 days, a few minutes
    python tools/bench_personalize.py --days 365 --compare --compression --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F

from assistant_forget.core.threads import one_torch_thread
from assistant_forget.families.assistant.base import decide, intent_probs, load_base
from assistant_forget.families.assistant.model import lm_loss
from assistant_forget.device.clinc import OOS, load_clinc
from assistant_forget.device.device import Device
from assistant_forget.runner.engine import open_engine
from assistant_forget.device.importer import import_jsonl
from assistant_forget.families.assistant.personalize import PERSONAL_SETS, PersonalizationConfig
from assistant_forget.device.store import LogStore
from device_sim.generator import generate_days, heldout_utterances, write_jsonl
from device_sim.persona import make_persona

START = date(2026, 1, 1)


@torch.no_grad()
def evaluate(model, base, texts: list[str], intents: list[str]) -> dict:
    """Intent accuracy (with the oos rule) and mean next-token loss over `texts`."""
    labels = list(base.labels)
    gold = torch.tensor([labels.index(i) for i in intents])
    pred, _ = decide(intent_probs(model, base.tokenizer, texts), labels.index(OOS), base.labels.oos_threshold)
    losses = []
    for i in range(0, len(texts), 256):
        ids, mask = base.tokenizer.encode_batch(texts[i:i + 256], model.cfg.max_len)
        _, lm = model(ids, mask)
        losses.append(float(lm_loss(lm, ids, mask)) * len(ids))
    return {"accuracy": float((pred == gold).float().mean()), "lm_loss": sum(losses) / len(texts)}


def clinc_in_scope(model, base, n: int | None) -> float:
    test = load_clinc()["test"][:n]
    return evaluate(model, base, [t for t, _ in test], [i for _, i in test])["accuracy"]


def run(work: Path, base, cfg: PersonalizationConfig, days: int, seed: int, mean: float, clinc_n: int | None,
        name: str) -> tuple[dict, object]:
    persona = make_persona(seed)
    recs = generate_days(persona, START, days, seed, mean_per_day=mean)
    held = heldout_utterances(persona, 400, seed)
    root = work / name
    src = work / f"{name}.jsonl"
    write_jsonl(recs, src)
    import_jsonl(root, src, seed=seed)
    dev = Device.open(root)
    sizes: list[int] = []
    with LogStore(dev.store_path) as store, one_torch_thread():
        eng = open_engine(dev, store, cfg=cfg, base=base)
        before = evaluate(eng.model, base, [h["text"] for h in held], [h["intent"] for h in held])
        clinc_before = clinc_in_scope(eng.model, base, clinc_n)
        t = time.perf_counter()
        eng.sync(progress=lambda d: sizes.append(eng.timeline.ledger.size_bytes()))
        train_s = time.perf_counter() - t
        after = evaluate(eng.model, base, [h["text"] for h in held], [h["intent"] for h in held])
        clinc_after = clinc_in_scope(eng.model, base, clinc_n)
        n_personal = sum(eng.model.get_parameter(p).numel() for p in eng.timeline.personal)
    res = {"personal": cfg.personal, "personal_params": n_personal, "days": days,
           "utterances": len(recs), "train_s_per_day": train_s / days,
           "ledger_bytes": sizes[-1], "ledger_bytes_per_day": sizes[-1] / days,
           "heldout_accuracy_base": before["accuracy"], "heldout_accuracy": after["accuracy"],
           "heldout_lm_loss_base": before["lm_loss"], "heldout_lm_loss": after["lm_loss"],
           "clinc_in_scope_base": clinc_before, "clinc_in_scope": clinc_after,
           "clinc_drop_points": 100 * (clinc_before - clinc_after), "ledger_sizes": sizes}
    return res, (root, held)


def compress(delta: dict[str, torch.Tensor], how: str) -> tuple[dict[str, torch.Tensor], int]:
    """(Δ̂, bytes on disk of the tensor data) for one storage scheme."""
    out, nbytes = {}, 0
    for k, v in delta.items():
        if how == "fp32":
            out[k], n = v.clone(), 4 * v.numel()
        elif how in ("fp16", "bf16"):
            out[k], n = v.to(torch.float16 if how == "fp16" else torch.bfloat16).float(), 2 * v.numel()
        elif how == "int8":
            s = v.abs().max().clamp(min=1e-12) / 127
            out[k], n = (v / s).round().clamp(-127, 127) * s, v.numel() + 4
        elif how == "top10":
            m = max(1, v.numel() // 10)
            idx = v.flatten().abs().topk(m).indices
            flat = torch.zeros_like(v.flatten())
            flat[idx] = v.flatten()[idx].half().float()
            out[k], n = flat.view_as(v), m * (2 + 4)
        elif how == "rank2" and v.dim() == 2 and min(v.shape) > 2:
            U, S, Vh = torch.linalg.svd(v, full_matrices=False)
            out[k], n = (U[:, :2] * S[:2]) @ Vh[:2], 2 * 2 * sum(v.shape)
        else:  # rank2 of a vector: keep it in fp16
            out[k], n = v.half().float(), 2 * v.numel()
        nbytes += n
    return out, nbytes


def compression_study(work: Path, base, cfg: PersonalizationConfig, days: int, seed: int, mean: float) -> list[dict]:
    """Train with fp32 deltas, then compare storage schemes on every day's exact delta."""
    cfg32 = replace(cfg, delta_dtype="float32")
    _, (root, held) = run(work, base, cfg32, days, seed, mean, 200, "fp32")
    dev = Device.open(root)
    rows = []
    with LogStore(dev.store_path) as store, one_torch_thread():
        eng = open_engine(dev, store, cfg=cfg32, base=base)
        m = eng.manifest()
        theta = eng.timeline.get_state()
        ids, mask = base.tokenizer.encode_batch([h["text"] for h in held], eng.model.cfg.max_len)
        picked = list(m.days)[:: max(1, len(m.days) // 10)]
        for how in ("fp32", "fp16", "bf16", "int8", "top10", "rank2"):
            errs, kls, sizes = [], [], []
            for d in picked:
                exact = eng.timeline.ledger.read_delta(m.days[d].delta)
                approx, n = compress(exact, how)
                sizes.append(n)
                num = sum(float((approx[k] - exact[k]).pow(2).sum()) for k in exact)
                den = sum(float(exact[k].pow(2).sum()) for k in exact)
                errs.append((num / max(den, 1e-30)) ** 0.5)
                logits = []
                for dd in (exact, approx):
                    eng.timeline.set_state({k: theta[k] - dd[k] for k in theta})
                    with torch.no_grad():
                        logits.append(eng.model(ids, mask)[0])
                kls.append(float(F.kl_div(logits[1].log_softmax(-1), logits[0].log_softmax(-1), log_target=True,
                                          reduction="batchmean")))
            eng.timeline.set_state(theta)
            rows.append({"storage": how, "bytes_per_delta": sum(sizes) / len(sizes),
                         "relative_error": sum(errs) / len(errs), "kl_after_subtraction": sum(kls) / len(kls)})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=90, help="days of the persona (default 90; 365 for the full run)")
    ap.add_argument("--seed", type=int, default=5, help="persona and device seed")
    ap.add_argument("--mean", type=float, default=40.0, help="mean utterances per day")
    ap.add_argument("--clinc", type=int, default=None, help="CLINC150 test utterances to score (default all 4,500)")
    ap.add_argument("--compare", action="store_true", help="also compare the choices of personal parameters")
    ap.add_argument("--compare-days", type=int, default=30, help="days for --compare and --compression")
    ap.add_argument("--compression", action="store_true", help="also compare storage schemes for deltas")
    ap.add_argument("--json", type=Path, help="write all results as JSON here")
    args = ap.parse_args(argv)
    base = load_base()
    cfg = PersonalizationConfig()
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-personalize-") as tmp:
        work = Path(tmp)
        main_run, _ = run(work, base, cfg, args.days, args.seed, args.mean, args.clinc, "main")
        out["main"] = main_run
        r = main_run
        print(f"persona seed {args.seed}, {r['days']} days, {r['utterances']} utterances, personal={r['personal']} "
              f"({r['personal_params']:,} parameters)")
        print(f"  held-out intent accuracy  {100 * r['heldout_accuracy_base']:.1f}% -> {100 * r['heldout_accuracy']:.1f}%")
        print(f"  held-out next-token loss  {r['heldout_lm_loss_base']:.3f} -> {r['heldout_lm_loss']:.3f} nats")
        print(f"  CLINC150 in-scope acc.    {100 * r['clinc_in_scope_base']:.2f}% -> {100 * r['clinc_in_scope']:.2f}% "
              f"({r['clinc_drop_points']:+.2f} points lost)")
        print(f"  training                  {r['train_s_per_day']:.3f} s/day (one thread)")
        print(f"  ledger                    {r['ledger_bytes']:,} bytes = {r['ledger_bytes_per_day']:,.0f} bytes/day")
        if args.compare:
            out["compare"] = []
            print(f"\npersonal parameters over {args.compare_days} days:")
            print(f"  {'set':28s} {'params':>8s} {'ledger B/day':>12s} {'held-out acc':>12s} {'LM loss':>8s} "
                  f"{'CLINC drop':>10s} {'s/day':>6s}")
            for name in PERSONAL_SETS:
                c = replace(cfg, personal=name)
                res, _ = run(work, base, c, args.compare_days, args.seed, args.mean, args.clinc, f"cmp-{name}")
                res.pop("ledger_sizes")
                out["compare"].append(res)
                print(f"  {name:28s} {res['personal_params']:8,d} {res['ledger_bytes_per_day']:12,.0f} "
                      f"{100 * res['heldout_accuracy']:11.1f}% {res['heldout_lm_loss']:8.3f} "
                      f"{res['clinc_drop_points']:+10.2f} {res['train_s_per_day']:6.3f}")
        if args.compression:
            out["compression"] = compression_study(work, base, cfg, args.compare_days, args.seed, args.mean)
            print(f"\ndelta storage (over {args.compare_days} days):")
            print(f"  {'storage':8s} {'bytes/delta':>11s} {'rel. error':>10s} {'KL after subtraction':>20s}")
            for row in out["compression"]:
                print(f"  {row['storage']:8s} {row['bytes_per_delta']:11,.0f} {row['relative_error']:10.2e} "
                      f"{row['kl_after_subtraction']:20.2e}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
