"""Fine-tune on retained data (the "catastrophic forgetting" baseline, e.g. Golatkar et al. 2020): keep the
model, fine-tune it on the retained days only.

Committed to a device, the forgotten days' deltas (and their readers') still leave the ledger, so no file
keeps their update; the model itself is only nudged away from them (approximate, exact pass pending).
It is the fast tier's repair without the subtraction: same sample, same seed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.method import Method, Plan, Request, check_count, check_positive, register


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int | None = None  # fine-tune steps; None: the family's shortest repair
    lr: float | None = None  # learning rate; None: the family's

    def __post_init__(self) -> None:
        check_count("steps", self.steps, 0, optional=True)
        check_positive("lr", self.lr, optional=True)


@register
class Finetune(Method):
    """Fine-tune on retained data, no subtraction (approximate)."""

    name, exact, Config = "finetune", False, FinetuneConfig

    def plan(self, request: Request, family) -> Plan:
        steps = family.min_repair_steps if self.config.steps is None else self.config.steps
        return Plan(self.name, False, self.settings(), subtract=sorted(request.trained + request.readers),
                    repair_steps=steps if request.trained else 0)

    def apply(self, subject, request: Request, plan: Plan, progress=None, forgotten=None,
              prepared=None) -> int | None:
        taken: list[int] = []
        tune = lambda model, seed: taken.append(subject.family.repair(model, seed, plan.repair_steps,  # noqa: E731
                                                                     lr=self.config.lr))
        subject.timeline.fast_forget(request.trained, tune, subtract=False)
        return taken[0] if taken else None
