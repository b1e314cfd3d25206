"""`assistant-forget fleet audit`: verify every forget of every device of a fleet that `device_sim fleet` wrote,
one pure task per device through an executor (serial, a process pool, a local Ray instance or a cluster).

    assistant-forget fleet audit --fleet fleet                          # a local process pool
    assistant-forget fleet audit --fleet fleet --ray --workers 8        # a local Ray instance
    assistant-forget fleet audit --fleet /shared/fleet --ray-address head:6379 --attacks all

A device's forgotten texts are gone from it by design, so a device alone cannot say what it forgot. The fleet
can: a simulated device's whole life follows from its row of fleet.json (the persona's seed and habits). The
audit regenerates the persona's records and replays its log without training (`expected_log`, reusing the
simulator's own schedule and request choice), so it knows, in memory only, which utterances each forget
removed. For every forget receipt of the device it then checks:

- **the receipt**: its days and counts are those of the forget the user asked for;
- **the verification**: `api.verify` audits the receipt (the current model against a freshly computed oracle:
  version equality once exact, accuracy and KL; the attacks `--attacks` asks for where their inputs exist;
  the planted canary's exposure when the receipt covers the canary's day). The attacks that need the
  forgotten utterances are listed as skipped: an audit runs after they are gone;
- **the bytes**: no file of the device, nor of the audit's own verification reports, holds any forgotten
  text (raw bytes, as typed, lowercased and casefolded). A text that is also said on a day the device still
  keeps is not a forgotten text, and is not scanned for;
- and once per device, that the device's log holds exactly the utterances the replay expects.

The fleet audit report, OUT/audit.json and OUT/audit.png (OUT defaults to FLEET/audit), aggregates the
verdicts. Like the fleet report it holds dates, counts, receipt ids, verdict names and timings only: no text,
no request (a contact forget names a person). A device that fails (a corrupt file, a missing directory) is
reported with its error, and the audit carries on with the other devices.

The audit writes to a device only what `api.verify` writes: the audit's summary appended to the receipt. A
task killed midway and retried (Ray's task retries) appends it again; the verdicts do not change.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from assistant_forget.core.errors import BadInput, ForgetError

FORMAT = 1  # version of audit.json's layout
AUDIT_DIR = "audit"  # default OUT inside the fleet directory
TIMED = ("seconds",)  # the keys of a device's and a forget's row that differ between runs (wall times)


@dataclass(frozen=True)
class AuditSpec:
    """One device of the fleet to audit: everything its task reads (picklable)."""

    index: int
    device: str  # its directory's name under FLEET/devices
    root: str  # the device directory
    reports: str  # where this device's verification reports go (outside the device)
    seed: int
    days: int
    start: str
    mean: float
    forget_every: int
    retention: int
    attacks: str | None  # --attacks, as api.verify takes it (None: its default)
    forgets: int = 0  # the forgets its fleet run made (fleet.json): a scheduling hint only (`audit_cost`)

    def __repr__(self) -> str:  # an executor names a failing item
        return f"AuditSpec(index={self.index}, device={self.device})"


def audit_specs(fleet: Path, out: Path, attacks: str | None = None) -> list[AuditSpec]:
    """The devices of the fleet directory `fleet` (from its fleet.json), to audit into `out`; BadInput if
    `fleet` is not a fleet directory or `attacks` is not a list of verify's attacks."""
    from assistant_forget.verify.verification import parse_attacks

    parse_attacks(attacks)  # refuse a bad list before anything runs
    path = Path(fleet) / "fleet.json"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        rows = report["rows"]
        specs = [AuditSpec(int(r["index"]), str(r["device"]), str(Path(fleet) / "devices" / r["device"]),
                           str(Path(out) / "reports" / r["device"]), int(r["seed"]), int(r["days"]), str(r["start"]),
                           float(r["mean"]), int(r["forget_every"]), int(r["retention"]), attacks,
                           len(r.get("forgets") or ())) for r in rows]
    except FileNotFoundError:
        raise BadInput(f"{fleet} is not a fleet directory (no fleet.json): give the --out of "
                       "`python -m device_sim fleet`") from None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise BadInput(f"{path} cannot be read as a fleet report ({type(e).__name__}); "
                       "it is written by `python -m device_sim fleet`") from None
    if not specs or any("/" in s.device or s.device in ("", ".", "..") for s in specs):
        raise BadInput(f"{path} lists no devices, or a device name that is not a directory name")
    return specs


def audit_cost(spec: AuditSpec) -> float:
    """The expected work of auditing one device, to submit the longest first: each forget it made is verified
    against an oracle that trains on the device's utterances (≈ days × mean), and the replay reads them too."""
    return (1 + spec.forgets) * spec.days * spec.mean


# -- what each device should have forgotten ----------------------------------------------------------

@dataclass(frozen=True)
class ExpectedForget:
    """A forget the simulated user (or its retention policy) asked for, as the replay computes it (memory only)."""

    kind: str  # "date", "range", "contact" or "retention"
    days: dict  # local day -> utterances it removed (what its receipt must say)
    texts: frozenset  # the texts it removed (memory only: never written)


def _run_config(spec: AuditSpec):
    from .simulate import RunConfig

    root = Path(spec.root)
    return RunConfig(device=root, days=spec.days, seed=spec.seed, start=date.fromisoformat(spec.start),
                     mean=spec.mean, retention=spec.retention, forget_every=spec.forget_every,
                     report=root.parent / f"{root.name}-report")


def expected_log(spec: AuditSpec) -> tuple[list[ExpectedForget], dict[str, tuple[str, str]]]:
    """Replay the device's life without training: (the forgets in the order they ran, the utterances its log
    keeps at the end as {id: (local day, text)}).

    It regenerates the persona's records from the seed exactly as `simulate.simulate` does, logs each day's,
    and applies the requests `simulate.choose_request` picks and the retention policy's cut, with the store's
    own matching rule (`utterance.match_key`). Its counts are the receipts' counts when the device did what
    it was asked."""
    from assistant_forget.device.importer import validate_lines
    from assistant_forget.device.utterance import match_key

    from .generator import generate_days
    from .persona import make_persona
    from .simulate import choose_request, plant_canary, request_schedule

    cfg = _run_config(spec)
    persona, canary = make_persona(cfg.seed), plant_canary(cfg)
    records = generate_days(persona, cfg.start, cfg.days, cfg.seed, mean_per_day=cfg.mean, canaries=[canary])
    by_day: dict[str, list[dict]] = {}
    for r in records:
        by_day.setdefault(r["timestamp"][:10], []).append(r)
    canary_day = (cfg.start + timedelta(days=canary.day_index(cfg.start, cfg.days))).isoformat()
    schedule = request_schedule(cfg.days, cfg.forget_every)
    log: dict[str, tuple[str, str]] = {}  # id -> (local day, text), the device's log as it should be
    forgets: list[ExpectedForget] = []

    def remove(kind: str, keep) -> None:
        gone = {i: v for i, v in log.items() if not keep(*v)}
        for i in gone:
            del log[i]
        forgets.append(ExpectedForget(kind, dict(sorted(Counter(d for d, _ in gone.values()).items())),
                                      frozenset(t for _, t in gone.values())))

    for k in range(cfg.days):
        today = (cfg.start + timedelta(days=k)).isoformat()
        spoken = by_day.get(today, [])
        if spoken:
            log.update({u.id: (u.local_date, u.text) for u in validate_lines(json.dumps(r) for r in spoken)})
        if k in schedule:
            counts = dict(sorted(Counter(d for d, _ in log.values()).items()))
            picked = choose_request(schedule[k], k, cfg, persona, counts,
                                    lambda name: sum(match_key(name) in match_key(t) for _, t in log.values()),
                                    canary_day)
            if picked is not None:
                kind, req = picked
                if kind == "date":
                    remove(kind, lambda d, t, day=req["date"]: d != day)
                elif kind == "range":
                    remove(kind, lambda d, t, a=req["start"], b=req["end"]: not a <= d <= b)
                else:
                    remove(kind, lambda d, t, key=match_key(req["contains"]): key not in match_key(t))
        if cfg.retention:
            cutoff = (date.fromisoformat(today) - timedelta(days=cfg.retention)).isoformat()
            old = sorted({d for d, _ in log.values() if d <= cutoff})
            if old:
                remove("retention", lambda d, t, a=old[0], b=old[-1]: not a <= d <= b)
    return forgets, log


def forgotten_only(texts: frozenset, kept: set[str]) -> set[str]:
    """The texts of `texts` to scan for: those no kept text contains (casefolded), since a text also said on
    a kept day is rightly still on the device.

    >>> sorted(forgotten_only(frozenset({"Set a timer", "call dr lee", "pin 4 8"}), {"set a timer for tea"}))
    ['call dr lee', 'pin 4 8']
    """
    folded = [k.casefold() for k in kept]
    return {t for t in texts if not any(t.casefold() in k for k in folded)}


def files_holding(root: Path, texts: set[str]) -> dict[str, list[str]]:
    """text -> the files under `root` (relative paths) whose raw bytes hold it as UTF-8, lowercased or
    casefolded: what an attacker holding the files would find."""
    root = Path(root)
    forms = {t: {f.encode("utf-8") for f in (t, t.lower(), t.casefold())} for t in texts}
    hits: dict[str, list[str]] = {}
    if not root.is_dir():
        return hits
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        data = path.read_bytes()
        for text, needles in forms.items():
            if any(n in data for n in needles):
                hits.setdefault(text, []).append(str(path.relative_to(root)))
    return hits


# -- the task ---------------------------------------------------------------------------------------

def _verification(summary: dict) -> dict:
    """The text-free verdict of an api.verify summary: what the fleet report keeps of it."""
    rows = summary.get("verdict") or {}
    expo = summary.get("exposure")
    version = summary.get("version") or {}
    return {"passed": bool(summary.get("passed")), "state": summary.get("state"),
            "version_equal": version.get("equal"),
            "failed_rows": sorted(n for n, r in rows.items() if isinstance(r, dict) and not r.get("passed")),
            "rows": sorted(rows),
            "attacks_skipped": sorted((summary.get("attacks") or {}).get("skipped") or {}),
            "exposure": None if not isinstance(expo, dict) else {"bucket": expo.get("bucket"),
                                                                  "passed": expo.get("passed")}}


def receipt_matches(receipt: dict, expected: ExpectedForget | None) -> bool:
    """The receipt says what the request removed: the same days, the same count on each, the same total.

    >>> e = ExpectedForget("date", {"2026-01-02": 3}, frozenset())
    >>> receipt_matches({"days": {"2026-01-02": 3}, "utterances": 3}, e), receipt_matches({"days": {}}, e)
    (True, False)
    """
    return (expected is not None and dict(receipt.get("days") or {}) == expected.days
            and receipt.get("utterances") == sum(expected.days.values()))


def forget_passed(f: dict) -> bool:
    """One forget's row passes: its receipt is the request's, no forgotten text is on disk, and its
    verification (where it could run alone) passed."""
    verified = not f["audited_day"] or (f["error"] is None and bool((f["verification"] or {}).get("passed")))
    return f["receipt_matches"] and not f["texts_found"] and verified


def _error(e: BaseException) -> str:
    """A failure as the report shows it: a ForgetError's message (it names what to fix); of anything else
    only its type (its message could quote data)."""
    return f"{type(e).__name__}: {e}" if isinstance(e, ForgetError) else type(e).__name__


def audit_device(spec: AuditSpec) -> dict:
    """Audit every forget of one device (the task of the fleet audit's map); its row. A failure of the whole
    device becomes the row's "error", a failure of one forget's verification that forget's "error"."""
    from assistant_forget import api
    from assistant_forget.device.device import Device
    from assistant_forget.device.receipts import read_all
    from assistant_forget.device.store import LogStore

    from .simulate import plant_canary

    t0 = time.perf_counter()
    row = {"index": spec.index, "device": spec.device, "error": None}
    try:
        root = Device.open(Path(spec.root)).root
        expected, kept = expected_log(spec)
        receipts = [r for r in read_all(root) if r.get("type") == "forget"]
        with LogStore(Device.open(root).store_path, readonly=True) as store:
            stored = {u.id: (u.local_date, u.text) for u in store.all()}
        cfg = _run_config(spec)
        canary = plant_canary(cfg)
        canary_day = (cfg.start + timedelta(days=canary.day_index(cfg.start, cfg.days))).isoformat()
        kept_texts = {t for _, t in kept.values()}
        forgets, scans = [], []
        for n, rec in enumerate(receipts):
            exp = expected[n] if n < len(expected) else None
            days = dict(rec.get("days") or {})
            later = {d for r in receipts[n + 1:] for d in (r.get("days") or {})}
            own = [d for d in sorted(days) if d not in later]
            f = {"receipt": rec["id"], "kind": exp.kind if exp else None, "tier": rec.get("tier"),
                 "days": len(days), "utterances": rec.get("utterances"),
                 "receipt_matches": receipt_matches(rec, exp),
                 "audited_day": own[0] if own else None, "error": None, "verification": None}
            if own:
                report = Path(spec.reports) / f"{n:03d}-{rec['id'][:8]}"
                use_canary = canary_day in days and exp is not None and canary.text in exp.texts
                t = time.perf_counter()
                try:
                    res = api.verify(root, own[0], attacks=spec.attacks, workers=1, report=report,
                                     canary=canary.text if use_canary else None)
                    f["verification"] = _verification(res)
                    f["seconds"] = {"verify": round(time.perf_counter() - t, 3),
                                    **{k: v for k, v in (res.get("seconds") or {}).items() if k in ("oracle", "exposure")}}
                except ForgetError as e:
                    f["error"] = _error(e)
            else:  # every day it covers was covered again by a later forget: audited through that one
                f["not_audited"] = "a later forget covers all its days: audited through that one"
            texts = forgotten_only(exp.texts, kept_texts) if exp else set()
            f["texts_checked"] = len(texts)
            forgets.append(f)
            scans.append(texts)
        if len(expected) != len(receipts):
            row["error"] = (f"the device has {len(receipts)} forget receipts, its user asked for {len(expected)} "
                            "forgets")
        hits = files_holding(root, set().union(*scans)) if scans else {}
        report_hits = files_holding(Path(spec.reports), set().union(*scans)) if scans else {}
        for f, texts in zip(forgets, scans):
            f["texts_found"] = sum(t in hits or t in report_hits for t in texts)
            f["files_with_text"] = sorted({p for t in texts for p in hits.get(t, [])}
                                          | {f"reports/{p}" for t in texts for p in report_hits.get(t, [])})
        row.update({"forgets": forgets, "log_matches": stored == kept, "utterances": len(stored)})
        row["passed"] = row["error"] is None and stored == kept and all(map(forget_passed, forgets))
    except ForgetError as e:
        row.update({"error": _error(e), "passed": False})
    except Exception as e:  # noqa: BLE001  a failing device is reported, not fatal to the audit
        row.update({"error": _error(e), "passed": False})
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return row


# -- the fleet's report ------------------------------------------------------------------------------

def verdicts(row: dict) -> dict:
    """A device's row without its wall times: what must be identical on every executor and every run."""
    out = {k: v for k, v in row.items() if k not in TIMED and k != "node"}
    if out.get("forgets"):
        out["forgets"] = [{k: v for k, v in f.items() if k not in TIMED} for f in out["forgets"]]
    return out


def _dist(xs: list[float]) -> dict | None:
    from .fleet import _dist as dist

    return dist(xs)


def aggregate(rows: list[dict]) -> dict:
    """The fleet audit's totals over its device rows (pure)."""
    ok = [r for r in rows if not r["error"]]
    forgets = [f for r in rows for f in r.get("forgets") or []]
    audited = [f for f in forgets if f["verification"]]
    by_tier: dict[str, dict[str, int]] = {}
    for f in forgets:
        word = "error" if f["error"] else (
            "not audited" if not f["verification"] else "pass" if f["verification"]["passed"] else "fail")
        t = by_tier.setdefault(str(f["tier"]), {})
        t[word] = t.get(word, 0) + 1
    failed_rows = Counter(n for f in audited for n in f["verification"]["failed_rows"])
    skipped = Counter(a for f in audited for a in f["verification"]["attacks_skipped"])
    exposure = Counter(str(f["verification"]["exposure"]["bucket"]) for f in audited if f["verification"]["exposure"])
    return {"devices": len(rows), "devices_passed": sum(bool(r.get("passed")) for r in rows),
            "failed": [{"device": r["device"], "error": r["error"]} for r in rows if r["error"]],
            "forgets": len(forgets), "audited": len(audited),
            "verdicts_by_tier": {t: dict(sorted(v.items())) for t, v in sorted(by_tier.items())},
            "failed_rows": dict(sorted(failed_rows.items())), "attacks_skipped": dict(sorted(skipped.items())),
            "exposure_buckets": dict(sorted(exposure.items())),
            "receipts_mismatched": sum(not f["receipt_matches"] for f in forgets),
            "logs_mismatched": sum(r.get("log_matches") is False for r in ok),
            "texts_checked": sum(f.get("texts_checked", 0) for f in forgets),
            "texts_found": sum(f.get("texts_found", 0) for f in forgets),
            "device_seconds": _dist([r["seconds"] for r in rows]),
            "verify_seconds": _dist([f["seconds"]["verify"] for f in audited if "seconds" in f]),
            "oracle_seconds": _dist([f["seconds"]["oracle"] for f in audited if "oracle" in f.get("seconds", {})])}


def plot(rows: list[dict]) -> bytes:
    """audit.png: verdicts per tier, failed verdict rows, audit time per device."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = aggregate(rows)
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    tiers = list(s["verdicts_by_tier"])
    words = ("pass", "fail", "error", "not audited")
    colors = ("tab:green", "tab:red", "tab:orange", "tab:gray")
    bottom = [0] * len(tiers)
    for w, c in zip(words, colors):
        v = [s["verdicts_by_tier"][t].get(w, 0) for t in tiers]
        ax[0].bar(tiers, v, bottom=bottom, color=c, label=w)
        bottom = [b + x for b, x in zip(bottom, v)]
    ax[0].set(title="forgets audited per tier", ylabel="forgets")
    ax[0].legend(fontsize=7)
    names = ["receipt mismatch", "text found", "log mismatch"] + list(s["failed_rows"])
    values = [s["receipts_mismatched"], s["texts_found"], s["logs_mismatched"]] + list(s["failed_rows"].values())
    ax[1].barh(names, values, color="tab:red")
    ax[1].set(title="findings", xlabel="count")
    ax[2].hist([r["seconds"] for r in rows], bins=20, color="tab:blue")
    ax[2].set(title="audit time per device", xlabel="s", ylabel="devices")
    fig.suptitle(f"{s['devices']} devices, {s['devices_passed']} passed, {len(s['failed'])} failed; "
                 f"{s['audited']} of {s['forgets']} forgets verified")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def run_audit(out: Path, specs: list[AuditSpec], executor, task=None) -> dict:
    """Audit every device of `specs` through `executor`; write OUT/audit.json and OUT/audit.png; the report.
    With a Ray executor each row names the node its device was audited on. `task`: the per-device task,
    `audit_device` (default) or a picklable wrapper of it (a fault-injection test kills a worker in one)."""
    task = audit_device if task is None else task
    from assistant_forget.core.executor import map_rows
    from assistant_forget.core.fsio import atomic_write_bytes

    t = time.perf_counter()
    rows = map_rows(executor, task, specs, cost=audit_cost)
    wall = time.perf_counter() - t
    name = repr(executor) if type(executor).__repr__ is not object.__repr__ else type(executor).__name__
    report = {"format": FORMAT, "executor": name, "wall_s": round(wall, 2), "attacks": specs[0].attacks if specs else None,
              "summary": aggregate(rows), "rows": rows}
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(out) / "audit.json", (json.dumps(report, indent=1) + "\n").encode())
    atomic_write_bytes(Path(out) / "audit.png", plot(rows))
    return report


def format_report(report: dict) -> str:
    """A few lines for the terminal."""
    s = report["summary"]
    lines = [f"{s['devices']} devices audited in {report['wall_s']} s ({report['executor']}): "
             f"{s['devices_passed']} passed, {len(s['failed'])} failed",
             f"forgets: {s['forgets']}, verified {s['audited']}; by tier: {s['verdicts_by_tier'] or 'none'}",
             f"receipts not matching the request: {s['receipts_mismatched']}; logs not as expected: "
             f"{s['logs_mismatched']}; forgotten texts found on disk: {s['texts_found']} of {s['texts_checked']}"]
    if s["failed_rows"]:
        lines.append(f"failed verdict rows: {s['failed_rows']}")
    if s["attacks_skipped"]:
        lines.append(f"attacks skipped (their inputs are gone after a forget): {', '.join(s['attacks_skipped'])}")
    for f in s["failed"]:
        lines.append(f"FAILED {f['device']}: {f['error']}")
    return "\n".join(lines)


# -- the command ---------------------------------------------------------------------------------------

def _configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="fleet_command", required=True, metavar="COMMAND")
    a = sub.add_parser("audit", help="verify every forget of every device of a `device_sim fleet` directory",
                       description="verify every forget of every device of a `device_sim fleet` directory: "
                                   "receipts audited, byte scans for the forgotten texts, attacks; a fleet report")
    a.add_argument("--fleet", type=Path, required=True, help="the fleet directory (python -m device_sim fleet --out)")
    a.add_argument("--out", type=Path, default=None,
                   help=f"where audit.json, audit.png and the verification reports go (default FLEET/{AUDIT_DIR})")
    a.add_argument("--attacks", default=None, metavar="LIST",
                   help="attacks each verification runs, as for `verify --attacks` (default: verify's)")
    a.add_argument("--workers", type=int, default=None, help="processes, or a local Ray's CPUs (default: all)")
    a.add_argument("--ray", action="store_true", help="audit the devices on a local Ray instance")
    a.add_argument("--ray-address", default=None, metavar="ADDR", help="audit them on the Ray cluster at ADDR")
    a.add_argument("--json", action="store_true", help="print the report's summary as one JSON object")


def _run(args: argparse.Namespace) -> int:
    from assistant_forget.core.ray_executor import make_executor

    out = args.out if args.out is not None else args.fleet / AUDIT_DIR
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInput(f"{out} already exists and is not empty; choose another --out")
    specs = audit_specs(args.fleet.resolve(), out.resolve(), args.attacks)
    with make_executor(ray=args.ray, address=args.ray_address, workers=args.workers) as ex:
        if hasattr(ex, "start"):  # a Ray executor: connect (or say what is missing) before writing anything
            ex.start()
        report = run_audit(out, specs, ex)
    print(json.dumps(report["summary"], sort_keys=True) if args.json else format_report(report))
    print(f"report: {out / 'audit.json'}")
    return 0 if all(r.get("passed") for r in report["rows"]) else 1


FLEET = ("fleet", "fleet tools for a `device_sim fleet` directory: `fleet audit` verifies every forget of every "
         "device", _configure, _run)
