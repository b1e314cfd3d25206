"""Local calendar days: "March 3" is the user's local date at the moment of speaking (DESIGN invariant 4).

An utterance keeps its UTC instant, the zone it was captured in (an IANA name or a fixed offset) and the
local date derived from both. Travel and DST never move an utterance to another day, because the date is
fixed at capture from the instant and the zone in force then. Zones come from the pinned `tzdata` package,
not the host's zoneinfo, so two devices derive the same dates from the same lines.

>>> localize("2026-03-03T23:30:00-05:00", "America/New_York")
Capture(utc='2026-03-04T04:30:00Z', tz='America/New_York', local_date='2026-03-03')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from importlib import resources
from zoneinfo import ZoneInfo

from ..core.errors import BadInput

_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")
_OFFSET = re.compile(r"([+-])(\d{2}):(\d{2})")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z")
MAX_OFFSET = timedelta(hours=14)  # the widest offset in use on Earth (Line Islands, +14:00)
EXCLUDED_ZONES = frozenset({"Factory"})  # tzdata's placeholder for "local time unknown"


@dataclass(frozen=True)
class Capture:
    """Where an utterance sits in time: canonical UTC instant, zone at capture, derived local date."""

    utc: str  # ISO 8601 UTC ending in 'Z'; whole seconds, or exactly 6 fraction digits when not whole
    tz: str  # IANA zone name or fixed offset '+HH:MM', as given
    local_date: str  # 'YYYY-MM-DD': the calendar date in `tz` at the instant `utc`


@lru_cache(maxsize=1)
def zone_names() -> frozenset[str]:
    """The IANA zone names this package accepts: those of the pinned tzdata release.

    >>> "Europe/London" in zone_names(), "Mars/Olympus_Mons" in zone_names()
    (True, False)
    """
    listing = resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in listing.splitlines() if line.strip()) - EXCLUDED_ZONES


@lru_cache(maxsize=None)
def _load_zone(name: str) -> ZoneInfo:
    """Load `name` from the tzdata package (never the host's /usr/share/zoneinfo)."""
    *folders, leaf = name.split("/")
    res = resources.files("tzdata.zoneinfo")
    for part in folders:
        res = res.joinpath(part)
    with res.joinpath(leaf).open("rb") as f:
        return ZoneInfo.from_file(f, key=name)


def parse_offset(s: str) -> timedelta:
    """A fixed offset '+HH:MM' / '-HH:MM' as a timedelta, within +-14:00.

    >>> parse_offset("+05:30"), parse_offset("-04:00")
    (datetime.timedelta(seconds=19800), datetime.timedelta(days=-1, seconds=72000))
    """
    m = _OFFSET.fullmatch(s) if isinstance(s, str) else None
    if m is None:
        raise BadInput(f"offset {s!r} is not of the form +HH:MM or -HH:MM")
    sign, hours, minutes = m.groups()
    if int(minutes) >= 60:
        raise BadInput(f"offset {s!r} has {minutes} minutes; minutes must be 00-59")
    delta = timedelta(hours=int(hours), minutes=int(minutes)) * (-1 if sign == "-" else 1)
    if abs(delta) > MAX_OFFSET:
        raise BadInput(f"offset {s!r} is outside -14:00..+14:00, the range of real UTC offsets")
    return delta


def zone(tz: str) -> tzinfo:
    """Resolve `tz`, an IANA zone name ('America/New_York') or a fixed offset ('+05:30').

    >>> zone("+05:30")
    datetime.timezone(datetime.timedelta(seconds=19800))
    >>> zone("Mars/Olympus_Mons")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    assistant_forget.core.errors.BadInput: unknown time zone 'Mars/Olympus_Mons': use an IANA name such as ...
    """
    if not isinstance(tz, str):
        raise BadInput(f"time zone must be a string, got {type(tz).__name__}")
    if tz[:1] in ("+", "-"):
        return timezone(parse_offset(tz))
    if tz not in zone_names():
        raise BadInput(f"unknown time zone {tz!r}: use an IANA name such as 'Europe/London' "
                       f"or a fixed offset such as '+05:30'")
    return _load_zone(tz)


def format_offset(delta: timedelta) -> str:
    """'+HH:MM' form of a UTC offset (seconds, if any, are shown as ':SS').

    >>> format_offset(timedelta(hours=-5)), format_offset(timedelta(hours=5, minutes=30))
    ('-05:00', '+05:30')
    """
    sign = "-" if delta < timedelta(0) else "+"
    total = int(abs(delta).total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{sign}{hours:02d}:{minutes:02d}" + (f":{seconds:02d}" if seconds else "")


def parse_timestamp(s: str) -> datetime:
    """Parse an ISO 8601 timestamp that carries its UTC offset ('...-05:00' or '...Z'); naive ones are refused.

    >>> parse_timestamp("2026-03-03T23:30:00Z")
    datetime.datetime(2026, 3, 3, 23, 30, tzinfo=datetime.timezone.utc)
    >>> parse_timestamp("2026-03-03T23:30:00")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    assistant_forget.core.errors.BadInput: timestamp '2026-03-03T23:30:00' has no UTC offset: write the offset ...
    """
    if not isinstance(s, str):
        raise BadInput(f"timestamp must be a string, got {type(s).__name__}")
    m = _TIMESTAMP.fullmatch(s)
    if m is None:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?", s):
            raise BadInput(f"timestamp {s!r} has no UTC offset: write the offset in force when it was spoken, "
                           f"e.g. '{s}-05:00' or '{s}Z'")
        raise BadInput(f"timestamp {s!r} is not of the form YYYY-MM-DDTHH:MM:SS[.ffffff] followed by Z or +HH:MM")
    try:
        if m.group(2) != "Z":
            parse_offset(m.group(2))
        return datetime.fromisoformat(s)
    except ValueError as e:
        raise BadInput(f"timestamp {s!r} is not a valid date and time ({e})") from None


def format_utc(instant: datetime) -> str:
    """Canonical UTC form of an aware datetime: whole seconds, or 6 fraction digits when not whole.

    >>> format_utc(datetime(2026, 3, 4, 4, 30, tzinfo=timezone.utc))
    '2026-03-04T04:30:00Z'
    """
    u = instant.astimezone(timezone.utc)
    fraction = f".{u.microsecond:06d}" if u.microsecond else ""
    return u.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def utc_micros(utc: str) -> int:
    """Microseconds since 1970-01-01T00:00:00Z of a canonical UTC string: the instant's sort key.

    >>> utc_micros("1970-01-01T00:00:01.500000Z")
    1500000
    """
    if not isinstance(utc, str) or _UTC.fullmatch(utc) is None:
        raise BadInput(f"utc {utc!r} is not a canonical UTC timestamp (YYYY-MM-DDTHH:MM:SS[.ffffff]Z)")
    delta = datetime.fromisoformat(utc) - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def local_date_of(utc: str, tz: str) -> str:
    """The local date in `tz` at the canonical UTC instant `utc` (how a stored local date is re-derived).

    >>> local_date_of("2026-03-04T04:30:00Z", "America/New_York")
    '2026-03-03'
    """
    utc_micros(utc)  # validates the canonical form
    try:
        return datetime.fromisoformat(utc).astimezone(zone(tz)).date().isoformat()
    except OverflowError:
        raise BadInput(f"utc {utc!r} is too close to the ends of the calendar") from None


def localize(timestamp: str, tz: str) -> Capture:
    """Derive the capture record of `timestamp` spoken in zone `tz`, checking that both agree.

    A numeric offset must be the one `tz` had at that instant; otherwise the input is inconsistent and we
    refuse to guess which of the two is right. A trailing 'Z' states the instant in UTC without claiming a
    local offset (RFC 9557), so it is accepted with any zone.

    >>> localize("2026-07-01T09:00:00+05:30", "Asia/Kolkata").local_date
    '2026-07-01'
    >>> localize("2026-03-04T04:30:00Z", "America/New_York").local_date
    '2026-03-03'
    >>> localize("2026-03-09T12:00:00-05:00", "America/New_York")
    Traceback (most recent call last):
    ...
    assistant_forget.core.errors.BadInput: offset -05:00 does not match America/New_York at that instant (-04:00)
    """
    when = parse_timestamp(timestamp)
    where = zone(tz)
    try:
        local = when.astimezone(where)
    except OverflowError:
        raise BadInput(f"timestamp {timestamp!r} is too close to the ends of the calendar") from None
    given, actual = when.utcoffset(), local.utcoffset()
    if not timestamp.endswith("Z") and given != actual:
        raise BadInput(f"offset {format_offset(given)} does not match {tz} at that instant "
                       f"({format_offset(actual)})")
    return Capture(utc=format_utc(when), tz=tz, local_date=local.date().isoformat())


def parse_date(s: str) -> date:
    """A calendar date written strictly as YYYY-MM-DD (for CLI date arguments).

    >>> parse_date("2026-03-03")
    datetime.date(2026, 3, 3)
    >>> parse_date("2026-02-30")
    Traceback (most recent call last):
    ...
    assistant_forget.core.errors.BadInput: date '2026-02-30' is not a calendar date (day is out of range for month)
    """
    if isinstance(s, date) and not isinstance(s, datetime):
        return s
    if not isinstance(s, str) or _DATE.fullmatch(s) is None:
        raise BadInput(f"date {s!r} is not of the form YYYY-MM-DD (for example 2026-03-03)")
    try:
        return date.fromisoformat(s)
    except ValueError as e:
        raise BadInput(f"date {s!r} is not a calendar date ({e})") from None


def parse_date_range(start: str | date, end: str | date) -> tuple[date, date]:
    """An inclusive range of local dates; the start may equal the end but not follow it.

    >>> parse_date_range("2026-03-01", "2026-03-03")
    (datetime.date(2026, 3, 1), datetime.date(2026, 3, 3))
    """
    first, last = parse_date(start), parse_date(end)
    if first > last:
        raise BadInput(f"date range {first} .. {last} is empty: the start is after the end")
    return first, last


def latest_local_date(now: datetime | None = None) -> date:
    """The latest calendar date anywhere on Earth at `now` (default: this instant): the local date at UTC+14.

    No utterance can have been spoken on a later local day, whatever the user's zone, so this one bound
    is what import accepts and what `forget` may name: a user east of UTC can forget their own today.

    >>> latest_local_date(datetime(2026, 3, 3, 10, 0, tzinfo=timezone.utc))
    datetime.date(2026, 3, 4)
    """
    now = now or datetime.now(timezone.utc)
    return (now.astimezone(timezone.utc) + MAX_OFFSET).date()
