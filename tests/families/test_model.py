"""AssistantModel: the two heads' shapes, causality, padding invariance, adapters, size budget."""

from __future__ import annotations

import pytest
import torch

from assistant_forget.device.clinc import intent_labels
from assistant_forget.families.assistant.model import AssistantModel, ModelConfig, count_parameters

TINY = ModelConfig(vocab_size=300, max_len=16, d_model=16, n_heads=2, n_layers=1, d_ff=32, dropout=0.0)


def _batch(cfg: ModelConfig, lengths: list[int], T: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), T, dtype=torch.long)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for b, n in enumerate(lengths):
        ids[b, :n] = torch.randint(4, cfg.vocab_size, (n,), generator=g)
        mask[b, :n] = 1
    return ids, mask


def test_default_config_fits_the_label_set_and_the_size_budget():
    cfg = ModelConfig()
    assert cfg.n_intents == len(intent_labels())
    n = count_parameters(AssistantModel(cfg))
    assert n * 4 <= 1_000_000, f"{n} fp32 parameters exceed the 1 MB export budget"


def test_both_heads_have_the_documented_shapes():
    torch.manual_seed(0)
    model = AssistantModel(TINY).eval()
    ids, mask = _batch(TINY, [5, 3, 1], T=7)
    intent_logits, lm_logits = model(ids, mask)
    assert intent_logits.shape == (3, TINY.n_intents)
    assert lm_logits.shape == (3, 7, TINY.vocab_size)
    assert torch.isfinite(intent_logits).all() and torch.isfinite(lm_logits).all()


def test_lm_head_is_causal_and_tied():
    torch.manual_seed(0)
    model = AssistantModel(TINY).eval()
    ids, mask = _batch(TINY, [8], T=8)
    changed = ids.clone()
    changed[0, 5] = (changed[0, 5] + 1 - 4) % (TINY.vocab_size - 4) + 4
    _, a = model(ids, mask)
    _, b = model(changed, mask)
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6)
    assert not torch.allclose(a[:, 5:], b[:, 5:])
    vocab_shaped = [n for n, p in model.named_parameters() if p.shape == (TINY.vocab_size, TINY.d_model)]
    assert vocab_shaped == ["tok.weight"], "the LM head must reuse the token embedding, not own a matrix"


def test_right_padding_does_not_change_the_outputs():
    torch.manual_seed(0)
    model = AssistantModel(TINY).eval()
    ids, mask = _batch(TINY, [6], T=6)
    padded = torch.cat([ids, torch.zeros(1, 5, dtype=torch.long)], 1)
    pmask = torch.cat([mask, torch.zeros(1, 5, dtype=torch.long)], 1)
    i1, l1 = model(ids, mask)
    i2, l2 = model(padded, pmask)
    assert torch.allclose(i1, i2, atol=1e-6)
    assert torch.allclose(l1, l2[:, :6], atol=1e-6)


def test_adapters_start_as_the_identity_and_keep_the_base_names():
    torch.manual_seed(0)
    base = AssistantModel(TINY).eval()
    cfg = ModelConfig(**{**TINY.to_dict(), "adapter_rank": 2})
    adapted = AssistantModel(cfg).eval()
    missing, unexpected = adapted.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(k.endswith(("lora_a", "lora_b")) for k in missing)
    ids, mask = _batch(TINY, [4, 2], T=4)
    assert torch.equal(base(ids, mask)[0], adapted(ids, mask)[0])


def test_bad_configs_say_what_is_wrong():
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="adapter_rank"):
        ModelConfig(adapter_rank=-1)
