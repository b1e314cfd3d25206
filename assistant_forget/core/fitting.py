"""Fitting personal parameters: the seeded batching and the AdamW loop every model family trains with.

Everything random comes from a `random.Random` the caller seeds (a day's seed), so a day's update is a pure
function of its inputs (DESIGN invariant 2). The loop can stop early: a repair asks `done` every
`check_every` steps whether the retained loss is back where it was.
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


def fit(model: nn.Module, batches: Sequence, loss: Callable[[object], torch.Tensor], lr: float, check_every: int,
        done: Callable[[], bool] | None = None) -> int:
    """AdamW (fresh, no weight decay) over `batches` on `model`'s trainable parameters, `loss(batch)` each step;
    with `done`, asked after every `check_every` steps (the last excepted), stop once it says so. Leaves the
    model in eval mode; returns the steps taken."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    model.train()
    taken = 0
    for taken, batch in enumerate(batches, 1):
        opt.zero_grad(set_to_none=True)
        loss(batch).backward()
        opt.step()
        if done is not None and taken % max(check_every, 1) == 0 and taken < len(batches):
            model.eval()
            if done():
                break
            model.train()
    model.eval()
    return taken
