"""Costs of the hf-causal-lm family (issue 19): the shipped LM, and a model of SmolLM2-135M's shape.

    nice -n 10 .venv/bin/python tools/bench_lm.py tiny --days 30      # fast vs exact vs retrain on models/lm-tiny
    nice -n 10 .venv/bin/python tools/bench_lm.py smol --rank 8       # SmolLM2-135M's shape, RANDOM weights
    nice -n 10 .venv/bin/python tools/bench_lm.py privacy --days 30 --forgets 5 --lag 1   # canary and MIA vs the oracle

`tiny`: a persona's DAYS days on a new device of models/lm-tiny (defaults: rank 4 on q/v), every day trained;
then the middle day is forgotten three ways, each on its own copy of the device, timed end to end in-process:
fast (subtract + repair, publish), exact (rewind to a checkpoint, replay, publish) and retrain (from the initial
adapters, every retained day). `smol`: a Llama with SmolLM2-135M's config (hidden 576, 30 layers, 9 heads, 3 KV
heads, MLP 1536, vocabulary 49152, tied embeddings) and RANDOM weights (timing only; the shipped tokenizer is
used, so only its first 1,024 ids occur), saved as safetensors in a temp directory; one day of 40 utterances
trained, the ledger bytes per day, the publish of a forget (adapter only: the base graph is exported once,
timed apart), an exact replay of one day, and the peak RSS. `privacy`: a device of models/lm-tiny with its
default training, a different secret of the format 'remind me my locker code is d d d d d' said `--repeats` times
on each of FORGETS days spread over the middle of DAYS. The device lives up to LAG days past each secret's day
(the log imported and trained that far), then verify's what-if (verify/lm.py) forgets that day on a working
copy; the device lives on to the next secret. `--epochs`/`--lr` change the nightly training, `--rank`/`--alpha`/`--targets` its adapters. For each day:
the secret's exposure among the 99,999 others before the forget, after the fast tier, after its exact pass
and under the oracle (the exact replay), and the loss-MIA AUC of the day's utterances against 200 unseen
CLINC150 test utterances for each. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def tiny(days: int, rank: int) -> dict:
    from assistant_forget import api
    from assistant_forget.runner import forget as forgetting
    from assistant_forget.runner.selector import Selector
    from devkit import make_device, persona_log

    work = Path(tempfile.mkdtemp(prefix="bench-lm-"))
    try:
        root = work / "phone"
        api.init(root, 0, "hf-causal-lm", None, {"rank": rank})
        records = persona_log(days=days, seed=7, mean=40.0)
        t0 = time.perf_counter()
        make_device(root, records)
        train_s = time.perf_counter() - t0
        day = sorted({r["timestamp"][:10] for r in records})[days // 2]
        out = {"days": days, "utterances": len(records), "train_all_s": round(train_s, 2)}
        for mode in ("fast", "exact", "retrain"):
            copy = work / mode
            shutil.copytree(root, copy)
            with api.session(copy) as eng:
                t0 = time.perf_counter()
                forgetting.forget(eng, Selector.parse(date_=day), mode)
                out[f"{mode}_s"] = round(time.perf_counter() - t0, 3)
        out["ledger_bytes"] = api.status(root)["ledger_bytes"]
        out["exact_over_fast"] = round(out["exact_s"] / out["fast_s"], 1)
        out["retrain_over_fast"] = round(out["retrain_s"] / out["fast_s"], 1)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def privacy(days: int, forgets: int, repeats: int, lag: int, lora: dict, train: dict) -> dict:
    import random

    from assistant_forget import api
    from assistant_forget.device.importer import import_jsonl
    from assistant_forget.verify import lm as lm_verify
    from device_sim.canary import Canary
    from device_sim.generator import write_jsonl
    from devkit import persona_log

    rng = random.Random(5)
    at = [days // 4 + i * (days // 2) // max(forgets - 1, 1) for i in range(forgets)]
    secrets = ["remind me my locker code is " + " ".join(str(rng.randrange(10)) for _ in range(5)) for _ in at]
    work = Path(tempfile.mkdtemp(prefix="bench-lm-privacy-"))
    try:
        root = work / "phone"
        api.init(root, 0, "hf-causal-lm", None, lora, train)
        records = persona_log(days=days, seed=7, mean=40.0,
                              canaries=tuple(Canary(s, d, repeats) for s, d in zip(secrets, at)))
        dates = sorted({r["timestamp"][:10] for r in records})
        rows, imported = [], ""
        for secret, d in zip(secrets, at):
            upto = dates[min(d + lag, len(dates) - 1)]  # the device has lived `lag` days past the secret's day
            write_jsonl([r for r in records if imported < r["timestamp"][:10] <= upto], work / "slice.jsonl")
            import_jsonl(root, work / "slice.jsonl", seed=0)
            imported = upto
            api.train(root)
            with api.session(root) as eng:
                t0 = time.perf_counter()
                res = lm_verify.what_if(eng, dates[d], secret, None)
            bits, auc = res["exposure_bits"], res["mia_auc"]
            rows.append({"day": d, "seconds": round(time.perf_counter() - t0, 1), "bits": bits, "auc": auc,
                         "passed": res["passed"]})
        tiers = ("before", "fast", "exact", "oracle")
        mean = {t: round(float(sum(r["bits"][t] for r in rows) / len(rows)), 2) for t in tiers}
        return {"days": days, "utterances": len(records), "forgets": forgets, "repeats": repeats, "lag": lag,
                "lora": lora, "train": train,
                "candidates": 99_999, "per_day": rows, "mean_bits": mean,
                "before_minus_oracle_bits_min": round(min(r["bits"]["before"] - r["bits"]["oracle"] for r in rows), 1),
                "fast_minus_oracle_bits_max": round(max(r["bits"]["fast"] - r["bits"]["oracle"] for r in rows), 1),
                "exact_minus_oracle_bits_max": round(max(r["bits"]["exact"] - r["bits"]["oracle"] for r in rows), 1),
                "mia_abs_gap_mean": {t: round(sum(abs(r["auc"][t] - r["auc"]["oracle"]) for r in rows) / len(rows), 4)
                                     for t in ("before", "fast", "exact")},
                "mia_abs_gap_max": {t: round(max(abs(r["auc"][t] - r["auc"]["oracle"]) for r in rows), 4)
                                    for t in ("before", "fast", "exact")},
                "all_passed": all(r["passed"] for r in rows)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def smol(rank: int, targets: tuple[str, ...], epochs: int | None) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from assistant_forget import api
    from assistant_forget.families.hf_lm.family import shipped_model_dir
    from assistant_forget.runner import forget as forgetting
    from assistant_forget.runner.selector import Selector
    from devkit import make_device, persona_log

    work = Path(tempfile.mkdtemp(prefix="bench-smol-"))
    try:
        base = work / "smol-shape"
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                          num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                          tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0)
        LlamaForCausalLM(cfg).save_pretrained(base, safe_serialization=True)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(shipped_model_dir() / f, base / f)
        root = work / "phone"
        train = {} if epochs is None else {"epochs": epochs}
        api.init(root, 0, "hf-causal-lm", base, {"rank": rank, "target_modules": targets}, train)
        by_day: dict[str, list] = {}
        for r in persona_log(days=2, seed=7, mean=60.0):
            by_day.setdefault(r["timestamp"][:10], []).append(r)
        records = [r for rows in by_day.values() for r in rows[:40]]  # 40 utterances a day
        make_device(root, records, train=False)
        with api.session(root) as eng:
            days = eng.days_with_data()
            t0 = time.perf_counter()
            eng.sync(days[0])
            day1 = time.perf_counter() - t0
            ledger1 = api.status(root)["ledger_bytes"]
            t0 = time.perf_counter()
            eng.publish()
            first_publish = time.perf_counter() - t0  # the base graph's one-time export included
            eng.sync(days[1])
            ledger2 = api.status(root)["ledger_bytes"]
            t0 = time.perf_counter()
            forgetting.forget(eng, Selector.parse(date_=days[1]), "fast")
            fast = time.perf_counter() - t0
            t0 = time.perf_counter()
            eng.publish()
            publish = time.perf_counter() - t0
            t0 = time.perf_counter()
            forgetting.maintain(eng)
            exact = time.perf_counter() - t0
            used = eng.family.cfg.epochs
        return {"shape": "SmolLM2-135M, random weights", "params": sum(p.numel() for p in
                LlamaForCausalLM(cfg).parameters()), "rank": rank, "targets": list(targets), "epochs": used,
                "utterances_per_day": [sum(1 for r in records if r["timestamp"][:10] == d) for d in days],
                "train_day_s": round(day1, 2), "first_publish_with_base_graph_s": round(first_publish, 2),
                "ledger_bytes_after_day1": ledger1, "ledger_bytes_second_day": ledger2 - ledger1,
                "fast_forget_s": round(fast, 2), "publish_adapter_s": round(publish, 3),
                "exact_pass_s": round(exact, 2), "peak_rss_mb": round(peak_mb())}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("which", choices=("tiny", "smol", "privacy"))
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--forgets", type=int, default=5)
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--lag", type=int, default=1, help="privacy: days the device lives past a secret's day before "
                   "it is forgotten (1: the user asks to forget yesterday)")
    p.add_argument("--epochs", type=int, default=None, help="privacy, smol: passes over each day (default: the family's)")
    p.add_argument("--lr", type=float, default=None, help="privacy: learning rate (default: the family's)")
    p.add_argument("--rank", type=int, default=None, help="LoRA rank (default: smol 8, otherwise the family's 4)")
    p.add_argument("--alpha", type=float, default=None, help="privacy: LoRA alpha (default: the family's)")
    p.add_argument("--targets", default=None, help="LoRA target modules, comma-separated (default q_proj,v_proj)")
    a = p.parse_args()
    torch_threads = 1
    import torch

    torch.set_num_threads(torch_threads)
    if a.which == "tiny":
        res = tiny(a.days, a.rank or 4)
    elif a.which == "privacy":
        train = {k: v for k, v in (("epochs", a.epochs), ("lr", a.lr)) if v is not None}
        lora = {k: v for k, v in (("rank", a.rank), ("alpha", a.alpha),
                                  ("target_modules", a.targets and tuple(a.targets.split(",")))) if v is not None}
        res = privacy(a.days, a.forgets, a.repeats, a.lag, lora, train)
    else:
        res = smol(a.rank or 8, tuple((a.targets or "q_proj,v_proj").split(",")), a.epochs)
    res["peak_rss_mb"] = round(peak_mb())
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
