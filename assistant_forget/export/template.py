"""A cached ONNX graph for re-exports: trace an architecture once, then fill in each model's weights.

Tracing with torch.onnx.export costs 0.1-0.4 s per publish, yet the graph depends only on the architecture.
So publishing keeps a *template* in DIR/cache/: the traced graph with every initializer's data removed
(name, dims and dtype kept), so the file holds nothing personal, not even base weights. A publish fills
each initializer from the model's state dict and serializes; same weights, same bytes.

The template is traced from a copy of the model with distinct random values in every state-dict tensor
(fixed seed): the exporter merges equal-valued initializers (all-zero adapters would share one) and could
rename or transpose weights, so each initializer is mapped to exactly one state-dict tensor by value, and
building fails loudly when one does not map or a tensor is missing from the initializers (it would have
been frozen into the graph). A second random model filled into the template must then match PyTorch.

File (format 1): DIR/cache/onnx-template.onnx, an ONNX model whose metadata_props hold

    assistant_forget.template         JSON {"key": what the graph depends on, "sources": {initializer:
                                      [state-dict key, transposed]}}
    assistant_forget.template_sha256  SHA-256 of the file serialized without this entry (the last one)

A template whose checksum, key, sources or shapes do not check out is rebuilt, never used.
"""

from __future__ import annotations

import copy
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import numpy_helper

from ..core.errors import CorruptFile
from .convert import ONNX_OPSET, cpu_weights, trace_onnx
from ..core.fsio import atomic_write_bytes, sha256_bytes

TEMPLATE_FORMAT = 1  # version of the template's layout and of the code that builds it
TEMPLATE_FILE = "onnx-template.onnx"  # file name inside the cache directory
META_KEY = "assistant_forget.template"
SEAL_KEY = "assistant_forget.template_sha256"
TRACE_SEED = 20240601  # seed of the random weights the template is traced from (values never stored)
CHECK_SEED = TRACE_SEED + 1  # seed of the second random model the built template is checked with
_DATA_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "raw_data", "external_data",
                "double_data", "uint64_data")
_CODE = ("convert.py", "template.py")  # sources the traced graph depends on, beside the model's own module


class TemplateError(RuntimeError):
    """The exporter produced a graph this module cannot turn into a template (a bug, not bad input)."""


def template_key(model: nn.Module) -> dict:
    """Everything the traced graph depends on: architecture, opset, exporter and library versions, code."""
    here = Path(__file__).resolve().parent
    sources = [Path(inspect.getsourcefile(type(model)))] + [here / name for name in _CODE]
    code = sha256_bytes(b"".join(p.read_bytes() for p in sources))
    cfg = model.cfg
    return {"format": TEMPLATE_FORMAT, "model_config": cfg.to_dict(), "opset": ONNX_OPSET,
            "exporter": "torchscript", "torch": torch.__version__, "onnx": onnx.__version__, "code_sha256": code}


def _random_copy(model: nn.Module, seed: int) -> nn.Module:
    """A CPU fp32 copy whose every state-dict tensor holds fresh random values (distinct across tensors)."""
    m = copy.deepcopy(model).to("cpu", torch.float32).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in m.state_dict().values():  # tied tensors appear once
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return m


def _map_initializers(proto: onnx.ModelProto, weights: dict[str, np.ndarray]) -> dict[str, tuple[str, bool]]:
    """initializer name -> (state-dict key, transposed), matched by value (a name that is a key must agree).

    TemplateError unless every initializer and every tensor pair up exactly once.
    """
    sources: dict[str, tuple[str, bool]] = {}
    for init in proto.graph.initializer:
        value = numpy_helper.to_array(init)
        hits = [(k, t) for k, w in weights.items() for t in ((False, True) if w.ndim == 2 else (False,))
                if (w.T if t else w).shape == value.shape and np.array_equal(w.T if t else w, value)]
        if len(hits) != 1:
            raise TemplateError(f"ONNX initializer {init.name!r} {list(init.dims)} matches {len(hits)} state-dict "
                                f"tensors ({[k for k, _ in hits][:4]}), not exactly one: the exporter changed; "
                                "publish cannot use a template until export/template.py handles it")
        if init.name in weights and hits[0][0] != init.name:
            raise TemplateError(f"ONNX initializer {init.name!r} holds the values of {hits[0][0]!r}: the exporter "
                                "renamed weights; export/template.py must handle it")
        sources[init.name] = hits[0]
    used = [k for k, _ in sources.values()]
    unmapped = sorted(set(weights) - set(used))
    twice = sorted({k for k in used if used.count(k) > 1})
    if unmapped or twice:
        raise TemplateError(f"state-dict tensors {unmapped[:4]} are not ONNX initializers (frozen into the graph) "
                            f"or {twice[:4]} are stored twice: the exporter changed; export/template.py must handle it")
    return sources


@dataclass(frozen=True)
class OnnxTemplate:
    """A traced graph without initializer data, and where each initializer's data comes from."""

    proto: onnx.ModelProto  # the graph; initializers carry name, dims and dtype only
    sources: dict[str, tuple[str, bool]]  # initializer name -> (state-dict key, stored transposed)

    def fill(self, model: nn.Module) -> onnx.ModelProto:
        """A new ModelProto: the graph with each initializer set from `model`'s weights (no metadata_props)."""
        weights = cpu_weights(model)
        out = onnx.ModelProto()
        out.CopyFrom(self.proto)
        del out.metadata_props[:]
        for init in out.graph.initializer:
            key, transposed = self.sources[init.name]
            w = weights[key].numpy()
            w = w.T if transposed else w
            if tuple(init.dims) != w.shape or init.data_type != onnx.TensorProto.FLOAT:
                raise TemplateError(f"{init.name}: template holds {list(init.dims)} but {key} is {list(w.shape)}")
            init.raw_data = np.ascontiguousarray(w, dtype="<f4").tobytes()  # little-endian fp32, as ONNX stores it
        return out


def build_template(model: nn.Module) -> bytes:
    """Trace `model`'s architecture (from random weights) into a sealed template file's bytes."""
    traced = _random_copy(model, TRACE_SEED)
    proto = trace_onnx(traced)
    sources = _map_initializers(proto, {k: v.numpy() for k, v in cpu_weights(traced).items()})
    for init in proto.graph.initializer:
        for f in _DATA_FIELDS:
            init.ClearField(f)
    del proto.metadata_props[:]
    proto.doc_string = "assistant-forget ONNX template: graph only, initializer data removed (export/template.py)"
    meta = {"key": template_key(model), "sources": {k: list(v) for k, v in sorted(sources.items())}}
    proto.metadata_props.add(key=META_KEY, value=json.dumps(meta, sort_keys=True))
    tpl = OnnxTemplate(proto, sources)
    _check_outputs(tpl, model)
    proto.metadata_props.add(key=SEAL_KEY, value=sha256_bytes(proto.SerializeToString(deterministic=True)))
    return proto.SerializeToString(deterministic=True)


def _check_outputs(tpl: OnnxTemplate, model: nn.Module) -> None:
    """Fill a second random model into the template; ORT must match PyTorch (no weight frozen in the graph)."""
    import onnxruntime as ort

    other = _random_copy(model, CHECK_SEED)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = 1, 1, 3
    sess = ort.InferenceSession(tpl.fill(other).SerializeToString(), so, providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(CHECK_SEED)
    ids = torch.randint(0, model.cfg.vocab_size, (2, 5), generator=g)  # (B, T)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])  # (B, T) right padding
    with torch.inference_mode():
        ref = other(ids, mask)  # (B, I), (B, T, V)
    got = sess.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    for r, o in zip(ref, got):
        if o.shape != tuple(r.shape) or not np.allclose(o, r.numpy(), rtol=1e-4, atol=1e-4):
            raise TemplateError("the filled ONNX template does not reproduce PyTorch: the exporter froze a "
                                "weight into the graph; export/template.py must handle it")


def load_template(data: bytes, model: nn.Module, source: str = "template") -> OnnxTemplate:
    """Parse and check template bytes against `model` (checksum, key, sources, shapes); CorruptFile if any fails."""
    try:
        proto = onnx.load_from_string(data)
    except Exception as e:  # protobuf raises its own DecodeError types
        raise CorruptFile(f"{source}: not an ONNX model ({e})") from None
    props = proto.metadata_props
    if len(props) != 2 or props[0].key != META_KEY or props[1].key != SEAL_KEY:
        raise CorruptFile(f"{source}: not an assistant-forget ONNX template")
    seal = props[1].value
    del props[1]
    if sha256_bytes(proto.SerializeToString(deterministic=True)) != seal:
        raise CorruptFile(f"{source}: checksum mismatch (truncated or tampered with)")
    try:
        meta = json.loads(props[0].value)
        key, sources = meta["key"], {n: (str(k), bool(t)) for n, (k, t) in meta["sources"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CorruptFile(f"{source}: unreadable template metadata ({e})") from None
    if key != template_key(model):
        raise CorruptFile(f"{source}: built for another architecture, exporter or code version")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    inits = proto.graph.initializer
    if sorted(sources) != sorted(i.name for i in inits) or sorted(k for k, _ in sources.values()) != sorted(shapes):
        raise CorruptFile(f"{source}: initializers do not map one-to-one onto the model's state dict")
    for init in inits:
        k, t = sources[init.name]
        has_data = any(len(getattr(init, f)) for f in _DATA_FIELDS) or init.data_location != onnx.TensorProto.DEFAULT
        if has_data or tuple(init.dims) != (shapes[k][::-1] if t else shapes[k]) \
                or init.data_type != onnx.TensorProto.FLOAT:
            raise CorruptFile(f"{source}: initializer {init.name!r} has data or does not fit {k} {list(shapes[k])}")
    return OnnxTemplate(proto, sources)


def cached_template(cache_dir: Path, model: nn.Module) -> OnnxTemplate:
    """The template for `model`'s architecture from `cache_dir`, (re)built and cached when missing or bad.

    The cache only saves time: if it cannot be read or written, the template is built in memory.
    """
    path = Path(cache_dir) / TEMPLATE_FILE
    try:
        return load_template(path.read_bytes(), model, str(path))
    except (OSError, CorruptFile):
        pass  # missing, unreadable, tampered with or for another architecture: rebuild
    data = build_template(model)
    try:
        path.parent.mkdir(exist_ok=True)
        atomic_write_bytes(path, data)
    except OSError:
        pass  # a read-only or damaged cache directory costs a rebuild next time, nothing else
    return load_template(data, model, "built template")
