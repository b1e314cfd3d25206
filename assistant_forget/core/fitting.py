"""Fitting personal parameters: the seeded batching and the AdamW loop every model family trains with.

Everything random comes from a `random.Random` the caller seeds (a day's seed), so a day's update is a pure
function of its inputs (DESIGN invariant 2). The loop can stop early: a repair asks `done` every
`check_every` steps whether the retained loss is back where it was.

The optimizer is `AdamW` below rather than `torch.optim.AdamW`: the same update, operation for operation
(so every trained byte is unchanged), but constructing torch's imports `torch._dynamo` (2-3 s, sympy
inside), which would be most of the time a person waits for a fast forget.
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

import torch
import torch.nn as nn


def sample(rng: random.Random, rows: list, k: int) -> list:
    """`rows` itself when it holds at most `k`, else `k` of them drawn with `rng`."""
    return rows if len(rows) <= k else rng.sample(rows, k)


def minibatches(rng: random.Random, examples: list, size: int, steps: int | None = None, epochs: int = 1) -> list:
    """Shuffled passes over `examples` cut into batches of `size`: `epochs` passes, or with `steps` exactly that
    many batches (as many passes as it takes)."""
    if not examples:
        return []
    passes = epochs if steps is None else -(-steps // -(-len(examples) // size))
    batches = []
    for _ in range(passes):
        order = examples[:]
        rng.shuffle(order)
        batches += [order[i:i + size] for i in range(0, len(order), size)]
    return batches[:steps]


class AdamW:
    """AdamW without weight decay, bit for bit the update of `torch.optim.AdamW(params, lr, weight_decay=0)`
    on CPU (torch's single-tensor path: `exp_avg.lerp_`, `exp_avg_sq.mul_().addcmul_()`, bias corrections
    from a float step count, `addcdiv_`); a parameter without a gradient is skipped and keeps its step count,
    as torch's does. tests/core/test_fitting.py checks the equality against torch.
    """

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = list(params)
        self.lr, (self.beta1, self.beta2), self.eps = float(lr), betas, eps
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.steps = [0.0] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            self.steps[i] += 1.0
            step = self.steps[i]
            m, v = self.exp_avg[i], self.exp_avg_sq[i]
            m.lerp_(p.grad, 1 - self.beta1)
            v.mul_(self.beta2).addcmul_(p.grad, p.grad, value=1 - self.beta2)
            step_size = self.lr / (1 - self.beta1 ** step)
            denom = (v.sqrt() / (1 - self.beta2 ** step) ** 0.5).add_(self.eps)
            p.addcdiv_(m, denom, value=-step_size)


def fit(model: nn.Module, batches: Sequence, loss: Callable[[object], torch.Tensor], lr: float, check_every: int,
        done: Callable[[], bool] | None = None) -> int:
    """AdamW (fresh, no weight decay) over `batches` on `model`'s trainable parameters, `loss(batch)` each step;
    with `done`, asked after every `check_every` steps (the last excepted), stop once it says so. Leaves the
    model in eval mode; returns the steps taken."""
    opt = AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    taken = 0
    for taken, batch in enumerate(batches, 1):
        opt.zero_grad()
        loss(batch).backward()
        opt.step()
        if done is not None and taken % max(check_every, 1) == 0 and taken < len(batches):
            model.eval()
            if done():
                break
            model.train()
    model.eval()
    return taken
