"""Per-example privacy attacks on a forget: U-LiRA and the NeurIPS 2023 unlearning challenge's epsilon score.

Population attacks (metrics.loss_threshold_mia_auc, a LiRA AUC pooled over a day) ask whether forgotten
utterances *as a set* look unseen; an attacker who targets one utterance does better, because each one has
its own difficulty. Both attacks here calibrate per example, from many models:

  method models  K models that forgot the example with the method under test (fast, a baseline, ...)
  oracle models  K exact oracles, never trained on it (the exact tier retrains them cheaply)

Inputs are (N, K) statistics, row i = forgotten example i, column j = model j; a column is normally one model
(all rows of a column come from the same model), which matters only for leave-one-out below. The statistic is
the caller's: logit-scaled confidence (metrics.logit_confidence), minus the LM loss, ... Pure numpy, no I/O;
tests/verify/test_privacy.py checks each function against a slow reference that follows the definition
literally, on tiny inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.errors import BadInput
from . import metrics

DELTA = 1e-5  # the challenge's delta (google-deepmind/unlearning_evaluation, metric.py DELTA)
EPSILON_CAP = 50.0  # the challenge's largest epsilon (metric.py EPSILON_CAP)
PEAKY_RATIO = 0.01  # range ratio below which one side counts as a point mass (metric.py, _get_epsilons)
BUFFER = 2.0  # slack of the two-threshold rule's interval, in statistic units (metric.py, buffer)
BUCKET = 0.5  # width of the score's epsilon buckets (metric.py, bucket_size)


def _pools(method: Any, oracle: Any, least: int) -> tuple[np.ndarray, np.ndarray]:
    """(method, oracle) statistics as finite (N, K) float arrays with the same N and K >= `least`."""
    m = metrics._array(method, "method_stats", 2, None, least)  # (N, K_m)
    o = metrics._array(oracle, "oracle_stats", 2, len(m), least)  # (N, K_o)
    return m, o


def tpr_at_fpr(scores_pos: Any, scores_neg: Any, fpr: float = 0.01) -> float:
    """Largest true-positive rate of a threshold attack "score >= t => positive" whose false-positive rate
    is at most `fpr` (Carlini et al. 2022, "Membership inference attacks from first principles", sec. 4:
    report TPR at a low fixed FPR, not only an AUC). No interpolation between ROC points.

    The best such threshold lies just above the (m+1)-th highest negative, m = floor(fpr * n_neg): every
    positive strictly above it is flagged, and at most m negatives are.

    >>> tpr_at_fpr([5, 4, 1], [3, 2, 0, -1], fpr=0.25)  # one false positive allowed: flag > 2
    0.6666666666666666
    """
    pos = metrics._array(scores_pos, "scores_pos")  # (n,)
    return float(np.mean(pos > _cut(metrics._array(scores_neg, "scores_neg"), fpr)))


def _cut(neg: np.ndarray, fpr: float) -> float:
    """The score above which at most floor(fpr * n_neg) of `neg` lie: its (m+1)-th highest; -inf at fpr = 1."""
    if isinstance(fpr, bool) or not isinstance(fpr, (int, float)) or not 0 <= fpr <= 1:
        raise BadInput(f"fpr must be a rate in [0, 1], got {fpr!r}")
    allowed = math.floor(fpr * neg.size + 1e-9)  # false positives allowed (the slack absorbs 0.01 * 300 rounding)
    return -math.inf if allowed >= neg.size else float(np.sort(neg, axis=None)[neg.size - 1 - allowed])


@dataclass(frozen=True)
class ULira:
    """Per-example U-LiRA against a method: what an attacker who targets single forgotten examples achieves."""

    method_scores: np.ndarray  # (N, K_m) likelihood ratio of method model j on example i (held out)
    oracle_scores: np.ndarray  # (N, K_o) the same for oracle j: the attack's negatives
    threshold: float  # flag "forgotten by the method" when a score is above this (FPR <= fpr over oracles)
    fpr: float  # the false-positive rate the threshold is set at
    tpr: float  # fraction of (method model, example) pairs flagged: forgotten examples identified
    per_example: np.ndarray  # (N,) fraction of method models in which example i is flagged
    auc: float  # ROC AUC of method vs oracle scores over all pairs (0.5 = indistinguishable)

    def figures(self) -> dict:
        """The summary figures (floats), for a report: tpr, fpr, auc, the worst example's rate, N and K."""
        return {"tpr": self.tpr, "fpr": self.fpr, "auc": self.auc, "worst_example": float(self.per_example.max()),
                "examples": int(self.per_example.size), "method_models": int(self.method_scores.shape[1]),
                "oracle_models": int(self.oracle_scores.shape[1])}


def u_lira(method_stats: Any, oracle_stats: Any, fpr: float = 0.01, fixed_variance: bool = True,
           eps: float = 1e-6) -> ULira:
    """U-LiRA (Hayes et al. 2024, "Inexact unlearning needs more careful evaluations to avoid a false sense of
    privacy", sec. 4): per-example likelihood ratio between models that forgot an example and models never
    trained on it, and the fraction of forgotten examples an attacker identifies at a fixed false-positive rate.

    method_stats (N, K_m), oracle_stats (N, K_o): the statistic of each forgotten example under K_m models
    that forgot it with the method under test and K_o exact oracles (K >= 3 each). The design followed:

    - Targets are drawn from the same pools, leave-one-out: each of the K_m + K_o models (column) is the
      target once; the per-example Gaussians N(mu_method_i, s_i^2) and N(mu_oracle_i, s_i^2) are fitted on the
      other models, so a target never calibrates its own test (Hayes et al. hold targets out of the shadows
      likewise). Its score is metrics.lira_scores: log N(x; method) - log N(x; oracle) per example, with
      one variance per side pooled over examples (`fixed_variance`, the default: the LiRA paper's advice for
      small K; per-example variances from a few models have heavy tails that hide even large shifts at a
      low FPR) or per-example variances, plus `eps`.
    - Positives are (method model, example) pairs, negatives (oracle, example) pairs. The threshold is the
      lowest that flags at most `fpr` of the negatives (tpr_at_fpr); `tpr` is the fraction of positives
      flagged: the forgotten examples identified, averaged over the method's models. An exact forget is an
      oracle, so its `tpr` is at most `fpr` up to sampling noise; Hayes et al. report the attack's accuracy
      and this rate at a low FPR.

    >>> r = u_lira([[5.0, 5.1, 4.9, 5.2]] * 3, [[0.0, 0.1, -0.1, 0.2]] * 3, fpr=0.0)
    >>> r.tpr, r.auc, r.per_example.tolist()
    (1.0, 1.0, [1.0, 1.0, 1.0])
    """
    m, o = _pools(method_stats, oracle_stats, 3)
    pos = np.stack([metrics.lira_scores(m[:, j], np.delete(m, j, axis=1), o, fixed_variance, eps)
                    for j in range(m.shape[1])], axis=1)  # (N, K_m)
    neg = np.stack([metrics.lira_scores(o[:, j], m, np.delete(o, j, axis=1), fixed_variance, eps)
                    for j in range(o.shape[1])], axis=1)  # (N, K_o)
    cut = _cut(neg, fpr)
    flagged = pos > cut  # (N, K_m)
    return ULira(pos, neg, cut, float(fpr), float(flagged.mean()), flagged.mean(axis=1),
                 metrics.roc_auc(pos.ravel(), neg.ravel()))


# ----- the NeurIPS 2023 machine-unlearning challenge -----

def _rates_epsilon(fpr: np.ndarray, fnr: np.ndarray, delta: float) -> np.ndarray:
    """Epsilon each decision rule shows, or NaN where the challenge discards it (metric.py, _get_epsilons).

    (eps, delta)-indistinguishability bounds every test by FPR + e^eps FNR >= 1 - delta and the same with
    FPR and FNR swapped, so a rule shows eps >= max(log((1 - delta - FPR) / FNR), log((1 - delta - FNR) / FPR)),
    clipped at 0. FPR = FNR = 0 is perfect separation (inf); exactly one of them 0 is taken as too few models
    to tell, and discarded; so is a rule whose two ratios are both <= 0 (log of a non-positive number).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(fnr > 0, (1 - delta - fpr) / fnr, np.nan)
        b = np.where(fpr > 0, (1 - delta - fnr) / fpr, np.nan)
        best = np.fmax(a, b)  # NaN only where both are
        eps = np.where(best > 0, np.maximum(np.log(np.where(best > 0, best, 1.0)), 0.0), np.nan)
    eps = np.where((fpr > 0) & (fnr > 0), eps, np.nan)
    return np.where((fpr == 0) & (fnr == 0), math.inf, eps)


def _run_counts(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of x and, per value, how many positives (labels True) and negatives equal it."""
    values, inverse = np.unique(x, return_inverse=True)
    pos = np.bincount(inverse, weights=labels, minlength=values.size)
    return values, np.stack([pos, np.bincount(inverse, minlength=values.size) - pos])  # (V,), (2, V)


def example_epsilon(unlearned: Any, retrained: Any, delta: float = DELTA, buffer: float = BUFFER) -> float:
    """Per-example epsilon of the NeurIPS 2023 machine-unlearning challenge (Triantafillou et al. 2024, "Are we
    making progress in unlearning? Findings from the first NeurIPS unlearning competition", sec. 3; code:
    google-deepmind/unlearning_evaluation, metric.py, compute_forget_score_from_confs and _get_epsilons).

    unlearned (N,), retrained (N,): one example's statistic under N unlearned and N retrained models. The
    largest epsilon (at `delta`) that any decision rule of two families shows between the two samples:

    - single threshold: "statistic >= t => the side with the larger median" (ties of medians: unlearned);
    - double threshold: "l <= statistic <= r => the peakier side" (smaller range; ties: the single rule's
      negative side), over the challenge's intervals: r within `buffer` of the peakier side's maximum,
      r - l within `buffer` of its range.

    The challenge searches both families on a grid (100 thresholds per unit); this takes the supremum over
    every threshold, exactly (rates only change where a threshold crosses a value; the slow reference in
    tests enumerates them), so it is at least the grid's figure on the same data. Rules are scored by
    _rates_epsilon. Special cases, as in metric.py: if one side's range is below PEAKY_RATIO of the other's,
    the method is a near point mass and gets EPSILON_CAP; two constant samples (where metric.py fails) give 0
    if equal, EPSILON_CAP if not; no surviving rule gives 0. The result is clipped to [0, EPSILON_CAP].

    >>> example_epsilon([0.0, 1.0, 2.0, 3.0], [10.0, 11.0, 12.0, 13.0])  # separated: capped
    50.0
    """
    u = metrics._array(unlearned, "unlearned")  # (N,)
    r = metrics._array(retrained, "retrained")  # (N,)
    if u.size != r.size or u.size < 2:
        raise BadInput(f"unlearned and retrained need the same number (>= 2) of models, got {u.size} and {r.size}")
    if not 0 <= delta < 1 or not 0 <= buffer < math.inf:
        raise BadInput(f"delta must be in [0, 1) and buffer >= 0, got {delta!r} and {buffer!r}")
    ranges = np.ptp(u), np.ptp(r)
    if max(ranges) == 0:
        return 0.0 if u[0] == r[0] else EPSILON_CAP
    if min(ranges) / max(ranges) < PEAKY_RATIO:
        return EPSILON_CAP
    n = u.size
    # single threshold: positive = the larger median; a threshold at every distinct value
    pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
    values, counts = _run_counts(np.concatenate([pos, neg]), np.arange(2 * n) < n)  # (V,), (2, V)
    above = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]  # (2, V) positives / negatives >= each value
    single = _rates_epsilon(above[1] / n, 1 - above[0] / n, delta)  # (V,)
    # double threshold: positive = the peakier side; every run values[i..j] that an allowed [l, r] holds
    if np.ptp(pos) >= np.ptp(neg):
        pos, neg = neg, pos
    width, top = float(np.ptp(pos)), float(pos.max())
    values, counts = _run_counts(np.concatenate([pos, neg]), np.arange(2 * n) < n)  # (V,), (2, V)
    i, j = np.triu_indices(values.size)  # (R,) each: the run values[i..j]
    below = np.r_[-math.inf, values][i]  # [l, r] holds exactly the run iff l in (below, values[i]] ...
    after = np.r_[values, math.inf][j + 1]  # ... and r in [values[j], after)
    # r in [top - buffer, top + buffer], and an l in the run's range with r - l in [width -+ buffer]:
    # r > below + width - buffer and r <= values[i] + width + buffer
    lo_closed, lo_open = np.maximum(values[j], top - buffer), below + width - buffer  # (R,) each
    hi_open, hi_closed = np.where(after <= top + buffer, after, math.inf), np.minimum(top + buffer,
                                                                                     values[i] + width + buffer)
    lo, hi = np.maximum(lo_closed, lo_open), np.minimum(hi_open, hi_closed)  # (R,) each
    ok = (lo < hi) | ((lo == hi) & (lo_open < lo_closed) & (hi_closed < hi_open))  # closed at both ends
    cum = np.cumsum(np.pad(counts, ((0, 0), (1, 0))), axis=1)  # (2, V+1) counts below each value
    tp, fp = (cum[:, j + 1] - cum[:, i])[:, ok]  # (R',) each: positives / negatives in the run
    double = _rates_epsilon(fp / n, 1 - tp / n, delta)  # (R',)
    eps = np.concatenate([single, double])
    eps = eps[~np.isnan(eps)]
    return float(np.clip(eps.max(), 0.0, EPSILON_CAP)) if eps.size else 0.0


def bucket_points(models: int) -> list[tuple[float, float]]:
    """The challenge's score buckets for N models per side: [(lower edge, points)], widths BUCKET.

    Epsilon in [0, 0.5) earns 1 point, [0.5, 1) 1/2, each further bucket half the last, up to
    ceil(ln(N - 1)), the largest epsilon N samples per side can show (metric.py); beyond it, 0.

    >>> bucket_points(8)  # ceil(ln 7) = 2
    [(0.0, 1.0), (0.5, 0.5), (1.0, 0.25), (1.5, 0.125)]
    """
    if isinstance(models, bool) or not isinstance(models, int) or models < 3:
        raise BadInput(f"the challenge score needs >= 3 models per side (ln(N - 1) > 0), got {models!r}")
    top = math.ceil(math.log(models - 1))
    return [(k * BUCKET, 0.5 ** k) for k in range(int(round(top / BUCKET)))]


def example_points(eps: float, models: int) -> float:
    """Points one example's epsilon earns in the challenge's score (bucket_points).

    >>> example_points(0.2, 8), example_points(1.2, 8), example_points(2.0, 8)
    (1.0, 0.25, 0.0)
    """
    return next((p for lo, p in bucket_points(models) if eps < lo + BUCKET), 0.0)


@dataclass(frozen=True)
class ChallengeScore:
    """The NeurIPS 2023 challenge's forgetting quality of a method, with its per-example epsilons."""

    epsilons: np.ndarray  # (N,) per-example epsilon at `delta`
    points: np.ndarray  # (N,) bucketed points of each example (1 = indistinguishable from retraining)
    quality: float  # mean points: the challenge's "forgetting quality", in [0, 1]
    models: int  # models per side
    delta: float

    def figures(self) -> dict:
        """The summary figures (floats), for a report."""
        return {"quality": self.quality, "median_epsilon": float(np.median(self.epsilons)),
                "max_epsilon": float(self.epsilons.max()), "examples": int(self.epsilons.size),
                "models": self.models, "delta": self.delta}


def challenge_score(method_stats: Any, oracle_stats: Any, delta: float = DELTA) -> ChallengeScore:
    """Forgetting quality of the NeurIPS 2023 unlearning challenge (metric.py, compute_forget_score_from_confs):
    the mean over forgotten examples of the bucketed points of each example's epsilon (example_epsilon)
    between N models that forgot it with the method and N exact oracles (the challenge used N = 512 and
    logit-scaled confidences). Row i of each (N_examples, N) array is example i.

    >>> s = challenge_score([[0.0, 1.0, 2.0, 3.0]], [[0.5, 1.5, 2.5, 3.4]])  # 4 models: buckets up to 2
    >>> s.quality, s.epsilons.round(3).tolist()  # ">= 2.5 => retrained": 2 of 4 vs 1 of 4, ln 2
    (0.5, [0.693])
    """
    m, o = _pools(method_stats, oracle_stats, 3)
    if m.shape != o.shape:
        raise BadInput(f"method_stats and oracle_stats need the same number of models, got {m.shape} and {o.shape}")
    eps = np.array([example_epsilon(m[i], o[i], delta) for i in range(len(m))])  # (N,)
    points = np.array([example_points(e, m.shape[1]) for e in eps])  # (N,)
    return ChallengeScore(eps, points, float(points.mean()), int(m.shape[1]), float(delta))


def utility_adjusted(quality: float, method_retain: float, oracle_retain: float, method_test: float,
                     oracle_test: float) -> float:
    """The challenge's final score: forgetting quality x (retain accuracy ratio) x (test accuracy ratio), each
    ratio the method's mean accuracy over the oracles' (unlearning_evaluation, main.py).

    >>> utility_adjusted(0.5, 0.9, 1.0, 0.8, 0.8)
    0.45
    """
    if not 0 < oracle_retain <= 1 or not 0 < oracle_test <= 1:
        raise BadInput(f"oracle accuracies must be in (0, 1], got {oracle_retain!r} and {oracle_test!r}")
    return float(quality * (method_retain / oracle_retain) * (method_test / oracle_test))
