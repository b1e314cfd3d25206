"""Export the model for apps: ONNX (Android, and this package's runtime) and a CoreML mlprogram (iOS).

Exports are deterministic: the same weights, labels, tokenizer and state give byte-identical files, and
the version written into both is a hash of exactly those inputs, so two devices compare by file hash.
The ONNX graph takes any batch and any length up to `max_len`; the CoreML package takes one utterance
padded to `max_len` (a static shape the Neural Engine can compile; causal attention over right padding
makes the padding invisible to real positions). Metadata keys are the same in both (`export_metadata`).
"""

from __future__ import annotations

import copy
import io
import json
import logging
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
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

def trace_onnx(model: nn.Module, example_id: int = 0) -> "onnx.ModelProto":
    """torch.onnx.export of the model, no metadata: inputs int64 (batch, seq), outputs both heads.

    Uses the TorchScript exporter (`dynamo=False`): deterministic names, no onnxscript dependency. The
    trace depends on the architecture only (`example_id` is any valid token id); see export/template.py.
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
                          # no folding: it would store the tied LM head a second time, transposed
                          # (+0.5 MB); onnxruntime folds constants in memory when it loads the model
                          dynamic_axes=axes, do_constant_folding=False)
    return onnx.load_from_string(buf.getvalue())


def export_onnx(model: nn.Module, spec: ExportSpec, template=None,
                version: str | None = None) -> bytes:
    """The model as ONNX bytes: inputs int64 (batch, seq), outputs both heads, metadata from `export_metadata`.

    With `template` (an OnnxTemplate, template.py) the cached graph is filled with the model's weights, no tracing;
    without, the model is traced afresh (`trace_onnx`). Both give the same outputs; each is deterministic.
    """
    import onnx

    proto = template.fill(model) if template is not None else trace_onnx(model, spec.bos_id)
    for key, value in sorted(export_metadata(model, spec, version).items()):
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = ("assistant-forget intent + next-token model. " + TOKENIZATION +
                        f"; seq <= max_len={model.cfg.max_len}")
    onnx.checker.check_model(proto)
    return proto.SerializeToString(deterministic=True)


def onnx_metadata(onnx_bytes: bytes) -> dict[str, str]:
    """metadata_props of an ONNX model, as a dict (CorruptFile if the bytes are not an ONNX model)."""
    import onnx

    try:
        proto = onnx.load_from_string(onnx_bytes)
    except Exception as e:  # protobuf raises its own DecodeError types
        raise CorruptFile(f"not a valid ONNX model ({e})") from None
    return {p.key: p.value for p in proto.metadata_props}


# -- CoreML ----------------------------------------------------------------------------------------

@contextmanager
def quiet_coremltools() -> Iterator[None]:
    """Silence coremltools' import-time warnings (untested torch version, no CoreML runtime off macOS)."""
    log = logging.getLogger("coremltools")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _drop_aliases(ep: torch.export.ExportedProgram) -> None:
    """Replace aten.alias nodes (from `causal[:T, :T]` at T == max_len) by their input; CoreML has no alias op."""
    graph = ep.graph_module.graph
    for node in list(graph.nodes):
        if node.target == torch.ops.aten.alias.default:
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    ep.graph_module.recompile()


def export_coreml(model: nn.Module, spec: ExportSpec, path: Path, fp16: bool = True) -> None:
    """Write the model as a CoreML mlprogram package at `path` (a new `.mlpackage` directory).

    Inputs int32 (1, max_len), right-padded; outputs fp32 intent_logits (1, I) and lm_logits (1, max_len, V).
    Weights and compute are fp16 unless `fp16=False`. The package is made byte-deterministic afterwards.
    """
    path = Path(path)
    if path.suffix != ".mlpackage" or path.exists():
        raise BadInput(f"{path}: CoreML output must be a new path ending in .mlpackage")
    with quiet_coremltools():
        import coremltools as ct

    m = _cpu_copy(model)
    L = m.cfg.max_len
    example = (torch.full((1, L), spec.pad_id, dtype=torch.long), torch.ones(1, L, dtype=torch.long))  # (1, L)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.export's LeafSpec deprecation notice
        ep = torch.export.export(m, example).run_decompositions({})
    _drop_aliases(ep)
    with quiet_coremltools(), warnings.catch_warnings(), np.errstate(over="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # clamp bound float32-max -> fp16 inf (harmless)
        warnings.simplefilter("ignore", DeprecationWarning)  # coremltools' own internal registry calls
        ml = ct.convert(
            ep, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16,
            compute_precision=ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32,
            inputs=[ct.TensorType(name=n, shape=(1, L), dtype=np.int32) for n in INPUT_NAMES],
            outputs=[ct.TensorType(name=n, dtype=np.float32) for n in OUTPUT_NAMES],
            skip_model_load=True,  # no CoreML runtime off macOS; apps compile the package themselves
        )
    meta = export_metadata(model, spec)
    ml.author, ml.license, ml.version = AUTHOR, LICENSE, meta["version"]
    ml.short_description = (f"Intent ({m.cfg.n_intents} CLINC150 labels incl. 'oos') and next-token "
                            f"model; state {spec.state}. Tokenization: {TOKENIZATION}")
    ml.input_description["input_ids"] = f"int32 (1, {L}): token ids, bos first, eos last, pad_id after"
    ml.input_description["attention_mask"] = f"int32 (1, {L}): 1 on real tokens, 0 on padding"
    ml.output_description["intent_logits"] = "float32 (1, n_intents): softmax gives intent probabilities"
    ml.output_description["lm_logits"] = "float32 (1, max_len, vocab): next-token logits at each position"
    ud = ml.user_defined_metadata
    if "com.github.apple.coremltools.conversion_date" in ud:
        del ud["com.github.apple.coremltools.conversion_date"]  # wall-clock date breaks determinism
    ud.update(meta)
    with quiet_coremltools():
        ml.save(str(path))
    _canonicalize_mlpackage(path, meta["version"])


def _canonicalize_mlpackage(path: Path, version: str) -> None:
    """Make a saved package byte-deterministic: sorted protobuf maps, item ids derived from the version.

    coremltools writes random UUIDs into Manifest.json and serialises protobuf maps in arbitrary order.
    """
    from coremltools.proto import Model_pb2

    manifest_path = path / "Manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    renames = {old: str(uuid.UUID(bytes=bytes.fromhex(sha256_bytes(f"{version}/{e['path']}".encode())[:32]),
                                  version=4))
               for old, e in manifest["itemInfoEntries"].items()}
    manifest["itemInfoEntries"] = {renames[k]: v for k, v in manifest["itemInfoEntries"].items()}
    manifest["rootModelIdentifier"] = renames[manifest["rootModelIdentifier"]]
    manifest_path.write_text(json.dumps(manifest, indent=4, sort_keys=True) + "\n", encoding="utf-8")
    spec_path = _spec_path(path)
    spec = Model_pb2.Model()
    spec.ParseFromString(spec_path.read_bytes())
    spec_path.write_bytes(spec.SerializeToString(deterministic=True))


def _spec_path(pkg: Path) -> Path:
    """The model.mlmodel a package's Manifest.json names as its root model."""
    try:
        manifest = json.loads((pkg / "Manifest.json").read_text(encoding="utf-8"))
        entry = manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]
        return pkg / "Data" / entry["path"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CorruptFile(f"{pkg}: not a readable .mlpackage ({e})") from None


def coreml_spec(pkg: Path):
    """The package's protobuf model specification (coremltools.proto.Model_pb2.Model)."""
    from coremltools.proto import Model_pb2

    spec = Model_pb2.Model()
    try:
        spec.ParseFromString(_spec_path(Path(pkg)).read_bytes())
    except Exception as e:  # protobuf raises its own DecodeError types
        raise CorruptFile(f"{pkg}: model.mlmodel is not a CoreML model ({e})") from None
    return spec


_BLOB_DTYPES = {1: np.float16, 2: np.float32, 3: np.uint8, 4: np.int8}  # MIL blob storage dtype codes
_BLOB_SENTINEL = 0xDEADBEEF


def coreml_weights(pkg: Path) -> dict[str, np.ndarray]:
    """Every weight stored in the package's weight.bin, by MIL const name, as float32 arrays.

    Reads the blob file directly: each const op names an offset to a 64-byte record (sentinel, dtype,
    size, data offset) that points at the raw little-endian data.
    """
    pkg = Path(pkg)
    spec = coreml_spec(pkg)
    blob_file = _spec_path(pkg).parent / "weights" / "weight.bin"
    data = blob_file.read_bytes()
    fn = spec.mlProgram.functions["main"]
    out: dict[str, np.ndarray] = {}
    for op in fn.block_specializations[fn.opset].operations:
        val = op.attributes["val"] if op.type == "const" else None
        if val is None or val.WhichOneof("value") != "blobFileValue":
            continue
        sentinel, code, size, offset = np.frombuffer(data, "<u4", 2, val.blobFileValue.offset).tolist() + \
            np.frombuffer(data, "<u8", 2, val.blobFileValue.offset + 8).tolist()
        if sentinel != _BLOB_SENTINEL or code not in _BLOB_DTYPES or offset + size > len(data):
            raise CorruptFile(f"{blob_file}: bad blob record at offset {val.blobFileValue.offset}")
        shape = [d.constant.size for d in val.type.tensorType.dimensions]
        arr = np.frombuffer(data, _BLOB_DTYPES[code], size // np.dtype(_BLOB_DTYPES[code]).itemsize, offset)
        out[op.outputs[0].name] = arr.astype(np.float32).reshape(shape)
    return out


def coreml_const_name(param_name: str) -> str:
    """The MIL const name the converter gives a PyTorch parameter (fp16 weights get a `_to_fp16` suffix).

    >>> coreml_const_name("blocks.0.qkv.lora_b")
    'p_blocks_0_qkv_lora_b_to_fp16'
    """
    return "p_" + param_name.replace(".", "_") + "_to_fp16"


def coreml_weight_mismatches(model: nn.Module, pkg: Path) -> list[str]:
    """Parameters of `model` not stored in the package within fp16 rounding; [] when all are there.

    A parameter is found under its own const name, else as any stored const equal to it or its transpose
    (the converter folds transposes and merges identical constants).
    """
    stored = coreml_weights(pkg)
    tol = lambda v: np.abs(v) * 2.0 ** -11 + 2.0 ** -24  # fp16 round-to-nearest error bound  # noqa: E731
    missing = []
    for name, p in cpu_weights(model).items():
        v = p.numpy()
        own = stored.get(coreml_const_name(name))
        if own is not None and own.shape == v.shape:
            ok = bool(np.all(np.abs(own - v) <= tol(v)))
        else:
            forms = [v] + ([v.T] if v.ndim == 2 else [])
            ok = any(w.shape == f.shape and np.all(np.abs(w - f) <= tol(f)) for w in stored.values() for f in forms)
        if not ok:
            missing.append(name)
    return missing
