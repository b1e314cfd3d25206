"""The on-device model: a tiny causal transformer with an intent head and a next-token head.

Inputs are right-padded token ids; because attention is causal and padding is on the right, real tokens
never attend to padding, so no key-padding mask is needed (one less op to export). The intent head
mean-pools the final hidden states over real tokens; the LM head is tied to the token embedding.
`forward` = `hidden` then both heads; training may call the parts to skip a head it does not need.

Optional low-rank adapters (`adapter_rank > 0`) sit beside the attention and MLP projections; they start
as the identity (B = 0) so a base checkpoint without them loads unchanged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ModelConfig:
    vocab_size: int = 2000  # SentencePiece pieces, ids 0..3 are pad/unk/bos/eos
    n_intents: int = 151  # CLINC150's 150 intents + "oos"
    max_len: int = 64  # longest token sequence (with bos/eos)
    d_model: int = 64  # width of the residual stream
    n_heads: int = 4  # attention heads
    n_layers: int = 2  # transformer blocks
    d_ff: int = 256  # MLP hidden width
    dropout: float = 0.0  # used only in training mode (the base is regularised by augmentation instead)
    adapter_rank: int = 0  # low-rank adapter rank on projections (0 = none)

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if min(self.vocab_size, self.n_intents, self.max_len, self.d_model, self.n_layers) <= 0:
            raise ValueError(f"model sizes must be positive: {self}")
        if self.adapter_rank < 0:
            raise ValueError(f"adapter_rank must be >= 0, got {self.adapter_rank}")

    def to_dict(self) -> dict:
        return asdict(self)


class AdaptedLinear(nn.Linear):
    """nn.Linear plus an optional low-rank update x @ A^T @ B^T (B starts at zero)."""

    def __init__(self, d_in: int, d_out: int, rank: int) -> None:
        super().__init__(d_in, d_out)
        self.rank = rank
        if rank:
            g = torch.Generator().manual_seed(d_in * 1_000_003 + d_out)  # fixed, data-independent init
            self.lora_a = nn.Parameter(torch.randn(rank, d_in, generator=g) / math.sqrt(d_in))
            self.lora_b = nn.Parameter(torch.zeros(d_out, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        if self.rank:
            y = y + (x @ self.lora_a.t()) @ self.lora_b.t()
        return y


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = AdaptedLinear(cfg.d_model, 3 * cfg.d_model, cfg.adapter_rank)
        self.proj = AdaptedLinear(cfg.d_model, cfg.d_model, cfg.adapter_rank)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.fc = AdaptedLinear(cfg.d_model, cfg.d_ff, cfg.adapter_rank)
        self.out = AdaptedLinear(cfg.d_ff, cfg.d_model, cfg.adapter_rank)
        self.drop = nn.Dropout(cfg.dropout)
        mask = torch.full((cfg.max_len, cfg.max_len), float("-inf")).triu(1)
        self.register_buffer("causal", mask, persistent=False)  # (L, L), 0 on and below the diagonal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        H = self.n_heads
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, hs)
        k = k.view(B, T, H, C // H).transpose(1, 2)
        v = v.view(B, T, H, C // H).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // H)  # (B, H, T, T)
        att = att + self.causal[:T, :T]
        att = self.drop(att.softmax(dim=-1))
        y = (att @ v).transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        x = x + self.drop(self.proj(y))
        x = x + self.drop(self.out(F.gelu(self.fc(self.ln2(x)))))
        return x


class AssistantModel(nn.Module):
    """forward(input_ids (B,T) int64, attention_mask (B,T) int64) -> (intent_logits (B,I), lm_logits (B,T,V))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_len, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.intent = nn.Linear(cfg.d_model, cfg.n_intents)
        self.drop = nn.Dropout(cfg.dropout)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.hidden(input_ids)  # (B, T, C)
        return self.intent_head(h, attention_mask), self.lm_head(h)

    def hidden(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Final hidden states (B, T, C) of right-padded ids (B, T); shared by both heads."""
        B, T = input_ids.shape
        pos = torch.arange(T, device=input_ids.device)
        x = self.drop(self.tok(input_ids) + self.pos(pos))  # (B, T, C)
        for blk in self.blocks:
            x = blk(x)
        return self.ln_f(x)  # (B, T, C)

    def pool(self, h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Sentence vector (B, C): the mean of the hidden states (B, T, C) over real tokens."""
        m = attention_mask.to(h.dtype).unsqueeze(-1)  # (B, T, 1)
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, C)

    def intent_head(self, h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Intent logits (B, I) from the pooled sentence vector."""
        return self.intent(self.pool(h, attention_mask))  # (B, I)

    def lm_head(self, h: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, V), tied to the token embedding."""
        return h @ self.tok.weight.t()  # (B, T, V)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters())


def lm_loss(lm_logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy: position t predicts ids[t+1] wherever that is a real token (incl. eos)."""
    logits = lm_logits[:, :-1]  # (B, T-1, V)
    target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)  # (B, T-1)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100,
                           reduction=reduction)
