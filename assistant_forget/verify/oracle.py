"""Reference models for verification: the oracle, and LiRA's shadow models. Nothing here writes to the device.

Oracle: the model of a device that never saw the forgotten data. The exact tier computes it (DESIGN
invariant 2), so `exact_replay` runs the exact pass on a copy of the ledger in a work directory inside
the device directory (DIR/.work/oracle-*, workdir.py: removed when the replay ends, and by the next
recovery or forget if the process dies), training from the device's store (the forgotten rows are
already deleted, so the oracle never sees them, and nothing forgotten is written anywhere). On the way it
passes the state just before the first forgotten day, which the shadow models start from.

Shadows (online LiRA, Carlini et al. 2022, made cheap): every utterance of a pool (the forgotten ones
and as many unseen ones) must be IN some shadows and OUT of others. For each of K pairs the pool is
split in random halves; each half is trained as that day's data, from the state just before the day,
with a seed of its own and the day's usual replay, so every pool utterance is IN exactly K shadows
and OUT of exactly K. Shadows stop after the day (no replay of later days): a cheap approximation.
"""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..device import workdir
from ..core.timeline import load_state as set_state
from ..core.family import fresh_model
from ..runner.engine import Engine
from ..core.errors import BadInput
from ..core.ledger import Ledger, state_version
from ..families.assistant.model import AssistantModel
from ..families.assistant.personalize import DayTrainer
from ..core.timeline import Progress, Timeline, day_seed

State = dict[str, torch.Tensor]  # personal parameter name -> tensor


@dataclass
class Replay:
    """What the exact pass on a copy of the ledger produced."""

    model: AssistantModel  # the oracle: the device's model retrained without the forgotten data
    version: str  # model version of the oracle (ledger.state_version of its personal state)
    before: State | None  # personal state just before `first_day`; None when no day was given
    seconds: float  # wall time of the replay


def exact_replay(eng: Engine, first_day: str | None, progress: Progress | None = None) -> Replay:
    """The oracle: the exact pass from the checkpoint before `first_day` (and any pending pass) on a ledger copy.

    With `first_day` None it is just the pending exact pass (the current model when none is pending).
    """
    t0 = time.perf_counter()
    with workdir.working_copy(eng.dev.root, "oracle") as tmp:
        root = tmp / "ledger"
        if eng.timeline.ledger.exists():
            shutil.copytree(eng.timeline.ledger.root, root)
        model = fresh_model(eng.family)
        personal = eng.family.personal(model)
        src = eng.timeline
        tl = Timeline(Ledger(root), model, personal, src.train_day, src.fingerprint, seed=src.seed,
                      model_id=src.model_id, checkpoint_every=src.checkpoint_every, delta_dtype=src.delta_dtype)
        days, horizon = eng.days_with_data(), eng.last_trained()
        before = None
        if first_day is not None:
            m = tl.load()
            m.pending_exact_from = min(d for d in (m.pending_exact_from, first_day) if d is not None)
            tl.ledger.commit(m)  # the copy only: makes the next sync rewind to a checkpoint before first_day
            tl.sync([d for d in days if d < first_day], progress=progress)
            before = tl.get_state()
        tl.sync(days, until=horizon, progress=progress)
        tl.load()
        return Replay(model, state_version(tl.get_state()), before, time.perf_counter() - t0)


@dataclass(frozen=True)
class _Row:
    text: str
    intent: str


class ShadowStore:
    """The log as a shadow's day sees it: the device's rows, plus `rows` on `day`. Memory only."""

    def __init__(self, store, day: str, rows: Sequence[tuple[str, str]]) -> None:
        self.store, self.day, self.rows = store, day, [_Row(t, i) for t, i in rows]

    def by_day(self, day: str) -> list:
        return list(self.store.by_day(day)) + (self.rows if day == self.day else [])

    def before(self, day: str) -> list:
        return self.store.before(day)


def shadow_stats(eng: Engine, before: State, day: str, pool: Sequence[tuple[str, str, int]], pairs: int,
                 stat: Callable[[AssistantModel], np.ndarray], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """LiRA statistics of `pool` (text, intent, times said) under 2 x `pairs` shadows of `day`.

    Returns (in_stats (N, pairs), out_stats (N, pairs)): `stat(model)` (N,) of the shadows that trained
    on each utterance and of those that did not.
    """
    if pairs < 2:
        raise BadInput(f"LiRA needs at least 2 shadow models per side, got {pairs}")
    n = len(pool)
    if n < 2:
        raise BadInput("LiRA needs at least 2 utterances in its pool")
    model = fresh_model(eng.family)
    rng = random.Random(f"assistant-forget.shadows:{seed}:{day}")
    ins, outs = np.zeros((n, pairs)), np.zeros((n, pairs))  # (N, K) each
    for j in range(pairs):
        order = list(range(n))
        rng.shuffle(order)
        halves = (sorted(order[: n // 2]), sorted(order[n // 2:]))
        for side, half in enumerate(halves):
            rows = [(pool[i][0], pool[i][1]) for i in half for _ in range(pool[i][2])]
            trainer = DayTrainer(ShadowStore(eng.store, day, rows), eng.base.tokenizer, eng.base.labels, eng.cfg,
                                 eng.base.config.max_len)
            set_state(model, before)
            trainer.train_day(model, day, day_seed(eng.dev.seed, day, f"shadow:{seed}:{j}:{side}"))
            s = stat(model)  # (N,)
            member = np.zeros(n, dtype=bool)
            member[half] = True
            ins[member, j], outs[~member, j] = s[member], s[~member]
    return ins, outs
