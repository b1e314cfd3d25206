"""Metrics of the base model on CLINC150: intent accuracy, out-of-scope recall, next-token perplexity, latency.

The metric functions are pure (tensors in, numbers out) so they can be checked by hand; `evaluate_base`
runs them on a split of the vendored corpus.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Sequence

import torch

from ..families.assistant.base import BaseModel, decide, intent_probs
from ..device.clinc import OOS, load_clinc
from ..families.assistant.model import AssistantModel, lm_loss
from ..families.assistant.tokenizer import Tokenizer


def in_scope_accuracy(pred: torch.Tensor, gold: torch.Tensor, oos_index: int) -> float:
    """Share of in-scope utterances given their own intent (an "oos" answer counts as wrong).

    >>> in_scope_accuracy(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 2, 1, 2]), oos_index=2)
    0.5
    """
    keep = gold != oos_index
    return float((pred[keep] == gold[keep]).float().mean()) if keep.any() else math.nan


def oos_recall(pred: torch.Tensor, gold: torch.Tensor, oos_index: int) -> float:
    """Share of out-of-scope utterances answered "oos".

    >>> oos_recall(torch.tensor([2, 0, 2]), torch.tensor([2, 2, 1]), oos_index=2)
    0.5
    """
    keep = gold == oos_index
    return float((pred[keep] == oos_index).float().mean()) if keep.any() else math.nan


def tune_threshold(probs: torch.Tensor, gold: torch.Tensor, oos_index: int, max_accuracy_drop: float = 0.005,
                   grid: Sequence[float] | None = None) -> float:
    """The largest threshold that costs at most `max_accuracy_drop` of in-scope accuracy on held-out data.

    Raising the threshold turns more answers into "oos": out-of-scope recall rises, in-scope accuracy falls.
    The rule spends a fixed, small budget of in-scope accuracy (relative to argmax alone) on oos recall.

    >>> p = torch.tensor([[0.9, 0.05, 0.05], [0.5, 0.3, 0.2], [0.3, 0.6, 0.1], [0.45, 0.3, 0.25]])
    >>> tune_threshold(p, torch.tensor([0, 2, 1, 2]), 2, 0.0, grid=[0.0, 0.4, 0.55, 0.7])
    0.55
    >>> tune_threshold(p, torch.tensor([0, 2, 1, 2]), 2, 0.5, grid=[0.0, 0.4, 0.55, 0.7])
    0.7
    """
    grid = [i / 100 for i in range(100)] if grid is None else sorted(grid)
    floor = in_scope_accuracy(decide(probs, oos_index, 0.0)[0], gold, oos_index) - max_accuracy_drop
    best = 0.0
    for t in grid:
        if in_scope_accuracy(decide(probs, oos_index, t)[0], gold, oos_index) >= floor - 1e-12:
            best = t
    return best


@torch.no_grad()
def perplexity(model: AssistantModel, tok: Tokenizer, texts: Sequence[str], batch_size: int = 256) -> float:
    """exp(mean next-token cross-entropy) over every predicted piece and the final eos (bos is given)."""
    total, count = 0.0, 0
    for i in range(0, len(texts), batch_size):
        ids, mask = tok.encode_batch(list(texts[i: i + batch_size]), model.cfg.max_len)  # (B, T) each
        _, lm_logits = model(ids, mask)  # (B, T, V)
        total += float(lm_loss(lm_logits, ids, mask, reduction="sum"))
        count += int(mask[:, 1:].sum())
    return math.exp(total / count)


@torch.no_grad()
def latency_ms(model: AssistantModel, tok: Tokenizer, texts: Sequence[str], threads: int = 1,
               repeats: int = 1) -> dict[str, float]:
    """Single-utterance eager inference latency (tokenize + forward), in ms: p50 and p90 over `texts`."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        times = []
        for _ in range(repeats):
            for t in texts:
                t0 = time.perf_counter()
                ids, mask = tok.encode_batch([t], model.cfg.max_len)  # (1, T) each
                model(ids, mask)
                times.append((time.perf_counter() - t0) * 1e3)
    finally:
        torch.set_num_threads(old)
    q = statistics.quantiles(times, n=10)
    return {"p50_ms": statistics.median(times), "p90_ms": q[8]}


def split_texts(split: str) -> tuple[list[str], list[str]]:
    """Texts and intents of an evaluation split: "val" (val + oos_val) or "test" (test + oos_test)."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    data = load_clinc()
    rows = data[split] + data[f"oos_{split}"]
    return [t for t, _ in rows], [i for _, i in rows]


def evaluate_base(base: BaseModel, split: str = "test", limit: int | None = None) -> dict[str, float]:
    """Accuracy, oos recall (with the shipped threshold and with argmax only) and perplexity on a split.

    `limit` takes an evenly spaced subset of that many utterances (a quick regression check).
    """
    texts, intents = split_texts(split)
    if limit is not None and limit < len(texts):
        step = len(texts) / limit
        pick = [int(i * step) for i in range(limit)]
        texts, intents = [texts[i] for i in pick], [intents[i] for i in pick]
    names = list(base.labels)
    oos = names.index(OOS)
    gold = torch.tensor([names.index(i) for i in intents])  # (N,)
    probs = intent_probs(base.model, base.tokenizer, texts)  # (N, I)
    pred, _ = decide(probs, oos, base.labels.oos_threshold)
    pred0, _ = decide(probs, oos, 0.0)
    return {
        "n": len(texts),
        "in_scope_accuracy": in_scope_accuracy(pred, gold, oos),
        "oos_recall": oos_recall(pred, gold, oos),
        "in_scope_accuracy_argmax": in_scope_accuracy(pred0, gold, oos),
        "oos_recall_argmax": oos_recall(pred0, gold, oos),
        "oos_threshold": base.labels.oos_threshold,
        f"{split}_perplexity": perplexity(base.model, base.tokenizer, texts),
    }
