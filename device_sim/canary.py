"""Planted canaries (Carlini et al. 2019): a secret said on a chosen day, and the space of secrets like it.

A canary format is a sentence with `{d}` slots, one digit each: "my bank pin is {d} {d} {d} {d} {d}". The
exposure of a planted secret is its rank among all (or a sample of) the other secrets of the same format,
so the audit needs to enumerate or sample that candidate space; the functions here do it deterministically.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass
from datetime import date, datetime
from typing import Iterable, Iterator, Sequence

from assistant_forget.clinc import OOS, intent_labels
from assistant_forget.errors import BadInput

DEFAULT_CANARY_FORMAT = "my bank pin is {d} {d} {d} {d} {d}"  # the canary used when none is given
DIGIT_SLOT = "d"  # the only slot name a canary format may use


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
                           f"assistant_forget.clinc.intent_labels() (default {OOS!r})")

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


def format_slots(fmt: str) -> int:
    """Number of `{d}` digit slots in a canary format; BadInput if it has none or any other field.

    >>> format_slots(DEFAULT_CANARY_FORMAT)
    5
    """
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(fmt) if name is not None]
    except ValueError as e:
        raise BadInput(f"canary format {fmt!r} is not a valid format string ({e})") from None
    bad = [f for f in fields if f != (DIGIT_SLOT, "", None)]
    if bad or not fields:
        raise BadInput(f"canary format {fmt!r} must contain only '{{d}}' slots (one digit each), at least one; "
                       f"e.g. {DEFAULT_CANARY_FORMAT!r}")
    return len(fields)


def space_size(fmt: str) -> int:
    """How many distinct secrets the format admits: 10 ** slots.

    >>> space_size("pin {d}{d}{d}")
    1000
    """
    return 10 ** format_slots(fmt)


def candidate(fmt: str, index: int) -> str:
    """The `index`-th secret of the format, digits in order (index 0 is all zeros).

    >>> candidate(DEFAULT_CANARY_FORMAT, 48193)
    'my bank pin is 4 8 1 9 3'
    """
    k = format_slots(fmt)
    if not isinstance(index, int) or not 0 <= index < 10**k:
        raise BadInput(f"candidate index must be in [0, {10**k}), got {index!r}")
    return fill_secret(fmt, [int(c) for c in f"{index:0{k}d}"])


def fill_secret(fmt: str, digits: Sequence[int]) -> str:
    """Put `digits` into the format's slots, in order."""
    k = format_slots(fmt)
    if len(digits) != k or any(not isinstance(d, int) or not 0 <= d <= 9 for d in digits):
        raise BadInput(f"format {fmt!r} needs {k} digits in 0..9, got {list(digits)!r}")
    parts = iter(str(d) for d in digits)
    return "".join(lit + (next(parts) if name is not None else "") for lit, name, _, _ in string.Formatter().parse(fmt))


def secret_index(fmt: str, text: str) -> int:
    """Inverse of `candidate`: the index of `text` in the format's space; BadInput if it does not match.

    >>> secret_index(DEFAULT_CANARY_FORMAT, "my bank pin is 0 0 0 1 2")
    12
    """
    format_slots(fmt)
    pattern = "".join(re.escape(lit) + ("([0-9])" if name is not None else "")
                      for lit, name, _, _ in string.Formatter().parse(fmt))
    m = re.fullmatch(pattern, text)
    if not m:
        raise BadInput(f"{text!r} is not a secret of the format {fmt!r}")
    return int("".join(m.groups()))


def enumerate_candidates(fmt: str) -> Iterator[str]:
    """Every secret of the format, in index order (10 ** slots of them: mind the size)."""
    for i in range(space_size(fmt)):
        yield candidate(fmt, i)


def sample_candidates(fmt: str, n: int, seed: int, exclude: Iterable[str] = ()) -> list[str]:
    """`n` distinct secrets of the format drawn uniformly with `seed`, none of them in `exclude`.

    >>> c = sample_candidates("pin {d}{d}", 5, seed=1, exclude=["pin 42"])
    >>> len(set(c)), "pin 42" in c, c == sample_candidates("pin {d}{d}", 5, seed=1, exclude=["pin 42"])
    (5, False, True)
    """
    size = space_size(fmt)
    banned = {secret_index(fmt, t) for t in exclude}
    if not isinstance(n, int) or not 0 <= n <= size - len(banned):
        raise BadInput(f"can sample at most {size - len(banned)} candidates of {fmt!r} "
                       f"(excluding {len(banned)}), asked for {n!r}")
    rng = random.Random(f"device_sim.canary:{fmt}:{seed}")
    picked = [i for i in rng.sample(range(size), n + len(banned)) if i not in banned][:n]
    return [candidate(fmt, i) for i in picked]


def random_secret(fmt: str, seed: int) -> str:
    """One secret of the format drawn with `seed`: the canary to plant.

    >>> secret_index(DEFAULT_CANARY_FORMAT, random_secret(DEFAULT_CANARY_FORMAT, 9)) < 10 ** 5
    True
    """
    return candidate(fmt, random.Random(f"device_sim.canary-secret:{fmt}:{seed}").randrange(space_size(fmt)))
