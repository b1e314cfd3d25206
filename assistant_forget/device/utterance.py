"""The utterance record and its rules: what may be stored, and how text is matched (`fold`, `match_key`).

Shared by the log store (which enforces the rules on every write) and the JSONL importer (which reports
them per line and field).
"""

from __future__ import annotations

import difflib
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from .clinc import intent_labels
from ..core.errors import BadInput
from .localtime import latest_local_date, local_date_of, utc_micros

MAX_TEXT_CHARS = 1000  # longest utterance text accepted
MAX_ID_CHARS = 128  # longest utterance id accepted
MAX_SOURCE_CHARS = 64  # longest source tag accepted


@dataclass(frozen=True)
class Utterance:
    """One logged utterance, as stored."""

    id: str  # unique within the device; given by the importer or derived from the content
    text: str  # what the user said, 1..MAX_TEXT_CHARS characters
    intent: str  # one of clinc.intent_labels()
    utc: str  # capture instant, canonical ISO 8601 UTC ('2026-03-04T04:30:00Z')
    tz: str  # zone at capture: IANA name or fixed offset '+HH:MM'
    local_date: str  # 'YYYY-MM-DD': the user's calendar day at capture, derived from utc and tz
    source: str  # where the row came from ('import', 'sim', ...)

    @property
    def order_key(self) -> tuple[str, int, str, str]:
        """The one order utterances are read in: local date, UTC instant, text, id."""
        return (self.local_date, utc_micros(self.utc), self.text, self.id)


def bad_characters(s: str) -> str | None:
    """Why `s` cannot be stored as UTF-8 text, or None."""
    if "\x00" in s:
        return "contains a NUL character"
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"contains an unpaired surrogate ({s[e.start]!r}); it must be valid Unicode"
    return None


def text_problem(text: object) -> str | None:
    """Why `text` is not a valid utterance text, or None."""
    if not isinstance(text, str):
        return f"expected a string, got {type(text).__name__}"
    if not text.strip():
        return "is empty"
    if len(text) > MAX_TEXT_CHARS:
        return f"is {len(text)} characters long; the limit is {MAX_TEXT_CHARS}"
    return bad_characters(text)


def _tag_problem(value: object, limit: int) -> str | None:
    """Why `value` is not a valid id or source tag (non-empty, bounded, no control characters), or None."""
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__}"
    if not value:
        return "is empty"
    if len(value) > limit:
        return f"is {len(value)} characters long; the limit is {limit}"
    if any(unicodedata.category(c) == "Cc" for c in value):
        return "contains a control character"
    return bad_characters(value)


def id_problem(uid: object) -> str | None:
    """Why `uid` is not a valid utterance id, or None."""
    return _tag_problem(uid, MAX_ID_CHARS)


def source_problem(source: object) -> str | None:
    """Why `source` is not a valid source tag, or None."""
    return _tag_problem(source, MAX_SOURCE_CHARS)


@lru_cache(maxsize=1)
def _label_set() -> frozenset[str]:
    return frozenset(intent_labels())


def intent_problem(intent: object) -> str | None:
    """Why `intent` is not one of the model's labels, or None."""
    if not isinstance(intent, str):
        return f"expected a string, got {type(intent).__name__}"
    labels = intent_labels()
    if intent not in _label_set():
        close = difflib.get_close_matches(intent, labels, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown intent {intent!r}{hint}: use one of the {len(labels)} CLINC150 labels (clinc.intent_labels())"
    return None


def future_date_problem(local_date: str) -> str | None:
    """Why a local date cannot be an utterance's (it is later than the latest date anywhere now), or None.

    The same bound `forget --date` applies (localtime.latest_local_date), so every stored day can be forgotten.

    >>> future_date_problem("2999-06-01").startswith("local date 2999-06-01 is in the future")
    True
    """
    latest = latest_local_date().isoformat()
    if local_date > latest:  # ISO dates sort as strings
        return f"local date {local_date} is in the future (the latest date anywhere now is {latest})"
    return None


def utterance_problems(u: Utterance) -> list[tuple[str, str]]:
    """Every (field, problem) of `u`; empty when it can be stored."""
    found = [(f, p) for f, p in (("id", id_problem(u.id)), ("text", text_problem(u.text)),
                                 ("intent", intent_problem(u.intent)), ("source", source_problem(u.source)))
             if p is not None]
    try:
        derived = local_date_of(u.utc, u.tz)
    except BadInput as e:
        return found + [("utc/tz", str(e))]
    if u.local_date != derived:
        found.append(("local_date", f"{u.local_date!r} is not the date in {u.tz} at {u.utc} ({derived})"))
    future = future_date_problem(derived)
    if future:
        found.append(("local_date", future))
    return found


# -- text matching --------------------------------------------------------------------------------

# Default-ignorable characters outside category Cf that render as nothing: variation selectors, the
# combining grapheme joiner, Hangul fillers.
_INVISIBLE_EXTRA = frozenset([0x034F, 0x115F, 0x1160, 0x3164, 0xFFA0, *range(0xFE00, 0xFE10),
                              *range(0xE0100, 0xE01F0), *range(0x180B, 0x1810)])

# Marks that writers and keyboards routinely leave out, so that matching ignores them: the general-purpose
# combining diacritics (accents on Latin, Greek and Cyrillic letters; U+0307 is the dot casefold() leaves
# after the i of 'İ'), Hebrew points and Arabic vowel signs. Marks that change the letter in other scripts
# (Japanese voiced-sound marks, Indic and Thai vowel signs) are kept.
_IGNORED_MARK_RANGES = ((0x0300, 0x036F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0x20D0, 0x20FF), (0xFE20, 0xFE2F),
                        (0x0591, 0x05C7), (0x0610, 0x061A), (0x064B, 0x065F), (0x0670, 0x0670), (0x06D6, 0x06ED))


def _ignored(c: str) -> bool:
    """True for a character that matching drops: invisible (category Cf and the like) or an ignored mark."""
    cp = ord(c)
    if cp in _INVISIBLE_EXTRA or unicodedata.category(c) == "Cf":
        return True
    return unicodedata.category(c) == "Mn" and any(lo <= cp <= hi for lo, hi in _IGNORED_MARK_RANGES)


def fold(s: str) -> str:
    """The one normal form text matching uses, applied alike to the phrase and to every stored text.

    Steps: NFKC (full-width and other compatibility forms become plain letters, a no-break or ideographic
    space a space, 'ﬁ' 'fi'); Unicode case folding ('ß' -> 'ss'); invisible characters removed (category Cf:
    zero-width space / joiner / non-joiner, soft hyphen, BOM, word joiner, direction marks; plus variation
    selectors and Hangul fillers); accents removed (NFKD, then the combining diacritics, Hebrew points and
    Arabic vowel signs are dropped, and the rest is recomposed with NFKC) and the Turkish dotless 'ı' read as
    'i', so 'istanbul' matches 'İSTANBUL' and 'zoe' matches 'Zoé'; every run of whitespace becomes one
    space; leading and trailing spaces are stripped.

    Ignoring accents over-matches on purpose ('cafe' also finds 'café', 'resume' finds 'résumé'): for a
    tool that forgets, a phrase that misses a spelling is the worse failure, because nobody sees what was
    missed, while `forget --dry-run` lists every utterance a phrase matched before anything is deleted.

    >>> fold("  Dr\u00a0\u00a0ALVAREZ\t") == fold("ｄｒ　ａｌｖａｒｅｚ") == "dr alvarez"
    True
    >>> fold("al\u200bva\u00adrez\ufeff"), fold("İSTANBUL"), fold("ıstanbul"), fold("Straße"), fold("CAFÉ")
    ('alvarez', 'istanbul', 'istanbul', 'strasse', 'cafe')
    >>> fold("cafe\u0301") == fold("café") == fold("cafe")
    True
    >>> fold("がっこう") == fold("かっこう")  # marks that make another letter stay
    False
    >>> fold("\u200b \u2060")
    ''
    """
    s = unicodedata.normalize("NFKC", s).casefold().replace("ı", "i")
    s = "".join(c for c in unicodedata.normalize("NFKD", s) if not _ignored(c))
    s = unicodedata.normalize("NFKC", s).casefold()  # NFKC again: casefold can leave compatibility forms
    return " ".join(s.split())


def match_key(s: str) -> str:
    """`fold(s)` without its spaces: what `--contains` compares, so word breaks never hide a match.

    'dr alvarez' finds 'dr\u200balvarez' (a zero-width space where the space was), 'dr  alvarez' and
    'Dr\nAlvarez'; 'pin 4 8 1 9' finds 'pin 4819'. It also finds 'an na' in 'anna': over-matching across a
    word break is the safe side for forgetting, and the dry run shows it.

    >>> match_key("Dr\u200bAlvarez") == match_key("dr alvarez") == "dralvarez"
    True
    """
    return fold(s).replace(" ", "")
