"""The tokenizer: a small SentencePiece unigram model with byte fallback, trained on public text only.

Byte fallback means any string encodes (names, emoji, scripts never seen in training become UTF-8 byte
pieces), so a user's words never force a retrain (DESIGN invariant 1). Normalisation (NFKC + case folding)
is part of the .model file itself, so every runtime that loads the file normalises the same way; `decode`
therefore returns the normalised (lower-cased) text. Ids: pad=0, unk=1, bos=2, eos=3.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import sentencepiece as spm
import torch

from ...core.errors import BadInput, CorruptFile
from ...core.fsio import sha256_bytes

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


@dataclass
class TokenizerConfig:
    vocab_size: int = 2000  # pieces in total, including the 4 specials and the 256 byte pieces
    model_type: str = "unigram"  # SentencePiece algorithm
    normalization: str = "nmt_nfkc_cf"  # NFKC + case folding, stored inside the .model file
    seed: int = 0  # SentencePiece's random generator seed (training is single-threaded as well)

    def __post_init__(self) -> None:
        if self.vocab_size < 300:
            raise BadInput(f"vocab_size={self.vocab_size} is too small: byte fallback alone needs 256 "
                           "pieces plus 4 specials; use at least 300")


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig = TokenizerConfig()) -> bytes:
    """Train a SentencePiece model on `texts` and return the .model file's bytes.

    Deterministic: one thread, a fixed seed, every sentence used in order (no sampling, no shuffling),
    so the same texts and config give the same bytes.
    """
    sentences = [t for t in texts if t.strip()]
    if not sentences:
        raise BadInput("no training text for the tokenizer: pass at least one non-empty sentence")
    spm.set_random_generator_seed(cfg.seed)
    buf = io.BytesIO()
    try:
        _train_spm(sentences, buf, cfg)
    except RuntimeError as e:
        raise BadInput(f"SentencePiece could not train on {len(sentences)} sentences ({e}); "
                       "use more text or a smaller vocab_size") from None
    return buf.getvalue()


def _train_spm(sentences: list[str], buf: io.BytesIO, cfg: TokenizerConfig) -> None:
    """One SentencePiece training run writing the model into `buf` (raises RuntimeError on failure)."""
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=buf,
        vocab_size=cfg.vocab_size,
        model_type=cfg.model_type,
        normalization_rule_name=cfg.normalization,
        byte_fallback=True,
        character_coverage=1.0,
        pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
        num_threads=1,
        input_sentence_size=0,  # use every sentence
        shuffle_input_sentence=False,
        hard_vocab_limit=True,
        minloglevel=2,
    )


class Tokenizer:
    """Text <-> token ids. Load with `Tokenizer.from_file(path)` or `Tokenizer(model_bytes)`."""

    def __init__(self, model_bytes: bytes, source: str = "<bytes>") -> None:
        self.source = source
        self.sha256 = sha256_bytes(model_bytes)  # identifies the tokenizer a model was trained with
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(model_bytes)
        except (RuntimeError, OSError, TypeError) as e:
            raise CorruptFile(f"{source}: not a valid SentencePiece model ({e})") from None
        if (self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id()) != (PAD_ID, UNK_ID,
                                                                                          BOS_ID, EOS_ID):
            raise CorruptFile(f"{source}: special ids are not pad=0 unk=1 bos=2 eos=3; "
                              "rebuild it with tools/build_base_model.py")
        self._byte_value = {i: int(self._sp.IdToPiece(i)[1:-1], 16)
                            for i in range(self._sp.GetPieceSize()) if self._sp.IsByte(i)}

    @classmethod
    def from_file(cls, path: Path, sha256: str | None = None) -> "Tokenizer":
        """Load a .model file, checking it against `sha256` when given (CorruptFile naming the file)."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise CorruptFile(f"{path}: cannot read the tokenizer ({e.strerror}); restore the file") from None
        if sha256 is not None and sha256_bytes(data) != sha256:
            raise CorruptFile(f"{path}: checksum mismatch (file truncated or tampered with); refusing to load it")
        return cls(data, source=str(path))

    @property
    def vocab_size(self) -> int:
        return self._sp.GetPieceSize()

    def pieces(self, text: str) -> list[str]:
        """The pieces `text` splits into (for inspection)."""
        return self._sp.EncodeAsPieces(text)

    def encode(self, text: str) -> list[int]:
        """Piece ids of `text`, without bos/eos and without truncation."""
        if not isinstance(text, str):
            raise BadInput(f"text to encode must be a string, got {type(text).__name__}")
        return self._sp.EncodeAsIds(text)

    def _cut(self, ids: list[int], n: int) -> list[int]:
        """The first `n` ids, dropping a trailing partial UTF-8 character made of byte pieces."""
        if n >= len(ids):
            return ids
        # ids[n] is the first dropped piece; while it continues a character (0b10xxxxxx), that character
        # started before the cut: back up to its lead byte and drop the lead byte too.
        cut = n
        if self._byte_value.get(ids[cut], 0) & 0xC0 == 0x80:
            while cut > 0 and self._byte_value.get(ids[cut - 1], 0) & 0xC0 == 0x80:
                cut -= 1
            if cut > 0 and ids[cut - 1] in self._byte_value:
                cut -= 1
        return ids[:cut]

    def encode_batch(self, texts: Sequence[str], max_len: int,
                     pad_to_max: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode texts as bos + pieces + eos, truncated to `max_len`, right-padded with pad=0.

        Returns (ids (B, T) int64, mask (B, T) int64 with 1 on real tokens); T is the longest row, or
        `max_len` with `pad_to_max`. Truncation keeps bos and eos and never splits a byte-encoded character.
        """
        if isinstance(texts, str):
            raise BadInput("encode_batch takes a list of texts, got a single string; wrap it in a list")
        if not isinstance(max_len, int) or max_len < 2:
            raise BadInput(f"max_len must be an integer >= 2 (room for bos and eos), got {max_len!r}")
        rows = [[BOS_ID] + self._cut(self.encode(t), max_len - 2) + [EOS_ID] for t in texts]
        T = max_len if pad_to_max else max((len(r) for r in rows), default=2)
        ids = torch.zeros(len(rows), T, dtype=torch.long)  # (B, T)
        mask = torch.zeros(len(rows), T, dtype=torch.long)  # (B, T)
        for b, r in enumerate(rows):
            ids[b, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[b, : len(r)] = 1
        return ids, mask

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Text of `ids`; pad/bos/eos are skipped, byte pieces are reassembled into characters.

        >>> from assistant_forget.families.assistant.base import base_dir
        >>> tok = Tokenizer.from_file(base_dir() / "tokenizer.model")
        >>> tok.decode(tok.encode_batch(["Wake Zoë at 7 ⏰"], 32)[0][0])
        'wake zoë at 7 ⏰'
        """
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        n = self.vocab_size
        bad = [i for i in ids if not isinstance(i, int) or not 0 <= i < n]
        if bad:
            raise BadInput(f"token ids must be integers in [0, {n}), got {bad[:3]}")
        return self._sp.DecodeIds([i for i in ids if i not in (PAD_ID, BOS_ID, EOS_ID)])

    def id_to_piece(self, i: int) -> str:
        """The piece string of id `i` ("▁" marks a word start)."""
        return self._sp.IdToPiece(i)
