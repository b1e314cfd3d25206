"""Significance of accuracy gaps (verify/stats.py) against enumeration on tiny inputs: every bootstrap
resample of the utterance indices, every sign pattern of the discordant pairs. No scipy."""

from __future__ import annotations

import itertools
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest

from assistant_forget.core.errors import BadInput
from assistant_forget.verify import stats as S


def ref_bootstrap_distribution(a: list[int], b: list[int]) -> dict[Fraction, Fraction]:
    """Exact law of the resampled gap: all n^n index tuples, each equally likely."""
    n = len(a)
    law: Counter = Counter()
    for idx in itertools.product(range(n), repeat=n):
        law[Fraction(sum(a[i] - b[i] for i in idx), n)] += 1
    return {g: Fraction(c, n**n) for g, c in law.items()}


def ref_quantile(law: dict[Fraction, Fraction], q: float) -> Fraction:
    """Smallest gap whose CDF reaches q."""
    total = Fraction(0)
    for g in sorted(law):
        total += law[g]
        if total >= Fraction(q).limit_denominator(10**9):
            return g
    return max(law)


def ref_mcnemar(a: list[int], b: list[int]) -> Fraction:
    """P(a split of the discordant pairs at least as lopsided as the observed one), over all 2^d splits."""
    only_a = sum(x and not y for x, y in zip(a, b))
    d = only_a + sum(y and not x for x, y in zip(a, b))
    observed = abs(2 * only_a - d)
    hits = sum(abs(2 * sum(s) - d) >= observed for s in itertools.product((0, 1), repeat=d))
    return Fraction(hits, 2**d)


@pytest.mark.parametrize("seed", range(6))
def test_bootstrap_law_matches_every_resample(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 4 + seed % 2
    a, b = rng.integers(0, 2, n).tolist(), rng.integers(0, 2, n).tolist()
    law = ref_bootstrap_distribution(a, b)
    reps = S.bootstrap_gaps(a, b, resamples=40_000, seed=seed)
    seen = Counter(Fraction(round(r * n), n) for r in reps)
    assert set(seen) <= set(law)
    assert sum(abs(seen[g] / reps.size - float(p)) for g, p in law.items()) / 2 < 0.02  # total variation
    gap, low, high = S.paired_bootstrap_ci(a, b, 0.9, 40_000, seed)
    assert gap == pytest.approx((sum(a) - sum(b)) / n)
    for end, q in ((low, 0.05), (high, 0.95)):
        cdf_at = sum(float(p) for g, p in law.items() if g <= Fraction(round(end * n), n))
        cdf_below = sum(float(p) for g, p in law.items() if g < Fraction(round(end * n), n))
        assert cdf_below <= q + 0.01 and cdf_at >= q - 0.01  # the end is the law's q-quantile, up to noise
        assert abs(end - float(ref_quantile(law, q))) <= 1 / n + 1e-12


def test_bootstrap_is_seeded_and_resamples_pairs_not_models() -> None:
    a, b = [1, 0, 1, 1, 0, 1], [1, 0, 0, 1, 1, 1]
    assert np.array_equal(S.bootstrap_gaps(a, b, 500, seed=3), S.bootstrap_gaps(a, b, 500, seed=3))
    assert not np.array_equal(S.bootstrap_gaps(a, b, 500, seed=3), S.bootstrap_gaps(a, b, 500, seed=4))
    same = [1, 0, 1, 0, 1, 1, 0, 0]
    assert S.paired_bootstrap_ci(same, same) == (0.0, 0.0, 0.0)  # paired: agreeing models have no noise


@pytest.mark.parametrize("seed", range(8))
def test_mcnemar_matches_enumeration(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 14))
    a, b = rng.integers(0, 2, n).tolist(), rng.integers(0, 2, n).tolist()
    assert S.mcnemar_exact(a, b) == pytest.approx(float(ref_mcnemar(a, b)), abs=1e-15)


def test_a_real_gap_is_significant_and_noise_is_not() -> None:
    rng = np.random.default_rng(0)
    n = 500
    truth = rng.random(n) < 0.9
    worse = truth & (rng.random(n) > 0.1)  # loses ~9 points, never gains
    g = S.compare(truth, worse)
    assert g.low > 0.05 and S.significant(g) and S.significant(g, margin=0.005)
    assert S.significant(S.compare(worse, truth), margin=0.005)  # either sign
    flip = rng.random(n) < 0.02  # two models that disagree on a few utterances, half each way
    a = truth.copy()
    b = truth.copy()
    idx = np.flatnonzero(flip)
    b[idx[::2]] = ~b[idx[::2]]
    a[idx[1::2]] = ~a[idx[1::2]]
    noise = S.compare(a, b)
    assert noise.low <= 0 <= noise.high and noise.p_value > 0.05 and not S.significant(noise)
    assert not S.significant(g, margin=0.5)  # far inside a wide margin


def test_stats_refuse_bad_input() -> None:
    with pytest.raises(BadInput, match="same utterances"):
        S.compare([1, 0], [1, 0, 1])
    with pytest.raises(BadInput, match="0/1"):
        S.compare([1, 2], [1, 0])
    with pytest.raises(BadInput, match="confidence"):
        S.paired_bootstrap_ci([1, 0], [1, 0], confidence=1.0)
    with pytest.raises(BadInput, match="margin"):
        S.significant(S.compare([1, 0], [0, 1]), margin=-0.1)


def test_auc_gap_interval_is_the_paired_bootstrap_of_the_auc_gap() -> None:
    rng = np.random.default_rng(3)
    ma, na = rng.normal(1, 1, 12), rng.normal(0, 1, 30)
    mb, nb = ma + rng.normal(0, 0.3, 12), na + rng.normal(0, 0.3, 30)
    gap, lo, hi = S.auc_gap_interval(ma, na, mb, nb, resamples=400, seed=7)
    # slow reference: the same draws, the AUC counted pair by pair
    auc = lambda p, n: np.mean([(x > y) + 0.5 * (x == y) for x in p for y in n])  # noqa: E731
    g = np.random.default_rng(7)
    reps = []
    for _ in range(400):
        i, j = g.integers(0, 12, 12), g.integers(0, 30, 30)
        reps.append(auc(ma[i], na[j]) - auc(mb[i], nb[j]))
    want = np.quantile(reps, [0.025, 0.975], method="inverted_cdf")
    assert gap == pytest.approx(auc(ma, na) - auc(mb, nb)) and (lo, hi) == pytest.approx(tuple(want))
    assert lo <= gap <= hi
    with pytest.raises(BadInput, match="same utterances"):
        S.auc_gap_interval(ma, na, mb[:5], nb)
