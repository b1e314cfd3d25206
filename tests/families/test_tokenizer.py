"""The SentencePiece tokenizer: deterministic training, byte fallback, batching, truncation, bad input."""

from __future__ import annotations

import pytest
import torch

from assistant_forget.families.assistant.base import base_dir
from assistant_forget.device.clinc import load_clinc
from assistant_forget.core.errors import BadInput, CorruptFile
from assistant_forget.families.assistant.tokenizer import (BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer, TokenizerConfig,
                                        train_tokenizer)


@pytest.fixture(scope="module")
def public_texts() -> list[str]:
    data = load_clinc()
    return [t for t, _ in data["train"] + data["oos_train"]]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.from_file(base_dir() / "tokenizer.model")


def test_training_is_deterministic_and_rebuilds_the_shipped_file(public_texts):
    a = train_tokenizer(public_texts)
    b = train_tokenizer(public_texts)
    assert a == b
    assert a == (base_dir() / "tokenizer.model").read_bytes(), \
        "the shipped tokenizer.model is not what train_tokenizer gives on CLINC150 train + oos_train"


def test_special_ids_and_vocab_size(tok):
    assert tok.vocab_size == TokenizerConfig().vocab_size
    assert [tok.id_to_piece(i) for i in (PAD_ID, UNK_ID, BOS_ID, EOS_ID)] == ["<pad>", "<unk>", "<s>", "</s>"]


@pytest.mark.parametrize("text", ["call zoë at 5", "text siobhán and nguyễn", "party 🎉🥳 tonight",
                                  "remind 王小明 about 東京", "ping ølaf 👩🏽‍🚀"])
def test_byte_fallback_round_trips_names_and_emoji(tok, text):
    ids = tok.encode(text)
    assert UNK_ID not in ids
    assert tok.decode(ids) == text


def test_normalisation_folds_case(tok):
    assert tok.decode(tok.encode("Call ZOË")) == "call zoë"


def test_encode_batch_pads_right_with_bos_and_eos(tok):
    ids, mask = tok.encode_batch(["what time is it", "hi"], max_len=64)
    assert ids.dtype == mask.dtype == torch.long and ids.shape == mask.shape
    n0, n1 = int(mask[0].sum()), int(mask[1].sum())
    assert ids.shape[1] == max(n0, n1) and n0 > n1
    for row, n in ((ids[0], n0), (ids[1], n1)):
        assert row[0] == BOS_ID and row[n - 1] == EOS_ID and (row[n:] == PAD_ID).all()
    assert tok.decode(ids[1]) == "hi"
    fixed, _ = tok.encode_batch(["hi"], max_len=16, pad_to_max=True)
    assert fixed.shape == (1, 16)


def test_truncation_keeps_bos_eos_and_whole_characters(tok):
    text = "remind " + "🎉" * 20
    for max_len in range(2, 20):
        ids, mask = tok.encode_batch([text], max_len=max_len)
        assert ids.shape[1] <= max_len
        row = ids[0].tolist()
        assert row[0] == BOS_ID and row[-1] == EOS_ID
        decoded = tok.decode(row)
        assert text.startswith(decoded)
        assert "\ufffd" not in decoded


def test_bad_input_is_refused(tok, tmp_path):
    with pytest.raises(BadInput, match="list of texts"):
        tok.encode_batch("a string", max_len=8)
    with pytest.raises(BadInput, match="max_len"):
        tok.encode_batch(["hi"], max_len=1)
    with pytest.raises(BadInput, match="token ids"):
        tok.decode([tok.vocab_size])
    with pytest.raises(BadInput, match="at least 300"):
        TokenizerConfig(vocab_size=100)
    with pytest.raises(BadInput, match="smaller vocab_size"):
        train_tokenizer(["set an alarm", "play some jazz"], TokenizerConfig(vocab_size=2000))
    with pytest.raises(BadInput, match="no training text"):
        train_tokenizer(["", "  "])
    bad = tmp_path / "tokenizer.model"
    bad.write_bytes(b"not a sentencepiece model")
    with pytest.raises(CorruptFile, match="tokenizer.model"):
        Tokenizer.from_file(bad)
    good = base_dir() / "tokenizer.model"
    with pytest.raises(CorruptFile, match="checksum"):
        Tokenizer.from_file(good, sha256="0" * 64)
