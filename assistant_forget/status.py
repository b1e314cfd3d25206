"""What `assistant-forget status` reports about a device directory, as one JSON-ready dict."""

from __future__ import annotations

from pathlib import Path

from .device import Device
from .store import LogStore


def device_status(root: Path) -> dict:
    """Utterances per local day, totals and (as later parts add them) model and pending work."""
    dev = Device.open(root)
    with LogStore(dev.store_path, readonly=True) as store:
        days = store.day_counts()
    return {"device": str(dev.root), "seed": dev.seed, "utterances": sum(days.values()), "days": days}


def format_status(st: dict) -> str:
    """Human-readable form of `device_status`."""
    lines = [f"device     {st['device']} (seed {st['seed']})",
             f"utterances {st['utterances']} over {len(st['days'])} local days"]
    for day, n in st["days"].items():
        lines.append(f"  {day}  {n:4d}")
    return "\n".join(lines)
