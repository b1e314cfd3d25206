"""Retrain: from the initial state over every retained day, the reference every method is measured against.

It gives the exact tier's bytes (DESIGN invariant 2) at the cost of the whole history, where the exact tier
replays only from the last checkpoint before the forgotten day. `retrained` is the in-memory form: a fresh
model, the device untouched.
"""

from __future__ import annotations

from typing import Sequence

from ..core.method import Method, Plan, Request, Subject, register
from ..core.threads import one_torch_thread
from ..core.timeline import Progress, day_seed
from ..core.family import fresh_model
from ._shared import trained_days


@register
class Retrain(Method):
    """Retrain from the initial state (exact)."""

    name, exact = "retrain", True

    def plan(self, request: Request, family) -> Plan:
        return Plan(self.name, True, self.settings(), replay_days=request.history)

    def apply(self, subject: Subject, request: Request, plan: Plan, progress=None, forgotten=None,
              prepared=None) -> None:
        if request.until is not None:
            subject.timeline.reset()
            subject.sync(until=request.until, progress=progress)


@one_torch_thread()
def retrained(subject: Subject, days: Sequence[str] | None = None, progress: Progress | None = None):
    """A new model trained from the initial state over `days` (default: `trained_days`, the retained days up
    to the device's horizon) with the device's day trainer and day seeds; the device is untouched. On the
    log after a forget it equals the exact tier bit for bit (DESIGN invariant 2)."""
    family = subject.family
    model = fresh_model(family)
    for d in trained_days(subject) if days is None else days:
        family.train_day(model, d, day_seed(subject.seed, d))
        if progress:
            progress(d)
    return model.eval()
