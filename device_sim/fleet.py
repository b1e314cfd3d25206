"""A fleet of simulated devices: N personas, each on its own device directory living D days with its forget
requests, run through an executor (serially, on a process pool, or on Ray: core/executor.py).

    python -m device_sim fleet --devices 16 --days 30 --out fleet             # a local process pool
    python -m device_sim fleet --devices 16 --days 30 --out fleet --ray       # a local Ray instance
    python -m device_sim fleet --devices 1000 --days 365 --out /shared/fleet --ray-address head:6379

Every device is one pure task (`live`, a DeviceSpec in and a summary out). Each task is device_sim's own
simulation (simulate.simulate): it speaks, trains every night, forgets on the user's requests and applies
its retention policy. The persona's seed and habits come from the fleet seed alone: utterances per day,
how often the user asks to forget, and how many days the device keeps. So the same fleet gives the same
devices, models and figures on every executor, and only the wall times differ. If a device fails (a corrupt
file, a bad setting), its row says so and the other devices carry on.

The fleet report, `OUT/fleet.json` and `OUT/fleet.png`, holds the distribution over devices of:
- deployed accuracy (whole run and last week)
- forget latency per tier (from the receipts)
- ledger size
- the receipts' verification verdicts
It also has one row per device, with the Ray node it ran on when the executor is Ray. Like the simulator's
own report (report.py), it holds dates, counts, metrics and versions only. No utterance text appears, and no
request either: a contact forget names a person.
"""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

from assistant_forget.core.errors import BadInput, ForgetError

FORMAT = 1  # version of fleet.json's layout
MEANS = (0.5, 0.75, 1.0, 1.5, 2.0)  # a device's utterances per day, as a multiple of the fleet's --mean
FORGET_EVERY = (3, 5, 7, 10)  # how often its user asks to forget something (days)
RETENTION = (0, 14, 21)  # days its retention policy keeps (0: everything)


@dataclass(frozen=True)
class DeviceSpec:
    """One device of the fleet: everything its task reads (picklable)."""

    index: int
    root: str  # the device directory the task creates
    seed: int  # the persona's, the schedule's and the device's seed
    days: int
    start: str  # first local day, YYYY-MM-DD
    mean: float  # mean utterances per day
    forget_every: int
    retention: int

    def __repr__(self) -> str:  # an executor names a failing item
        return f"DeviceSpec(index={self.index}, seed={self.seed}, days={self.days})"


def fleet_specs(out: Path, devices: int, days: int, seed: int, mean: float, start: date) -> list[DeviceSpec]:
    """The fleet's devices, drawn from `seed` alone: the same arguments give the same fleet.

    >>> a = fleet_specs(Path("f"), 3, 10, 1, 20.0, date(2026, 1, 1))
    >>> a == fleet_specs(Path("f"), 3, 10, 1, 20.0, date(2026, 1, 1)), len({s.seed for s in a})
    (True, 3)
    """
    if isinstance(devices, bool) or not isinstance(devices, int) or not 1 <= devices <= 100_000:
        raise BadInput(f"--devices must be an integer in [1, 100000], got {devices!r}")
    from .simulate import RunConfig

    rng = random.Random(f"device_sim.fleet:{seed}")
    specs = []
    for i in range(devices):
        specs.append(DeviceSpec(i, str(out / "devices" / f"d{i:05d}"), rng.getrandbits(32), days, start.isoformat(),
                                round(mean * rng.choice(MEANS), 2), rng.choice(FORGET_EVERY),
                                rng.choice(RETENTION)))
    for s in specs:  # refuse bad settings before anything runs (RunConfig writes nothing)
        RunConfig(device=Path(s.root), days=s.days, seed=s.seed, start=start, mean=s.mean, retention=s.retention,
                  forget_every=s.forget_every, report=Path(s.root).parent / f"{Path(s.root).name}-report")
    return specs


def _verdict(v: object) -> str:
    """A receipt's verification as one word: "not run", "pass" or "fail" (at forget time)."""
    if not isinstance(v, dict):
        return "not run"
    at = v.get("at_forget", v) if "audits" in v else v
    if not isinstance(at, dict) or "passed" not in at:
        return "not run"
    return "pass" if at["passed"] else "fail"


def live(spec: DeviceSpec) -> dict:
    """Simulate one device (the task of the fleet's map); its summary. A failure becomes the row's "error"
    (a ForgetError's message names what to fix; of any other exception only its type: no text can leak)."""
    from .report import pooled_accuracy
    from .simulate import RunConfig, simulate

    row = {k: v for k, v in asdict(spec).items() if k != "root"}
    row["device"] = Path(spec.root).name
    try:
        cfg = RunConfig(device=Path(spec.root), days=spec.days, seed=spec.seed, start=date.fromisoformat(spec.start),
                        mean=spec.mean, retention=spec.retention, forget_every=spec.forget_every,
                        report=Path(spec.root).parent / f"{Path(spec.root).name}-report", fresh=True, threads=1)
        result = simulate(cfg)
    except ForgetError as e:
        return {**row, "error": f"{type(e).__name__}: {e}"}
    except Exception as e:  # noqa: BLE001  a failing device is reported, not fatal to the fleet
        return {**row, "error": type(e).__name__}
    forgets = [{"kind": e.kind, "tier": e.receipt.get("tier"), "utterances": e.receipt.get("utterances"),
                "seconds": (e.receipt.get("timings_s") or {}).get("total"),
                "verification": _verdict(e.receipt.get("verification"))} for e in result.events]
    st = result.status
    return {**row, "error": None, "accuracy": pooled_accuracy(result.days),
            "accuracy_last_week": pooled_accuracy(result.days[-7:]), "spoken": sum(d.spoken for d in result.days),
            "utterances": st["utterances"], "ledger_bytes": st["ledger_bytes"], "state": st["state"],
            "model_version": st["model_version"], "exact_passes": len(result.exact_passes), "forgets": forgets,
            "wall_s": result.wall_s}


def _dist(xs: list[float]) -> dict | None:
    """min, p50, mean, p90, max of `xs` (None when empty)."""
    if not xs:
        return None
    s = sorted(xs)
    return {"n": len(s), "min": s[0], "p50": statistics.median(s), "mean": statistics.fmean(s),
            "p90": s[min(len(s) - 1, int(0.9 * len(s)))], "max": s[-1]}


def aggregate(rows: list[dict]) -> dict:
    """The fleet's distributions over its devices (the rows of `live`; failed devices counted apart)."""
    ok = [r for r in rows if not r["error"]]
    tiers: dict[str, list[float]] = {}
    verdicts: dict[str, int] = {}
    for r in ok:
        for f in r["forgets"]:
            if f["seconds"] is not None:
                tiers.setdefault(f"{f['tier']}", []).append(f["seconds"])
            verdicts[f["verification"]] = verdicts.get(f["verification"], 0) + 1
    return {"devices": len(rows), "failed": [{"device": r["device"], "error": r["error"]} for r in rows if r["error"]],
            "accuracy": _dist([r["accuracy"] for r in ok if r["accuracy"] is not None]),
            "accuracy_last_week": _dist([r["accuracy_last_week"] for r in ok if r["accuracy_last_week"] is not None]),
            "ledger_bytes": _dist([r["ledger_bytes"] for r in ok]),
            "forget_seconds_by_tier": {t: _dist(v) for t, v in sorted(tiers.items())},
            "verification": dict(sorted(verdicts.items())),
            "device_wall_s": _dist([r["wall_s"] for r in ok])}


def plot(rows: list[dict]) -> bytes:
    """fleet.png: accuracy over devices, forget latency per tier, ledger size over devices."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if not r["error"]]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].hist([100 * r["accuracy"] for r in ok if r["accuracy"] is not None], bins=20, color="tab:blue")
    ax[0].set(title="deployed accuracy per device", xlabel="%", ylabel="devices")
    tiers: dict[str, list[float]] = {}
    for r in ok:
        for f in r["forgets"]:
            if f["seconds"] is not None:
                tiers.setdefault(str(f["tier"]), []).append(f["seconds"])
    names = sorted(tiers)
    if names:
        ax[1].boxplot([tiers[t] for t in names])
        ax[1].set_xticks(range(1, len(names) + 1), names)
    ax[1].set(title="forget latency per tier", ylabel="s")
    ax[2].hist([r["ledger_bytes"] / 1024 for r in ok], bins=20, color="tab:green")
    ax[2].set(title="ledger size per device", xlabel="KiB", ylabel="devices")
    fig.suptitle(f"{len(ok)} devices" + (f", {len(rows) - len(ok)} failed" if len(rows) > len(ok) else ""))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def run_fleet(out: Path, specs: list[DeviceSpec], executor) -> dict:
    """Simulate every device of `specs` through `executor`, write OUT/fleet.json and OUT/fleet.png; the
    report. With a Ray executor each row names the node its device ran on."""
    import time

    from assistant_forget.core.executor import map_rows
    from assistant_forget.core.fsio import atomic_write_bytes

    t = time.perf_counter()
    rows = map_rows(executor, live, specs, cost=lambda s: s.days * s.mean)  # a device-day's work ~ its utterances
    wall = time.perf_counter() - t
    name = repr(executor) if type(executor).__repr__ is not object.__repr__ else type(executor).__name__
    report = {"format": FORMAT, "executor": name, "wall_s": round(wall, 2),
              "summary": aggregate(rows), "rows": rows}
    atomic_write_bytes(out / "fleet.json", (json.dumps(report, indent=1) + "\n").encode())
    atomic_write_bytes(out / "fleet.png", plot(rows))
    return report


def format_report(report: dict) -> str:
    """A few lines for the terminal."""
    s = report["summary"]
    pct = lambda d, k: "n/a" if not d else f"{100 * d[k]:.1f}%"  # noqa: E731
    lines = [f"{s['devices']} devices in {report['wall_s']} s ({report['executor']}); failed: {len(s['failed'])}",
             f"deployed accuracy: p50 {pct(s['accuracy'], 'p50')}, min {pct(s['accuracy'], 'min')}, "
             f"max {pct(s['accuracy'], 'max')}"]
    for tier, d in s["forget_seconds_by_tier"].items():
        lines.append(f"forget {tier}: {d['n']} forgets, p50 {d['p50']:.2f} s, p90 {d['p90']:.2f} s, max {d['max']:.2f} s")
    if s["ledger_bytes"]:
        lines.append(f"ledger: p50 {s['ledger_bytes']['p50'] / 1024:.0f} KiB, max {s['ledger_bytes']['max'] / 1024:.0f} KiB")
    lines.append(f"verification verdicts: {s['verification'] or 'none'}")
    for f in s["failed"]:
        lines.append(f"FAILED {f['device']}: {f['error']}")
    return "\n".join(lines)
