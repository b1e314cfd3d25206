"""Verification on an hf-causal-lm device: a memorised canary is flagged before the forget and gone after.

A secret said eight times on the last day of a shipped-LM device (models/lm-tiny) is ranked among all 99,999
other secrets of its format before a what-if forget, after its fast tier, after the exact pass and under the
oracle (the exact replay); `assistant-forget verify` runs it from the command line.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from assistant_forget import api, cli
from assistant_forget.families.hf_lm.family import HFCausalLMFamily
from assistant_forget.verify.lm import secret_ids, secret_scores
from devkit import make_device, persona_log
from device_sim.canary import Canary
from scan import find_texts, snapshot

SECRET = "remind me my locker code is 4 1 9 7 3"


def test_the_trie_scores_equal_a_plain_forward_pass_up_to_the_shared_prefix():
    fam = HFCausalLMFamily(None)
    model = fam.new_model()
    texts = [f"my pin is {a} {b} {c}" for a, b, c in ((1, 2, 3), (1, 2, 9), (7, 0, 0), (9, 9, 9))]
    ids, start = secret_ids(fam.tokenizer, texts)
    got = secret_scores(model, ids, start, group=3)  # two tries
    with torch.no_grad():
        full = np.array([-torch.log_softmax(model(input_ids=torch.tensor([s])).logits[0], -1)[
            torch.arange(len(s) - 1), torch.tensor(s[1:])].sum().item() for s in ids])
    offset = full - got  # the shared prefix's NLL: the same for every secret
    assert np.ptp(offset) < 1e-3 and offset[0] > 0 and np.ptp(got) > 0.1


def test_a_memorised_canary_is_flagged_before_and_gone_after_fast_and_exact(tmp_path, capsys):
    dev = tmp_path / "phone"
    api.init(dev, 0, "hf-causal-lm", None, {"rank": 4}, {"epochs": 10, "lr": 1e-2})
    records = persona_log(days=3, seed=9, mean=5.0, canaries=(Canary(SECRET, 2, 8),))
    make_device(dev, records)
    day = sorted({r["timestamp"][:10] for r in records})[2]
    before = snapshot(dev)
    code = cli.main(["verify", "--device", str(dev), "--date", day, "--canary", SECRET, "--json"])
    res = json.loads(capsys.readouterr().out)
    assert code == 0 and res["passed"] and res["kind"] == "what-if" and res["candidates"] == 99_999
    assert res["memorised_before"]["flagged"]  # >= oracle + 10 bits before the forget
    bits = res["exposure_bits"]
    assert bits["before"] >= bits["oracle"] + 10
    assert bits["fast"] <= bits["oracle"] + 1 and bits["exact"] <= bits["oracle"] + 1
    assert res["checks"]["version exact"]["passed"]  # the exact pass is the oracle
    assert snapshot(dev) == before  # a what-if changes nothing on the device
    report = tmp_path / "phone-verify"
    assert find_texts(report, [SECRET, "4 1 9 7 3"]) == {}  # figures only
    assert cli.main(["forget", "--device", str(dev), "--date", day, "--mode", "exact"]) == 0
    capsys.readouterr()
    code = cli.main(["verify", "--device", str(dev)])
    out = capsys.readouterr().out
    assert code == 0 and "audit" in out and "PASS" in out
