"""Planning a forget: which rows and days it touches and what its method will do, before anything changes.

torch-free: the plan reads the store, the ledger's manifest and the family's repair settings only, so
`forget --dry-run` answers without loading a model, and the real forget (forget.py) plans the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core import method as methods
from ..core.errors import BadInput, NothingToForget
from ..core.ledger import Manifest
from ..core.method import Method, Plan, Request
from .selector import Selector


@dataclass(frozen=True)
class ForgetPlan:
    """A forget decided: what it removes (the request) and what its method will do (the method's plan)."""

    request: Request
    plan: Plan
    requested: str  # the method asked for (auto: before it picked)

    mode = property(lambda self: self.plan.method)  # the method that runs
    ids = property(lambda self: list(self.request.ids))
    days = property(lambda self: self.request.days)
    trained = property(lambda self: self.request.trained)
    readers = property(lambda self: self.request.readers)
    replay_days = property(lambda self: self.request.replay_days)
    repair_steps = property(lambda self: self.plan.repair_steps)

    def summary(self) -> dict:
        r, p = self.request, self.plan
        return {"mode": p.method, "method": p.method, "requested_mode": self.requested, "config": p.config,
                "exact": p.exact, "utterances": len(r.ids), "days": r.days, "trained_days": r.trained,
                "untrained_days": sorted(set(r.days) - set(r.trained)), "readers": r.readers,
                "exact_replay_days": r.replay_days, "subtracted_utterances": r.subtracted,
                "repair_steps": p.repair_steps}


def resolve(mode: str | Method) -> Method:
    """The committing method `mode` names (a registered name or a Method); BadInput naming the choices."""
    if isinstance(mode, Method):
        return methods.committing(mode.name, mode.config)
    try:
        found = methods.get(mode) if isinstance(mode, str) else None
    except BadInput:
        found = None
    if found is None:
        raise BadInput(f"--mode must be one of {', '.join(methods.names(commits=True))}, got {mode!r} "
                       f"(measured only, not for a device: {', '.join(methods.names(commits=False))})")
    return methods.committing(mode)


def make_plan(eng, sel: Selector, mode: str | Method = "auto") -> ForgetPlan:
    """Which rows and days a forget on engine `eng` touches, and what the method will do. Changes nothing."""
    return plan_forget(eng.store, eng.manifest(), eng.family, sel, mode)


def plan_forget(store, m: Manifest, family, sel: Selector, mode: str | Method = "auto") -> ForgetPlan:
    """The plan from the store, the committed manifest and the family (only its repair settings are read, so a
    config stands in for a family that is not loaded: `forget --dry-run`). Changes nothing."""
    method = resolve(mode)
    rows = sel.match(store)
    if not rows:
        raise NothingToForget("nothing matches that selector; nothing was changed")
    days: dict[str, int] = {}
    for u in rows:
        days[u.local_date] = days.get(u.local_date, 0) + 1
    trained = sorted(d for d in days if d in m.days)
    counts = store.day_counts()
    gone = {d for d, n in days.items() if counts.get(d) == n}  # days with nothing left to train on
    replay = 0
    if trained:
        ckpt = max((c for c in m.checkpoints if c < trained[0]), default=None)
        replay = sum(1 for d in m.days if (ckpt is None or d > ckpt) and d not in gone)
    readers = m.readers(trained) if trained else []
    request = Request(tuple(u.id for u in rows), dict(sorted(days.items())), trained, readers, replay,
                      subtracted=sum(counts.get(d, 0) for d in trained + readers),
                      retained=sum(counts.values()) - len(rows), until=max(m.days, default=None),
                      history=sum(1 for d in m.days if d not in gone))
    return ForgetPlan(request, method.plan(request, family), method.name)
