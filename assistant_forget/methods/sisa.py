"""SISA (Bourtoule et al., "Machine Unlearning", IEEE S&P 2021): contiguous time shards, one model each;
forgetting retrains only the shards that held a forgotten day. Measured only: the ensemble is not the
device's single model.

In memory, on the assistant's family: `prepare` (SISA's nightly training, before the forget, with the data
still there) trains the ensemble (`train_sisa`: one base + adapters model per shard, with the device's day
trainer and day seeds, replay limited to the shard's own days); `apply` forgets from it (`sisa`) and returns
the aggregate (`EnsembleModel`: log of the mean of the members' probabilities). Torch runs on one thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn as nn

from ..core.errors import BadInput
from ..core.method import Method, Plan, Request, Subject, check_count, register
from ..core.threads import one_torch_thread
from ..core.timeline import Progress, day_seed, load_state, personal_state
from ..device.localtime import parse_date
from ..families.assistant.model import AssistantModel
from ..core.family import fresh_model
from ._shared import assistant, trained_days

State = dict[str, torch.Tensor]  # personal parameter name -> tensor


@dataclass(frozen=True)
class SisaConfig:
    shards: int = 4  # contiguous time shards, one personal model (base + adapters) each
    slice_every: int = 0  # slice checkpoint after every this many days of a shard (0: retrain from its start)

    def __post_init__(self) -> None:
        check_count("shards", self.shards, 1)
        check_count("slice_every", self.slice_every, 0)


def shard_bounds(days: Sequence[str], shards: int) -> list[tuple[str, str]]:
    """(first, last) day of each of `shards` contiguous shards of sorted `days`, sizes differing by at most one.

    >>> shard_bounds(["2025-01-01", "2025-01-02", "2025-01-04", "2025-01-05", "2025-01-09"], 2)
    [('2025-01-01', '2025-01-04'), ('2025-01-05', '2025-01-09')]
    """
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise BadInput(f"SISA needs at least 1 shard, got {shards!r}")
    if shards > len(days):
        raise BadInput(f"{shards} shards for {len(days)} days with data: a shard would be empty; use at most "
                       f"{len(days)} shards")
    size, extra = divmod(len(days), shards)
    out, i = [], 0
    for s in range(shards):
        n = size + (s < extra)
        out.append((days[i], days[i + n - 1]))
        i += n
    return out


@dataclass
class Ensemble:
    """A SISA ensemble in memory: each shard's bounds, trained days, personal state and slice checkpoints."""

    bounds: list[tuple[str, str]]  # (first, last) day of each shard, fixed when the ensemble is trained
    days: list[list[str]]  # days each shard's model trained, in order
    states: list[State]  # personal state of each shard's model
    slices: list[dict[str, State]]  # per shard: day -> state after it, every `slice_every` shard days
    slice_every: int = 0  # as SisaConfig.slice_every
    replayed: int = 0  # days the last train_sisa or sisa call trained (the cost)
    retrained: list[int] = field(default_factory=list)  # shards it trained


def _check_days(days: Sequence[str], known: Sequence[str], what: str) -> list[str]:
    """`days` as sorted distinct YYYY-MM-DD strings, each one of `known`; BadInput unless a non-empty list of
    calendar dates that are all `what`."""
    if isinstance(days, str) or not days:
        raise BadInput(f"give the forgotten days as a non-empty list of YYYY-MM-DD dates, got {days!r}")
    days = sorted({parse_date(d).isoformat() for d in days})
    unknown = sorted(set(days) - set(known))
    if unknown:
        span = f"{known[0]}..{known[-1]}" if known else "none"
        raise BadInput(f"{', '.join(unknown[:3])}: not {what} (those are {span}); nothing was changed")
    return days


def _train_shard(subject: Subject, ensemble: Ensemble, s: int, days: list[str], changed_from: str | None,
                 progress: Progress | None) -> None:
    """(Re)train shard s over `days`: from the initial state, or from its latest slice before `changed_from`."""
    first, last = ensemble.bounds[s]
    keep = {} if changed_from is None else {d: t for d, t in ensemble.slices[s].items() if d < changed_from}
    start = max(keep, default=None)
    shard = assistant(subject, Sisa.name).within(first, last)  # the family seeing only the shard's days
    model = fresh_model(shard)
    if start is not None:
        load_state(model, keep[start])
    names = subject.timeline.personal
    replayed = 0
    for i, d in enumerate(days, 1):
        if start is not None and d <= start:
            continue
        shard.train_day(model, d, day_seed(subject.seed, d))
        replayed += 1
        if ensemble.slice_every and i % ensemble.slice_every == 0:  # slice points: every slice_every-th shard day
            keep[d] = personal_state(model, names)
        if progress:
            progress(d)
    ensemble.days[s], ensemble.states[s], ensemble.slices[s] = list(days), personal_state(model, names), keep
    ensemble.replayed += replayed
    ensemble.retrained.append(s)


@one_torch_thread()
def train_sisa(subject: Subject, cfg: SisaConfig = SisaConfig(), bounds: Sequence[tuple[str, str]] | None = None,
               progress: Progress | None = None) -> Ensemble:
    """Train a SISA ensemble over `trained_days`: `cfg.shards` contiguous shards (or the given `bounds`), each
    trained from the initial state with the device's day trainer and day seeds, replay limited to its own days.

    This is SISA's nightly training (done before a forget, with the data still there); `sisa` then forgets.
    """
    assistant(subject, Sisa.name)
    days = trained_days(subject)
    bounds = list(bounds) if bounds is not None else shard_bounds(days, cfg.shards)
    if not bounds or any(a > b for a, b in bounds) or any(b >= c for (_, b), (c, _) in zip(bounds, bounds[1:])):
        raise BadInput(f"shard bounds must be non-empty, ordered, non-overlapping (first, last) pairs, got {bounds}")
    ensemble = Ensemble(bounds, [[] for _ in bounds], [{} for _ in bounds], [{} for _ in bounds], cfg.slice_every)
    for s, (a, b) in enumerate(bounds):
        _train_shard(subject, ensemble, s, [d for d in days if a <= d <= b], None, progress)
    return ensemble


@one_torch_thread()
def sisa(subject: Subject, ensemble: Ensemble, days: Sequence[str],
         progress: Progress | None = None) -> "EnsembleModel":
    """SISA unlearning: retrain only the shards that hold a forgotten day, from their start or their last slice
    checkpoint before it, on the log after the forget; the others are untouched.

    Updates `ensemble` in place and returns its aggregate model. Exact with respect to the ensemble: each
    retrained shard equals that shard trained without the forgotten data.
    """
    assistant(subject, Sisa.name)
    days = _check_days(days, sorted(d for ds in ensemble.days for d in ds), "days the ensemble trained on")
    now = trained_days(subject)
    ensemble.replayed, ensemble.retrained = 0, []
    for s, (a, b) in enumerate(ensemble.bounds):
        hit = [d for d in days if d in ensemble.days[s]]
        if hit:
            kept = [d for d in now if a <= d <= b and d <= ensemble.days[s][-1]]
            _train_shard(subject, ensemble, s, kept, hit[0], progress)
    return ensemble_model(subject, ensemble)


class EnsembleModel(nn.Module):
    """SISA's aggregate: forward returns log of the mean of the shard models' probabilities, for both heads.

    Log-probabilities stand in for logits: scoring.py's log-softmax leaves them unchanged.
    """

    def __init__(self, members: Sequence[AssistantModel]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.cfg = members[0].cfg  # scoring reads max_len from here

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outs = [m(input_ids, attention_mask) for m in self.members]  # S x ((B, I), (B, T, V))
        log_s = math.log(len(outs))
        intent = torch.stack([i.log_softmax(-1) for i, _ in outs]).logsumexp(0) - log_s  # (B, I)
        lm = torch.stack([v.log_softmax(-1) for _, v in outs]).logsumexp(0) - log_s  # (B, T, V)
        return intent, lm


def ensemble_model(subject: Subject, ensemble: Ensemble) -> EnsembleModel:
    """The ensemble's aggregate model: one base + adapters model per shard that has data left."""
    family = assistant(subject, Sisa.name)
    if not any(ensemble.days):
        raise BadInput("every shard of the ensemble has lost all its days: there is no model to aggregate")
    members = []
    for state, days in zip(ensemble.states, ensemble.days):
        if days:
            m = family.new_model()
            load_state(m, state)
            members.append(m.eval())
    return EnsembleModel(members).eval()


@register
class Sisa(Method):
    """Retrain the affected shards of a SISA ensemble (measured only)."""

    name, exact, commits, Config = "sisa", True, False, SisaConfig
    why_not = "its result is an ensemble of shard models, not the device's one model and ledger"

    def prepare(self, subject: Subject, progress=None) -> Ensemble:
        """SISA's nightly training, before the forget: one model per shard (`train_sisa`)."""
        return train_sisa(subject, self.config, progress=progress)

    def apply(self, subject: Subject, request: Request, plan: Plan, progress=None, forgotten=None,
              prepared: Ensemble | None = None) -> EnsembleModel:
        """The aggregate model after retraining the shards that held a forgotten day (`prepared`: the ensemble
        `prepare` trained before the forget; updated in place)."""
        if not isinstance(prepared, Ensemble):
            raise BadInput("sisa forgets from an ensemble trained before the forget: pass "
                           "prepared=method.prepare(engine), called while the data is still there")
        return sisa(subject, prepared, sorted(request.days), progress)
