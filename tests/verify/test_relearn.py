"""The relearning attack (verify/relearn.py): its core against a slow reference, related text that never holds a
forgotten text or the canary, a deterministic fine-tune, and on tiny models: a canary that an approximate
forget only hid comes back and is flagged, an exact forget passes, models that never saw a canary score chance."""

from __future__ import annotations

import copy
import math
import random

import numpy as np
import pytest
import torch

from assistant_forget.core.errors import BadInput
from assistant_forget.device.clinc import intent_labels, load_clinc
from assistant_forget.families.assistant.personalize import joint_loss
from assistant_forget.families.assistant.tokenizer import Tokenizer
from assistant_forget.verify import attack as A
from assistant_forget.verify import relearn as R
from assistant_forget.verify.canary import random_secret, sample_candidates, secret_index

pytestmark = pytest.mark.usefixtures("one_thread")
FMT = "my bank pin is {d} {d} {d} {d} {d}"
CANARY = "my bank pin is 4 8 1 9 3"


def ref_exposure(canary: float, others: list[float]) -> float:
    """log2 |R| - log2 rank, rank = 1 + how many candidates score strictly lower: counted one by one."""
    rank = 1
    for s in others:
        if s < canary:
            rank += 1
    return math.log2(len(others) + 1) - math.log2(rank)


def ref_figures(losses: dict, canary: dict | None, threshold: float) -> dict:
    """relearn_figures written out literally, with Python loops."""
    def mean(xs) -> float:
        return sum(float(x) for x in xs) / len(xs)
    per = {m: {"before": mean(x[0]), "after": mean(x[1])} for m, x in losses.items()}
    drop = {m: p["before"] - p["after"] for m, p in per.items()}
    out = {"loss_gap_after": per["oracle"]["after"] - per["current"]["after"],
           "loss_recovered": drop["current"] - drop["oracle"]}
    if "before" in per:
        out["recovered_fraction"] = out["loss_gap_after"] / (per["oracle"]["before"] - per["before"]["before"])
    if canary is not None:
        e = {m: [ref_exposure(float(row[0]), [float(v) for v in row[1:]]) for row in x] for m, x in canary.items()}
        out["exposure_after_gap_bits"] = e["current"][1] - e["oracle"][1]
        out["exposure_recovered_bits"] = (e["current"][1] - e["current"][0]) - (e["oracle"][1] - e["oracle"][0])
        out["passed"] = out["exposure_after_gap_bits"] <= threshold
        out["exposure"] = e
    return out


@pytest.mark.parametrize("seed", range(4))
def test_relearn_figures_match_a_slow_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(1, 12)), int(rng.integers(3, 40))
    losses = {"current": rng.gamma(2, 1, (2, n)), "oracle": rng.gamma(2, 1, (2, n)) + 1.0,
              "before": rng.gamma(2, 1, (2, n)) * 0.2}
    canary = {m: np.round(rng.normal(10, 2, (2, 1 + c)), 1) for m in losses}  # rounded: ties happen
    threshold = float(rng.uniform(0, 2))
    got, want = R.relearn_figures(losses, canary, threshold), ref_figures(losses, canary, threshold)
    for k in ("loss_gap_after", "loss_recovered", "recovered_fraction", "exposure_after_gap_bits",
              "exposure_recovered_bits"):
        assert got[k] == pytest.approx(want[k], abs=1e-12), k
    assert got["passed"] == want["passed"] and got["candidates"] == c and got["forgotten"] == n
    for m, (before, after) in want["exposure"].items():
        assert got["models"][m]["exposure_before"] == pytest.approx(before, abs=1e-12)
        assert got["models"][m]["exposure_after"] == pytest.approx(after, abs=1e-12)
    # the registered core: the same figures, per model flattened, nothing undefined
    flat = A.get("relearn", threshold_bits=threshold).run({"relearn_losses": losses, "relearn_canary": canary})
    assert flat["exposure_after_gap_bits"] == got["exposure_after_gap_bits"] and flat["passed"] == got["passed"]
    assert flat["oracle_exposure_after"] == got["models"]["oracle"]["exposure_after"]
    assert all(np.isfinite(v) for v in flat.values())
    bare = A.get("relearn").run({"relearn_losses": {m: losses[m] for m in ("current", "oracle")}})
    assert "passed" not in bare and "recovered_fraction" not in bare
    assert bare["loss_gap_after"] == pytest.approx(want["loss_gap_after"])


def test_relearn_figures_refuse_what_they_cannot_judge() -> None:
    ok = {"current": [[1.0], [1.0]], "oracle": [[1.0], [1.0]]}
    with pytest.raises(BadInput, match="missing oracle"):
        R.relearn_figures({"current": [[1.0], [1.0]]})
    with pytest.raises(BadInput, match="same utterances"):
        R.relearn_figures({"current": [[1.0], [1.0]], "oracle": [[1.0, 2.0], [1.0, 2.0]]})
    with pytest.raises(BadInput, match="2-D array of shape"):
        R.relearn_figures({"current": [1.0, 1.0], "oracle": [[1.0], [1.0]]})
    with pytest.raises(BadInput, match="NaN"):
        R.relearn_figures({"current": [[np.nan], [1.0]], "oracle": [[1.0], [1.0]]})
    with pytest.raises(BadInput, match="must score the models"):
        R.relearn_figures(ok, {"current": [[1.0, 2.0], [1.0, 2.0]], "oracle": [[1.0, 2.0], [1.0, 2.0]],
                               "before": [[1.0, 2.0], [1.0, 2.0]]})
    with pytest.raises(BadInput, match="relearn_losses"):
        A.get("relearn").run({"relearn_canary": {}})


def test_related_utterances_share_the_intents_and_never_a_forgotten_or_excluded_text() -> None:
    train = load_clinc()["train"]
    alarm = [(t, i) for t, i in train if i == "alarm"]
    forgotten = [(alarm[0][0].upper(), "alarm"), ("wake me at seven please", "alarm"), ("what's my balance", "balance"),
                 ("tell me a joke about cats", "oos")]  # one is a public text, in another case
    exclude = [alarm[1][0]]
    rel = R.related_utterances(forgotten, 40, seed=3, exclude=exclude)
    public = {t: i for t, i in train + load_clinc()["oos_train"]}
    banned = {alarm[0][0].casefold(), alarm[1][0].casefold(), *(t.casefold() for t, _ in forgotten)}
    assert len(rel) == 40 and len({t.casefold() for t, _ in rel}) == 40
    assert all(public[t] == i for t, i in rel)  # public train text, with its own label
    assert not {t.casefold() for t, _ in rel} & banned
    counts = {i: sum(1 for _, j in rel if j == i) for i in ("alarm", "balance", "oos")}
    assert counts == {"alarm": 20, "balance": 10, "oos": 10}  # in proportion to the forgotten intents
    assert rel == R.related_utterances(forgotten, 40, seed=3, exclude=exclude) != R.related_utterances(
        forgotten, 40, seed=4, exclude=exclude)
    assert len(R.related_utterances([("x", "balance")], 500)) == 100  # all there is
    with pytest.raises(BadInput, match="not a CLINC150 label"):
        R.related_utterances([("x", "no_such_intent")], 3)
    with pytest.raises(BadInput, match="positive integer"):
        R.related_utterances(forgotten, 0)
    rel = R.canary_related(CANARY, 50, seed=1)
    assert len({t for t, _ in rel}) == 50 and all(i == "oos" for _, i in rel)
    assert all(secret_index(FMT, t) != secret_index(FMT, CANARY) for t, _ in rel)
    assert R.canary_related("locker 0 7 1 9", 5, intent="alarm", fmt="locker {d} {d} {d} {d}")[0][1] == "alarm"
    with pytest.raises(BadInput, match="no secret to rank"):
        R.canary_related("no digits here", 5)


@pytest.fixture(scope="module")
def tok(tokenizer_path) -> Tokenizer:
    return Tokenizer.from_file(tokenizer_path)


@pytest.fixture(scope="module")
def pools() -> dict:
    """Public texts: a base set, and a shuffled CLINC150 test split cut into forgotten / retained."""
    rng = random.Random(0)
    test = load_clinc()["test"][:]
    rng.shuffle(test)
    return {"base": rng.sample(load_clinc()["train"], 600), "forgotten": test[:20], "retained": test[20:120]}


@pytest.fixture(scope="module")
def models(make_model, tok, pools) -> dict:
    """A small base, then the oracle (trained on the retained texts) and the model before the forget (the
    same, with the forgotten texts and the canary said many times)."""
    torch.set_num_threads(1)
    labels = intent_labels()
    base = R.relearn(make_model(seed=0), tok, labels, pools["base"], steps=100, lr=3e-3, seed=0, batch_size=32)
    kept = pools["retained"] + pools["base"][:100]
    oracle = R.relearn(base, tok, labels, kept, steps=60, lr=3e-3, seed=1, batch_size=32)
    said = kept + pools["forgotten"] * 4 + [(CANARY, "oos")] * 80
    before = R.relearn(base, tok, labels, said, steps=60, lr=3e-3, seed=1, batch_size=32)
    other = R.relearn(base, tok, labels, kept, steps=60, lr=3e-3, seed=2, batch_size=32)  # another oracle
    return {"base": base, "oracle": oracle, "before": before, "other_oracle": other}


def test_relearn_is_deterministic_tunes_what_it_is_told_and_leaves_the_model(models, tok, pools) -> None:
    labels, m = intent_labels(), models["oracle"]
    snapshot = copy.deepcopy(m.state_dict())
    rel = R.related_utterances(pools["forgotten"], 32, seed=0)
    a = R.relearn(m, tok, labels, rel, steps=4, seed=5)
    b = R.relearn(m, tok, labels, rel, steps=4, seed=5)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in snapshot.items())  # the attacked model is a copy
    moved = {k for k, v in a.state_dict().items() if not torch.equal(v, snapshot[k])}
    assert moved == set(snapshot)  # "all": every weight the export holds
    lora = R.relearn(m, tok, labels, rel, steps=4, seed=5, parameters="adapters")
    assert {k for k, v in lora.state_dict().items() if not torch.equal(v, snapshot[k])} == {
        k for k in snapshot if "lora_" in k}
    assert not all(torch.equal(v, b.state_dict()[k]) for k, v in R.relearn(m, tok, labels, rel, steps=4,
                                                                            seed=6).state_dict().items())
    for bad, match in (({"parameters": "some"}, "parameters must be"), ({"steps": -1}, "steps must be"),
                       ({"lr": 0}, "lr must be")):
        with pytest.raises(BadInput, match=match):
            R.relearn(m, tok, labels, rel, **bad)
    with pytest.raises(BadInput, match="not one of the model's labels"):
        R.relearn(m, tok, labels, [("hi", "nope")], steps=1)


def ascend(model, tok, data: list[tuple[str, str]], steps: int, lr: float):
    """Gradient-ascent unlearning (a common approximate method): push the joint loss of `data` up."""
    m = copy.deepcopy(model)
    index = {n: i for i, n in enumerate(intent_labels())}
    opt = torch.optim.SGD(m.parameters(), lr=lr)
    y = torch.tensor([index[i] for _, i in data])
    m.train()
    for _ in range(steps):
        opt.zero_grad()
        (-joint_loss(m, tok, [t for t, _ in data], y, 0.5, m.cfg.max_len)).backward()
        opt.step()
    return m.eval()


def test_a_canary_an_approximate_forget_only_hid_comes_back_and_is_flagged(models, tok, pools) -> None:
    labels, forgotten = intent_labels(), pools["forgotten"]
    hidden = ascend(models["before"], tok, [(CANARY, "oos")] * 8 + forgotten, steps=8, lr=0.05)
    related = R.related_utterances(forgotten, 48, seed=0, exclude=[CANARY]) + R.canary_related(CANARY, 16, seed=0)
    cands = sample_candidates(FMT, 300, 0, exclude=[CANARY])
    run = dict(canary=CANARY, candidates=cands, steps=24, seed=0)
    f = R.relearning({"current": hidden, "oracle": models["oracle"], "before": models["before"]}, tok, labels,
                     forgotten, related, **run)
    cur, orc, bef = (f["models"][m] for m in ("current", "oracle", "before"))
    assert bef["exposure_before"] >= orc["exposure_before"] + 4  # memorised before the forget
    assert cur["exposure_before"] <= orc["exposure_before"] + 1  # the plain exposure check passes ...
    assert f["exposure_after_gap_bits"] > 2 and f["passed"] is False  # ... relearning brings it back
    assert f["exposure_recovered_bits"] > 2 and f["loss_recovered"] > 1.0
    assert f["candidates"] + f["candidates_dropped"] == len(cands) and f["candidates_dropped"] > 0
    kept = R.relearning({"current": models["before"], "oracle": models["oracle"]}, tok, labels, forgotten,
                        related, **run)
    assert kept["passed"] is False and kept["exposure_after_gap_bits"] > 2  # did not forget: flagged
    exact = R.relearning({"current": models["oracle"], "oracle": models["oracle"]}, tok, labels, forgotten,
                         related, **run)
    assert exact["passed"] is True and exact["exposure_after_gap_bits"] == 0 == exact["loss_recovered"]
    with pytest.raises(BadInput, match="forgotten texts or the canary"):
        R.relearning({"current": hidden, "oracle": models["oracle"]}, tok, labels, forgotten,
                     related + [forgotten[0]], **run)
    with pytest.raises(BadInput, match="needs candidates"):
        R.relearning({"current": hidden, "oracle": models["oracle"]}, tok, labels, forgotten, related,
                     canary=CANARY)


def test_models_that_never_saw_a_canary_score_chance_after_the_attack(models, tok, pools) -> None:
    """Eight secrets neither oracle saw, each attacked like a canary: exposure after the attack is about the
    mean of a uniform rank (log2 e = 1.44 bits), and one oracle is not more exposed than the other."""
    gaps, after = [], []
    for k in range(8):
        secret = random_secret(FMT, 100 + k)
        related = R.canary_related(secret, 16, seed=k)
        f = R.relearning({"current": models["other_oracle"], "oracle": models["oracle"]}, tok, intent_labels(),
                         pools["forgotten"], related, canary=secret, candidates=sample_candidates(
                             FMT, 200, k, exclude=[secret]), steps=16, seed=k)
        gaps.append(f["exposure_after_gap_bits"])
        after += [f["models"][m]["exposure_after"] for m in ("current", "oracle")]
    assert abs(np.mean(gaps)) < 1.0 and np.mean(after) < 3.0, (gaps, after)
