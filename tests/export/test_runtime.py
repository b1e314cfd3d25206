"""The app runtime: no torch, answers like the PyTorch model, refuses what does not belong together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from assistant_forget.device.clinc import load_clinc
from assistant_forget.core.errors import BadInput, CorruptFile
from assistant_forget.export.convert import export_onnx, make_spec
from assistant_forget.export.publish import ONNX_FILE, publish
from assistant_forget.export.runtime import Runtime, load_current

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model(make_model):
    return make_model(seed=4, adapter_rank=2)


@pytest.fixture(scope="module")
def runtime(model, tokenizer_path, labels):
    tok = tokenizer_path.read_bytes()
    return Runtime(export_onnx(model, make_spec(model, tok, labels, "exact")), tok)


def _torch_logits(model, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    x = torch.tensor([ids])  # (1, T)
    with torch.inference_mode():
        intent, lm = model(x, torch.ones_like(x))  # (1, I), (1, T, V)
    return intent[0].double().numpy(), lm[0].double().numpy()


@pytest.mark.parametrize("fmt", ["onnx", "onnx-int8"])
def test_importing_and_predicting_leaves_torch_out(device_root, model, tokenizer_path, labels, fmt):
    publish(device_root, model, tokenizer_path, labels, "exact", formats=tuple(dict.fromkeys(("onnx", fmt))))
    code = ("import sys, json; from assistant_forget.export.runtime import load_current; "
            f"rt = load_current({str(device_root)!r}, fmt={fmt!r}); r = rt.intent('set an alarm for 7'); "
            "s = rt.suggest('set an', k=2); "
            "print(json.dumps([r.label, len(s), sorted(m for m in sys.modules if m.split('.')[0] == 'torch')]))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, encoding="utf-8",
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    label, n, torch_modules = json.loads(out.stdout.strip().splitlines()[-1])
    assert label in labels and n == 2 and torch_modules == []


def test_encode_is_bos_pieces_eos_cut_to_max_len(runtime):
    ids = runtime.encode("set an alarm")
    assert ids[0] == runtime.bos_id and ids[-1] == runtime.eos_id and len(ids) > 3
    assert runtime.encode("set an alarm", eos=False) == ids[:-1]
    long = runtime.encode("please " * 100)
    assert len(long) == runtime.max_len and long[-1] == runtime.eos_id


def test_intent_matches_pytorch_softmax(runtime, model, labels):
    for text, _ in load_clinc()["test"][::1500]:
        logits, _ = _torch_logits(model, runtime.encode(text))
        p = np.exp(logits - logits.max())
        p /= p.sum()
        r = runtime.intent(text)
        assert r.index == int(p.argmax()) and r.label == labels[r.index]
        assert abs(r.confidence - p.max()) < 1e-6


def test_intent_applies_the_exported_oos_threshold(model, tokenizer_path, labels):
    tok = tokenizer_path.read_bytes()
    rt = Runtime(export_onnx(model, make_spec(model, tok, labels, "exact", oos_threshold=0.9)), tok)
    text = "what is my credit score"
    logits, _ = _torch_logits(model, rt.encode(text))
    p = np.exp(logits - logits.max())
    p /= p.sum()  # a random-init model: no class comes near 0.9
    r = rt.intent(text)
    assert (r.label, r.index) == ("oos", len(labels) - 1)
    assert abs(r.confidence - (1 - p[:-1].max())) < 1e-6


@pytest.mark.parametrize("prefix", ["", "set an ", "what is the", "wake me up at se"])
def test_suggestions_are_scored_like_pytorch(runtime, model, prefix):
    sug = runtime.suggest(prefix, k=4)
    assert 1 <= len(sug) <= 4 and len({s.word for s in sug}) == len(sug)
    assert [s.probability for s in sug] == sorted((s.probability for s in sug), reverse=True)
    sp = runtime.sp
    words = prefix.split()
    partial = words[-1] if words and not prefix[-1].isspace() else ""
    ctx = [runtime.bos_id] + sp.EncodeAsIds(" ".join(words[:-1] if partial else words))
    boundary = [i for i in range(sp.GetPieceSize()) if i == runtime.eos_id or
                (sp.IdToPiece(i).startswith("▁") and i > runtime.eos_id and not sp.IdToPiece(i).startswith("<"))]
    for s in sug:
        pieces = [sp.IdToPiece(i) for i in s.ids]
        assert pieces[0].startswith("▁") and not any(p.startswith("▁") for p in pieces[1:])
        assert s.word and s.word == sp.DecodeIds(list(s.ids)).strip() and s.word.startswith(partial)
        _, lm = _torch_logits(model, ctx + list(s.ids))  # reference: score the word with PyTorch
        logp = lm - np.log(np.exp(lm - lm.max(-1, keepdims=True)).sum(-1, keepdims=True)) - lm.max(-1, keepdims=True)
        T = len(ctx)
        score = sum(logp[T - 1 + j, i] for j, i in enumerate(s.ids))
        score += np.log(np.exp(logp[T - 1 + len(s.ids), boundary]).sum())
        assert abs(np.log(s.probability) - score) < 1e-4, s


def test_bad_input_is_refused(runtime):
    with pytest.raises(BadInput, match="k must be"):
        runtime.suggest("set an", k=0)
    with pytest.raises(BadInput, match="max_pieces"):
        runtime.suggest("set an", max_pieces=0)
    with pytest.raises(BadInput, match="prefix must be a string"):
        runtime.suggest(None)
    with pytest.raises(BadInput, match="text must be a string"):
        runtime.intent(b"bytes")
    too_long = np.full((1, runtime.max_len + 1), 5, dtype=np.int64)
    with pytest.raises(BadInput, match="1 <= T <= 32"):
        runtime.run(too_long, np.ones_like(too_long))
    with pytest.raises(BadInput, match="int64"):
        runtime.run(too_long[:, :4].astype(np.int32), np.ones((1, 4), dtype=np.int32))


@pytest.mark.parametrize("text", ["hello \ud83d world", "\udc00", "end \udfff", "\ud83d\ud83d", "a\udcc3b"])
def test_a_lone_surrogate_is_refused_as_bad_input_not_a_pybind_error(runtime, text):
    """docs/mobile.md: every *valid* string encodes; a lone surrogate has no UTF-8 form, so it is BadInput."""
    index = next(i for i, c in enumerate(text) if 0xD800 <= ord(c) <= 0xDFFF)
    for call in (runtime.intent, runtime.encode, runtime.suggest, lambda t: runtime.suggest(t + " ")):
        with pytest.raises(BadInput, match=rf"contains an unpaired surrogate \('\\u[0-9a-f]{{4}}' at index {index}\); "
                                           r"it must be valid Unicode"):
            call(text)


@pytest.mark.parametrize("text", ["hello \U0001f382 world", "a\x00b", "\ufeff", "", "\u200b\u200d", "\U0010ffff",
                                  "e\u0301" * 50, "👨\u200d👩\u200d👧"])
def test_every_valid_string_encodes_and_gets_an_answer(runtime, text):
    assert runtime.intent(text).label in runtime.labels
    assert isinstance(runtime.suggest(text, k=2), list)


def test_a_foreign_tokenizer_or_broken_model_is_refused(model, tokenizer_path, labels, tmp_path):
    tok = tokenizer_path.read_bytes()
    onnx_bytes = export_onnx(model, make_spec(model, tok, labels, "exact"))
    with pytest.raises(CorruptFile, match="not the one this model was exported with"):
        Runtime(onnx_bytes, tok + b"\x00")
    with pytest.raises(CorruptFile, match="onnxruntime cannot load"):
        Runtime(onnx_bytes[: len(onnx_bytes) // 2], tok)


def test_load_current_checks_files_against_export_json(device_root, model, tokenizer_path, labels):
    with pytest.raises(CorruptFile, match="no export has been published"):
        load_current(device_root)
    version = publish(device_root, model, tokenizer_path, labels, "exact")
    rt = load_current(device_root)
    assert rt.version == version and rt.path == device_root / "exports" / version and rt.state == "exact"
    onnx_path = rt.path / ONNX_FILE
    data = bytearray(onnx_path.read_bytes())
    data[-1] ^= 0xFF
    onnx_path.write_bytes(bytes(data))
    with pytest.raises(CorruptFile, match="checksum mismatch"):
        load_current(device_root)
