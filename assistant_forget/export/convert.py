"""Export the model for apps: the ONNX model (Android, and this package's runtime) and what every format shares.

Exports are deterministic: the same weights, labels, tokenizer and state give byte-identical files, and
the version written into each is a hash of exactly those inputs, so two devices compare by file hash.
The ONNX graph takes any batch and any length up to `max_len`. The metadata keys are the same in every format
(`export_metadata`); the CoreML classifier package (iOS) is written by export/coreml.py.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import sentencepiece as spm
import torch
import torch.nn as nn

from ..core.errors import BadInput, CorruptFile
from ..core.fsio import sha256_bytes
from ..core.tensorfile import tensors_to_bytes

if TYPE_CHECKING:
    import onnx

STATES = ("exact", "approximate")  # exact: no forgotten data left; approximate: a fast forget awaits its exact pass
EXPORT_FORMAT = 1  # version of the metadata layout below
ONNX_OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAMES = ("intent_logits", "lm_logits")
MODEL_FIELDS = ("n_intents", "vocab_size", "max_len", "to_dict")  # what an exported model's `cfg` must have
VERSION_CHARS = 16  # hex digits of SHA-256 kept in a version name (64 bits)
AUTHOR = "assistant-forget"
LICENSE = "Apache-2.0; base model and tokenizer trained on CLINC150 (CC BY 3.0, Larson et al. 2019)"
TOKENIZATION = ("ids = [bos_id] + sentencepiece_ids(text)[: max_len - 2] + [eos_id]; right-pad with pad_id; "
                "attention_mask = 1 on real tokens, 0 on padding")


@dataclass(frozen=True)
class ExportSpec:
    """What an app needs beside the weights; validated by `make_spec`."""

    labels: tuple[str, ...]  # intent name of each intent_logits column
    tokenizer_sha256: str  # SHA-256 of the tokenizer.model shipped with the model
    state: str  # "exact" or "approximate" (two-phase forgetting)
    pad_id: int  # token id of padding (right side)
    unk_id: int  # token id of unknown pieces (unused with byte fallback)
    bos_id: int  # token id that starts every sequence
    eos_id: int  # token id that ends a full utterance (not a prefix)
    oos_threshold: float = 0.0  # answer "oos" when the best in-scope probability is below this (0 = argmax)


def tokenizer_ids(tokenizer_bytes: bytes, source: str = "tokenizer") -> dict[str, int]:
    """Vocabulary size and special ids of a SentencePiece model; CorruptFile if it is not one."""
    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(tokenizer_bytes)
    except (RuntimeError, OSError, TypeError) as e:
        raise CorruptFile(f"{source}: not a valid SentencePiece model ({e}); pass the tokenizer.model "
                          "the model was trained with") from None
    return {"vocab_size": sp.GetPieceSize(), "pad_id": sp.pad_id(), "unk_id": sp.unk_id(),
            "bos_id": sp.bos_id(), "eos_id": sp.eos_id()}


def make_spec(model: nn.Module, tokenizer_bytes: bytes, labels: Sequence[str], state: str,
              oos_threshold: float = 0.0) -> ExportSpec:
    """Check that model, tokenizer, labels and state fit together; BadInput says what does not."""
    cfg = getattr(model, "cfg", None)
    if not isinstance(model, torch.nn.Module) or not all(hasattr(cfg, k) for k in MODEL_FIELDS):
        raise BadInput(f"expected a model with the app's contract (an nn.Module whose `cfg` has "
                       f"{', '.join(MODEL_FIELDS)}, like nn.Module), got {type(model).__name__}")
    if state not in STATES:
        raise BadInput(f"state must be one of {STATES}, got {state!r}")
    if isinstance(oos_threshold, bool) or not isinstance(oos_threshold, (int, float)) \
            or not 0.0 <= oos_threshold <= 1.0:
        raise BadInput(f"oos_threshold must be a probability in [0, 1], got {oos_threshold!r}")
    if isinstance(labels, str) or not all(isinstance(x, str) and x for x in labels):
        raise BadInput("labels must be a sequence of non-empty strings, one per intent")
    if len(labels) != cfg.n_intents or len(set(labels)) != len(labels):
        raise BadInput(f"the model has {cfg.n_intents} intents but {len(labels)} labels "
                       f"({len(set(labels))} distinct) were given; pass the model's label set")
    ids = tokenizer_ids(tokenizer_bytes)
    if ids["vocab_size"] != cfg.vocab_size:
        raise BadInput(f"tokenizer has {ids['vocab_size']} pieces but the model's vocab_size is "
                       f"{cfg.vocab_size}; pass the tokenizer the model was trained with")
    special = [ids[k] for k in ("pad_id", "unk_id", "bos_id", "eos_id")]
    if min(special) < 0 or len(set(special)) != 4:
        raise BadInput(f"tokenizer must define distinct pad, unk, bos and eos ids, got {special}")
    return ExportSpec(tuple(labels), sha256_bytes(tokenizer_bytes), state, *special, float(oos_threshold))


def _cpu_copy(model: nn.Module) -> nn.Module:
    """An fp32 CPU copy in eval mode: exporting never changes the caller's model (mode, device, dtype)."""
    return copy.deepcopy(model).to("cpu", torch.float32).eval()


def cpu_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as fp32 CPU tensors, what `_cpu_copy(model).state_dict()` holds, without copying the model."""
    return {k: v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach().cpu()
            for k, v in model.state_dict().items()}


def model_version(model: nn.Module, spec: ExportSpec) -> str:
    """Hash of everything an export contains: safetensors bytes of the weights, config, labels, tokenizer, state.

    The weights are hashed without safetensors metadata: its JSON header orders metadata keys arbitrarily.
    """
    weights = sha256_bytes(tensors_to_bytes(cpu_weights(model)))
    ident = {"weights_sha256": weights, "config": model.cfg.to_dict(), "labels": list(spec.labels),
             "tokenizer_sha256": spec.tokenizer_sha256, "state": spec.state, "oos_threshold": spec.oos_threshold}
    return sha256_bytes(json.dumps(ident, sort_keys=True).encode())[:VERSION_CHARS]


def export_metadata(model: nn.Module, spec: ExportSpec, version: str | None = None) -> dict[str, str]:
    """The string metadata written into both formats (ONNX metadata_props, CoreML user_defined_metadata).

    `version` saves hashing the weights again when the caller has just computed `model_version(model, spec)`.
    """
    cfg = model.cfg
    return {
        "assistant_forget.format": str(EXPORT_FORMAT),
        "version": version or model_version(model, spec),
        "state": spec.state,
        "labels": json.dumps(list(spec.labels)),
        "oos_threshold": repr(spec.oos_threshold),
        "tokenizer_sha256": spec.tokenizer_sha256,
        "tokenization": TOKENIZATION,
        "pad_id": str(spec.pad_id), "unk_id": str(spec.unk_id),
        "bos_id": str(spec.bos_id), "eos_id": str(spec.eos_id),
        "max_len": str(cfg.max_len), "vocab_size": str(cfg.vocab_size), "n_intents": str(cfg.n_intents),
        "model_config": json.dumps(cfg.to_dict(), sort_keys=True),
    }


# -- ONNX ------------------------------------------------------------------------------------------

def onnx_doc_string(model: nn.Module) -> str:
    """The doc_string of an exported ONNX model: what it is and how to tokenize for it."""
    return f"assistant-forget intent + next-token model. {TOKENIZATION}; seq <= max_len={model.cfg.max_len}"


def trace_onnx(model: nn.Module, example_id: int = 0) -> "onnx.ModelProto":
    """torch.onnx.export of the model, with its doc_string and no metadata: inputs int64 (batch, seq), both heads.

    Uses the TorchScript exporter (`dynamo=False`): deterministic names, no onnxscript dependency. Constants
    are folded, so weights are stored pre-transposed for their MatMuls: onnxruntime's quantize_dynamic finds
    every weight MatMul (`export_onnx_int8`). Folding would store the tied LM head twice, as the embedding and
    transposed (vocab_size x d_model floats, half the file); `_store_tied_once` puts the Transpose back for
    it, so its weights are stored once. The trace depends on the architecture only (`example_id` is any
    valid token id); see export/template.py.
    """
    import onnx

    m = _cpu_copy(model)
    ids = torch.full((2, 8), example_id, dtype=torch.long)  # (B, T) example; shapes stay dynamic
    mask = torch.ones_like(ids)  # (B, T)
    buf = io.BytesIO()
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
            "intent_logits": {0: "batch"}, "lm_logits": {0: "batch", 1: "seq"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # sqrt of a constant head size
        warnings.simplefilter("ignore", DeprecationWarning)  # "legacy exporter": chosen on purpose
        torch.onnx.export(m, (ids, mask), buf, dynamo=False, opset_version=ONNX_OPSET,
                          input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                          dynamic_axes=axes, do_constant_folding=True)
    proto = _store_tied_once(onnx.load_from_string(buf.getvalue()))
    proto.doc_string = onnx_doc_string(model)
    return proto


def _store_tied_once(proto: "onnx.ModelProto") -> "onnx.ModelProto":
    """Replace a MatMul weight that equals an embedding table (a Gather's initializer) transposed, the copy
    folding made of a tied LM head, by a Transpose node of the table."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = proto.graph
    inits = {init.name: init for init in graph.initializer}
    tables = {n.input[0] for n in graph.node if n.op_type == "Gather" and n.input[0] in inits}
    weights = {n.input[1] for n in graph.node if n.op_type == "MatMul" and n.input[1] in inits}
    for table in sorted(tables):
        emb = numpy_helper.to_array(inits[table])
        for name in sorted(weights):
            w = numpy_helper.to_array(inits[name])
            if emb.ndim == 2 and w.shape == emb.T.shape and np.array_equal(w, emb.T):
                out = f"{table}_transposed"
                for node in graph.node:
                    node.input[:] = [out if i == name else i for i in node.input]
                graph.node.insert(0, onnx.helper.make_node("Transpose", [table], [out], perm=[1, 0], name=out))
                graph.initializer.remove(inits.pop(name))
                weights.discard(name)
                break
    return proto


def export_onnx(model: nn.Module, spec: ExportSpec, template=None,
                version: str | None = None) -> bytes:
    """The model as ONNX bytes: inputs int64 (batch, seq), outputs both heads, metadata from `export_metadata`.

    With `template` (an OnnxTemplate, template.py) the cached model is filled with the weights and metadata:
    no tracing, and neither onnx nor protobuf is imported. Without, the model is traced afresh (`trace_onnx`)
    and checked with onnx.checker. Both give the same outputs; each is deterministic.
    """
    metadata = export_metadata(model, spec, version)
    if template is not None:
        return template.fill(model, metadata)
    import onnx

    proto = trace_onnx(model, spec.bos_id)
    for key, value in sorted(metadata.items()):
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    return proto.SerializeToString(deterministic=True)


def export_onnx_int8(fp32_path: Path, out_path: Path) -> None:
    """Write at `out_path` the int8 model of the fp32 ONNX file at `fp32_path`, with the same metadata.

    onnxruntime's `quantize_dynamic`: the weight of every MatMul (the intent head's Gemm becomes one) is
    stored uint8 (QUInt8, one scale and zero point per output column) and activations are quantized to
    uint8 at run time. The embedding tables stay fp32, and with them the tied LM head, which reads the
    embedding through a Transpose. Weights are QUInt8 rather than QInt8 because x86 CPUs without VNNI
    (AVX2, AVX-512F) multiply uint8 activations by int8 weights in pairs summed in int16, which saturates
    (2 * 255 * 127 > 32767): on an AVX2 machine QInt8 logits were off by 10 % of their range, while uint8 by
    uint8 takes a kernel that cannot saturate, so the answers do not depend on the CPU. Of the settings
    `tools/bench_export.py --settings` compares on CLINC150, this one agrees best with the fp32 model's
    answers (QInt8 with 7-bit weights, `reduce_range`, also cannot saturate but agrees less). Quantizing the
    embedding too halves the file, and one scale per tensor runs faster, but both agree less. The fp32
    graph must be the folded one (`trace_onnx`), so every weight is
    an initializer the quantizer finds. The quantizer works on files: shape inference writes one beside
    `fp32_path`, and a temporary directory that `tempfile` places in `out_path`'s directory while it runs,
    never in $TMPDIR; both are gone when it returns. The result is serialized again deterministically, with
    the fp32 model's doc_string and metadata only: the same fp32 file gives the same bytes.
    """
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    source = onnx.load_from_string(fp32_path.read_bytes())
    quiet, tmp = logging.root.manager.disable, tempfile.tempdir
    logging.disable(logging.WARNING)  # "consider pre-processing": the folded graph needs none
    tempfile.tempdir = str(out_path.parent)  # where tempfile puts what the quantizer asks it for
    try:
        quantize_dynamic(fp32_path, out_path, op_types_to_quantize=["MatMul"], per_channel=True,
                         weight_type=QuantType.QUInt8)
    finally:
        logging.disable(quiet)
        tempfile.tempdir = tmp
    proto = onnx.load_from_string(out_path.read_bytes())
    proto.doc_string = source.doc_string
    del proto.metadata_props[:]
    proto.metadata_props.extend(source.metadata_props)
    onnx.checker.check_model(proto)
    out_path.write_bytes(proto.SerializeToString(deterministic=True))


def onnx_metadata(onnx_bytes: bytes) -> dict[str, str]:
    """metadata_props of an ONNX model, as a dict (CorruptFile if the bytes are not an ONNX model)."""
    import onnx

    try:
        proto = onnx.load_from_string(onnx_bytes)
    except Exception as e:  # protobuf raises its own DecodeError types
        raise CorruptFile(f"not a valid ONNX model ({e})") from None
    return {p.key: p.value for p in proto.metadata_props}
