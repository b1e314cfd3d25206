"""Canary formats (Carlini et al. 2019): the space of secrets a planted one is ranked among.

A canary format is a sentence with `{d}` slots, one digit each: "my bank pin is {d} {d} {d} {d} {d}". The
exposure of a planted secret is its rank among all (or a sample of) the other secrets of the same format,
so the audit enumerates or samples that candidate space; the functions here do it deterministically.
Planting one in a simulated log is the simulator's part (device_sim.canary).
"""

from __future__ import annotations

import random
import re
import string
from typing import Iterable, Iterator, Sequence

from ..core.errors import BadInput

DEFAULT_CANARY_FORMAT = "my bank pin is {d} {d} {d} {d} {d}"  # the canary used when none is given
DIGIT_SLOT = "d"  # the only slot name a canary format may use


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
