"""Day-keyed personalisation for any `torch.nn.Module`: train, rewind, replay, subtract.

A `Timeline` keeps a model's *personal* parameters equal to what training the days with data, in date
order, from the initial state would give — one call to `train_day(model, day, seed)` per day, each with
a seed derived from (device seed, date). Because each day depends only on its inputs (DESIGN invariant 2),
rewinding to the checkpoint before day k and replaying the later days gives exactly the model of a device
that never saw the removed data (the exact tier). `fast_forget` subtracts stored deltas instead and marks
the state approximate until `sync` runs the exact pass (the fast tier). A day's update may read other days'
data (a replay sample): `train_day` returns those days, the ledger records them, and `fast_forget`
subtracts the delta of every day that read a forgotten one, so no remaining delta was trained on its data.

The model-specific parts are plain callables: what a day trains on, how its data is fingerprinted, and an
optional repair step. Nothing here knows about utterances or transformers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import torch
import torch.nn as nn

from . import crashpoints
from .errors import CorruptFile
from .keys import day_seed  # noqa: F401  (part of this module's API)
from .ledger import DayEntry, Ledger, Manifest, state_version

# (model, "YYYY-MM-DD", seed): train personal params in place; returns the other days whose data it read
TrainDay = Callable[[nn.Module, str, int], Optional[Iterable[str]]]
Repair = Callable[[nn.Module, int], None]  # (model, seed): a short repair fine-tune after a subtraction
Progress = Callable[[str], None]  # called with each day as it is (re)trained


def personal_state(model: nn.Module, names: Iterable[str]) -> dict[str, torch.Tensor]:
    """A detached copy of `model`'s parameters `names` (its personal state: what the ledger stores)."""
    params = dict(model.named_parameters())
    return {n: params[n].detach().clone() for n in names}


def load_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy `state` (parameter name -> tensor) into `model`'s parameters of those names, in place."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t)


@dataclass
class SyncPlan:
    rewind_to: str | None  # checkpoint day to restart from; None = initial state (or continue, see `resume`)
    resume: bool  # True: continue from the current state without rewinding
    days: list[str] = field(default_factory=list)  # days to (re)train, in order

    @property
    def empty(self) -> bool:
        return not self.days and self.resume


@dataclass
class Timeline:
    ledger: Ledger
    model: nn.Module  # base weights loaded; its personal parameters are overwritten from the ledger
    personal: list[str]  # names of the parameters that personalise (all others stay at the base)
    train_day: TrainDay
    fingerprint: Callable[[str], str]  # day -> hash of the day's current training data
    seed: int  # device seed
    model_id: str  # identifies base model + personalisation scheme; a ledger for another model is refused
    checkpoint_every: int = 7  # C: checkpoint after every C-th trained day
    delta_dtype: str = "float16"  # storage dtype of the deltas

    def __post_init__(self) -> None:
        params = dict(self.model.named_parameters())
        missing = [n for n in self.personal if n not in params]
        if missing:
            raise ValueError(f"personal parameters not in the model: {missing}")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        self.initial = self.get_state()
        for n, p in params.items():
            p.requires_grad_(n in self.personal)

    # -- state ----------------------------------------------------------------------------------
    def get_state(self) -> dict[str, torch.Tensor]:
        return personal_state(self.model, self.personal)

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.personal):
            raise CorruptFile(f"{self.ledger.root}: stored state does not match this model's personal parameters")
        load_state(self.model, state)

    def manifest(self) -> Manifest:
        return self.ledger.manifest_for(self.model_id, self.checkpoint_every, self.delta_dtype)

    def load(self) -> Manifest:
        """Put the committed personal state into the model; return the manifest."""
        m = self.manifest()
        self.set_state(self.initial if m.state is None else self.ledger.read(m.state))
        return m

    def _commit_state(self, m: Manifest) -> None:
        state = self.get_state()
        m.state = self.ledger.write("", "state", state)
        m.version = state_version(state)
        self.ledger.commit(m)

    # -- exact tier -----------------------------------------------------------------------------
    def plan(self, days_with_data: list[str], until: str | None = None) -> SyncPlan:
        """What `sync` would do: the earliest day whose trained data differs from the store, and from where."""
        m = self.manifest()
        last = max(m.days, default=None)
        horizon = None if until is None else max(until, last or until)  # `until` never un-trains a day
        target = sorted(d for d in days_with_data if horizon is None or d <= horizon)
        start = m.pending_exact_from
        for d in sorted(set(target) | set(m.days)):
            if start is not None and d >= start:
                break
            if d not in m.days or d not in target or m.days[d].data_hash != self.fingerprint(d):
                start = d
                break
        if start is None:
            return SyncPlan(None, True, [])
        if not m.approximate and (last is None or start > last):
            return SyncPlan(None, True, [d for d in target if d >= start])
        rewind = max((c for c in m.checkpoints if c < start), default=None)
        return SyncPlan(rewind, False, [d for d in target if rewind is None or d > rewind])

    def reset(self) -> Manifest:
        """Rewind to the initial state: every trained day and checkpoint dropped, committed (the start of a
        retrain from scratch; `sync` then trains every day again)."""
        m = self.load()
        m.days, m.checkpoints, m.pending_exact_from = {}, {}, None
        self.set_state(self.initial)
        self._commit_state(m)
        return m

    def sync(self, days_with_data: list[str], until: str | None = None, progress: Progress | None = None) -> SyncPlan:
        """Bring the model in line with the data: train new days, replay after changed or forgotten days.

        After it returns, the personal state equals straight-through training of `days_with_data` (up to the
        horizon) from the initial state, bit for bit; the manifest is committed after every day.
        """
        plan = self.plan(days_with_data, until)
        if plan.empty:
            self.load()
            return plan
        m = self.load()
        if not plan.resume:
            m.days = {d: e for d, e in m.days.items() if plan.rewind_to is not None and d <= plan.rewind_to}
            m.checkpoints = {d: r for d, r in m.checkpoints.items() if d in m.days}
            self.set_state(self.initial if plan.rewind_to is None else self.ledger.read(m.checkpoints[plan.rewind_to]))
            m.pending_exact_from = None
            self._commit_state(m)
            crashpoints.hit("timeline.rewound")
        for d in plan.days:
            before = self.get_state()
            reads = tuple(sorted(set(self.train_day(self.model, d, day_seed(self.seed, d)) or ()) - {d}))
            after = self.get_state()
            crashpoints.hit("timeline.day_trained")
            delta = {n: after[n] - before[n] for n in self.personal}
            m.days[d] = DayEntry(self.fingerprint(d), self.ledger.write_delta(m, d, delta), reads)
            if len(m.days) % m.checkpoint_every == 0:
                m.checkpoints[d] = self.ledger.write("checkpoints", d, after)
            self._commit_state(m)
            if progress:
                progress(d)
        return plan

    # -- fast tier ------------------------------------------------------------------------------
    def readers(self, days: Iterable[str], m: Manifest | None = None) -> list[str]:
        """Trained days, other than `days`, whose stored delta was trained on the data of one of `days`."""
        return (m or self.manifest()).readers(days)

    def fast_forget(self, days: list[str], repair: Repair | None = None, subtract: bool = True) -> Manifest:
        """Subtract the deltas of `days` and of their readers, drop every checkpoint from the first forgotten
        day, repair, mark approximate. With `subtract=False` the state is left as it is before `repair` runs
        (fine-tuning without subtraction); the ledger loses the same deltas and checkpoints either way.

        A reader's delta was trained on a forgotten day's data (its replay), so it goes too; the reader stays
        a trained day without a delta (its own data is retained), so the exact pass's horizon is unchanged.
        Checkpoints on or after the first forgotten day carry its influence and are not needed by the exact
        pass (which rewinds to a checkpoint before it), so they go now.
        """
        m = self.load()
        gone = sorted(d for d in days if d in m.days)
        readers = self.readers(days, m)
        hit = sorted(gone + readers)
        if not hit:
            return m
        state = self.get_state()
        for d in hit if subtract else ():
            ref = m.days[d].delta
            if ref is not None:
                for n, t in self.ledger.read_delta(ref).items():
                    state[n] = state[n] - t
        for d in gone:
            del m.days[d]
        for d in readers:
            m.days[d] = DayEntry(m.days[d].data_hash, None)
        self.set_state(state)
        first = hit[0]
        m.checkpoints = {c: r for c, r in m.checkpoints.items() if c < first}
        m.pending_exact_from = min(filter(None, [m.pending_exact_from, first]))
        if repair is not None:
            repair(self.model, day_seed(self.seed, first, "repair"))
        crashpoints.hit("timeline.subtracted")
        self._commit_state(m)
        return m
