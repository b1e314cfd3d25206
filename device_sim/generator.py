"""N days of a synthetic user's utterances, in the project's JSONL format, from a seed.

Day k is the local calendar day `start + k` in the zone the persona is in that day (home, or abroad during
a trip). Its utterance count is Poisson with a weekday/weekend rhythm; each utterance gets an intent (the
persona's favourites, a long tail of CLINC150 intents, some out-of-scope), a text (the persona's own phrasing
or a CLINC150 training utterance, with its habitual openings and closings) and a local time of day that
suits the intent. Every day draws from its own seeded stream, so the first k days of a longer log are the
same as a k-day log, and planting a canary adds its lines without moving anything else.

Held-out utterances come from the same distribution but from a disjoint part of text space: a text is
held-out iff a keyed hash of it falls in one bucket of HELDOUT_ONE_IN, and logs never emit such texts. So
held-out texts never appear in any log of any seed, with no need to see the log.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Iterable
from zoneinfo import ZoneInfo  # noqa: F401  (the doctests use it)

from assistant_forget.device.clinc import OOS, intent_labels, load_clinc
from assistant_forget.core.errors import BadInput
from assistant_forget.core.fsio import atomic_write_bytes
from assistant_forget.device.localtime import zone

from .canary import Canary
from .persona import CORE_INTENTS, WORK_INTENTS, Persona, make_persona
from .phrasing import DEPARTURE, HEALTH, MED_REMINDER, MONEY, TRAVEL, decorate, fill

SOURCE = "synthetic"  # the "source" field of every generated record
HELDOUT_ONE_IN = 8  # one text in this many (by hash) is reserved for held-out sets
MAX_TRIES = 500  # draws before giving up on finding a text for the requested side
RECORD_KEYS = ("text", "intent", "timestamp", "tz", "source")  # the JSONL record, in this key order

# Local time-of-day windows, in hours; weekends start later.
WINDOWS = {"night": (0.5, 4.5), "morning": (6.0, 9.5), "day": (9.5, 17.0), "evening": (17.0, 23.0),
           "late": (23.0, 24.0)}
WEEKEND_WINDOWS = {**WINDOWS, "morning": (7.5, 11.0), "day": (11.0, 17.0)}
WINDOW_NAMES = tuple(WINDOWS)
# Weights over (night, morning, day, evening, late) by intent; DEFAULT_WINDOW for the rest.
DEFAULT_WINDOW = (0.02, 0.2, 0.4, 0.32, 0.06)
WINDOW_WEIGHTS = {
    **dict.fromkeys(("alarm",), (0.02, 0.25, 0.05, 0.35, 0.33)),
    **dict.fromkeys(("weather", "date", "time"), (0.01, 0.6, 0.2, 0.15, 0.04)),
    **dict.fromkeys(("traffic", "directions", "uber"), (0.0, 0.35, 0.4, 0.23, 0.02)),
    **dict.fromkeys(("calendar", "calendar_update", "meeting_schedule", "schedule_meeting"),
                    (0.0, 0.5, 0.45, 0.05, 0.0)),
    **dict.fromkeys(("text", "make_call", "share_location"), (0.02, 0.15, 0.35, 0.4, 0.08)),
    **dict.fromkeys(("play_music", "next_song", "what_song", "change_volume"), (0.0, 0.2, 0.3, 0.45, 0.05)),
    **dict.fromkeys(("timer", "recipe", "cook_time"), (0.0, 0.15, 0.25, 0.58, 0.02)),
}


@dataclass(frozen=True)
class SimConfig:
    """Rates that shape a generated log (the defaults describe a typical user)."""

    weekday: float = 1.1  # multiplier on mean_per_day Monday-Friday
    weekend: float = 0.75  # multiplier on Saturday-Sunday (5 * 1.1 + 2 * 0.75 = 7: the weekly mean is kept)
    health_rate: float = 0.08  # chance a day is a health day (doctor, medications: sensitive)
    money_rate: float = 0.08  # chance a day is a money day (bank, bills: sensitive)
    sensitive_share: float = 0.3  # share of a sensitive day's utterances on its theme
    travel_share: float = 0.3  # share of a travel day's utterances about the trip
    oos_rate: float = 0.03  # chance an utterance is out of scope (CLINC150 oos_train)
    long_tail_rate: float = 0.08  # chance of an intent outside the persona's everyday set
    weekend_work: float = 0.2  # multiplier on work intents (calendar, meetings) at weekends

    def __post_init__(self) -> None:
        rates = (self.health_rate, self.money_rate, self.sensitive_share, self.travel_share, self.oos_rate,
                 self.long_tail_rate)
        if min(self.weekday, self.weekend, self.weekend_work) < 0 or not all(0 <= r <= 1 for r in rates):
            raise BadInput(f"SimConfig multipliers must be >= 0 and rates in [0, 1]: {self}")
        if abs(5 * self.weekday + 2 * self.weekend - 7) > 1e-9:
            raise BadInput(f"SimConfig: 5 * weekday + 2 * weekend must equal 7 so that mean_per_day stays the "
                           f"weekly mean (got weekday={self.weekday}, weekend={self.weekend})")
        if self.health_rate + self.money_rate > 1 or self.oos_rate + self.long_tail_rate > 1:
            raise BadInput(f"SimConfig: health_rate + money_rate and oos_rate + long_tail_rate must be <= 1: {self}")


@dataclass(frozen=True)
class DayPlan:
    """What kind of day day `index` is: where the persona is, and whether the day is sensitive."""

    index: int  # 0 = the first generated day
    date: date  # the local calendar date, start + index
    tz: str  # IANA zone the persona is in that day
    weekend: bool  # Saturday or Sunday
    sensitive: str | None  # "health", "money" or None
    leg: str  # "home", "depart" (flies out in the evening), "arrive" (lands in the morning) or "away"
    earliest: float  # first local hour anything may be said
    latest: float  # local hour by which everything has been said


def localize(naive: datetime, tz: tzinfo) -> datetime:
    """Attach `tz` to a wall-clock time; a time in a DST gap (which never happened) moves forward by the gap.

    >>> ny = ZoneInfo("America/New_York")
    >>> localize(datetime(2026, 3, 8, 2, 30), ny).isoformat()
    '2026-03-08T03:30:00-04:00'
    >>> localize(datetime(2026, 3, 3, 23, 30), ny).isoformat()
    '2026-03-03T23:30:00-05:00'
    """
    aware = naive.replace(tzinfo=tz, fold=0)
    back = aware.astimezone(timezone.utc).astimezone(tz)
    return back if back.replace(tzinfo=None) != naive else aware


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson(lam) draw by inverse transform (exact for the lam <= 500 the generator allows).

    >>> r = random.Random(0)
    >>> abs(sum(poisson(r, 4.0) for _ in range(4000)) / 4000 - 4.0) < 0.15
    True
    """
    u, k, p = rng.random(), 0, math.exp(-lam)
    c = p
    while u > c and p > 0.0:
        k += 1
        p *= lam / k
        c += p
    return k


def _trip_days(seed: int) -> range:
    """Day indices spent abroad when travel is on: a 4-7 day trip starting between day 7 and day 20."""
    rng = random.Random(f"device_sim.trip:{seed}")
    first = rng.randint(7, 20)
    return range(first, first + rng.randint(4, 7))


def _plan_day(persona: Persona, start: date, k: int, seed: int, travel: bool, cfg: SimConfig) -> DayPlan:
    """The plan of day `k`; depends only on its arguments, not on how many days are generated."""
    day = start + timedelta(days=k)
    u = random.Random(f"device_sim.plan:{seed}:{k}").random()
    sensitive = "health" if u < cfg.health_rate else "money" if u < cfg.health_rate + cfg.money_rate else None
    trip = _trip_days(seed) if travel else range(0)
    leg = ("depart" if k == trip.start - 1 and trip else "arrive" if k == trip.start and trip
           else "away" if k in trip else "home")
    return DayPlan(index=k, date=day, tz=persona.trip.tz if k in trip else persona.tz,
                   weekend=day.weekday() >= 5, sensitive=sensitive, leg=leg,
                   earliest=10.0 if leg == "arrive" else 0.0, latest=17.0 if leg == "depart" else 24.0)


def _check_args(start: date, days: int, seed: int, mean_per_day: float) -> None:
    """BadInput naming the first malformed generation argument."""
    if isinstance(start, datetime) or not isinstance(start, date):
        raise BadInput(f"start must be a date (e.g. date(2026, 1, 1)), got {start!r}")
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 3660:
        raise BadInput(f"days must be an integer in [1, 3660], got {days!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise BadInput(f"seed must be an integer >= 0, got {seed!r}")
    if isinstance(mean_per_day, bool) or not isinstance(mean_per_day, (int, float)) \
            or not 0 < mean_per_day <= 500:
        raise BadInput(f"mean_per_day must be a number in (0, 500], got {mean_per_day!r}")


def plan_days(persona: Persona, start: date, days: int, seed: int, *, travel: bool = True,
              config: SimConfig = SimConfig()) -> list[DayPlan]:
    """The plan of each generated day: zone, trip leg and sensitive theme (the side structure benchmarks use)."""
    _check_args(start, days, seed, 1.0)
    return [_plan_day(persona, start, k, seed, travel, config) for k in range(days)]


def sensitive_days(persona: Persona, start: date, days: int, seed: int, *,
                   config: SimConfig = SimConfig()) -> dict[date, str]:
    """Local date -> "health" or "money" for the sensitive days of the log with the same arguments."""
    return {p.date: p.sensitive for p in plan_days(persona, start, days, seed, config=config) if p.sensitive}


@lru_cache(maxsize=1)
def _clinc_pools() -> tuple[dict[str, tuple[str, ...]], tuple[str, ...], tuple[str, ...]]:
    """CLINC150 train texts by intent, the oos_train texts, and the long-tail intents (not everyday ones)."""
    by_intent: dict[str, list[str]] = {}
    for text, intent in load_clinc()["train"]:
        by_intent.setdefault(intent, []).append(text)
    oos = tuple(t for t, _ in load_clinc()["oos_train"])
    tail = tuple(i for i in intent_labels() if i != OOS and i not in CORE_INTENTS)
    return {i: tuple(ts) for i, ts in by_intent.items()}, oos, tail


def is_heldout_text(text: str) -> bool:
    """True iff `text` belongs to the held-out part of text space (logs never say it)."""
    h = hashlib.blake2b(text.encode(), digest_size=8, person=b"device_sim").digest()
    return int.from_bytes(h, "big") % HELDOUT_ONE_IN == 0


def _everyday(rng: random.Random, persona: Persona, weekend: bool, cfg: SimConfig) -> tuple[str, str]:
    """(intent, text) of an ordinary utterance."""
    by_intent, oos, tail = _clinc_pools()
    u = rng.random()
    if u < cfg.oos_rate:
        return OOS, rng.choice(oos)
    if u < cfg.oos_rate + cfg.long_tail_rate:
        intent = rng.choice(tail)
        return intent, rng.choice(by_intent[intent])
    names = [i for i, _ in persona.intent_weights]
    weights = [w * (cfg.weekend_work if weekend and i in WORK_INTENTS else 1.0) for i, w in persona.intent_weights]
    intent = rng.choices(names, weights)[0]
    own = persona.templates.get(intent, ())
    if own and rng.random() < persona.own_phrasing_rate:
        return intent, fill(rng.choice(own), persona, rng)
    return intent, rng.choice(by_intent[intent])


def _utterance(rng: random.Random, persona: Persona, plan: DayPlan, kind: str, heldout: bool,
               banned: frozenset[str], cfg: SimConfig) -> tuple[str, str]:
    """(intent, text) of one utterance of `kind`, on the requested side of text space and not a canary."""
    for _ in range(MAX_TRIES):
        if kind.startswith("med:"):
            intent, text = MED_REMINDER[0], fill(MED_REMINDER[1], persona, rng, med=kind[4:])
        elif kind in ("health", "money", "travel", "depart"):
            pool = {"health": HEALTH, "money": MONEY, "travel": TRAVEL, "depart": DEPARTURE}[kind]
            intent, template = rng.choice(pool)
            text = fill(template, persona, rng)
        else:
            intent, text = _everyday(rng, persona, plan.weekend, cfg)
        text = decorate(text, persona, rng)
        if is_heldout_text(text) == heldout and text not in banned:
            return intent, text
    raise RuntimeError(f"no {kind!r} utterance found on the {'held-out' if heldout else 'log'} side "
                       f"in {MAX_TRIES} draws")


def _kinds(rng: random.Random, persona: Persona, plan: DayPlan, n: int, cfg: SimConfig) -> list[str]:
    """What each of the day's `n` utterances is about: one reminder per medication on a health day first."""
    kinds = [f"med:{m}" for m in persona.medications][:n] if plan.sensitive == "health" else []
    theme = {"depart": "depart", "arrive": "travel", "away": "travel"}.get(plan.leg)
    while len(kinds) < n:
        u = rng.random()
        kinds.append(plan.sensitive if plan.sensitive and u < cfg.sensitive_share
                     else theme if theme and rng.random() < cfg.travel_share else "everyday")
    return kinds


def _local_time(rng: random.Random, plan: DayPlan, intent: str) -> datetime:
    """A local wall-clock time on the plan's date that suits the intent (and the trip leg)."""
    if plan.leg in ("depart", "arrive"):
        hour = rng.uniform(max(plan.earliest, 6.0), min(plan.latest, 23.5))
    else:
        window = rng.choices(WINDOW_NAMES, WINDOW_WEIGHTS.get(intent, DEFAULT_WINDOW))[0]
        lo, hi = (WEEKEND_WINDOWS if plan.weekend else WINDOWS)[window]
        hour = rng.uniform(lo, hi)
    seconds = min(int(hour * 3600), 86399)
    return datetime.combine(plan.date, datetime.min.time()) + timedelta(seconds=seconds)


def _record(when: datetime, text: str, intent: str, tz: str) -> dict:
    """One JSONL record, keys in RECORD_KEYS order."""
    return {"text": text, "intent": intent, "timestamp": when.isoformat(timespec="seconds"), "tz": tz,
            "source": SOURCE}


def _day_records(persona: Persona, plan: DayPlan, seed: int, mean: float, heldout: bool,
                 canaries: list[Canary], banned: frozenset[str], cfg: SimConfig) -> list[tuple[datetime, dict]]:
    """(aware time, record) for everything said on one day, the canaries planted on it included."""
    side = "heldout" if heldout else "log"
    rng = random.Random(f"device_sim.day:{side}:{seed}:{plan.index}")
    tz = zone(plan.tz)  # the pinned tzdata, as the importer uses
    n = poisson(rng, mean * (cfg.weekend if plan.weekend else cfg.weekday))
    out = []
    for kind in _kinds(rng, persona, plan, n, cfg):
        intent, text = _utterance(rng, persona, plan, kind, heldout, banned, cfg)
        when = localize(_local_time(rng, plan, intent), tz)
        out.append((when, _record(when, text, intent, plan.tz)))
    for j, c in enumerate(canaries):
        crng = random.Random(f"device_sim.canary-time:{seed}:{plan.index}:{j}:{c.text}")
        for _ in range(c.repeats):
            when = localize(_local_time(crng, plan, c.intent), tz)
            out.append((when, _record(when, c.text, c.intent, plan.tz)))
    return out


def generate_days(persona: Persona, start: date, days: int, seed: int, *, mean_per_day: float = 20.0,
                  canaries: Iterable[Canary] = (), travel: bool = True,
                  config: SimConfig = SimConfig()) -> list[dict]:
    """`days` days of the persona's utterances from local date `start`, as JSONL records in time order.

    Same arguments, same records. Canaries are said exactly `repeats` times on their day and nowhere else.
    """
    _check_args(start, days, seed, mean_per_day)
    canaries = list(canaries)
    if not all(isinstance(c, Canary) for c in canaries):
        raise BadInput("canaries must be device_sim.Canary objects (see parse_canary_spec for TEXT@DAY*REPEATS)")
    on_day: dict[int, list[Canary]] = {}
    for c in canaries:
        on_day.setdefault(c.day_index(start, days), []).append(c)
    banned = frozenset(c.text for c in canaries)
    timed: list[tuple[datetime, dict]] = []
    for plan in plan_days(persona, start, days, seed, travel=travel, config=config):
        timed += _day_records(persona, plan, seed, mean_per_day, False, on_day.get(plan.index, []), banned, config)
    timed.sort(key=lambda t: t[0])  # aware datetimes compare as UTC instants; the sort is stable
    return [r for _, r in timed]


def heldout_utterances(persona: Persona, n: int, seed: int, *, start: date = date(2026, 1, 1),
                       mean_per_day: float = 20.0, travel: bool = True,
                       config: SimConfig = SimConfig()) -> list[dict]:
    """`n` distinct utterances from the persona's distribution that no generated log ever contains.

    They are records like the log's (days from `start`), for measuring personalisation and as unseen members
    for membership inference.
    """
    _check_args(start, 1, seed, mean_per_day)
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise BadInput(f"n must be an integer >= 0, got {n!r}")
    seen: set[str] = set()
    out: list[dict] = []
    k = 0
    while len(out) < n:
        if k > 10 * n + 100:
            raise RuntimeError(f"only {len(out)} distinct held-out utterances after {k} days")
        plan = _plan_day(persona, start, k, seed, travel, config)
        for _, rec in sorted(_day_records(persona, plan, seed, mean_per_day, True, [], frozenset(), config),
                             key=lambda t: t[0]):
            if rec["text"] not in seen and len(out) < n:
                seen.add(rec["text"])
                out.append(rec)
        k += 1
    return out


def write_jsonl(records: Iterable[dict], path: Path) -> int:
    """Write records as JSONL (one object a line, UTF-8), atomically; returns the number of lines."""
    path = Path(path)
    lines = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or any(not isinstance(rec.get(k), str) for k in RECORD_KEYS):
            raise BadInput(f"record {i} must be a dict with string fields {', '.join(RECORD_KEYS)}; got {rec!r}")
        lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
    if not path.parent.is_dir():
        raise BadInput(f"cannot write {path}: directory {path.parent} does not exist (create it first)")
    if path.is_dir():
        raise BadInput(f"cannot write {path}: it is a directory; give a file name such as log.jsonl")
    atomic_write_bytes(path, "".join(lines).encode())
    return len(lines)


def generate_log(out: Path, *, days: int, seed: int, start: date = date(2026, 1, 1), mean_per_day: float = 20.0,
                 canaries: Iterable[Canary] = (), travel: bool = True) -> dict:
    """Generate the log of persona `seed` and write it to `out`; returns the summary `format_summary` prints."""
    persona = make_persona(seed)
    canaries = list(canaries)
    records = generate_days(persona, start, days, seed, mean_per_day=mean_per_day, canaries=canaries,
                            travel=travel)
    plans = plan_days(persona, start, days, seed, travel=travel)
    away = [p.date for p in plans if p.leg in ("arrive", "away")]
    write_jsonl(records, out)
    return {"out": str(out), "utterances": len(records), "days": days, "start": start.isoformat(),
            "end": plans[-1].date.isoformat(), "persona": persona.display_name, "tz": persona.tz,
            "trip": f"{persona.trip.city} {away[0]}..{away[-1]}" if away else None,
            "health_days": sum(p.sensitive == "health" for p in plans),
            "money_days": sum(p.sensitive == "money" for p in plans),
            "canary_lines": sum(c.repeats for c in canaries)}


def format_summary(s: dict) -> str:
    """One line: what was written where, for whom."""
    trip = f", trip to {s['trip']}" if s["trip"] else ""
    return (f"wrote {s['utterances']} utterances over {s['days']} days ({s['start']}..{s['end']}) to {s['out']}: "
            f"persona {s['persona']} ({s['tz']}){trip}, {s['health_days']} health / {s['money_days']} money days, "
            f"{s['canary_lines']} canary lines")
