"""What more than one method file needs: the days a retrain trains over, and the assistant-only guard."""

from __future__ import annotations

from ..core.errors import BadInput
from ..core.method import Subject


def trained_days(subject: Subject) -> list[str]:
    """The days a retrain (or a SISA ensemble) trains over: the days with data up to the last day the device
    trained (every day with data when it trained none). Read on the log after the forget, these are the
    retained days."""
    horizon = max(subject.timeline.manifest().days, default=None)
    return [d for d in subject.family.store.day_counts() if horizon is None or d <= horizon]


def assistant(subject: Subject, name: str):
    """`subject`'s family, which must be the assistant's (`name`: the method that needs it); BadInput otherwise."""
    family = subject.family
    if getattr(family, "name", None) != "assistant":
        raise BadInput(f"{name} is implemented for the assistant family only, not {getattr(family, 'name', None)!r}")
    return family
