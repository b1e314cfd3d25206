"""Library API: one function per CLI command, each taking a device directory.

Every function that writes holds the device lock, and first finishes any forget a crash interrupted
(`forget.recover`). Arguments are validated before the device is opened, so bad input changes nothing.

The model's modules (torch and the rest) are imported by the functions that need them, so that `history`,
`status` and every `--help` start without them.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from .core.errors import BadInput, CorruptFile
from .device import receipts
from .device.device import Device
from .device.localtime import parse_date
from .device.store import LogStore
from .export.publish import FORMATS
from .runner.selector import Selector

LM_FAMILY = "hf-causal-lm"  # families/hf_lm: a device that records it opens with it

if TYPE_CHECKING:
    from .core.timeline import Progress
    from .runner.engine import Engine



@contextmanager
def session(root: Path, progress: Progress | None = None, family=None) -> Iterator[Engine]:
    """Open a device for writing: lock, store, engine (the assistant's, or `family`'s: by default the family
    the device records, `device_family`); a forget a crash interrupted is finished first (runner/session.py)."""
    from .runner.session import session as open_session

    with open_session(root, progress, family if family is not None else device_family(root)) as eng:
        yield eng


def device_family(root: Path):
    """The model family the device `root` records (device/family_record.py): None for the assistant's, else
    the family, loaded (CorruptFile, exit 4, for a missing or changed model directory or a damaged record)."""
    from .device.family_record import ASSISTANT, FAMILY_FILE, read_family

    dev = Device.open(root)
    name, settings = read_family(dev.root)
    if name == ASSISTANT:
        return None
    if name == LM_FAMILY:
        from .families.hf_lm.record import family_from, parse

        return family_from(parse(settings, dev.root / FAMILY_FILE))
    raise CorruptFile(f"{dev.root / FAMILY_FILE}: family {name!r} is not one this version opens "
                      f"({ASSISTANT}, {LM_FAMILY})")


def init(root: Path, seed: int | None = None, family: str | None = None, base_model: Path | None = None,
         lora: dict | None = None, train: dict | None = None) -> dict:
    """Create an empty device directory with `seed`; with `family="hf-causal-lm"`, one that records that family
    (`base_model`: a local Hugging Face model directory, default models/lm-tiny; `lora` / `train`: LoraSettings /
    LMTrainConfig fields), every command then opening it with it. Everything is checked first (BadInput, exit 2;
    a missing or damaged model directory is a CorruptFile, exit 4): nothing is created unless all is valid."""
    from .device.device import DEFAULT_SEED
    from .device.device import valid_seed

    seed = DEFAULT_SEED if seed is None else seed
    if family in (None, "assistant"):
        if base_model is not None or lora or train:
            raise BadInput("--base-model and the LoRA options are for --family hf-causal-lm")
        dev = Device.create(root, seed)
        return {"device": str(dev.root), "seed": dev.seed, "family": "assistant"}
    if family != LM_FAMILY:
        raise BadInput(f"--family must be assistant or {LM_FAMILY}, got {family!r}")
    from .device.family_record import write_family
    from .families.hf_lm.config import LMTrainConfig, LoraSettings
    from .families.hf_lm.record import family_from, parse, settings_for

    if not valid_seed(seed):
        raise BadInput(f"seed must be an integer in [0, 2**63), got {seed!r}")
    root = Path(root)
    if (root / "device.json").exists() or (root.exists() and (not root.is_dir() or any(root.iterdir()))):
        raise BadInput(f"{root} exists and is not empty; choose a new directory for the device")
    try:
        lora_s, train_s = LoraSettings(**(lora or {})), LMTrainConfig(**(train or {}))
    except TypeError as e:
        raise BadInput(f"unknown LoRA or training setting ({e})") from None
    settings = settings_for(base_model, lora_s, train_s)
    fam = family_from(parse(settings))  # loads the model: a target naming no layer, or a rank too large, is BadInput
    dev = Device.create(root, seed)
    write_family(dev.root, LM_FAMILY, settings)
    return {"device": str(dev.root), "seed": dev.seed, "family": LM_FAMILY, "base_model": str(fam.root),
            "model_id": fam.model_id}


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
    from .runner import forget as forgetting
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
           dry_run: bool = False, verify: bool = False, unseen: Path | None = None, canary: str | None = None,
           progress: Progress | None = None) -> dict:
    """Forget what the selector names (see runner/forget.py); with `dry_run`, only the plan (runner/plan.py),
    computed without loading the model. With `verify`, the forget is verified while its utterances are in
    memory and escalated to the exact pass at once when `auto`'s fast tier fails a check beyond its noise
    (verify/escalation.py); the receipt then holds the summary (and any escalation)."""
    from .runner.plan import resolve

    sel = Selector.parse(date_=date, start=start, end=end, ids=ids, contains=contains)
    resolve(mode)
    if (unseen is not None or canary is not None) and not verify:
        raise BadInput("--unseen and --canary are for --verify: give --verify to measure the forget")
    if dry_run and verify:
        raise BadInput("--dry-run changes nothing and --verify measures a forget: give one of them")
    if dry_run:
        return _dry_run(root, sel, mode)
    from .runner import forget as forgetting
    if verify and _recorded_family(root) == LM_FAMILY:
        raise BadInput("forget --verify is the assistant's; on an hf-causal-lm device forget, then run "
                       "`assistant-forget verify` (it measures the forget against the exact replay)")
    if not verify:
        with session(root, progress) as eng:
            return forgetting.forget(eng, sel, mode, progress)
    from .verify import verification as verifying
    from .verify.escalation import forget_verified

    cfg = verifying.VerifyConfig()
    if canary is not None:
        verifying.check_canary(canary, cfg)
    held = verifying.read_labeled(unseen) if unseen is not None else None
    with session(root, progress) as eng:
        receipt, ver = forget_verified(eng, sel, mode, cfg, unseen=held, canary=canary, progress=progress)
        return {**receipt, "verification": ver.summary}


def _dry_run(root: Path, sel: Selector, mode: str) -> dict:
    """The assistant's forget plan from the log and the ledger's manifest alone (torch is never imported)."""
    from .core.ledger import Ledger
    from .families.assistant.config import PersonalizationConfig, base_dir, model_id, read_checksums
    from .runner.plan import plan_forget

    dev = Device.open(root)
    cfg = PersonalizationConfig()
    mid = None
    if _recorded_family(root) == LM_FAMILY:  # its recorded settings stand in for the family (torch-free)
        from .device.family_record import FAMILY_FILE, read_family
        from .families.hf_lm.record import Planner, parse

        cfg = Planner(parse(read_family(dev.root)[1], dev.root / FAMILY_FILE))
        mid = cfg.model_id
    with LogStore(dev.store_path, readonly=True) as store:
        m = Ledger(dev.root / "ledger").manifest_for(mid or model_id(read_checksums(base_dir()), cfg),
                                                     cfg.checkpoint_every, cfg.delta_dtype)
        plan = plan_forget(store, m, cfg, sel, mode)
        shown = ({"matched": [{"id": u.id, "day": u.local_date, "text": u.text} for u in sel.match(store)]}
                 if sel.kind in ("contains", "utterance") else {})  # what a phrase or ids matched, before it goes
        return {"dry_run": True, **plan.summary(), **shown}


def _recorded_family(root: Path) -> str:
    """The name of the family the device `root` records (torch-free: nothing is loaded)."""
    from .device.family_record import read_family

    return read_family(Device.open(root).root)[0]


def history(root: Path) -> list[dict]:
    """Every receipt of the device, oldest first."""
    return receipts.read_all(Device.open(root).root)


def _has_export(eng: Engine) -> bool:
    return eng.current_export() is not None


def status(root: Path) -> dict:
    """The device's status (see status.py); reads only."""
    from .runner.status import device_status

    return device_status(root)


def retain(root: Path, keep_days: int, today: str, mode: str = "auto",
           progress: Progress | None = None) -> dict | None:
    """Retention policy: forget every day more than `keep_days` days before `today`; its receipt, or None.

    `today` is the device's local date (YYYY-MM-DD); the `keep_days` days up to it are kept. The receipt
    is the forget's, marked with the policy that asked for it ({"trigger": "retention", "keep_days": N}).
    """
    from datetime import timedelta

    from .runner import forget as forgetting
    if isinstance(keep_days, bool) or not isinstance(keep_days, int) or keep_days < 1:
        raise BadInput(f"keep_days must be an integer >= 1 (the number of recent days to keep), got {keep_days!r}")
    forgetting.resolve(mode)
    cutoff = (parse_date(today) - timedelta(days=keep_days)).isoformat()
    with session(root, progress) as eng:
        old = [d for d in eng.store.day_counts() if d <= cutoff]
        if not old:
            return None
        receipt = forgetting.forget(eng, Selector("range", old[0], old[-1]), mode, progress)
        policy = {"trigger": "retention", "keep_days": keep_days}
        receipts.append(eng.dev.root, {"id": receipt["id"], **policy})
        return {**receipt, **policy}


def verify(root: Path, date: str | None = None, *, weights: str = "onnx", unseen: Path | None = None,
           canary: str | None = None, canary_format: str | None = None, lira: int = 0, attacks: str | None = None,
           models: int = 8, horizon: int = 2, workers: int | None = None,
           report: Path | None = None, progress: Progress | None = None) -> dict:
    """Verify a forget and write a report (see verify/verification.py): a what-if for a day not yet forgotten, else an
    audit of the receipt that covers `date` (the latest forget without a date). `attacks`: a comma-separated
    list of verification.ATTACKS or "all" (default: loss-mia, exposure with a canary, lira with `lira`);
    `models` / `horizon` / `workers` size the per-example attacks' populations. Returns the summary plus
    "report", the report's path. The device changes only by the audit's receipt line."""
    from .verify import verification as verifying
    from .verify.report import report_dir, write_report

    if _recorded_family(root) == LM_FAMILY:  # canary exposure and the loss attack on the LM (verify/lm.py)
        return _verify_lm(root, date, canary, canary_format, report, progress)
    cfg = verifying.VerifyConfig(weights=weights, lira_pairs=lira, canary_format=canary_format,
                                 attacks=verifying.parse_attacks(attacks), models=models, horizon=horizon,
                                 workers=workers)
    day = parse_date(date).isoformat() if date is not None else None
    out = report_dir(Device.open(root).root, report)
    held = verifying.read_labeled(unseen) if unseen is not None else None
    ver = verifying.run(root, day, cfg, unseen=held, canary=canary, progress=progress)
    return {**ver.summary, "report": str(write_report(ver, out))}


def _verify_lm(root: Path, date: str | None, canary: str | None, canary_format: str | None, report: Path | None,
               progress: Progress | None) -> dict:
    """`verify` on an hf-causal-lm device: a what-if for a day not forgotten yet, else an audit (verify/lm.py)."""
    from .verify import lm as lm_verify
    from .verify.canary import canary_format as check_format
    from .verify.report import report_dir

    if canary is not None:
        check_format(canary, canary_format)
    day = parse_date(date).isoformat() if date is not None else None
    out = report_dir(Device.open(root).root, report)
    with session(root, progress) as eng:
        if day is not None and day in eng.store.day_counts():
            summary = lm_verify.what_if(eng, day, canary, canary_format, progress=progress)
        else:
            summary = lm_verify.audit(eng, day, canary, canary_format, progress=progress)
    return {**summary, "report": str(lm_verify.write_report(summary, out))}


# -- your own model ----------------------------------------------------------------------------------
class ModelDevice:
    """A device directory holding your own model family's data, ledger and receipts (see `open_device`).

    Every method runs under the device lock the `open_device` block holds; a forget is journaled and
    crash-safe exactly as on the assistant (a crash mid-forget is finished when the device is next opened).
    """

    def __init__(self, eng: Engine) -> None:
        self._eng = eng

    @property
    def root(self) -> Path:
        return self._eng.dev.root

    @property
    def model(self):
        """The current model (its personal parameters as the ledger holds them)."""
        return self._eng.model

    def add(self, data: dict) -> int:
        """Store a keyed dataset {key: [(input tensor, target tensor), ...]}; returns how many items were added.

        A key that was forgotten whole is refused (BadInput): its data stays forgotten."""
        from .device import tombstones
        from .families.module import items_of

        if getattr(self._eng.family, "reads", "items") == "log":
            raise BadInput("this family trains on the utterance log: import utterances with `assistant-forget "
                           "import` (device/importer.py, import_jsonl), not ModelDevice.add")

        items = items_of(data)
        tombstones.admit_rows(self.root, [(i.id, i.key) for i in items])
        return self._eng.store.add(items)

    def train(self, until: str | None = None, progress: Progress | None = None) -> dict:
        """Train every key not yet trained (in key order), replaying after changed keys; re-export."""
        before = self._eng.manifest().version
        plan = self._eng.plan(until)
        self._eng.sync(until, progress)
        m = self._eng.manifest()
        export = self._eng.publish() if m.version != before else None
        return {"trained_days": plan.days, "version": m.version, "export_version": export}

    def forget(self, keys: list[str] | None = None, ids: list[str] | None = None, mode="auto",
               dry_run: bool = False, progress: Progress | None = None) -> dict:
        """Forget whole keys or single items with a registered method (a name or a Method); the receipt.

        With `dry_run`, only the plan."""
        from .runner import forget as forgetting

        if (keys is None) == (ids is None):
            raise BadInput("give exactly one of keys=[...] or ids=[...]")
        sel = Selector.keys(keys) if keys is not None else Selector.parse(ids=list(ids))
        if dry_run:
            return {"dry_run": True, **forgetting.make_plan(self._eng, sel, mode).summary()}
        return forgetting.forget(self._eng, sel, mode, progress)

    def maintain(self, progress: Progress | None = None) -> dict | None:
        """Run the exact pass an approximate forget left pending; its receipt, or None."""
        from .runner import forget as forgetting

        return forgetting.maintain(self._eng, progress)

    def history(self) -> list[dict]:
        """Every receipt, oldest first."""
        return receipts.read_all(self.root)

    def status(self) -> dict:
        m = self._eng.manifest()
        return {"items": self._eng.store.day_counts(), "model_version": m.version or "initial",
                "trained_days": sorted(m.days), "state": "approximate" if m.approximate else "exact",
                "pending_exact_from": m.pending_exact_from}


@contextmanager
def open_device(root: Path, family, seed: int | None = None,
                progress: Progress | None = None) -> Iterator[ModelDevice]:
    """Open the device directory `root` for `family` (created, with `seed`, when missing), holding its lock.

    `family` is a model family (core/family.py), e.g. `ModuleFamily(module, loss)`. On opening, a forget a
    crash interrupted is finished first."""
    dev = Device.open_or_create(Path(root), seed)
    with session(dev.root, progress, family=family) as eng:
        yield ModelDevice(eng)
