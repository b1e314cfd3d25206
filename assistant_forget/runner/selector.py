"""What to forget: a selector names rows of a device's log — one local day, a range of days, utterance ids,
a phrase on any day — or, for any family, whole keys. Its public form is what a receipt may say of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from ..core.errors import BadInput, NothingToForget
from ..core.keys import check_key
from ..device.localtime import latest_local_date, parse_date

MAX_CONTAINS = 200  # longest phrase `--contains` accepts


@dataclass(frozen=True)
class Selector:
    """What to forget: one local day, an inclusive range of days, utterance ids, or a phrase on any day."""

    kind: str  # "date" | "range" | "utterance" | "contains" | "keys"
    start: str | None = None  # first day (date and range)
    end: str | None = None  # last day, inclusive (date and range)
    ids: tuple[str, ...] = ()  # utterance ids
    text: str | None = None  # phrase, matched case-insensitively

    @classmethod
    def parse(cls, *, date_: str | None = None, start: str | None = None, end: str | None = None,
              ids: list[str] | None = None, contains: str | None = None, today: date | None = None) -> "Selector":
        """Validate CLI-style arguments (exactly one selector); BadInput says what is wrong."""
        given = [n for n, v in [("--date", date_), ("--from/--to", start or end), ("--utterance", ids),
                                ("--contains", contains)] if v not in (None, [], "")]
        if contains == "" or (contains is not None and not contains.strip()):
            raise BadInput("--contains needs a non-empty phrase (it would match every utterance)")
        if len(given) != 1:
            raise BadInput("give exactly one selector: --date D, --from D1 --to D2, --utterance ID..., "
                           f"or --contains TEXT (got {', '.join(given) or 'none'})")
        today = today or latest_local_date()
        if date_ is not None:
            d = _day(date_, "--date", today)
            return cls("date", d, d)
        if start is not None or end is not None:
            if start is None or end is None:
                raise BadInput("a range needs both --from and --to (use --date for a single day)")
            a, b = _day(start, "--from", today), _day(end, "--to", today)
            if a > b:
                raise BadInput(f"--from {a} is after --to {b}; swap them")
            return cls("range", a, b)
        if ids:
            bad = [i for i in ids if not i.strip() or len(i) > 128]
            if bad:
                raise BadInput(f"--utterance ids must be non-empty and at most 128 characters: {bad[:3]}")
            return cls("utterance", ids=tuple(sorted(set(ids))))
        assert contains is not None
        if len(contains) > MAX_CONTAINS:
            raise BadInput(f"--contains phrase is {len(contains)} characters; at most {MAX_CONTAINS}")
        if "\x00" in contains:
            raise BadInput("--contains phrase must not contain NUL characters")
        return cls("contains", text=contains)

    @classmethod
    def keys(cls, keys: list[str]) -> "Selector":
        """Every item of the given keys (a family's days, users, sessions); BadInput for a key that cannot be one."""
        if isinstance(keys, str) or not keys:
            raise BadInput(f"give the keys to forget as a non-empty list of strings, got {keys!r}")
        return cls("keys", ids=tuple(sorted({check_key(k) for k in keys})))

    def match(self, store) -> list:
        """The rows (utterances or items) this selector names, in canonical order."""
        if self.kind in ("date", "range"):
            return store.by_range(self.start, self.end)
        if self.kind == "keys":
            return [row for k in self.ids for row in store.by_day(k)]
        if self.kind == "utterance":
            found = store.by_ids(list(self.ids))
            missing = sorted(set(self.ids) - {u.id for u in found})
            if missing:
                raise NothingToForget(f"no utterance with id {', '.join(missing[:5])}; nothing was changed "
                                      "(list ids with `assistant-forget status --device DIR --json`)")
            return found
        return store.matching(self.text)

    def public(self) -> dict:
        """Non-identifying description for receipts: dates for day selectors, only the kind for a phrase.

        Nothing derived from a phrase is kept (not even a salted hash: a word list confirms one at once).
        """
        if self.kind in ("date", "range"):
            return {"kind": self.kind, "from": self.start, "to": self.end}
        if self.kind == "utterance":
            return {"kind": "utterance", "count": len(self.ids)}
        if self.kind == "keys":
            return {"kind": "keys", "keys": list(self.ids)}
        return {"kind": "contains"}


def _day(s: str, flag: str, today: date) -> str:
    d = parse_date(s)
    if d > today:
        raise BadInput(f"{flag} {d} is in the future (the latest date anywhere on Earth now is {today}); "
                       "nothing can have been said then")
    return d.isoformat()
