"""ONNX export: deterministic bytes, a version that tracks the weights, metadata, parity with PyTorch."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import sentencepiece as spm
import torch

from assistant_forget.device.clinc import load_clinc
from assistant_forget.core.errors import BadInput, CorruptFile
from assistant_forget.export.convert import export_onnx, make_spec, model_version, onnx_metadata
from assistant_forget.core.fsio import sha256_file
from assistant_forget.export.runtime import session_options

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = 1e-5  # fp32 parity bound, both heads


@pytest.fixture(scope="module")
def spec(model, tokenizer_path, labels):
    return make_spec(model, tokenizer_path.read_bytes(), labels, "exact")


@pytest.fixture(scope="module")
def onnx_bytes(model, spec):
    return export_onnx(model, spec)


def _session(onnx_bytes: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(onnx_bytes, session_options(), providers=["CPUExecutionProvider"])


def _assert_parity(model, sess, ids: torch.Tensor, mask: torch.Tensor) -> None:
    with torch.inference_mode():
        ref = model(ids, mask)  # (B, I), (B, T, V)
    got = sess.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    for name, r, g in zip(("intent_logits", "lm_logits"), ref, got):
        assert g.shape == tuple(r.shape), name
        err = float(np.abs(g - r.numpy()).max())
        assert err <= TOL, f"{name} {tuple(ids.shape)}: max abs diff {err:.2e} > {TOL}"


def test_same_weights_give_identical_bytes(model, spec, onnx_bytes, make_model):
    assert export_onnx(model, spec) == onnx_bytes
    assert export_onnx(make_model(seed=0, adapter_rank=2), spec) == onnx_bytes  # a rebuilt model, same weights


def test_different_weights_give_different_bytes_and_version(model, spec, onnx_bytes, make_model):
    other = make_model(seed=0, adapter_rank=2)
    with torch.no_grad():
        other.blocks[1].fc.lora_b[3, 1] += 1e-3  # one adapter entry
    other_bytes = export_onnx(other, spec)
    assert other_bytes != onnx_bytes
    assert onnx_metadata(other_bytes)["version"] != onnx_metadata(onnx_bytes)["version"]
    assert model_version(other, spec) != model_version(model, spec)


def test_version_covers_state_and_labels(model, spec, tokenizer_path, labels):
    approx = make_spec(model, tokenizer_path.read_bytes(), labels, "approximate")
    renamed = make_spec(model, tokenizer_path.read_bytes(), labels[1:] + labels[:1], "exact")
    versions = {model_version(model, s) for s in (spec, approx, renamed)}
    assert len(versions) == 3


def test_export_leaves_the_model_alone(make_model, spec):
    m = make_model(seed=3).train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    export_onnx(m, spec)
    assert m.training
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_metadata_tells_the_app_what_it_needs(model, onnx_bytes, tokenizer_path, labels):
    meta = onnx_metadata(onnx_bytes)
    assert meta["version"] == model_version(model, make_spec(model, tokenizer_path.read_bytes(), labels, "exact"))
    assert json.loads(meta["labels"]) == list(labels)
    assert meta["tokenizer_sha256"] == sha256_file(tokenizer_path)
    assert meta["state"] == "exact"
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_path))
    assert [int(meta[k]) for k in ("pad_id", "unk_id", "bos_id", "eos_id")] == \
        [sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()]
    assert int(meta["max_len"]) == model.cfg.max_len and int(meta["vocab_size"]) == sp.GetPieceSize()
    assert json.loads(meta["model_config"]) == model.cfg.to_dict()
    assert float(meta["oos_threshold"]) == 0.0


def test_graph_has_both_heads_and_dynamic_axes(onnx_bytes):
    sess = _session(onnx_bytes)
    ins = {i.name: i for i in sess.get_inputs()}
    outs = {o.name: o for o in sess.get_outputs()}
    assert list(ins) == ["input_ids", "attention_mask"] and list(outs) == ["intent_logits", "lm_logits"]
    assert all(i.type == "tensor(int64)" and i.shape == ["batch", "seq"] for i in ins.values())
    assert outs["intent_logits"].shape[0] == "batch" and outs["lm_logits"].shape[:2] == ["batch", "seq"]


@pytest.mark.parametrize("adapter_rank", [0, 2])
def test_parity_on_random_inputs(make_model, spec, adapter_rank):
    model = make_model(seed=11, adapter_rank=adapter_rank)
    sess = _session(export_onnx(model, spec))
    g = torch.Generator().manual_seed(5)
    for B, T in [(1, 1), (1, 7), (3, 17), (8, model.cfg.max_len)]:
        ids = torch.randint(4, model.cfg.vocab_size, (B, T), generator=g)  # (B, T)
        lengths = torch.randint(1, T + 1, (B,), generator=g)  # (B,)
        mask = (torch.arange(T)[None, :] < lengths[:, None]).long()  # (B, T) right padding
        _assert_parity(model, sess, ids * mask, mask)


def test_parity_on_clinc_text(model, onnx_bytes, tokenizer_path):
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_path))
    texts = [t for t, _ in load_clinc()["test"][::97]][:40] + ["wake zoë at 7 ⏰ please"]
    L = model.cfg.max_len
    rows = [[sp.bos_id()] + sp.EncodeAsIds(t)[: L - 2] + [sp.eos_id()] for t in texts]
    sess = _session(onnx_bytes)
    for start, size in [(0, 1), (1, 5), (6, 16), (22, len(rows) - 22)]:
        batch = rows[start: start + size]
        T = max(len(r) for r in batch)
        ids = torch.zeros(len(batch), T, dtype=torch.long)  # (B, T)
        mask = torch.zeros_like(ids)  # (B, T)
        for b, r in enumerate(batch):
            ids[b, : len(r)] = torch.tensor(r)
            mask[b, : len(r)] = 1
        _assert_parity(model, sess, ids, mask)


def test_bad_inputs_are_refused(model, tokenizer_path, labels, make_model):
    tok = tokenizer_path.read_bytes()
    with pytest.raises(BadInput, match="state"):
        make_spec(model, tok, labels, "maybe")
    with pytest.raises(BadInput, match="151 intents but 150 labels"):
        make_spec(model, tok, labels[:-1], "exact")
    with pytest.raises(BadInput, match="distinct"):
        make_spec(model, tok, labels[:-1] + labels[:1], "exact")
    with pytest.raises(BadInput, match="oos_threshold"):
        make_spec(model, tok, labels, "exact", oos_threshold=1.5)
    with pytest.raises(CorruptFile, match="not a valid SentencePiece model"):
        make_spec(model, b"not a tokenizer", labels, "exact")
    with pytest.raises(BadInput, match="app.s contract"):
        make_spec(torch.nn.Linear(2, 2), tok, labels, "exact")
    from assistant_forget.families.assistant.model import AssistantModel, ModelConfig
    with pytest.raises(BadInput, match="vocab_size"):
        make_spec(AssistantModel(ModelConfig(vocab_size=500, d_model=32, n_heads=2, d_ff=64)), tok, labels, "exact")
    with pytest.raises(CorruptFile, match="not a valid ONNX model"):
        onnx_metadata(b"\x00garbage")
