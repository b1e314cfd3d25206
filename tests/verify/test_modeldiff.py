"""The model-diff attack (verify/modeldiff.py): its core against a slow reference, and on tiny models: the diff of a
model that memorised utterances and the exact model without them gives them away; the diff of two models that
never saw them, or of a model with itself, is chance."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from assistant_forget.core.errors import BadInput
from assistant_forget.device.clinc import intent_labels, load_clinc
from assistant_forget.families.assistant.tokenizer import Tokenizer
from assistant_forget.verify import attack as A
from assistant_forget.verify import modeldiff as D
from assistant_forget.verify.relearn import relearn
from assistant_forget.verify.scoring import TorchBackend, score

pytestmark = pytest.mark.usefixtures("one_thread")


def ref_auc(pos: list[float], neg: list[float]) -> float:
    """P(pos > neg) + P(pos = neg) / 2 over every pair."""
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def ref_tpr(pos: list[float], neg: list[float], fpr: float) -> float:
    """Best TPR of "score > t => forgotten" over every threshold t whose FPR is at most `fpr`."""
    best = 0.0
    for t in [-np.inf, *pos, *neg]:
        if sum(n > t for n in neg) / len(neg) <= fpr + 1e-12:
            best = max(best, sum(p > t for p in pos) / len(pos))
    return best


@pytest.mark.parametrize("seed", range(5))
def test_diff_attack_matches_a_slow_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 60))
    before = np.round(rng.gamma(2, 1, n), 1)
    member = rng.random(n) < 0.4
    member[:2] = [True, False]
    after = np.round(before + rng.normal(0, 0.5, n) + 0.7 * member, 1)  # rounded: ties happen
    fpr = float(rng.choice([0.0, 0.01, 0.1, 0.3]))
    s = [a - b for a, b in zip(after.tolist(), before.tolist())]
    np.testing.assert_allclose(D.diff_scores(before, after), s, atol=1e-12)
    got = D.diff_attack(before, after, member, fpr)
    pos = [x for x, m in zip(s, member) if m]
    neg = [x for x, m in zip(s, member) if not m]
    assert got["auc"] == pytest.approx(ref_auc(pos, neg), abs=1e-12)
    assert got["tpr"] == pytest.approx(ref_tpr(pos, neg, fpr), abs=1e-12)
    assert (got["forgotten"], got["unseen"], got["fpr"]) == (len(pos), len(neg), fpr)
    ctx = {"before_losses": before, "after_losses": after, "is_member": member}
    assert A.get("model-diff", fpr=fpr).run(ctx) == got


def test_diff_attack_refuses_what_it_cannot_judge() -> None:
    with pytest.raises(BadInput, match="same utterances"):
        D.diff_scores([1.0, 2.0], [1.0])
    with pytest.raises(BadInput, match="both forgotten and unseen"):
        D.diff_attack([1.0, 2.0], [1.0, 2.0], [True, True])
    with pytest.raises(BadInput, match="booleans"):
        D.diff_attack([1.0, 2.0], [1.0, 2.0], [1, 0])
    with pytest.raises(BadInput, match="NaN"):
        D.diff_attack([1.0, np.inf], [1.0, 2.0], [True, False])
    with pytest.raises(BadInput, match="fpr must be"):
        D.diff_attack([1.0, 2.0], [1.0, 2.0], [True, False], fpr=2.0)
    with pytest.raises(BadInput, match="after_losses"):
        A.get("model-diff").run({"before_losses": [1.0], "is_member": [True]})


@pytest.fixture(scope="module")
def setting(make_model, tokenizer_path) -> dict:
    """A small base; the exact model (trained on retained texts) and the model before the forget (the same
    with 20 forgotten texts said four times); forgotten and unseen texts a random split of one public pool."""
    torch.set_num_threads(1)
    tok, labels = Tokenizer.from_file(tokenizer_path), intent_labels()
    rng = random.Random(1)
    test = load_clinc()["test"][:]
    rng.shuffle(test)
    forgotten, unseen, retained = test[:20], test[20:80], test[80:180]
    public = rng.sample(load_clinc()["train"], 400)
    base = relearn(make_model(seed=1), tok, labels, public, steps=60, lr=3e-3, seed=0, batch_size=32)
    exact = relearn(base, tok, labels, retained + public[:100], steps=50, lr=3e-3, seed=1, batch_size=32)
    before = relearn(base, tok, labels, retained + public[:100] + forgotten * 4, steps=50, lr=3e-3, seed=1,
                     batch_size=32)
    b = lambda m: TorchBackend(m, tok, labels)  # noqa: E731
    return {"base": b(base), "exact": b(exact), "before": b(before), "forgotten": forgotten, "unseen": unseen}


def test_the_diff_of_a_memorising_model_and_the_exact_one_gives_the_forgotten_away(setting) -> None:
    s = setting
    r = D.model_diff(s["before"], s["exact"], s["forgotten"] + s["forgotten"][:3], s["unseen"], 32)
    assert (r["forgotten"], r["unseen"]) == (20, 60)  # duplicates dropped
    assert r["auc"] == max(r[f]["auc"] for f in D.FEATURES) == r[r["feature"]]["auc"] > 0.85, r
    assert r["lm"]["auc"] > 0.65 and r["tpr"] > 0  # at 1 % FPR of 60 unseen: no false positive allowed
    assert D.model_diff(s["before"], s["exact"], s["forgotten"], s["unseen"], fpr=0.1)["tpr"] > 0.5
    # the runner is the core over the two models' per-utterance scores
    pool = s["forgotten"] + s["unseen"]
    sb, sa = score(s["before"], pool), score(s["exact"], pool)
    member = np.arange(80) < 20
    assert r["intent"] == D.diff_attack(sb.intent_loss, sa.intent_loss, member)
    assert r["joint"] == D.diff_attack(sb.intent_loss + 0.5 * sb.lm_loss, sa.intent_loss + 0.5 * sa.lm_loss, member)


def test_models_that_never_saw_the_utterances_or_did_not_change_give_chance(setting) -> None:
    s = setting
    never = D.model_diff(s["base"], s["exact"], s["forgotten"], s["unseen"])  # neither saw either set
    assert all(abs(never[f]["auc"] - 0.5) < 0.15 for f in D.FEATURES), never
    same = D.model_diff(s["before"], s["before"], s["forgotten"], s["unseen"])  # a forget that did nothing
    assert all(same[f]["auc"] == 0.5 and same[f]["tpr"] == 0.0 for f in D.FEATURES)
    with pytest.raises(BadInput, match="also among the forgotten"):
        D.model_diff(s["before"], s["exact"], s["forgotten"], s["unseen"] + [(s["forgotten"][0][0].upper(), "oos")])
    with pytest.raises(BadInput, match="needs forgotten and unseen"):
        D.model_diff(s["before"], s["exact"], [], s["unseen"])
