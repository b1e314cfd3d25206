"""N days of a persona's log made of REAL crowd-sourced utterances (CLINC150 val + test), from a seed.

The generator (generator.py) writes its own phrasings; a benchmark on it measures the project against its
own text. This module gives a second device whose every utterance is a human-written CLINC150 utterance
(Larson et al. 2019, crowd-sourced) from the val and test splits and their oos_ parts. The shipped base
model's weights were fitted on train + oos_train only (tools/build_base_model.py: val chose the best epoch
and tuned the oos threshold, test only evaluated it); texts that also occur in train / oos_train are left
out, so no logged text was ever a gradient step of the base.

The persona's rhythm is the generator's: its home zone and trip (generator.plan_days), weekday / weekend
rates, times of day that suit each intent (generator's windows). On top of it, real users have silent days
and busy days: a day is silent with `quiet_rate`, otherwise its count is Poisson with a gamma-distributed
mean (over-dispersed). A persona has habits: `habits(seed)` draws a persona-specific subset of intents
(`core` of the everyday CORE_INTENTS, `other` among the rest), each with its own weight; `long_tail_rate`
of utterances fall on any other intent and `oos_rate` are out of scope. A real user repeats themselves, so
a text is drawn with replacement from its intent's log-side pool: the same sentence can come back another day.

Held-out utterances: a text is held-out iff a keyed hash of it falls in one bucket of HELDOUT_ONE_IN (a
different key from the generator's), and logs never emit such texts; `heldout_real(seed, n)` draws `n`
distinct held-out texts from the persona's own intent mixture (an intent whose held-out texts run out is
skipped, which flattens the very top of the mixture a little).

Every day draws from its own seeded stream, so the first k days of a longer log are the first k days'
records of the k-day log, and planting a canary adds its lines without moving anything else.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from assistant_forget.core.errors import BadInput
from assistant_forget.device.clinc import OOS, intent_labels, load_clinc
from assistant_forget.device.localtime import zone

from .canary import Canary
from .generator import DayPlan, SimConfig, _local_time, localize, plan_days, poisson, write_jsonl
from .persona import CORE_INTENTS, WORK_INTENTS, make_persona

SOURCE = "clinc150"  # the "source" field of every record
SPLITS = ("val", "test", "oos_val", "oos_test")  # the CLINC150 splits the log and the held-out set draw from
HELDOUT_ONE_IN = 3  # one text in this many (by hash) is reserved for held-out sets
MAX_TRIES_PER_ITEM = 200  # held-out draws per requested utterance before giving up


@dataclass(frozen=True)
class RealConfig:
    """The shape of a real-utterance log (the defaults describe a typical user)."""

    core: int = 20  # everyday intents (of CORE_INTENTS) the persona uses habitually
    other: int = 20  # other CLINC150 intents the persona uses habitually
    spread: float = 0.6  # sigma of the log-normal taste on each habitual intent's weight
    long_tail_rate: float = 0.1  # chance an utterance is on an intent outside the habits
    oos_rate: float = 0.03  # chance an utterance is out of scope (oos_val / oos_test)
    quiet_rate: float = 0.08  # chance a day has no utterance at all (phone left at home, a busy day)
    dispersion: float = 4.0  # gamma shape of a day's mean (smaller: busier busy days, quieter quiet ones)
    weekday: float = SimConfig.weekday  # multiplier Monday-Friday (as the generator)
    weekend: float = SimConfig.weekend  # multiplier Saturday-Sunday
    weekend_work: float = SimConfig.weekend_work  # multiplier on work intents at weekends

    def __post_init__(self) -> None:
        rates = (self.long_tail_rate, self.oos_rate, self.quiet_rate)
        if not all(isinstance(r, (int, float)) and 0 <= r <= 1 for r in rates) or self.long_tail_rate + self.oos_rate > 1:
            raise BadInput(f"RealConfig rates must be in [0, 1] with long_tail_rate + oos_rate <= 1: {self}")
        if not 1 <= self.core <= len(CORE_INTENTS) or not 0 <= self.other <= 150 - len(CORE_INTENTS):
            raise BadInput(f"RealConfig: core must be in [1, {len(CORE_INTENTS)}] and other in "
                           f"[0, {150 - len(CORE_INTENTS)}]: {self}")
        if self.spread < 0 or self.dispersion <= 0 or min(self.weekday, self.weekend, self.weekend_work) < 0:
            raise BadInput(f"RealConfig: spread >= 0, dispersion > 0 and multipliers >= 0: {self}")


def is_heldout_real(text: str) -> bool:
    """True iff `text` belongs to the held-out part of the real texts (logs never say it)."""
    h = hashlib.blake2b(text.encode(), digest_size=8, person=b"device_sim.real").digest()
    return int.from_bytes(h, "big") % HELDOUT_ONE_IN == 0


@lru_cache(maxsize=1)
def real_pools() -> dict[bool, dict[str, tuple[str, ...]]]:
    """held-out? -> intent -> distinct CLINC150 val/test texts of that side (never a train / oos_train text)."""
    data = load_clinc()
    trained = {t for t, _ in data["train"] + data["oos_train"]}
    out: dict[bool, dict[str, list[str]]] = {False: {}, True: {}}
    seen: set[str] = set()
    for split in SPLITS:
        for text, intent in data[split]:
            if text in trained or text in seen:
                continue
            seen.add(text)
            out[is_heldout_real(text)].setdefault(intent, []).append(text)
    return {side: {i: tuple(ts) for i, ts in pools.items()} for side, pools in out.items()}


def habits(seed: int, config: RealConfig = RealConfig()) -> tuple[tuple[str, float], ...]:
    """The persona's habitual intents with their relative weights, sorted by name: a pure function of the seed.

    >>> h = habits(3)
    >>> h == habits(3), h == habits(4), len(h)
    (True, False, 40)
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise BadInput(f"seed must be an integer >= 0, got {seed!r}")
    rng = random.Random(f"device_sim.real.habits:{seed}")
    core = sorted(CORE_INTENTS)
    picked_core = rng.sample(core, config.core)
    rest = sorted(i for i in intent_labels() if i != OOS and i not in CORE_INTENTS)
    picked_other = rng.sample(rest, config.other)
    weights = {i: CORE_INTENTS[i] * rng.lognormvariate(0.0, config.spread) for i in picked_core}
    mean_core = sum(CORE_INTENTS[i] for i in picked_core) / len(picked_core)
    weights.update({i: mean_core * 0.5 * rng.lognormvariate(0.0, config.spread) for i in picked_other})
    return tuple((i, round(weights[i], 4)) for i in sorted(weights))


def _intent(rng: random.Random, habit: tuple[tuple[str, float], ...], weekend: bool, cfg: RealConfig) -> str:
    """One utterance's intent from the persona's mixture: out of scope, long tail, or a habit."""
    u = rng.random()
    if u < cfg.oos_rate:
        return OOS
    names = [i for i, _ in habit]
    if u < cfg.oos_rate + cfg.long_tail_rate:
        tail = sorted(set(intent_labels()) - set(names) - {OOS})
        return rng.choice(tail)
    weights = [w * (cfg.weekend_work if weekend and i in WORK_INTENTS else 1.0) for i, w in habit]
    return rng.choices(names, weights)[0]


def _record(when: datetime, text: str, intent: str, tz: str) -> dict:
    """One JSONL record, keys in generator.RECORD_KEYS order."""
    return {"text": text, "intent": intent, "timestamp": when.isoformat(timespec="seconds"), "tz": tz,
            "source": SOURCE}


def day_count(rng: random.Random, plan: DayPlan, mean: float, cfg: RealConfig) -> int:
    """How many utterances day `plan` has: 0 on a silent day, else Poisson with a gamma-distributed mean."""
    if rng.random() < cfg.quiet_rate:
        return 0
    lam = mean * (cfg.weekend if plan.weekend else cfg.weekday) * rng.gammavariate(cfg.dispersion, 1 / cfg.dispersion)
    return poisson(rng, min(lam, 500.0))


def _day_records(plan: DayPlan, seed: int, mean: float, habit, canaries: list[Canary], banned: frozenset[str],
                 cfg: RealConfig) -> list[tuple[datetime, dict]]:
    """(aware time, record) for everything said on one day, the canaries planted on it included."""
    pools = real_pools()[False]
    rng = random.Random(f"device_sim.real.day:{seed}:{plan.index}")
    tz = zone(plan.tz)
    out = []
    for _ in range(day_count(rng, plan, mean, cfg)):
        intent = _intent(rng, habit, plan.weekend, cfg)
        text = rng.choice(pools[intent])
        if text in banned:
            continue
        when = localize(_local_time(rng, plan, intent), tz)
        out.append((when, _record(when, text, intent, plan.tz)))
    for j, c in enumerate(canaries):
        crng = random.Random(f"device_sim.real.canary-time:{seed}:{plan.index}:{j}:{c.text}")
        for _ in range(c.repeats):
            when = localize(_local_time(crng, plan, c.intent), tz)
            out.append((when, _record(when, c.text, c.intent, plan.tz)))
    return out


def real_days(start: date, days: int, seed: int, *, mean_per_day: float = 20.0, canaries: Iterable[Canary] = (),
              travel: bool = True, config: RealConfig = RealConfig()) -> list[dict]:
    """`days` days of persona `seed` saying real CLINC150 val/test utterances from local date `start`, as
    JSONL records in time order (generator.write_jsonl writes them; `assistant-forget import` reads them).

    Same arguments, same records. Canaries are said exactly `repeats` times on their day and nowhere else.
    """
    if isinstance(mean_per_day, bool) or not isinstance(mean_per_day, (int, float)) or not 0 < mean_per_day <= 500:
        raise BadInput(f"mean_per_day must be a number in (0, 500], got {mean_per_day!r}")
    canaries = list(canaries)
    if not all(isinstance(c, Canary) for c in canaries):
        raise BadInput("canaries must be device_sim.Canary objects (see parse_canary_spec for TEXT@DAY*REPEATS)")
    plans = plan_days(make_persona(seed), start, days, seed, travel=travel)  # both validate their arguments
    on_day: dict[int, list[Canary]] = {}
    for c in canaries:
        on_day.setdefault(c.day_index(start, days), []).append(c)
    banned = frozenset(c.text for c in canaries)
    habit = habits(seed, config)
    timed: list[tuple[datetime, dict]] = []
    for plan in plans:
        timed += _day_records(plan, seed, mean_per_day, habit, on_day.get(plan.index, []), banned, config)
    timed.sort(key=lambda t: t[0])  # aware datetimes compare as UTC instants; the sort is stable
    return [r for _, r in timed]


def heldout_real(seed: int, n: int, config: RealConfig = RealConfig()) -> list[tuple[str, str]]:
    """`n` distinct (text, intent) real utterances from persona `seed`'s intent mixture that no real log of
    any seed contains (the held-out side of text space): unseen data for accuracy and membership attacks."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise BadInput(f"n must be an integer >= 0, got {n!r}")
    habit = habits(seed, config)
    pools = real_pools()[True]
    if n > sum(map(len, pools.values())):
        raise BadInput(f"n={n}: there are only {sum(map(len, pools.values()))} held-out real utterances in all")
    left = {i: list(ts) for i, ts in pools.items()}
    rng = random.Random(f"device_sim.real.heldout:{seed}")
    for ts in left.values():
        rng.shuffle(ts)
    out: list[tuple[str, str]] = []
    for _ in range(MAX_TRIES_PER_ITEM * max(n, 1)):
        if len(out) >= n:
            break
        intent = _intent(rng, habit, rng.random() < 2 / 7, config)
        if left.get(intent):
            out.append((left[intent].pop(), intent))
    if len(out) < n:
        raise BadInput(f"only {len(out)} distinct held-out real utterances for this persona; ask for fewer than {n}")
    return out


def real_log_summary(records: list[dict], start: date, days: int) -> dict:
    """Counts that describe a real log: utterances, days with none, the busiest day, distinct texts and intents."""
    per_day: dict[str, int] = {}
    for r in records:
        per_day[r["timestamp"][:10]] = per_day.get(r["timestamp"][:10], 0) + 1
    counts = [per_day.get((start + timedelta(days=k)).isoformat(), 0) for k in range(days)]
    return {"utterances": len(records), "days": days, "silent_days": sum(c == 0 for c in counts),
            "busiest_day": max(counts, default=0), "distinct_texts": len({r["text"] for r in records}),
            "intents": len({r["intent"] for r in records})}


def generate_real_log(out: Path, *, days: int, seed: int, start: date = date(2026, 1, 1), mean_per_day: float = 20.0,
                      canaries: Iterable[Canary] = (), travel: bool = True) -> dict:
    """Write persona `seed`'s real-utterance log to `out`; returns the summary `format_real_summary` prints."""
    canaries = list(canaries)
    records = real_days(start, days, seed, mean_per_day=mean_per_day, canaries=canaries, travel=travel)
    write_jsonl(records, out)
    persona = make_persona(seed)
    return {"out": str(out), "start": start.isoformat(), "end": (start + timedelta(days=days - 1)).isoformat(),
            "persona": persona.display_name, "tz": persona.tz, "canary_lines": sum(c.repeats for c in canaries),
            **real_log_summary(records, start, days)}


def format_real_summary(s: dict) -> str:
    """One line: what was written where, for whom."""
    return (f"wrote {s['utterances']} real CLINC150 utterances over {s['days']} days ({s['start']}..{s['end']}) to "
            f"{s['out']}: persona {s['persona']} ({s['tz']}), {s['distinct_texts']} distinct texts on "
            f"{s['intents']} intents, {s['silent_days']} silent days, busiest day {s['busiest_day']}, "
            f"{s['canary_lines']} canary lines")
