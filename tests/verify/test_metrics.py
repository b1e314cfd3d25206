"""Privacy and quality metrics against slow, obviously correct references, plus the sanity cases an auditor expects.

References here follow each definition literally (pairwise counts, loops, sorted lists, fine-grid integrals);
expected values are derived from the distributions the data are drawn from, not pinned.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assistant_forget.verify import metrics as M
from assistant_forget.core.errors import BadInput

SEEDS = range(5)
ERFC = np.frompyfunc(math.erfc, 1, 1)  # the standard library's erfc, elementwise (keeps tail precision)


def phi_cdf(x: float) -> float:
    """Standard normal CDF from the error function."""
    return 0.5 * math.erfc(-x / math.sqrt(2))


def tied_scores(rng: np.random.Generator, n: int, shift: float) -> np.ndarray:
    """Scores rounded to one decimal so many ties occur, shifted by `shift`."""
    return np.round(rng.normal(shift, 1.0, n), 1)


# ----- slow references -----

def ref_auc(pos: list[float], neg: list[float]) -> float:
    """O(n*m) pairwise count: a win counts 1, a tie 1/2."""
    total = 0.0
    for p in pos:
        for q in neg:
            total += 1.0 if p > q else 0.5 if p == q else 0.0
    return total / (len(pos) * len(neg))


def ref_roc_curve(pos: list[float], neg: list[float]) -> tuple[list[float], list[float]]:
    """(fpr, tpr) at every distinct threshold, highest first, predicting positive when score >= threshold."""
    fpr, tpr = [0.0], [0.0]
    for thr in sorted(set(pos) | set(neg), reverse=True):
        fpr.append(sum(q >= thr for q in neg) / len(neg))
        tpr.append(sum(p >= thr for p in pos) / len(pos))
    return fpr, tpr


def ref_log_normal_pdf(x: float, mean: float, var: float) -> float:
    """log of exp(-(x - mean)^2 / (2 var)) / sqrt(2 pi var), written out."""
    return -((x - mean) ** 2) / (2 * var) - math.log(math.sqrt(2 * math.pi * var))


def ref_lira(target: np.ndarray, ins: np.ndarray, outs: np.ndarray, fixed: bool, eps: float) -> list[float]:
    """Per-example loops with statistics.mean / statistics.variance; pooled variance = mean of row variances."""
    def variances(stats: np.ndarray) -> list[float]:
        per_row = [statistics.variance(row.tolist()) for row in stats]
        return [statistics.mean(per_row)] * len(per_row) if fixed else per_row

    v_in, v_out = variances(ins), variances(outs)
    return [ref_log_normal_pdf(x, statistics.mean(ins[i].tolist()), v_in[i] + eps)
            - ref_log_normal_pdf(x, statistics.mean(outs[i].tolist()), v_out[i] + eps)
            for i, x in enumerate(target.tolist())]


def ref_exposure_rank(canary: float, candidates: list[float]) -> float:
    """Sort all |R| candidates, the canary ahead of any equal score, and read off its 1-based position."""
    ranked = sorted([(canary, 0)] + [(s, 1) for s in candidates])
    return math.log2(len(ranked)) - math.log2(ranked.index((canary, 0)) + 1)


def ref_owens_t(h: float, a: float, n: int = 20_000) -> float:
    """Composite Simpson's rule on the defining integral over x in [0, a]."""
    x = np.linspace(0.0, a, n + 1)
    f = np.exp(-h * h * (1 + x * x) / 2) / (1 + x * x)
    w = np.ones(n + 1)
    w[1:-1:2], w[2:-1:2] = 4, 2
    return float((a / n) / 3 * (w * f).sum() / (2 * math.pi))


def ref_skew_normal_cdf(x: float, loc: float, scale: float, alpha: float, n: int = 200_000) -> float:
    """Simpson's rule on the density 2/scale phi(z) Phi(alpha z) from 40 scales below to x."""
    z = np.linspace(-40.0, (x - loc) / scale, n + 1)
    big_phi = 0.5 * ERFC(-alpha * z / math.sqrt(2)).astype(np.float64)
    f = 2 * np.exp(-z * z / 2) / math.sqrt(2 * math.pi) * big_phi
    w = np.ones(n + 1)
    w[1:-1:2], w[2:-1:2] = 4, 2
    return float((z[1] - z[0]) / 3 * (w * f).sum())


def sample_skew_normal(rng: np.random.Generator, n: int, loc: float, scale: float, alpha: float) -> np.ndarray:
    """Exact skew-normal draws: loc + scale * (delta |U0| + sqrt(1 - delta^2) U1)."""
    delta = alpha / math.sqrt(1 + alpha * alpha)
    u0, u1 = rng.normal(size=n), rng.normal(size=n)
    return loc + scale * (delta * np.abs(u0) + math.sqrt(1 - delta * delta) * u1)


def ref_kl(p: list[list[float]], q: list[list[float]], eps: float) -> float:
    total = 0.0
    for prow, qrow in zip(p, q):
        total += sum(pi * (math.log(max(pi, eps)) - math.log(max(qi, eps))) for pi, qi in zip(prow, qrow))
    return total / len(p)


def ref_softmax(row: list[float]) -> list[float]:
    top = max(row)
    e = [math.exp(v - top) for v in row]
    return [v / sum(e) for v in e]


# ----- AUC and the loss-threshold attack -----

@pytest.mark.parametrize("seed", SEEDS)
def test_auc_and_curve_match_pairwise_reference_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pos, neg = tied_scores(rng, 150 + seed, 0.4 * seed), tied_scores(rng, 120, 0.0)
    auc = M.roc_auc(pos, neg)
    assert auc == pytest.approx(ref_auc(pos.tolist(), neg.tolist()), abs=1e-12)
    fpr, tpr = M.roc_curve(pos, neg)
    ref_fpr, ref_tpr = ref_roc_curve(pos.tolist(), neg.tolist())
    np.testing.assert_allclose(fpr, ref_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, ref_tpr, atol=1e-12)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auc, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_loss_threshold_mia_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    members, nonmembers = np.abs(tied_scores(rng, 90, 0.0)), np.abs(tied_scores(rng, 110, 0.5))
    wins = sum(1.0 if m < n else 0.5 if m == n else 0.0 for m in members for n in nonmembers)
    assert M.loss_threshold_mia_auc(members, nonmembers) == pytest.approx(wins / (90 * 110), abs=1e-12)


def test_auc_sanity_separated_and_identical() -> None:
    rng = np.random.default_rng(7)
    low = rng.uniform(0, 1, 500)
    assert M.roc_auc(low + 2, low) == 1.0
    assert M.roc_auc(low, low + 2) == 0.0
    assert M.roc_auc(low, low) == 0.5
    same_a, same_b = rng.normal(size=4000), rng.normal(size=4000)
    assert abs(M.roc_auc(same_a, same_b) - 0.5) < 0.03  # standard error ~ 0.0065
    assert M.loss_threshold_mia_auc(low, low + 2) == 1.0  # lower loss => member


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=100, deadline=None)
@given(st.lists(finite, min_size=1, max_size=30), st.lists(finite, min_size=1, max_size=30))
def test_auc_swapping_classes_gives_complement(pos: list[float], neg: list[float]) -> None:
    assert M.roc_auc(pos, neg) == pytest.approx(1.0 - M.roc_auc(neg, pos), abs=1e-12)
    assert M.roc_auc(pos, neg) == pytest.approx(ref_auc(pos, neg), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-20, 20), min_size=1, max_size=30), st.lists(st.integers(-20, 20), min_size=1, max_size=30))
def test_auc_is_invariant_under_increasing_maps(pos: list[int], neg: list[int]) -> None:
    def cube(xs: list[int]) -> list[int]:
        return [x**3 + 7 for x in xs]  # strictly increasing

    assert M.roc_auc(cube(pos), cube(neg)) == M.roc_auc(pos, neg)
    fpr, tpr = M.roc_curve(pos, neg)
    assert np.trapezoid(tpr, fpr) == pytest.approx(M.roc_auc(pos, neg), abs=1e-12)


# ----- LiRA -----

def lira_population(seed: int, n: int, k: int, shift: float, spread: float = 3.0):
    """Examples of varied difficulty (mean ~ N(0, spread^2)); members' statistic is shifted by `shift`."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(0.0, spread, n)  # (n,)
    ins = mu[:, None] + shift + rng.normal(size=(n, k))  # (n, k)
    outs = mu[:, None] + rng.normal(size=(n, k))  # (n, k)
    member = np.arange(n) < n // 2  # (n,)
    target = mu + shift * member + rng.normal(size=n)  # (n,)
    return target, ins, outs, member


@pytest.mark.parametrize("fixed", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_lira_scores_match_reference(seed: int, fixed: bool) -> None:
    target, ins, outs, _ = lira_population(seed, 40, 3 + seed, 1.0)
    got = M.lira_scores(target, ins, outs[:, :2 + seed], fixed_variance=fixed, eps=1e-3)
    want = ref_lira(target, ins, outs[:, :2 + seed], fixed, 1e-3)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_lira_finds_shifted_members_and_not_unshifted() -> None:
    shift = 1.5
    optimal = phi_cdf(shift / math.sqrt(2))  # AUC of the exact likelihood ratio for N(shift, 1) vs N(0, 1)
    target, ins, outs, member = lira_population(0, 2000, 16, shift)
    scores = M.lira_scores(target, ins, outs)
    auc = M.lira_auc(scores[member], scores[~member])
    assert abs(auc - optimal) < 0.04
    assert auc > M.roc_auc(target[member], target[~member]) + 0.1  # per-example calibration beats a global threshold
    target, ins, outs, member = lira_population(1, 2000, 16, 0.0)
    scores = M.lira_scores(target, ins, outs)
    assert abs(M.lira_auc(scores[member], scores[~member]) - 0.5) < 0.04


def test_lira_fixed_variance_helps_with_few_shadows() -> None:
    target, ins, outs, member = lira_population(2, 2000, 2, 1.5)
    per_example = M.lira_scores(target, ins, outs)
    pooled = M.lira_scores(target, ins, outs, fixed_variance=True)
    assert M.lira_auc(pooled[member], pooled[~member]) > M.lira_auc(per_example[member], per_example[~member]) + 0.05


def test_lira_constant_shadows_stay_finite() -> None:
    scores = M.lira_scores([1.0, 2.0], np.ones((2, 4)), np.zeros((2, 4)))
    assert np.isfinite(scores).all() and scores[0] > 0


def test_logit_confidence_matches_reference_and_clips() -> None:
    p = np.random.default_rng(3).uniform(0.001, 0.999, (7, 5))
    want = [[math.log(v / (1 - v)) for v in row] for row in p.tolist()]
    np.testing.assert_allclose(M.logit_confidence(p), want, rtol=1e-12)
    ends = M.logit_confidence([0.0, 1.0], eps=1e-6)
    assert ends.tolist() == pytest.approx([math.log(1e-6 / (1 - 1e-6)), math.log((1 - 1e-6) / 1e-6)])


# ----- canary exposure -----

@pytest.mark.parametrize("seed", SEEDS)
def test_exposure_rank_matches_sorted_reference_with_ties(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    cand = tied_scores(rng, 300, 0.0)
    for canary in (cand[0], cand[17], float(cand.min()) - 1, float(cand.max()) + 1, 0.0):
        assert M.exposure_rank(canary, cand) == pytest.approx(ref_exposure_rank(canary, cand.tolist()), abs=1e-12)


def test_exposure_rank_best_median_and_worst_of_many() -> None:
    n_total = 10**5
    cand = np.random.default_rng(4).normal(size=n_total - 1)
    assert M.exposure_rank(cand.min() - 1, cand) == pytest.approx(math.log2(n_total), abs=1e-12)  # ~16.6 bits
    assert M.exposure_rank(float(np.median(cand)), cand) == pytest.approx(1.0, abs=0.01)
    assert M.exposure_rank(cand.max() + 1, cand) == pytest.approx(0.0, abs=1e-12)


def test_owens_t_matches_integral_and_identities() -> None:
    for h in (0.0, 0.3, 1.0, 2.5, -1.7):
        for a in (0.2, 1.0, 3.0, 12.0):
            assert M.owens_t(h, a) == pytest.approx(ref_owens_t(h, a), rel=1e-9, abs=1e-15)
            assert M.owens_t(h, -a) == pytest.approx(-M.owens_t(h, a), rel=1e-12)
        assert M.owens_t(h, 1.0) == pytest.approx(phi_cdf(h) * (1 - phi_cdf(h)) / 2, rel=1e-12)
        assert M.owens_t(h, 1e12) == pytest.approx(phi_cdf(-abs(h)) / 2, rel=1e-9)
        assert M.owens_t(h, 0.0) == 0.0
    for h in (0.01, 0.1):  # small h: the integrand drops sharply just below pi/2 in the angle form
        assert M.owens_t(h, 1e3) == pytest.approx(phi_cdf(-h) / 2, rel=1e-12)
    a = np.array([0.5, 2.0, 40.0])
    np.testing.assert_allclose(M.owens_t(0.0, a), np.arctan(a) / (2 * math.pi), rtol=1e-12)


def test_skew_normal_cdf_matches_density_integral_and_keeps_tail_precision() -> None:
    for alpha in (-4.0, 0.0, 1.5, 8.0):
        for x in (-3.0, -0.7, 1.2, 4.0):
            got = float(M.skew_normal_cdf(x, 0.5, 1.3, alpha))
            want = ref_skew_normal_cdf(x, 0.5, 1.3, alpha)
            assert got == pytest.approx(want, rel=1e-7, abs=0)
    for z in (-6.0, -10.0, -20.0):  # deep lower tail: relative, not absolute, precision
        assert float(M.skew_normal_cdf(z, 0.0, 1.0, 0.0)) == pytest.approx(phi_cdf(z), rel=1e-10, abs=0)
    for z, alpha in ((-3.0, 2.0), (-4.0, 5.0), (-10.0, 3.0)):  # a sharp peak at the start of the angle range
        assert float(M.skew_normal_cdf(z, 0.0, 1.0, alpha)) == pytest.approx(
            ref_skew_normal_cdf(z, 0.0, 1.0, alpha), rel=1e-8, abs=0)


def test_skew_normal_cdf_is_elementwise_over_large_arrays() -> None:
    x = np.linspace(-6.0, 6.0, 2500).reshape(50, 50)  # more points than one chunk of the quadrature
    grid = M.skew_normal_cdf(x, 0.3, 1.7, -2.5)
    assert grid.shape == (50, 50)
    for i, j in ((0, 0), (20, 31), (49, 49)):
        assert grid[i, j] == pytest.approx(float(M.skew_normal_cdf(x[i, j], 0.3, 1.7, -2.5)), rel=1e-13, abs=0)
    assert np.all(np.diff(grid.ravel()) >= 0)  # a CDF never decreases
    with pytest.raises(BadInput, match="scale"):
        M.skew_normal_cdf(0.0, 0.0, -1.0, 1.0)


def test_fit_skew_normal_recovers_a_known_distribution() -> None:
    loc, scale, alpha = 2.0, 3.0, 3.0
    x = sample_skew_normal(np.random.default_rng(5), 200_000, loc, scale, alpha)
    fit = M.fit_skew_normal(x)
    grid = np.linspace(-4.0, 14.0, 37)
    gap = np.abs(M.skew_normal_cdf(grid, *fit) - M.skew_normal_cdf(grid, loc, scale, alpha)).max()
    assert gap < 0.01
    assert fit[0] == pytest.approx(loc, abs=0.1) and fit[1] == pytest.approx(scale, rel=0.05)


@pytest.mark.parametrize("alpha", [0.0, 4.0, -2.0])
def test_exposure_skew_normal_agrees_with_rank_where_rank_is_reliable(alpha: float) -> None:
    cand = sample_skew_normal(np.random.default_rng(6), 200_000, 1.0, 2.0, alpha)
    for q in (0.5, 0.05, 0.005):  # >= 1,000 candidates below the canary: the rank estimate is precise
        canary = float(np.quantile(cand, q))
        assert abs(M.exposure_skew_normal(canary, cand) - M.exposure_rank(canary, cand)) < 0.5


def test_exposure_skew_normal_extrapolates_past_the_candidates() -> None:
    cand = np.random.default_rng(8).normal(size=10**5)
    true_bits = -math.log2(phi_cdf(-6.0))  # ~29.9 bits, beyond the rank estimate's log2(10^5) ceiling
    assert M.exposure_rank(-6.0, cand) == pytest.approx(math.log2(10**5 + 1))
    assert abs(M.exposure_skew_normal(-6.0, cand) - true_bits) < 1.5


# ----- accuracy and KL -----

@pytest.mark.parametrize("seed", SEEDS)
def test_accuracy_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(300 + seed)
    gold, pred = rng.integers(0, 5, 97), rng.integers(0, 5, 97)
    assert M.accuracy(pred, gold) == sum(int(p == g) for p, g in zip(pred, gold)) / 97
    assert M.accuracy(["a", "b"], ["a", "c"]) == 0.5


def random_probs(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    p = rng.dirichlet(np.full(c, 0.5), n)  # (n, c)
    p[rng.uniform(size=p.shape) < 0.1] = 0.0  # exact zeros exercise 0 log 0 and the eps clip
    p[:, 0] += 1.0 - p.sum(axis=1)
    return np.abs(p)


@pytest.mark.parametrize("seed", SEEDS)
def test_kl_matches_loop_reference(seed: int) -> None:
    rng = np.random.default_rng(400 + seed)
    p, q = random_probs(rng, 20, 6), random_probs(rng, 20, 6)
    assert M.kl_divergence(p, q) == pytest.approx(ref_kl(p.tolist(), q.tolist(), 1e-12), rel=1e-10)
    logits_p, logits_q = rng.normal(0, 3, (20, 6)), rng.normal(0, 3, (20, 6))
    sp = [ref_softmax(r) for r in logits_p.tolist()]
    sq = [ref_softmax(r) for r in logits_q.tolist()]
    want = ref_kl(sp, sq, 1e-300)
    assert M.kl_from_logits(logits_p, logits_q) == pytest.approx(want, rel=1e-9)
    assert M.kl_divergence(sp, sq) == pytest.approx(want, rel=1e-9)


def test_kl_zero_iff_identical_and_swap_symmetric_pairs() -> None:
    rng = np.random.default_rng(9)
    p = random_probs(rng, 10, 4)
    assert M.kl_divergence(p, p) == 0.0
    assert M.kl_divergence(p, random_probs(rng, 10, 4)) > 0
    a = rng.uniform(0.05, 0.95, 8)
    two, flipped = np.stack([a, 1 - a], 1), np.stack([1 - a, a], 1)  # KL(p||q) = KL(q||p) for mirrored pairs
    assert M.kl_divergence(two, flipped) == pytest.approx(M.kl_divergence(flipped, two), rel=1e-12)
    assert M.kl_divergence([[0.9, 0.1]], [[0.5, 0.5]]) != pytest.approx(M.kl_divergence([[0.5, 0.5]], [[0.9, 0.1]]))
    logits = rng.normal(0, 1, (5, 7))
    shifted = logits + rng.normal(0, 1, (5, 1))  # a per-row shift leaves the distribution unchanged
    assert M.kl_from_logits(logits, shifted) == pytest.approx(0.0, abs=1e-15)
    huge = logits * 1e4  # the naive softmax would overflow
    value = M.kl_from_logits(huge, logits)
    assert math.isfinite(value) and value > 0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.floats(-50, 50), min_size=3, max_size=3), min_size=1, max_size=6),
       st.lists(st.floats(-50, 50), min_size=3, max_size=3))
def test_kl_from_logits_is_nonnegative_and_equals_prob_version(rows: list[list[float]], shift: list[float]) -> None:
    lp = np.array(rows)
    lq = lp + np.array(shift)
    value = M.kl_from_logits(lp, lq)
    assert value >= 0
    probs_p, probs_q = np.exp(M.log_softmax(lp)), np.exp(M.log_softmax(lq))
    assert value == pytest.approx(M.kl_divergence(probs_p, probs_q, eps=1e-300), rel=1e-6, abs=1e-9)


# ----- verdict -----

ORACLE = {"mia_auc": 0.51, "lira_auc": 0.50, "accuracy": 0.900, "exposure_bits": 2.0}


def test_verdict_passes_and_fails_each_threshold() -> None:
    th = M.Thresholds()
    good = {"mia_auc": ORACLE["mia_auc"] + th.mia_auc_gap / 2, "lira_auc": th.lira_auc - 0.01,
            "accuracy": ORACLE["accuracy"] - th.accuracy_gap_points / 200,
            "exposure_bits": ORACLE["exposure_bits"] + th.exposure_gap_bits / 2}
    rows = M.summarize_verdict(good, ORACLE, th)
    assert [r.name for r in rows] == ["mia_auc_gap", "lira_auc", "accuracy_gap_points", "exposure_gap_bits"]
    assert all(r.passed for r in rows)
    assert [(r.value, r.oracle_value) for r in rows] == [(good[k], ORACLE[k]) for k in M.METRIC_KEYS]
    assert [r.threshold for r in rows] == [th.mia_auc_gap, th.lira_auc, th.accuracy_gap_points, th.exposure_gap_bits]
    bad = {"mia_auc": ORACLE["mia_auc"] - 2 * th.mia_auc_gap, "lira_auc": th.lira_auc + 0.01,
           "accuracy": ORACLE["accuracy"] + th.accuracy_gap_points / 50, "exposure_bits": ORACLE["exposure_bits"] + 3}
    rows = M.summarize_verdict(bad, ORACLE, th)
    assert not any(r.passed for r in rows)
    assert all(">" in r.note for r in rows)
    less_exposed = dict(ORACLE, exposure_bits=ORACLE["exposure_bits"] - 2 * th.exposure_gap_bits)
    assert not M.summarize_verdict(less_exposed, ORACLE, th)[3].passed  # unlike the oracle either way
    at_limit = dict(ORACLE, accuracy=ORACLE["accuracy"] + th.accuracy_gap_points / 100)  # exactly 0.5 points
    assert M.summarize_verdict(at_limit, ORACLE, th)[2].passed


def test_verdict_is_pure_and_rejects_bad_input() -> None:
    metrics = dict(ORACLE)
    M.summarize_verdict(metrics, ORACLE)
    assert metrics == ORACLE
    with pytest.raises(BadInput, match="missing \\['exposure_bits'\\]"):
        M.summarize_verdict({k: v for k, v in ORACLE.items() if k != "exposure_bits"}, ORACLE)
    with pytest.raises(BadInput, match="accuracy"):
        M.summarize_verdict(dict(ORACLE, accuracy=90.0), ORACLE)  # a percentage, not a fraction
    with pytest.raises(BadInput, match="lira_auc"):
        M.summarize_verdict(ORACLE, dict(ORACLE, lira_auc=float("nan")))
    with pytest.raises(BadInput, match="lira_auc"):
        M.Thresholds(lira_auc=0.4)
    with pytest.raises(BadInput, match="mia_auc_gap"):
        M.Thresholds(mia_auc_gap=-0.1)


# ----- bad input -----

@pytest.mark.parametrize("call, match", [
    (lambda: M.roc_auc([], [1.0]), "scores_pos must be a non-empty 1-D array"),
    (lambda: M.roc_auc([1.0, float("nan")], [1.0]), "NaN"),
    (lambda: M.roc_curve([[1.0]], [1.0]), "scores_pos"),
    (lambda: M.loss_threshold_mia_auc([1.0], ["x"]), "nonmember_losses must be"),
    (lambda: M.logit_confidence([0.5, 1.2]), r"probabilities in \[0, 1\]"),
    (lambda: M.lira_scores([1.0], [[1.0]], [[0.0, 1.0]]), r"in_stats must be a 2-D array of shape \(1, >= 2\)"),
    (lambda: M.lira_scores([1.0, 2.0], [[1.0, 2.0]], [[0.0, 1.0]]), "in_stats"),
    (lambda: M.lira_scores([1.0], [[1.0, 2.0]], [[0.0, 1.0]], eps=0.0), "eps must be > 0"),
    (lambda: M.exposure_rank(float("inf"), [1.0]), "canary_score"),
    (lambda: M.exposure_skew_normal(0.0, [1.0, 1.0, 1.0, 1.0]), "exposure_rank"),
    (lambda: M.exposure_skew_normal(0.0, [1.0, 2.0]), ">= 3 values"),
    (lambda: M.accuracy([1, 2], [1]), "equal length"),
    (lambda: M.kl_divergence([[0.5, 0.6]], [[0.5, 0.5]]), "p must be"),
    (lambda: M.kl_divergence([[0.5, 0.5]], [[0.3, 0.3, 0.4]]), "q must be"),
    (lambda: M.kl_divergence([[0.5, 0.5]], [[1.5, -0.5]]), "q must be"),
    (lambda: M.kl_from_logits([[0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]), "logits_q"),
])
def test_bad_input_raises_clear_error(call, match: str) -> None:
    with pytest.raises(BadInput, match=match):
        call()


def test_inputs_are_not_modified() -> None:
    rng = np.random.default_rng(10)
    a, b = rng.normal(size=50), rng.normal(size=60)
    a0, b0 = a.copy(), b.copy()
    M.roc_auc(a, b)
    M.roc_curve(a, b)
    M.loss_threshold_mia_auc(a, b)
    M.lira_scores(a[:3], np.stack([a[:3], b[:3]], 1), np.stack([b[:3], a[:3]], 1))
    M.exposure_skew_normal(0.0, b)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)
