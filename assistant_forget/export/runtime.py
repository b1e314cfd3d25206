"""The app runtime: the exported ONNX model + tokenizer, run with onnxruntime and sentencepiece only.

What a phone app does, in Python: no torch, one CPU thread. `load_current(DIR)` resolves
DIR/exports/CURRENT and loads that version, resolving again if a newer publish deleted it meanwhile.
It loads model.onnx (fp32), or with `fmt="onnx-int8"` model.int8.onnx, when the device exports that format.
Tokenization, the out-of-scope rule and next-word search mirror base.py, so the app answers like the
PyTorch model it was exported from.

Text in: any `str` that is valid Unicode. A string with a lone (unpaired) surrogate, e.g. "hello \ud83d world"
from a UTF-16 string cut in half, has no UTF-8 form, so the tokenizer cannot take it: `intent`, `suggest` and
`encode` raise BadInput (exit code 2 in the CLI; a ForgetError, not a RuntimeError) naming its position. The app
should drop or replace such characters (Swift and Kotlin strings are usually already valid, but a bridge
that passes raw UTF-16 can produce them); nothing is replaced silently here, so the model never answers
for a text other than the one it was given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import sentencepiece as spm

from ..core.errors import BadInput, CorruptFile
from ..core.numerics import log_softmax, logsumexp, oos_rule, softmax
from ..core.fsio import sha256_bytes
from .publish import MODEL_FILES, TOKENIZER_FILE, current_export, exports_dir, read_manifest

OOS = "oos"  # the out-of-scope label (clinc.OOS; not imported to keep this module's imports minimal)


@dataclass(frozen=True)
class IntentResult:
    """The intent of an utterance and how sure the model is."""

    label: str  # intent name ("oos" when out of scope)
    confidence: float  # probability of `label`; for a threshold rejection, 1 - best in-scope probability
    index: int  # column of intent_logits


@dataclass(frozen=True)
class Suggestion:
    """A next word for a prefix, with its score under the model."""

    word: str  # the word, normalised like the tokenizer (lower case)
    probability: float  # P(pieces | prefix) x P(a word boundary follows)
    ids: tuple[int, ...]  # its pieces


def session_options(threads: int = 1) -> ort.SessionOptions:
    """One thread, sequential execution, all graph optimisations: the phone setting, and the fastest here."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only
    return so


class Runtime:
    """An exported model ready to answer: `intent(text)`, `suggest(prefix, k)`, or raw `run(ids, mask)`."""

    def __init__(self, onnx_bytes: bytes, tokenizer_bytes: bytes, source: str = "<bytes>", threads: int = 1) -> None:
        self.source = source
        self.path: Path | None = None  # the version directory, when loaded by `from_dir`
        try:
            self.session = ort.InferenceSession(onnx_bytes, session_options(threads),
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise CorruptFile(f"{source}: onnxruntime cannot load the model ({e})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.version = meta["version"]
            self.state = meta["state"]
            self.labels: tuple[str, ...] = tuple(json.loads(meta["labels"]))
            self.max_len = int(meta["max_len"])
            self.oos_threshold = float(meta["oos_threshold"])
            self.bos_id, self.eos_id = int(meta["bos_id"]), int(meta["eos_id"])
            tokenizer_sha256 = meta["tokenizer_sha256"]
        except (KeyError, ValueError, TypeError) as e:
            raise CorruptFile(f"{source}: model metadata incomplete ({e}); "
                              "export it with assistant_forget.export.convert")
        if sha256_bytes(tokenizer_bytes) != tokenizer_sha256:
            raise CorruptFile(f"{source}: the tokenizer is not the one this model was exported with")
        self.sp = spm.SentencePieceProcessor()
        self.sp.LoadFromSerializedProto(tokenizer_bytes)
        pieces = [self.sp.IdToPiece(i) for i in range(self.sp.GetPieceSize())]
        self._text = [p.replace("▁", " ") for p in pieces]  # what a (non-byte) piece adds to decoded text
        self._usable = np.array([i > self.eos_id and not p.startswith("<") for i, p in enumerate(pieces)])  # (V,)
        self._starts = np.array([p.startswith("▁") for p in pieces]) & self._usable  # (V,) word-initial pieces
        self._boundary = self._starts.copy()  # (V,) a word ends before a word-initial piece or eos
        self._boundary[self.eos_id] = True
        self._oos = self.labels.index(OOS) if OOS in self.labels else len(self.labels) - 1

    @classmethod
    def from_dir(cls, version_dir: Path, threads: int = 1, fmt: str = "onnx") -> "Runtime":
        """Load DIR/exports/<version>, checking each file against export.json and the version against its name.

        `fmt` picks the model: "onnx" (model.onnx, fp32) or "onnx-int8" (model.int8.onnx); BadInput if the
        export does not hold that format. FileNotFoundError passes through: the version was replaced (see
        `load_current`).
        """
        if fmt not in MODEL_FILES:
            raise BadInput(f"fmt must be one of {sorted(MODEL_FILES)}, got {fmt!r}")
        version_dir = Path(version_dir)
        manifest = read_manifest(version_dir)
        if fmt not in manifest.get("formats", ()):
            raise BadInput(f"{version_dir}: this export has no {fmt} model (formats {manifest.get('formats')}); "
                           f"publish it with `assistant-forget export --format onnx,{fmt}`")
        blobs = {}
        for name in (MODEL_FILES[fmt], TOKENIZER_FILE):
            blobs[name] = (version_dir / name).read_bytes()
            if sha256_bytes(blobs[name]) != manifest["files"].get(name):
                raise CorruptFile(f"{version_dir / name}: checksum mismatch with export.json; publish again")
        rt = cls(blobs[MODEL_FILES[fmt]], blobs[TOKENIZER_FILE], str(version_dir), threads)
        if rt.version != version_dir.name:
            raise CorruptFile(f"{version_dir}: {MODEL_FILES[fmt]} is version {rt.version}, not {version_dir.name}")
        rt.path = version_dir
        return rt

    # -- model ---------------------------------------------------------------------------------
    def encode(self, text: str, eos: bool = True) -> list[int]:
        """bos + pieces (cut to fit max_len) [+ eos]: the tokenization the model was trained with."""
        _check_text(text, "text")
        ids = self.sp.EncodeAsIds(text)[: self.max_len - 2]
        return [self.bos_id] + ids + ([self.eos_id] if eos else [])

    def run(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both heads on right-padded int64 (B, T) ids and mask: (intent_logits (B, I), lm_logits (B, T, V))."""
        if not (isinstance(ids, np.ndarray) and isinstance(mask, np.ndarray) and ids.dtype == mask.dtype == np.int64
                and ids.ndim == 2 and ids.shape == mask.shape and 1 <= ids.shape[1] <= self.max_len):
            raise BadInput(f"ids and mask must be int64 arrays of one shape (B, T) with 1 <= T <= {self.max_len}, "
                           f"got {getattr(ids, 'shape', ids)!r} and {getattr(mask, 'shape', mask)!r}")
        intent_logits, lm_logits = self.session.run(None, {"input_ids": ids, "attention_mask": mask})
        return intent_logits, lm_logits

    def intent(self, text: str) -> IntentResult:
        """The intent of `text` with the out-of-scope rule exported with the model (core.numerics.oos_rule)."""
        ids = np.array([self.encode(text)], dtype=np.int64)  # (1, T)
        logits, _ = self.run(ids, np.ones_like(ids))  # (1, I)
        label, conf = oos_rule(softmax(logits), self._oos, self.oos_threshold)  # (1,) each
        return IntentResult(self.labels[int(label[0])], float(conf[0]), int(label[0]))

    def suggest(self, prefix: str, k: int = 3, max_pieces: int = 4) -> list[Suggestion]:
        """Top-k next words for `prefix`, most likely first (the search of base.suggest).

        A prefix ending inside a word ("set an ala") gets completions of that word; after a space or on an
        empty prefix, the following word. Beam search over up to `max_pieces` pieces per word; a word's score
        is P(pieces) x P(next piece starts a new word or is eos). Pieces that cannot spell the partial word
        are skipped before the beam is cut, so a completion is found even when its pieces rank low.
        """
        _check_text(prefix, "prefix")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise BadInput(f"k must be a positive integer, got {k!r}")
        if isinstance(max_pieces, bool) or not isinstance(max_pieces, int) or not 1 <= max_pieces < self.max_len - 1:
            raise BadInput(f"max_pieces must be an integer in [1, {self.max_len - 2}], got {max_pieces!r}")
        words = prefix.split()
        ends_in_word = bool(words) and not prefix[-1].isspace()
        partial = self._decode(self.sp.EncodeAsIds(words[-1])) if ends_in_word else ""  # normalised like pieces
        context = words[:-1] if partial else words
        ctx = self.sp.EncodeAsIds(" ".join(context))
        ctx = [self.bos_id] + ctx[len(ctx) - min(len(ctx), self.max_len - 1 - max_pieces):]  # latest pieces
        width = max(2 * k, 8)
        beam: list[tuple[list[int], float]] = [([], 0.0)]
        done: dict[str, tuple[float, tuple[int, ...]]] = {}
        for step in range(max_pieces + 1):  # the last pass only scores the ends of max_pieces-long words
            ids = np.array([ctx + hyp for hyp, _ in beam], dtype=np.int64)  # (W, T)
            _, lm_logits = self.run(ids, np.ones_like(ids))  # (W, T, V)
            logp = log_softmax(lm_logits[:, -1])  # (W, V)
            cands = []
            for w, (hyp, score) in enumerate(beam):
                prev = "".join(self._text[i] for i in hyp)
                if hyp:
                    word = prev.strip()
                    if word and word.startswith(partial):  # a lone "▁" piece is no word yet
                        end = score + float(logsumexp(logp[w][self._boundary]))
                        if end > done.get(word, (-np.inf,))[0]:
                            done[word] = (end, tuple(hyp))
                if step == max_pieces:
                    continue
                allowed = self._starts if step == 0 else self._usable & ~self._starts  # (V,)
                lp = np.where(allowed, logp[w], -np.inf)  # (V,)
                taken, n = 0, min(width * 4, lp.size - 1)
                order = np.argsort(-lp, kind="stable") if partial else np.argpartition(-lp, n)[:n]
                if not partial:
                    order = order[np.argsort(-lp[order], kind="stable")]
                for i in order.tolist():  # best first, until width * 4 fit the partial
                    if lp[i] == -np.inf or taken == n:
                        break
                    text = (prev + self._text[i]).strip()
                    if text.startswith(partial) or partial.startswith(text):
                        cands.append((hyp + [i], score + float(lp[i])))
                        taken += 1
            beam = sorted(cands, key=lambda c: -c[1])[:width]
            if not beam:
                break
        best = sorted(done.items(), key=lambda kv: -kv[1][0])[:k]
        return [Suggestion(word, float(np.exp(s)), ids) for word, (s, ids) in best]

    def _decode(self, ids: list[int]) -> str:
        return self.sp.DecodeIds([i for i in ids if i > self.eos_id])


def load_current(device_root: Path, attempts: int = 20, threads: int = 1, fmt: str = "onnx") -> Runtime:
    """Load the live export of a device (its `fmt` model, see `Runtime.from_dir`), resolving CURRENT again
    when a publish deletes it mid-load."""
    root = Path(device_root)
    last: Exception | None = None
    for _ in range(attempts):
        version_dir = current_export(root)
        if version_dir is None:
            raise CorruptFile(f"{exports_dir(root)}: no export has been published on this device; "
                              "train or export first (assistant-forget export)")
        try:
            return Runtime.from_dir(version_dir, threads, fmt)
        except FileNotFoundError as e:  # replaced between reading CURRENT and reading the files
            last = e
        except CorruptFile as e:  # a file vanished mid-read looks truncated; only real if still live
            if current_export(root) == version_dir and version_dir.is_dir():
                raise
            last = e
    if current_export(root) == version_dir and not version_dir.is_dir():
        raise CorruptFile(f"{version_dir}: named by {exports_dir(root) / 'CURRENT'} but missing (a publish was "
                          f"interrupted); run `assistant-forget export --device {root}` to publish again")
    raise CorruptFile(f"{exports_dir(root)}: the export kept changing during {attempts} load attempts "
                      f"({last}); try again once publishing has finished")


def _check_text(text: object, what: str) -> None:
    """Raise BadInput unless `text` is a str the tokenizer can take (valid Unicode: no lone surrogate)."""
    if not isinstance(text, str):
        raise BadInput(f"{what} must be a string, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise BadInput(f"{what} contains an unpaired surrogate ({text[e.start]!r} at index {e.start}); it must be "
                       "valid Unicode: drop or replace the character (e.g. with U+FFFD) before calling") from None



