"""Whether an accuracy gap between two models is more than sampling noise on the utterances they were scored on.

On 500 held-out utterances one utterance is 0.2 point, and the model before a forget can already sit 0.4
point from the oracle; a fixed threshold on the point figure then passes or fails on noise. Both models are
scored on the *same* utterances, so the tests here are paired: the paired bootstrap resamples utterances
(Efron & Tibshirani 1993, "An introduction to the bootstrap", ch. 13, percentile interval), and McNemar's
exact test counts only the utterances the two models disagree on (McNemar 1947; exact binomial form,
Fagerland et al. 2013, "The McNemar test for binary matched-pairs data"). Pure numpy and the standard
library; tests/verify/test_stats.py checks both against enumeration on tiny inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from ..core.errors import BadInput

BOOTSTRAP = 10_000  # resamples of the paired bootstrap
CONFIDENCE = 0.95  # default two-sided level


def _paired(correct_a: Any, correct_b: Any) -> tuple[np.ndarray, np.ndarray]:
    """Two equal-length, non-empty boolean vectors of per-utterance correctness, else BadInput."""
    a, b = np.asarray(correct_a), np.asarray(correct_b)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise BadInput(f"per-utterance correctness must be two non-empty 1-D arrays of one length (the same "
                       f"utterances), got shapes {a.shape} and {b.shape}")
    for name, x in (("correct_a", a), ("correct_b", b)):
        if not np.isin(x, (0, 1)).all():
            raise BadInput(f"{name} must hold 0/1 or booleans (was each utterance right), got other values")
    return a.astype(bool), b.astype(bool)


def _check_level(confidence: float) -> None:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise BadInput(f"confidence must be in (0, 1), got {confidence!r}")


def bootstrap_gaps(correct_a: Any, correct_b: Any, resamples: int = BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """`resamples` paired-bootstrap replicates of accuracy(a) - accuracy(b): utterances drawn with replacement,
    both models' outcomes kept together.

    A replicate depends only on how many draws land on utterances where only a is right (+1), only b (-1)
    or both or neither (0), so it is drawn as one multinomial over those three counts: the same
    distribution as resampling indices, at O(resamples) cost. Seeded (numpy's default generator).

    >>> bootstrap_gaps([1, 1, 1, 1], [1, 1, 1, 1], resamples=3).tolist()
    [0.0, 0.0, 0.0]
    """
    a, b = _paired(correct_a, correct_b)
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise BadInput(f"resamples must be an integer >= 1, got {resamples!r}")
    n = a.size
    p = np.array([np.sum(a & ~b), np.sum(~a & b), 0.0]) / n
    p[2] = 1.0 - p[0] - p[1]
    counts = np.random.default_rng(seed).multinomial(n, np.clip(p, 0.0, 1.0), size=resamples)  # (B, 3)
    return (counts[:, 0] - counts[:, 1]) / n


@dataclass(frozen=True)
class Gap:
    """An accuracy gap between two models on the same utterances, with its sampling noise."""

    gap: float  # accuracy(a) - accuracy(b), as a fraction
    low: float  # paired-bootstrap percentile interval at `confidence`
    high: float
    confidence: float
    p_value: float  # McNemar's exact test of equal accuracy
    only_a: int  # utterances only a gets right
    only_b: int  # utterances only b gets right
    n: int  # utterances

    def figures(self) -> dict:
        """The figures in percentage points (what a verdict row shows beside the point figure)."""
        return {"gap_points": 100 * self.gap, "interval_points": [100 * self.low, 100 * self.high],
                "confidence": self.confidence, "p_value": self.p_value, "only_a": self.only_a,
                "only_b": self.only_b, "n": self.n}


def paired_bootstrap_ci(correct_a: Any, correct_b: Any, confidence: float = CONFIDENCE,
                        resamples: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float, float]:
    """(gap, low, high): accuracy(a) - accuracy(b) and its paired-bootstrap percentile interval.

    low / high are the (1 - confidence) / 2 and (1 + confidence) / 2 quantiles of bootstrap_gaps, each the
    smallest replicate whose empirical CDF reaches the level ("inverted CDF", so both ends are gaps that
    can occur on these utterances).

    >>> paired_bootstrap_ci([1, 0, 1, 1], [1, 0, 1, 1])
    (0.0, 0.0, 0.0)
    """
    _check_level(confidence)
    a, b = _paired(correct_a, correct_b)
    reps = bootstrap_gaps(a, b, resamples, seed)
    low, high = np.quantile(reps, [(1 - confidence) / 2, (1 + confidence) / 2], method="inverted_cdf")
    return float(a.mean() - b.mean()), float(low), float(high)


def mcnemar_exact(correct_a: Any, correct_b: Any) -> float:
    """Two-sided p-value of McNemar's exact test that a and b are equally accurate on these utterances.

    Under equal accuracy each discordant utterance (one model right, the other wrong) is a fair coin, so
    with b = only a right and c = only b right, b ~ Binomial(b + c, 1/2) and p = min(1, 2 P(X <= min(b, c)))
    (= P(|X - (b + c)/2| >= |b - c|/2), the binomial being symmetric). Exact rational arithmetic.

    >>> mcnemar_exact([1] * 6 + [0] * 4, [0] * 6 + [0] * 4)  # 6 discordant, all one way: 2 / 2^6
    0.03125
    """
    a, b = _paired(correct_a, correct_b)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = only_a + only_b
    tail = Fraction(sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)), 2**n)
    return float(min(Fraction(1), 2 * tail))


def compare(correct_a: Any, correct_b: Any, confidence: float = CONFIDENCE, resamples: int = BOOTSTRAP,
            seed: int = 0) -> Gap:
    """The gap accuracy(a) - accuracy(b) with both its bootstrap interval and McNemar's p-value.

    >>> g = compare([1] * 60 + [0] * 40, [1] * 40 + [0] * 60)  # 20 utterances only a gets right
    >>> round(g.gap, 2), g.low > 0, g.p_value < 1e-5
    (0.2, True, True)
    """
    a, b = _paired(correct_a, correct_b)
    gap, low, high = paired_bootstrap_ci(a, b, confidence, resamples, seed)
    return Gap(gap, low, high, float(confidence), mcnemar_exact(a, b), int(np.sum(a & ~b)), int(np.sum(~a & b)),
               int(a.size))


def significant(gap: Gap, margin: float = 0.0) -> bool:
    """Whether `gap` is beyond `margin` (a fraction: 0.005 = 0.5 point) by more than its sampling noise.

    True when the whole bootstrap interval lies outside [-margin, margin] and McNemar's test rejects equal
    accuracy at 1 - confidence: both must agree, so a verdict (and an escalation) acts on a gap the data
    show, not on a few utterances. With margin 0 this asks "do the models differ at all".

    >>> significant(compare([1] * 60 + [0] * 40, [1] * 40 + [0] * 60), margin=0.05)
    True
    >>> significant(compare([1, 0] * 50, [0, 1] * 50))  # 50 each way: noise
    False
    """
    if not isinstance(gap, Gap):
        raise BadInput(f"significant takes a Gap (from compare), got {type(gap).__name__}")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 1:
        raise BadInput(f"margin must be a fraction in [0, 1) (0.005 = 0.5 point), got {margin!r}")
    outside = gap.low > margin or gap.high < -margin
    return bool(outside and gap.p_value < 1 - gap.confidence)


def auc_gap_interval(members_a: Any, nonmembers_a: Any, members_b: Any, nonmembers_b: Any,
                     confidence: float = CONFIDENCE, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(gap, low, high): AUC(a) - AUC(b) of a membership attack on two models scored on the *same* members and
    non-members (row i of members_a and members_b is one utterance), with its paired-bootstrap percentile
    interval: each replicate draws members and non-members with replacement, the same indices for both
    models, and recomputes both AUCs (metrics.roc_auc). Seeded (numpy's default generator).

    >>> auc_gap_interval([3, 2], [1, 0], [3, 2], [1, 0])
    (0.0, 0.0, 0.0)
    """
    from .metrics import _array, roc_auc

    _check_level(confidence)
    ma, na = _array(members_a, "members_a"), _array(nonmembers_a, "nonmembers_a")
    mb, nb = _array(members_b, "members_b"), _array(nonmembers_b, "nonmembers_b")
    if ma.shape != mb.shape or na.shape != nb.shape:
        raise BadInput(f"both models must score the same utterances: members {ma.shape} vs {mb.shape}, "
                       f"non-members {na.shape} vs {nb.shape}")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise BadInput(f"resamples must be an integer >= 1, got {resamples!r}")
    rng = np.random.default_rng(seed)
    reps = np.empty(resamples)
    for r in range(resamples):
        i, j = rng.integers(0, ma.size, ma.size), rng.integers(0, na.size, na.size)
        reps[r] = roc_auc(ma[i], na[j]) - roc_auc(mb[i], nb[j])
    low, high = np.quantile(reps, [(1 - confidence) / 2, (1 + confidence) / 2], method="inverted_cdf")
    return roc_auc(ma, na) - roc_auc(mb, nb), float(low), float(high)
