"""What the dashboard's pages show, from the library's read-only calls (status, history, the log read-only).

Nothing here writes to the device (not even its lock file) or loads the model. The per-day figures the API does not give (a day's
counts by intent, its utterances) are read from the log store opened read-only, as `status` does.
"""

from __future__ import annotations

import calendar
import statistics
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

from .. import api
from ..core.errors import BadInput, DeviceBusy, ForgetError
from ..device.device import Device
from ..device.localtime import parse_date, zone
from ..device.store import LogStore

STATES = {  # state of a calendar day -> what the page says about it
    "trained": "trained into the model",
    "untrained": "logged, not trained yet",
    "forgotten": "forgotten",
    "pending": "forgotten (approximate: exact pass pending)",
}
LEVELS = 4  # heat-map shades of a day with utterances


def busy(root: Path) -> bool:
    """Whether another process (or a job of this dashboard) holds the device's writer lock right now.

    Without a lock file nobody holds it, and none is created here: looking writes nothing."""
    dev = Device.open(root)
    if not dev.lock_path.exists():
        return False
    try:
        with dev.locked(wait=False):
            return False
    except DeviceBusy:
        return True
    except ForgetError:  # the lock file cannot be opened (a read-only device): nobody writes there either
        return False


def receipts_by_day(history: list[dict]) -> dict[str, dict]:
    """Local day -> the latest receipt that removed utterances of that day (a forget or a re-forget)."""
    out: dict[str, dict] = {}
    for r in history:
        if r.get("type") in ("forget", "reforget"):
            for d in r.get("days") or {}:
                out[d] = r
    return out


def day_states(st: dict, history: list[dict]) -> dict[str, dict]:
    """Every logged or forgotten day -> {count, state, receipt, forgotten}: what its calendar cell shows."""
    by_day = receipts_by_day(history)
    untrained = set(st["untrained_days"])
    pending_from = st["pending_exact_from"] if st["state"] == "approximate" else None
    days = sorted(set(st["days"]) | set(st["forgotten_days"]) | set(by_day))
    out = {}
    for d in days:
        rec = by_day.get(d)
        if d in st["forgotten_days"] or (rec is not None and d not in st["days"]):
            state = "pending" if pending_from is not None and d >= pending_from else "forgotten"
        else:
            state = "untrained" if d in untrained else "trained"
        out[d] = {"day": d, "count": st["days"].get(d, 0), "state": state,
                  "receipt": rec["id"] if rec and state in ("forgotten", "pending") else None,
                  "forgotten": (rec.get("days") or {}).get(d) if rec and state in ("forgotten", "pending") else None}
    return out


def level(count: int, top: int) -> int:
    """Heat-map shade 0..LEVELS of a day with `count` utterances when the busiest day has `top`.

    >>> [level(n, 40) for n in (0, 1, 10, 11, 40)]
    [0, 1, 1, 2, 4]
    """
    if count <= 0 or top <= 0:
        return 0
    return max(1, min(LEVELS, -(-count * LEVELS // top)))


def year_grid(states: dict[str, dict]) -> list[dict]:
    """One year view per calendar year with a logged day: weeks (columns, Monday first) of cells, month labels."""
    if not states:
        return []
    top = max(s["count"] for s in states.values())
    years = range(parse_date(min(states)).year, parse_date(max(states)).year + 1)
    out = []
    for year in years:
        first = date(year, 1, 1)
        cells: list[dict | None] = [None] * first.weekday()
        d = first
        while d.year == year:
            s = states.get(d.isoformat())
            cells.append({"day": d.isoformat(), "logged": s is not None, "count": s["count"] if s else 0,
                          "state": s["state"] if s else None, "level": level(s["count"], top) if s else 0,
                          "receipt": s["receipt"] if s else None, "forgotten": s["forgotten"] if s else None,
                          "label": label(d.isoformat(), s)})
            d += timedelta(days=1)
        cells += [None] * (-len(cells) % 7)
        weeks = [cells[i:i + 7] for i in range(0, len(cells), 7)]
        months = []
        for week in weeks:
            firsts = [c for c in week if c and c["day"].endswith("-01")]
            months.append(calendar.month_abbr[int(firsts[0]["day"][5:7])] if firsts else "")
        out.append({"year": year, "weeks": weeks, "months": months,
                    "logged": sum(1 for s in states if s.startswith(f"{year}-"))})
    return out


def label(day: str, s: dict | None) -> str:
    """The text a calendar cell says (its tooltip and accessible name)."""
    if s is None:
        return f"{day}: nothing logged"
    parts = [f"{day}: {s['count']} utterance{'' if s['count'] == 1 else 's'}", STATES[s["state"]]]
    if s["receipt"]:
        parts.append(f"{s['forgotten']} forgotten by receipt {s['receipt'][:8]}")
    return ", ".join(parts)


def overview(root: Path) -> dict:
    """Everything the main page shows: status, the calendar, receipts (newest first), busy or not."""
    st = api.status(root)
    history = api.history(root)
    states = day_states(st, history)
    return {"status": st, "years": year_grid(states), "states": states, "receipts": list(reversed(history)),
            "verifiable": {r["id"]: audit_day(r, history) for r in history if r.get("type") == "forget"},
            "busy": busy(root), "legend": STATES}


def day_detail(root: Path, day: str) -> dict:
    """A day's counts by intent and its state; never its texts (those only on an explicit request)."""
    day = parse_date(day).isoformat()
    st = api.status(root)
    states = day_states(st, api.history(root))
    with LogStore(Device.open(root).store_path, readonly=True) as store:
        rows = store.by_day(day)
    intents = Counter(u.intent for u in rows).most_common()
    s = states.get(day) or {"day": day, "count": 0, "state": None, "receipt": None, "forgotten": None}
    left = f"{len(rows)} utterance{'' if len(rows) == 1 else 's'}{' left' if s['receipt'] else ''}"
    return {**s, "count": len(rows), "intents": [{"intent": i, "count": n} for i, n in intents],
            "label": label(day, states.get(day)),
            "summary": f"{left}, {STATES[s['state']]}" if s["state"] else f"{left}: nothing logged"}


def day_utterances(root: Path, day: str) -> list[dict]:
    """A day's utterances: id, intent, UTC instant, zone, local time and text (shown only when the user asks)."""
    day = parse_date(day).isoformat()
    with LogStore(Device.open(root).store_path, readonly=True) as store:
        return [{"id": u.id, "intent": u.intent, "utc": u.utc, "tz": u.tz, "local": local_time(u.utc, u.tz),
                 "text": u.text} for u in store.by_day(day)]


def local_time(utc: str, tz: str) -> str:
    """The wall-clock time the user saw when speaking (the day's own clock, DESIGN invariant 4).

    >>> local_time("2026-03-04T04:30:00Z", "America/New_York")
    '23:30'
    """
    return datetime.fromisoformat(utc).astimezone(zone(tz)).strftime("%H:%M")


def stored_verification(root: Path, receipt_id: str) -> dict:
    """The latest verification stored in a forget receipt (an audit, else the one made at forget time)."""
    r = next((r for r in api.history(root) if r["id"] == receipt_id), None)
    if r is None:
        raise BadInput(f"no receipt {receipt_id!r} on this device")
    v = r.get("verification") if isinstance(r.get("verification"), dict) else {}
    found = (v.get("audits") or [None])[-1] or v.get("at_forget")
    if not found:
        raise BadInput("this forget has not been verified yet; press Verify")
    return {**found, "receipt": r["id"], "stored": True}


def selector(body: dict) -> dict:
    """The keyword arguments of `api.forget` from a request body {kind, date | from, to | contains | ids, mode}."""
    if not isinstance(body, dict):
        raise BadInput("the request must be a JSON object")
    kind = body.get("kind")
    text = lambda k: body.get(k) if isinstance(body.get(k), str) else None  # noqa: E731
    mode = text("mode") or "auto"
    if kind == "day":
        if not text("date"):
            raise BadInput("choose a day: click one on the calendar or type its date")
        return {"date": text("date"), "mode": mode}
    if kind == "range":
        if not text("from") or not text("to"):
            raise BadInput("choose both ends of the range: click two days on the calendar or type their dates")
        return {"start": text("from"), "end": text("to"), "mode": mode}
    if kind == "contains":
        if not (text("contains") or "").strip():
            raise BadInput("type the phrase to forget (every utterance that mentions it goes)")
        return {"contains": text("contains"), "mode": mode}
    if kind == "ids":
        ids = body.get("ids")
        if isinstance(ids, str):
            ids = [i.strip() for i in ids.replace(",", " ").split()]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or not ids:
            raise BadInput("give one or more utterance ids (tick them in a day's utterance list)")
        return {"ids": ids, "mode": mode}
    raise BadInput("choose what to forget: a day, a range, a phrase or utterances")


def expected_seconds(plan: dict, history: list[dict]) -> dict:
    """A time estimate for a planned forget from this device's earlier forgets with the same method."""
    past = [r["timings_s"]["total"] for r in history
            if r.get("type") == "forget" and r.get("method") == plan.get("method")
            and isinstance((r.get("timings_s") or {}).get("total"), (int, float))]
    if not past:
        return {"seconds": None, "basis": f"no earlier {plan.get('method')} forget on this device to go by"}
    return {"seconds": round(statistics.median(past), 2),
            "basis": f"median of {len(past)} earlier {plan.get('method')} forget(s) on this device"}


def audit_day(receipt: dict, history: list[dict]) -> str | None:
    """The day `api.verify` audits this forget receipt by: one of its days that no later forget covers.

    `verify --date D` audits the latest forget covering D, so a receipt is verifiable through a day that is
    its own; None when every day of it was forgotten again later (or it names none)."""
    later = set()
    for r in reversed(history):
        if r["id"] == receipt["id"]:
            break
        if r.get("type") == "forget":
            later |= set(r.get("days") or {})
    own = sorted(set(receipt.get("days") or {}) - later)
    return own[0] if own else None
