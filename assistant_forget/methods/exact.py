"""Exact: rewind to the last checkpoint before the first forgotten day and replay every later day.

The result equals, byte for byte, the model of a device that never saw the forgotten data (DESIGN
invariant 2: a day's update depends only on its inputs and a seed derived from the device seed and date).
"""

from __future__ import annotations

from ..core.method import Method, Plan, Request, register


@register
class Exact(Method):
    """Rewind + replay (exact)."""

    name, exact = "exact", True

    def plan(self, request: Request, family) -> Plan:
        return Plan(self.name, True, self.settings(), replay_days=request.replay_days)

    def apply(self, subject, request: Request, plan: Plan, progress=None, forgotten=None,
              prepared=None) -> None:
        if request.until is not None:  # nothing was trained: there is no model to rewind
            subject.sync(until=request.until, progress=progress)  # the horizon before the forget
