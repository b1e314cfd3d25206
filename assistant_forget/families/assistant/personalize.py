"""Nightly personalisation of the assistant model: what one day trains, on which parameters.

Which parameters move: only the low-rank adapters (rank 4) on every projection — 8,192 numbers, so a
day's delta fits the ledger budget — while the base weights (public) never change. With a replay of public
CLINC150 text each day, that keeps what the base knew (tools/bench_personalize.py compares the choices;
figures in BENCHMARKS.md).

A day trains on its own utterances, a replay sample drawn from a few whole earlier days, and a sample of
public CLINC150 text; both heads (intent cross-entropy and next-token loss). Fresh optimizer each day; every
random choice comes from the day's seed, and utterances are read in the store's canonical order, so a
day's update depends only on (base, state, data, seed) — never on insertion order or ids.

Why a few whole recent days: `train_day` returns the days its replay read, the ledger records them, and
the fast tier subtracts the delta of every day that read a forgotten one. Replay drawn from the whole
history spreads each day's data over many later deltas, beyond the reach of a subtraction
(tools/bench_quality.py measured it: the forgotten day stayed detectable); `replay_days` days among the last
`replay_window` reach about `replay_days` later deltas, which the fast tier removes too.
"""

from __future__ import annotations

import hashlib
import random
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...device.clinc import load_clinc
from .model import lm_loss
from ...core.fitting import fit, minibatches, sample
from ...device.store import LogStore, Utterance
from .config import PERSONAL_SETS, PersonalizationConfig
from .tokenizer import Tokenizer


def personal_parameters(model: nn.Module, cfg: PersonalizationConfig) -> list[str]:
    """Names of the parameters that personalise, in the model's order."""
    pick = PERSONAL_SETS[cfg.personal]
    return [n for n, _ in model.named_parameters() if pick(n)]


def fingerprint_day(rows: list[Utterance]) -> str:
    """Hash of a day's training data in canonical order (changes when an utterance is added or removed)."""
    h = hashlib.sha256()
    for u in rows:
        h.update(f"{u.id}\x1f{u.utc}\x1f{u.tz}\x1f{u.intent}\x1f{u.text}\x1e".encode())
    return h.hexdigest()


def joint_loss(model: nn.Module, tok: Tokenizer, texts: list[str], intents: torch.Tensor,
               lm_weight: float, max_len: int) -> torch.Tensor:
    """Intent cross-entropy + weighted next-token cross-entropy over real tokens."""
    ids, mask = tok.encode_batch(texts, max_len)  # (B, T) each
    intent_logits, lm_logits = model(ids, mask)  # (B, I), (B, T, V)
    return F.cross_entropy(intent_logits, intents) + lm_weight * lm_loss(lm_logits, ids, mask)


def joint_loss_per_example(model: nn.Module, tok: Tokenizer, texts: list[str], intents: torch.Tensor,
                           lm_weight: float, max_len: int) -> torch.Tensor:
    """`joint_loss` per utterance, shape (N,): intent cross-entropy + weighted mean next-token NLL (eval, no grad)."""
    ids, mask = tok.encode_batch(texts, max_len)
    with torch.inference_mode():
        intent_logits, lm_logits = model(ids, mask)
    target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    nll = F.cross_entropy(lm_logits[:, :-1].transpose(1, 2), target, ignore_index=-100, reduction="none")
    per_token = nll.sum(1) / (target != -100).sum(1).clamp(min=1)
    return F.cross_entropy(intent_logits, intents, reduction="none") + lm_weight * per_token


class DayTrainer:
    """The assistant's `train_day` and `repair` callables for a `Timeline`, reading from the log store."""

    def __init__(self, store: LogStore, tok: Tokenizer, labels: Sequence[str], cfg: PersonalizationConfig,
                 max_len: int) -> None:
        self.store, self.tok, self.cfg, self.max_len = store, tok, cfg, max_len
        self.label_index = {name: i for i, name in enumerate(labels)}
        self.public = load_clinc()["train"] + load_clinc()["oos_train"]

    def _fit(self, model: nn.Module, examples: list[tuple[str, str]], seed: int, steps: int | None,
             done: Callable[[], bool] | None = None, lr: float | None = None) -> int:
        """AdamW over `examples` (see `minibatches`); with `done`, asked after every `repair_steps` steps
        (the last excepted), stop early once it says so. Returns the steps taken."""
        rng = random.Random(seed)
        torch.manual_seed(seed)  # dropout
        batches = minibatches(rng, examples, self.cfg.batch_size, steps, self.cfg.epochs)

        def loss(batch: list[tuple[str, str]]) -> torch.Tensor:
            y = torch.tensor([self.label_index[i] for _, i in batch])
            return joint_loss(model, self.tok, [t for t, _ in batch], y, self.cfg.lm_weight, self.max_len)

        return fit(model, batches, loss, self.cfg.lr if lr is None else lr, self.cfg.repair_steps, done)

    def retained_loss(self, model: nn.Module, retained: list[tuple[str, str]] | None = None) -> float:
        """Mean training loss (eval mode) of `model` on `repair_sample` retained utterances, the same ones for
        the same log: the yardstick a long repair stops at. `retained`: the store's (text, intent) pairs in
        canonical order, when the caller has them already."""
        if retained is None:
            retained = [(u.text, u.intent) for u in self.store.all()]
        rows = sample(random.Random(0x1055), retained, self.cfg.repair_sample)
        if not rows:
            return 0.0
        was_training = model.training
        model.eval()
        with torch.inference_mode():
            total = sum(len(b) * joint_loss(model, self.tok, [t for t, _ in b],
                                            torch.tensor([self.label_index[i] for _, i in b]),
                                            self.cfg.lm_weight, self.max_len).item()
                        for b in (rows[i:i + self.cfg.batch_size] for i in range(0, len(rows), self.cfg.batch_size)))
        model.train(was_training)
        return total / len(rows)

    def replay_days(self, day: str, rng: random.Random) -> dict[str, list[tuple[str, str]]]:
        """The earlier days `day` replays (drawn with `rng`), each with its utterances in canonical order."""
        if not (self.cfg.replay_personal and self.cfg.replay_days):
            return {}
        earlier: dict[str, list[tuple[str, str]]] = {}
        for u in self.store.before(day):
            earlier.setdefault(u.local_date, []).append((u.text, u.intent))
        picked = sample(rng, sorted(earlier)[-self.cfg.replay_window:], self.cfg.replay_days)
        return {d: earlier[d] for d in sorted(picked)}

    def train_day(self, model: nn.Module, day: str, seed: int) -> list[str]:
        """Train one day in place; returns the earlier days whose utterances it replayed."""
        rng = random.Random(seed ^ 0x5EED)
        today = [(u.text, u.intent) for u in self.store.by_day(day)]
        replay = self.replay_days(day, rng)
        pool = [x for rows in replay.values() for x in rows]
        examples = (today + sample(rng, pool, self.cfg.replay_personal)
                    + sample(rng, self.public, self.cfg.replay_public))
        self._fit(model, examples, seed, None)
        return list(replay)

    def repair(self, model: nn.Module, seed: int, steps: int | None = None, target: float | None = None,
               lr: float | None = None) -> int:
        """The fast tier's repair: `steps` (default `repair_steps`) of fine-tuning on a sample of every retained
        day mixed with public text. The retained sample grows with the steps so that a long repair still
        sees each utterance about once: at least `repair_sample`, else steps x batch minus the public part.

        With `target` (the `retained_loss` of the model before the subtraction), the steps past
        `repair_steps` are a ceiling: the repair stops once the retained loss is back at or below `target`.
        A subtraction that left the retained data fitted as well as before needs no more; one that pushed
        the model off it (a heavy day whose influence later days had already trained against) gets as much
        as it takes, up to `steps`. Returns the steps taken.
        """
        steps = self.cfg.repair_steps if steps is None else steps
        rng = random.Random(seed ^ 0x5EED)
        retained = [(u.text, u.intent) for u in self.store.all()]
        n = max(self.cfg.repair_sample, steps * self.cfg.batch_size - self.cfg.replay_public)
        examples = sample(rng, retained, n) + sample(rng, self.public, self.cfg.replay_public)
        done = None if target is None else (lambda: self.retained_loss(model, retained) <= target)
        return self._fit(model, examples, seed, steps, done, lr)
