"""The simulated device end to end: a persona lives N days with an assistant that learns and forgets.

Each simulated day, in this order:

    day      the persona speaks; the app answers every utterance with the live export through onnxruntime
             (`runtime.load_current`), and the answer is scored against the utterance's intent;
    log      the day's utterances go into the device's log (one import per day, as a phone logs them);
    request  on scheduled days the user asks to forget a past date, a range of days, or everything about a
             contact (every `forget_every` days, cycling over FORGET_KINDS; targets drawn from the seed);
    night    the phone charges: the retention policy forgets days older than `retention` days
             (`api.retain`), `api.maintain` runs the pending exact passes, `api.train` trains the day and
             re-exports.

Day 1 is answered by the base model: before it, the simulator exports the untrained device, as a phone
ships with the base model. A canary (device_sim.canary) is said a few times on one day, which the first
date request then forgets, so that a later verification can measure its exposure. Same config, same run.
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from assistant_forget.core.errors import BadInput
from assistant_forget.device.localtime import parse_date

from .canary import DEFAULT_CANARY_FORMAT, Canary, random_secret
from .generator import generate_days
from .persona import Persona, make_persona

FORGET_KINDS = ("date", "contact", "range")  # what scheduled requests forget, in turn
CANARY_REPEATS = 3  # times the canary is said on its day
MAX_DAYS = 3660  # longest simulation accepted
SOURCES = ("generator", "clinc150")  # where the persona's utterances come from (device_sim.real: real ones)


@dataclass(frozen=True)
class RunConfig:
    """One simulation: who, how long, and the device's forgetting policies. Validated on creation."""

    device: Path  # device directory the simulation creates and lives in
    days: int = 30  # simulated local days
    seed: int = 7  # seed of the persona, its days, the forget schedule and the device
    start: date = date(2026, 1, 1)  # first local day
    mean: float = 20.0  # mean utterances per day
    retention: int = 21  # the nightly retention policy keeps this many days (0: keeps everything)
    forget_every: int = 5  # a user forget request every K days (0: none)
    report: Path | None = None  # report directory; None: <device's parent>/<device name>-report
    fresh: bool = False  # delete an existing device directory first instead of refusing
    threads: int = 1  # torch threads for the nightly training
    source: str = "generator"  # the persona's own phrasings (generator.py) or real CLINC150 val/test text (real.py)

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", Path(self.device))
        if self.source not in SOURCES:
            raise BadInput(f"--source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.report is not None:
            object.__setattr__(self, "report", Path(self.report))
        for name, lo, hi in [("days", 1, MAX_DAYS), ("seed", 0, 2**63 - 1), ("retention", 0, MAX_DAYS),
                             ("forget_every", 0, MAX_DAYS), ("threads", 1, 256)]:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise BadInput(f"--{name.replace('_', '-')} must be an integer in [{lo}, {hi}], got {v!r}")
        if isinstance(self.mean, bool) or not isinstance(self.mean, (int, float)) or not 0 < self.mean <= 500:
            raise BadInput(f"--mean must be a number of utterances per day in (0, 500], got {self.mean!r}")
        if isinstance(self.start, datetime) or not isinstance(self.start, date):
            raise BadInput(f"--start must be a date, got {self.start!r}")
        today = datetime.now(timezone.utc).date()
        if self.end > today:
            raise BadInput(f"the simulated days {self.start}..{self.end} must end by today ({today}): a device "
                           "cannot forget a day that has not happened; choose an earlier --start or fewer --days")
        device, report = self.device.resolve(), self.report_dir.resolve()
        if report == device or device in report.parents:
            raise BadInput(f"the report directory {self.report_dir} is inside the device directory "
                           f"{self.device}; the device must hold nothing but its own state: choose another --report")

    @property
    def end(self) -> date:
        """The last simulated local day."""
        return self.start + timedelta(days=self.days - 1)

    @property
    def report_dir(self) -> Path:
        """Where the report goes: beside the device directory unless `report` says otherwise."""
        return self.report if self.report is not None else self.device.parent / f"{self.device.name}-report"


@dataclass
class DayStats:
    """What one simulated day did, measured after its night."""

    date: str  # local day, YYYY-MM-DD
    spoken: int  # utterances the persona said
    correct: int  # of them, answered with their own intent by the deployed export
    deployed: str  # export version that answered them (last night's)
    stored: int  # utterances in the device's log after the night
    ledger_bytes: int  # size of the ledger after the night
    model_version: str  # model state after the night
    export_version: str  # export the app loads the next morning
    state: str  # "exact" or "approximate" after the night
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each phase

    @property
    def accuracy(self) -> float | None:
        """Share of the day's utterances answered right; None on a silent day."""
        return self.correct / self.spoken if self.spoken else None


@dataclass(frozen=True)
class ForgetEvent:
    """One forget the simulation ran: a user request or the retention policy."""

    date: str  # local day it ran (user requests in the evening, retention at night)
    kind: str  # "date", "range", "contact" or "retention"
    request: dict  # the api.forget / api.retain arguments (kept in memory only: a contact is a name)
    receipt: dict  # the receipt it returned


@dataclass
class SimResult:
    """Everything a run produced; the device directory and the report hold the durable part."""

    config: RunConfig  # what was run
    persona: Persona  # who spoke
    records: list[dict]  # every generated record in time order, the canary's included
    canary: Canary  # the planted secret
    days: list[DayStats]  # one per simulated day
    events: list[ForgetEvent]  # forgets in the order they ran
    exact_passes: list[dict]  # receipts of the exact passes `maintain` ran
    status: dict  # api.status of the device at the end
    wall_s: float  # wall time of the simulation (report excluded)
    report: Path | None = None  # report.md once written


def request_schedule(days: int, forget_every: int) -> dict[int, str]:
    """Day index -> kind of the user's forget request: every K-th day from the second, cycling over kinds.

    >>> request_schedule(10, 3)
    {2: 'date', 5: 'contact', 8: 'range'}
    >>> request_schedule(5, 0)
    {}
    """
    if not forget_every:
        return {}
    ks = [k for k in range(forget_every - 1, days, forget_every) if k >= 1]
    return {k: FORGET_KINDS[i % len(FORGET_KINDS)] for i, k in enumerate(ks)}


def plant_canary(cfg: RunConfig) -> Canary:
    """The secret and its day: within the three days before the first date request (which forgets it)."""
    first = min((k for k, kind in request_schedule(cfg.days, cfg.forget_every).items() if kind == "date"),
                default=None)
    rng = random.Random(f"device_sim.run.canary:{cfg.seed}")
    day = cfg.days // 2 if first is None else rng.randrange(max(0, first - 3), first)
    return Canary(random_secret(DEFAULT_CANARY_FORMAT, cfg.seed), day, CANARY_REPEATS)


def choose_request(kind: str, k: int, cfg: RunConfig, persona: Persona, day_counts: dict[str, int],
                   mentions: Callable[[str], int], canary_day: str) -> tuple[str, dict] | None:
    """The request of day `k`: (kind, api.forget arguments), trying the other kinds when `kind` has no target.

    A date or range ends on a past day still in the log (the canary's day first); a contact is one of the
    persona's people mentioned in the log (`mentions(name)` counts the utterances that match).
    """
    rng = random.Random(f"device_sim.run.request:{cfg.seed}:{k}")
    today = (cfg.start + timedelta(days=k)).isoformat()
    past = [d for d in day_counts if d < today]
    i = FORGET_KINDS.index(kind)
    for option in FORGET_KINDS[i:] + FORGET_KINDS[:i]:
        if option == "date" and past:
            return option, {"date": canary_day if canary_day in past else rng.choice(past)}
        if option == "range" and past:
            end = parse_date(rng.choice(past))
            return option, {"start": (end - timedelta(days=rng.randint(1, 2))).isoformat(), "end": end.isoformat()}
        if option == "contact":
            people = [p for p in sorted({persona.doctor, *persona.contacts, *persona.coworkers}) if mentions(p)]
            if people:
                return option, {"contains": rng.choice(people)}
    return None


class _Laps:
    """Wall time of consecutive phases: `lap(name)` records the seconds since the previous lap."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}  # phase -> seconds
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._t, 4)
        self._t = now


def _prepare(cfg: RunConfig) -> None:
    """Make the device directory fresh: refuse an existing one unless `fresh`, and then delete only a device."""
    root = cfg.device
    if root.exists() and not root.is_dir():
        raise BadInput(f"{root} is a file; --device needs a directory for the simulated device")
    if root.exists() and any(root.iterdir()):
        if not cfg.fresh:
            raise BadInput(f"{root} already exists; pass --fresh to delete it and start over, or choose "
                           "another --device")
        if not (root / "device.json").is_file():
            raise BadInput(f"{root} is not a device directory (no device.json); --fresh deletes only device "
                           "directories: choose another --device")
        shutil.rmtree(root)


def _log_day(root: Path, records: list[dict]) -> None:
    """Log a day's utterances in the device's store, validated and given ids exactly as an import does."""
    import json

    from assistant_forget.device import tombstones
    from assistant_forget.device.device import Device
    from assistant_forget.device.importer import validate_lines
    from assistant_forget.device.store import LogStore

    if not records:
        return
    utterances = validate_lines(json.dumps(r) for r in records)
    dev = Device.open(root)
    with dev.locked(), LogStore(dev.store_path) as store:
        tombstones.admit_rows(dev.root, [(u.id, u.local_date) for u in utterances])
        store.add(utterances)


def _live_day(cfg: RunConfig, root: Path, k: int, spoken: list[dict], persona: Persona, canary_day: str,
              events: list[ForgetEvent], passes: list[dict]) -> DayStats:
    """Day `k`: answer and log what was said, run the user's request if one is due, then the night."""
    from assistant_forget import api
    from assistant_forget.device.device import Device
    from assistant_forget.export.runtime import load_current
    from assistant_forget.device.store import LogStore

    today = (cfg.start + timedelta(days=k)).isoformat()
    clock = _Laps()
    app = load_current(root)
    correct = sum(app.intent(r["text"]).label == r["intent"] for r in spoken)
    clock.lap("answer")
    _log_day(root, spoken)
    clock.lap("log")
    kind = request_schedule(cfg.days, cfg.forget_every).get(k)
    if kind is not None:
        with LogStore(Device.open(root).store_path, readonly=True) as store:
            picked = choose_request(kind, k, cfg, persona, store.day_counts(),
                                    lambda name: len(store.matching(name)), canary_day)
        if picked is not None:
            events.append(ForgetEvent(today, picked[0], picked[1], api.forget(root, **picked[1])))
    clock.lap("request")
    if cfg.retention:
        receipt = api.retain(root, cfg.retention, today)
        if receipt is not None:
            events.append(ForgetEvent(today, "retention", {"keep_days": cfg.retention, "today": today}, receipt))
    exact = api.maintain(root)  # before training, so that the exact pass gets its own receipt
    if exact is not None:
        passes.append(exact)
    api.train(root)
    clock.lap("night")
    st = api.status(root)
    return DayStats(today, len(spoken), correct, app.version, st["utterances"], st["ledger_bytes"],
                    st["model_version"], st["export_version"], st["state"], clock.seconds)


def simulate(cfg: RunConfig, on_day: Callable[[DayStats], None] | None = None) -> SimResult:
    """Live through the configured days on a new device at `cfg.device`; calls `on_day` after each night."""
    import torch  # imported here, as the api is, so that building the CLI parser stays fast

    from assistant_forget import api
    from assistant_forget.device.device import Device

    t_start = time.perf_counter()
    persona, canary = make_persona(cfg.seed), plant_canary(cfg)
    if cfg.source == "clinc150":
        from .real import real_days

        records = real_days(cfg.start, cfg.days, cfg.seed, mean_per_day=cfg.mean, canaries=[canary])
    else:
        records = generate_days(persona, cfg.start, cfg.days, cfg.seed, mean_per_day=cfg.mean, canaries=[canary])
    by_day: dict[str, list[dict]] = {}
    for r in records:
        by_day.setdefault(r["timestamp"][:10], []).append(r)  # a generated timestamp is in local time
    canary_day = (cfg.start + timedelta(days=canary.day_index(cfg.start, cfg.days))).isoformat()
    _prepare(cfg)
    root = Device.create(cfg.device, cfg.seed).root
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    days: list[DayStats] = []
    events: list[ForgetEvent] = []
    passes: list[dict] = []
    try:
        api.export(root)  # the phone ships with the base model: it answers day 1
        for k in range(cfg.days):
            spoken = by_day.get((cfg.start + timedelta(days=k)).isoformat(), [])
            days.append(_live_day(cfg, root, k, spoken, persona, canary_day, events, passes))
            if on_day is not None:
                on_day(days[-1])
    finally:
        torch.set_num_threads(threads)
    return SimResult(cfg, persona, records, canary, days, events, passes, api.status(root),
                     round(time.perf_counter() - t_start, 2))


def run(cfg: RunConfig, on_day: Callable[[DayStats], None] | None = None) -> SimResult:
    """Simulate, then write the report (report.md, plots, run.json) to `cfg.report_dir`."""
    from .report import write_report

    result = simulate(cfg, on_day)
    result.report = write_report(result, cfg.report_dir)
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of `python -m device_sim run` and `assistant-forget simulate` (one definition for both)."""
    d = argparse.Namespace(**{f.name: f.default for f in fields(RunConfig)})
    p.add_argument("--days", type=int, default=d.days, help=f"simulated days (default {d.days})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"seed of the persona, schedule and device "
                                                            f"(default {d.seed})")
    p.add_argument("--device", type=Path, required=True, help="device directory to create")
    p.add_argument("--start", default=d.start.isoformat(), metavar="DATE",
                   help=f"first local day, YYYY-MM-DD (default {d.start})")
    p.add_argument("--mean", type=float, default=d.mean, help=f"mean utterances per day (default {d.mean:g})")
    p.add_argument("--retention", type=int, default=d.retention, metavar="R",
                   help=f"each night forget the days older than R days; 0 keeps everything (default {d.retention})")
    p.add_argument("--forget-every", type=int, default=d.forget_every, metavar="K",
                   help="every K-th day the user asks to forget a date, a contact or a range, in turn; 0 never "
                        f"(default {d.forget_every})")
    p.add_argument("--report", type=Path, default=None, metavar="DIR",
                   help="report directory (default: DEVICE-report beside the device directory)")
    p.add_argument("--fresh", action="store_true", help="delete an existing device directory and start over")
    p.add_argument("--threads", type=int, default=d.threads, help=f"torch threads (default {d.threads})")
    p.add_argument("--source", default=d.source, choices=SOURCES,
                   help="what the persona says: the generator's phrasings, or real crowd-sourced CLINC150 "
                        f"val/test utterances with the persona's rhythm (default {d.source})")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """A validated RunConfig from parsed `add_arguments` arguments (BadInput says what is wrong)."""
    try:
        start = parse_date(args.start)
    except BadInput as e:
        raise BadInput(f"--start: {e}") from None
    return RunConfig(device=args.device, days=args.days, seed=args.seed, start=start, mean=args.mean,
                     retention=args.retention, forget_every=args.forget_every, report=args.report,
                     fresh=args.fresh, threads=args.threads, source=args.source)
