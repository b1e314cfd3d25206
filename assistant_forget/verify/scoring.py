"""Per-utterance scores of one model, on the exported ONNX graph or on PyTorch weights, batched.

Verification (verification.py) reads everything off these numbers: the mean next-token NLL of an utterance
(where memorisation shows), the intent cross-entropy and the predicted intent (with the out-of-scope rule
the app applies), the intent logits (for KL to the oracle), the next-token KL between two models, and the
NLL of every secret of a canary format (exposure). Both backends feed the same numpy post-processing, so
ONNX and PyTorch scores differ only by the graphs' float rounding (tests/verify/test_verify.py: < 1e-4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Protocol, Sequence

import numpy as np

from ..core.errors import BadInput
from ..core.numerics import log_softmax, logsumexp, oos_rule, softmax

if TYPE_CHECKING:
    from ..families.assistant.base import BaseModel, LabelSet
    from ..families.assistant.model import AssistantModel
    from ..export.runtime import Runtime
    from ..families.assistant.tokenizer import Tokenizer

Labeled = tuple[str, str]  # (text, intent name)
BATCH = 128  # utterances per forward pass
OOS = "oos"  # the out-of-scope label (clinc.OOS)


class Backend(Protocol):
    """A model that encodes texts and runs both heads on numpy arrays (see OnnxBackend, TorchBackend)."""

    name: str  # "onnx" or "torch"
    labels: tuple[str, ...]  # intent name of each intent_logits column
    oos_threshold: float  # out-of-scope rule of the app (core.numerics.oos_rule)

    def encode(self, texts: Sequence[str]) -> list[list[int]]: ...  # bos + pieces + eos per text

    def run(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...  # (B, I), (B, T, V)


class OnnxBackend:
    """The exported model through onnxruntime (runtime.Runtime): what the device runs."""

    name = "onnx"

    def __init__(self, rt: "Runtime") -> None:
        self.rt, self.labels, self.oos_threshold = rt, rt.labels, rt.oos_threshold
        self.version = rt.version  # export version (a hash of the exported weights and metadata)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.rt.encode(t) for t in texts]

    def run(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.rt.run(ids, mask)


class TorchBackend:
    """PyTorch weights in memory (the engine's model, the oracle, shadow models)."""

    name = "torch"

    def __init__(self, model: "AssistantModel", tok: "Tokenizer", labels: "LabelSet") -> None:
        self.model, self.tok = model, tok
        self.labels, self.oos_threshold = tuple(labels), float(getattr(labels, "oos_threshold", 0.0))

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        out: list[list[int]] = []
        for i in range(0, len(texts), 4096):
            ids, mask = self.tok.encode_batch(list(texts[i:i + 4096]), self.model.cfg.max_len)  # (B, T) each
            out += [row[: int(n)] for row, n in zip(ids.tolist(), mask.sum(1).tolist())]
        return out

    def run(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        was_training = self.model.training
        self.model.eval()
        with torch.inference_mode():
            intent, lm = self.model(torch.from_numpy(ids), torch.from_numpy(mask))  # (B, I), (B, T, V)
        self.model.train(was_training)
        return intent.float().numpy(), lm.float().numpy()


def onnx_of(model: "AssistantModel", base: "BaseModel", state: str = "exact") -> OnnxBackend:
    """Export `model` to ONNX in memory (nothing on disk) and load it with the app runtime."""
    from ..export.convert import export_onnx, make_spec
    from ..export.runtime import Runtime

    tok = (base.root / "tokenizer.model").read_bytes()
    spec = make_spec(model, tok, list(base.labels), state, base.labels.oos_threshold)
    return OnnxBackend(Runtime(export_onnx(model, spec), tok, source=f"<{state} model in memory>"))


def int8_of(model: "AssistantModel", base: "BaseModel", work, state: str = "exact") -> OnnxBackend:
    """Export `model` to ONNX and quantize it as the app's onnx-int8 file is (export.convert.export_onnx_int8),
    in the work directory `work` (the quantizer needs files; they are removed before returning)."""
    from pathlib import Path

    from ..export.convert import export_onnx, export_onnx_int8, make_spec
    from ..export.runtime import Runtime

    tok = (base.root / "tokenizer.model").read_bytes()
    spec = make_spec(model, tok, list(base.labels), state, base.labels.oos_threshold)
    fp32, int8 = Path(work) / "model.onnx", Path(work) / "model.int8.onnx"
    fp32.write_bytes(export_onnx(model, spec))
    try:
        export_onnx_int8(fp32, int8)
        data = int8.read_bytes()
    finally:
        fp32.unlink(missing_ok=True)
        int8.unlink(missing_ok=True)
    return OnnxBackend(Runtime(data, tok, source=f"<{state} model, int8, in memory>"))


def half_rounded(model: "AssistantModel") -> "AssistantModel":
    """A copy of `model` with every floating-point weight rounded to half precision and back: what a CoreML
    package's fp16 weights compute (export/coreml.py), emulated in PyTorch where CoreML cannot run."""
    import copy

    import torch

    out = copy.deepcopy(model)
    with torch.no_grad():
        for t in list(out.parameters()) + list(out.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())
    return out


@dataclass(frozen=True)
class Scores:
    """Per-utterance scores of one model on one set of labelled utterances."""

    lm_loss: np.ndarray  # (N,) mean next-token NLL over real tokens (eos included), nats
    intent_loss: np.ndarray  # (N,) cross-entropy of the gold intent, nats
    pred: np.ndarray  # (N,) predicted intent index, out-of-scope rule applied
    gold: np.ndarray  # (N,) gold intent index
    intent_logits: np.ndarray  # (N, I)

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.pred == self.gold))


def _batches(encoded: list[list[int]], batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(row indices (B,), ids (B, T), mask (B, T)) batches of similar length, right-padded with 0."""
    order = np.argsort([len(e) for e in encoded], kind="stable")  # (N,)
    for i in range(0, len(order), batch_size):
        rows = order[i:i + batch_size]  # (B,)
        T = max(len(encoded[r]) for r in rows)
        ids = np.zeros((len(rows), T), dtype=np.int64)  # (B, T)
        for b, r in enumerate(rows):
            ids[b, : len(encoded[r])] = encoded[r]
        mask = (np.arange(T)[None, :] < np.array([len(encoded[r]) for r in rows])[:, None]).astype(np.int64)
        yield rows, ids, mask


def _token_nll(lm_logits: np.ndarray, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """NLL of each next token (B, T-1), 0 where the target is padding."""
    z = lm_logits[:, :-1]  # (B, T-1, V)
    picked = np.take_along_axis(z, ids[:, 1:, None], axis=-1)[..., 0]  # (B, T-1)
    return (logsumexp(z) - picked) * mask[:, 1:]


def decide(logits: np.ndarray, oos_index: int, threshold: float) -> np.ndarray:
    """Predicted intent (N,) from (N, I) logits: argmax, or oos when the best in-scope probability is below
    `threshold` (the app's rule, core.numerics.oos_rule).

    >>> decide(np.log(np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]])), 2, 0.5).tolist()
    [0, 2]
    """
    return oos_rule(softmax(logits), oos_index, threshold)[0]


def _check(data: Sequence[Labeled], labels: tuple[str, ...]) -> np.ndarray:
    if not data:
        raise BadInput("nothing to score: the set of utterances is empty")
    index = {name: i for i, name in enumerate(labels)}
    bad = [i for _, i in data if i not in index]
    if bad:
        raise BadInput(f"intent {bad[0]!r} is not one of the model's labels (see clinc.intent_labels())")
    return np.array([index[i] for _, i in data])


def score(backend: Backend, data: Sequence[Labeled], batch_size: int = BATCH) -> Scores:
    """Scores of every (text, intent) in `data`, in order."""
    gold = _check(data, backend.labels)  # (N,)
    encoded = backend.encode([t for t, _ in data])
    n, n_intents = len(data), len(backend.labels)
    lm, logits = np.zeros(n), np.zeros((n, n_intents), dtype=np.float32)  # (N,), (N, I)
    for rows, ids, mask in _batches(encoded, batch_size):
        intent_logits, lm_logits = backend.run(ids, mask)  # (B, I), (B, T, V)
        lm[rows] = _token_nll(lm_logits, ids, mask).sum(1) / (mask[:, 1:].sum(1))
        logits[rows] = intent_logits
    logp = log_softmax(logits)  # (N, I)
    oos = backend.labels.index(OOS) if OOS in backend.labels else n_intents - 1
    return Scores(lm, -logp[np.arange(n), gold], decide(logits, oos, backend.oos_threshold), gold, logits)


def lm_kl(p: Backend, q: Backend, texts: Sequence[str], batch_size: int = BATCH) -> np.ndarray:
    """Per utterance (N,): mean over its real next-token positions of KL(p || q), nats; p's tokenization."""
    out = np.zeros(len(texts))
    for rows, ids, mask in _batches(p.encode(texts), batch_size):
        lp = log_softmax(p.run(ids, mask)[1][:, :-1])  # (B, T-1, V)
        lq = log_softmax(q.run(ids, mask)[1][:, :-1])  # (B, T-1, V)
        kl = np.maximum((np.exp(lp) * (lp - lq)).sum(-1), 0.0) * mask[:, 1:]  # (B, T-1)
        out[rows] = kl.sum(1) / mask[:, 1:].sum(1)
    return out


def sequence_nll(backend: Backend, texts: Sequence[str], batch_size: int = BATCH,
                 encoded: list[list[int]] | None = None) -> np.ndarray:
    """Total NLL (N,) of each text's pieces after bos, eos excluded: the canary statistic, lower = preferred.

    Texts that share all but their last piece share one forward pass: the model runs only on the longest
    distinct contexts (sequences minus their last piece that are no other context's prefix), whose
    per-position distributions cover every shorter prefix. For the 10^5 secrets of a 5-digit format that
    is about 10^4 forward passes instead of 10^5, and exact. `encoded`: backend.encode(texts), if at hand.
    """
    seqs = [e[:-1] for e in (encoded if encoded is not None else backend.encode(texts))]  # bos + pieces, no eos
    if not seqs or any(len(s) < 2 for s in seqs):
        raise BadInput("sequence_nll needs at least one text, each with at least one piece")
    ctx = sorted({tuple(s[:-1]) for s in seqs})
    maximal = [i + 1 == len(ctx) or ctx[i + 1][: len(c)] != c for i, c in enumerate(ctx)]
    cover = [0] * len(ctx)  # context index -> index of a maximal context that extends it
    for i in range(len(ctx) - 1, -1, -1):
        cover[i] = i if maximal[i] else cover[i + 1]
    pos_of = {c: i for i, c in enumerate(ctx)}
    runs = [list(ctx[i]) for i in range(len(ctx)) if maximal[i]]
    run_of = np.cumsum(maximal) - 1  # (C,) context index -> index among the maximal ones
    owner = np.array([run_of[cover[pos_of[tuple(s[:-1])]]] for s in seqs])  # (N,) which run scores text n
    by_run = np.argsort(owner, kind="stable")
    starts = np.searchsorted(owner[by_run], np.arange(len(runs) + 1))  # (R+1,)
    width = max(len(s) for s in seqs)
    toks = np.zeros((len(seqs), width), dtype=np.int64)  # (N, L) pieces after bos, right-padded
    for n, s in enumerate(seqs):
        toks[n, : len(s) - 1] = s[1:]
    valid = np.arange(width)[None, :] < np.array([len(s) - 1 for s in seqs])[:, None]  # (N, L)
    out = np.zeros(len(seqs))
    for rows, ids, mask in _batches(runs, batch_size):
        logits = backend.run(ids, mask)[1]  # (B, T, V)
        lse = logsumexp(logits)  # (B, T)
        mine = [by_run[starts[r]:starts[r + 1]] for r in rows]
        ns = np.concatenate(mine)  # (M,) texts scored by this batch
        bs = np.repeat(np.arange(len(rows)), [len(x) for x in mine])[:, None]  # (M, 1) their batch row
        pos = np.minimum(np.arange(width)[None, :], ids.shape[1] - 1)  # (1, L) clipped where invalid
        nll = lse[bs, pos] - logits[bs, pos, toks[ns]]  # (M, L)
        out[ns] = np.where(valid[ns], nll, 0.0).sum(1)
    return out
