"""Planted canaries (Carlini et al. 2019): a secret said on a chosen day, in a generated log.

A canary format is a sentence with `{d}` slots, one digit each: "my bank pin is {d} {d} {d} {d} {d}". The
exposure of a planted secret is its rank among all (or a sample of) the other secrets of the same format,
which assistant_forget.verify.canary enumerates or samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from assistant_forget.core.errors import BadInput
from assistant_forget.device.clinc import OOS, intent_labels
from assistant_forget.verify.canary import (DEFAULT_CANARY_FORMAT, DIGIT_SLOT, candidate, enumerate_candidates,  # noqa: F401
                                          fill_secret, format_slots, random_secret, sample_candidates, secret_index,
                                          space_size)


@dataclass(frozen=True)
class Canary:
    """A secret utterance planted `repeats` times on one day of a generated log."""

    text: str  # said verbatim, e.g. "my bank pin is 4 8 1 9 3"
    day: int | date  # day index from the log's start (0 = first day) or a local calendar date
    repeats: int = 1  # how many times it is said on that day
    intent: str = OOS  # the label it is logged with (a statement of a secret is out of scope)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip() or "\n" in self.text or "\r" in self.text:
            raise BadInput(f"canary text must be a non-empty single line, got {self.text!r}")
        if self.text != self.text.strip():
            raise BadInput(f"canary text {self.text!r} has leading or trailing spaces; remove them")
        if isinstance(self.day, datetime) or not isinstance(self.day, (int, date)) or isinstance(self.day, bool):
            raise BadInput(f"canary day must be a day index (int) or a date, got {self.day!r}")
        if isinstance(self.day, int) and self.day < 0:
            raise BadInput(f"canary day index must be >= 0 (0 is the first day), got {self.day}")
        if not isinstance(self.repeats, int) or isinstance(self.repeats, bool) or self.repeats < 1:
            raise BadInput(f"canary repeats must be an integer >= 1, got {self.repeats!r}")
        if self.intent not in intent_labels():
            raise BadInput(f"canary intent {self.intent!r} is not a CLINC150 label; use one of "
                           f"assistant_forget.device.clinc.intent_labels() (default {OOS!r})")

    def day_index(self, start: date, days: int) -> int:
        """The canary's day as an index into a log of `days` days from `start`; BadInput if outside it."""
        k = self.day if isinstance(self.day, int) else (self.day - start).days
        if not 0 <= k < days:
            last = date.fromordinal(start.toordinal() + days - 1)
            raise BadInput(f"canary day {self.day} is outside the generated days {start}..{last}; "
                           f"use a day index in [0, {days}) or a date in that range")
        return k


def parse_canary_spec(spec: str) -> Canary:
    """Parse the CLI form TEXT@DAY[*REPEATS], DAY a day index or YYYY-MM-DD.

    >>> parse_canary_spec("my bank pin is 4 8 1 9 3@5*3")
    Canary(text='my bank pin is 4 8 1 9 3', day=5, repeats=3, intent='oos')
    >>> parse_canary_spec("my code is 7 7@2026-01-04").day
    datetime.date(2026, 1, 4)
    """
    text, at, rest = spec.rpartition("@")
    if not at or not text:
        raise BadInput(f"canary {spec!r} must look like TEXT@DAY or TEXT@DAY*REPEATS "
                       f"(e.g. 'my bank pin is 4 8 1 9 3@5*3')")
    day_s, star, rep_s = rest.partition("*")
    try:
        day: int | date = date.fromisoformat(day_s) if "-" in day_s else int(day_s)
        repeats = int(rep_s) if star else 1
    except ValueError:
        raise BadInput(f"canary {spec!r}: DAY must be an index or YYYY-MM-DD and REPEATS an integer "
                       f"(got DAY={day_s!r}, REPEATS={rep_s!r})") from None
    return Canary(text, day, repeats)
