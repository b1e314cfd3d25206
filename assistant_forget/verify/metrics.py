"""Privacy and quality metrics that show a forget happened: AUC, loss-threshold MIA, LiRA, exposure, KL, verdict.

Pure functions over numpy arrays (no torch, no I/O), so the same code scores PyTorch and exported-model
outputs (DESIGN invariant 7); tests/verify/test_metrics.py checks each against a slow, obviously correct reference.
Scores: higher = "more likely a member". Losses and perplexities: lower = the model prefers the text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.errors import BadInput
from ..core.numerics import log_softmax  # noqa: F401  (part of this module's API)

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(32)  # Gauss-Legendre rule on [-1, 1], per panel
_HALF = np.logspace(-30, -1, 30, base=2.0)  # (30,) 2^-30 .. 1/2
_EDGES = np.concatenate([[0.0], _HALF, 1.0 - _HALF[-2::-1], [1.0]])  # (61,) panel edges graded to both ends
MAX_SKEWNESS = 0.99  # moment skewness is clipped below the skew-normal family's limit (~0.9953)
METRIC_KEYS = ("mia_auc", "lira_auc", "accuracy", "exposure_bits")  # what summarize_verdict reads


def _array(x: Any, name: str, ndim: int = 1, rows: int | None = None, min_cols: int = 1) -> np.ndarray:
    """`x` as a finite, non-empty float64 array with `ndim` dims ((rows, >= min_cols) if 2-D), else BadInput."""
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadInput(f"{name} must be a rectangular array of numbers, got {type(x).__name__}") from None
    if a.ndim != ndim or a.size == 0 or (ndim == 2 and (a.shape[0] != (rows or a.shape[0]) or a.shape[1] < min_cols)):
        want = "a non-empty 1-D array" if ndim == 1 else f"a 2-D array of shape ({rows or 'N'}, >= {min_cols})"
        raise BadInput(f"{name} must be {want}, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise BadInput(f"{name} contains NaN or infinite values; drop or clip them first "
                       "(logit_confidence clips probabilities)")
    return a


def roc_auc(scores_pos: Any, scores_neg: Any) -> float:
    """ROC AUC = P(pos > neg) + P(pos = neg)/2, the Mann-Whitney U statistic over n_pos * n_neg.

    Each positive's rank among the sorted negatives is found by binary search: O((n+m) log m), exact.

    >>> roc_auc([3, 2], [1, 0])
    1.0
    >>> roc_auc([1, 2], [2, 1])
    0.5
    """
    pos = _array(scores_pos, "scores_pos")  # (n,)
    neg = np.sort(_array(scores_neg, "scores_neg"))  # (m,)
    below = np.searchsorted(neg, pos, side="left")  # (n,) negatives strictly below each positive
    ties = np.searchsorted(neg, pos, side="right") - below  # (n,) negatives equal to each positive
    return float((below.sum() + 0.5 * ties.sum()) / (pos.size * neg.size))


def roc_curve(scores_pos: Any, scores_neg: Any) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) from (0, 0) to (1, 1), one point per distinct threshold; its trapezoid area is roc_auc.

    >>> fpr, tpr = roc_curve([3, 2], [2, 0])  # the tie at 2 gives a diagonal step
    >>> fpr.tolist(), tpr.tolist()
    ([0.0, 0.0, 0.5, 1.0], [0.0, 0.5, 1.0, 1.0])
    """
    pos, neg = _array(scores_pos, "scores_pos"), _array(scores_neg, "scores_neg")
    scores = np.concatenate([pos, neg])  # (n+m,)
    order = np.argsort(-scores, kind="stable")
    last = np.r_[np.flatnonzero(np.diff(scores[order])), scores.size - 1]  # (T,) last index per distinct score
    tp = np.cumsum(order < pos.size)[last]  # (T,) positives scoring >= each threshold
    fp = last + 1 - tp  # (T,) negatives scoring >= each threshold
    return np.r_[0.0, fp / neg.size], np.r_[0.0, tp / pos.size]


def loss_threshold_mia_auc(member_losses: Any, nonmember_losses: Any) -> float:
    """AUC of the attack "lower loss => member" (Yeom et al. 2018); 0.5 = members look like unseen data.

    After a forget, "members" are the forgotten utterances and non-members unseen ones from the same personas.

    >>> loss_threshold_mia_auc([0.1, 0.2], [0.9, 1.5])
    1.0
    """
    return roc_auc(-_array(member_losses, "member_losses"), -_array(nonmember_losses, "nonmember_losses"))


def logit_confidence(p: Any, eps: float = 1e-12) -> np.ndarray:
    """LiRA's statistic log(p / (1 - p)) of the true-label probability p (any shape), clipped to [eps, 1-eps].

    The logit makes the confidence roughly Gaussian across shadow models (Carlini et al. 2022).

    >>> logit_confidence([0.5, 0.9, 1.0]).round(4).tolist()
    [0.0, 2.1972, 27.631]
    """
    a = np.asarray(p, dtype=np.float64)
    flat = _array(a.ravel(), "p")
    if flat.min() < 0.0 or flat.max() > 1.0:
        raise BadInput(f"p must be probabilities in [0, 1], got values in [{flat.min()}, {flat.max()}]")
    q = np.clip(a, eps, 1.0 - eps)
    return np.log(q) - np.log1p(-q)


def _gaussian_log_pdf(x: np.ndarray, stats: np.ndarray, fixed_variance: bool, eps: float) -> np.ndarray:
    """log N(x_i; mean_i, var_i + eps) with mean and unbiased variance of row i of (N, K) stats (pooled if fixed)."""
    mu = stats.mean(axis=1)  # (N,)
    dev2 = (stats - mu[:, None]) ** 2  # (N, K)
    var = dev2.sum() / (dev2.size - len(mu)) if fixed_variance else dev2.sum(axis=1) / (stats.shape[1] - 1)
    var = var + eps  # () or (N,)
    return -0.5 * (np.log(2 * np.pi * var) + (x - mu) ** 2 / var)  # (N,)


def lira_scores(target_stat: Any, in_stats: Any, out_stats: Any, fixed_variance: bool = False,
                eps: float = 1e-6) -> np.ndarray:
    """Online LiRA (Carlini et al. 2022): log N(x; mu_in, s_in^2) - log N(x; mu_out, s_out^2) per example.

    target_stat (N,): the target model's statistic (logit_confidence or -loss); in_stats (N, K_in) and
    out_stats (N, K_out): the same from shadow models trained with / without each example (K >= 2).
    Means are sample means; variances are unbiased per example or, with fixed_variance, the within-example
    variance pooled over all examples (the paper's advice for small K). eps is added to every variance so
    constant shadow statistics stay finite. Higher = more likely a member.

    >>> lira_scores([1.0, 0.0], [[0.9, 1.1], [0.9, 1.1]], [[-0.1, 0.1], [-0.1, 0.1]]).round(1).tolist()
    [25.0, -25.0]
    """
    x = _array(target_stat, "target_stat")  # (N,)
    s_in = _array(in_stats, "in_stats", 2, x.size, 2)  # (N, K_in)
    s_out = _array(out_stats, "out_stats", 2, x.size, 2)  # (N, K_out)
    if not eps > 0:
        raise BadInput(f"eps must be > 0 to keep variances positive, got {eps}")
    return _gaussian_log_pdf(x, s_in, fixed_variance, eps) - _gaussian_log_pdf(x, s_out, fixed_variance, eps)


def lira_auc(scores_of_members: Any, scores_of_nonmembers: Any) -> float:
    """AUC of LiRA's likelihood-ratio scores, members (e.g. forgotten utterances) vs non-members.

    >>> lira_auc([2.0, 0.5], [0.5, -1.0])
    0.875
    """
    return roc_auc(scores_of_members, scores_of_nonmembers)


def exposure_rank(canary_score: float, candidate_scores: Any) -> float:
    """Canary exposure log2|R| - log2 rank (Carlini et al. 2019); scores are losses (lower = preferred).

    candidate_scores are the other candidates (not the canary), so |R| = len(candidate_scores) + 1 and
    rank = 1 + #candidates with a strictly lower score. Ties count in the canary's favour: the reported
    exposure is the highest the scores allow, the conservative choice for a privacy audit.

    >>> exposure_rank(0.1, [1.0, 2.0, 3.0])  # best of 4
    2.0
    >>> exposure_rank(2.0, [1.0, 2.0, 3.0])  # rank 2 of 4: the tie is not counted
    1.0
    """
    c = _array([canary_score], "canary_score")[0]
    cand = _array(candidate_scores, "candidate_scores")  # (M,)
    return math.log2(cand.size + 1) - math.log2(1 + int(np.count_nonzero(cand < c)))


def _decreasing_integral(h: Any, a: Any, b: Any) -> np.ndarray:
    """Elementwise integral of exp(-h^2 / (2 cos^2 t)) over [a, b], 0 <= a <= b <= pi/2 (peak at a), broadcast.

    Composite Gauss-Legendre on panels whose widths double away from both ends, so a sharp peak at a
    (large |h|) or a sharp drop near pi/2 (small |h|) is resolved to relative precision.
    """
    h, a, b = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (h, a, b)))
    hs, lo, width = h.ravel(), a.ravel(), (b - a).ravel()  # (n,)
    out = np.empty(hs.size)  # (n,)
    for i in range(0, hs.size, 1024):  # chunks keep the (chunk, P, Q) temporaries near 16 MB
        c = slice(i, i + 1024)
        edges = lo[c, None] + width[c, None] * _EDGES  # (c, P+1)
        mid, half = (edges[:, 1:] + edges[:, :-1]) / 2, (edges[:, 1:] - edges[:, :-1]) / 2  # (c, P)
        t = mid[..., None] + half[..., None] * _NODES  # (c, P, Q)
        f = np.exp(-0.5 * hs[c, None, None] ** 2 / np.cos(t) ** 2)  # (c, P, Q)
        out[c] = ((f @ _WEIGHTS) * half).sum(axis=-1)
    return out.reshape(h.shape)


def owens_t(h: Any, a: Any) -> np.ndarray:
    """Owen's T(h, a) = 1/(2 pi) int_0^a exp(-h^2 (1 + x^2) / 2) / (1 + x^2) dx, vectorised.

    With x = tan(t) this is 1/(2 pi) int_0^atan(a) exp(-h^2 / (2 cos^2 t)) dt, integrated numerically.

    >>> round(float(owens_t(0.0, 1.0)), 12)  # atan(1) / (2 pi)
    0.125
    """
    t = np.arctan(np.asarray(a, dtype=np.float64))
    return np.sign(t) * _decreasing_integral(h, 0.0, np.abs(t)) / (2 * np.pi)


def skew_normal_cdf(x: Any, loc: float, scale: float, alpha: float) -> np.ndarray:
    """Skew-normal CDF Phi(z) - 2 T(z, alpha), z = (x - loc) / scale, vectorised.

    Evaluated as one positive integral, using Phi(-|z|) = 2 T(z, inf): for z < 0 the CDF is
    1/pi int_atan(alpha)^(pi/2) exp(-z^2 / (2 cos^2 t)) dt, so the lower tail (what exposure needs) keeps
    relative precision instead of cancelling; for z >= 0 it is 1 minus the same with -alpha.

    >>> skew_normal_cdf([0.0, 1.0], 1.0, 2.0, 0.0).round(4).tolist()  # alpha = 0: the normal N(1, 2^2)
    [0.3085, 0.5]
    """
    if not 0 < scale < math.inf or not math.isfinite(loc) or not math.isfinite(alpha):
        raise BadInput(f"skew-normal needs finite loc and alpha and 0 < scale < inf, got {loc}, {scale}, {alpha}")
    z = (np.asarray(x, dtype=np.float64) - loc) / scale
    lo = np.where(z < 0, 1.0, -1.0) * np.arctan(alpha)  # integrate over [lo, pi/2]; the integrand is even in t
    tail = (_decreasing_integral(z, np.maximum(lo, 0), np.pi / 2)
            + _decreasing_integral(z, 0.0, np.maximum(-lo, 0))) / np.pi  # P(Z <= z) if z < 0 else P(Z > z)
    return np.where(z < 0, tail, 1.0 - tail)


def fit_skew_normal(samples: Any) -> tuple[float, float, float]:
    """Method-of-moments skew-normal fit (loc, scale, alpha) matching mean, variance and skewness.

    |skewness| is clipped to MAX_SKEWNESS, the family's limit; past it the fit saturates near a half-normal.

    >>> loc, scale, alpha = fit_skew_normal([-1.0, 0.0, 1.0])
    >>> round(abs(loc), 4), round(scale, 4), abs(alpha) < 1e-3  # symmetric data: a normal
    (0.0, 0.8165, True)
    """
    x = _array(samples, "candidate_scores")  # (M,)
    m, s = float(x.mean()), float(x.std())
    if x.size < 3 or not s > 1e-12 * max(1.0, abs(m)):
        raise BadInput(f"candidate_scores need >= 3 values with some spread to fit a distribution, got "
                       f"{x.size} with std {s:.3g}; use exposure_rank")
    g = float(np.clip(np.mean(((x - m) / s) ** 3), -MAX_SKEWNESS, MAX_SKEWNESS))
    r = abs(g) ** (2 / 3)
    delta = math.copysign(math.sqrt(math.pi / 2 * r / (r + ((4 - math.pi) / 2) ** (2 / 3))), g)
    scale = s / math.sqrt(1 - 2 * delta**2 / math.pi)
    return m - scale * delta * math.sqrt(2 / math.pi), scale, delta / math.sqrt(1 - delta**2)


def exposure_skew_normal(canary_score: float, candidate_scores: Any) -> float:
    """Exposure -log2 P(score <= canary_score) under a skew-normal fitted to the candidates' scores.

    Extrapolates exposure_rank past what a finite candidate set can show (Carlini et al. 2019, sec. 4);
    inf if the tail probability underflows.

    >>> x = np.random.default_rng(0).normal(size=100_000)
    >>> round(exposure_skew_normal(-1.6449, x), 1)  # the 5% quantile of N(0, 1): log2(20) = 4.32 bits
    4.3
    """
    c = _array([canary_score], "canary_score")[0]
    loc, scale, alpha = fit_skew_normal(candidate_scores)
    p = float(skew_normal_cdf(c, loc, scale, alpha))
    return 0.0 - math.log2(p) if p > 0 else math.inf


def accuracy(pred: Any, gold: Any) -> float:
    """Fraction of positions where pred equals gold (labels of any comparable type).

    >>> accuracy([1, 2, 3, 4], [1, 2, 0, 4])
    0.75
    """
    p, g = np.asarray(pred), np.asarray(gold)
    if p.ndim != 1 or p.shape != g.shape or p.size == 0:
        raise BadInput(f"pred and gold must be non-empty 1-D arrays of equal length, got {p.shape} and {g.shape}")
    return float(np.mean(p == g))


def kl_divergence(p: Any, q: Any, eps: float = 1e-12) -> float:
    """Mean over rows of KL(p_i || q_i) in nats for (N, C) probability rows; 0 log 0 = 0.

    Entries are clipped to eps inside the logs, so a zero in q where p > 0 costs log(p/eps), not inf.

    >>> kl_divergence([[0.5, 0.5]], [[0.5, 0.5]])
    0.0
    >>> round(kl_divergence([[1.0, 0.0]], [[0.5, 0.5]]), 4)  # log 2
    0.6931
    """
    pp = _array(p, "p", 2)  # (N, C)
    qq = _array(q, "q", 2, len(pp), pp.shape[1])  # (N, C)
    for name, a in (("p", pp), ("q", qq)):
        if a.shape != pp.shape or a.min() < 0 or not np.allclose(a.sum(axis=1), 1.0, rtol=0, atol=1e-4):
            raise BadInput(f"{name} must be {pp.shape} rows of probabilities (>= 0, summing to 1), got shape "
                           f"{a.shape}; pass softmax outputs, or logits to kl_from_logits")
    kl = (pp * (np.log(np.clip(pp, eps, 1.0)) - np.log(np.clip(qq, eps, 1.0)))).sum(axis=1)  # (N,)
    return float(kl.mean())


def kl_from_logits(logits_p: Any, logits_q: Any) -> float:
    """Mean over rows of KL(softmax(logits_p) || softmax(logits_q)) in nats, via stable log-softmax.

    >>> kl_from_logits([[0.0, 0.0], [5.0, 1.0]], [[3.0, 3.0], [5.0, 1.0]])  # logits shifted per row
    0.0
    """
    lp = log_softmax(_array(logits_p, "logits_p", 2))  # (N, C)
    lq = log_softmax(_array(logits_q, "logits_q", 2, len(lp), lp.shape[1]))  # (N, C)
    if lq.shape != lp.shape:
        raise BadInput(f"logits_q must have the shape of logits_p, {lp.shape}, got {lq.shape}")
    kl = (np.exp(lp) * (lp - lq)).sum(axis=1)  # (N,)
    return float(np.maximum(kl, 0.0).mean())  # KL >= 0: clamp the rounding of near-identical rows


@dataclass(frozen=True)
class Thresholds:
    """Targets a forget must meet against the oracle (a model retrained without the forgotten data)."""

    mia_auc_gap: float = 0.02  # max |loss-threshold MIA AUC - oracle's|, forgotten vs unseen utterances
    lira_auc: float = 0.55  # max LiRA AUC, forgotten vs unseen utterances (0.5 = chance)
    accuracy_gap_points: float = 0.5  # max |accuracy - oracle's| on held-out data, in percentage points
    exposure_gap_bits: float = 1.0  # max |canary exposure - oracle's|, in bits
    u_lira_tpr_excess: float = 0.01  # max U-LiRA TPR at its FPR above that FPR (an oracle's own rate)
    model_diff_auc_gap: float = 0.05  # max model-diff AUC above the exact forget's (before vs oracle)
    relearn_exposure_gap_bits: float = 1.0  # max canary exposure after relearning above the oracle's after it

    def __post_init__(self) -> None:
        for name, v in vars(self).items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < math.inf:
                raise BadInput(f"threshold {name} must be a finite number >= 0, got {v!r}")
        if not 0.5 <= self.lira_auc <= 1.0:
            raise BadInput(f"threshold lira_auc must be in [0.5, 1] (0.5 = chance), got {self.lira_auc}")


@dataclass(frozen=True)
class VerdictRow:
    """One check of a forget against its threshold, with the oracle's value beside it."""

    name: str  # the Thresholds field checked
    value: float  # the forgetting model's metric
    oracle_value: float  # the same metric on the oracle
    threshold: float  # the Thresholds value applied
    passed: bool  # whether the check holds
    note: str  # the comparison made, in words


def _metric_values(d: Any, which: str) -> dict[str, float]:
    """The METRIC_KEYS of `d` as floats, checked: AUCs and accuracy in [0, 1], exposure >= 0."""
    missing = [k for k in METRIC_KEYS if k not in d] if isinstance(d, dict) else list(METRIC_KEYS)
    if missing:
        raise BadInput(f"{which} must be a dict with {list(METRIC_KEYS)}; missing {missing} (compute them with "
                       "loss_threshold_mia_auc, lira_auc, accuracy and exposure_rank)")
    for k in METRIC_KEYS:
        v, hi = d[k], (math.inf if k == "exposure_bits" else 1.0)
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not 0.0 <= v <= hi or v == math.inf:
            raise BadInput(f"{which}[{k!r}] must be a finite number in [0, {hi}] (accuracy as a fraction), got {v!r}")
    return {k: float(d[k]) for k in METRIC_KEYS}


def summarize_verdict(metrics: dict, oracle: dict, thresholds: Thresholds = Thresholds()) -> list[VerdictRow]:
    """Check a forget's metrics against the oracle's (same METRIC_KEYS), one VerdictRow per threshold.

    Gaps are absolute: a model markedly more *or* less exposed than the oracle is distinguishable from it.

    >>> m = {"mia_auc": 0.53, "lira_auc": 0.52, "accuracy": 0.91, "exposure_bits": 3.0}
    >>> o = {"mia_auc": 0.52, "lira_auc": 0.50, "accuracy": 0.90, "exposure_bits": 2.5}
    >>> [(r.name, r.passed) for r in summarize_verdict(m, o)]
    [('mia_auc_gap', True), ('lira_auc', True), ('accuracy_gap_points', False), ('exposure_gap_bits', True)]
    """
    m, o = _metric_values(metrics, "metrics"), _metric_values(oracle, "oracle")
    checks = (("mia_auc_gap", "mia_auc", abs(m["mia_auc"] - o["mia_auc"]), "|MIA AUC gap|", ""),
              ("lira_auc", "lira_auc", m["lira_auc"], "LiRA AUC", ""),
              ("accuracy_gap_points", "accuracy", 100 * abs(m["accuracy"] - o["accuracy"]), "|accuracy gap|", " pt"),
              ("exposure_gap_bits", "exposure_bits", abs(m["exposure_bits"] - o["exposure_bits"]),
               "|exposure gap|", " bits"))
    rows = []
    for name, key, checked, label, unit in checks:
        limit = float(getattr(thresholds, name))
        passed = checked <= limit + 1e-9  # a gap equal to its threshold up to float rounding passes
        note = f"{label} {checked:.4g}{unit} {'<=' if passed else '>'} {limit:.4g}{unit}"
        rows.append(VerdictRow(name, m[key], o[key], limit, passed, note))
    return rows


def rounded(x: float | None) -> float | None:
    """A figure rounded to 6 decimals for a summary; None for a missing or infinite one (JSON has no infinity).

    >>> rounded(0.1234567), rounded(float("inf")), rounded(None)
    (0.123457, None, None)
    """
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50), percentile([1.0, 2.0, 3.0, 4.0], 95)
    (2.0, 4.0)
    """
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least 1
    return ordered[int(rank) - 1]
