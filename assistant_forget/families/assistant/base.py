"""The shipped base model: load it from models/base/ (checksummed) and use its two heads.

Layout of a base directory (format 1), written by tools/build_base_model.py:

    tokenizer.model    SentencePiece model (byte fallback, NFKC + case folding)
    model.safetensors  AssistantModel weights (adapter_rank=0)
    config.json        ModelConfig fields
    labels.json        {"format": 1, "labels": [151 intents, "oos" last], "oos_threshold": float}
    MODEL_CARD.md      data, licence, metrics, build command
    checksums.json     {file name: sha256} for every file above; loading verifies each one

Out-of-scope rule: the prediction is "oos" when the oos class has the highest probability or when the
highest in-scope probability is below `oos_threshold` (tuned on CLINC150 val + oos_val at build time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterator, Sequence

import torch

from ...device.clinc import OOS
from ...core.numerics import oos_rule
from ...core.errors import BadInput, CorruptFile
from ...core.fsio import sha256_bytes
from .config import ARTEFACTS, base_dir, read_checksums  # noqa: F401  (part of this module's API)
from .model import AssistantModel, ModelConfig
from ...core.tensorfile import load_tensors
from .tokenizer import BOS_ID, EOS_ID, Tokenizer

FORMAT_VERSION = 1


@dataclass(frozen=True)
class LabelSet:
    """The intent head's labels (index order) and the out-of-scope threshold that goes with them."""

    names: tuple[str, ...]  # intent names, "oos" last
    oos_threshold: float = 0.0  # below this max in-scope probability the answer is "oos" (0 = argmax only)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> str:
        return self.names[i]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)


@dataclass
class BaseModel:
    """Everything needed to run the base model; `model` is in eval mode."""

    config: ModelConfig
    tokenizer: Tokenizer
    labels: LabelSet
    model: AssistantModel
    root: Path
    checksums: dict[str, str]

    def predict(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """`predict_intents` with this model's tokenizer and labels (the oos threshold applies)."""
        return predict_intents(self.model, self.tokenizer, self.labels, texts)

    def suggest(self, prefix: str, k: int = 3) -> list[str]:
        """`suggest` with this model's tokenizer."""
        return suggest(self.model, self.tokenizer, prefix, k)


def _read_checked(path: Path, sums: dict[str, str]) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CorruptFile(f"{path}: cannot be read ({e.strerror}); restore models/base from the repository") from None
    if sha256_bytes(data) != sums[path.name]:
        raise CorruptFile(f"{path}: checksum mismatch with checksums.json (file truncated or tampered with); "
                          "refusing to load it")
    return data


def load_base(dir: Path | str | None = None) -> BaseModel:
    """Load the base model from `dir` (default: the repository's models/base), verifying every checksum."""
    root = base_dir(dir)
    sums = read_checksums(root)
    for name in sorted(set(sums) - set(ARTEFACTS)):  # files listed beside the artefacts (metrics.json) too
        _read_checked(root / name, sums)
    _read_checked(root / "MODEL_CARD.md", sums)
    try:
        raw_cfg = json.loads(_read_checked(root / "config.json", sums))
        names = {f.name for f in fields(ModelConfig)}
        cfg = ModelConfig(**{k: v for k, v in raw_cfg.items() if k in names})
        raw_labels = json.loads(_read_checked(root / "labels.json", sums))
        labels = LabelSet(tuple(raw_labels["labels"]), float(raw_labels["oos_threshold"]))
    except (ValueError, TypeError, KeyError) as e:
        raise CorruptFile(f"{root}: config.json or labels.json is malformed ({e}); rebuild the base model") from None
    if len(labels) != cfg.n_intents or labels[-1] != OOS:
        raise CorruptFile(f"{root / 'labels.json'}: {len(labels)} labels ending in {labels[-1]!r}, "
                          f"expected {cfg.n_intents} ending in {OOS!r}")
    tok = Tokenizer(_read_checked(root / "tokenizer.model", sums), source=str(root / "tokenizer.model"))
    if tok.vocab_size != cfg.vocab_size:
        raise CorruptFile(f"{root}: tokenizer has {tok.vocab_size} pieces but config.json says {cfg.vocab_size}")
    weights = load_tensors(root / "model.safetensors", sums["model.safetensors"])
    model = AssistantModel(cfg)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise CorruptFile(f"{root / 'model.safetensors'}: tensors do not match config.json ({e})") from None
    return BaseModel(cfg, tok, labels, model.eval(), root, sums)


@torch.no_grad()
def intent_probs(model: AssistantModel, tok: Tokenizer, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """Softmax over the intent head for each text: (N, I)."""
    out = []
    for i in range(0, len(texts), batch_size):
        ids, mask = tok.encode_batch(list(texts[i: i + batch_size]), model.cfg.max_len)  # (B, T) each
        intent_logits, _ = model(ids, mask)  # (B, I)
        out.append(intent_logits.softmax(-1))
    return torch.cat(out) if out else torch.zeros(0, model.cfg.n_intents)


def decide(probs: torch.Tensor, oos_index: int, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the out-of-scope rule to (N, I) probabilities: (label index (N,), confidence (N,)).

    Confidence is the winning class's probability; when the threshold rejects, it is 1 - max in-scope prob.

    >>> decide(torch.tensor([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.2, 0.2, 0.6]]), 2, 0.5)
    (tensor([0, 2, 2]), tensor([0.7000, 0.6000, 0.6000]))
    """
    top, conf = oos_rule(probs.numpy(), oos_index, threshold)
    return torch.from_numpy(top), torch.from_numpy(conf).to(probs.dtype)


def predict_intents(model: AssistantModel, tok: Tokenizer, labels: LabelSet | Sequence[str],
                    texts: Sequence[str]) -> list[tuple[str, float]]:
    """(intent, confidence) per text; applies the labels' oos threshold when `labels` is a LabelSet."""
    if isinstance(texts, str):
        raise BadInput("predict_intents takes a list of texts, got a single string; wrap it in a list")
    if len(labels) != model.cfg.n_intents:
        raise BadInput(f"{len(labels)} labels for a model with {model.cfg.n_intents} intents")
    names = list(labels)
    oos = names.index(OOS) if OOS in names else len(names) - 1
    threshold = labels.oos_threshold if isinstance(labels, LabelSet) else 0.0
    idx, conf = decide(intent_probs(model, tok, texts), oos, threshold)
    return [(names[i], float(c)) for i, c in zip(idx.tolist(), conf.tolist())]


@torch.no_grad()
def suggest(model: AssistantModel, tok: Tokenizer, prefix: str, k: int = 3, max_pieces: int = 4) -> list[str]:
    """Top-k next words for `prefix`, most likely first.

    If `prefix` ends inside a word ("set an ala"), the words complete it ("alarm"); after a space or on
    an empty prefix they are the following word. A beam search over up to `max_pieces` pieces per word
    scores each word as P(pieces) x P(next piece starts a new word or is eos).
    """
    if not isinstance(prefix, str):
        raise BadInput(f"prefix must be a string, got {type(prefix).__name__}")
    if not isinstance(k, int) or k < 1:
        raise BadInput(f"k must be a positive integer, got {k!r}")
    words = prefix.split()
    partial = "" if not prefix or prefix[-1].isspace() or not words else tok.decode(tok.encode(words[-1]))
    context = words[:-1] if partial else words
    ctx = [BOS_ID] + tok.encode(" ".join(context))
    ctx = ctx[:1] + ctx[1:][-(model.cfg.max_len - 1 - max_pieces):]  # keep bos and the latest pieces
    V = model.cfg.vocab_size
    piece = [tok.id_to_piece(i) for i in range(V)]
    usable = torch.tensor([i > EOS_ID and not p.startswith("<") for i, p in enumerate(piece)])  # (V,)
    starts = torch.tensor([p.startswith("▁") for p in piece]) & usable  # (V,) word-initial pieces
    texts = [p.lstrip("▁") if usable[i] else "\0" for i, p in enumerate(piece)]  # what each piece adds
    boundary = starts.clone()
    boundary[EOS_ID] = True  # a word ends where the next piece starts a word, or at eos
    beam: list[tuple[list[int], float]] = [([], 0.0)]
    done: dict[str, float] = {}
    width = max(2 * k, 8)
    for step in range(max_pieces + 1):  # the last pass only scores the ends of max_pieces-long words
        ids = torch.tensor([ctx + hyp for hyp, _ in beam])  # (W, T)
        _, lm_logits = model(ids, torch.ones_like(ids))  # (W, T, V)
        logp = lm_logits[:, -1].log_softmax(-1)  # (W, V)
        cands = []
        for w, (hyp, score) in enumerate(beam):
            if hyp:
                word = tok.decode(hyp).strip()
                if word.startswith(partial) and word[-1:].isalnum():  # no "alarm," beside "alarm"
                    end = score + float(torch.logsumexp(logp[w][boundary], 0))
                    done[word] = max(done.get(word, -1e9), end)
            if step == max_pieces:
                continue
            allowed = starts if step == 0 else usable & ~starts  # (V,)
            sofar = tok.decode(hyp).strip() if hyp else ""
            rest = partial[len(sofar):] if partial.startswith(sofar) else ""  # still to match of `partial`
            if rest:
                allowed = allowed & torch.tensor([t.startswith(rest) or rest.startswith(t) for t in texts])
            lp = logp[w].masked_fill(~allowed, float("-inf"))  # (V,)
            top = lp.topk(min(width, V))
            cands += [(hyp + [i], score + s) for s, i in zip(top.values.tolist(), top.indices.tolist())
                      if s > float("-inf")]
        beam = sorted(cands, key=lambda c: -c[1])[:width]
        if not beam:
            break
    return [w for w, _ in sorted(done.items(), key=lambda kv: -kv[1])[:k]]
