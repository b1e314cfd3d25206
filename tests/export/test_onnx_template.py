"""The cached ONNX template: filled exports match a fresh trace and PyTorch, hold no data, are rebuilt when bad."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper

from assistant_forget.export import template as ot
from assistant_forget.core.errors import CorruptFile
from assistant_forget.export.convert import export_onnx, make_spec, onnx_metadata
from assistant_forget.export.publish import CACHE, ONNX_FILE, current_export, publish
from assistant_forget.export.runtime import session_options

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = 1e-5  # fp32 parity bound, both heads


@pytest.fixture(scope="module")
def spec(model, tokenizer_path, labels):
    return make_spec(model, tokenizer_path.read_bytes(), labels, "approximate", oos_threshold=0.25)


@pytest.fixture(scope="module")
def template_bytes(model):
    return ot.build_template(model)


@pytest.fixture(scope="module")
def template(template_bytes, model):
    return ot.load_template(template_bytes, model)


def _zero_adapters(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_b" in name:
                p.zero_()
    return model


def _run(onnx_bytes: bytes, ids: torch.Tensor, mask: torch.Tensor) -> list[np.ndarray]:
    sess = ort.InferenceSession(onnx_bytes, session_options(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})


def _inputs(vocab: int, max_len: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(9)
    out = []
    for B, T in [(1, 1), (3, 11), (4, max_len)]:
        ids = torch.randint(4, vocab, (B, T), generator=g)  # (B, T)
        lengths = torch.randint(1, T + 1, (B,), generator=g)  # (B,)
        mask = (torch.arange(T)[None, :] < lengths[:, None]).long()  # (B, T) right padding
        out.append((ids * mask, mask))
    return out


@pytest.mark.parametrize("adapters", ["random", "zero", "none"])
def test_filled_template_matches_a_fresh_export_and_pytorch(make_model, tokenizer_path, labels, adapters):
    model = make_model(seed=4, adapter_rank=0 if adapters == "none" else 2)
    if adapters == "zero":
        _zero_adapters(model)  # equal-valued initializers: a fresh export merges them, the template must not
    spec = make_spec(model, tokenizer_path.read_bytes(), labels, "exact")
    filled = export_onnx(model, spec, template=ot.load_template(ot.build_template(model), model))
    fresh = export_onnx(model, spec)
    for ids, mask in _inputs(model.cfg.vocab_size, model.cfg.max_len):
        with torch.inference_mode():
            ref = [t.numpy() for t in model(ids, mask)]  # (B, I), (B, T, V)
        for name, r, f, t in zip(("intent_logits", "lm_logits"), ref, _run(fresh, ids, mask), _run(filled, ids, mask)):
            assert t.shape == r.shape, name
            assert float(np.abs(t - f).max()) <= TOL, f"{name}: template vs fresh export"
            assert float(np.abs(t - r).max()) <= TOL, f"{name}: template vs PyTorch"


def test_filled_export_keeps_metadata_inputs_and_dynamic_axes(model, spec, template):
    filled, fresh = export_onnx(model, spec, template=template), export_onnx(model, spec)
    assert onnx_metadata(filled) == onnx_metadata(fresh)
    a, b = onnx.load_from_string(filled), onnx.load_from_string(fresh)
    assert a.doc_string == b.doc_string and a.opset_import == b.opset_import
    assert [str(x) for x in a.graph.input] == [str(x) for x in b.graph.input]
    assert [str(x) for x in a.graph.output] == [str(x) for x in b.graph.output]


def test_same_weights_give_the_same_bytes(model, spec, template, template_bytes, make_model):
    first = export_onnx(model, spec, template=template)
    assert export_onnx(make_model(seed=0, adapter_rank=2), spec, template=template) == first
    assert ot.build_template(make_model(seed=7, adapter_rank=2)) == template_bytes  # the weights do not matter
    other = make_model(seed=0, adapter_rank=2)
    with torch.no_grad():
        other.blocks[0].qkv.lora_b[1, 1] += 1e-3
    assert export_onnx(other, spec, template=template) != first


def test_template_holds_no_weights(model, template_bytes):
    proto = onnx.load_from_string(template_bytes)
    assert len(proto.graph.initializer) == len(model.state_dict())  # one per tensor, the tied LM head once
    for init in proto.graph.initializer:
        assert all(len(getattr(init, f)) == 0 for f in ot._DATA_FIELDS), init.name
        assert init.data_location == onnx.TensorProto.DEFAULT and list(init.dims)
    for source in (model, ot._random_copy(model, ot.TRACE_SEED)):  # the real weights and the traced ones
        for name, w in source.state_dict().items():
            head = w.detach().numpy().astype("<f4").ravel()[:8]
            if np.unique(head).size == head.size:  # distinctive (not the zeros and ones of a fresh LayerNorm)
                assert head.tobytes() not in template_bytes, name
    meta = json.loads({p.key: p.value for p in proto.metadata_props}[ot.META_KEY])
    assert meta["key"] == ot.template_key(model)
    assert sorted(k for k, _ in meta["sources"].values()) == sorted(model.state_dict())


def _resealed(template_bytes: bytes, edit) -> bytes:
    """Template bytes after `edit(proto)`, with a valid checksum: only the checks behind it can refuse them."""
    proto = onnx.load_from_string(template_bytes)
    del proto.metadata_props[1]
    edit(proto)
    proto.metadata_props.add(key=ot.SEAL_KEY, value=ot.sha256_bytes(proto.SerializeToString(deterministic=True)))
    return proto.SerializeToString(deterministic=True)


def _set_key(proto, field, value):
    meta = json.loads(proto.metadata_props[0].value)
    meta["key"][field] = value
    proto.metadata_props[0].value = json.dumps(meta, sort_keys=True)


@pytest.mark.parametrize("damage, says", [
    (lambda b: b[: len(b) // 2], "not an ONNX model|not an assistant-forget|checksum"),
    (lambda b: b.replace(b"lora_b", b"lora_c", 1), "checksum mismatch"),
    (lambda b: _resealed(b, lambda p: _set_key(p, "torch", "0.0")), "another architecture"),
    (lambda b: _resealed(b, lambda p: _set_key(p, "opset", 13)), "another architecture"),
    (lambda b: _resealed(b, lambda p: setattr(p.graph.initializer[0], "raw_data", b"\0" * 4)), "has data"),
    (lambda b: _resealed(b, lambda p: p.graph.initializer[1].dims.append(1)), "does not fit"),
    (lambda b: _resealed(b, lambda p: p.graph.initializer.pop()), "one-to-one"),
])
def test_a_damaged_or_mismatching_template_is_refused(template_bytes, model, damage, says):
    with pytest.raises(CorruptFile, match=says):
        ot.load_template(damage(template_bytes), model)


def test_another_architecture_is_refused(template_bytes, make_model):
    with pytest.raises(CorruptFile, match="another architecture"):
        ot.load_template(template_bytes, make_model(seed=0, adapter_rank=3))


def test_publish_caches_the_template_and_rebuilds_a_bad_one(device_root, make_model, tokenizer_path, labels,
                                                            template_bytes):
    models = [make_model(seed=s, adapter_rank=2) for s in (0, 1, 2)]
    publish(device_root, models[0], tokenizer_path, labels, "exact")
    cached = device_root / CACHE / ot.TEMPLATE_FILE
    assert cached.read_bytes() == template_bytes
    cached.write_bytes(_resealed(template_bytes, lambda p: _set_key(p, "torch", "0.0")))  # stale
    publish(device_root, models[1], tokenizer_path, labels, "exact")
    assert cached.read_bytes() == template_bytes
    cached.write_bytes(template_bytes[:-9] + b"tampered!")
    version = publish(device_root, models[2], tokenizer_path, labels, "exact")
    assert cached.read_bytes() == template_bytes
    assert not [p for p in cached.parent.iterdir() if p.name != ot.TEMPLATE_FILE]  # no temp file left
    spec = make_spec(models[2], tokenizer_path.read_bytes(), labels, "exact")
    live = (current_export(device_root) / ONNX_FILE).read_bytes()
    assert current_export(device_root).name == version
    assert live == export_onnx(models[2], spec, template=ot.load_template(template_bytes, models[2]))


def test_an_unusable_cache_only_costs_time(tmp_path, make_model, tokenizer_path, labels):
    from assistant_forget.device.device import Device

    roots = [Device.create(tmp_path / name).root for name in ("plain", "blocked")]
    (roots[1] / CACHE).write_bytes(b"not a directory")
    model = make_model(seed=3, adapter_rank=2)
    versions = [publish(r, model, tokenizer_path, labels, "exact") for r in roots]
    assert versions[0] == versions[1]
    assert (roots[1] / CACHE).read_bytes() == b"not a directory"
    plain, blocked = [(current_export(r) / ONNX_FILE).read_bytes() for r in roots]
    assert plain == blocked and (roots[0] / CACHE / ot.TEMPLATE_FILE).is_file()


def _linear_proto(w: np.ndarray, b: np.ndarray) -> onnx.ModelProto:
    """Y = X @ w + b with `w` stored as given (the transpose of nn.Linear's weight)."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "wt"], ["XW"]), helper.make_node("Add", ["XW", "b"], ["Y"])], "linear",
        [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, ["n", w.shape[0]])],
        [helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, ["n", w.shape[1]])],
        [numpy_helper.from_array(w, "wt"), numpy_helper.from_array(b, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_initializers_map_by_value_including_transposes():
    torch.manual_seed(0)
    traced, other = torch.nn.Linear(3, 4), torch.nn.Linear(3, 4)
    weights = {k: v.detach().numpy() for k, v in traced.state_dict().items()}
    proto = _linear_proto(weights["weight"].T.copy(), weights["bias"])
    sources = ot._map_initializers(proto, weights)
    assert sources == {"wt": ("weight", True), "b": ("bias", False)}
    filled = ot.OnnxTemplate(proto, sources).fill(other)
    x = torch.randn(5, 3)  # (N, 3)
    sess = ort.InferenceSession(filled.SerializeToString(), providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        assert np.allclose(sess.run(None, {"X": x.numpy()})[0], other(x).numpy(), atol=TOL)


def test_an_ambiguous_or_missing_mapping_fails_loudly():
    lin = torch.nn.Linear(3, 3)
    weights = {k: v.detach().numpy() for k, v in lin.state_dict().items()}
    proto = _linear_proto(weights["weight"].T.copy(), weights["bias"])
    with pytest.raises(ot.TemplateError, match="matches 2"):
        ot._map_initializers(proto, {**weights, "copy": weights["weight"].copy()})  # equal values: ambiguous
    with pytest.raises(ot.TemplateError, match="matches 0"):
        ot._map_initializers(proto, {"bias": weights["bias"]})
    with pytest.raises(ot.TemplateError, match="not ONNX initializers"):
        ot._map_initializers(proto, {**weights, "extra": np.ones(7, np.float32)})
    with pytest.raises(ot.TemplateError, match="holds the values of 'bias'"):
        ot._map_initializers(proto, {"weight": weights["weight"], "b": np.ones(3, np.float32), "bias": weights["bias"]})


def test_a_weight_frozen_into_the_graph_fails_the_build(model, monkeypatch):
    """An exporter that uses a Constant copy of a weight (initializer left unused) must not yield a template."""
    real = ot.trace_onnx

    def freezing(m, example_id=0):
        proto = real(m, example_id)
        init = next(i for i in proto.graph.initializer if i.name == "ln_f.bias")
        proto.graph.node.insert(0, helper.make_node("Constant", [], ["frozen"], value=init))
        for node in proto.graph.node[1:]:
            node.input[:] = ["frozen" if x == init.name else x for x in node.input]
        return proto

    monkeypatch.setattr(ot, "trace_onnx", freezing)
    with pytest.raises(ot.TemplateError, match="does not reproduce PyTorch"):
        ot.build_template(model)
