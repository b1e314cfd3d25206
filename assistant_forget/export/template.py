"""A cached ONNX model for re-exports: trace an architecture once, then splice each model's weights in.

Tracing with torch.onnx.export costs 0.1-0.4 s per publish, and even parsing and serializing an ONNX model
needs the onnx package (about 1 s to import, most of it ml_dtypes), yet the graph depends only on the
architecture. So publishing keeps a *template* in DIR/cache/: the model's deterministic ONNX serialization
cut into literal byte segments around every initializer's data and around the metadata. A publish joins the
segments with the model's weights (little-endian fp32) and the metadata entries, which `encode_metadata`
writes as protobuf does: no tracing, and no onnx, onnxruntime or protobuf import. The result is the bytes
onnx's own fill and `SerializeToString(deterministic=True)` give (tests/export/test_onnx_template.py):
protobuf writes a length before every nested message, and each cut-out piece is as long as what goes in
its place, so every length in the segments stays right.

Building a template imports onnx and onnxruntime, once per architecture. The model is traced from a copy
with distinct random values in every state-dict tensor (fixed seed): the exporter merges equal-valued
initializers (all-zero adapters would share one) and stores weights pre-transposed (constant folding), so
each initializer is mapped to exactly one state-dict tensor, maybe transposed, by value; building fails
loudly when one does not map, a tensor is missing (it would have been frozen into the graph) or stored
twice (the tied LM head reads the embedding through a Transpose: convert.trace_onnx). Each initializer's
data is then replaced by a seeded random marker of the same length and the metadata by one marker entry;
the serialization is cut at the markers, each found exactly once. ModelProto.metadata_props is field 14 and
deterministic serialization writes fields in number order, so the metadata goes after the graph (7) and
the opset imports (8), before any later field; the marker finds that place rather than assuming it. A
second random model filled in must then parse as canonical ONNX (serializing it again gives the same
bytes), pass onnx.checker and match PyTorch in onnxruntime.

File (format 2): DIR/cache/onnx-template.json, sealed JSON (core/fsio.py `sealed_json_bytes`):

    key       what the graph depends on (`template_key`), compared with the model being published
    weights   [[state-dict key, transposed, shape], ...]: the data between segments i and i + 1
    segments  the literal bytes, base64, len(weights) + 2 of them: the metadata goes before the last

It holds nothing personal and no base weights: only the graph. A template whose seal, key or weight shapes
do not check out is rebuilt, never used.
"""

from __future__ import annotations

import base64
import copy
import importlib.metadata
import inspect
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..core.errors import CorruptFile
from ..core.fsio import atomic_write_bytes, sealed_json_bytes, sha256_bytes, unseal_json
from .convert import ONNX_OPSET, cpu_weights, trace_onnx

TEMPLATE_FORMAT = 2  # version of the template's layout and of the code that builds it (2: segments, no onnx)
TEMPLATE_FILE = "onnx-template.json"  # file name inside the cache directory
OLD_TEMPLATE_FILE = "onnx-template.onnx"  # format 1's file (an ONNX model), removed when a template is cached
TRACE_SEED = 20240601  # seed of the random weights the template is traced from (values never stored)
CHECK_SEED = TRACE_SEED + 1  # seed of the second random model the built template is checked with
MARKER_SEED = TRACE_SEED + 2  # seed of the markers that stand in for the data while the serialization is cut
METADATA_FIELD = 14  # ModelProto.metadata_props
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
    return {"format": TEMPLATE_FORMAT, "model_config": model.cfg.to_dict(), "opset": ONNX_OPSET,
            "exporter": "torchscript", "torch": torch.__version__, "onnx": importlib.metadata.version("onnx"),
            "code_sha256": code}


# -- protobuf, by hand: only what the metadata needs ------------------------------------------------

def _varint(n: int) -> bytes:
    """A protobuf base-128 varint (n >= 0)."""
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
    """One field of wire type 2 (bytes, string or message): tag, length, payload."""
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def encode_metadata(metadata: dict[str, str]) -> bytes:
    """ModelProto.metadata_props as protobuf serializes them, in key order (the order export_onnx adds them).

    Each entry is a StringStringEntryProto (key = 1, value = 2) in field 14; ONNX is proto2, so an empty
    value is still written.
    """
    return b"".join(_length_delimited(METADATA_FIELD, _length_delimited(1, k.encode("utf-8")) +
                                      _length_delimited(2, v.encode("utf-8")))
                    for k, v in sorted(metadata.items()))


# -- the template ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OnnxTemplate:
    """A serialized ONNX model without its weights and metadata: literal segments and what goes between them."""

    segments: tuple[bytes, ...]  # len(weights) + 2 literal pieces of the serialization
    weights: tuple[tuple[str, bool, tuple[int, ...]], ...]  # (state-dict key, stored transposed, stored shape)

    def fill(self, model: nn.Module, metadata: dict[str, str]) -> bytes:
        """The ONNX bytes of `model` with `metadata`: the segments joined with its fp32 weights and the entries."""
        weights = cpu_weights(model)
        parts = [self.segments[0]]
        for (key, transposed, shape), segment in zip(self.weights, self.segments[1:-1]):
            w = weights[key].numpy()
            w = w.T if transposed else w
            if w.shape != shape or w.dtype != np.float32:
                raise TemplateError(f"template holds {key} as float32 {list(shape)} but it is {w.dtype} "
                                    f"{list(w.shape)}")
            parts += [np.ascontiguousarray(w, dtype="<f4").tobytes(), segment]  # as ONNX stores raw_data
        parts += [encode_metadata(metadata), self.segments[-1]]
        return b"".join(parts)


def _random_copy(model: nn.Module, seed: int) -> nn.Module:
    """A CPU fp32 copy whose every state-dict tensor holds fresh random values (distinct across tensors)."""
    m = copy.deepcopy(model).to("cpu", torch.float32).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in m.state_dict().values():  # tied tensors appear once
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return m


def _map_initializers(proto, weights: dict[str, np.ndarray]) -> dict[str, tuple[str, bool]]:
    """initializer name -> (state-dict key, transposed), matched by value (a name that is a key must agree).

    TemplateError unless every initializer matches exactly one tensor and every tensor is stored exactly once.
    """
    from onnx import numpy_helper

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
    used = list(sources.values())
    unmapped = sorted(set(weights) - {k for k, _ in used})
    keys = [k for k, _ in used]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if unmapped or twice:
        raise TemplateError(f"state-dict tensors {unmapped[:4]} are not ONNX initializers (frozen into the graph) "
                            f"or {twice[:4]} are stored twice: the exporter changed; export/template.py must handle it")
    return sources


def _find_once(data: bytes, marker: bytes, what: str) -> int:
    """The offset of the only occurrence of `marker` in `data`; TemplateError if it is not there exactly once."""
    at = data.find(marker)
    if at < 0 or data.find(marker, at + 1) >= 0:
        raise TemplateError(f"the marker of {what} occurs {data.count(marker)} times in the serialized model, "
                            "not once: the template cannot be cut; export/template.py must handle it")
    return at


def split_model(proto, sources: dict[str, tuple[str, bool]]) -> OnnxTemplate:
    """Cut the deterministic serialization of `proto` (an onnx.ModelProto) around its initializers' data and
    its metadata, each initializer filled from `sources[name]` = (state-dict key, transposed).

    `proto` is not changed. Every initializer must be a float32 tensor stored in the file.
    """
    import onnx

    proto = copy.deepcopy(proto)
    rng = np.random.default_rng(MARKER_SEED)
    markers = []  # (marker, what goes in its place: (key, transposed, shape), or None for the metadata, name)
    for init in proto.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or init.data_location != onnx.TensorProto.DEFAULT:
            raise TemplateError(f"ONNX initializer {init.name!r} is not a float32 tensor stored in the model")
        key, transposed = sources[init.name]
        for f in _DATA_FIELDS:
            init.ClearField(f)
        init.raw_data = rng.bytes(4 * int(np.prod(init.dims, dtype=np.int64)))
        markers.append((init.raw_data, (key, transposed, tuple(int(d) for d in init.dims)), init.name))
    del proto.metadata_props[:]
    entry = rng.bytes(8).hex()
    proto.metadata_props.add(key=entry, value=entry)
    markers.append((encode_metadata({entry: entry}), None, "the metadata"))
    data = proto.SerializeToString(deterministic=True)
    cuts = sorted(((_find_once(data, marker, what), marker, slot) for marker, slot, what in markers),
                  key=lambda c: c[0])
    if cuts[-1][2] is not None or any(a + len(m) > b for (a, m, _), (b, _, _) in zip(cuts, cuts[1:])):
        raise TemplateError("the metadata is not serialized after every initializer: the layout changed; "
                            "export/template.py must handle it")
    segments, start = [], 0
    for at, marker, _ in cuts:
        segments.append(data[start:at])
        start = at + len(marker)
    segments.append(data[start:])
    return OnnxTemplate(tuple(segments), tuple(slot for _, _, slot in cuts[:-1]))


def build_template(model: nn.Module) -> bytes:
    """Trace `model`'s architecture (from random weights) into a sealed template file's bytes."""
    traced = _random_copy(model, TRACE_SEED)
    proto = trace_onnx(traced)
    sources = _map_initializers(proto, {k: v.numpy() for k, v in cpu_weights(traced).items()})
    tpl = split_model(proto, sources)
    _check_template(tpl, model)
    return sealed_json_bytes({"key": template_key(model), "weights": [[k, t, list(s)] for k, t, s in tpl.weights],
                              "segments": [base64.b64encode(s).decode("ascii") for s in tpl.segments]})


def _check_template(tpl: OnnxTemplate, model: nn.Module) -> None:
    """Fill a second random model in: canonical ONNX that passes the checker, and ORT must match PyTorch."""
    import onnx
    import onnxruntime as ort

    other = _random_copy(model, CHECK_SEED)
    data = tpl.fill(other, {"assistant_forget.template_check": "ok"})
    proto = onnx.load_from_string(data)
    if proto.SerializeToString(deterministic=True) != data:
        raise TemplateError("the filled template is not protobuf's canonical serialization of itself: "
                            "export/template.py must handle the new layout")
    onnx.checker.check_model(proto)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = 1, 1, 3
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
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
    """Parse and check template bytes against `model` (seal, key, weights, shapes); CorruptFile if any fails."""
    try:
        obj = unseal_json(data)
    except ValueError as e:  # bad JSON, bad UTF-8 or a broken seal
        raise CorruptFile(f"{source}: not a sealed template ({e})") from None
    try:
        key = obj["key"]
        weights = tuple((str(k), bool(t), tuple(int(d) for d in s)) for k, t, s in obj["weights"])
        segments = tuple(base64.b64decode(s, validate=True) for s in obj["segments"])
    except (ValueError, KeyError, TypeError) as e:  # binascii.Error is a ValueError
        raise CorruptFile(f"{source}: unreadable template ({e})") from None
    if key != template_key(model):
        raise CorruptFile(f"{source}: built for another architecture, exporter or code version")
    if len(segments) != len(weights) + 2:
        raise CorruptFile(f"{source}: {len(segments)} segments for {len(weights)} weights")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    slots = [(k, t) for k, t, _ in weights]
    if {k for k, _ in slots} != set(shapes) or len(set(slots)) != len(slots):
        raise CorruptFile(f"{source}: weights do not map one-to-one onto the model's state dict")
    for k, t, shape in weights:
        if shape != (shapes[k][::-1] if t else shapes[k]) or (t and len(shape) != 2):
            raise CorruptFile(f"{source}: weight {k} {list(shape)} does not fit the model's {list(shapes[k])}")
    return OnnxTemplate(segments, weights)


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
        (path.parent / OLD_TEMPLATE_FILE).unlink(missing_ok=True)
    except OSError:
        pass  # a read-only or damaged cache directory costs a rebuild next time, nothing else
    return load_template(data, model, "built template")
