"""Benchmark the utterance log on a year of synthetic use: append, day queries, delete-a-day with purge.

    python tools/bench_store.py                 # 365 days x ~40 utterances/day, prints a table
    python tools/bench_store.py --json          # the same figures as one JSON object

Rows are synthetic (CLINC150 texts with a per-row tag, waking-hours timestamps, a few trips abroad); the
figures measure the store, not the content. Everything is written under a temporary directory (or --dir).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from assistant_forget.device.clinc import load_clinc
from assistant_forget.device.importer import import_jsonl
from assistant_forget.device.localtime import localize, zone
from assistant_forget.device.store import LogStore, Utterance
from assistant_forget.verify.metrics import percentile

TRIPS = {"Europe/London": range(60, 67), "Asia/Tokyo": range(200, 210)}  # day offsets spent abroad


@dataclass
class BenchConfig:
    days: int = 365  # days of log
    per_day: int = 40  # mean utterances per day (Poisson-ish: uniform in [per_day/2, 3*per_day/2])
    deletes: int = 25  # days deleted (each followed by a purge) for the delete timing
    seed: int = 0  # seed of the synthetic log and of the day samples
    start: str = "2025-01-01"  # first local day



def synthetic_year(cfg: BenchConfig) -> list[dict]:
    """JSONL records for `cfg.days` days: local waking-hours timestamps in the zone the user is in that day."""
    rng = random.Random(cfg.seed)
    corpus = load_clinc()["train"]
    first = date.fromisoformat(cfg.start)
    records = []
    for d in range(cfg.days):
        tz = next((z for z, span in TRIPS.items() if d in span), "America/New_York")
        day = first + timedelta(days=d)
        for i in range(rng.randint(cfg.per_day // 2, cfg.per_day * 3 // 2)):
            text, intent = rng.choice(corpus)
            local = datetime(day.year, day.month, day.day, rng.randint(7, 22), rng.randint(0, 59),
                             rng.randint(0, 59), tzinfo=zone(tz))
            records.append({"text": f"{text} #{d}.{i}", "intent": intent, "tz": tz,
                            "timestamp": local.isoformat(timespec="seconds")})
    return records


def to_utterances(records: list[dict]) -> list[Utterance]:
    """The utterances an import of `records` would store (ids made unique by the per-row tag)."""
    out = []
    for n, r in enumerate(records):
        c = localize(r["timestamp"], r["tz"])
        out.append(Utterance(f"b{n:06d}", r["text"], r["intent"], c.utc, c.tz, c.local_date, "bench"))
    return out


def run(cfg: BenchConfig, workdir: Path) -> dict:
    """All measurements; figures in utterances/s and milliseconds."""
    records = synthetic_year(cfg)
    rows = to_utterances(records)
    by_day: dict[str, list[Utterance]] = {}
    for u in rows:
        by_day.setdefault(u.local_date, []).append(u)
    db = workdir / "append" / "logs.sqlite"
    db.parent.mkdir(parents=True)
    with LogStore(db) as store:
        t0 = time.perf_counter()
        for day in sorted(by_day):  # one transaction per day, as a nightly import would do
            store.add(by_day[day])
        append_s = time.perf_counter() - t0

        jsonl = workdir / "year.jsonl"
        jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
        t0 = time.perf_counter()
        import_jsonl(workdir / "import-dev", jsonl)
        import_s = time.perf_counter() - t0

        rng = random.Random(cfg.seed + 1)
        days = sorted(by_day)
        query_ms = []
        for day in rng.sample(days, len(days)):
            t0 = time.perf_counter()
            got = store.by_day(day)
            query_ms.append((time.perf_counter() - t0) * 1e3)
            assert len(got) == len(by_day[day])
        store.purge()  # fold the WAL into the file so its size is the database's
        size_before = db.stat().st_size
        delete_ms = []
        for day in rng.sample(days, min(cfg.deletes, len(days))):
            t0 = time.perf_counter()
            n = store.delete_day(day)  # includes purge: checkpoint, VACUUM, checkpoint
            delete_ms.append((time.perf_counter() - t0) * 1e3)
            assert n == len(by_day[day])
    return {
        "config": asdict(cfg), "utterances": len(rows), "days": len(by_day), "db_bytes": size_before,
        "append_per_day_batches_utt_per_s": len(rows) / append_s,
        "import_jsonl_one_file_utt_per_s": len(rows) / import_s,
        "day_query_ms_p50": percentile(query_ms, 50), "day_query_ms_p95": percentile(query_ms, 95),
        "delete_day_with_purge_ms_p50": percentile(delete_ms, 50),
        "delete_day_with_purge_ms_p95": percentile(delete_ms, 95),
        "delete_day_with_purge_ms_mean": statistics.fmean(delete_ms),
    }


def format_table(res: dict) -> str:
    """The figures as an aligned two-column table."""
    rows = [("utterances / local days", f"{res['utterances']} / {res['days']}"),
            ("database size", f"{res['db_bytes'] / 2**20:.2f} MiB"),
            ("append, one txn per day", f"{res['append_per_day_batches_utt_per_s']:,.0f} utt/s"),
            ("import_jsonl, one file (validated)", f"{res['import_jsonl_one_file_utt_per_s']:,.0f} utt/s"),
            ("day query p50 / p95", f"{res['day_query_ms_p50']:.2f} / {res['day_query_ms_p95']:.2f} ms"),
            ("delete day + purge p50 / p95", f"{res['delete_day_with_purge_ms_p50']:.1f} / "
                                             f"{res['delete_day_with_purge_ms_p95']:.1f} ms")]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for field, default in asdict(BenchConfig()).items():
        p.add_argument(f"--{field.replace('_', '-')}", type=type(default), default=default)
    p.add_argument("--dir", type=Path, default=None, help="work directory (default: a fresh temporary one)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    cfg = BenchConfig(**{f: getattr(args, f) for f in asdict(BenchConfig())})
    if cfg.days < 1 or cfg.per_day < 2 or cfg.deletes < 1:
        p.error("--days must be >= 1, --per-day >= 2 and --deletes >= 1")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        res = run(cfg, Path(tmp))
    print(json.dumps(res, indent=2, sort_keys=True) if args.json else format_table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
