"""CoreML export: the classifier spec an iOS app sees, the weights in the package, byte determinism, and the
package's own MIL program run by a numpy interpreter against PyTorch (CoreML cannot predict off macOS)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import torch

from assistant_forget.core.errors import BadInput
from assistant_forget.core.numerics import oos_rule
from assistant_forget.device.clinc import load_clinc
from assistant_forget.export.convert import AUTHOR, make_spec, model_version
from assistant_forget.export.coreml import (CLASS_LABEL, CLASS_PROBS, LM_LOGITS, _spec_path, coreml_const_name,
                                            coreml_spec, coreml_weight_mismatches, coreml_weights, export_coreml,
                                            quiet_coremltools)

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = [t for t, _ in load_clinc()["test"][::701]] + ["wake zoë at 7 ⏰", "set an alarm for seven " * 9]


@pytest.fixture(scope="module")
def model(make_model):
    """The conftest model with a sharper intent head, so its probabilities have a clear winner to classify."""
    m = make_model(seed=0, adapter_rank=2)
    with torch.no_grad():
        m.intent.weight.mul_(60.0)
    return m


@pytest.fixture(scope="module")
def spec(model, tokenizer_path, labels):
    return make_spec(model, tokenizer_path.read_bytes(), labels, "approximate", oos_threshold=0.25)


@pytest.fixture(scope="module")
def package(model, spec, tmp_path_factory):
    path = tmp_path_factory.mktemp("coreml") / "model.mlpackage"
    export_coreml(model, spec, path)
    return path


@pytest.fixture(scope="module")
def sp(tokenizer_path):
    return spm.SentencePieceProcessor(model_file=str(tokenizer_path))


def _tree(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _row(sp, text: str, max_len: int) -> list[int]:
    return [sp.bos_id()] + sp.EncodeAsIds(text)[: max_len - 2] + [sp.eos_id()]


def _torch(model, row: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's (intent probabilities (I,), lm_logits (T, V)) for one unpadded row."""
    ids = torch.tensor([row])  # (1, T)
    with torch.inference_mode():
        intent, lm = model(ids, torch.ones_like(ids))
    return intent.softmax(-1)[0].numpy(), lm[0].numpy()


# -- a numpy interpreter of the package's MIL program ---------------------------------------------------------

def _gelu(x, mode):
    if mode == "EXACT":
        return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    return x / (1.0 + np.exp(-1.702 * x))


def _slice(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    n = x.ndim
    stride = [1] * n if stride is None else stride
    begin_mask, end_mask = begin_mask if begin_mask is not None else [False] * n, \
        end_mask if end_mask is not None else [False] * n
    index = tuple(slice(None if bm else int(b), None if em else int(e), int(s))
                  for b, e, s, bm, em in zip(begin, end, stride, begin_mask, end_mask))
    out = x[index]
    if squeeze_mask is not None:
        out = out.squeeze(tuple(i for i, sq in enumerate(squeeze_mask) if sq))
    return out


def _split(x, axis, split_sizes=None, num_splits=None):
    sizes = split_sizes if split_sizes is not None else [x.shape[axis] // num_splits] * num_splits
    return np.split(x, np.cumsum(sizes)[:-1], axis=axis)


def _layer_norm(x, axes, gamma=None, beta=None, epsilon=1e-5):
    axes = tuple(int(a) for a in axes)
    y = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + epsilon)
    return y * (1.0 if gamma is None else gamma) + (0.0 if beta is None else beta)


def _softmax(x, axis):
    z = np.exp(x - x.max(axis, keepdims=True))
    return z / z.sum(axis, keepdims=True)


_MIL_OPS = {  # the MIL op semantics (coremltools' op reference), computed in float32 unless integer
    "shape": lambda x: np.array(x.shape, np.int32),
    "gather": lambda x, indices, axis=0, batch_dims=0: np.take(x, indices, axis=int(axis)),
    "range_1d": lambda end, start, step: np.arange(start, end, step, dtype=np.int32),
    "add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
    "real_div": lambda x, y: x / y,
    "linear": lambda x, weight, bias=None: x @ weight.T + (0.0 if bias is None else bias),
    "matmul": lambda x, y, transpose_x=False, transpose_y=False:
        (np.swapaxes(x, -1, -2) if transpose_x else x) @ (np.swapaxes(y, -1, -2) if transpose_y else y),
    "layer_norm": _layer_norm, "softmax": _softmax, "split": _split, "slice_by_index": _slice,
    "reshape": lambda x, shape: x.reshape([int(d) for d in shape]),
    "transpose": lambda x, perm: x.transpose([int(p) for p in perm]),
    "expand_dims": lambda x, axes: np.expand_dims(x, tuple(int(a) for a in axes)),
    "concat": lambda values, axis, interleave=False: np.concatenate([np.atleast_1d(v) for v in values], axis=int(axis)),
    "reduce_sum": lambda x, axes=None, keep_dims=False:
        x.sum(None if axes is None else tuple(int(a) for a in axes), keepdims=bool(keep_dims)),
    "clip": lambda x, alpha, beta: np.clip(x, alpha, beta),
    "gelu": lambda x, mode="EXACT": _gelu(x, mode),
}


def run_mil(pkg: Path, feeds: dict[str, np.ndarray]) -> dict:
    """Run the main function of a saved package's MIL program on `feeds`, op by op, in numpy.

    The program is read from the package (model.mlmodel and weight.bin) by coremltools' proto loader. Each op
    is computed in float32 and its result rounded to the dtype the program declares for it (float16 under fp16
    compute), so the numbers follow the package's own graph, constants and precision, not PyTorch's.
    """
    from coremltools.converters.mil.frontend.milproto.load import load
    from coremltools.converters.mil.mil import types

    spec = coreml_spec(pkg)
    prog = load(spec, spec.specificationVersion, file_weights_dir=str(_spec_path(Path(pkg)).parent / "weights"))
    fn = prog.functions["main"]
    env = {name: feeds[name] for name in fn.inputs}

    def value(var):
        if isinstance(var, (list, tuple)):
            return [value(v) for v in var]
        if var.val is not None:
            return var.val
        return env[var.name]

    def compute(v):
        return v.astype(np.float32) if isinstance(v, np.ndarray) and v.dtype == np.float16 else v

    for op in fn.operations:
        if op.op_type == "const":
            continue
        args = {k: value(v) for k, v in op.inputs.items()}
        if op.op_type == "classify":
            probs, classes = args["probabilities"].reshape(-1), list(args["classes"])
            env[op.outputs[0].name] = classes[int(np.argmax(probs))]
            env[op.outputs[1].name] = {c: float(p) for c, p in zip(classes, probs)}
            continue
        if op.op_type == "cast":
            result = args["x"].astype(types.nptype_from_builtin(types.string_to_builtin(args["dtype"])))
        else:
            result = _MIL_OPS[op.op_type](**{k: compute(v) for k, v in args.items()})
        results = result if isinstance(result, list) else [result]
        for var, r in zip(op.outputs, results):
            env[var.name] = np.asarray(r).astype(types.nptype_from_builtin(var.dtype))
    return {v.name: env[v.name] for v in fn.outputs}


# -- the spec --------------------------------------------------------------------------------------------------

def test_spec_is_a_classifier_of_the_labels_with_a_length_range(model, spec, package, labels):
    from coremltools.proto import MIL_pb2

    s = coreml_spec(package)
    L, I = model.cfg.max_len, model.cfg.n_intents
    assert s.WhichOneof("Type") == "mlProgram" and s.specificationVersion >= 7  # iOS 16
    d = s.description
    assert d.predictedFeatureName == CLASS_LABEL and d.predictedProbabilitiesName == CLASS_PROBS
    program = s.mlProgram.functions["main"]
    ops = program.block_specializations[program.opset].operations
    (classify,) = [op for op in ops if op.type == "classify"]
    classes = classify.inputs["classes"].arguments[0].value.immediateValue.list.values
    assert [c.immediateValue.tensor.strings.values[0] for c in classes] == list(labels) and len(labels) == I
    producer = {out.name: op for op in ops for out in op.outputs}
    source = producer[classify.inputs["probabilities"].arguments[0].name]
    while source.type == "cast":  # the fp16 softmax, cast to the fp32 a classifier takes
        source = producer[source.inputs["x"].arguments[0].name]
    assert source.type == "softmax" and list(source.outputs[0].type.tensorType.dimensions)[-1].constant.size == I
    computed = {op.outputs[0].type.tensorType.dataType for op in ops if op.type in ("linear", "matmul", "softmax")}
    assert computed == {MIL_pb2.FLOAT16}  # fp16 compute

    ins = {i.name: i.type.multiArrayType for i in d.input}
    assert list(ins) == ["input_ids", "attention_mask"]
    for t in ins.values():
        assert t.dataType == t.INT32 and list(t.shape) == [1, L]  # the default shape: padded to max_len
        assert [(r.lowerBound, r.upperBound) for r in t.shapeRange.sizeRanges] == [(1, 1), (1, L)]
    outs = {o.name: o.type for o in d.output}
    assert list(outs) == [CLASS_LABEL, CLASS_PROBS, LM_LOGITS]
    assert outs[CLASS_LABEL].WhichOneof("Type") == "stringType"
    assert outs[CLASS_PROBS].WhichOneof("Type") == "dictionaryType"
    assert outs[CLASS_PROBS].dictionaryType.WhichOneof("KeyType") == "stringKeyType"
    assert outs[LM_LOGITS].multiArrayType.dataType == outs[LM_LOGITS].multiArrayType.FLOAT32
    assert all(i.shortDescription for i in list(d.input) + list(d.output))

    md = d.metadata
    version = model_version(model, spec)
    assert md.author == AUTHOR and "CC BY 3.0" in md.license and md.versionString == version
    assert "approximate" in md.shortDescription
    ud = dict(md.userDefined)
    assert ud["version"] == version and ud["state"] == "approximate"
    assert json.loads(ud["labels"]) == list(labels) and float(ud["oos_threshold"]) == 0.25
    assert ud["tokenizer_sha256"] == spec.tokenizer_sha256 and int(ud["max_len"]) == L
    assert "com.github.apple.coremltools.conversion_date" not in ud  # no wall-clock time in the file


def test_package_stores_the_pytorch_weights_in_fp16(model, package, make_model):
    stored = coreml_weights(package, dtype=None)
    assert stored and all(w.dtype == np.float16 for w in stored.values())
    assert stored[coreml_const_name("tok.weight")].shape == tuple(model.tok.weight.shape)  # tied head stored once
    assert coreml_weight_mismatches(model, package) == []
    other = make_model(seed=1, adapter_rank=2)  # same shapes; norms, biases and lora_a init are equal
    differ = [n for n, v in other.state_dict().items() if not torch.equal(v, model.state_dict()[n])]
    assert differ and coreml_weight_mismatches(other, package) == differ
    nudged = make_model(seed=0, adapter_rank=2)
    with torch.no_grad():
        nudged.intent.weight.mul_(60.0)
        nudged.blocks[0].proj.lora_b[5, 0] += 0.01
    assert coreml_weight_mismatches(nudged, package) == ["blocks.0.proj.lora_b"]


def test_package_is_byte_deterministic(model, spec, package, tmp_path):
    again = tmp_path / "again.mlpackage"
    export_coreml(model, spec, again)
    assert _tree(again) == _tree(package)


def test_no_copy_of_the_weights_is_left_outside_the_package(model, spec, tmp_path):
    """coremltools' own temporary package (the same weights) is made beside the package and removed at once,
    not left in $TMPDIR until the process exits (a forget must not leave the old model's weights behind)."""
    import tempfile

    system = Path(tempfile.gettempdir())
    before = set(system.glob("*.mlpackage"))
    out = tmp_path / "build"
    out.mkdir()
    export_coreml(model, spec, out / "model.mlpackage")
    assert [p.name for p in out.iterdir()] == ["model.mlpackage"]
    assert set(system.glob("*.mlpackage")) <= before


def test_refuses_an_existing_or_misnamed_path(model, spec, package, tmp_path):
    with pytest.raises(BadInput, match=r"\.mlpackage"):
        export_coreml(model, spec, package)
    with pytest.raises(BadInput, match=r"\.mlpackage"):
        export_coreml(model, spec, tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []


# -- the program's numbers -------------------------------------------------------------------------------------

def test_mil_program_matches_pytorch_at_every_kind_of_length(model, package, sp, labels):
    """The package's program, run in numpy at fp16, gives PyTorch's probabilities, label and next-token logits:
    unpadded at 1 token, at ordinary lengths and at exactly max_len, and right-padded to the default max_len."""
    L = model.cfg.max_len
    rows = [[sp.bos_id()]] + [_row(sp, t, L) for t in TEXTS]
    assert {1, L} <= {len(r) for r in rows}
    winners = set()
    for row in rows:
        probs, lm = _torch(model, row)
        T = len(row)
        padded = np.zeros((1, L), np.int32)  # (1, L), pad_id 0
        padded[0, :T] = row
        for ids in (np.array([row], np.int32), padded):
            out = run_mil(package, {"input_ids": ids, "attention_mask": (np.arange(ids.shape[1]) < T)[None]
                                    .astype(np.int32)})
            got = np.array([out[CLASS_PROBS][lab] for lab in labels])
            assert list(out[CLASS_PROBS]) == list(labels)
            assert abs(got.sum() - 1.0) < 5e-3 and np.abs(got - probs).max() < 5e-3
            top2 = np.sort(probs)[-2:]
            if top2[1] - top2[0] > 2e-2:  # a clear winner: fp16 cannot reorder it
                assert out[CLASS_LABEL] == labels[int(probs.argmax())]
                winners.add(out[CLASS_LABEL])
            assert out[LM_LOGITS].dtype == np.float32 and out[LM_LOGITS].shape == (1, ids.shape[1], lm.shape[1])
            assert np.abs(out[LM_LOGITS][0, :T] - lm).max() < 1e-2 * max(1.0, np.abs(lm).max())
    assert len(winners) >= 2  # the labels come from the probabilities, not from a constant


def test_the_oos_rule_on_the_packages_probabilities_answers_like_pytorch(model, package, sp, labels, spec):
    """docs/mobile.md's CoreML recipe: oos_rule on `intent_probs`, in label order, with the exported threshold."""
    L, oos = model.cfg.max_len, labels.index("oos")
    for text in TEXTS:
        row = _row(sp, text, L)
        probs, _ = _torch(model, row)
        ids = np.array([row], np.int32)
        out = run_mil(package, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
        got = np.array([[out[CLASS_PROBS][lab] for lab in labels]])
        want_label, want_conf = oos_rule(probs[None].astype(np.float64), oos, spec.oos_threshold)
        got_label, got_conf = oos_rule(got, oos, spec.oos_threshold)
        best_in = np.delete(probs, oos).max()
        if abs(best_in - spec.oos_threshold) > 1e-2 and np.diff(np.sort(probs)[-2:])[0] > 2e-2:
            assert got_label[0] == want_label[0]
        assert abs(got_conf[0] - want_conf[0]) < 1e-2


def test_interpreter_notices_a_package_of_other_weights(model, spec, make_model, sp, tmp_path):
    """The MIL interpreter is a real check: another model's package gives other probabilities."""
    other = make_model(seed=3, adapter_rank=2)
    with torch.no_grad():
        other.intent.weight.mul_(60.0)
    pkg = tmp_path / "other.mlpackage"
    export_coreml(other, spec, pkg)
    row = _row(sp, TEXTS[0], model.cfg.max_len)
    ids = np.array([row], np.int32)
    out = run_mil(pkg, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
    got = np.array(list(out[CLASS_PROBS].values()))
    assert np.abs(got - _torch(other, row)[0]).max() < 1e-2
    assert np.abs(got - _torch(model, row)[0]).max() > 5e-2


@pytest.mark.skipif(sys.platform != "darwin", reason="CoreML prediction needs macOS (no libcoremlpython elsewhere)")
def test_prediction_parity_on_macos(model, package, sp, labels):
    with quiet_coremltools():
        import coremltools as ct

    ml = ct.models.MLModel(str(package))
    L = model.cfg.max_len
    for text in TEXTS:
        row = _row(sp, text, L)
        probs, lm = _torch(model, row)
        ids = np.array([row], np.int32)
        out = ml.predict({"input_ids": ids, "attention_mask": np.ones_like(ids)})
        assert np.abs(np.array([out[CLASS_PROBS][lab] for lab in labels]) - probs).max() < 1e-2
        assert np.abs(out[LM_LOGITS][0] - lm).max() < 2e-2 * max(1.0, np.abs(lm).max())
