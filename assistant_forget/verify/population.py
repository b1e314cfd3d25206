"""Populations of models for the per-example attacks: K that forgot a day with the method under test, K exact oracles.

U-LiRA (Hayes et al. 2024) and the NeurIPS 2023 challenge's epsilon (privacy.py) compare, for every
forgotten utterance, its statistic under many models that forgot it with the method against many models
that never saw it. The exact tier makes the second kind cheap, and the same machinery makes the first:

    start      the device's personal state just before the forgotten day d (the exact pass passes it,
               oracle.Replay.before), the same for every member
    method j   trains d (the forgotten utterances, from memory) and the next `horizon` days with data,
               each with a seed of its own, on a ledger of its own; then forgets d with the method,
               planned as on the device (the device's repair budget, fixed in its plan)
    oracle j   trains the same later days without d (what the exact tier gives with that seed)

Method models take the population seeds 0..K-1 and oracles K..2K-1, so an exact method's models are drawn
from the oracles' distribution without being the same models: an attacker then does no better than chance,
which is what the attacks test. Later days see the whole log (replay reads every earlier day); members stop
after `horizon` days, a cheap approximation of the device's full history, like LiRA's shadows (oracle.py).

Each member is one pure task (`member`, core/executor.py): its argument names the device's log (opened
read-only), the start state and the member's own ledger directory, and carries the forgotten rows (memory
only: a process pool passes them through a pipe; Ray passes arguments through its object store, shared
memory that it spills to disk under memory pressure, so a Ray run belongs where the forgotten texts may
be, a benchmark or a research cluster, not a device's own forget). The ledgers live in a work directory
inside the device directory (device/workdir.py), removed when `population` returns, by the next recovery if
it dies, and by any forget. Statistic: minus the mean next-token NLL of each forgotten utterance (where memorisation shows).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.errors import BadInput
from ..core.executor import Executor, local
from ..core.method import Plan, Request
from ..device import workdir
from ..device.utterance import Utterance

ROLES = ("method", "oracle")
EXACT_ONLY = ("exact", "auto")  # methods whose population is the oracles' by construction (auto may pick exact)
UNSUPPORTED = ("retrain", "sisa")  # methods that retrain from the initial state: a member has no such history


@dataclass(frozen=True)
class Member:
    """One model of a population: everything its task reads (picklable)."""

    store: str  # the device's log (sqlite), opened read-only
    base: str  # the base model directory
    cfg: object  # families.assistant.personalize.PersonalizationConfig
    start: str  # safetensors file: the personal state before `day`
    start_sha: str  # its SHA-256, checked on reading
    ledger: str  # this member's own ledger directory (created by the task)
    day: str  # the forgotten day
    later: tuple[str, ...]  # the later days with data it trains
    role: str  # "method" (trains day, forgets it) or "oracle" (never sees day)
    seed: int  # the member's device seed
    method: str = "fast"
    config: dict = field(default_factory=dict)  # the method's settings (as planned on the device)
    repair_steps: int | None = None  # the device's planned repair budget
    rows: tuple = ()  # the forgotten rows (Utterance), memory only
    texts: tuple[str, ...] = ()  # the forgotten texts to score (unique, attacked)

    def __repr__(self) -> str:  # an executor names a failing item: never its texts
        return f"Member({self.role} seed={self.seed} day={self.day} later={len(self.later)})"


class MemberStore:
    """The log a member sees: the device's rows, plus the forgotten `rows` on `day` while `shown`; the days
    with data are `window` only (what the member's timeline trains). Memory only, reads only."""

    def __init__(self, store, day: str, rows: Sequence[Utterance], window: Sequence[str]) -> None:
        self.store, self.day, self.rows, self.window, self.shown = store, day, list(rows), list(window), True

    def _extra(self, keep) -> list:
        return [u for u in self.rows if self.shown and keep(u.local_date)]

    def _merged(self, rows: list, keep) -> list:
        return sorted(list(rows) + self._extra(keep), key=lambda u: u.order_key)

    def by_day(self, day: str) -> list:
        return self._merged(self.store.by_day(day), lambda d: d == day)

    def before(self, day: str) -> list:
        return self._merged(self.store.before(day), lambda d: d < day)

    def all(self) -> list:
        return self._merged(self.store.all(), lambda d: True)

    def by_range(self, start: str, end: str) -> list:
        return self._merged(self.store.by_range(start, end), lambda d: start <= d <= end)

    def day_counts(self) -> dict[str, int]:
        counts = {d: len(self.by_day(d)) for d in self.window}
        return {d: n for d, n in counts.items() if n}


@dataclass
class _Subject:
    """What a method acts on (core.method.Subject): the member's family and timeline."""

    family: object
    timeline: object
    seed: int

    def sync(self, until: str | None = None, progress=None):
        return self.timeline.sync(list(self.family.store.day_counts()), until, progress)


def member(spec: Member) -> np.ndarray:
    """Train one member and return its statistic of every text of `spec.texts`: (N,) minus the mean LM loss.

    A task for core/executor.py: reads the log and the start state, writes only its own ledger directory."""
    from ..core import method as methods
    from ..core.ledger import Ledger
    from ..core.tensorfile import load_tensors
    from ..core.threads import one_torch_thread
    from ..core.timeline import Timeline, load_state
    from ..device.store import LogStore
    from ..families.assistant.base import load_base
    from ..families.assistant.family import AssistantFamily
    from .scoring import TorchBackend, score

    if spec.role not in ROLES:
        raise BadInput(f"a population member's role is one of {', '.join(ROLES)}, got {spec.role!r}")
    with LogStore(Path(spec.store), readonly=True) as store, one_torch_thread():
        window = ([spec.day] if spec.role == "method" else []) + list(spec.later)
        view = MemberStore(store, spec.day, spec.rows if spec.role == "method" else (), window)
        family = AssistantFamily(view, load_base(spec.base), spec.cfg)
        model = family.new_model()
        load_state(model, load_tensors(Path(spec.start), spec.start_sha))
        tl = Timeline(Ledger(Path(spec.ledger)), model, family.personal(model), family.train_day, family.fingerprint,
                      seed=spec.seed, model_id=family.model_id, checkpoint_every=family.checkpoint_every,
                      delta_dtype=family.delta_dtype)
        tl.sync(list(view.day_counts()))
        if spec.role == "method":
            m = tl.manifest()
            view.shown = False  # the rows are deleted before the method runs, as on the device
            method = methods.committing(spec.method, spec.config)
            readers = m.readers([spec.day])
            request = Request(tuple(u.id for u in spec.rows), {spec.day: len(spec.rows)}, [spec.day], readers,
                              replay_days=len(m.days) - 1, subtracted=len(spec.rows) + sum(
                                  len(view.by_day(d)) for d in readers),
                              retained=len(view.all()), until=max(m.days), history=len(m.days) - 1)
            plan = Plan(method.name, method.exact, dict(spec.config), sorted([spec.day] + readers),
                        request.replay_days, spec.repair_steps)
            method.apply(_Subject(family, tl, spec.seed), request, plan)
        labelled = [(t, "oos") for t in spec.texts]  # the LM loss does not read the intent
        return -score(TorchBackend(tl.model, family.base.tokenizer, family.base.labels), labelled).lm_loss


@dataclass
class Population:
    """The statistics of the forgotten utterances under a population: (N, K) per role, and its cost."""

    method_stats: np.ndarray  # (N, K) under the models that forgot them with the method
    oracle_stats: np.ndarray  # (N, K) under the exact oracles
    models: int  # K per role
    horizon: int  # later days each member trains
    method: str
    seconds: float
    executor: str


def later_days(days_with_data: Sequence[str], day: str, until: str | None, horizon: int) -> tuple[str, ...]:
    """The first `horizon` days with data after `day`, up to the device's last trained day `until`.

    >>> later_days(["2026-01-01", "2026-01-02", "2026-01-04", "2026-01-05"], "2026-01-02", "2026-01-04", 5)
    ('2026-01-04',)
    """
    return tuple([d for d in sorted(days_with_data) if d > day and (until is None or d <= until)][:horizon])


def population(eng, before: dict, day: str, rows: Sequence[Utterance], texts: Sequence[str], plan, *,
               models: int = 8, horizon: int = 2, seed: int = 0, executor: Executor | None = None,
               progress=None) -> Population:
    """K = `models` method models and K oracles of the forget of `day` on engine `eng` (see the module
    docstring); `before` is the personal state just before `day`, `rows` the forgotten day's rows,
    `texts` the forgotten texts to score, `plan` the device's ForgetPlan of the forget (its method, settings
    and repair budget). `executor` runs the members (default core.executor.local())."""
    from ..core.tensorfile import save_tensors

    if isinstance(models, bool) or not isinstance(models, int) or models < 3:
        raise BadInput(f"a population needs at least 3 models per side (--models; U-LiRA leaves one out), "
                       f"got {models!r}")
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise BadInput(f"a population's horizon (later days each model trains) must be >= 1, got {horizon!r}")
    if plan.mode in UNSUPPORTED:
        raise BadInput(f"the per-example attacks cannot run {plan.mode!r}: it retrains from the initial state, "
                       "which a population member (started just before the day) does not have")
    if not texts:
        raise BadInput("the per-example attacks need forgotten utterances that no retained day also says")
    later = later_days(eng.days_with_data(), day, eng.last_trained(), horizon)
    if not later:
        raise BadInput(f"the per-example attacks need a trained day with data after {day}: a forget of the last "
                       "day is a plain subtraction, equal to the oracle")
    t0 = time.perf_counter()
    rng = random.Random(f"assistant-forget.population:{seed}:{day}")
    seeds = [rng.getrandbits(62) for _ in range(2 * models)]  # method models 0..K-1, oracles K..2K-1
    with workdir.working_copy(eng.dev.root, "population") as tmp:
        start = tmp / "start.safetensors"
        sha = save_tensors(start, before)
        specs = [Member(str(eng.dev.store_path), str(eng.base.root), eng.cfg, str(start), sha, str(tmp / f"m{j}"),
                        day, later, ROLES[j >= models], seeds[j], plan.mode, dict(plan.plan.config),
                        plan.repair_steps, tuple(rows), tuple(texts))
                     for j in range(2 * models)]
        runner = executor or local()
        stats = np.stack(runner.map(member, specs), axis=1)  # (N, 2K)
    if progress:
        progress(day)
    return Population(stats[:, :models], stats[:, models:], models, len(later), plan.mode,
                      time.perf_counter() - t0, type(runner).__name__)

