"""Subtraction (Amnesiac unlearning, Graves et al., AAAI 2021): subtract the forgotten days' stored updates
(and their readers'), no repair. The fast tier with a repair budget of zero: approximate, exact pass pending."""

from __future__ import annotations

from ..core.method import Method, Plan, Request, register


@register
class Subtraction(Method):
    """Subtract only (approximate)."""

    name, exact = "subtraction", False

    def plan(self, request: Request, family) -> Plan:
        return Plan(self.name, False, self.settings(), subtract=sorted(request.trained + request.readers))

    def apply(self, subject, request: Request, plan: Plan, progress=None, forgotten=None,
              prepared=None) -> None:
        subject.timeline.fast_forget(request.trained, repair=None)
