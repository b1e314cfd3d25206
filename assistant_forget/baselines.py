"""Literature unlearning baselines on the assistant's model, to compare with the fast and exact tiers.

Each function takes an Engine whose store has already lost the forgotten rows (as forget.py deletes them
before the model changes), plus what its method needs — the forgotten day(s), or the forgotten utterances
held in memory — and returns the model after forgetting, scoreable by scoring.TorchBackend:

  retrain_from_base   every retained day trained from the base model: the reference (equals the exact tier)
  sisa                SISA time-sharded ensemble (Bourtoule et al. 2021): retrain only the forgotten day's shard
  neggrad_plus        NegGrad+ (Kurmanji et al. 2023): ascent on the forgotten utterances, descent on retained
  finetune_retained   fine-tune on retained days only (the catastrophic-forgetting baseline)
  pure_subtraction    Amnesiac-style (Graves et al. 2021): subtract Δ_k, no repair (the fast tier, 0 repair steps)

They are measured (tools/bench_baselines.py), not shipped: apart from pure_subtraction, which is the fast
tier's own Timeline.fast_forget and commits like it, nothing here writes to the device. Every random choice
comes from a seed derived from the device seed and the first forgotten day; torch runs on one thread.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Sequence

import torch
import torch.nn as nn

from .api import one_torch_thread
from .engine import Engine, build_personal_model
from .errors import BadInput
from .localtime import parse_date
from .model import AssistantModel
from .oracle import fresh_model, set_state
from .personalize import DayTrainer, joint_loss, minibatches, sample
from .store import Utterance
from .timeline import Progress, day_seed

State = dict[str, torch.Tensor]  # personal parameter name -> tensor
Example = tuple[str, str]  # (text, intent)


@dataclass(frozen=True)
class BaselineConfig:
    """Hyper-parameters of the baselines; validated on creation."""

    shards: int = 4  # SISA: contiguous time shards, one personal model (base + adapters) each
    slice_every: int = 0  # SISA: slice checkpoint after every this many days of a shard (0: retrain from its start)
    steps: int | None = None  # NegGrad+ and fine-tune steps (None: repair_steps, the fast tier's fewest)
    lr: float | None = None  # NegGrad+ and fine-tune learning rate (None: the personalisation lr)
    alpha: float = 0.5  # NegGrad+: alpha * retained loss - (1 - alpha) * forgotten loss (tuned on another persona)

    def __post_init__(self) -> None:
        for name in ("shards", "slice_every", "steps"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < (name == "shards")):
                raise BadInput(f"{name} must be an integer >= {int(name == 'shards')}, got {v!r}")
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise BadInput(f"lr must be a positive number (or None for the personalisation lr), got {self.lr!r}")
        if not (isinstance(self.alpha, (int, float)) and 0.0 <= self.alpha <= 1.0):
            raise BadInput(f"alpha must be in [0, 1] (the weight of the retained loss), got {self.alpha!r}")


# -- helpers ------------------------------------------------------------------------------------
def trained_days(eng: Engine) -> list[str]:
    """The days a baseline trains over: days with data up to the last day the device trained (all without one)."""
    horizon = eng.last_trained()
    return [d for d in eng.days_with_data() if horizon is None or d <= horizon]


def _check_dates(days: Sequence[str]) -> list[str]:
    """`days` as sorted distinct YYYY-MM-DD strings; BadInput unless a non-empty list of calendar dates."""
    if isinstance(days, str) or not days:
        raise BadInput(f"give the forgotten days as a non-empty list of YYYY-MM-DD dates, got {days!r}")
    return sorted({parse_date(d).isoformat() for d in days})


def _check_days(days: Sequence[str], known: Sequence[str], what: str) -> list[str]:
    """`days` sorted, each one of `known`; BadInput otherwise."""
    days = _check_dates(days)
    unknown = sorted(set(days) - set(known))
    if unknown:
        span = f"{known[0]}..{known[-1]}" if known else "none"
        raise BadInput(f"{', '.join(unknown[:3])}: not {what} (those are {span}); nothing was changed")
    return days


def _examples(eng: Engine, rows: Sequence[Utterance], name: str) -> list[Example]:
    """(text, intent) pairs of `rows`, whose intents must be the model's labels; BadInput otherwise."""
    out = [(u.text, u.intent) for u in rows]
    bad = [i for _, i in out if i not in eng.trainer.label_index]
    if bad:
        raise BadInput(f"{name}: intent {bad[0]!r} is not one of the model's labels (see clinc.intent_labels())")
    return out


def personal_state(eng: Engine, model: nn.Module) -> State:
    """A copy of `model`'s personal parameters (the ones the device's ledger stores)."""
    params = dict(model.named_parameters())
    return {n: params[n].detach().clone() for n in eng.timeline.personal}


# -- retrain from base ----------------------------------------------------------------------------
@one_torch_thread()
def retrain_from_base(eng: Engine, progress: Progress | None = None) -> AssistantModel:
    """Retrain from the base model over every retained day (`trained_days`): the reference method.

    Same day trainer, same day seeds as the device, so it equals the exact tier bit for bit (DESIGN
    invariant 2); its cost grows with the whole history.
    """
    model, _ = fresh_model(eng)
    for d in trained_days(eng):
        eng.trainer.train_day(model, d, day_seed(eng.dev.seed, d))
        if progress:
            progress(d)
    return model.eval()


# -- SISA -----------------------------------------------------------------------------------------
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


class ShardView:
    """The log as one SISA shard sees it: only days in [first, last], so replay stays inside the shard."""

    def __init__(self, store, first: str, last: str) -> None:
        self.store, self.first, self.last = store, first, last

    def by_day(self, day: str) -> list[Utterance]:
        return self.store.by_day(day) if self.first <= day <= self.last else []

    def before(self, day: str) -> list[Utterance]:
        return [u for u in self.store.by_range(self.first, day) if u.local_date < day] if day > self.first else []

    def all(self) -> list[Utterance]:
        return self.store.by_range(self.first, self.last)


@dataclass
class Sisa:
    """A SISA ensemble in memory: each shard's bounds, trained days, personal state and slice checkpoints."""

    bounds: list[tuple[str, str]]  # (first, last) day of each shard, fixed when the ensemble is trained
    days: list[list[str]]  # days each shard's model trained, in order
    states: list[State]  # personal state of each shard's model
    slices: list[dict[str, State]]  # per shard: day -> state after it, every `slice_every` shard days
    slice_every: int = 0  # as BaselineConfig.slice_every
    replayed: int = 0  # days the last train_sisa or sisa call trained (the cost)
    retrained: list[int] = field(default_factory=list)  # shards it trained


def _train_shard(eng: Engine, sisa: Sisa, s: int, days: list[str], changed_from: str | None,
                 progress: Progress | None) -> None:
    """(Re)train shard s over `days`: from the base model, or from its latest slice before `changed_from`."""
    first, last = sisa.bounds[s]
    keep = {} if changed_from is None else {d: t for d, t in sisa.slices[s].items() if d < changed_from}
    start = max(keep, default=None)
    model, _ = fresh_model(eng)
    if start is not None:
        set_state(model, keep[start])
    trainer = DayTrainer(ShardView(eng.store, first, last), eng.base.tokenizer, eng.base.labels, eng.cfg,
                         eng.base.config.max_len)
    replayed = 0
    for i, d in enumerate(days, 1):
        if start is not None and d <= start:
            continue
        trainer.train_day(model, d, day_seed(eng.dev.seed, d))
        replayed += 1
        if sisa.slice_every and i % sisa.slice_every == 0:  # slice points: every slice_every-th day of the shard
            keep[d] = personal_state(eng, model)
        if progress:
            progress(d)
    sisa.days[s], sisa.states[s], sisa.slices[s] = list(days), personal_state(eng, model), keep
    sisa.replayed += replayed
    sisa.retrained.append(s)


@one_torch_thread()
def train_sisa(eng: Engine, cfg: BaselineConfig = BaselineConfig(), bounds: Sequence[tuple[str, str]] | None = None,
               progress: Progress | None = None) -> Sisa:
    """Train a SISA ensemble over `trained_days`: `cfg.shards` contiguous shards (or the given `bounds`), each
    trained from the base model with the device's day trainer and day seeds, replay limited to its own days.

    This is SISA's nightly training (done before a forget, with the data still there); `sisa` then forgets.
    """
    days = trained_days(eng)
    bounds = list(bounds) if bounds is not None else shard_bounds(days, cfg.shards)
    if not bounds or any(a > b for a, b in bounds) or any(b >= c for (_, b), (c, _) in zip(bounds, bounds[1:])):
        raise BadInput(f"shard bounds must be non-empty, ordered, non-overlapping (first, last) pairs, got {bounds}")
    sisa = Sisa(bounds, [[] for _ in bounds], [{} for _ in bounds], [{} for _ in bounds], cfg.slice_every)
    for s, (a, b) in enumerate(bounds):
        _train_shard(eng, sisa, s, [d for d in days if a <= d <= b], None, progress)
    return sisa


@one_torch_thread()
def sisa(eng: Engine, ensemble: Sisa, days: Sequence[str], progress: Progress | None = None) -> "EnsembleModel":
    """SISA unlearning (Bourtoule et al., "Machine Unlearning", IEEE S&P 2021): retrain only the shards that
    hold a forgotten day, from their start or their last slice checkpoint before it; the others are untouched.

    Updates `ensemble` in place and returns its aggregate model. Exact with respect to the ensemble: each
    retrained shard equals that shard trained without the forgotten data.
    """
    days = _check_days(days, sorted(d for ds in ensemble.days for d in ds), "days the ensemble trained on")
    now = trained_days(eng)
    ensemble.replayed, ensemble.retrained = 0, []
    for s, (a, b) in enumerate(ensemble.bounds):
        hit = [d for d in days if d in ensemble.days[s]]
        if hit:
            kept = [d for d in now if a <= d <= b and d <= ensemble.days[s][-1]]
            _train_shard(eng, ensemble, s, kept, hit[0], progress)
    return ensemble_model(eng, ensemble)


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


def ensemble_model(eng: Engine, ensemble: Sisa) -> EnsembleModel:
    """The ensemble's aggregate model: one base + adapters model per shard that has data left."""
    members = []
    if not any(ensemble.days):
        raise BadInput("every shard of the ensemble has lost all its days: there is no model to aggregate")
    for state, days in zip(ensemble.states, ensemble.days):
        if not days:
            continue
        m = build_personal_model(eng.base, eng.cfg)
        set_state(m, state)
        members.append(m.eval())
    return EnsembleModel(members).eval()


# -- NegGrad+ -------------------------------------------------------------------------------------
@one_torch_thread()
def neggrad_plus(eng: Engine, forgotten: Sequence[Utterance], cfg: BaselineConfig = BaselineConfig()) -> AssistantModel:
    """NegGrad+ (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023): from the current model,
    `steps` AdamW steps on alpha * L(retained batch) - (1 - alpha) * L(forgotten batch), personal parameters only.

    L is the training loss (intent + next-token); retained batches draw, like the repair, from the retained
    log and public replay. `forgotten`: the forgotten utterances held in memory, already gone from the store.
    Changes the engine's model in memory (not the ledger) and returns it.
    """
    if isinstance(forgotten, (str, bytes)) or not forgotten or not all(isinstance(u, Utterance) for u in forgotten):
        raise BadInput("NegGrad+ needs the forgotten utterances (store Utterance rows read before deleting them)")
    still = eng.store.existing_ids([u.id for u in forgotten])
    if still:
        raise BadInput(f"{len(still)} forgotten utterances are still in the store; delete them first (a baseline "
                       "runs on the log after the forget)")
    steps, lr = _budget(eng, cfg)
    seed = day_seed(eng.dev.seed, min(u.local_date for u in forgotten), "neggrad+")
    rng = random.Random(seed)
    forget_set = _examples(eng, forgotten, "forgotten")
    retain_set = (sample(rng, _examples(eng, eng.store.all(), "retained"), eng.cfg.repair_sample)
                  + sample(rng, eng.trainer.public, eng.cfg.replay_public))
    model = eng.model
    params = dict(model.named_parameters())
    opt = torch.optim.AdamW([params[n] for n in eng.timeline.personal], lr=lr, weight_decay=0.0)
    bs = eng.cfg.batch_size
    loss = lambda batch: joint_loss(model, eng.base.tokenizer, [t for t, _ in batch],  # noqa: E731
                                    torch.tensor([eng.trainer.label_index[i] for _, i in batch]),
                                    eng.cfg.lm_weight, eng.base.config.max_len)
    torch.manual_seed(seed)  # dropout
    model.train()
    for kept, gone in zip(minibatches(rng, retain_set, bs, steps), minibatches(rng, forget_set, bs, steps)):
        opt.zero_grad(set_to_none=True)
        (cfg.alpha * loss(kept) - (1.0 - cfg.alpha) * loss(gone)).backward()
        opt.step()
    return model.eval()


def _budget(eng: Engine, cfg: BaselineConfig) -> tuple[int, float]:
    """(steps, lr): the config's, else the fast tier's repair budget and the personalisation lr."""
    return (eng.cfg.repair_steps if cfg.steps is None else cfg.steps), (eng.cfg.lr if cfg.lr is None else cfg.lr)


# -- fine-tune on retained days ---------------------------------------------------------------------
@one_torch_thread()
def finetune_retained(eng: Engine, days: Sequence[str], cfg: BaselineConfig = BaselineConfig()) -> AssistantModel:
    """Fine-tune the current model on retained days only (the "catastrophic forgetting" baseline of the
    unlearning literature, e.g. Golatkar et al. 2020; Kurmanji et al. 2023).

    It is the fast tier's repair without the subtraction: the same trainer, sample and seed, on the
    log after the forget (`steps` defaults to repair_steps). `days`: the forgotten days, which the engine
    trained (a subtraction may have dropped them from the ledger already); the first picks the seed. Changes
    the engine's model in memory and returns it.
    """
    days = _check_dates(days)
    steps, lr = _budget(eng, cfg)
    trainer = DayTrainer(eng.store, eng.base.tokenizer, eng.base.labels, replace(eng.cfg, repair_steps=steps, lr=lr),
                         eng.base.config.max_len)
    trainer.repair(eng.model, day_seed(eng.dev.seed, days[0], "repair"))
    return eng.model


# -- pure subtraction -------------------------------------------------------------------------------
@one_torch_thread()
def pure_subtraction(eng: Engine, days: Sequence[str]) -> AssistantModel:
    """Amnesiac unlearning (Graves et al., "Amnesiac Machine Learning", AAAI 2021): subtract the stored updates
    of the forgotten days, no repair. This is the fast tier with repair_steps=0 (Timeline.fast_forget, which
    commits the subtracted state and marks it approximate); returns the engine's model.
    """
    days = _check_days(days, sorted(eng.manifest().days), "days this device trained")
    eng.timeline.fast_forget(days, repair=None)
    return eng.model
