"""Training the base model: both heads jointly on public utterances, reproducibly from a seed.

Loss per batch = intent cross-entropy (hard labels, optionally mixed with a teacher's soft labels by KL at
a temperature) + `embed_weight` x (1 - cosine) to a teacher's sentence embedding (optional) + `lm_weight` x
next-token cross-entropy on the rows flagged for it (the original utterances, not perturbed copies). Model
selection keeps the epoch with the best validation score; the test split is never seen here.
tools/build_base_model.py and the tests share this loop, so a test can check that the same seed gives
bit-identical weights.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..core.errors import BadInput
from ..families.assistant.model import AssistantModel, ModelConfig, lm_loss
from ..families.assistant.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer


@dataclass
class TrainConfig:
    seed: int = 0  # seeds init, shuffling and dropout
    epochs: int = 40  # upper bound on passes over the training set
    batch_size: int = 64  # utterances per step
    lr: float = 3e-3  # peak AdamW learning rate
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    warmup_frac: float = 0.03  # fraction of steps with linear warm-up, then cosine decay to 0
    lm_weight: float = 0.5  # weight of the next-token loss against the intent loss
    distill_weight: float = 0.0  # share of the intent loss taken by KL to teacher soft labels (0..1)
    temperature: float = 2.0  # distillation temperature
    label_smoothing: float = 0.1  # on the hard-label intent loss
    embed_weight: float = 0.0  # weight of 1 - cos(projected sentence vector, teacher embedding), if given
    piece_dropout: float = 0.1  # augmentation: drop each non-special piece with this probability
    patience: int = 8  # stop after this many epochs without a better validation score
    threads: int = 1  # torch intra-op threads (fixed: results depend on it; 1 is fastest for this size)
    max_steps: int = 0  # stop after this many steps in total (0 = no limit; tests use a few)

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.batch_size <= 0 or self.lr <= 0 or self.threads <= 0:
            raise BadInput(f"epochs, batch_size, lr and threads must be positive: {self}")
        if not 0.0 <= self.distill_weight <= 1.0 or not 0.0 <= self.piece_dropout < 1.0:
            raise BadInput(f"distill_weight must be in [0, 1] and piece_dropout in [0, 1): {self}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Examples:
    """Tokenized training utterances: piece ids (no bos/eos), intent indices, optional teacher probs."""

    pieces: list[list[int]]  # one list of piece ids per utterance
    labels: torch.Tensor  # (N,) int64 intent index
    soft: torch.Tensor | None = None  # (N, I) teacher probabilities at the distillation temperature
    lm: torch.Tensor | None = None  # (N,) bool: rows that train the next-token head (None = all)
    emb: torch.Tensor | None = None  # (N, E) teacher sentence embeddings to distil (None = no such loss)


def make_examples(tok: Tokenizer, texts: Sequence[str], labels: Sequence[int],
                  soft: torch.Tensor | None = None, lm: Sequence[bool] | None = None,
                  emb: torch.Tensor | None = None) -> Examples:
    """Tokenize once; batches are assembled from these piece lists."""
    sizes = {len(texts), len(labels)} | ({soft.shape[0]} if soft is not None else set()) \
        | ({len(lm)} if lm is not None else set()) | ({emb.shape[0]} if emb is not None else set())
    if len(sizes) != 1:
        raise BadInput(f"texts, labels, soft labels and lm flags differ in length: {sorted(sizes)}")
    return Examples([tok.encode(t) for t in texts], torch.tensor(list(labels), dtype=torch.long), soft,
                    None if lm is None else torch.tensor(list(lm), dtype=torch.bool), emb)


def augment_texts(texts: Sequence[str], n_per_text: int, seed: int) -> list[tuple[int, str]]:
    """Perturbed copies of public utterances for distillation: (source index, new text) pairs.

    Each copy is one of: drop ~20% of the words, swap two neighbouring words, or splice the first part of
    this utterance onto the last part of another. A teacher labels the copies, so they need not keep the
    source's intent. Deterministic in `seed`.

    >>> augment_texts(["wake me up at seven", "what is the weather"], 2, seed=0) == \\
    ...     augment_texts(["wake me up at seven", "what is the weather"], 2, seed=0)
    True
    """
    g = torch.Generator().manual_seed(seed)
    out: list[tuple[int, str]] = []
    for i, text in enumerate(texts):
        words = text.split()
        for _ in range(n_per_text):
            kind = int(torch.randint(3, (1,), generator=g))
            if kind == 0 and len(words) > 2:
                keep = (torch.rand(len(words), generator=g) >= 0.2).tolist()
                new = [w for w, k in zip(words, keep) if k] or words
            elif kind == 1 and len(words) > 1:
                j = int(torch.randint(len(words) - 1, (1,), generator=g))
                new = words[:j] + [words[j + 1], words[j]] + words[j + 2:]
            else:
                other = texts[int(torch.randint(len(texts), (1,), generator=g))].split()
                a = int(torch.randint(1, max(2, len(words)), (1,), generator=g))
                b = int(torch.randint(0, max(1, len(other) - 1), (1,), generator=g))
                new = words[:a] + other[b:]
            out.append((i, " ".join(new)))
    return out


def collate(rows: Sequence[list[int]], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """bos + pieces (cut to fit) + eos, right-padded: (ids (B, T), mask (B, T)) int64."""
    rows = [[BOS_ID] + r[: max_len - 2] + [EOS_ID] for r in rows]
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), PAD_ID, dtype=torch.long)  # (B, T)
    mask = torch.zeros(len(rows), T, dtype=torch.long)  # (B, T)
    for b, r in enumerate(rows):
        ids[b, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[b, : len(r)] = 1
    return ids, mask


def _drop_pieces(rows: list[list[int]], p: float, g: torch.Generator) -> list[list[int]]:
    """Augmentation: drop each piece with probability p, keeping at least one piece per row."""
    if p <= 0:
        return rows
    out = []
    for r in rows:
        keep = (torch.rand(len(r), generator=g) >= p).tolist()
        kept = [t for t, k in zip(r, keep) if k]
        out.append(kept or r)
    return out


def length_batches(lengths: Sequence[int], batch_size: int, g: torch.Generator, window: int = 32) -> list[torch.Tensor]:
    """Shuffled batches of similar lengths (less padding): shuffle, sort within windows of batches, shuffle batches.

    >>> bs = length_batches([3, 1, 2, 5, 4], 2, torch.Generator().manual_seed(0))
    >>> sorted(int(i) for b in bs for i in b)
    [0, 1, 2, 3, 4]
    """
    order = torch.randperm(len(lengths), generator=g).tolist()
    span = batch_size * window
    batches = []
    for w in range(0, len(order), span):
        chunk = sorted(order[w: w + span], key=lambda i: lengths[i])
        batches += [torch.tensor(chunk[i: i + batch_size]) for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]


def set_determinism(seed: int, threads: int) -> None:
    """Fix the seed, the thread count and deterministic kernels, so a run is repeatable."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def train(model_cfg: ModelConfig, cfg: TrainConfig, train_ex: Examples,
          score: Callable[[AssistantModel], float] | None = None,
          init: dict[str, torch.Tensor] | None = None,
          log: Callable[[str], None] = lambda s: None) -> tuple[AssistantModel, list[dict]]:
    """Train an AssistantModel; return it (best epoch by `score`, in eval mode) and per-epoch history.

    `score(model) -> float` (higher is better) is called after each epoch on held-out data; without it the
    last epoch is kept. `init` overrides initial tensors by name (e.g. token embeddings from a teacher).
    """
    if model_cfg.adapter_rank:
        raise BadInput("the base model is trained without adapters: set adapter_rank=0")
    set_determinism(cfg.seed, cfg.threads)
    model = AssistantModel(model_cfg)
    if init:
        state = model.state_dict()
        for k, v in init.items():
            if k not in state or state[k].shape != v.shape:
                raise BadInput(f"init tensor {k} {tuple(v.shape)} does not match the model")
            state[k] = v.clone()
        model.load_state_dict(state)
    n = len(train_ex.pieces)
    lengths = [len(p) for p in train_ex.pieces]
    steps_per_epoch = len(length_batches(lengths, cfg.batch_size, torch.Generator()))
    total = steps_per_epoch * cfg.epochs if not cfg.max_steps else min(cfg.max_steps, steps_per_epoch * cfg.epochs)
    use_emb = train_ex.emb is not None and cfg.embed_weight > 0
    # training-only projection of the sentence vector onto the teacher's embedding space (not shipped)
    proj = torch.nn.Linear(model_cfg.d_model, train_ex.emb.shape[1]) if use_emb else torch.nn.Identity()
    params = list(model.parameters()) + list(proj.parameters())
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    warm = max(1, int(cfg.warmup_frac * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, 0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))))
    g = torch.Generator().manual_seed(cfg.seed)
    best, best_state, history, stale, step = -math.inf, None, [], 0, 0
    for epoch in range(cfg.epochs):
        model.train()
        sums = {"intent": 0.0, "lm": 0.0}
        for idx in length_batches(lengths, cfg.batch_size, g):  # idx: (b,)
            rows = _drop_pieces([train_ex.pieces[j] for j in idx.tolist()], cfg.piece_dropout, g)
            ids, mask = collate(rows, model_cfg.max_len)  # (b, T) each
            h = model.hidden(ids)  # (b, T, C)
            pooled = model.pool(h, mask)  # (b, C)
            intent_logits = model.intent(pooled)  # (b, I)
            keep = torch.ones(len(idx), dtype=torch.bool) if train_ex.lm is None else train_ex.lm[idx]  # (b,)
            l_int = F.cross_entropy(intent_logits, train_ex.labels[idx], label_smoothing=cfg.label_smoothing)
            if train_ex.soft is not None and cfg.distill_weight > 0:
                logp = F.log_softmax(intent_logits / cfg.temperature, dim=-1)  # (b, I)
                kd = F.kl_div(logp, train_ex.soft[idx], reduction="batchmean") * cfg.temperature ** 2
                l_int = (1 - cfg.distill_weight) * l_int + cfg.distill_weight * kd
            l_lm = lm_loss(model.lm_head(h[keep]), ids[keep], mask[keep]) if keep.any() else h.sum() * 0
            loss = l_int + cfg.lm_weight * l_lm
            if use_emb:
                loss = loss + cfg.embed_weight * (1 - F.cosine_similarity(proj(pooled), train_ex.emb[idx])).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            sums["intent"] += l_int.item() * len(idx)
            sums["lm"] += l_lm.item() * int(keep.sum())
            step += 1
            if cfg.max_steps and step >= cfg.max_steps:
                break
        model.eval()
        n_lm = n if train_ex.lm is None else max(1, int(train_ex.lm.sum()))
        rec = {"epoch": epoch + 1, "steps": step, "intent_loss": sums["intent"] / n, "lm_loss": sums["lm"] / n_lm}
        if score is not None:
            rec["val_score"] = score(model)
            if rec["val_score"] > best:
                best, stale = rec["val_score"], 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
        history.append(rec)
        log(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()))
        if (cfg.max_steps and step >= cfg.max_steps) or stale >= cfg.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), history
