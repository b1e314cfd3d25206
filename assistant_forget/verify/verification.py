"""Verify a forget: membership attacks and quality of the exported model, against the oracle, and a verdict.

How the forgotten utterances are known depends on when verification runs (the `verify` command picks):

  forget time  `verify_forget(eng, selector)` reads the matched utterances into memory, forgets, then
               measures with them while they are still in memory; the summary goes into the receipt.
  what-if      `what_if(DIR, day)`, for a day not yet forgotten: copies the device (all but DIR/.lock and
               DIR/.work) into a work directory DIR/.work/whatif-*/ (workdir.py), runs the fast forget
               there with verification, deletes the copy. The copy is inside the device directory so a
               copy left by a killed process is removed by the next recovery, and every forget removes
               all of them first. The device itself is not otherwise touched.
  audit        `audit(DIR, receipt)`, for a forget that happened: its texts are gone from the device by
               design, so membership attacks cannot run. It compares the current model with a freshly
               computed oracle (KL, accuracy on retained and unseen data, version equality once the state
               is exact, canary exposure if the user supplies the canary), shows the forget-time
               verification stored in the receipt, and appends the new summary to that receipt (the only
               write to the device).

Attacks (`VerifyConfig.attacks`, `verify --attacks`; ATTACKS): each runs where its inputs exist and is
listed under "attacks.skipped" with the reason otherwise. Beyond the population attacks below: u-lira and
challenge-eps (per example, over K models that forgot the day with the method and K exact oracles,
population.py), model-diff (an attacker holding the export before and after, modeldiff.py) and relearn (a
few fine-tuning steps on related public text, relearn.py). The accuracy gap comes with its sampling noise
(`accuracy_noise`: paired bootstrap and McNemar, stats.py), and escalation.py's `forget_verified` escalates a fast forget
that fails a check beyond its noise to the exact pass at once.

Measured on the exported ONNX model (what the device runs, DESIGN invariant 7) unless `weights` says otherwise
("onnx-int8": the app's int8 file; "fp16": CoreML's half-precision weights, emulated; "torch"):
mia_auc (loss-threshold attack on the per-utterance LM loss, forgotten vs unseen), lira_auc (online LiRA
with shadow models, oracle.py), intent accuracy and KL(oracle || current) of the intent and next-token
distributions per set, canary exposure (rank among the format's secrets, and skew-normal) before, after and
on the oracle. Unseen utterances come from the caller (device_sim.heldout_utterances for a simulated
persona, a JSONL file in the CLI), else the device's untrained days, else CLINC150 test (public, never
trained on; its distribution differs from the user's, which shows in the oracle's AUC and cancels in the gap).
A forgotten utterance whose text is also said on a retained day is in the oracle's training data too, so the
attacks leave it out (counted as forgotten_also_retained); the rest lean to rarer texts, so the oracle's AUC
is not 0.5 either: the verdict compares with the oracle.

Two summaries come out of a verification (`Verification`):

  exact    (`.exact`, memory only; format 1, the layout stored before issue 15) every figure to 6 decimals,
           the canary's rank exposure and skew-normal estimate per model included: for benchmarks.
  summary  (`.summary`, format 2) what is stored (receipts, verification.json), printed and plotted:
           `public_summary(exact)`. No figure from which a forgotten text can be rebuilt:
    - canary exposure only as {"candidates", "space", "bucket" (the current model's; "bucket_before" the
      model's before the forget; coarse:
      EXPOSURE_EDGES bits, chosen per format so that every bucket holds >= MIN_SHARED of its secrets:
      at 10^5 secrets "< 1 bit" 50,000, "1-2 bits" 25,000, "2-4 bits" 18,750, ">= 4 bits" 6,250),
      "passed" (current <= oracle + Thresholds.exposure_gap_bits), "threshold_bits", "memorised_before"
      (before >= oracle + MEMORISED_BITS; null without the model before the forget), "memorised_bits"};
      the verdict row keeps only its threshold and pass/fail. Ranking every secret of the format under the
      live export and taking the canary's rank would otherwise give the secret back.
    - figures over the forgotten utterances (MIA and LiRA AUCs, accuracy and KL on them, their verdict
      rows) only when at least MIN_SET of them were attacked, rounded (SET_DECIMALS decimals, KL to
      KL_DIGITS significant digits); withheld (null) below, where one utterance's loss would show through.
      "forgotten_figures" says which.
Stored format-1 summaries (receipts written before) are shown and carried forward through
`public_summary` too.

A receipt's "verification" (format 2) is {"format": 2, "at_forget": summary or null, "audits": [summary,
...]}; a summary holds numbers, dates, versions and labels, never text.
"""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core import crashpoints
from . import metrics, stats
from ..device import receipts, workdir
from ..core.threads import one_torch_thread
from ..runner.session import session
from ..device.clinc import intent_labels, load_clinc
from ..device.device import Device
from ..runner.engine import Engine, open_engine
from ..core.errors import BadInput, ForgetError, NothingToForget
from ..runner.forget import JOURNAL, forget, make_plan
from ..runner.selector import Selector
from .oracle import Replay, exact_replay, shadow_stats
from ..device.store import LogStore
from .scoring import (Backend, Labeled, OnnxBackend, Scores, TorchBackend, half_rounded, int8_of, lm_kl, onnx_of, score,
                      sequence_nll)

FORMAT = 2  # version of the stored summary layout and of a receipt's "verification"
EXACT_FORMAT = 1  # the exact, memory-only layout (what format-1 receipts stored)
MIN_SET = 10  # fewest attacked forgotten utterances for which figures over them are stored
SET_DECIMALS = 2  # decimals of an AUC or accuracy over the forgotten utterances, when stored
KL_DIGITS = 2  # significant digits of a KL over the forgotten utterances, when stored
MEMORISED_BITS = 8.0  # a canary was memorised before the forget: exposure >= the oracle's + this
EXPOSURE_EDGES = (1, 2, 4)  # bucket edges of the stored exposure, in bits (fewer for small formats)
MIN_SHARED = 1000  # fewest secrets of the format every exposure bucket must hold
MAX_RANKED = 100_000  # most secrets a canary is ranked among; a larger format is sampled
EPS = 1e-9  # float slack of the comparisons on bits
WEIGHTS = ("onnx", "onnx-int8", "fp16", "torch")  # what is scored: the app's files, or weights (fp16: CoreML's, emulated)
ATTACKS = ("loss-mia", "lira", "exposure", "u-lira", "challenge-eps", "model-diff", "relearn")  # what verify runs
DEFAULT_ATTACKS = ("loss-mia", "lira", "exposure")  # lira only with --lira K, exposure only with a canary
POPULATION_ATTACKS = ("u-lira", "challenge-eps")  # the per-example attacks on a population (population.py)
NEEDS_TEXTS = ("loss-mia", "lira", "u-lira", "challenge-eps", "model-diff", "relearn")  # need the forgotten texts
ROW_METRIC = {"mia_auc_gap": "mia_auc", "lira_auc": "lira_auc", "accuracy_gap_points": "accuracy",
              "exposure_gap_bits": "exposure_bits"}  # verdict row -> the METRIC_KEYS entry it checks
PLACEHOLDER = {"mia_auc": 0.5, "lira_auc": 0.5, "accuracy": 1.0, "exposure_bits": 0.0}  # for rows not measured
CHECKED = {"mia_auc_gap": lambda v, o: abs(v - o), "lira_auc": lambda v, o: v,  # what each row compares
           "accuracy_gap_points": lambda v, o: 100 * abs(v - o), "exposure_gap_bits": lambda v, o: v - o}
FORGOTTEN_ROWS = ("mia_auc_gap", "lira_auc", "u_lira_tpr", "model_diff_auc_gap")  # verdict rows computed over the forgotten utterances


@dataclass(frozen=True)
class VerifyConfig:
    """What to measure and how hard; validated on creation."""

    weights: str = "onnx"  # score the exported ONNX model ("onnx"), its int8 model ("onnx-int8"), the weights
    # rounded to half precision as CoreML stores them ("fp16", emulated in PyTorch) or the PyTorch weights ("torch")
    attacks: tuple[str, ...] = DEFAULT_ATTACKS  # which of ATTACKS to run (each where its inputs exist)
    models: int = 8  # u-lira / challenge-eps: models per side (the challenge used 512)
    horizon: int = 2  # u-lira / challenge-eps: later days each population model trains
    workers: int | None = None  # processes training a population (None: every CPU this process may use)
    retained: int = 300  # retained utterances sampled from the log for accuracy and KL
    unseen: int = 500  # most unseen utterances used
    lira_pairs: int = 0  # LiRA: each utterance IN this many shadows and OUT of as many (0: skip; >= 2)
    lira_fixed_variance: bool = True  # pool the shadows' variance over utterances (advised for small K)
    canary_format: str | None = None  # format of a canary's secret; None: derived from the canary's slots
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
        bad = [a for a in self.attacks if a not in ATTACKS] if isinstance(self.attacks, tuple) else [self.attacks]
        if bad or not self.attacks:
            raise BadInput(f"--attacks takes a comma-separated list of {', '.join(ATTACKS)} or all; got {bad or 'none'}")
        for name, least in (("models", 3), ("horizon", 1)):  # U-LiRA leaves one model out of >= 3
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise BadInput(f"{name} must be an integer >= {least}, got {v!r}")
        if self.workers is not None and (isinstance(self.workers, bool) or not isinstance(self.workers, int)
                                         or self.workers < 1):
            raise BadInput(f"workers must be an integer >= 1, got {self.workers!r}")


def parse_attacks(spec: str | None) -> tuple[str, ...]:
    """'u-lira,relearn' -> ('u-lira', 'relearn'); 'all' -> ATTACKS; None -> DEFAULT_ATTACKS.

    >>> parse_attacks("all") == ATTACKS, parse_attacks(None) == DEFAULT_ATTACKS
    (True, True)
    """
    if spec is None:
        return DEFAULT_ATTACKS
    names = tuple(dict.fromkeys(a.strip().lower() for a in spec.split(",") if a.strip()))
    if names == ("all",):
        return ATTACKS
    bad = [a for a in names if a not in ATTACKS]
    if not names or bad:
        raise BadInput(f"--attacks takes a comma-separated list of {', '.join(ATTACKS)}, or all; got {spec!r}")
    return names


@dataclass
class Verification:
    """A verification: the summary (stored, printed), the exact figures and the arrays (memory only)."""

    summary: dict  # the public summary (module docstring): receipts, verification.json, --json, the report
    losses: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # set -> model -> LM loss (N,)
    lira: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # model -> (forgotten, unseen)
    oracle: Replay | None = None  # the oracle measured against (memory only)
    per_example: dict[str, np.ndarray] = field(default_factory=dict)  # attack -> (N,) per forgotten utterance
    exact: dict = field(default_factory=dict)  # every figure, exposure ranks included: memory only, never stored


_r = metrics.rounded


def backend_of(model, eng: Engine, cfg: VerifyConfig, work: Path | None = None) -> Backend:
    """`model` scored the way `cfg` asks: exported to ONNX in memory (quantized to int8 in the work directory
    `work`), rounded to fp16, or as PyTorch weights."""
    tok, labels = eng.base.tokenizer, eng.base.labels
    if cfg.weights == "onnx":
        return onnx_of(model, eng.base)
    if cfg.weights == "onnx-int8":
        if work is None:
            raise ValueError("an int8 backend needs a work directory")
        return int8_of(model, eng.base, work)
    return TorchBackend(half_rounded(model) if cfg.weights == "fp16" else model, tok, labels)


def current_backend(eng: Engine, cfg: VerifyConfig) -> Backend:
    """The device's model: its live export (what the app runs: fp32 or int8 ONNX) or the engine's weights."""
    if cfg.weights in ("torch", "fp16"):
        return backend_of(eng.model, eng, cfg)
    from ..export.runtime import load_current

    if cfg.weights == "onnx-int8" and "onnx-int8" not in eng.export_formats():
        raise BadInput(f"{eng.dev.root}: the live export has no int8 model; publish one first "
                       "(assistant-forget export --format onnx,onnx-int8), or verify --weights onnx")
    return OnnxBackend(load_current(eng.dev.root, fmt=cfg.weights))


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
    """The canary's format: `cfg.canary_format`, else the one derived from the canary's own digit / letter
    slots (canary.canary_format); BadInput unless `canary` is one of its secrets, among >= MIN_SPACE."""
    from .canary import canary_format

    return canary_format(canary, cfg.canary_format)


def exposure(backends: dict[str, Backend], canary: str, exclude: Sequence[str], cfg: VerifyConfig) -> dict:
    """Canary exposure under each model: rank among the format's other secrets, and the skew-normal estimate.

    Every other secret when the format has at most MAX_RANKED (10^5 for five digits), else a seeded sample
    of MAX_RANKED of them (`canary_candidates` sets the sample's size)."""
    from .canary import candidate, enumerate_candidates, sample_candidates, secret_index, space_size

    fmt = check_canary(canary, cfg)
    skip = {canary, candidate(fmt, secret_index(fmt, canary)), *exclude}  # the canary as the format spells it too
    sample = cfg.canary_candidates or (MAX_RANKED if space_size(fmt) > MAX_RANKED else 0)
    cands = (sample_candidates(fmt, sample, cfg.seed, exclude=sorted(skip)) if sample
             else [c for c in enumerate_candidates(fmt) if c not in skip])
    out: dict = {"rank_bits": {}, "skew_normal_bits": {}, "candidates": len(cands), "space": space_size(fmt)}
    encoded: dict[str, list[list[int]]] = {}  # tokenization per backend kind, done once
    for name, b in backends.items():
        enc = encoded.setdefault(b.name, b.encode([canary] + cands))
        nll = sequence_nll(b, [canary] + cands, cfg.batch_size, enc)  # (1 + M,)
        out["rank_bits"][name] = _r(metrics.exposure_rank(nll[0], nll[1:]))
        out["skew_normal_bits"][name] = _r(metrics.exposure_skew_normal(nll[0], nll[1:]))
    return out


def lira(eng: Engine, replay: Replay, day: str, forgotten: Sequence[Labeled], unseen: Sequence[Labeled],
         backends: dict[str, Backend], cfg: VerifyConfig, executor=None) -> tuple[dict, dict]:
    """LiRA AUC per model, forgotten vs as many unseen utterances; (summary, model -> (member, non-member) scores).
    The shadows train through `executor` (oracle.shadow_stats)."""
    times = Counter(forgotten)
    members = list(times)
    others = random.Random(cfg.seed).sample(list(unseen), min(len(unseen), len(members)))
    pool = [(t, i, times[(t, i)]) for t, i in members] + [(t, i, 1) for t, i in others]
    data = [(t, i) for t, i, _ in pool]
    ins, outs = shadow_stats(eng, replay.before, day, pool, cfg.lira_pairs, cfg.batch_size, cfg.seed,
                             executor)  # (N, K) each
    n, res, arrays = len(members), {"pairs": cfg.lira_pairs}, {}
    for name, b in backends.items():
        s = metrics.lira_scores(-score(b, data, cfg.batch_size).lm_loss, ins, outs, cfg.lira_fixed_variance)
        arrays[name] = (s[:n], s[n:])
        res[name] = _r(metrics.lira_auc(s[:n], s[n:]))
    return res, arrays


def evaluate(eng: Engine, replay: Replay, cfg: VerifyConfig, *, kind: str, tier: str,
             forgotten: Sequence[Labeled] = (), unseen: Sequence[Labeled] | None = None, before=None,
             canary: str | None = None, exclude: Sequence[str] = (), day: str | None = None,
             rows: Sequence = (), plan=None, executor=None) -> Verification:
    """Measure the device's current model against the oracle `replay` (and the model `before` the forget).

    `rows` (the forgotten day's rows, memory only) and `plan` (the forget's ForgetPlan) let the per-example
    attacks train their populations (population.py) through `executor`."""
    from . import runners

    t0 = time.perf_counter()
    m = eng.manifest()
    run_ = set(cfg.attacks)
    skipped_attacks: dict[str, str] = {}
    with (workdir.working_copy(eng.dev.root, "scoring") if cfg.weights == "onnx-int8" else nullcontext()) as work:
        backends = {"current": current_backend(eng, cfg), "oracle": backend_of(replay.model, eng, cfg, work)}
        if before is not None:
            backends["before"] = backend_of(before, eng, cfg, work)
    unseen_rows, source = resolve_unseen(eng, unseen, forgotten, cfg)
    attacked = only_forgotten(forgotten, trained_texts(eng))
    sets = {"forgotten": _unique(attacked), "unseen": unseen_rows, "retained": retained_sample(eng, cfg)}
    sets = {k: v for k, v in sets.items() if v}
    scores: dict[str, dict[str, Scores]] = {s: {n: score(b, d, cfg.batch_size) for n, b in backends.items()}
                                            for s, d in sets.items()}
    ver = Verification({}, {s: {n: sc.lm_loss for n, sc in by.items()} for s, by in scores.items()}, oracle=replay)
    for name in sorted(run_ & set(NEEDS_TEXTS)):
        if "forgotten" not in scores:
            skipped_attacks[name] = ("needs the forgotten utterances: only a what-if or a forget-time verification "
                                     "has them (an audit runs after they are gone)")
    mia = None
    if "forgotten" in scores and "loss-mia" in run_:
        mia = {n: _r(metrics.loss_threshold_mia_auc(scores["forgotten"][n].lm_loss, scores["unseen"][n].lm_loss))
               for n in backends}
        mia["gap"] = _r(abs(mia["current"] - mia["oracle"]))
    t1 = time.perf_counter()
    cur, orc = backends["current"], backends["oracle"]
    kl = {"intent": {s: _r(metrics.kl_from_logits(by["oracle"].intent_logits, by["current"].intent_logits))
                     for s, by in scores.items()},
          "lm": {s: _r(lm_kl(orc, cur, [t for t, _ in sets[s]], cfg.batch_size).mean()) for s in sets}}
    noise = accuracy_noise(scores["unseen"], cfg)
    t2 = time.perf_counter()
    lira_res = None
    pairs = lira_pairs(cfg)
    if "lira" in run_ and pairs and "forgotten" in sets and replay.before is not None and day is not None:
        lira_res, ver.lira = lira(eng, replay, day, attacked, unseen_rows, backends, replace(cfg, lira_pairs=pairs),
                                  executor)
    elif "lira" in run_ and pairs and "forgotten" in sets:
        skipped_attacks["lira"] = "needs a single forgotten day that the device had trained"
    t3 = time.perf_counter()
    expo = None
    if canary is not None and "exposure" in run_:
        expo = exposure(backends, canary, exclude, cfg)
    elif "exposure" in run_ and cfg.attacks != DEFAULT_ATTACKS:
        skipped_attacks["exposure"] = "needs --canary: the secret planted on the day"
    t4 = time.perf_counter()
    per_example = None
    if run_ & set(POPULATION_ATTACKS) and "forgotten" in sets:
        if rows and plan is not None and replay.before is not None and day is not None:
            per_example, ver.per_example = runners.per_example_attacks(eng, replay, day, rows, sets["forgotten"], plan, cfg,
                                                               executor)
        else:
            for name in sorted(run_ & set(POPULATION_ATTACKS)):
                skipped_attacks[name] = "needs the forgotten rows of a single trained day (a what-if or benchmark)"
    diff = None
    if "model-diff" in run_ and "forgotten" in sets:
        if "before" in backends:
            diff = runners.model_diff_attack(backends, sets["forgotten"], unseen_rows, cfg)
        else:
            skipped_attacks["model-diff"] = "needs the model before the forget (a what-if or forget-time verification)"
    relearned = None
    if "relearn" in run_ and "forgotten" in sets:
        relearned = runners.relearn_attack(eng, replay, before, sets["forgotten"], canary, cfg)
    t5 = time.perf_counter()
    current = {"mia_auc": mia and mia["current"], "lira_auc": lira_res and lira_res["current"],
               "accuracy": scores["unseen"]["current"].accuracy,
               "exposure_bits": expo and expo["rank_bits"]["current"]}
    oracle = {"mia_auc": mia and mia["oracle"], "lira_auc": lira_res and lira_res["oracle"],
              "accuracy": scores["unseen"]["oracle"].accuracy, "exposure_bits": expo and expo["rank_bits"]["oracle"]}
    rows_, skipped = verdict(current, oracle, cfg.thresholds)
    rows_out = {r.name: {"value": _r(r.value), "oracle": _r(r.oracle_value), "threshold": r.threshold,
                         "checked": _r(CHECKED[r.name](r.value, r.oracle_value)),
                         "passed": exposure_passed(r.value, r.oracle_value, r.threshold)
                         if r.name == "exposure_gap_bits" else r.passed}
                for r in rows_}
    rows_out["accuracy_gap_points"].update(noise["current"])
    if mia is not None:  # the MIA gap with its paired-bootstrap interval over the same utterances
        f, u = scores["forgotten"], scores["unseen"]
        _, lo, hi = stats.auc_gap_interval(-f["current"].lm_loss, -u["current"].lm_loss, -f["oracle"].lm_loss,
                                           -u["oracle"].lm_loss, seed=cfg.seed)
        th = cfg.thresholds.mia_auc_gap
        rows_out["mia_auc_gap"].update({"interval": [_r(lo), _r(hi)], "significant": lo > th or hi < -th})
    if per_example is not None:
        u = per_example["u_lira"]
        excess = u["tpr"] - u["fpr"]
        rows_out["u_lira_tpr"] = {"value": _r(u["tpr"]), "oracle": _r(u["fpr"]), "checked": _r(excess),
                                  "threshold": cfg.thresholds.u_lira_tpr_excess,
                                  "passed": excess <= cfg.thresholds.u_lira_tpr_excess + EPS}
    if diff is not None:
        gap = diff["current"]["auc"] - diff["oracle"]["auc"]
        rows_out["model_diff_auc_gap"] = {"value": _r(diff["current"]["auc"]), "oracle": _r(diff["oracle"]["auc"]),
                                          "checked": _r(gap), "threshold": cfg.thresholds.model_diff_auc_gap,
                                          "passed": gap <= cfg.thresholds.model_diff_auc_gap + EPS}
    if relearned is not None and relearned["passed"] is not None:
        g = relearned["exposure_after_gap_bits"]
        rows_out["relearn_exposure_gap_bits"] = {"value": _r(relearned["models"]["current"]["exposure_after"]),
                                                 "oracle": _r(relearned["models"]["oracle"]["exposure_after"]),
                                                 "checked": _r(g), "threshold": cfg.thresholds.relearn_exposure_gap_bits,
                                                 "passed": relearned["passed"]}
    version_ok = m.approximate or m.version == replay.version  # an exact state must be the oracle, bit for bit
    ver.exact = {
        "format": EXACT_FORMAT, "kind": kind, "tier": tier, "weights": cfg.weights, "day": day,
        "state": "approximate" if m.approximate else "exact",
        "version": {"current": m.version, "oracle": replay.version, "equal": m.version == replay.version,
                    "export": getattr(cur, "version", None)},
        "counts": {**{s: len(sets.get(s, ())) for s in ("forgotten", "unseen", "retained")},
                   "forgotten_also_retained": len(_unique(forgotten)) - len(_unique(attacked)),
                   "unseen_source": source},
        "attacks": {"asked": list(cfg.attacks), "skipped": skipped_attacks},
        "mia_auc": mia, "lira_auc": lira_res,
        "accuracy": {s: {n: _r(sc.accuracy) for n, sc in by.items()} for s, by in scores.items()},
        "accuracy_noise": noise, "kl": kl, "exposure": expo, "per_example": per_example,
        "model_diff": diff, "relearn": relearned,
        "verdict": rows_out,
        "skipped": skipped, "passed": all(r["passed"] for r in rows_out.values()) and version_ok,
        "seconds": {"oracle": _r(replay.seconds), "scores": _r(t1 - t0), "kl": _r(t2 - t1), "lira": _r(t3 - t2),
                    "exposure": _r(t4 - t3), "attacks": _r(t5 - t4)},
    }
    ver.summary = public_summary(ver.exact, cfg.thresholds)
    return ver


def lira_pairs(cfg: VerifyConfig) -> int:
    """Shadow pairs LiRA trains: --lira K, else --models K when --attacks names lira explicitly, else none."""
    return cfg.lira_pairs or (cfg.models if "lira" in cfg.attacks and cfg.attacks != DEFAULT_ATTACKS else 0)


def accuracy_noise(unseen: dict[str, Scores], cfg: VerifyConfig) -> dict:
    """The accuracy gap of the current model (and of the model before the forget) to the oracle on the same
    unseen utterances, with its paired-bootstrap interval, McNemar's p-value and whether it is significant
    beyond the threshold (stats.significant): a verdict, and an escalation, act on a gap the data show."""
    margin = cfg.thresholds.accuracy_gap_points / 100
    right = {n: sc.pred == sc.gold for n, sc in unseen.items()}  # (N,) each
    out = {}
    for name in ("current", "before"):
        if name in right:
            g = stats.compare(right[name], right["oracle"], seed=cfg.seed)
            f = g.figures()
            out[name] = {"gap_points": _r(f["gap_points"]), "interval_points": [_r(x) for x in f["interval_points"]],
                         "p_value": _r(f["p_value"]), "confidence": f["confidence"],
                         "significant": stats.significant(g, margin)}
    return out


def exposure_passed(current: float, oracle: float, threshold: float) -> bool:
    """The exposure check: the canary is no more exposed after the forget than on the oracle, plus `threshold` bits."""
    return current <= oracle + threshold + EPS


def bucket_shares(space: int, edges: Sequence[float]) -> list[int]:
    """How many of `space` equally likely ranks fall in each exposure bucket that `edges` (bits) make.

    Exposure e = log2 |R| - log2 rank, so e >= a holds for the best |R| / 2^a ranks.

    >>> bucket_shares(100_000, EXPOSURE_EDGES)
    [50000, 25000, 18750, 6250]
    """
    tops = [space] + [math.floor(space / 2 ** a) for a in edges] + [0]  # ranks with exposure >= each edge
    return [tops[k] - tops[k + 1] for k in range(len(edges) + 1)]


def bucket_edges(space: int) -> tuple[float, ...]:
    """The longest prefix of EXPOSURE_EDGES whose buckets each hold >= MIN_SHARED of `space` secrets.

    >>> bucket_edges(100_000), bucket_edges(10_000), bucket_edges(1_000)
    ((1, 2, 4), (1, 2), ())
    """
    for k in range(len(EXPOSURE_EDGES), 0, -1):
        if min(bucket_shares(space, EXPOSURE_EDGES[:k])) >= MIN_SHARED:
            return tuple(EXPOSURE_EDGES[:k])
    return ()


def bucket_labels(edges: Sequence[float]) -> list[str]:
    """Labels of the buckets `edges` make.

    >>> bucket_labels(EXPOSURE_EDGES)
    ['< 1 bit', '1-2 bits', '2-4 bits', '>= 4 bits']
    """
    if not edges:
        return ["any"]
    unit = lambda x: f"{x:g} bit" + ("" if x == 1 else "s")  # noqa: E731
    return ([f"< {unit(edges[0])}"] + [f"{a:g}-{unit(b)}" for a, b in zip(edges, edges[1:])]
            + [f">= {unit(edges[-1])}"])


def exposure_bucket(bits: float | None, edges: Sequence[float]) -> str | None:
    """The label of the bucket that holds an exposure of `bits`; None when not measured.

    >>> [exposure_bucket(b, EXPOSURE_EDGES) for b in (0.0, 0.99, 1.0, 3.99, 4.0, 16.6, None)]
    ['< 1 bit', '< 1 bit', '1-2 bits', '2-4 bits', '>= 4 bits', '>= 4 bits', None]
    """
    if bits is None or (isinstance(bits, float) and math.isnan(bits)):
        return None
    return bucket_labels(edges)[sum(bits >= e - EPS for e in edges)]


def public_exposure(e: dict | None, threshold: float) -> dict | None:
    """The stored form of an exact exposure (`exposure`'s output): a bucket, pass/fail, memorised; no bits."""
    if not isinstance(e, dict) or "rank_bits" not in e:
        return e
    bits = e["rank_bits"]
    cur, orc, bef = bits.get("current"), bits.get("oracle"), bits.get("before")
    space = e.get("space") or e["candidates"] + 1  # a format-1 summary did not name it: the ranked ones
    return {"candidates": e["candidates"], "space": space, "bucket": exposure_bucket(cur, bucket_edges(space)),
            "bucket_before": exposure_bucket(bef, bucket_edges(space)),
            "passed": None if cur is None or orc is None else exposure_passed(cur, orc, threshold),
            "threshold_bits": threshold,
            "memorised_before": None if bef is None or orc is None else bef >= orc + MEMORISED_BITS - EPS,
            "memorised_bits": MEMORISED_BITS}


def _coarse(v, shown: bool, kl: bool = False):
    if not shown or v is None:
        return None
    if kl:
        return float(f"{v:.{KL_DIGITS}g}")
    return round(float(v), SET_DECIMALS) + 0.0  # + 0.0: no "-0.0"


def public_summary(s: dict | None, thresholds: metrics.Thresholds | None = None) -> dict | None:
    """What may be stored, printed or plotted of the summary `s`: an exact one (`Verification.exact`) or a
    stored format-1 one; a format-2 summary is returned as it is. See the module docstring."""
    if not isinstance(s, dict) or s.get("format") != EXACT_FORMAT:
        return s
    th = thresholds or metrics.Thresholds()
    out = copy.deepcopy(s)
    out["format"] = FORMAT
    n = (s.get("counts") or {}).get("forgotten") or 0
    shown = n >= MIN_SET
    if isinstance(out.get("mia_auc"), dict):
        out["mia_auc"] = {k: _coarse(v, shown) for k, v in out["mia_auc"].items()}
    if isinstance(out.get("lira_auc"), dict):
        out["lira_auc"] = {k: v if k == "pairs" else _coarse(v, shown) for k, v in out["lira_auc"].items()}
    if isinstance((out.get("accuracy") or {}).get("forgotten"), dict):
        out["accuracy"]["forgotten"] = {k: _coarse(v, shown) for k, v in out["accuracy"]["forgotten"].items()}
    for by in (out.get("kl") or {}).values():
        if isinstance(by, dict) and "forgotten" in by:
            by["forgotten"] = _coarse(by["forgotten"], shown, kl=True)
    for name, row in (out.get("verdict") or {}).items():
        if name in FORGOTTEN_ROWS:
            row.update({k: _coarse(row.get(k), shown) for k in ("value", "oracle", "checked")})
            if isinstance(row.get("interval"), list):
                row["interval"] = [_coarse(x, shown) for x in row["interval"]]
        elif name == "relearn_exposure_gap_bits":  # bits would rank the canary: pass / fail only
            row.update({"value": None, "oracle": None, "checked": None})
        elif name == "exposure_gap_bits":
            row.update({"value": None, "oracle": None, "checked": None})
            if s.get("exposure") and s["exposure"].get("rank_bits"):  # format 1 judged |gap|: judge it again
                r = s["exposure"]["rank_bits"]
                if r.get("current") is not None and r.get("oracle") is not None:
                    row["passed"] = exposure_passed(r["current"], r["oracle"], row.get("threshold", th.exposure_gap_bits))
    if isinstance(out.get("model_diff"), dict):
        out["model_diff"] = {m: {k: _coarse(v, shown) if isinstance(v, float) else v for k, v in f.items()}
                             for m, f in out["model_diff"].items()}
    if isinstance(out.get("relearn"), dict):
        out["relearn"] = public_relearn(out["relearn"], shown)
    pe = out.get("per_example")
    if isinstance(pe, dict):
        for key in ("u_lira", "challenge"):
            if isinstance(pe.get(key), dict):
                pe[key] = {k: _coarse(v, shown) if isinstance(v, float) else v for k, v in pe[key].items()}
    thr = (s.get("verdict") or {}).get("exposure_gap_bits", {}).get("threshold", th.exposure_gap_bits)
    out["exposure"] = public_exposure(s.get("exposure"), thr)
    out["forgotten_figures"] = (f"rounded ({n} attacked, >= {MIN_SET})" if shown else
                                f"withheld ({n} attacked, fewer than {MIN_SET}: one utterance's loss would show)")
    if isinstance(out.get("verdict"), dict) and "passed" in out:
        version_ok = out.get("state") != "exact" or (out.get("version") or {}).get("equal", True)
        out["passed"] = all(r.get("passed") for r in out["verdict"].values()) and bool(version_ok)
    if isinstance(out.get("at_forget"), dict):
        out["at_forget"] = public_summary(out["at_forget"], thresholds)
    return out


RELEARN_BITS = ("exposure_before", "exposure_after", "exposure_after_gap_bits", "exposure_recovered_bits")


def public_relearn(r: dict, shown: bool) -> dict:
    """The stored form of the relearning attack's figures: losses over the forgotten set coarse (withheld
    below MIN_SET), no exposure in bits (it would rank the canary), its pass / fail kept."""
    out = {k: v for k, v in r.items() if k not in RELEARN_BITS and k != "models"}
    after = ((r.get("models") or {}).get("current") or {}).get("exposure_after")
    if after is not None and r.get("candidates"):
        out["bucket_after_attack"] = exposure_bucket(after, bucket_edges(r["candidates"] + 1))
    for k in ("loss_gap_after", "loss_recovered", "recovered_fraction"):
        out[k] = _coarse(r.get(k), shown)
    out["models"] = {m: {k: _coarse(v, shown) for k, v in f.items() if k not in RELEARN_BITS}
                     for m, f in (r.get("models") or {}).items()}
    return out


def verdict(current: dict, oracle: dict, thresholds: metrics.Thresholds) -> tuple[list, list[str]]:
    """metrics.summarize_verdict over the metrics that were measured; (rows, names of the rows skipped)."""
    measured = {k for k in metrics.METRIC_KEYS if current.get(k) is not None and oracle.get(k) is not None}
    fill = lambda d: {k: d[k] if k in measured else PLACEHOLDER[k] for k in metrics.METRIC_KEYS}  # noqa: E731
    rows = metrics.summarize_verdict(fill(current), fill(oracle), thresholds)
    kept = [r for r in rows if ROW_METRIC[r.name] in measured]
    return kept, [r.name for r in rows if r not in kept]


def public_verification(v):
    """A receipt's "verification" field as it may be shown: a format-1 one (exact exposure figures, written
    before issue 15) coarsened to format 2; anything else as it is. For `history` and other readers."""
    if not isinstance(v, dict) or v.get("format") != EXACT_FORMAT:
        return v
    audits = v.get("audits") if isinstance(v.get("audits"), list) else []
    return {"format": FORMAT, "at_forget": public_summary(v.get("at_forget")),
            "audits": [public_summary(a) for a in audits]}


def attach(root, receipt_id: str, summary: dict, at_forget: bool) -> None:
    """Record `summary` in the receipt's verification: as the forget-time one, or appended to its audits."""
    summary = public_summary(summary)  # never an exact figure, whatever the caller passes
    prev = next((r.get("verification") for r in receipts.read_all(root) if r.get("id") == receipt_id), None)
    prev = public_verification(prev)  # format 1 coarsened
    prev = prev if isinstance(prev, dict) and prev.get("format") == FORMAT else {}
    audits = prev.get("audits") if isinstance(prev.get("audits"), list) else []
    new = {"format": FORMAT, "at_forget": summary if at_forget else prev.get("at_forget"),
           "audits": list(audits) + ([] if at_forget else [summary])}
    receipts.attach_verification(root, receipt_id, new)


def verify_forget(eng: Engine, sel: Selector, mode: str = "fast", cfg: VerifyConfig = VerifyConfig(), *,
                  unseen: Sequence[Labeled] | None = None, canary: str | None = None, exclude: Sequence[str] = (),
                  kind: str = "forget", oracle: Replay | None = None, executor=None,
                  progress=None) -> tuple[dict, Verification]:
    """Forget what `sel` names and verify it while its utterances are still in memory; (receipt, verification).

    The caller holds the device lock and has run `forget.recover` (api.session does both). `oracle`: the
    exact replay of an identical device for the same selector, to reuse (benchmarks vary only the repair).
    `executor` trains the per-example attacks' populations (core/executor.py; default: a local pool).
    """
    plan = make_plan(eng, sel, mode)
    rows = sel.match(eng.store)  # memory only, dropped on return
    forgotten = [(u.text, u.intent) for u in rows]
    before = copy.deepcopy(eng.model) if plan.trained else None
    receipt = forget(eng, sel, mode, progress)
    replay = oracle or exact_replay(eng, plan.trained[0] if plan.trained else None, progress)
    day = plan.trained[0] if len(plan.trained) == 1 else None
    ver = evaluate(eng, replay, cfg, kind=kind, tier=receipt["tier"], forgotten=forgotten, unseen=unseen,
                   before=before, canary=canary, exclude=exclude, day=day,
                   rows=[u for u in rows if u.local_date == day], plan=plan, executor=executor)
    attach(eng.dev.root, receipt["id"], ver.summary, at_forget=True)
    return receipt, ver


def what_if(root, day: str, cfg: VerifyConfig = VerifyConfig(), *, unseen: Sequence[Labeled] | None = None,
            canary: str | None = None, exclude: Sequence[str] = (), progress=None) -> Verification:
    """Verify a fast forget of `day` on a copy of the device in DIR/.work/whatif-*/ (removed on return, by the
    next recovery if this process dies, by any forget in the meantime); the device is not otherwise changed."""
    dev = Device.open(root)
    with workdir.working_copy(dev.root, "whatif") as tmp:
        copy_root = tmp / "device"
        with dev.locked():
            shutil.copytree(dev.root, copy_root, symlinks=True, ignore=_not_copied(dev.root))
        crashpoints.hit("verify.copy_made")
        with session(copy_root) as eng:
            _, ver = verify_forget(eng, Selector("date", day, day), "fast", cfg, unseen=unseen, canary=canary,
                                   exclude=exclude, kind="what_if", progress=progress)
    return ver


def _not_copied(root: Path):
    """copytree's `ignore`: the device's lock and its work area (where the copy itself goes) stay behind."""
    top = Path(root).resolve()

    def ignore(folder: str, names: list[str]) -> set[str]:
        return {workdir.WORK, ".lock"} & set(names) if Path(folder).resolve() == top else set()
    return ignore


def audit(eng: Engine, receipt: dict, cfg: VerifyConfig = VerifyConfig(), *, unseen: Sequence[Labeled] | None = None,
          canary: str | None = None, progress=None) -> Verification:
    """Check a past forget: the current model against a fresh oracle; appends the summary to the receipt."""
    days = sorted(receipt.get("days") or {})
    replay = exact_replay(eng, days[0] if days else None, progress)
    ver = evaluate(eng, replay, cfg, kind="audit", tier=receipt.get("tier", "?"), unseen=unseen, canary=canary,
                   day=days[0] if len(days) == 1 else None)
    stored = receipt.get("verification")
    at_forget = public_summary(stored.get("at_forget")) if isinstance(stored, dict) else None
    for s in (ver.exact, ver.summary):
        s["receipt"] = receipt["id"]
    attach(eng.dev.root, receipt["id"], dict(ver.summary), at_forget=False)
    ver.summary["at_forget"] = ver.exact["at_forget"] = at_forget  # shown, not stored again in the audit
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
    elif cfg.canary_format is not None:
        raise BadInput("--canary-format needs --canary: the format says how to rank a canary the user names")
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
