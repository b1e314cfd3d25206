"""Verification of forgetting: the oracle is retraining, attacks see membership, ONNX = PyTorch, nothing leaks."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from assistant_forget import api
from assistant_forget.device import receipts
from assistant_forget.cli import main
from assistant_forget.device.device import Device
from assistant_forget.runner.engine import open_engine
from assistant_forget.core.errors import BadInput, NothingToForget
from assistant_forget.runner.selector import Selector
from assistant_forget.core.ledger import Ledger
from assistant_forget.families.assistant.personalize import PersonalizationConfig
from assistant_forget.export.runtime import load_current
from assistant_forget.verify.scoring import OnnxBackend, TorchBackend, lm_kl, score, sequence_nll
from assistant_forget.device.store import LogStore
from assistant_forget.verify.verification import MIN_SET, VerifyConfig, find_receipt, retained_sample, verify_forget, what_if
from assistant_forget.verify.report import write_report
from device_sim.canary import Canary, sample_candidates
from device_sim.generator import heldout_utterances
from device_sim.persona import make_persona
from devkit import make_device, persona_log, private_texts
from scan import find_texts, snapshot

pytestmark = pytest.mark.usefixtures("one_thread")
DAYS, SEED = 5, 3
CANARY = "my bank pin is 4 8 1 9 3"
FAST = VerifyConfig(retained=1000, unseen=1000, canary_candidates=300)  # every retained row; a small canary space


def day_of(r: dict) -> str:
    return r["timestamp"][:10]


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return persona_log(DAYS, seed=SEED, canaries=(Canary(CANARY, day=2, repeats=3),))


@pytest.fixture(scope="module")
def days(records) -> list[str]:
    return sorted({day_of(r) for r in records})


@pytest.fixture(scope="module")
def unseen() -> list[tuple[str, str]]:
    return [(r["text"], r["intent"]) for r in heldout_utterances(make_persona(SEED), 60, SEED)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, records) -> Path:
    """A trained device, copied by each test that changes it."""
    torch.set_num_threads(1)
    return make_device(tmp_path_factory.mktemp("trained") / "dev", records)


def copy_of(trained: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "dev"))


def test_oracle_of_a_fast_forget_scores_exactly_like_a_device_that_never_saw_the_day(tmp_path, records, days, unseen,
                                                                                      trained):
    day = days[2]
    dev = copy_of(trained, tmp_path)
    with api.session(dev) as eng:
        receipt, ver = verify_forget(eng, Selector("date", day, day), "fast", FAST, unseen=unseen)
    s = ver.summary
    assert receipt["tier"] == "fast" and s["state"] == "approximate" and not s["version"]["equal"]
    never = make_device(tmp_path / "never", records, keep=lambda r: day_of(r) != day)
    assert s["version"]["oracle"] == Ledger(never / "ledger").load_manifest().version
    kept = {r["text"].casefold() for r in records if day_of(r) != day}
    forgotten = list(dict.fromkeys((r["text"], r["intent"]) for r in records
                                   if day_of(r) == day and r["text"].casefold() not in kept))
    d = Device.open(never)
    with LogStore(d.store_path, readonly=True) as store:
        sets = {"forgotten": forgotten, "unseen": unseen, "retained": retained_sample(open_engine(d, store), FAST)}
    rt = OnnxBackend(load_current(never))  # the export of the device that never saw the day
    for name, data in sets.items():
        assert np.array_equal(score(rt, data).lm_loss, ver.losses[name]["oracle"]), name
    assert ver.losses["forgotten"]["before"].mean() < ver.losses["forgotten"]["oracle"].mean()
    (stored,) = [r for r in receipts.read_all(dev) if r["id"] == receipt["id"]]
    assert stored["verification"] == {"format": 2, "at_forget": json.loads(json.dumps(s)), "audits": []}
    # once the exact pass has run, the device is the oracle: same version, zero KL, same scores
    api.maintain(dev)
    res = api.verify(dev, day, unseen=None, report=tmp_path / "report")
    assert res["kind"] == "audit" and res["state"] == "exact" and res["version"]["equal"] and res["passed"]
    assert all(v == 0.0 for by in res["kl"].values() for v in by.values())
    assert all(a["current"] == a["oracle"] for a in res["accuracy"].values())
    assert res["at_forget"]["mia_auc"] == s["mia_auc"]


def test_membership_of_a_trained_handful_is_detected(tmp_path):
    """A dozen utterances trained for many epochs: the loss attack tells them from the rest of their pool.

    Members and non-members are a seeded random split of one pool of the persona's held-out utterances, so
    the oracle (never trained on either) cannot tell them apart beyond sampling noise.
    """
    pool = heldout_utterances(make_persona(SEED), 60, SEED)
    random.Random(0).shuffle(pool)
    members, others = pool[:12], pool[12:]
    first, last = min(day_of(r) for r in members), max(day_of(r) for r in members)
    dev = make_device(tmp_path / "dev", members, train=False)
    d = Device.open(dev)
    with d.locked(), LogStore(d.store_path) as store:
        cfg = PersonalizationConfig(personal="adapters", lr=3e-3, epochs=30, replay_public=8)  # pinned
        eng = open_engine(d, store, cfg=cfg)
        eng.sync()
        eng.publish()
        _, ver = verify_forget(eng, Selector("range", first, last), "fast", FAST,
                               unseen=[(r["text"], r["intent"]) for r in others])
    mia = ver.exact["mia_auc"]  # the exact figures (the stored summary rounds them)
    assert ver.summary["counts"]["forgotten"] == 12 and ver.summary["counts"]["unseen"] == 48
    assert ver.summary["mia_auc"]["before"] == round(mia["before"], 2)
    assert mia["before"] >= 0.85 and mia["before"] - mia["oracle"] >= 0.25, mia


def test_onnx_scores_equal_pytorch_scores(trained, records, unseen):
    d = Device.open(trained)
    with LogStore(d.store_path, readonly=True) as store:
        eng = open_engine(d, store)
        onnx, pt = OnnxBackend(load_current(trained)), TorchBackend(eng.model, eng.base.tokenizer, eng.base.labels)
        data = unseen + [(r["text"], r["intent"]) for r in records[:40]]
        a, b = score(onnx, data, batch_size=16), score(pt, data, batch_size=7)
        for field in ("lm_loss", "intent_loss", "intent_logits"):
            assert np.allclose(getattr(a, field), getattr(b, field), rtol=0, atol=1e-4), field
        assert np.array_equal(a.pred, b.pred) and np.array_equal(a.gold, b.gold)
        assert lm_kl(onnx, pt, [t for t, _ in data]).max() < 1e-4
        cands = [CANARY] + sample_candidates("my bank pin is {d} {d} {d} {d} {d}", 200, 0, exclude=[CANARY])
        fast = sequence_nll(onnx, cands)
        assert np.allclose(fast, sequence_nll(pt, cands), rtol=0, atol=1e-4)
        # the shared-prefix shortcut against the obvious way: one full forward pass per candidate
        ref = []
        for ids in pt.encode(cands):
            x = np.array([ids[:-1]], dtype=np.int64)  # bos + pieces, no eos
            logp = torch.log_softmax(torch.from_numpy(pt.run(x, np.ones_like(x))[1][0]).double(), -1)  # (T, V)
            ref.append(-float(logp[torch.arange(len(ids) - 2), torch.tensor(ids[1:-1])].sum()))
        assert np.allclose(sequence_nll(pt, cands), ref, rtol=0, atol=1e-5)


def test_what_if_and_audit_write_only_the_receipt_line_and_no_text(tmp_path, records, days, unseen, trained):
    dev = copy_of(trained, tmp_path)
    before = snapshot(dev)
    ver = what_if(dev, days[2], VerifyConfig(lira_pairs=2, canary_candidates=300), unseen=unseen, canary=CANARY)
    assert snapshot(dev) == before  # the what-if ran on a temporary copy
    s = ver.summary
    assert s["kind"] == "what_if" and s["counts"]["forgotten"] >= 3 and s["lira_auc"]["pairs"] == 2
    assert set(ver.exact["exposure"]["rank_bits"]) == {"before", "current", "oracle"}
    assert s["exposure"]["candidates"] == 300 and isinstance(s["exposure"]["bucket"], str)
    report = write_report(ver, tmp_path / "whatif-report")
    roc = {"roc.png"} if s["counts"]["forgotten"] >= MIN_SET else set()  # too few: no curve of their losses
    assert {p.name for p in report.parent.iterdir()} == {"report.md", "losses.png", "exposure.png",
                                                         "verification.json"} | roc
    api.forget(dev, date=days[2], mode="fast")
    lines = (dev / receipts.FILENAME).read_text(encoding="utf-8").splitlines()
    after_forget = snapshot(dev)
    held = tmp_path / "unseen.jsonl"
    held.write_text("".join(json.dumps({"text": t, "intent": i}) + "\n" for t, i in unseen), encoding="utf-8")
    res = api.verify(dev, days[2], unseen=held, report=tmp_path / "audit-report")
    changed = {k for k in set(after_forget) | set(snapshot(dev)) if after_forget.get(k) != snapshot(dev).get(k)}
    assert changed == {receipts.FILENAME}
    new_lines = (dev / receipts.FILENAME).read_text(encoding="utf-8").splitlines()
    assert new_lines[:-1] == lines and len(new_lines) == len(lines) + 1
    assert find_receipt(dev, days[2])["verification"]["audits"][0]["kind"] == "audit"
    assert res["kind"] == "audit" and res["mia_auc"] is None and "mia_auc_gap" in res["skipped"]
    assert res["counts"]["unseen"] == len(unseen) and res["counts"]["unseen_source"] == "caller"
    texts = private_texts(list({r["text"] for r in records}) + [t for t, _ in unseen] + [CANARY])
    assert find_texts(tmp_path / "whatif-report", texts) == {}
    assert find_texts(tmp_path / "audit-report", texts) == {}
    kept = {r["text"] for r in records if day_of(r) != days[2]}
    gone = private_texts([r["text"] for r in records if day_of(r) == days[2] and r["text"] not in kept])
    assert CANARY in gone and find_texts(dev, gone) == {}  # and none of the forgotten day's in the device


def test_cli_verify_exit_codes_and_bad_input_change_nothing(tmp_path, days, trained, capsys):
    dev = copy_of(trained, tmp_path)
    before = snapshot(dev)
    assert main(["verify", "--device", str(dev), "--date", "03/02/2026"]) == BadInput.exit_code
    assert main(["verify", "--device", str(dev), "--date", "2026-02-30"]) == BadInput.exit_code
    assert main(["verify", "--device", str(tmp_path / "nope")]) == 3
    assert main(["verify", "--device", str(dev), "--date", days[0], "--weights", "tflite"]) == BadInput.exit_code
    assert main(["verify", "--device", str(dev), "--date", days[0], "--lira", "1"]) == BadInput.exit_code
    assert main(["verify", "--device", str(dev), "--date", days[0], "--report", str(dev / "r")]) == 2
    assert main(["verify", "--device", str(dev), "--date", "2025-01-01"]) == NothingToForget.exit_code
    assert main(["verify", "--device", str(dev)]) == NothingToForget.exit_code  # no forget to audit yet
    assert main(["verify", "--device", str(dev), "--date", days[1], "--canary", "my pin"]) == BadInput.exit_code
    assert snapshot(dev) == before and not (tmp_path / "dev-verify").exists()
    capsys.readouterr()
    rc = main(["verify", "--device", str(dev), "--date", days[1], "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == (0 if out["passed"] else 1) and out["kind"] == "what_if" and out["day"] == days[1]
    assert Path(out["report"]).parent == tmp_path / "dev-verify" and snapshot(dev) == before
    with pytest.raises(BadInput):
        api.verify(dev, days[1], report=dev / "inside")
