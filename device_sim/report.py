"""The report of a simulation: a summary table, report.md with PNG plots, and run.json. No utterance text.

Everything written here is dates, counts, metrics and versions: what the device did, never what the persona
said, nor anything derived from it that a guess could be checked against (no hash of a contact's name, none of
the canary's secret: with 10^5 secrets, hashing each finds it; the canary is named by how to draw it again,
`random_secret(DEFAULT_CANARY_FORMAT, seed)`, as the whole synthetic persona is drawn from the seed).
Verification results appear as their receipts store them (verify.public_summary: pass/fail and buckets).
Files in the report directory (format 1):

    report.md      summary, plots, one row per forget receipt and per exact pass, one row per day
    accuracy.png   deployed accuracy per day, forget requests and retention marked
    ledger.png     ledger size and stored utterances per day
    run.json       the same figures, machine-readable
"""

from __future__ import annotations

import io
import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from assistant_forget.device import receipts
from assistant_forget.core.fsio import atomic_write_bytes

if TYPE_CHECKING:
    from .simulate import DayStats, SimResult

FORMAT = 2  # version of run.json's layout (2: no hashes of the canary or of contacts)
FILES = ("report.md", "accuracy.png", "ledger.png", "run.json")  # what write_report writes
WEEK = 7  # days in the "first week" and "last week" accuracy figures
KIND_COLOURS = {"date": "tab:red", "range": "tab:purple", "contact": "tab:orange", "retention": "tab:gray"}


def pooled_accuracy(days: list["DayStats"]) -> float | None:
    """Correct answers over utterances across `days`; None when nothing was said."""
    spoken = sum(d.spoken for d in days)
    return sum(d.correct for d in days) / spoken if spoken else None


def percent(x: float | None) -> str:
    """A share as a percentage with one decimal, or "n/a".

    >>> percent(0.4567), percent(None)
    ('45.7%', 'n/a')
    """
    return "n/a" if x is None else f"{100 * x:.1f}%"


def tally(result: "SimResult") -> dict[str, Counter]:
    """Forget kind -> Counter of the tiers its receipts ran with."""
    out: dict[str, Counter] = {}
    for e in result.events:
        out.setdefault(e.kind, Counter())[e.receipt["tier"]] += 1
    return out


def format_summary(result: "SimResult") -> str:
    """The table printed at the end of a run."""
    cfg, st, days = result.config, result.status, result.days
    forgets = ", ".join(f"{kind} {sum(c.values())} ({', '.join(f'{t} {n}' for t, n in sorted(c.items()))})"
                        for kind, c in sorted(tally(result).items())) or "none"
    rows = [
        ("days", f"{len(days)} ({cfg.start}..{cfg.end}), seed {cfg.seed}"),
        ("utterances", f"{sum(d.spoken for d in days)} spoken; {st['utterances']} kept over {len(st['days'])} days"),
        ("deployed accuracy", f"first week {percent(pooled_accuracy(days[:WEEK]))}, "
                              f"last week {percent(pooled_accuracy(days[-WEEK:]))}"),
        ("forgets by kind (tier)", forgets),
        ("retention", f"keep {cfg.retention} days" if cfg.retention else "off"),
        ("exact passes", str(len(result.exact_passes))),
        ("ledger", f"{st['ledger_bytes']:,} bytes"),
        ("model version", f"{st['model_version']} ({st['state']})"),
        ("export version", str(st["export_version"])),
        ("device", str(cfg.device)),
        ("wall time", f"{result.wall_s:.1f} s"),
        ("report", str(result.report) if result.report else "not written"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def verification_cell(v: object) -> str:
    """The receipt's "verification" field for a table cell: "not run" until a verification is attached.

    >>> verification_cell(None), verification_cell({"passed": True, "auc": 0.51})
    ('not run', 'auc=0.51, passed=True')
    >>> verification_cell({"format": 2, "at_forget": {"passed": True}, "audits": [{"passed": False}]})
    'at forget: pass; audits: 1, last FAIL'
    """
    if v is None:
        return "not run"
    if isinstance(v, dict) and "audits" in v:  # a receipt's verification (verify.py): verdicts only
        word = lambda s: "not run" if not isinstance(s, dict) else ("pass" if s.get("passed") else "FAIL")  # noqa: E731
        audits = v["audits"] if isinstance(v["audits"], list) else []
        return f"at forget: {word(v.get('at_forget'))}; audits: {len(audits)}" + (
            f", last {word(audits[-1])}" if audits else "")
    if isinstance(v, dict):
        return ", ".join(f"{k}={v[k]}" for k in sorted(v))
    return str(v)


def _days_cell(days: dict[str, int]) -> str:
    first, last = min(days), max(days)
    span = first if first == last else f"{first}..{last}"
    return f"{span} ({len(days)} d)"


def receipt_rows(result: "SimResult", receipts_by_id: dict[str, dict]) -> list[dict]:
    """One row per forget: the event's day and kind, then its receipt's fields (the latest stored version)."""
    rows = []
    for e in result.events:
        r = receipts_by_id.get(e.receipt["id"], e.receipt)
        rows.append({  # the selector is left out: for a contact it named the phrase (or a hash of it)
            "date": e.date, "kind": e.kind, "receipt": r["id"], "tier": r["tier"],
            "requested_mode": r.get("requested_mode"), "days": r.get("days", {}), "utterances": r.get("utterances"),
            "trained_days": r.get("trained_days"), "state": r.get("state"),
            "pending_exact_from": r.get("pending_exact_from"), "version_before": r.get("version_before"),
            "version_after": r.get("version_after"), "export_version": r.get("export_version"),
            "timings_s": r.get("timings_s", {}), "verification": r.get("verification"),
        })
    return rows


def _plot_accuracy(result: "SimResult") -> bytes:
    from matplotlib.figure import Figure

    days = result.days
    x = list(range(1, len(days) + 1))
    fig = Figure(figsize=(9, 4.5), dpi=100, layout="constrained")
    ax = fig.subplots()
    ax.plot(x, [100 * d.accuracy if d.accuracy is not None else float("nan") for d in days], "o-", ms=3,
            color="tab:blue", label="deployed accuracy (that day's utterances)")
    index = {d.date: i + 1 for i, d in enumerate(days)}
    seen = set()
    for e in result.events:
        ax.axvline(index[e.date] + (0.5 if e.kind == "retention" else 0.25), color=KIND_COLOURS[e.kind],
                   ls=":" if e.kind == "retention" else "--", lw=1,
                   label=None if e.kind in seen else f"forget: {e.kind}")
        seen.add(e.kind)
    ax.set_xlabel(f"day (1 = {result.config.start})")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Accuracy of the deployed export, per day")
    fig.legend(loc="outside lower center", ncols=3, fontsize=8)
    return _png(fig)


def _plot_ledger(result: "SimResult") -> bytes:
    from matplotlib.figure import Figure

    days = result.days
    x = list(range(1, len(days) + 1))
    fig = Figure(figsize=(9, 4), dpi=100, layout="constrained")
    ax = fig.subplots()
    ax.plot(x, [d.ledger_bytes / 1024 for d in days], "s-", ms=3, color="tab:green", label="ledger (KiB)")
    ax.set_xlabel(f"day (1 = {result.config.start})")
    ax.set_ylabel("ledger size (KiB)")
    twin = ax.twinx()
    twin.plot(x, [d.stored for d in days], "-", color="tab:brown", alpha=0.6, label="utterances kept")
    twin.set_ylabel("utterances kept in the log")
    ax.set_title("Ledger size and kept utterances after each night")
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=8)
    return _png(fig)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def run_json(result: "SimResult", rows: list[dict]) -> dict:
    """The machine-readable report: config, per-day figures, forgets, exact passes, canary (hashed)."""
    cfg = result.config
    return {
        "format": FORMAT,
        "config": {"device": str(cfg.device), "days": cfg.days, "seed": cfg.seed, "start": cfg.start.isoformat(),
                   "mean": cfg.mean, "retention": cfg.retention, "forget_every": cfg.forget_every},
        "days": [{"date": d.date, "spoken": d.spoken, "correct": d.correct, "accuracy": d.accuracy,
                  "deployed": d.deployed, "stored": d.stored, "ledger_bytes": d.ledger_bytes,
                  "model_version": d.model_version, "export_version": d.export_version, "state": d.state,
                  "seconds": d.seconds} for d in result.days],
        "forgets": rows,
        "exact_passes": [{k: p.get(k) for k in ("id", "replayed_from", "version_before", "version_after",
                                                 "export_version", "timings_s")} for p in result.exact_passes],
        "canary": {"date": (cfg.start + timedelta(days=result.canary.day_index(cfg.start, cfg.days))).isoformat(),
                   "repeats": result.canary.repeats,
                   "secret": "random_secret(DEFAULT_CANARY_FORMAT, seed)"},
        "final": {k: result.status[k] for k in ("utterances", "model_version", "state", "export_version",
                                                "ledger_bytes", "receipts", "trained_days")},
        "wall_s": result.wall_s,
    }


def _markdown(result: "SimResult", rows: list[dict], info: dict) -> str:
    cfg = result.config
    out = [f"# Simulated device: {cfg.days} days from {cfg.start}, seed {cfg.seed}", "",
           "Generated by `python -m device_sim run`. Dates, counts, metrics, versions and hashes only: no "
           "utterance text.", "", "```", format_summary(result), "```", "",
           "## Deployed accuracy", "",
           "Each day the app answers that day's utterances with the export published the night before "
           "(day 1: the base model). Dashed lines: the user's forget requests; dotted: the retention policy.", "",
           "![deployed accuracy per day](accuracy.png)", "",
           "## Ledger", "", "![ledger size per day](ledger.png)", "",
           "## Forgets", "",
           "One row per receipt (DIR/receipts.jsonl). A fast forget's state is *approximate* until the exact "
           "pass that follows it (next table, or a later exact forget) replays the days after it. "
           "*Verification* is the receipt's `verification` field, filled in by a verification run.", "",
           "| day | kind | tier | days forgotten | utt. | trained | state | version before -> after | export "
           "| delete s | model s | export s | total s | verification |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = r["timings_s"]
        what = r["kind"]
        out.append(f"| {r['date']} | {what} | {r['tier']} | {_days_cell(r['days'])} | {r['utterances']} "
                   f"| {r['trained_days']} | {r['state']} | {r['version_before']} -> {r['version_after']} "
                   f"| {r['export_version']} | {t.get('delete', '')} | {t.get('model', '')} | {t.get('export', '')} "
                   f"| {t.get('total', '')} | {verification_cell(r['verification'])} |")
    if not rows:
        out.append("| (none) |||||||||||||")
    out += ["", "## Exact passes (maintain)", "", "| replayed from | version before -> after | export | model s |",
            "|---|---|---|---|"]
    out += [f"| {p['replayed_from']} | {p['version_before']} -> {p['version_after']} | {p['export_version']} "
            f"| {p['timings_s']['model']} |" for p in info["exact_passes"]] or ["| (none) ||||"]
    out += ["", "## Days", "", "| day | spoken | accuracy | kept | ledger bytes | model | export | state | answer s "
            "| log s | request s | night s |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for d in result.days:
        s = d.seconds
        out.append(f"| {d.date} | {d.spoken} | {percent(d.accuracy)} | {d.stored} | {d.ledger_bytes:,} "
                   f"| {d.model_version} | {d.export_version} | {d.state} | {s.get('answer')} | {s.get('log')} "
                   f"| {s.get('request')} | {s.get('night')} |")
    c = info["canary"]
    out += ["", "## Canary", "",
            f"A secret of `device_sim.canary.DEFAULT_CANARY_FORMAT` was said {c['repeats']} times on {c['date']}; "
            "`random_secret(DEFAULT_CANARY_FORMAT, seed)` gives it back to a verification (`verify --canary`). "
            "No hash of it is written: one would give it back to anyone who hashes the format's 10^5 secrets.", ""]
    return "\n".join(out)


def write_report(result: "SimResult", out_dir: Path) -> Path:
    """Write report.md, the plots and run.json into `out_dir` (created if missing); sets and returns result.report.

    Receipts are read back from the device, so a verification attached since the run shows in the table.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result.report = out_dir / "report.md"
    rows = receipt_rows(result, {r["id"]: r for r in receipts.read_all(result.config.device)})
    info = run_json(result, rows)
    atomic_write_bytes(out_dir / "accuracy.png", _plot_accuracy(result))
    atomic_write_bytes(out_dir / "ledger.png", _plot_ledger(result))
    atomic_write_bytes(out_dir / "run.json", (json.dumps(info, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    atomic_write_bytes(result.report, _markdown(result, rows, info).encode("utf-8"))
    return result.report
