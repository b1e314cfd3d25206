"""Per-example attacks (verify/privacy.py) against slow references that follow each definition literally.

U-LiRA: loops over targets and examples with statistics.mean / variance. The challenge's epsilon: every
decision rule enumerated on a grid that provably holds every outcome (integer statistics, integer buffer:
rates change only at integers, and the interval constraints have integer bounds, so thresholds on the
half-integers reach every achievable rule). Then the cases an auditor expects: a method that did not
forget is caught, an oracle is not.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from assistant_forget.core.errors import BadInput
from assistant_forget.verify import metrics as M
from assistant_forget.verify import privacy as P


# ----- slow references -----

def ref_tpr_at_fpr(pos: list[float], neg: list[float], fpr: float) -> float:
    """Every threshold t (each score, and above all of them): the best TPR of "score >= t" with FPR <= fpr."""
    best = 0.0
    for t in sorted(set(pos) | set(neg)) + [math.inf]:
        if sum(q >= t for q in neg) / len(neg) <= fpr + 1e-12:
            best = max(best, sum(p >= t for p in pos) / len(pos))
    return best


def ref_log_pdf(x: float, mean: float, var: float) -> float:
    return -((x - mean) ** 2) / (2 * var) - 0.5 * math.log(2 * math.pi * var)


def ref_u_lira(method: np.ndarray, oracle: np.ndarray, fixed: bool, eps: float) -> tuple[list, list]:
    """Each model in turn the target, Gaussians fitted on all the others, by loops."""
    def fit(stats: list[list[float]]) -> list[tuple[float, float]]:
        var = [statistics.variance(row) for row in stats]
        if fixed:
            dev = [(v - statistics.mean(row)) ** 2 for row in stats for v in row]
            var = [sum(dev) / (len(dev) - len(stats))] * len(stats)
        return [(statistics.mean(row), v + eps) for row, v in zip(stats, var)]

    def scores(target_side: np.ndarray, other: np.ndarray, target_is_method: bool) -> list[list[float]]:
        out = []
        for j in range(target_side.shape[1]):
            rest = [[v for k, v in enumerate(row) if k != j] for row in target_side.tolist()]
            fm, fo = (fit(rest), fit(other.tolist())) if target_is_method else (fit(other.tolist()), fit(rest))
            out.append([ref_log_pdf(target_side[i, j], *fm[i]) - ref_log_pdf(target_side[i, j], *fo[i])
                        for i in range(len(target_side))])
        return out  # (K, N)

    return scores(method, oracle, True), scores(oracle, method, False)


def ref_rule_epsilon(fpr: float, fnr: float, delta: float) -> float | None:
    """The challenge's epsilon of one rule; None when it is discarded."""
    if fpr == 0 and fnr == 0:
        return math.inf
    if fpr == 0 or fnr == 0:
        return None
    logs = [math.log(a) for a in ((1 - delta - fpr) / fnr, (1 - delta - fnr) / fpr) if a > 0]
    return max(0.0, max(logs)) if logs else None


def ref_example_epsilon(u: list[int], r: list[int], delta: float, buffer: int) -> float:
    """Enumerate the challenge's two rule families on the half-integer grid; literal rates by counting."""
    n = len(u)
    if max(u) == min(u) and max(r) == min(r):
        return 0.0 if u[0] == r[0] else P.EPSILON_CAP
    ranges = sorted([max(u) - min(u), max(r) - min(r)])
    if ranges[0] / ranges[1] < P.PEAKY_RATIO:
        return P.EPSILON_CAP
    pos, neg = (r, u) if statistics.median(r) > statistics.median(u) else (u, r)
    lo, hi = min(u + r) - 1, max(u + r) + 1
    grid = [k / 2 for k in range(2 * (lo - buffer - ranges[1]) - 4, 2 * (hi + buffer + ranges[1]) + 5)]
    found = []
    for t in grid:  # single threshold, inside [min, max] as the challenge's grid
        if min(u + r) <= t <= max(u + r):
            found.append(ref_rule_epsilon(sum(q >= t for q in neg) / n, sum(p < t for p in pos) / n, delta))
    if max(pos) - min(pos) >= max(neg) - min(neg):
        pos, neg = neg, pos
    width, top = max(pos) - min(pos), max(pos)
    for right in grid:
        if not top - buffer <= right <= top + buffer:
            continue
        for left in grid:
            if width - buffer <= right - left <= width + buffer:
                inside = lambda c: left <= c <= right  # noqa: E731
                found.append(ref_rule_epsilon(sum(map(inside, neg)) / n, sum(not inside(p) for p in pos) / n,
                                              delta))
    kept = [e for e in found if e is not None]
    return min(P.EPSILON_CAP, max(kept)) if kept else 0.0


def ref_points(eps: float, models: int) -> float:
    """Buckets [0, .5), [.5, 1), ... up to ceil(ln(N - 1)), worth 1, 1/2, 1/4, ...; beyond: 0."""
    top, k = math.ceil(math.log(models - 1)), 0
    while (k + 1) * 0.5 <= top:
        if eps < (k + 1) * 0.5:
            return 0.5 ** k
        k += 1
    return 0.0


# ----- TPR at a fixed FPR -----

@pytest.mark.parametrize("seed", range(6))
def test_tpr_at_fpr_matches_every_threshold(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pos, neg = np.round(rng.normal(0.8, 1, 40), 1), np.round(rng.normal(0, 1, 55 + seed), 1)  # many ties
    for fpr in (0.0, 0.01, 0.05, 0.1, 0.5, 1.0):
        assert P.tpr_at_fpr(pos, neg, fpr) == pytest.approx(ref_tpr_at_fpr(pos.tolist(), neg.tolist(), fpr))
        f, t = M.roc_curve(pos, neg)  # the same as the best ROC point within the FPR
        assert P.tpr_at_fpr(pos, neg, fpr) == pytest.approx(t[f <= fpr + 1e-12].max())


# ----- U-LiRA -----

@pytest.mark.parametrize("fixed", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_u_lira_matches_leave_one_out_reference(seed: int, fixed: bool) -> None:
    rng = np.random.default_rng(seed)
    n, k_m, k_o = 7, 3 + seed, 4
    base = rng.normal(0, 2, n)[:, None]
    method, oracle = base + 0.7 + rng.normal(size=(n, k_m)), base + rng.normal(size=(n, k_o))
    got = P.u_lira(method, oracle, fpr=0.1, fixed_variance=fixed, eps=1e-3)
    want_pos, want_neg = ref_u_lira(method, oracle, fixed, 1e-3)
    np.testing.assert_allclose(got.method_scores, np.array(want_pos).T, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got.oracle_scores, np.array(want_neg).T, rtol=1e-9, atol=1e-9)
    flat_pos, flat_neg = sum(want_pos, []), sum(want_neg, [])
    assert got.tpr == pytest.approx(ref_tpr_at_fpr(flat_pos, flat_neg, 0.1))
    assert got.auc == pytest.approx(sum(1.0 if p > q else 0.5 if p == q else 0.0
                                        for p in flat_pos for q in flat_neg) / (len(flat_pos) * len(flat_neg)))
    assert np.mean(got.oracle_scores > got.threshold) <= 0.1  # the threshold keeps its FPR
    np.testing.assert_allclose(got.per_example, [np.mean([s > got.threshold for s in row])
                                                 for row in got.method_scores.tolist()])
    assert got.tpr == pytest.approx(got.per_example.mean())


def population(seed: int, n: int, k: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Examples of varied difficulty; the method's models sit `shift` above the oracles' on every example."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 3, n)[:, None]
    return base + shift + rng.normal(size=(n, k)), base + rng.normal(size=(n, k))


def test_u_lira_catches_a_method_that_did_not_forget() -> None:
    method, oracle = population(0, 200, 8, 3.0)
    r = P.u_lira(method, oracle, fpr=0.01)
    assert r.tpr > 0.5 and r.auc > 0.95
    pooled = M.roc_auc(method.ravel(), oracle.ravel())  # a global threshold, blind to difficulty
    assert r.auc > pooled + 0.2 and r.tpr > P.tpr_at_fpr(method.ravel(), oracle.ravel(), 0.01) + 0.3


@pytest.mark.parametrize("fixed", [False, True])
def test_u_lira_finds_nothing_in_an_exact_forget(fixed: bool) -> None:
    method, oracle = population(1, 300, 8, 0.0)  # the method's models are oracles too
    r = P.u_lira(method, oracle, fpr=0.01, fixed_variance=fixed)
    se = math.sqrt(0.01 * 0.99 / method.size)
    assert r.tpr <= 0.01 + 4 * se + 0.01  # about the FPR (pairs are correlated within an example)
    assert abs(r.auc - 0.5) < 0.05


def test_u_lira_refuses_too_few_models_and_bad_rates() -> None:
    method, oracle = population(2, 5, 3, 0.0)
    with pytest.raises(BadInput, match="oracle_stats"):
        P.u_lira(method, oracle[:, :2])
    with pytest.raises(BadInput, match="fpr"):
        P.u_lira(method, oracle, fpr=1.5)
    with pytest.raises(BadInput, match="oracle_stats"):
        P.u_lira(method, oracle[:3])


# ----- the NeurIPS 2023 challenge's epsilon and score -----

@pytest.mark.parametrize("seed", range(40))
def test_example_epsilon_matches_every_rule_enumerated(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 8))
    u = rng.integers(-3, 4, n) + int(rng.integers(0, 3))
    r = rng.integers(-2, 3, n) * int(rng.integers(1, 3))
    for buffer in (0, 1, 2):
        got = P.example_epsilon(u, r, buffer=buffer)
        assert got == pytest.approx(ref_example_epsilon(u.tolist(), r.tolist(), P.DELTA, buffer), abs=1e-12)


def test_example_epsilon_special_cases() -> None:
    assert P.example_epsilon([1, 1, 1], [1, 1, 1]) == 0.0  # two identical point masses
    assert P.example_epsilon([1, 1, 1], [2, 2, 2]) == P.EPSILON_CAP
    assert P.example_epsilon([1.0, 1.0, 1.001], [0.0, 1.0, 2.0]) == P.EPSILON_CAP  # a near point mass
    assert P.example_epsilon([0, 1, 2, 3], [10, 11, 12, 13]) == P.EPSILON_CAP  # separated: FPR = FNR = 0
    with pytest.raises(BadInput, match="same number"):
        P.example_epsilon([0, 1, 2], [0, 1])


@pytest.mark.parametrize("models", [3, 4, 8, 20, 512])
def test_bucket_points_match_reference(models: int) -> None:
    for eps in np.linspace(0, 8, 161):
        assert P.example_points(float(eps), models) == ref_points(float(eps), models)


def test_challenge_score_separates_a_non_forget_from_an_exact_one() -> None:
    models = 64
    kept, oracle = population(3, 30, models, 4.0)  # a method that did not forget
    same, oracle2 = population(4, 30, models, 0.0)  # an exact forget: oracles on both sides
    bad, good = P.challenge_score(kept, oracle), P.challenge_score(same, oracle2)
    assert bad.quality < 0.02 and np.all(bad.epsilons > math.log(models - 1) - 1)
    # an exact forget does not score 1: with 64 models a side, the best of every rule on two samples of one
    # distribution shows epsilon ~ 1.5-2 (the estimator's floor, hence the challenge's 512 models)
    assert good.quality > 0.1 and np.median(good.epsilons) < np.median(bad.epsilons) - 1.5
    np.testing.assert_allclose(good.points, [ref_points(e, models) for e in good.epsilons])
    assert good.quality == pytest.approx(np.mean([ref_points(e, models) for e in good.epsilons]))
    assert good.figures()["models"] == models


def test_challenge_score_refuses_unequal_pools() -> None:
    with pytest.raises(BadInput, match="same number"):
        P.challenge_score(np.zeros((2, 4)) + [0, 1, 2, 3], np.zeros((2, 5)) + [0, 1, 2, 3, 4])
    with pytest.raises(BadInput, match=">= 3 models"):
        P.bucket_points(2)
