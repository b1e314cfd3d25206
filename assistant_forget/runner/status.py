"""What `assistant-forget status` reports about a device directory, as one JSON-ready dict. Reads only."""

from __future__ import annotations

from pathlib import Path

from ..device import receipts, tombstones
from ..device.device import JOURNAL, MAINTAIN_JOURNAL, Device
from ..device.family_record import read_family
from ..core.ledger import Ledger
from ..export.publish import current_version
from ..device.store import LogStore


def device_status(root: Path) -> dict:
    """Utterances per local day, the model version and trained days, the export, and pending work."""
    dev = Device.open(root)
    family, settings = read_family(dev.root)
    tomb = tombstones.load(dev.root)
    with LogStore(dev.store_path, readonly=True) as store:
        days, restored = store.day_counts(), tomb.restored(store)
    ledger = Ledger(dev.root / "ledger")
    bound = tomb.binds(ledger.digest() if ledger.exists() else None)
    m = ledger.load_manifest()
    trained = set(m.days)
    problems = ([] if bound else ["the ledger is not the one this device last committed (a restored backup or "
                                  "another device's); the next writing command discards it"])
    problems += ([f"{sum(map(len, restored.values()))} log row(s) on forgotten days came back (a restored log); "
                  "the next writing command deletes them again"] if restored else [])
    return {
        "device": str(dev.root), "seed": dev.seed, "family": family,
        **({"base_model": settings["base_model"]} if "base_model" in settings else {}),
        "utterances": sum(days.values()), "days": days,
        "model_version": m.version or "base", "trained_days": len(trained),
        "last_trained_day": max(trained, default=None),
        "untrained_days": sorted(set(days) - trained),
        "state": "stale" if problems else "approximate" if m.approximate else "exact",
        "problems": problems, "forgotten_days": sorted(tomb.days),
        "pending_exact_from": m.pending_exact_from,
        "pending_forget": (dev.root / JOURNAL).exists() or (dev.root / MAINTAIN_JOURNAL).exists(),
        "export_version": current_version(dev.root),
        "ledger_bytes": ledger.size_bytes() if m.days else 0,
        "receipts": len(receipts.read_all(dev.root)),
    }


def format_status(st: dict) -> str:
    """Human-readable form of `device_status`."""
    lines = [f"device       {st['device']} (seed {st['seed']})"
             + (f", family {st['family']} on {st['base_model']}" if st.get("base_model") else ""),
             f"utterances   {st['utterances']} over {len(st['days'])} local days",
             f"model        {st['model_version']} ({st['state']}), {st['trained_days']} trained days"
             + (f", last {st['last_trained_day']}" if st["last_trained_day"] else ""),
             f"export       {st['export_version'] or 'none'}",
             f"ledger       {st['ledger_bytes']:,} bytes",
             f"receipts     {st['receipts']}"]
    if st["untrained_days"]:
        lines.append(f"untrained    {len(st['untrained_days'])} day(s) from {st['untrained_days'][0]}")
    if st["pending_exact_from"]:
        lines.append(f"pending      exact pass from {st['pending_exact_from']} (`assistant-forget maintain`)")
    for p in st["problems"]:
        lines.append(f"problem      {p}")
    if st["pending_forget"]:
        lines.append("pending      an interrupted forget; the next write command finishes it")
    lines.append("days:")
    for day, n in st["days"].items():
        lines.append(f"  {day}  {n:4d}")
    return "\n".join(lines)
