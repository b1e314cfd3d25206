"""Fast: subtract the stored deltas of the forgotten days and of the days whose replay read them, then repair.

The model is approximate afterwards, with the exact pass pending (`maintain` runs it). The repair budget
grows with the utterances whose training was subtracted (the family's `repair_budget`), fixed in the plan
so that a forget rolled forward after a crash repairs the same; past the family's shortest repair the
budget is a ceiling, reached only while the retained loss is above where it was before the subtraction.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.method import Method, Plan, Request, check_count, register


@dataclass(frozen=True)
class FastConfig:
    steps: int | None = None  # repair budget; None: the family's repair_budget for what was subtracted

    def __post_init__(self) -> None:
        check_count("steps", self.steps, 0, optional=True)


def repair_budget(request: Request, family, steps: int | None) -> int:
    """The planned repair steps: none when nothing trained was affected, else `steps` or the family's budget."""
    if not request.trained:
        return 0
    return family.repair_budget(request.subtracted, request.retained) if steps is None else steps


def subtract_and_repair(subject, trained: list[str], steps: int | None) -> int | None:
    """Subtract the deltas of `trained` and their readers, then repair with a budget of `steps` (None: the
    family's shortest). Returns the repair steps taken (None: nothing to subtract)."""
    family = subject.family
    target = family.retained_loss(subject.timeline.model) if steps is not None and steps > family.min_repair_steps else None
    taken: list[int] = []
    subject.timeline.fast_forget(trained, lambda model, seed: taken.append(family.repair(model, seed, steps, target)))
    return taken[0] if taken else None


@register
class Fast(Method):
    """Subtract + repair (approximate, exact pass pending)."""

    name, exact, Config = "fast", False, FastConfig

    def plan(self, request: Request, family) -> Plan:
        return Plan(self.name, False, self.settings(), subtract=sorted(request.trained + request.readers),
                    repair_steps=repair_budget(request, family, self.config.steps))

    def apply(self, subject, request: Request, plan: Plan, progress=None, forgotten=None,
              prepared=None) -> int | None:
        return subtract_and_repair(subject, request.trained, plan.repair_steps)
