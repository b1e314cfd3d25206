"""Utterances as causal-LM training data: token batches and the next-token loss, whatever the tokenizer.

Each utterance is `<s> text </s>` (`<s>` the tokenizer's bos token, its eos token where it has none, as on
GPT-2), cut to `max_len` tokens, padded on the right; the loss is the next-token cross-entropy over the real
tokens (padding never counts), so `</s>` is predicted too and a text is scored whole. The same encoding
trains a day, repairs, and scores an utterance for the membership attacks.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def encode(tokenizer, texts: Sequence[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (B, T) and attention mask (B, T) of `texts`, each `<s> text </s>` cut to `max_len`."""
    eos = tokenizer.eos_token_id
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    rows = [[bos] + ids[:max_len - 2] + [eos]
            for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
    width = max(map(len, rows))
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)
    mask = (torch.arange(width)[None] < torch.tensor([len(r) for r in rows])[:, None]).long()
    return ids, mask


def _token_nll(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token NLL (B, T-1) of each next token, and the mask of the real ones."""
    logits = model(input_ids=ids, attention_mask=mask).logits
    target = ids[:, 1:]
    real = mask[:, 1:].bool()
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2).float(), target, reduction="none")
    return nll * real, real


def lm_loss(model: nn.Module, tokenizer, texts: Sequence[str], max_len: int) -> torch.Tensor:
    """Mean next-token cross-entropy over every real token of `texts` (a training step's loss)."""
    nll, real = _token_nll(model, *encode(tokenizer, texts, max_len))
    return nll.sum() / real.sum().clamp(min=1)


def text_losses(model: nn.Module, tokenizer, texts: Sequence[str], max_len: int, batch_size: int = 32) -> torch.Tensor:
    """Mean next-token NLL of each text, shape (N,), in eval mode without gradients (what attacks read)."""
    was = model.training
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            nll, real = _token_nll(model, *encode(tokenizer, texts[i:i + batch_size], max_len))
            out.append(nll.sum(1) / real.sum(1).clamp(min=1))
    model.train(was)
    return torch.cat(out) if out else torch.zeros(0)
