"""CoreML export for iOS: the model as an mlprogram intent classifier, and readers that inspect a package.

The package is a CoreML classifier (`ClassifierConfig` with the intent labels as class labels), so an app gets
the predicted label (`intent`, a string) and every label's probability (`intent_probs`, a dictionary) from one
prediction; the probabilities are the softmax of the intent logits, on which the app applies the out-of-scope
rule of `core.numerics.oos_rule` with the exported `oos_threshold` (docs/mobile.md). The next-token logits
(`lm_logits`) are a third output beside the classifier's two.

Inputs are int32 (1, T) with any T in 1..max_len (`ct.RangeDim`, default max_len). The batch is fixed at 1: a
CoreML classifier maps one probability vector to one label, so an app batches with `predictions(fromBatch:)`.
Weights and compute are fp16. The package is made byte-deterministic after saving (`_canonicalize_mlpackage`).

coremltools converts on Linux but predicts only on macOS; `coreml_spec`, `coreml_weights` and
`coreml_weight_mismatches` read a saved package without the CoreML runtime, so tests can inspect it anywhere.
"""

from __future__ import annotations

import json
import logging
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.errors import BadInput, CorruptFile
from ..core.fsio import sha256_bytes
from .convert import AUTHOR, INPUT_NAMES, LICENSE, TOKENIZATION, ExportSpec, _cpu_copy, cpu_weights, export_metadata

CLASS_LABEL = "intent"  # output: the predicted label, a string
CLASS_PROBS = CLASS_LABEL + "_probs"  # output: label -> probability; coremltools names it after CLASS_LABEL
LM_LOGITS = "lm_logits"  # output: float32 (1, T, vocab) next-token logits
_PROBS_TENSOR = "intent_probabilities"  # the (1, n_intents) softmax the classifier reads; not an output itself
_DROPPED_KEYS = ("com.github.apple.coremltools.conversion_date",)  # wall-clock date: breaks determinism


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


class _AppModel(nn.Module):
    """What the package computes: (softmax of the intent logits (B, I), next-token logits (B, T, V))."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        intent_logits, lm_logits = self.model(input_ids, attention_mask)
        return intent_logits.softmax(-1), lm_logits


def _lengthen_causal_masks(model: nn.Module, max_len: int) -> None:
    """Pad every (max_len, max_len) `causal` buffer by one row and column, in place.

    The model slices `causal[:T, :T]`; at T == max_len that slice is the whole buffer, which torch.export traces
    as another graph (an alias) and so refuses a length range that reaches max_len. One more row and column make
    the slice a real one at every T <= max_len; the added entries are never read.
    """
    for module in model.modules():
        mask = getattr(module, "causal", None)
        if isinstance(mask, torch.Tensor) and tuple(mask.shape) == (max_len, max_len):
            module.causal = F.pad(mask, (0, 1, 0, 1), value=float("-inf"))


def export_coreml(model: nn.Module, spec: ExportSpec, path: Path, fp16: bool = True) -> None:
    """Write the model as a CoreML mlprogram classifier package at `path` (a new `.mlpackage` directory).

    Inputs int32 `input_ids` and `attention_mask` (1, T), 1 <= T <= max_len. Outputs `intent` (the label of the
    highest probability), `intent_probs` (label -> softmax probability) and float32 `lm_logits` (1, T, V).
    Weights and compute are fp16 unless `fp16=False`. The same model and spec give the same bytes.

    coremltools cannot attach a classifier to a torch program with more than one output (its output types
    would no longer match the outputs), so the torch program is converted to MIL first and the classifier
    is added when that MIL program is written out, with no further passes.

    coremltools writes the converted package to a temporary directory of its own first and removes it only
    at interpreter exit; that copy holds this model's weights, so a long-lived process (the dashboard) or a
    killed one would keep a previous model's weights outside the device after a forget. The temporary
    package is therefore made in `path`'s directory (`tempfile.tempdir`, a publish's build directory,
    which recovery removes) and deleted as soon as the package is saved.
    """
    import shutil
    import tempfile

    path = Path(path)
    if path.suffix != ".mlpackage" or path.exists():
        raise BadInput(f"{path}: CoreML output must be a new path ending in .mlpackage")
    with quiet_coremltools():
        import coremltools as ct

    m = _cpu_copy(model)
    L = m.cfg.max_len
    _lengthen_causal_masks(m, L)
    example = (torch.full((1, L), spec.pad_id, dtype=torch.long), torch.ones(1, L, dtype=torch.long))  # (1, L)
    seq = torch.export.Dim("seq", min=1, max=L)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.export's LeafSpec deprecation notice
        ep = torch.export.export(_AppModel(m).eval(), example,
                                 dynamic_shapes=({1: seq}, {1: seq})).run_decompositions({})
    target = ct.target.iOS16
    with quiet_coremltools(), warnings.catch_warnings(), np.errstate(over="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # clamp bound float32-max -> fp16 inf (harmless)
        warnings.simplefilter("ignore", DeprecationWarning)  # coremltools' own internal registry calls
        prog = ct.convert(
            ep, convert_to="milinternal", minimum_deployment_target=target,
            compute_precision=ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32,
            inputs=[ct.TensorType(name=n, shape=(1, ct.RangeDim(1, L, default=L)), dtype=np.int32)
                    for n in INPUT_NAMES],
            outputs=[ct.TensorType(name=_PROBS_TENSOR), ct.TensorType(name=LM_LOGITS, dtype=np.float32)],
        )
        prog.functions["main"].set_output_types(None)
        tmp, tempfile.tempdir = tempfile.tempdir, str(path.parent)  # where coremltools puts its package
        try:
            ml = ct.convert(
                prog, convert_to="mlprogram", minimum_deployment_target=target, pass_pipeline=ct.PassPipeline.EMPTY,
                classifier_config=ct.ClassifierConfig(list(spec.labels), predicted_feature_name=CLASS_LABEL,
                                                      predicted_probabilities_output=_PROBS_TENSOR),
                skip_model_load=True,  # no CoreML runtime off macOS; apps compile the package themselves
            )
        finally:
            tempfile.tempdir = tmp
    meta = export_metadata(model, spec)
    ml.author, ml.license, ml.version = AUTHOR, LICENSE, meta["version"]
    ml.short_description = (f"Intent classifier ({m.cfg.n_intents} labels incl. 'oos'; apply oos_threshold to "
                            f"{CLASS_PROBS}) and next-token model; state {spec.state}. Tokenization: {TOKENIZATION}")
    ml.input_description["input_ids"] = f"int32 (1, T), 1 <= T <= {L}: token ids, bos first, eos last"
    ml.input_description["attention_mask"] = "int32 (1, T): 1 on real tokens, 0 on right padding"
    ml.output_description[CLASS_LABEL] = "the label of the highest probability, before the out-of-scope rule"
    ml.output_description[CLASS_PROBS] = "label -> softmax probability; apply oos_threshold (metadata) to these"
    ml.output_description[LM_LOGITS] = "float32 (1, T, vocab): next-token logits at each position"
    ud = ml.user_defined_metadata
    for key in _DROPPED_KEYS:
        if key in ud:
            del ud[key]
    ud.update(meta)
    try:
        with quiet_coremltools():
            ml.save(str(path))
    finally:
        if ml.is_temp_package and ml.package_path:
            shutil.rmtree(ml.package_path, ignore_errors=True)
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
    with quiet_coremltools():
        from coremltools.proto import Model_pb2

    spec = Model_pb2.Model()
    try:
        spec.ParseFromString(_spec_path(Path(pkg)).read_bytes())
    except Exception as e:  # protobuf raises its own DecodeError types
        raise CorruptFile(f"{pkg}: model.mlmodel is not a CoreML model ({e})") from None
    return spec


_BLOB_DTYPES = {1: np.float16, 2: np.float32, 3: np.uint8, 4: np.int8}  # MIL blob storage dtype codes
_BLOB_SENTINEL = 0xDEADBEEF


def coreml_weights(pkg: Path, dtype: type | None = np.float32) -> dict[str, np.ndarray]:
    """Every weight stored in the package's weight.bin, by MIL const name (float32, or as stored if dtype=None).

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
        out[op.outputs[0].name] = (arr if dtype is None else arr.astype(dtype)).reshape(shape)
    return out


def coreml_const_name(param_name: str) -> str:
    """The MIL const name the converter gives a PyTorch parameter (fp16 weights get a `_to_fp16` suffix).

    The package's program wraps the model (`_AppModel.model`), hence the `model_` after the `p_` prefix.

    >>> coreml_const_name("blocks.0.qkv.lora_b")
    'p_model_blocks_0_qkv_lora_b_to_fp16'
    """
    return "p_model_" + param_name.replace(".", "_") + "_to_fp16"


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
