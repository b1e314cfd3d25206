"""The int8 export (format "onnx-int8"): every weight MatMul quantized, deterministic bytes, the fp32 model's
metadata, outputs close to fp32, published beside model.onnx and loaded by the runtime on request."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest

from assistant_forget.core.errors import BadInput, CorruptFile
from assistant_forget.device.clinc import load_clinc
from assistant_forget.export import template as ot
from assistant_forget.export.convert import export_onnx, export_onnx_int8, make_spec, onnx_metadata
from assistant_forget.export.publish import (CURRENT, INT8_FILE, MANIFEST, ONNX_FILE, TOKENIZER_FILE, current_export,
                                             publish, verify_export)
from assistant_forget.export.runtime import Runtime, load_current

pytestmark = pytest.mark.usefixtures("one_thread")
INT8_ERROR = 0.05  # int8 logits stay within this fraction of the fp32 logits' range (both heads)


@pytest.fixture(scope="module")
def model(make_model):
    return make_model(seed=4, adapter_rank=2)


@pytest.fixture(scope="module")
def spec(model, tokenizer_path, labels):
    return make_spec(model, tokenizer_path.read_bytes(), labels, "approximate", oos_threshold=0.2)


@pytest.fixture(scope="module")
def template(model):
    return ot.load_template(ot.build_template(model), model)


@pytest.fixture(scope="module")
def pair(model, spec, template, tmp_path_factory):
    """(fp32 bytes, int8 bytes) of the tests' model, as publish makes them (from the template)."""
    d = tmp_path_factory.mktemp("int8")
    (d / ONNX_FILE).write_bytes(export_onnx(model, spec, template=template))
    export_onnx_int8(d / ONNX_FILE, d / INT8_FILE)
    assert sorted(p.name for p in d.iterdir()) == [INT8_FILE, ONNX_FILE]  # the quantizer's own file is gone
    return (d / ONNX_FILE).read_bytes(), (d / INT8_FILE).read_bytes()


def test_every_weight_matmul_is_int8_and_the_file_is_smaller(pair, model):
    """Each projection, adapter and the intent head (a Gemm, made a MatMul by the quantizer); the tied LM head
    reads the fp32 embedding table through a Transpose (stored once), so it stays fp32."""
    fp32, int8 = (onnx.load_from_string(b) for b in pair)
    inits = {i.name for i in fp32.graph.initializer}
    weight_matmuls = [n for n in fp32.graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] in inits]
    matrices = sum(p.ndim == 2 for p in model.parameters())
    assert len(weight_matmuls) == matrices - 2  # all but the two embedding tables, gathered (and the tied head)
    head = [n for n in int8.graph.node if n.output[0] == "lm_logits"]
    assert [n.op_type for n in head] == ["MatMul"] and "tok.weight" in {i.name for i in int8.graph.initializer}
    assert sum(n.op_type == "MatMulInteger" for n in int8.graph.node) == len(weight_matmuls)
    assert not [n for n in int8.graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] in
                {i.name for i in int8.graph.initializer}]
    int8_weights = [i for i in int8.graph.initializer if i.data_type == onnx.TensorProto.UINT8 and len(i.dims) == 2]
    assert len(int8_weights) == len(weight_matmuls)
    assert len(pair[1]) < len(pair[0])
    onnx.checker.check_model(int8)


def test_same_weights_give_the_same_int8_bytes(pair, model, make_model, spec, template, tmp_path, monkeypatch):
    made: list[Path] = []  # directories tempfile makes meanwhile (onnxruntime's quantizer asks for some)
    real = tempfile.mkdtemp

    def recording(*args, **kwargs):
        made.append(Path(real(*args, **kwargs)))
        return str(made[-1])

    monkeypatch.setattr(tempfile, "mkdtemp", recording)
    before = tempfile.tempdir
    rebuilt = make_model(seed=4, adapter_rank=2)  # a new model object, the same weights
    (tmp_path / ONNX_FILE).write_bytes(export_onnx(rebuilt, spec, template=template))
    export_onnx_int8(tmp_path / ONNX_FILE, tmp_path / "again.onnx")
    assert (tmp_path / "again.onnx").read_bytes() == pair[1]
    assert made and {p.parent for p in made} == {tmp_path}  # never in $TMPDIR (DESIGN), only beside the output
    assert tempfile.tempdir == before and sorted(p.name for p in tmp_path.iterdir()) == ["again.onnx", ONNX_FILE]
    other = make_model(seed=5, adapter_rank=2)
    (tmp_path / ONNX_FILE).write_bytes(export_onnx(other, spec, template=template))
    export_onnx_int8(tmp_path / ONNX_FILE, tmp_path / "other.onnx")
    assert (tmp_path / "other.onnx").read_bytes() != pair[1]


def test_int8_keeps_the_metadata_and_doc_string(pair):
    fp32, int8 = (onnx.load_from_string(b) for b in pair)
    assert onnx_metadata(pair[1]) == onnx_metadata(pair[0])
    assert [(p.key, p.value) for p in int8.metadata_props] == [(p.key, p.value) for p in fp32.metadata_props]
    assert int8.doc_string == fp32.doc_string != ""


def test_int8_answers_close_to_fp32(pair, tokenizer_path):
    tok = tokenizer_path.read_bytes()
    fp32, int8 = Runtime(pair[0], tok), Runtime(pair[1], tok)
    assert (int8.version, int8.labels, int8.oos_threshold) == (fp32.version, fp32.labels, fp32.oos_threshold)
    texts = [t for t, _ in load_clinc()["test"][::150]]
    width = max(len(fp32.encode(t)) for t in texts)
    ids = np.zeros((len(texts), width), dtype=np.int64)  # (B, T) right-padded with pad_id 0
    mask = np.zeros_like(ids)  # (B, T)
    for b, t in enumerate(texts):
        row = fp32.encode(t)
        ids[b, : len(row)], mask[b, : len(row)] = row, 1
    for name, ref, got in zip(("intent_logits", "lm_logits"), fp32.run(ids, mask), int8.run(ids, mask)):
        span = float(ref.max() - ref.min())
        err = float(np.abs(got - ref).max())
        assert 0 < err <= INT8_ERROR * span, f"{name}: int8 differs by {err:.4f}, fp32 logits span {span:.4f}"


def test_publish_writes_the_int8_model_beside_model_onnx_and_the_runtime_loads_it(device_root, model,
                                                                                 tokenizer_path, labels):
    version = publish(device_root, model, tokenizer_path, labels, "exact")
    with pytest.raises(BadInput, match="no onnx-int8 model"):
        load_current(device_root, fmt="onnx-int8")
    assert publish(device_root, model, tokenizer_path, labels, "exact", formats=("onnx-int8", "onnx")) == version
    live = current_export(device_root)
    manifest = verify_export(live)
    assert manifest["formats"] == ["onnx", "onnx-int8"]
    assert sorted(manifest["files"]) == [INT8_FILE, ONNX_FILE, TOKENIZER_FILE]
    assert sorted(os.listdir(live)) == sorted([INT8_FILE, MANIFEST, ONNX_FILE, TOKENIZER_FILE])
    assert sorted(os.listdir(device_root / "exports")) == sorted([CURRENT, version])
    fp32, int8 = load_current(device_root), load_current(device_root, fmt="onnx-int8")
    assert int8.version == fp32.version == version and int8.path == fp32.path == live
    assert int8.session.get_modelmeta().custom_metadata_map == fp32.session.get_modelmeta().custom_metadata_map
    assert int8.intent("set an alarm for seven").label in labels
    with pytest.raises(BadInput, match="fmt must be one of"):
        load_current(device_root, fmt="coreml")
    (live / INT8_FILE).write_bytes(b"tampered")
    with pytest.raises(CorruptFile, match="checksum mismatch"):
        load_current(device_root, fmt="onnx-int8")
