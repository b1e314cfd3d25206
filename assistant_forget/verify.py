"""Verify a forget: membership attacks and quality of the exported model, against the oracle, and a verdict.

How the forgotten utterances are known depends on when verification runs (the `verify` command picks):

  forget time  `verify_forget(eng, selector)` reads the matched utterances into memory, forgets, then
               measures with them while they are still in memory; the summary goes into the receipt.
  what-if      `what_if(DIR, day)`, for a day not yet forgotten: copies the device into a temporary
               directory outside it, runs the fast forget there with verification, deletes the copy.
               The device itself is not touched.
  audit        `audit(DIR, receipt)`, for a forget that happened: its texts are gone from the device by
               design, so membership attacks cannot run. It compares the current model with a freshly
               computed oracle (KL, accuracy on retained and unseen data, version equality once the state
               is exact, canary exposure if the user supplies the canary), shows the forget-time
               verification stored in the receipt, and appends the new summary to that receipt (the only
               write to the device).

Measured on the exported ONNX model (what the device runs, DESIGN invariant 7) unless `weights="torch"`:
mia_auc (loss-threshold attack on the per-utterance LM loss, forgotten vs unseen), lira_auc (online LiRA
with shadow models, oracle.py), intent accuracy and KL(oracle || current) of the intent and next-token
distributions per set, canary exposure (rank among the format's secrets, and skew-normal) before, after and
on the oracle. Unseen utterances come from the caller (device_sim.heldout_utterances for a simulated
persona, a JSONL file in the CLI), else the device's untrained days, else CLINC150 test (public, never
trained on; its distribution differs from the user's, which shows in the oracle's AUC and cancels in the gap).
A forgotten utterance whose text is also said on a retained day is in the oracle's training data too, so the
attacks leave it out (counted as forgotten_also_retained); the rest lean to rarer texts, so the oracle's AUC
is not 0.5 either: the verdict compares with the oracle.

A receipt's "verification" (format 1) is {"format": 1, "at_forget": summary or null, "audits": [summary,
...]}; a summary holds numbers, dates, versions and labels, never text.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from . import metrics, receipts
from .api import one_torch_thread, session
from .clinc import intent_labels, load_clinc
from .device import Device
from .engine import Engine, open_engine
from .errors import BadInput, ForgetError, NothingToForget
from .forget import JOURNAL, Selector, forget, make_plan
from .oracle import Replay, exact_replay, shadow_stats, temp_dir_outside
from .store import LogStore
from .scoring import Backend, Labeled, OnnxBackend, Scores, TorchBackend, lm_kl, onnx_of, score, sequence_nll

FORMAT = 1  # version of the summary layout
WEIGHTS = ("onnx", "torch")
ROW_METRIC = {"mia_auc_gap": "mia_auc", "lira_auc": "lira_auc", "accuracy_gap_points": "accuracy",
              "exposure_gap_bits": "exposure_bits"}  # verdict row -> the METRIC_KEYS entry it checks
PLACEHOLDER = {"mia_auc": 0.5, "lira_auc": 0.5, "accuracy": 1.0, "exposure_bits": 0.0}  # for rows not measured
CHECKED = {"mia_auc_gap": lambda v, o: abs(v - o), "lira_auc": lambda v, o: v,  # what each row compares
           "accuracy_gap_points": lambda v, o: 100 * abs(v - o), "exposure_gap_bits": lambda v, o: abs(v - o)}


@dataclass(frozen=True)
class VerifyConfig:
    """What to measure and how hard; validated on creation."""

    weights: str = "onnx"  # score the exported ONNX model ("onnx") or the PyTorch weights ("torch")
    retained: int = 300  # retained utterances sampled from the log for accuracy and KL
    unseen: int = 500  # most unseen utterances used
    lira_pairs: int = 0  # LiRA: each utterance IN this many shadows and OUT of as many (0: skip; >= 2)
    lira_fixed_variance: bool = True  # pool the shadows' variance over utterances (advised for small K)
    canary_format: str | None = None  # format of a canary's secret; None: device_sim's default (10^5 secrets)
    canary_candidates: int = 0  # secrets the canary is ranked among: 0 = all others of the format
    seed: int = 0  # seed of the samples and the shadows
    batch_size: int = 128  # utterances per forward pass
    thresholds: metrics.Thresholds = field(default_factory=metrics.Thresholds)  # the verdict's targets

    def __post_init__(self) -> None:
        if self.weights not in WEIGHTS:
            raise BadInput(f"--weights must be one of {', '.join(WEIGHTS)}, got {self.weights!r}")
        for name in ("retained", "unseen", "lira_pairs", "canary_candidates", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0 or (name == "batch_size" and v < 1):
                raise BadInput(f"{name} must be a non-negative integer (batch_size >= 1), got {v!r}")
        if self.lira_pairs == 1:
            raise BadInput("lira_pairs must be 0 (skip LiRA) or >= 2 (a variance needs two shadows per side)")


@dataclass
class Verification:
    """A verification: the summary (numbers only, for receipts and --json) and the arrays the report plots."""

    summary: dict  # see the module docstring
    losses: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # set -> model -> LM loss (N,)
    lira: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # model -> (forgotten, unseen)
    oracle: Replay | None = None  # the oracle measured against (memory only)


def _r(x: float | None) -> float | None:
    """Round for the summary; None for missing or infinite values (JSON has no infinity)."""
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


def backend_of(model, eng: Engine, cfg: VerifyConfig) -> Backend:
    """`model` scored the way `cfg` asks: exported to ONNX in memory, or as PyTorch weights."""
    return onnx_of(model, eng.base) if cfg.weights == "onnx" else TorchBackend(model, eng.base.tokenizer,
                                                                               eng.base.labels)


def current_backend(eng: Engine, cfg: VerifyConfig) -> Backend:
    """The device's model: its live export (what the app runs) or the engine's PyTorch weights."""
    if cfg.weights == "torch":
        return TorchBackend(eng.model, eng.base.tokenizer, eng.base.labels)
    from .runtime import load_current

    return OnnxBackend(load_current(eng.dev.root))


def _unique(data: Sequence[Labeled]) -> list[Labeled]:
    return list(dict.fromkeys(data))


def retained_sample(eng: Engine, cfg: VerifyConfig) -> list[Labeled]:
    """Up to cfg.retained distinct utterances of the trained days (a seeded sample)."""
    trained = set(eng.manifest().days)
    rows = _unique([(u.text, u.intent) for u in eng.store.all() if u.local_date in trained])
    return rows if len(rows) <= cfg.retained else random.Random(cfg.seed).sample(rows, cfg.retained)


def trained_texts(eng: Engine) -> set[str]:
    """Case-folded texts of the trained days (the tokenizer folds case, so the model cannot tell them apart)."""
    trained_days = set(eng.manifest().days)
    return {u.text.casefold() for u in eng.store.all() if u.local_date in trained_days}


def only_forgotten(forgotten: Sequence[Labeled], trained: set[str]) -> list[Labeled]:
    """The forgotten utterances whose text is not also said on a retained, trained day.

    Those are members of the oracle's training data too, so no attack should call them forgotten.
    """
    return [(t, i) for t, i in forgotten if t.casefold() not in trained]


def resolve_unseen(eng: Engine, given: Sequence[Labeled] | None, forgotten: Sequence[Labeled],
                   cfg: VerifyConfig) -> tuple[list[Labeled], str]:
    """(unseen utterances, their source): never trained on, and not among the forgotten or trained texts."""
    trained_days = set(eng.manifest().days)
    rows = eng.store.all()
    known = trained_texts(eng) | {t.casefold() for t, _ in forgotten}
    if given is not None:
        cands, source = list(given), "caller"
    else:
        cands, source = [(u.text, u.intent) for u in rows if u.local_date not in trained_days], "untrained_days"
        if not [c for c in cands if c[0].casefold() not in known]:
            cands, source = load_clinc()["test"] + load_clinc()["oos_test"], "clinc150_test"
    out = [c for c in _unique(cands) if c[0].casefold() not in known]
    if not out:
        raise BadInput("no unseen utterances: every one given was trained on or forgotten; supply held-out "
                       "utterances the device never logged")
    return (out if len(out) <= cfg.unseen else random.Random(cfg.seed).sample(out, cfg.unseen)), source


def check_canary(canary: str, cfg: VerifyConfig) -> str:
    """The canary's format; BadInput unless `canary` is one of its secrets."""
    from device_sim.canary import DEFAULT_CANARY_FORMAT, secret_index

    fmt = cfg.canary_format or DEFAULT_CANARY_FORMAT
    secret_index(fmt, canary)
    return fmt


def exposure(backends: dict[str, Backend], canary: str, exclude: Sequence[str], cfg: VerifyConfig) -> dict:
    """Canary exposure under each model: rank among the format's other secrets, and the skew-normal estimate."""
    from device_sim.canary import enumerate_candidates, sample_candidates

    fmt = check_canary(canary, cfg)
    skip = {canary, *exclude}
    cands = (sample_candidates(fmt, cfg.canary_candidates, cfg.seed, exclude=sorted(skip)) if cfg.canary_candidates
             else [c for c in enumerate_candidates(fmt) if c not in skip])
    out: dict = {"rank_bits": {}, "skew_normal_bits": {}, "candidates": len(cands)}
    encoded: dict[str, list[list[int]]] = {}  # tokenization per backend kind, done once
    for name, b in backends.items():
        enc = encoded.setdefault(b.name, b.encode([canary] + cands))
        nll = sequence_nll(b, [canary] + cands, cfg.batch_size, enc)  # (1 + M,)
        out["rank_bits"][name] = _r(metrics.exposure_rank(nll[0], nll[1:]))
        out["skew_normal_bits"][name] = _r(metrics.exposure_skew_normal(nll[0], nll[1:]))
    return out


def lira(eng: Engine, replay: Replay, day: str, forgotten: Sequence[Labeled], unseen: Sequence[Labeled],
         backends: dict[str, Backend], cfg: VerifyConfig) -> tuple[dict, dict]:
    """LiRA AUC per model, forgotten vs as many unseen utterances; (summary, model -> (member, non-member) scores)."""
    times = Counter(forgotten)
    members = list(times)
    others = random.Random(cfg.seed).sample(list(unseen), min(len(unseen), len(members)))
    pool = [(t, i, times[(t, i)]) for t, i in members] + [(t, i, 1) for t, i in others]
    data = [(t, i) for t, i, _ in pool]
    stat = lambda model: -score(TorchBackend(model, eng.base.tokenizer, eng.base.labels), data,  # noqa: E731
                                cfg.batch_size).lm_loss
    ins, outs = shadow_stats(eng, replay.before, day, pool, cfg.lira_pairs, stat, cfg.seed)  # (N, K) each
    n, res, arrays = len(members), {"pairs": cfg.lira_pairs}, {}
    for name, b in backends.items():
        s = metrics.lira_scores(-score(b, data, cfg.batch_size).lm_loss, ins, outs, cfg.lira_fixed_variance)
        arrays[name] = (s[:n], s[n:])
        res[name] = _r(metrics.lira_auc(s[:n], s[n:]))
    return res, arrays


def evaluate(eng: Engine, replay: Replay, cfg: VerifyConfig, *, kind: str, tier: str,
             forgotten: Sequence[Labeled] = (), unseen: Sequence[Labeled] | None = None, before=None,
             canary: str | None = None, exclude: Sequence[str] = (), day: str | None = None) -> Verification:
    """Measure the device's current model against the oracle `replay` (and the model `before` the forget)."""
    t0 = time.perf_counter()
    m = eng.manifest()
    backends = {"current": current_backend(eng, cfg), "oracle": backend_of(replay.model, eng, cfg)}
    if before is not None:
        backends["before"] = backend_of(before, eng, cfg)
    unseen_rows, source = resolve_unseen(eng, unseen, forgotten, cfg)
    attacked = only_forgotten(forgotten, trained_texts(eng))
    sets = {"forgotten": _unique(attacked), "unseen": unseen_rows, "retained": retained_sample(eng, cfg)}
    sets = {k: v for k, v in sets.items() if v}
    scores: dict[str, dict[str, Scores]] = {s: {n: score(b, d, cfg.batch_size) for n, b in backends.items()}
                                            for s, d in sets.items()}
    ver = Verification({}, {s: {n: sc.lm_loss for n, sc in by.items()} for s, by in scores.items()}, oracle=replay)
    mia = None
    if "forgotten" in scores:
        mia = {n: _r(metrics.loss_threshold_mia_auc(scores["forgotten"][n].lm_loss, scores["unseen"][n].lm_loss))
               for n in backends}
        mia["gap"] = _r(abs(mia["current"] - mia["oracle"]))
    t1 = time.perf_counter()
    cur, orc = backends["current"], backends["oracle"]
    kl = {"intent": {s: _r(metrics.kl_from_logits(by["oracle"].intent_logits, by["current"].intent_logits))
                     for s, by in scores.items()},
          "lm": {s: _r(lm_kl(orc, cur, [t for t, _ in sets[s]], cfg.batch_size).mean()) for s in sets}}
    t2 = time.perf_counter()
    lira_res = None
    if cfg.lira_pairs and "forgotten" in sets and replay.before is not None and day is not None:
        lira_res, ver.lira = lira(eng, replay, day, attacked, unseen_rows, backends, cfg)
    t3 = time.perf_counter()
    expo = exposure(backends, canary, exclude, cfg) if canary is not None else None
    t4 = time.perf_counter()
    current = {"mia_auc": mia and mia["current"], "lira_auc": lira_res and lira_res["current"],
               "accuracy": scores["unseen"]["current"].accuracy,
               "exposure_bits": expo and expo["rank_bits"]["current"]}
    oracle = {"mia_auc": mia and mia["oracle"], "lira_auc": lira_res and lira_res["oracle"],
              "accuracy": scores["unseen"]["oracle"].accuracy, "exposure_bits": expo and expo["rank_bits"]["oracle"]}
    rows, skipped = verdict(current, oracle, cfg.thresholds)
    version_ok = m.approximate or m.version == replay.version  # an exact state must be the oracle, bit for bit
    ver.summary = {
        "format": FORMAT, "kind": kind, "tier": tier, "weights": cfg.weights, "day": day,
        "state": "approximate" if m.approximate else "exact",
        "version": {"current": m.version, "oracle": replay.version, "equal": m.version == replay.version,
                    "export": getattr(cur, "version", None)},
        "counts": {**{s: len(sets.get(s, ())) for s in ("forgotten", "unseen", "retained")},
                   "forgotten_also_retained": len(_unique(forgotten)) - len(_unique(attacked)),
                   "unseen_source": source},
        "mia_auc": mia, "lira_auc": lira_res,
        "accuracy": {s: {n: _r(sc.accuracy) for n, sc in by.items()} for s, by in scores.items()},
        "kl": kl, "exposure": expo,
        "verdict": {r.name: {"value": _r(r.value), "oracle": _r(r.oracle_value), "threshold": r.threshold,
                             "checked": _r(CHECKED[r.name](r.value, r.oracle_value)), "passed": r.passed}
                    for r in rows},
        "skipped": skipped, "passed": all(r.passed for r in rows) and version_ok,
        "seconds": {"oracle": _r(replay.seconds), "scores": _r(t1 - t0), "kl": _r(t2 - t1), "lira": _r(t3 - t2),
                    "exposure": _r(t4 - t3)},
    }
    return ver


def verdict(current: dict, oracle: dict, thresholds: metrics.Thresholds) -> tuple[list, list[str]]:
    """metrics.summarize_verdict over the metrics that were measured; (rows, names of the rows skipped)."""
    measured = {k for k in metrics.METRIC_KEYS if current.get(k) is not None and oracle.get(k) is not None}
    fill = lambda d: {k: d[k] if k in measured else PLACEHOLDER[k] for k in metrics.METRIC_KEYS}  # noqa: E731
    rows = metrics.summarize_verdict(fill(current), fill(oracle), thresholds)
    kept = [r for r in rows if ROW_METRIC[r.name] in measured]
    return kept, [r.name for r in rows if r not in kept]


def attach(root, receipt_id: str, summary: dict, at_forget: bool) -> None:
    """Record `summary` in the receipt's verification: as the forget-time one, or appended to its audits."""
    prev = next((r.get("verification") for r in receipts.read_all(root) if r["id"] == receipt_id), None)
    prev = prev if isinstance(prev, dict) and prev.get("format") == FORMAT else {"at_forget": None, "audits": []}
    new = {"format": FORMAT, "at_forget": summary if at_forget else prev["at_forget"],
           "audits": list(prev["audits"]) + ([] if at_forget else [summary])}
    receipts.attach_verification(root, receipt_id, new)


def verify_forget(eng: Engine, sel: Selector, mode: str = "fast", cfg: VerifyConfig = VerifyConfig(), *,
                  unseen: Sequence[Labeled] | None = None, canary: str | None = None, exclude: Sequence[str] = (),
                  kind: str = "forget", oracle: Replay | None = None, progress=None) -> tuple[dict, Verification]:
    """Forget what `sel` names and verify it while its utterances are still in memory; (receipt, verification).

    The caller holds the device lock and has run `forget.recover` (api.session does both). `oracle`: the
    exact replay of an identical device for the same selector, to reuse (benchmarks vary only the repair).
    """
    plan = make_plan(eng, sel, mode)
    forgotten = [(u.text, u.intent) for u in sel.match(eng.store)]  # memory only, dropped on return
    before = copy.deepcopy(eng.model) if plan.trained else None
    receipt = forget(eng, sel, mode, progress)
    replay = oracle or exact_replay(eng, plan.trained[0] if plan.trained else None, progress)
    day = plan.trained[0] if len(plan.trained) == 1 else None
    ver = evaluate(eng, replay, cfg, kind=kind, tier=receipt["tier"], forgotten=forgotten, unseen=unseen,
                   before=before, canary=canary, exclude=exclude, day=day)
    attach(eng.dev.root, receipt["id"], ver.summary, at_forget=True)
    return receipt, ver


def what_if(root, day: str, cfg: VerifyConfig = VerifyConfig(), *, unseen: Sequence[Labeled] | None = None,
            canary: str | None = None, exclude: Sequence[str] = (), progress=None) -> Verification:
    """Verify a fast forget of `day` on a temporary copy of the device; the device itself is not changed."""
    dev = Device.open(root)
    with temp_dir_outside(dev.root, "assistant-forget-whatif-") as tmp:
        copy_root = Path(tmp) / "device"
        with dev.locked():
            shutil.copytree(dev.root, copy_root, symlinks=True)
        with session(copy_root) as eng:
            _, ver = verify_forget(eng, Selector("date", day, day), "fast", cfg, unseen=unseen, canary=canary,
                                   exclude=exclude, kind="what_if", progress=progress)
    return ver


def audit(eng: Engine, receipt: dict, cfg: VerifyConfig = VerifyConfig(), *, unseen: Sequence[Labeled] | None = None,
          canary: str | None = None, progress=None) -> Verification:
    """Check a past forget: the current model against a fresh oracle; appends the summary to the receipt."""
    days = sorted(receipt.get("days") or {})
    replay = exact_replay(eng, days[0] if days else None, progress)
    ver = evaluate(eng, replay, cfg, kind="audit", tier=receipt.get("tier", "?"), unseen=unseen, canary=canary,
                   day=days[0] if len(days) == 1 else None)
    ver.summary["receipt"] = receipt["id"]
    ver.summary["at_forget"] = (receipt.get("verification") or {}).get("at_forget")
    attach(eng.dev.root, receipt["id"], {k: v for k, v in ver.summary.items() if k != "at_forget"}, at_forget=False)
    return ver


def find_receipt(root, day: str | None) -> dict | None:
    """The latest forget receipt that covers local `day` (any forget receipt when `day` is None), or None."""
    found = [r for r in receipts.read_all(root)
             if r.get("type") == "forget" and (day is None or day in (r.get("days") or {}))]
    return found[-1] if found else None


def read_labeled(path) -> list[Labeled]:
    """(text, intent) pairs from a JSONL file, one object with "text" and "intent" a line (the import format)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"--unseen {path}: cannot be read ({e})") from None
    out, labels = [], set(intent_labels())
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            text, intent = obj["text"], obj["intent"]
        except (ValueError, KeyError, TypeError):
            raise BadInput(f"--unseen {path}: line {n} is not a JSON object with \"text\" and \"intent\"") from None
        if not isinstance(text, str) or not text.strip() or intent not in labels:
            raise BadInput(f"--unseen {path}: line {n} needs a non-empty text and a CLINC150 intent, got "
                           f"intent {intent!r}")
        out.append((text, intent))
    if not out:
        raise BadInput(f"--unseen {path}: no utterances; give one JSON object a line")
    return out


def run(root, day: str | None, cfg: VerifyConfig = VerifyConfig(), *, unseen: Sequence[Labeled] | None = None,
        canary: str | None = None, progress=None) -> Verification:
    """What the `verify` command does: an audit of the receipt covering `day` (or of the latest forget when
    `day` is None), else a what-if for a day that still has utterances."""
    dev = Device.open(root)
    if canary is not None:
        check_canary(canary, cfg)
    rec = find_receipt(dev.root, day)
    if rec is None:
        if day is None:
            raise NothingToForget(f"{dev.root} has no forget receipt to audit; give --date D for a what-if of "
                                  "forgetting day D")
        with LogStore(dev.store_path, readonly=True) as store:
            if not store.day_counts().get(day):
                raise NothingToForget(f"no utterances on {day} and no forget receipt for it: nothing to verify")
        return what_if(dev.root, day, cfg, unseen=unseen, canary=canary, progress=progress)
    if (dev.root / JOURNAL).exists():
        raise ForgetError(f"{dev.root}: an interrupted forget is pending; run `assistant-forget maintain` (which "
                          "finishes it) before verifying")
    with dev.locked(), LogStore(dev.store_path, readonly=True) as store, one_torch_thread():
        return audit(open_engine(dev, store), rec, cfg, unseen=unseen, canary=canary, progress=progress)
