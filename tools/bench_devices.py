"""Synthetic devices for the quality benchmarks: a persona's trained device, drawn days, planted canaries.

Shared by tools/bench_quality.py, tools/bench_baselines.py and tools/bench_forget.py (they run as scripts,
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

START = date(2025, 1, 1)  # first simulated day (365 days end within 2025)


def make_device(root: Path, days: int, seed: int, mean: float) -> tuple[int, float]:
    """A trained device at `root` with `days` days of persona `seed` from START; (utterances, training s)."""
    recs = generate_days(make_persona(seed), START, days, seed, mean_per_day=mean, travel=True)
    src = root.parent / f"{root.name}.jsonl"
    write_jsonl(recs, src)
    import_jsonl(root, src, seed=seed)
    src.unlink()
    t = time.perf_counter()
    api.train(root)
    return len(recs), time.perf_counter() - t


def build(root: Path, days: int, seed: int, mean: float, forgets: int, tag: str) -> list[str]:
    """The trained device (no canary) of persona `seed`; returns `forgets` days drawn with the seed `tag:seed`."""
    n, train_s = make_device(root, days, seed, mean)
    print(f"trained {days} days ({n} utterances) in {train_s:.1f} s", file=sys.stderr)
    picks = sorted(random.Random(f"{tag}:{seed}").sample(range(days), forgets))
    return [(START + timedelta(days=k)).isoformat() for k in picks]


def plant(src: Path, dev: Path, day: str, secret: str, days: int, seed: int, mean: float, repeats: int,
          lag: int | None = None) -> float:
    """A device whose log has a canary said `repeats` times on `day`, trained; returns the training time.

    Default: a copy of the trained device `src` with the canary lines added. device_sim plants a canary
    without moving any other line, and training replays from the checkpoint before the changed day, so the
    copy is exactly the device whose log had the canary from the start. With `lag`, a fresh device whose
    history ends `lag` days after `day` (a forget asked for soon after the canary was said).
    """
    k = (date.fromisoformat(day) - START).days
    n = days if lag is None else min(days, k + lag + 1)
    recs = generate_days(make_persona(seed), START, n, seed, mean_per_day=mean, travel=True,
                         canaries=[Canary(secret, k, repeats)])
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


def heldout(seed: int, n: int) -> list[tuple[str, str]]:
    """`n` held-out (text, intent) utterances of persona `seed`: unseen data from the user's distribution."""
    return [(r["text"], r["intent"]) for r in heldout_utterances(make_persona(seed), n, seed)]
