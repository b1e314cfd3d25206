"""The utterance record and its rules: what may be stored, and how text is matched caselessly.

Shared by the log store (which enforces the rules on every write) and the JSONL importer (which reports
them per line and field).
"""

from __future__ import annotations

import difflib
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from .clinc import intent_labels
from .errors import BadInput
from .localtime import local_date_of, utc_micros

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
    return found


def fold(s: str) -> str:
    """Caseless, canonically composed form used for text matching (Unicode-aware, unlike SQLite's LIKE).

    >>> fold("STRASSE") == fold("Straße"), fold("CAFÉ") == fold("cafe\\u0301")
    (True, True)
    """
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", s).casefold())
