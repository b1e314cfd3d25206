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
and OUT of exactly K. Shadows stop after the day (no replay of later days): a cheap approximation. Each
shadow is a pure task (`shadow`, core/executor.py), so a process pool or Ray trains them side by side.
"""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..core.executor import Executor
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


@dataclass(frozen=True)
class Shadow:
    """One shadow model: everything its task reads (picklable; a core/executor.py item)."""

    store: str  # the device's log (sqlite), opened read-only
    base: str  # the base model directory
    cfg: object  # families.assistant.personalize.PersonalizationConfig
    start: str  # safetensors file: the personal state before `day`
    start_sha: str  # its SHA-256, checked on reading
    day: str
    seed: int  # the day seed of this shadow's training
    rows: tuple[tuple[str, str], ...]  # its half of the pool, each as often as it was said (memory only)
    data: tuple[tuple[str, str], ...]  # the whole pool, scored
    batch_size: int

    def __repr__(self) -> str:  # an executor names a failing item: never its texts
        return f"Shadow(day={self.day} rows={len(self.rows)} seed={self.seed})"


def shadow(spec: Shadow) -> np.ndarray:
    """Train one shadow (the day's usual training on its half of the pool, from the state before the day) and
    return minus the LM loss of every pool utterance under it: (N,). A pure task (core/executor.py)."""
    from ..core.tensorfile import load_tensors
    from ..core.threads import one_torch_thread
    from ..device.store import LogStore
    from ..families.assistant.base import load_base
    from ..families.assistant.family import AssistantFamily
    from .scoring import TorchBackend, score

    with LogStore(Path(spec.store), readonly=True) as store, one_torch_thread():
        base = load_base(spec.base)
        model = fresh_model(AssistantFamily(store, base, spec.cfg))  # only the personal parameters train
        set_state(model, load_tensors(Path(spec.start), spec.start_sha))
        trainer = DayTrainer(ShadowStore(store, spec.day, spec.rows), base.tokenizer, base.labels, spec.cfg,
                             base.config.max_len)
        trainer.train_day(model, spec.day, spec.seed)
        return -score(TorchBackend(model, base.tokenizer, base.labels), list(spec.data), spec.batch_size).lm_loss


def shadow_stats(eng: Engine, before: State, day: str, pool: Sequence[tuple[str, str, int]], pairs: int,
                 batch_size: int, seed: int = 0, executor: Executor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """LiRA statistics (minus the LM loss) of `pool` (text, intent, times said) under 2 x `pairs` shadows of `day`.

    Returns (in_stats (N, pairs), out_stats (N, pairs)): the statistics under the shadows that trained on each
    utterance and under those that did not. Each shadow is a `shadow` task run by `executor` (default: one
    after another in this process, as a shadow trains one day only; a pool or Ray gives the same figures).
    The start state is written to a work directory inside the device (removed on return); the pool's texts
    travel in the tasks' arguments only.
    """
    from ..core.executor import SerialExecutor
    from ..core.tensorfile import save_tensors

    if pairs < 2:
        raise BadInput(f"LiRA needs at least 2 shadow models per side, got {pairs}")
    n = len(pool)
    if n < 2:
        raise BadInput("LiRA needs at least 2 utterances in its pool")
    rng = random.Random(f"assistant-forget.shadows:{seed}:{day}")
    data = tuple((t, i) for t, i, _ in pool)
    halves = []
    for _ in range(pairs):
        order = list(range(n))
        rng.shuffle(order)
        halves.append((sorted(order[: n // 2]), sorted(order[n // 2:])))
    with workdir.working_copy(eng.dev.root, "shadows") as tmp:
        start = tmp / "start.safetensors"
        sha = save_tensors(start, before)
        specs = [Shadow(str(eng.dev.store_path), str(eng.base.root), eng.cfg, str(start), sha, day,
                        day_seed(eng.dev.seed, day, f"shadow:{seed}:{j}:{side}"),
                        tuple((pool[i][0], pool[i][1]) for i in half for _ in range(pool[i][2])), data, batch_size)
                 for j, pair in enumerate(halves) for side, half in enumerate(pair)]
        stats = (executor or SerialExecutor()).map(shadow, specs)  # 2 x pairs arrays of (N,)
    ins, outs = np.zeros((n, pairs)), np.zeros((n, pairs))  # (N, K) each
    for j, pair in enumerate(halves):
        for side, half in enumerate(pair):
            s = stats[2 * j + side]
            member = np.zeros(n, dtype=bool)
            member[half] = True
            ins[member, j], outs[~member, j] = s[member], s[~member]
    return ins, outs
