"""The hf-causal-lm export for ONNX Runtime: the base graph once, the personal adapter (.onnx_adapter) per publish.

On a device of the shipped models/lm-tiny: ONNX Runtime's logits with the adapter active match PyTorch's
(<= 1e-4), a forget rewrites the adapter and never the graph, the torch-free runtime scores and generates
in a process that never imports torch, and a damaged file is refused.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from assistant_forget import api
from assistant_forget.core.errors import CorruptFile
from assistant_forget.device.store import LogStore
from assistant_forget.export.lm_runtime import ADAPTER, LMRuntime
from assistant_forget.export.publish import current_export
from assistant_forget.families.hf_lm.text import encode
from assistant_forget.runner import forget as forgetting
from assistant_forget.runner.selector import Selector
from devkit import make_device, persona_log

TEXTS = ["set an alarm for six tomorrow morning", "what is the weather in paris"]


@pytest.fixture(scope="module")
def device(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lm") / "phone"
    api.init(root, 0, "hf-causal-lm", None, {"rank": 2}, {"epochs": 2, "lr": 2e-2})
    return make_device(root, persona_log(days=3, seed=9, mean=5.0))


def torch_logits(eng, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return eng.model(input_ids=torch.tensor([ids])).logits[0].numpy()


def test_onnx_runtime_logits_match_pytorch_with_the_adapter_active(device):
    rt = LMRuntime.from_device(device)
    with api.session(device) as eng:
        ids = encode(eng.family.tokenizer, [TEXTS[0]], 64)[0][0].tolist()
        long = (ids * 10)[:64]  # the longest sequence the family trains on
        for seq in (ids[:1], ids, long):
            assert np.abs(rt.logits(seq) - torch_logits(eng, seq)).max() <= 1e-4
        plain = eng.family.new_model()
        with torch.no_grad():
            base = plain(input_ids=torch.tensor([ids])).logits[0].numpy()
        assert np.abs(rt.logits(ids) - base).max() > 1e-3  # the adapter is active: not the base's logits
        assert [rt.score(t) for t in TEXTS] == pytest.approx(
            eng.family.example_losses(eng.model, [type("U", (), {"text": t}) for t in TEXTS]).tolist(), abs=1e-4)
        assert rt.encode(TEXTS[1]) == encode(eng.family.tokenizer, [TEXTS[1]], 64)[0][0].tolist()


def test_a_forget_rewrites_only_the_adapter(device):
    lm = json.loads((current_export(device) / "export.json").read_text())["lm"]
    graph = device / lm["graph"]
    stat = graph.stat()
    before = current_export(device)
    with api.session(device) as eng:
        day = eng.days_with_data()[0]
        forgetting.forget(eng, Selector.parse(date_=day), "exact")
    after = current_export(device)
    assert after != before and not before.exists()
    assert sorted(p.name for p in after.iterdir()) == sorted(["adapter.onnx_adapter", "adapter_config.json",
                                                              "adapter_model.safetensors", "export.json"])
    assert (graph.stat().st_mtime_ns, graph.stat().st_size) == (stat.st_mtime_ns, stat.st_size)
    assert (after / ADAPTER).stat().st_size < graph.stat().st_size / 50


def test_the_runtime_scores_and_generates_without_torch(device):
    rt = LMRuntime.from_device(device)
    expected = [rt.score(t) for t in TEXTS] + [rt.generate("remind me to", 8)]
    code = ("import json, sys\n"
            "from assistant_forget.export.lm_runtime import LMRuntime\n"
            f"rt = LMRuntime.from_device({str(device)!r})\n"
            f"out = [rt.score(t) for t in {TEXTS!r}] + [rt.generate('remind me to', 8)]\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch was imported'\n"
            "print(json.dumps(out))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got[:2] == pytest.approx(expected[:2], abs=1e-6) and got[2] == expected[2] and got[2].strip()
    assert rt.score(TEXTS[0]) < rt.score(" ".join(reversed(TEXTS[0].split())))


def test_a_damaged_adapter_or_graph_is_refused(device, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(device, copy)
    live = current_export(copy)
    data = bytearray((live / ADAPTER).read_bytes())
    data[-5] ^= 1
    (live / ADAPTER).write_bytes(bytes(data))
    with pytest.raises(CorruptFile, match="adapter.onnx_adapter"):
        LMRuntime.from_device(copy)
    shutil.rmtree(copy)
    shutil.copytree(device, copy)
    lm = json.loads((current_export(copy) / "export.json").read_text())["lm"]
    with open(copy / lm["graph"], "ab") as f:
        f.write(b"\0")
    with pytest.raises(CorruptFile, match="model.onnx"):
        LMRuntime.from_device(copy)
