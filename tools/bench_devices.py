"""Benchmark devices for the quality benchmarks: a persona's trained device, drawn days, planted canaries.

Two sources of text (SOURCES): "generator", the persona's own phrasings (device_sim.generator), and
"clinc150", real crowd-sourced CLINC150 val/test utterances with the persona's rhythm (device_sim.real),
each with its own held-out utterances that its logs never contain. Shared by tools/bench_quality.py, tools/bench_baselines.py and tools/bench_forget.py (they run as scripts,
so this folder is on their import path): the same persona, days and canaries give them the same devices to
forget from.
"""

from __future__ import annotations

import random
import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from assistant_forget import api
from assistant_forget.device.importer import import_jsonl
from device_sim.canary import DEFAULT_CANARY_FORMAT, Canary, random_secret
from device_sim.generator import generate_days, heldout_utterances, write_jsonl
from device_sim.persona import make_persona
from assistant_forget.device.clinc import load_clinc
from device_sim.real import RealConfig, heldout_real, real_days

START = date(2025, 1, 1)  # first simulated day (365 days end within 2025)
SOURCES = ("generator", "clinc150")  # the persona's own phrasings, or real CLINC150 val/test utterances


def records(days: int, seed: int, mean: float, source: str = "generator", canaries: list[Canary] = (),
            real: RealConfig = RealConfig()) -> list[dict]:
    """`days` days of persona `seed` from START, from `source` (`real`: the shape of a "clinc150" log), with
    `canaries` planted."""
    if source == "clinc150":
        return real_days(START, days, seed, mean_per_day=mean, travel=True, canaries=canaries, config=real)
    if source != "generator":
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    return generate_days(make_persona(seed), START, days, seed, mean_per_day=mean, travel=True, canaries=canaries)


def make_device(root: Path, days: int, seed: int, mean: float, source: str = "generator",
                real: RealConfig = RealConfig()) -> tuple[int, float]:
    """A trained device at `root` with `days` days of persona `seed` from START; (utterances, training s)."""
    recs = records(days, seed, mean, source, real=real)
    src = root.parent / f"{root.name}.jsonl"
    write_jsonl(recs, src)
    import_jsonl(root, src, seed=seed)
    src.unlink()
    t = time.perf_counter()
    api.train(root)
    return len(recs), time.perf_counter() - t


def build(root: Path, days: int, seed: int, mean: float, forgets: int, tag: str, source: str = "generator",
          real: RealConfig = RealConfig()) -> list[str]:
    """The trained device (no canary) of persona `seed`; returns `forgets` days drawn with the seed `tag:seed`
    (for "clinc150", among the days that have utterances: a silent day has nothing to forget)."""
    n, train_s = make_device(root, days, seed, mean, source, real)
    print(f"trained {days} days ({n} utterances, {source}) in {train_s:.1f} s", file=sys.stderr)
    spoken = sorted({(date.fromisoformat(r["timestamp"][:10]) - START).days for r in records(days, seed, mean, source, real=real)})
    pool = range(days) if source == "generator" else spoken  # the generator's draw stays as it was
    picks = sorted(random.Random(f"{tag}:{seed}").sample(pool, forgets))
    return [(START + timedelta(days=k)).isoformat() for k in picks]


def plant(src: Path, dev: Path, day: str, secret: str, days: int, seed: int, mean: float, repeats: int,
          lag: int | None = None, source: str = "generator", real: RealConfig = RealConfig()) -> float:
    """A device whose log has a canary said `repeats` times on `day`, trained; returns the training time.

    Default: a copy of the trained device `src` with the canary lines added. device_sim plants a canary
    without moving any other line, and training replays from the checkpoint before the changed day, so the
    copy is exactly the device whose log had the canary from the start. With `lag`, a fresh device whose
    history ends `lag` days after `day` (a forget asked for soon after the canary was said).
    """
    k = (date.fromisoformat(day) - START).days
    n = days if lag is None else min(days, k + lag + 1)
    recs = records(n, seed, mean, source, [Canary(secret, k, repeats)], real)
    lines = dev.parent / "canary.jsonl"
    if lag is None:
        shutil.copytree(src, dev)
        write_jsonl([r for r in recs if r["text"] == secret], lines)
        import_jsonl(dev, lines)
    else:
        write_jsonl(recs, lines)
        import_jsonl(dev, lines, seed=seed)
    lines.unlink()
    t = time.perf_counter()
    api.train(dev)
    return time.perf_counter() - t


def secrets(days: list[str], seed: int) -> dict[str, str]:
    """One canary secret of device_sim's default format (10^5 secrets) per drawn day."""
    return {d: random_secret(DEFAULT_CANARY_FORMAT, seed * 100_003 + j) for j, d in enumerate(days)}


def heldout(seed: int, n: int, source: str = "generator", real: RealConfig = RealConfig()) -> list[tuple[str, str]]:
    """`n` held-out (text, intent) utterances of persona `seed`: unseen data from the user's distribution."""
    if source == "clinc150":
        return heldout_real(seed, n, real)
    return [(r["text"], r["intent"]) for r in heldout_utterances(make_persona(seed), n, seed)]


def clinc_test_unseen(log_texts: set[str], n: int, seed: int) -> list[tuple[str, str]]:
    """`n` CLINC150 test + oos_test utterances the log never says (a seeded sample): what `verify` scores a device
    on when it has no untrained day, the public test distribution (all 150 intents, 1,000 oos) rather than
    the user's own."""
    data = load_clinc()
    rows = list(dict.fromkeys((t, i) for t, i in data["test"] + data["oos_test"] if t.casefold() not in log_texts))
    return random.Random(f"bench_devices.clinc_test:{seed}").sample(rows, min(n, len(rows)))
