"""Canary formats (Carlini et al. 2019, "The secret sharer"): the space of secrets a planted one is ranked among.

A canary format is a sentence with slots: `{d}` one digit (10 values), `{l}` one letter (26 values, a-z;
the tokenizer folds case, so the model cannot tell 'K' from 'k' and case adds no secrets). Literal braces
are written `{{` and `}}`. "my bank pin is {d} {d} {d} {d} {d}" admits 10^5 secrets. The exposure of a
planted secret is its rank among all (or a sample of) the other secrets of the same format, so the audit
enumerates or samples that candidate space; the functions here do it deterministically, in index order
(the last slot varies fastest, so secrets that share all but their last piece are neighbours).

A user's own canary needs no format: `derive_format` reads the slots off the canary itself ('remind me my
locker code is 3 7 1 9 5' -> 'remind me my locker code is {d} {d} {d} {d} {d}', 10^5 secrets), and
`canary_format` refuses a canary with no slots or too few secrets to mean anything. Planting one in a
simulated log is the simulator's part (device_sim.canary).
"""

from __future__ import annotations

import math
import random
import re
import string
from typing import Iterable, Iterator, Sequence

from ..core.errors import BadInput

DEFAULT_CANARY_FORMAT = "my bank pin is {d} {d} {d} {d} {d}"  # the canary used when none is given
DIGIT_SLOT, LETTER_SLOT = "d", "l"
ALPHABETS = {DIGIT_SLOT: "0123456789", LETTER_SLOT: "abcdefghijklmnopqrstuvwxyz"}  # slot name -> its values
SLOT_PATTERNS = {DIGIT_SLOT: "([0-9])", LETTER_SLOT: "([a-zA-Z])"}  # what a slot matches in a text
MIN_SPACE = 1000  # fewest secrets a verified canary's format may admit (canary_format says why)


def format_parts(fmt: str) -> list[tuple[str, str | None]]:
    """(literal text, slot name or None) pieces of a format; BadInput unless every field is `{d}` or `{l}`
    and there is at least one.

    >>> format_parts("pin {d}{l}")
    [('pin ', 'd'), ('', 'l')]
    """
    try:
        parts = [(lit, name, spec, conv) for lit, name, spec, conv in string.Formatter().parse(fmt)]
    except (ValueError, TypeError) as e:
        raise BadInput(f"canary format {fmt!r} is not a valid format string ({e})") from None
    fields = [(name, spec, conv) for _, name, spec, conv in parts if name is not None]
    if not fields or any(spec or conv or name not in ALPHABETS for name, spec, conv in fields):
        raise BadInput(f"canary format {fmt!r} must contain only '{{d}}' (a digit) and '{{l}}' (a letter) slots, "
                       f"at least one, braces written '{{{{' '}}}}'; e.g. {DEFAULT_CANARY_FORMAT!r}")
    return [(lit, name) for lit, name, _, _ in parts]


def slots(fmt: str) -> list[str]:
    """The format's slot names, in order.

    >>> slots("code {l}{d}{d}")
    ['l', 'd', 'd']
    """
    return [name for _, name in format_parts(fmt) if name is not None]


def format_slots(fmt: str) -> int:
    """Number of slots in a canary format; BadInput if it has none or any other field.

    >>> format_slots(DEFAULT_CANARY_FORMAT)
    5
    """
    return len(slots(fmt))


def space_size(fmt: str) -> int:
    """How many distinct secrets the format admits: 10 per digit slot times 26 per letter slot.

    >>> space_size("pin {d}{d}{d}"), space_size("code {l}{d}")
    (1000, 260)
    """
    return math.prod(len(ALPHABETS[s]) for s in slots(fmt))


def fill_secret(fmt: str, values: Sequence[int]) -> str:
    """Put `values` into the format's slots, in order: each the position of a character in its slot's
    alphabet (a digit for `{d}`, 0 = 'a' for `{l}`).

    >>> fill_secret("code {l}{d}", [2, 7])
    'code c7'
    """
    kinds = slots(fmt)
    if len(values) != len(kinds) or any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < len(ALPHABETS[k])
                                        for v, k in zip(values, kinds)):
        raise BadInput(f"format {fmt!r} needs {len(kinds)} values, each in range of its slot "
                       f"({', '.join(kinds)}), got {list(values)!r}")
    chars = iter(ALPHABETS[k][v] for k, v in zip(kinds, values))
    return "".join(lit + (next(chars) if name is not None else "") for lit, name in format_parts(fmt))


def candidate(fmt: str, index: int) -> str:
    """The `index`-th secret of the format, slots as mixed-radix digits, the last fastest (0: all '0' / 'a').

    >>> candidate(DEFAULT_CANARY_FORMAT, 48193), candidate("code {l}{d}", 27)
    ('my bank pin is 4 8 1 9 3', 'code c7')
    """
    size = space_size(fmt)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
        raise BadInput(f"candidate index must be in [0, {size}), got {index!r}")
    values = []
    for kind in reversed(slots(fmt)):
        index, v = divmod(index, len(ALPHABETS[kind]))
        values.append(v)
    return fill_secret(fmt, values[::-1])


def secret_index(fmt: str, text: str) -> int:
    """Inverse of `candidate`: the index of `text` in the format's space (letters in either case); BadInput
    if it does not match.

    >>> secret_index(DEFAULT_CANARY_FORMAT, "my bank pin is 0 0 0 1 2"), secret_index("code {l}{d}", "code C7")
    (12, 27)
    """
    parts = format_parts(fmt)
    pattern = "".join(re.escape(lit) + (SLOT_PATTERNS[name] if name is not None else "") for lit, name in parts)
    m = re.fullmatch(pattern, text) if isinstance(text, str) else None
    if not m:
        raise BadInput(f"{text!r} is not a secret of the format {fmt!r}")
    index = 0
    for kind, ch in zip(slots(fmt), m.groups()):
        index = index * len(ALPHABETS[kind]) + ALPHABETS[kind].index(ch.lower())
    return index


def derive_format(canary: str) -> str:
    """The format a canary is a secret of, read off the canary: in every whitespace-separated word that holds
    a digit, each digit is a `{d}` slot and each letter (a-z, either case) an `{l}` slot ('k9x2' -> four
    slots); every other character is literal. Letters standing alone are words ('a', 'i'), not slots; give a
    format explicitly (`--canary-format`) to mark them, or to keep a digit literal.

    >>> derive_format("remind me my locker code is 3 7 1 9 5")
    'remind me my locker code is {d} {d} {d} {d} {d}'
    >>> derive_format("wifi password {k9x2}!")
    'wifi password {{{l}{d}{l}{d}}}!'
    """
    if not isinstance(canary, str):
        raise BadInput(f"a canary is a text, got {type(canary).__name__}")

    def word(w: str) -> str:
        coded = any(c in ALPHABETS[DIGIT_SLOT] for c in w)
        return "".join("{d}" if coded and c in ALPHABETS[DIGIT_SLOT] else
                       "{l}" if coded and c.lower() in ALPHABETS[LETTER_SLOT] and c.isascii() else
                       c * 2 if c in "{}" else c for c in w)
    return "".join(word(w) for w in re.split(r"(\s+)", canary))


def canary_format(canary: str, fmt: str | None = None) -> str:
    """The format `canary` is ranked in: `fmt` when given (the canary must be one of its secrets), else
    derive_format(canary). BadInput for a canary without slots, or with fewer than MIN_SPACE secrets:
    exposure is at most log2 of the space (1,000 secrets: 9.97 bits), and the verdict calls a canary
    memorised at 8 bits above the oracle, which a smaller space cannot show apart from chance.

    >>> canary_format("remind me my locker code is 3 7 1 9 5")
    'remind me my locker code is {d} {d} {d} {d} {d}'
    """
    derived = fmt is None
    fmt = derive_format(canary) if derived else fmt
    try:
        kinds = slots(fmt)
    except BadInput:
        if derived:
            raise BadInput(f"canary {canary!r} has no secret to rank: no digit in it (its secret is read off its "
                           "digits, and the letters of words that hold one, e.g. 'my locker code is 3 7 1 9 5'); "
                           "or give --canary-format with {d} / {l} slots") from None
        raise
    secret_index(fmt, canary)
    size = space_size(fmt)
    if size < MIN_SPACE:
        made = f"derived from the canary as {fmt!r}" if derived else f"{fmt!r}"
        raise BadInput(f"canary format {made} admits only {size} secrets ({len(kinds)} slots); at least {MIN_SPACE} "
                       f"are needed, since exposure is at most log2({size}) = {math.log2(size):.1f} bits and a "
                       "memorised canary is 8 bits above the oracle: use a longer secret (each digit x10, each "
                       "letter x26)")
    return fmt


def enumerate_candidates(fmt: str) -> Iterator[str]:
    """Every secret of the format, in index order (space_size of them: mind the size)."""
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
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= size - len(banned):
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
