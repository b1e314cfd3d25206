"""Library API: one function per CLI command, each taking a device directory.

Every function that writes holds the device lock, and first finishes any forget a crash interrupted
(`forget.recover`). Arguments are validated before the device is opened, so bad input changes nothing.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from . import forget as forgetting
from . import receipts
from .device import Device
from .engine import Engine, open_engine
from .errors import BadInput
from .localtime import parse_date
from .store import LogStore
from .timeline import Progress

FORMATS = ("onnx", "coreml")


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread: the model is tiny, extra threads only contend (10x slower on a busy
    2-core machine), and one thread gives the same floating-point results on every machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def session(root: Path, progress: Progress | None = None) -> Iterator[Engine]:
    """Open a device for writing: lock, store, engine; roll forward an interrupted forget."""
    dev = Device.open(root)
    with dev.locked(), LogStore(dev.store_path) as store, one_torch_thread():
        eng = open_engine(dev, store)
        forgetting.recover(eng, progress)
        yield eng


def parse_formats(spec: str | None) -> tuple[str, ...] | None:
    """'onnx,coreml' -> ('onnx', 'coreml'); None keeps the device's current formats."""
    if spec is None:
        return None
    fmts = tuple(dict.fromkeys(f.strip().lower() for f in spec.split(",") if f.strip()))
    bad = [f for f in fmts if f not in FORMATS]
    if not fmts or bad:
        raise BadInput(f"--format takes a comma-separated list of {', '.join(FORMATS)}; got {spec!r}")
    return fmts


def train(root: Path, until: str | None = None, progress: Progress | None = None,
          on_plan=None) -> dict:
    """Train every day not yet trained (up to `until`), run pending exact passes, re-export if anything changed."""
    until_day = parse_date(until).isoformat() if until is not None else None
    with session(root, progress) as eng:
        plan = eng.plan(until_day)
        if on_plan:
            on_plan(plan)
        before = eng.manifest().version
        eng.sync(until_day, progress)
        m = eng.manifest()
        export = eng.publish() if (m.version != before or not _has_export(eng)) else None
        return {"trained_days": plan.days, "rewound_to": None if plan.resume else (plan.rewind_to or "initial"),
                "version": m.version, "export_version": export}


def maintain(root: Path, progress: Progress | None = None) -> dict | None:
    """Run the exact passes that fast forgets left pending (the phone calls this while charging)."""
    with session(root, progress) as eng:
        return forgetting.maintain(eng, progress)


def export(root: Path, formats: str | None = None) -> dict:
    """Re-export the current model (atomically replacing the previous export)."""
    fmts = parse_formats(formats)
    with session(root) as eng:
        version = eng.publish(fmts)
        return {"export_version": version, "formats": list(fmts or eng.export_formats())}


def forget(root: Path, *, date: str | None = None, start: str | None = None, end: str | None = None,
           ids: list[str] | None = None, contains: str | None = None, mode: str = "auto",
           dry_run: bool = False, progress: Progress | None = None) -> dict:
    """Forget what the selector names (see forget.py); with `dry_run`, only the plan."""
    sel = forgetting.Selector.parse(date_=date, start=start, end=end, ids=ids, contains=contains)
    if mode not in forgetting.MODES:
        raise BadInput(f"--mode must be one of {', '.join(forgetting.MODES)}, got {mode!r}")
    if dry_run:
        dev = Device.open(root)
        with LogStore(dev.store_path, readonly=True) as store:
            plan = forgetting.make_plan(open_engine(dev, store), sel, mode)
            shown = ({"matched": [{"id": u.id, "day": u.local_date, "text": u.text} for u in sel.match(store)]}
                     if sel.kind in ("contains", "utterance") else {})  # what a phrase or ids matched, before it goes
            return {"dry_run": True, **plan.summary(), **shown}
    with session(root, progress) as eng:
        return forgetting.forget(eng, sel, mode, progress)


def history(root: Path) -> list[dict]:
    """Every receipt of the device, oldest first."""
    return receipts.read_all(Device.open(root).root)


def _has_export(eng: Engine) -> bool:
    return eng.current_export() is not None


def status(root: Path) -> dict:
    """The device's status (see status.py); reads only."""
    from .status import device_status

    return device_status(root)


def retain(root: Path, keep_days: int, today: str, mode: str = "auto",
           progress: Progress | None = None) -> dict | None:
    """Retention policy: forget every day more than `keep_days` days before `today`; its receipt, or None.

    `today` is the device's local date (YYYY-MM-DD); the `keep_days` days up to it are kept. The receipt
    is the forget's, marked with the policy that asked for it ({"trigger": "retention", "keep_days": N}).
    """
    from datetime import timedelta

    if isinstance(keep_days, bool) or not isinstance(keep_days, int) or keep_days < 1:
        raise BadInput(f"keep_days must be an integer >= 1 (the number of recent days to keep), got {keep_days!r}")
    if mode not in forgetting.MODES:
        raise BadInput(f"--mode must be one of {', '.join(forgetting.MODES)}, got {mode!r}")
    cutoff = (parse_date(today) - timedelta(days=keep_days)).isoformat()
    with session(root, progress) as eng:
        old = [d for d in eng.store.day_counts() if d <= cutoff]
        if not old:
            return None
        receipt = forgetting.forget(eng, forgetting.Selector("range", old[0], old[-1]), mode, progress)
        policy = {"trigger": "retention", "keep_days": keep_days}
        receipts.append(eng.dev.root, {"id": receipt["id"], **policy})
        return {**receipt, **policy}


def verify(root: Path, date: str | None = None, *, weights: str = "onnx", unseen: Path | None = None,
           canary: str | None = None, lira: int = 0, report: Path | None = None,
           progress: Progress | None = None) -> dict:
    """Verify a forget and write a report (see verify.py): a what-if for a day not yet forgotten, else an
    audit of the receipt that covers `date` (the latest forget without a date). Returns the summary plus
    "report", the report's path. The device changes only by the audit's receipt line."""
    from . import verify as verifying
    from .verify_report import report_dir, write_report

    cfg = verifying.VerifyConfig(weights=weights, lira_pairs=lira)
    day = parse_date(date).isoformat() if date is not None else None
    out = report_dir(Device.open(root).root, report)
    held = verifying.read_labeled(unseen) if unseen is not None else None
    ver = verifying.run(root, day, cfg, unseen=held, canary=canary, progress=progress)
    return {**ver.summary, "report": str(write_report(ver, out))}
