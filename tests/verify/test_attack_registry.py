"""The attack registry (verify/attack.py): every registered attack runs on a context of arrays and gives the
figures of the functions it wraps; a forget that kept its data is caught and an exact one is not."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from assistant_forget.core.errors import BadInput
from assistant_forget.verify import attack as A
from assistant_forget.verify import metrics as M
from assistant_forget.verify import privacy as P


def context(seed: int, shift: float) -> dict:
    """Every CONTEXT key, from one synthetic population: forgotten examples sit `shift` above unseen ones."""
    rng = np.random.default_rng(seed)
    n, k = 40, 6
    base = rng.normal(0, 2, n)[:, None]
    member = np.arange(n) < n // 2
    ins, outs = base + 1.0 + rng.normal(size=(n, k)), base + rng.normal(size=(n, k))
    return {
        "member_losses": rng.normal(1.0 - shift, 0.5, n), "nonmember_losses": rng.normal(1.0, 0.5, n),
        "target_stats": base[:, 0] + shift * member + rng.normal(size=n), "in_stats": ins, "out_stats": outs,
        "is_member": member, "canary_score": 10.0 - 3 * shift, "candidate_scores": rng.normal(10.0, 1.0, 999),
        "method_stats": base + shift + rng.normal(size=(n, k)), "oracle_stats": base + rng.normal(size=(n, k)),
        "before_losses": base[:, 0] + 3.0, "after_losses": base[:, 0] + 3.0 + shift * member + rng.normal(0, 0.5, n),
        "relearn_losses": {"current": np.stack([np.full(n, 3.0), np.full(n, 3.0 - shift)]),
                           "oracle": np.stack([np.full(n, 3.0), np.full(n, 3.0)])},
        "relearn_canary": {"current": np.c_[[10.0, 10.0 - 3 * shift], np.tile(rng.normal(10.0, 1.0, 999), (2, 1))],
                           "oracle": np.c_[[10.0, 10.0], np.tile(rng.normal(10.0, 1.0, 999), (2, 1))]},
    }


def test_every_registered_attack_runs_and_matches_what_it_wraps() -> None:
    assert A.names() == ["challenge-eps", "exposure", "lira", "loss-mia", "model-diff", "relearn", "u-lira"]
    c = context(0, 1.0)
    for name in A.names():
        figures = A.get(name).run(c)
        assert figures and all(np.all(np.isfinite(v)) for v in figures.values())
    assert A.get("loss-mia").run(c)["auc"] == M.loss_threshold_mia_auc(c["member_losses"], c["nonmember_losses"])
    s = M.lira_scores(c["target_stats"], c["in_stats"], c["out_stats"], fixed_variance=False)
    lira = A.get("lira", fixed_variance=False, fpr=0.05).run(c)
    assert lira["auc"] == M.lira_auc(s[c["is_member"]], s[~c["is_member"]])
    assert lira["tpr"] == P.tpr_at_fpr(s[c["is_member"]], s[~c["is_member"]], 0.05)
    assert A.get("exposure").run(c)["rank_bits"] == M.exposure_rank(c["canary_score"], c["candidate_scores"])
    u = A.get("u-lira").run(c)
    assert u["tpr"] == P.u_lira(c["method_stats"], c["oracle_stats"]).tpr
    np.testing.assert_array_equal(A.get("challenge-eps").run(c)["epsilon_per_example"],
                                  P.challenge_score(c["method_stats"], c["oracle_stats"]).epsilons)


def test_a_kept_forget_is_caught_and_an_exact_one_is_not() -> None:
    kept, exact = context(1, 4.0), context(2, 0.0)
    assert A.get("u-lira").run(kept)["tpr"] > 0.5 > 0.05 > A.get("u-lira").run(exact)["tpr"]
    assert A.get("loss-mia").run(kept)["auc"] > 0.95 and abs(A.get("loss-mia").run(exact)["auc"] - 0.5) < 0.15
    assert A.get("exposure").run(kept)["rank_bits"] > 8 > 2 > A.get("exposure").run(exact)["rank_bits"]
    assert A.get("challenge-eps").run(kept)["quality"] < A.get("challenge-eps").run(exact)["quality"]
    assert A.get("model-diff").run(kept)["auc"] > 0.95 and abs(A.get("model-diff").run(exact)["auc"] - 0.5) < 0.15
    assert A.get("relearn").run(kept)["passed"] is False and A.get("relearn").run(exact)["passed"] is True


def test_registry_refuses_what_would_not_run() -> None:
    with pytest.raises(BadInput, match="oracle_stats: .*exact oracles"):
        A.get("u-lira").run({"method_stats": np.zeros((3, 3))})
    with pytest.raises(BadInput, match="no attack 'nope'; registered: challenge-eps"):
        A.get("nope")
    with pytest.raises(BadInput, match="unknown setting"):
        A.get("loss-mia", fpr=0.1)

    class Unknown(A.AttackBase):
        name, needs = "unknown-key", ("model_weights",)

    class Loose(A.AttackBase):
        @dataclass
        class Config:
            k: int = 1
        name, needs = "loose", ("member_losses",)

    class Taken(A.AttackBase):
        name, needs = "lira", ("member_losses",)

    for cls, match in ((Unknown, "CONTEXT"), (Loose, "frozen"), (Taken, "registered already")):
        with pytest.raises(ValueError, match=match):
            A.register(cls)
    assert "unknown-key" not in A.names()
