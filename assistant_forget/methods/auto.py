"""Auto: exact when the replay is short, else fast now with the exact pass at the next `maintain`.

The policy a phone runs by default: a forget of a recent day replays a few days at once; one that would
replay weeks subtracts now and leaves the exact pass for the charging window.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.method import Method, Plan, Request, check_count, register
from .exact import Exact
from .fast import Fast


@dataclass(frozen=True)
class AutoConfig:
    exact_max_days: int = 3  # replay exactly right away when it costs at most this many days

    def __post_init__(self) -> None:
        check_count("exact_max_days", self.exact_max_days, 0)


@register
class Auto(Method):
    """Picks exact or fast by the replay's length; the plan names the one it picked."""

    name, exact, Config = "auto", False, AutoConfig
    kind = "exact or fast"

    def pick(self, request: Request) -> Method:
        return Exact() if request.replay_days <= self.config.exact_max_days else Fast()

    def plan(self, request: Request, family) -> Plan:
        return self.pick(request).plan(request, family)

    def apply(self, subject, request: Request, plan: Plan, progress=None, forgotten=None, prepared=None):
        """What the picked method's `apply` does. (A forget never calls this: the plan names the method that
        runs, and the runner resolves that name; this is for callers that hold the `auto` method itself.)"""
        return self.pick(request).apply(subject, request, plan, progress, forgotten, prepared)
