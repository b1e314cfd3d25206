"""Populations for the per-example attacks (verify/population.py), the attacks in `verify`, escalation.

An exact method's members are drawn as the oracles are; a method that keeps the day is
flagged by U-LiRA and the challenge's epsilon while the exact tier is not; the populations do not depend on
the executor; `verify --attacks` and `forget --verify` (escalation) on a device, with no text in what they
write or print.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from assistant_forget import api
from assistant_forget.cli import main
from assistant_forget.core import method as methods
from assistant_forget.core.errors import BadInput
from assistant_forget.core.executor import ProcessExecutor, SerialExecutor
from assistant_forget.device import receipts
from assistant_forget.runner.forget import forget, make_plan
from assistant_forget.runner.selector import Selector
from assistant_forget.verify import metrics, privacy
from assistant_forget.device.clinc import load_clinc
from assistant_forget.verify.oracle import exact_replay, shadow_stats
from assistant_forget.verify.population import MemberStore, population
from assistant_forget.verify.verification import run as run_verification
from assistant_forget.verify.escalation import failed_checks, forget_verified
from assistant_forget.verify.verification import VerifyConfig, only_forgotten, parse_attacks, trained_texts
from device_sim.canary import Canary
from devkit import make_device, persona_log, private_texts
from scan import find_texts, snapshot

pytestmark = pytest.mark.usefixtures("one_thread")

CANARY = "my locker code is 3 7 1 9 5"
DAY = 3  # index of the forgotten day


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return persona_log(7, seed=4, mean=10.0, canaries=(Canary(CANARY, day=DAY, repeats=4),))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, records) -> Path:
    torch.set_num_threads(1)
    return make_device(tmp_path_factory.mktemp("pop") / "dev", records)


def day_of(records, k: int) -> str:
    return sorted({r["timestamp"][:10] for r in records})[k]


def only_on(records, day: str) -> list[str]:
    """The private texts said on `day` and on no other day (a byte scan after forgetting it looks for them)."""
    other = {r["text"].casefold() for r in records if not r["timestamp"].startswith(day)}
    return private_texts([r["text"] for r in records if r["timestamp"].startswith(day)
                          and r["text"].casefold() not in other])


def forgotten_population(trained: Path, tmp: Path, day: str, mode, executor, models: int = 3):
    """Forget `day` with `mode` on a copy of `trained`; its population (models per side)."""
    dev = Path(shutil.copytree(trained, tmp / "dev"))
    with api.session(dev) as eng:
        sel = Selector("date", day, day)
        plan = make_plan(eng, sel, mode)
        rows = sel.match(eng.store)
        forget(eng, sel, mode)
        replay = exact_replay(eng, day)
        texts = list(dict.fromkeys(t for t, _ in only_forgotten([(u.text, u.intent) for u in rows],
                                                                trained_texts(eng))))
        return population(eng, replay.before, day, rows, texts, plan, models=models, horizon=2, executor=executor), dev


def test_member_store_shows_the_rows_on_their_day_and_hides_them_after():
    class Row:
        def __init__(self, d, t):
            self.local_date, self.text, self.order_key = d, t, (d, t)

    class Store:
        rows = [Row("2026-01-01", "a"), Row("2026-01-03", "c")]

        def by_day(self, d):
            return [r for r in self.rows if r.local_date == d]

        def before(self, d):
            return [r for r in self.rows if r.local_date < d]

        def all(self):
            return list(self.rows)

        def by_range(self, a, b):
            return [r for r in self.rows if a <= r.local_date <= b]

    view = MemberStore(Store(), "2026-01-02", [Row("2026-01-02", "b")], ["2026-01-02", "2026-01-03"])
    assert [r.text for r in view.before("2026-01-03")] == ["a", "b"]
    assert [r.text for r in view.all()] == ["a", "b", "c"]
    assert view.day_counts() == {"2026-01-02": 1, "2026-01-03": 1}  # the window only
    view.shown = False
    assert [r.text for r in view.all()] == ["a", "c"] and view.day_counts() == {"2026-01-03": 1}


def test_exact_passes_a_method_that_keeps_the_day_is_flagged_and_the_executor_does_not_matter(tmp_path, trained, records):
    day = day_of(records, DAY)
    exact, dev = forgotten_population(trained, tmp_path / "e", day, "exact", ProcessExecutor(2))
    assert not any((dev / ".work").iterdir())  # the members' ledgers are gone
    # members 0..K-1 (method) and K..2K-1 (oracles) have different seeds: the exact ones are oracle draws
    assert not np.array_equal(exact.method_stats, exact.oracle_stats)
    keep = methods.get("finetune", {"steps": 0})  # no subtraction, no repair: the day stays in the model
    kept, _ = forgotten_population(trained, tmp_path / "k", day, keep, SerialExecutor())
    assert kept.method_stats.mean() > kept.oracle_stats.mean() + 0.05  # lower loss: the day is still there
    # the oracle side is the same computation in both populations, run in a pool and in this process
    np.testing.assert_array_equal(kept.oracle_stats, exact.oracle_stats)
    flagged = privacy.u_lira(kept.method_stats, kept.oracle_stats, fpr=0.01)
    passed = privacy.u_lira(exact.method_stats, exact.oracle_stats, fpr=0.01)
    # with 3 models a side, fewer utterances than a real attack finds; but some are found in every model
    assert flagged.auc >= 0.75 and passed.auc <= 0.65 and flagged.per_example.max() == 1.0 and passed.tpr == 0.0
    assert flagged.tpr > passed.tpr
    assert (privacy.challenge_score(kept.method_stats, kept.oracle_stats).quality
            < privacy.challenge_score(exact.method_stats, exact.oracle_stats).quality)


def test_lira_shadows_are_pure_tasks_the_executor_does_not_change(tmp_path, trained, records):
    day = day_of(records, DAY)
    dev = Path(shutil.copytree(trained, tmp_path / "dev"))
    with api.session(dev) as eng:
        rows = list(eng.store.by_day(day))
        replay = exact_replay(eng, day)
        members = list(dict.fromkeys((u.text, u.intent) for u in rows))
        unseen = [(t, i) for t, i in load_clinc()["test"][: len(members)]]
        pool = [(t, i, 2) for t, i in members] + [(t, i, 1) for t, i in unseen]
        serial = shadow_stats(eng, replay.before, day, pool, 2, 64, executor=SerialExecutor())
        pooled = shadow_stats(eng, replay.before, day, pool, 2, 64, executor=ProcessExecutor(2))
    for a, b in zip(serial, pooled):
        np.testing.assert_array_equal(a, b)  # bit for bit, in this process and in two others
    ins, outs = serial
    assert ins.shape == outs.shape == (len(pool), 2)
    gain = ins.mean(axis=1) - outs.mean(axis=1)  # (N,): a shadow that trained on an utterance gives it a lower loss
    assert gain.mean() > 0 and (gain > 0).mean() >= 0.75, gain
    assert not any((dev / ".work").iterdir())  # the start state written for the tasks is gone


def test_population_refuses_what_it_cannot_run(tmp_path, trained, records):
    last = day_of(records, 6)
    with pytest.raises(BadInput, match="after"):
        forgotten_population(trained, tmp_path / "l", last, "fast", SerialExecutor())
    with pytest.raises(BadInput, match="retrains"):
        forgotten_population(trained, tmp_path / "r", day_of(records, DAY), "retrain", SerialExecutor())


def test_parse_attacks_and_config_refuse_unknown_names():
    assert parse_attacks("u-lira, relearn") == ("u-lira", "relearn")
    for bad in ("", "u-lira,nope", "all,lira"):
        with pytest.raises(BadInput, match="--attacks"):
            parse_attacks(bad)
    for bad in ({"models": 1}, {"horizon": 0}, {"workers": 0}, {"attacks": ("nope",)}, {"weights": "int4"}):
        with pytest.raises(BadInput):
            VerifyConfig(**bad)


def test_verify_attacks_on_a_what_if_and_bad_input_changes_nothing(tmp_path, trained, records, capsys):
    dev = Path(shutil.copytree(trained, tmp_path / "dev"))
    day = day_of(records, DAY)
    before = snapshot(dev)
    for argv in (["--attacks", "u-lira,bogus"], ["--models", "1", "--attacks", "u-lira"],
                 ["--weights", "onnx-int8"]):
        assert main(["verify", "--device", str(dev), "--date", day, "--report", str(tmp_path / "r0"), *argv]) == 2
        err = capsys.readouterr().err
        assert "error:" in err and "Traceback" not in err
        assert snapshot(dev) == before
    code = main(["verify", "--device", str(dev), "--date", day, "--attacks", "u-lira,challenge-eps,loss-mia",
                 "--models", "3", "--workers", "1", "--json", "--report", str(tmp_path / "r")])
    out = capsys.readouterr().out
    res = json.loads(out)
    pe = res["per_example"]
    assert code in (0, 1) and pe["models"] == 3 and pe["method"] == "fast" and 0 <= pe["u_lira"]["tpr"] <= 1
    assert "u_lira_tpr" in res["verdict"] and "accuracy_gap_points" in res["verdict"]
    assert set(res["accuracy_noise"]) == {"current", "before"}
    assert (tmp_path / "r" / "per_example.png").is_file()
    assert snapshot(dev) == before  # a what-if changes nothing
    secret = only_on(records, day)
    assert secret and not find_texts(tmp_path / "r", secret) and not any(t in out for t in secret)


def test_a_failed_auto_forget_escalates_to_the_exact_pass_and_the_receipt_says_so(tmp_path, trained, records):
    dev = Path(shutil.copytree(trained, tmp_path / "dev"))
    day = day_of(records, 1)  # an early day: auto picks the fast tier (long replay)
    strict = VerifyConfig(lira_pairs=2, thresholds=metrics.Thresholds(lira_auc=0.5))  # LiRA has no noise test
    with api.session(dev) as eng:
        receipt, ver = forget_verified(eng, Selector("date", day, day), "auto", strict)
    assert ver.summary["tier"] == "fast" and failed_checks(ver.summary)
    esc = receipt["escalation"]
    assert esc["action"] == "exact pass run" and esc["state"] == "exact" and esc["failed"] == failed_checks(ver.summary)
    stored = {r["id"]: r for r in receipts.read_all(dev)}
    assert stored[receipt["id"]]["escalation"] == esc and stored[esc["receipt"]]["type"] == "exact_pass"
    assert api.status(dev)["state"] == "exact"
    secret = only_on(records, day)
    assert secret and not find_texts(dev, secret)
    # asked for fast, the failure is recorded and nothing more is done
    dev2 = Path(shutil.copytree(trained, tmp_path / "dev2"))
    with api.session(dev2) as eng:
        receipt2, _ = forget_verified(eng, Selector("date", day, day), "fast", replace(strict))
    assert receipt2["escalation"]["action"].startswith("none") and api.status(dev2)["state"] == "approximate"


def test_only_a_gap_beyond_its_noise_escalates():
    row = lambda passed, sig=None: {"passed": passed, **({} if sig is None else {"significant": sig})}  # noqa: E731
    s = {"state": "approximate", "verdict": {"accuracy_gap_points": row(False, False), "mia_auc_gap": row(False, True),
                                             "lira_auc": row(False), "u_lira_tpr": row(True)}}
    assert failed_checks(s) == ["mia_auc_gap", "lira_auc"]
    assert failed_checks({"state": "exact", "verdict": {}, "version": {"equal": False}}) == ["version"]


def test_cli_forget_verify(tmp_path, trained, records, capsys):
    dev = Path(shutil.copytree(trained, tmp_path / "dev"))
    day = day_of(records, 5)
    before = snapshot(dev)
    assert main(["forget", "--device", str(dev), "--date", day, "--canary", CANARY]) == 2  # --canary needs --verify
    assert main(["forget", "--device", str(dev), "--date", day, "--verify", "--dry-run"]) == 2
    assert snapshot(dev) == before
    capsys.readouterr()
    assert main(["forget", "--device", str(dev), "--date", day, "--verify"]) == 0
    out = capsys.readouterr().out
    assert "verified:" in out
    (r,) = [r for r in receipts.read_all(dev) if r.get("type") == "forget"]
    assert r["verification"]["at_forget"]["kind"] == "forget"


def test_the_int8_export_is_attacked_like_the_fp32_one(tmp_path, trained, records):
    dev = Path(shutil.copytree(trained, tmp_path / "dev"))
    api.export(dev, "onnx,onnx-int8")
    day, before = day_of(records, DAY), snapshot(dev)
    res = {w: run_verification(dev, day, VerifyConfig(weights=w, canary_candidates=300, unseen=200), canary=CANARY)
           for w in ("onnx", "onnx-int8")}
    fp32, int8 = res["onnx"].summary, res["onnx-int8"].summary
    assert int8["weights"] == "onnx-int8" and int8["version"]["export"] == fp32["version"]["export"]
    assert abs(int8["mia_auc"]["gap"] - fp32["mia_auc"]["gap"]) <= 0.05
    assert abs(int8["accuracy"]["unseen"]["current"] - fp32["accuracy"]["unseen"]["current"]) <= 0.02
    assert int8["exposure"]["passed"] == fp32["exposure"]["passed"]
    assert snapshot(dev) == before


def test_half_rounded_weights_score_close_to_the_full_ones(trained):
    from assistant_forget.verify.scoring import TorchBackend, half_rounded, score

    with api.session(trained) as eng:
        data = [(u.text, u.intent) for u in eng.store.all()[:40]]
        full = score(TorchBackend(eng.model, eng.base.tokenizer, eng.base.labels), data)
        half = half_rounded(eng.model)
        rounded = score(TorchBackend(half, eng.base.tokenizer, eng.base.labels), data)
        p = next(iter(half.parameters()))
        assert torch.equal(p, p.half().float()) and not half is eng.model
    assert 0 < np.abs(full.lm_loss - rounded.lm_loss).max() < 0.05


def test_the_stored_summary_keeps_no_exposure_bits_of_the_relearning_attack_and_coarse_figures():
    from assistant_forget.verify.verification import EXACT_FORMAT, public_summary

    relearn = {"models": {"current": {"loss_before": 1.23456, "loss_after": 1.1, "exposure_before": 3.3,
                                      "exposure_after": 9.87654}, "oracle": {"loss_before": 1.3, "loss_after": 1.2,
                                                                              "exposure_after": 2.5}},
               "exposure_after_gap_bits": 7.3, "exposure_recovered_bits": 6.1, "loss_gap_after": 0.123456,
               "loss_recovered": 0.01, "recovered_fraction": 0.5, "passed": False, "steps": 16}
    row = {"value": 9.87654, "oracle": 2.5, "checked": 7.37654, "threshold": 1.0, "passed": False}
    exact = {"format": EXACT_FORMAT, "counts": {"forgotten": 4}, "relearn": relearn,
             "model_diff": {"current": {"auc": 0.812345, "feature": "lm"}},
             "per_example": {"u_lira": {"tpr": 0.123456}, "challenge": {"quality": 0.3}},
             "verdict": {"relearn_exposure_gap_bits": row}, "exposure": None}
    out = public_summary(exact)
    text = json.dumps(out)
    assert "9.87" not in text and "7.3" not in text and "exposure_after" not in text
    assert out["verdict"]["relearn_exposure_gap_bits"]["passed"] is False
    assert out["verdict"]["relearn_exposure_gap_bits"]["value"] is None
    # fewer than MIN_SET forgotten utterances: figures over them are withheld
    assert out["model_diff"]["current"]["auc"] is None and out["per_example"]["u_lira"]["tpr"] is None
    assert out["relearn"]["models"]["current"]["loss_before"] is None
    shown = public_summary({**exact, "counts": {"forgotten": 40}})
    assert shown["model_diff"]["current"]["auc"] == 0.81 and shown["relearn"]["loss_gap_after"] == 0.12
