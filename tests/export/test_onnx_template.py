"""The cached ONNX template: filled exports are onnx's own bytes, match a fresh export and PyTorch, hold no
data, are rebuilt when bad, and a publish from a warm cache imports neither onnx, onnxruntime nor protobuf."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper

from assistant_forget.core.errors import CorruptFile
from assistant_forget.core.fsio import sealed_json_bytes, unseal_json
from assistant_forget.export import template as ot
from assistant_forget.export.convert import export_metadata, export_onnx, make_spec, onnx_metadata, trace_onnx
from assistant_forget.export.publish import CACHE, ONNX_FILE, current_export, publish
from assistant_forget.export.runtime import session_options

from devkit import TINY_VOCAB

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = 1e-5  # fp32 parity bound, both heads
REPO = Path(__file__).resolve().parents[2]
HEAVY = ("onnx", "onnxruntime", "google.protobuf", "ml_dtypes", "coremltools")


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


def _onnx_fill(proto: onnx.ModelProto, sources: dict, model, metadata: dict[str, str]) -> bytes:
    """What the onnx library gives: a copy of `proto` with every initializer's data set from `model`, the
    metadata added in key order, serialized deterministically."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    weights = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    for init in out.graph.initializer:
        key, transposed = sources[init.name]
        w = weights[key].T if transposed else weights[key]
        init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w, dtype=np.float32), init.name))
    del out.metadata_props[:]
    for k, v in sorted(metadata.items()):
        out.metadata_props.add(key=k, value=v)
    return out.SerializeToString(deterministic=True)


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


@pytest.mark.parametrize("seed, rank, zero", [(4, 2, False), (5, 2, True), (6, 0, False), (7, 3, False)])
def test_filled_bytes_are_what_onnx_fills_and_serializes(make_model, tokenizer_path, labels, seed, rank, zero):
    """Splicing the segments gives, byte for byte, onnx's fill of the same graph + SerializeToString(deterministic)."""
    model = make_model(seed=seed, adapter_rank=rank)
    if zero:
        _zero_adapters(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # every tensor random, LayerNorms included
    tpl = ot.load_template(ot.build_template(model), model)
    random = ot._random_copy(model, ot.TRACE_SEED)
    traced = trace_onnx(random)  # the graph the template was cut from
    sources = ot._map_initializers(traced, {k: v.detach().numpy() for k, v in random.state_dict().items()})
    spec = make_spec(model, tokenizer_path.read_bytes(), labels, "approximate", oos_threshold=0.3)
    filled = export_onnx(model, spec, template=tpl)
    assert filled == _onnx_fill(traced, sources, model, export_metadata(model, spec))
    assert onnx.load_from_string(filled).doc_string == traced.doc_string != ""


@pytest.mark.parametrize("metadata", [
    {}, {"a": ""}, {"": "empty key"}, {"labels": json.dumps(["é", "日本", "🙂"]), "version": "0123456789abcdef"},
    {"long": "x" * 127, "longer": "y" * 128, "longest": "z" * 20000},  # one-, two- and three-byte lengths
])
def test_metadata_is_encoded_as_protobuf_does(metadata):
    proto = onnx.ModelProto()
    for k, v in sorted(metadata.items()):
        proto.metadata_props.add(key=k, value=v)
    assert ot.encode_metadata(metadata) == proto.SerializeToString(deterministic=True)


def _linear_proto(w: np.ndarray, b: np.ndarray) -> onnx.ModelProto:
    """Y = X @ w + b with `w` stored as given (the transpose of nn.Linear's weight)."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "wt"], ["XW"]), helper.make_node("Add", ["XW", "b"], ["Y"])], "linear",
        [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, ["n", w.shape[0]])],
        [helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, ["n", w.shape[1]])],
        [numpy_helper.from_array(w, "wt"), numpy_helper.from_array(b, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_metadata_goes_between_the_graph_and_later_fields():
    """ModelProto fields numbered above metadata_props (14) stay after it: the builder finds the place by a marker."""
    torch.manual_seed(0)
    traced, other = torch.nn.Linear(3, 4), torch.nn.Linear(3, 4)
    weights = {k: v.detach().numpy() for k, v in traced.state_dict().items()}
    proto = _linear_proto(weights["weight"].T.copy(), weights["bias"])
    proto.functions.add(name="unused", domain="test.later.fields")  # field 25
    proto.doc_string = "field 6, before the graph"
    sources = ot._map_initializers(proto, weights)
    meta = {"version": "0123456789abcdef", "labels": '["a", "b"]'}
    tpl = ot.split_model(proto, sources)
    assert tpl.segments[-1].endswith(b"test.later.fields")
    assert tpl.fill(other, meta) == _onnx_fill(proto, sources, other, meta)


def test_filled_export_keeps_metadata_inputs_and_dynamic_axes(model, spec, template):
    filled, fresh = export_onnx(model, spec, template=template), export_onnx(model, spec)
    assert onnx_metadata(filled) == onnx_metadata(fresh)
    a, b = onnx.load_from_string(filled), onnx.load_from_string(fresh)
    assert a.doc_string == b.doc_string and a.opset_import == b.opset_import
    assert [str(x) for x in a.graph.input] == [str(x) for x in b.graph.input]
    assert [str(x) for x in a.graph.output] == [str(x) for x in b.graph.output]
    onnx.checker.check_model(a)


def test_the_graph_is_folded_and_stores_every_weight_once(model, spec, template):
    """No Transpose of a weight is left for onnxruntime to fold at load time (or for the quantizer to miss),
    except the tied LM head's, which reads the embedding table so that its weights are stored once."""
    proto = onnx.load_from_string(export_onnx(model, spec, template=template))
    inits = {i.name for i in proto.graph.initializer}
    transposed = [n for n in proto.graph.node if n.op_type == "Transpose" and n.input[0] in inits]
    assert [n.input[0] for n in transposed] == ["tok.weight"]
    matmuls = [n for n in proto.graph.node if n.op_type == "MatMul"]
    weight_matmuls = [n for n in matmuls if n.input[1] in inits]
    n_linear = sum(1 for m in model.modules() if isinstance(m, torch.nn.Linear)) - 1  # the intent head is a Gemm
    n_adapter = sum(1 for name, _ in model.named_parameters() if "lora_" in name)
    assert len(weight_matmuls) == n_linear + n_adapter
    assert [n.input[1] for n in matmuls if n.output[0] == "lm_logits"] == [transposed[0].output[0]]
    assert len(proto.graph.initializer) == len(model.state_dict())  # tied tensors appear once in both


def test_same_weights_give_the_same_bytes(model, spec, template, template_bytes, make_model):
    first = export_onnx(model, spec, template=template)
    assert export_onnx(make_model(seed=0, adapter_rank=2), spec, template=template) == first
    assert ot.build_template(make_model(seed=7, adapter_rank=2)) == template_bytes  # the weights do not matter
    other = make_model(seed=0, adapter_rank=2)
    with torch.no_grad():
        other.blocks[0].qkv.lora_b[1, 1] += 1e-3
    assert export_onnx(other, spec, template=template) != first


def test_template_holds_no_weights(model, template_bytes):
    obj = unseal_json(template_bytes)
    segments = b"".join(base64.b64decode(s) for s in obj["segments"])
    keys = [k for k, _, _ in obj["weights"]]
    assert sorted(set(keys)) == sorted(model.state_dict())
    assert len(keys) == len(set(keys))  # every tensor once, the tied LM head's too
    for source in (model, ot._random_copy(model, ot.TRACE_SEED)):  # the real weights and the traced ones
        for name, w in source.state_dict().items():
            w = w.detach().numpy().astype("<f4")
            for form in ([w, w.T] if w.ndim == 2 else [w]):
                head = np.ascontiguousarray(form).ravel()[:8]
                if np.unique(head).size == head.size:  # distinctive (not the zeros and ones of a fresh LayerNorm)
                    assert head.tobytes() not in segments, name
    assert obj["key"] == ot.template_key(model)


def _resealed(template_bytes: bytes, edit) -> bytes:
    """Template bytes after `edit(obj)`, with a valid seal: only the checks behind it can refuse them."""
    obj = unseal_json(template_bytes)
    edit(obj)
    return sealed_json_bytes(obj)


def _set_key(obj, field, value):
    obj["key"][field] = value


def _index(obj, key):
    return next(i for i, (k, _, _) in enumerate(obj["weights"]) if k == key)


def _drop_weight(obj, key):
    i = _index(obj, key)
    del obj["weights"][i], obj["segments"][i + 1]


@pytest.mark.parametrize("damage, says", [
    (lambda b: b[: len(b) // 2], "not a sealed template"),
    (lambda b: b.replace(b"lora_b", b"lora_c", 1), r"not a sealed template \(checksum mismatch"),
    (lambda b: b"\xff" + b, "not a sealed template"),
    (lambda b: _resealed(b, lambda o: _set_key(o, "torch", "0.0")), "another architecture"),
    (lambda b: _resealed(b, lambda o: _set_key(o, "opset", 13)), "another architecture"),
    (lambda b: _resealed(b, lambda o: _set_key(o, "format", 1)), "another architecture"),
    (lambda b: _resealed(b, lambda o: o["weights"][1][2].append(1)), "does not fit"),
    (lambda b: _resealed(b, lambda o: o["weights"][_index(o, "ln_f.bias")].__setitem__(1, True)), "does not fit"),
    (lambda b: _resealed(b, lambda o: _drop_weight(o, "ln_f.bias")), "one-to-one"),
    (lambda b: _resealed(b, lambda o: o["weights"].append(o["weights"][0])), "segments for"),
    (lambda b: _resealed(b, lambda o: o["segments"].pop()), "segments for"),
    (lambda b: _resealed(b, lambda o: o["segments"].__setitem__(0, "not base64!")), "unreadable template"),
    (lambda b: _resealed(b, lambda o: o.pop("weights")), "unreadable template"),
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
    (device_root / CACHE).mkdir()
    (device_root / CACHE / ot.OLD_TEMPLATE_FILE).write_bytes(b"a format-1 template")
    publish(device_root, models[0], tokenizer_path, labels, "exact")
    cached = device_root / CACHE / ot.TEMPLATE_FILE
    assert cached.read_bytes() == template_bytes
    assert not (device_root / CACHE / ot.OLD_TEMPLATE_FILE).exists()
    cached.write_bytes(_resealed(template_bytes, lambda o: _set_key(o, "torch", "0.0")))  # stale
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


PUBLISH = r"""
import json, sys, torch
from assistant_forget.device.clinc import intent_labels
from assistant_forget.export.publish import publish
from assistant_forget.families.assistant.model import AssistantModel, ModelConfig
root, tokenizer, vocab, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(seed)
cfg = ModelConfig(vocab_size=vocab, d_model=32, n_heads=2, n_layers=2, d_ff=64, max_len=32, adapter_rank=2)
version = publish(root, AssistantModel(cfg).eval(), tokenizer, intent_labels(), "exact")
print(json.dumps({"version": version, "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def _publish_in_a_fresh_interpreter(root: Path, tokenizer_path: Path, seed: int) -> dict:
    """Publish a new model of the tests' architecture from another interpreter; its version and heavy imports."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", PUBLISH, str(root), str(tokenizer_path), str(TINY_VOCAB), str(seed)],
                         capture_output=True, text=True, encoding="utf-8", env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_publish_from_a_warm_cache_imports_no_onnx_onnxruntime_or_protobuf(device_root, tokenizer_path):
    cold = _publish_in_a_fresh_interpreter(device_root, tokenizer_path, seed=11)  # builds the template
    assert {"onnx", "onnxruntime", "google.protobuf"} <= set(cold["heavy"])  # the probe sees a heavy import
    warm = _publish_in_a_fresh_interpreter(device_root, tokenizer_path, seed=12)  # new weights: a new version
    assert warm["heavy"] == [] and warm["version"] != cold["version"]
    assert current_export(device_root).name == warm["version"]


def test_initializers_map_by_value_including_transposes():
    torch.manual_seed(0)
    traced, other = torch.nn.Linear(3, 4), torch.nn.Linear(3, 4)
    weights = {k: v.detach().numpy() for k, v in traced.state_dict().items()}
    proto = _linear_proto(weights["weight"].T.copy(), weights["bias"])
    sources = ot._map_initializers(proto, weights)
    assert sources == {"wt": ("weight", True), "b": ("bias", False)}
    filled = ot.split_model(proto, sources).fill(other, {})
    x = torch.randn(5, 3)  # (N, 3)
    sess = ort.InferenceSession(filled, providers=["CPUExecutionProvider"])
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
    proto.graph.initializer.add().CopyFrom(numpy_helper.from_array(weights["bias"].copy(), "b2"))
    with pytest.raises(ot.TemplateError, match=r"\['bias'\] are stored twice"):
        ot._map_initializers(proto, weights)


def test_a_marker_that_is_not_found_exactly_once_fails_loudly():
    assert ot._find_once(b"..ab..", b"ab", "w") == 2
    for data in (b"..ab..ab", b"...."):
        with pytest.raises(ot.TemplateError, match="marker of w occurs"):
            ot._find_once(data, b"ab", "w")


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
