"""CoreML export: the spec an iOS app sees, the weights in the package, byte determinism, parity on macOS."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import sentencepiece as spm
import torch

from assistant_forget.device.clinc import load_clinc
from assistant_forget.core.errors import BadInput
from assistant_forget.export.convert import (AUTHOR, coreml_spec, coreml_weight_mismatches, coreml_weights, export_coreml,
                                     make_spec, model_version)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def spec(model, tokenizer_path, labels):
    return make_spec(model, tokenizer_path.read_bytes(), labels, "approximate", oos_threshold=0.25)


@pytest.fixture(scope="module")
def package(model, spec, tmp_path_factory):
    path = tmp_path_factory.mktemp("coreml") / "model.mlpackage"
    export_coreml(model, spec, path)
    return path


def _tree(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_spec_inputs_outputs_and_metadata(model, spec, package, labels):
    s = coreml_spec(package)
    L, V = model.cfg.max_len, model.cfg.vocab_size
    assert s.WhichOneof("Type") == "mlProgram" and s.specificationVersion >= 7  # iOS 16
    ins = {i.name: i.type.multiArrayType for i in s.description.input}
    outs = {o.name: o.type.multiArrayType for o in s.description.output}
    assert list(ins) == ["input_ids", "attention_mask"] and list(outs) == ["intent_logits", "lm_logits"]
    int32, fp32 = ins["input_ids"].INT32, ins["input_ids"].FLOAT32
    assert all(list(t.shape) == [1, L] and t.dataType == int32 for t in ins.values())
    assert list(outs["intent_logits"].shape) == [1, model.cfg.n_intents] and outs["intent_logits"].dataType == fp32
    assert list(outs["lm_logits"].shape) == [1, L, V] and outs["lm_logits"].dataType == fp32
    assert all(i.shortDescription for i in list(s.description.input) + list(s.description.output))
    md = s.description.metadata
    version = model_version(model, spec)
    assert md.author == AUTHOR and "CC BY 3.0" in md.license and md.versionString == version
    assert "approximate" in md.shortDescription
    ud = dict(md.userDefined)
    assert ud["version"] == version and ud["state"] == "approximate"
    assert json.loads(ud["labels"]) == list(labels) and float(ud["oos_threshold"]) == 0.25
    assert ud["tokenizer_sha256"] == spec.tokenizer_sha256 and int(ud["max_len"]) == L
    assert "com.github.apple.coremltools.conversion_date" not in ud  # no wall-clock time in the file


def test_package_stores_the_pytorch_weights_in_fp16(model, package, make_model):
    stored = coreml_weights(package)
    assert stored["p_tok_weight_to_fp16"].shape == tuple(model.tok.weight.shape)  # tied head stored once
    assert coreml_weight_mismatches(model, package) == []
    other = make_model(seed=1, adapter_rank=2)  # same shapes; norms, biases and lora_a init are equal
    differ = [n for n, v in other.state_dict().items() if not torch.equal(v, model.state_dict()[n])]
    assert len(differ) == 19 and coreml_weight_mismatches(other, package) == differ
    nudged = make_model(seed=0, adapter_rank=2)
    with torch.no_grad():
        nudged.blocks[0].proj.lora_b[5, 0] += 0.01
    assert coreml_weight_mismatches(nudged, package) == ["blocks.0.proj.lora_b"]


def test_package_is_byte_deterministic(model, spec, package, tmp_path):
    again = tmp_path / "again.mlpackage"
    export_coreml(model, spec, again)
    assert _tree(again) == _tree(package)


def test_refuses_an_existing_or_misnamed_path(model, spec, package, tmp_path):
    with pytest.raises(BadInput, match=r"\.mlpackage"):
        export_coreml(model, spec, package)
    with pytest.raises(BadInput, match=r"\.mlpackage"):
        export_coreml(model, spec, tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(sys.platform != "darwin", reason="CoreML prediction needs macOS (no libcoremlpython elsewhere)")
def test_prediction_parity_on_macos(model, package, tokenizer_path):
    import coremltools as ct

    ml = ct.models.MLModel(str(package))
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_path))
    L = model.cfg.max_len
    for text in [t for t, _ in load_clinc()["test"][::501]] + ["wake zoë at 7 ⏰"]:
        row = [sp.bos_id()] + sp.EncodeAsIds(text)[: L - 2] + [sp.eos_id()]
        ids = torch.zeros(1, L, dtype=torch.long)  # (1, L) padded to max_len
        ids[0, : len(row)] = torch.tensor(row)
        mask = torch.zeros_like(ids)  # (1, L)
        mask[0, : len(row)] = 1
        with torch.inference_mode():
            intent, lm = model(ids[:, : len(row)], mask[:, : len(row)])  # unpadded reference
        out = ml.predict({"input_ids": ids.numpy().astype(np.int32), "attention_mask": mask.numpy().astype(np.int32)})
        assert np.abs(out["intent_logits"] - intent.numpy()).max() < 2e-2
        assert np.abs(out["lm_logits"][:, : len(row)] - lm.numpy()).max() < 2e-2
