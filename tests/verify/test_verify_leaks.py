"""No figure from which a forgotten secret can be rebuilt is stored, printed or plotted (issue 15).

The canary's exact exposure (rank, skew-normal) under each model stays in memory (Verification.exact);
receipts, verification.json, report.md, the plots and the CLI's text and JSON get a coarse bucket, pass/fail
against the oracle and whether it was memorised. Figures over a handful of forgotten utterances are withheld.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from assistant_forget import api
from assistant_forget.verify import metrics
from assistant_forget.device import receipts
from assistant_forget.verify import verification as verifying
from assistant_forget.cli import main
from assistant_forget.runner.selector import Selector
from assistant_forget.verify.verification import (EXPOSURE_EDGES, MIN_SET, MIN_SHARED, Verification, VerifyConfig, bucket_edges,
                                     bucket_labels, bucket_shares, exposure_bucket, public_summary, verify_forget)
from assistant_forget.verify.report import BINS, binned, shown_losses, write_report
from device_sim.canary import Canary
from device_sim.generator import heldout_utterances
from device_sim.persona import make_persona
from devkit import make_device, persona_log

pytestmark = pytest.mark.usefixtures("one_thread")
DAYS, SEED = 5, 3
CANARY = "my bank pin is 4 8 1 9 3"
CANDIDATES = 300
FAST = VerifyConfig(retained=200, unseen=200, canary_candidates=CANDIDATES)
PUBLIC_EXPOSURE = {"candidates", "space", "bucket", "bucket_before", "passed", "threshold_bits", "memorised_before",
                   "memorised_bits"}


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return persona_log(DAYS, seed=SEED, canaries=(Canary(CANARY, day=2, repeats=3),))


@pytest.fixture(scope="module")
def unseen() -> list[tuple[str, str]]:
    return [(r["text"], r["intent"]) for r in heldout_utterances(make_persona(SEED), 60, SEED)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, records) -> Path:
    torch.set_num_threads(1)
    return make_device(tmp_path_factory.mktemp("trained") / "dev", records)


def exposure_figures(exact: dict) -> list[float]:
    """Every exact exposure figure of an exact summary: rank and skew-normal bits per model, the verdict row."""
    e = exact.get("exposure") or {}
    out = [v for key in ("rank_bits", "skew_normal_bits") for v in (e.get(key) or {}).values()]
    row = (exact.get("verdict") or {}).get("exposure_gap_bits") or {}
    out += [row.get(k) for k in ("value", "oracle", "checked")]
    return [v for v in out if v is not None and math.isfinite(v) and round(v, 2) != v]  # short ones are ambiguous


def found(text: str, figures: list[float], decimals=range(3, 7)) -> list[str]:
    """The figures that `text` holds as a number written with any of `decimals` decimals."""
    hits = []
    for v in figures:
        for d in decimals:
            t = f"{v:.{d}f}"
            if re.search(rf"(?<![\d.]){re.escape(t)}(?!\d)", text):
                hits.append(t)
    return hits


def check_public(summary: dict) -> None:
    """A stored summary: the exposure as a bucket and booleans only, no float figure about the canary."""
    text = json.dumps(summary)
    assert "rank_bits" not in text and "skew_normal_bits" not in text
    assert summary["format"] == 2
    e = summary["exposure"]
    assert set(e) == PUBLIC_EXPOSURE, e
    assert isinstance(e["candidates"], int) and isinstance(e["space"], int) and e["bucket"] in bucket_labels(
        bucket_edges(e["space"]))
    assert isinstance(e["passed"], bool) and e["memorised_before"] in (True, False, None)
    floats = {k for k, v in e.items() if isinstance(v, float)}
    assert floats <= {"threshold_bits", "memorised_bits"} and e["memorised_bits"] == verifying.MEMORISED_BITS
    row = summary["verdict"]["exposure_gap_bits"]
    assert row["value"] is None and row["oracle"] is None and row["checked"] is None
    assert row["passed"] == e["passed"]


def test_exposure_is_stored_and_shown_only_as_a_bucket_and_verdicts(tmp_path, records, unseen, trained, capsys,
                                                                     monkeypatch):
    day = sorted({r["timestamp"][:10] for r in records})[2]
    dev = Path(shutil.copytree(trained, tmp_path / "dev"))
    with api.session(dev) as eng:
        receipt, ver = verify_forget(eng, Selector("date", day, day), "fast", FAST, unseen=unseen, canary=CANARY)
    exact = [ver.exact]
    assert set(ver.exact["exposure"]["rank_bits"]) == {"before", "current", "oracle"}  # in memory, exact
    check_public(ver.summary)
    (stored,) = [r["verification"]["at_forget"] for r in receipts.read_all(dev) if r["id"] == receipt["id"]]
    check_public(stored)
    # the CLI (an audit of the receipt with the canary): text, then --json; record the exact figures it computed
    real = verifying.evaluate

    def spy(*a, **k) -> Verification:
        v = real(*a, **k)
        exact.append(v.exact)
        return v
    monkeypatch.setattr(verifying, "evaluate", spy)
    monkeypatch.setattr(verifying, "VerifyConfig", functools.partial(VerifyConfig, canary_candidates=CANDIDATES))
    report = tmp_path / "report"
    argv = ["verify", "--device", str(dev), "--date", day, "--canary", CANARY, "--report", str(report)]
    assert main(argv) in (0, 1)
    text_out = capsys.readouterr().out
    assert main(argv + ["--json"]) in (0, 1)
    json_out = capsys.readouterr().out
    res = json.loads(json_out)
    check_public(res)
    check_public(res["at_forget"])
    check_public(json.loads((report / "verification.json").read_text(encoding="utf-8")))
    for r in receipts.read_all(dev):
        if r["id"] == receipt["id"]:
            for s in [r["verification"]["at_forget"], *r["verification"]["audits"]]:
                check_public(s)
    figures = [v for ex in exact for v in exposure_figures(ex)]
    assert len(exact) == 3 and figures
    outputs = {"receipts.jsonl": (dev / receipts.FILENAME).read_text(encoding="utf-8"),
               "verification.json": (report / "verification.json").read_text(encoding="utf-8"),
               "report.md": (report / "report.md").read_text(encoding="utf-8"), "cli": text_out, "cli --json": json_out}
    for name, out in outputs.items():
        assert found(out, figures) == [], name
        exposure_lines = "\n".join(line for line in out.splitlines() if "xposure" in line)
        assert found(exposure_lines, figures, range(1, 7)) == [], name  # even short forms, where exposure is shown
    assert "canary exposure" in text_out and res["exposure"]["bucket"] in text_out
    assert (report / "exposure.png").is_file()


def test_a_format_1_verification_is_coarsened_when_carried_forward(tmp_path, records, trained):
    day = sorted({r["timestamp"][:10] for r in records})[1]
    dev = Path(shutil.copytree(trained, tmp_path / "dev"))
    rid = api.forget(dev, date=day, mode="fast")["id"]
    old = exact_summary(12, rank={"before": 8.123457, "current": 1.234567, "oracle": 0.987654}, candidates=99_999)
    receipts.attach_verification(dev, rid, {"format": 1, "at_forget": old, "audits": [old]})  # as written before
    verifying.attach(dev, rid, old, at_forget=False)  # an exact summary given to attach is coarsened too
    latest = [r for r in receipts.read_all(dev) if r["id"] == rid][-1]["verification"]
    assert latest["format"] == 2 and len(latest["audits"]) == 2
    for s in [latest["at_forget"], *latest["audits"]]:
        check_public(s)
        assert s["exposure"]["bucket"] == "1-2 bits" and s["exposure"]["passed"] is True
        assert s["exposure"]["memorised_before"] is False  # 8.12 < 0.99 + 8
    last_line = (dev / receipts.FILENAME).read_text(encoding="utf-8").splitlines()[-1]
    assert found(last_line, [8.123457, 1.234567, 0.987654, 1.234567 - 0.987654], range(2, 7)) == []


def test_exposure_buckets_have_fixed_edges_and_each_holds_thousands_of_secrets():
    assert EXPOSURE_EDGES == (1, 2, 4) and MIN_SHARED == 1000
    assert bucket_labels(bucket_edges(10**5)) == ["< 1 bit", "1-2 bits", "2-4 bits", ">= 4 bits"]
    assert bucket_shares(10**5, bucket_edges(10**5)) == [50_000, 25_000, 18_750, 6_250]
    # every rank of 10^5 secrets, through metrics.exposure_rank as the verification computes it
    n = 10**5
    ranks = {1: ">= 4 bits", 6_250: ">= 4 bits", 6_251: "2-4 bits", 25_000: "2-4 bits", 25_001: "1-2 bits",
             50_000: "1-2 bits", 50_001: "< 1 bit", n: "< 1 bit"}
    for rank, label in ranks.items():
        cands = np.r_[np.zeros(rank - 1), np.ones(n - rank)]  # rank - 1 other secrets score better
        assert exposure_bucket(metrics.exposure_rank(0.5, cands), EXPOSURE_EDGES) == label, rank
    counts = Counter(exposure_bucket(math.log2(n) - math.log2(r), EXPOSURE_EDGES) for r in range(1, n + 1))
    assert [counts[b] for b in bucket_labels(EXPOSURE_EDGES)] == [50_000, 25_000, 18_750, 6_250]
    assert exposure_bucket(float("inf"), EXPOSURE_EDGES) == ">= 4 bits" and exposure_bucket(None, (1,)) is None
    # smaller formats get fewer buckets, so that each still holds >= MIN_SHARED secrets
    assert bucket_edges(10**4) == (1, 2) and bucket_shares(10**4, (1, 2)) == [5_000, 2_500, 2_500]
    assert bucket_edges(10**3) == () and bucket_labels(()) == ["any"] and exposure_bucket(9.9, ()) == "any"
    for space in (2_000, 5_000, 10**4, 10**5, 10**6):
        assert min(bucket_shares(space, bucket_edges(space))) >= MIN_SHARED, space


def exact_summary(n: int, rank: dict | None = None, candidates: int = CANDIDATES) -> dict:
    """An exact (format-1 layout) summary with `n` attacked forgotten utterances."""
    models = ("before", "current", "oracle")
    rank = rank or {"before": 12.345678, "current": 1.234567, "oracle": 0.456789}
    return {
        "format": 1, "kind": "forget", "tier": "fast", "weights": "onnx", "day": "2026-01-03", "state": "approximate",
        "version": {"current": "a" * 16, "oracle": "b" * 16, "equal": False, "export": "e1"},
        "counts": {"forgotten": n, "unseen": 50, "retained": 40, "forgotten_also_retained": 0,
                   "unseen_source": "caller"},
        "mia_auc": {"before": 0.612345, "current": 0.523456, "oracle": 0.514321, "gap": 0.009135},
        "lira_auc": {"pairs": 2, "before": 0.701234, "current": 0.534567, "oracle": 0.521234},
        "accuracy": {s: {m: 0.812345 for m in models} for s in ("forgotten", "unseen", "retained")},
        "kl": {"intent": {"forgotten": 0.00123456, "unseen": 0.000234, "retained": 0.000111},
               "lm": {"forgotten": 0.0345678, "unseen": 0.01234, "retained": 0.0111}},
        "exposure": {"rank_bits": rank, "skew_normal_bits": {m: v + 0.111111 for m, v in rank.items()},
                     "candidates": candidates},
        "verdict": {"mia_auc_gap": {"value": 0.523456, "oracle": 0.514321, "threshold": 0.02, "checked": 0.009135,
                                    "passed": True},
                    "lira_auc": {"value": 0.534567, "oracle": 0.521234, "threshold": 0.55, "checked": 0.534567,
                                 "passed": True},
                    "exposure_gap_bits": {"value": rank["current"], "oracle": rank["oracle"], "threshold": 1.0,
                                          "checked": abs(rank["current"] - rank["oracle"]), "passed": True}},
        "skipped": ["accuracy_gap_points"], "passed": True,
        "seconds": {"oracle": 1.5, "scores": 0.1, "kl": 0.1, "lira": 0.0, "exposure": 0.2},
    }


def test_figures_over_a_few_forgotten_utterances_are_withheld_and_rounded_above():
    one = public_summary(exact_summary(1))
    assert one["mia_auc"] == {"before": None, "current": None, "oracle": None, "gap": None}
    assert one["lira_auc"] == {"pairs": 2, "before": None, "current": None, "oracle": None}
    assert set(one["accuracy"]["forgotten"].values()) == {None} and one["accuracy"]["unseen"]["current"] == 0.812345
    assert one["kl"]["intent"]["forgotten"] is None and one["kl"]["lm"]["forgotten"] is None
    assert one["kl"]["lm"]["unseen"] == 0.01234  # retained and unseen data are not the secret
    for name in ("mia_auc_gap", "lira_auc"):
        row = one["verdict"][name]
        assert (row["value"], row["oracle"], row["checked"], row["passed"]) == (None, None, None, True)
    assert one["forgotten_figures"].startswith("withheld") and one["passed"] is True
    many = public_summary(exact_summary(MIN_SET))
    assert many["mia_auc"] == {"before": 0.61, "current": 0.52, "oracle": 0.51, "gap": 0.01}
    assert many["kl"]["intent"]["forgotten"] == 0.0012 and many["kl"]["lm"]["forgotten"] == 0.035
    assert many["verdict"]["lira_auc"]["value"] == 0.53 and many["forgotten_figures"].startswith("rounded")
    assert public_summary(many) is many  # a public summary stays as it is
    for s in (one, many):
        check_public(s)
    # the exposure check is one-sided: a canary less exposed than on the oracle passes; more than 1 bit fails
    assert public_summary(exact_summary(1, {"current": 0.1, "oracle": 3.5}))["exposure"]["passed"] is True
    worse = public_summary(exact_summary(1, {"before": 16.6, "current": 5.2, "oracle": 0.9}))
    assert worse["exposure"]["passed"] is False and worse["verdict"]["exposure_gap_bits"]["passed"] is False
    assert worse["passed"] is False and worse["exposure"]["memorised_before"] is True
    # a format-1 summary does not name the format's size: the ranked candidates stand for it (coarser)
    assert worse["exposure"]["bucket"] == "any" and worse["exposure"]["space"] == CANDIDATES + 1
    full = public_summary(exact_summary(1, {"before": 16.6, "current": 5.2, "oracle": 0.9}, candidates=99_999))
    assert full["exposure"]["bucket"] == ">= 4 bits" and full["exposure"]["space"] == 10**5
    no_before = public_summary(exact_summary(1, {"current": 0.5, "oracle": 0.4}))
    assert no_before["exposure"]["memorised_before"] is None


def test_plots_of_a_handful_of_forgotten_utterances_leave_them_out(tmp_path):
    rng = np.random.default_rng(0)
    models = ("before", "current", "oracle")

    def ver_of(n: int) -> Verification:
        ex = exact_summary(n, candidates=99_999)
        losses = {s: {m: rng.normal(3, 1, k) for m in models} for s, k in (("forgotten", n), ("unseen", 50),
                                                                             ("retained", 40))}
        return Verification(public_summary(ex), losses, exact=copy.deepcopy(ex))

    few, enough = ver_of(1), ver_of(MIN_SET)
    assert "forgotten" not in shown_losses(few) and "forgotten" in shown_losses(enough)
    out = write_report(few, tmp_path / "few")
    assert sorted(p.name for p in out.parent.iterdir()) == ["exposure.png", "losses.png", "report.md",
                                                            "verification.json"]
    out = write_report(enough, tmp_path / "enough")
    assert (out.parent / "roc.png").is_file()
    md = out.read_text(encoding="utf-8")
    assert "1-2 bits" in md and found(md, exposure_figures(enough.exact), range(2, 7)) == []
    pos, neg = binned(rng.normal(0, 1, 200), rng.normal(1, 1, 300))
    assert set(np.unique(np.r_[pos, neg])) <= set(range(BINS))  # the ROC is drawn from bins, not exact scores
    fpr, _ = metrics.roc_curve(pos, neg)
    assert len(fpr) <= BINS + 1
