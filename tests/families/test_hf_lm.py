"""The hf-causal-lm family: a Hugging Face causal LM with per-day LoRA adapters, forgotten like the assistant.

Tiny random-config models (Llama, Qwen2, GPT-2) are built here, with a byte-level tokenizer trained here on
public text, so nothing but transformers is needed; the last tests load the shipped models/lm-tiny offline.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from assistant_forget import api
from assistant_forget.core.errors import BadInput, CorruptFile
from assistant_forget.core.family import fresh_model
from assistant_forget.core.timeline import day_seed
from assistant_forget.device.clinc import load_clinc
from assistant_forget.device.device import Device
from assistant_forget.device.store import LogStore
from assistant_forget.families.hf_lm.checkpoint import CHECKSUMS, record_checksums
from assistant_forget.families.hf_lm.config import LMTrainConfig, LoraSettings
from assistant_forget.families.hf_lm.family import HFCausalLMFamily, shipped_model_dir
from assistant_forget.families.hf_lm.publish import ADAPTER_FILE
from assistant_forget.families.hf_lm.text import encode, text_losses
from assistant_forget.runner import forget as forgetting
from assistant_forget.runner.selector import Selector
from devkit import make_device, model_files, persona_log
from scan import find_texts, snapshot

TRAIN = LMTrainConfig(epochs=1, batch_size=8, replay_public=4, checkpoint_every=2, repair_steps=2, repair_sample=16)
LORA = LoraSettings(rank=2, alpha=4.0)


def tiny_tokenizer():
    """A byte-level BPE tokenizer (<pad>=0, <s>=1, </s>=2) trained on 1,500 CLINC150 train utterances."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([t for t, _ in load_clinc()["train"][::10]], trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<pad>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


def tiny_config(arch: str, vocab: int):
    from transformers import GPT2Config, LlamaConfig, Qwen2Config

    if arch == "gpt2":
        return GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=2, n_positions=64, bos_token_id=1,
                          eos_token_id=2, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    kind = LlamaConfig if arch == "llama" else Qwen2Config
    return kind(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)


@pytest.fixture(scope="module")
def lm_dirs(tmp_path_factory) -> dict[str, Path]:
    """arch -> a saved tiny random model directory (safetensors + config + tokenizer)."""
    import transformers
    from transformers import AutoModelForCausalLM

    transformers.utils.logging.disable_progress_bar()
    tok = tiny_tokenizer()
    out = {}
    for arch in ("llama", "qwen2", "gpt2"):
        torch.manual_seed(0)
        root = tmp_path_factory.mktemp(f"lm-{arch}")
        AutoModelForCausalLM.from_config(tiny_config(arch, len(tok))).save_pretrained(root)
        tok.save_pretrained(root)
        out[arch] = root
    return out


def family(root: Path, **kw) -> HFCausalLMFamily:
    return HFCausalLMFamily(None, root, lora=kw.pop("lora", LORA), train=kw.pop("train", TRAIN), **kw)


def day_of(record: dict) -> str:
    return record["timestamp"][:10]  # the local timestamp's date: the utterance's local day


def train_device(root: Path, records: list[dict], fam: HFCausalLMFamily, keep=lambda r: True) -> Path:
    make_device(root, records, train=False, keep=keep)
    with api.open_device(root, fam) as dev:
        dev.train()
    return root


@pytest.mark.parametrize("base", ["llama", "lm-tiny"])
def test_exact_and_fast_forget_equal_a_device_that_never_saw_the_day(tmp_path, lm_dirs, base):
    records = persona_log(days=5, seed=3, mean=5.0)
    days = sorted({day_of(r) for r in records})
    gone = days[2]
    fam = family(shipped_model_dir() if base == "lm-tiny" else lm_dirs[base])
    never = train_device(tmp_path / "never", records, fam, keep=lambda r: day_of(r) != gone)
    kept = {r["text"] for r in records if day_of(r) != gone}
    secret = sorted({r["text"] for r in records if day_of(r) == gone and r["text"] not in kept and len(r["text"]) > 8})
    assert secret

    exact = train_device(tmp_path / "exact", records, fam)
    assert set(find_texts(exact, secret)) == set(secret)  # the scan finds them while they are there
    with api.session(exact, family=fam) as eng:
        receipt = forgetting.forget(eng, Selector.parse(date_=gone), "exact")
    assert receipt["family"] == "hf-causal-lm" and receipt["state"] == "exact" and receipt["trained_days"] == 1
    files = model_files(exact)
    assert sum(p.startswith("ledger/deltas/") for p in files) == len(days) - 1
    assert files == model_files(never)  # every ledger and export file byte for byte
    assert find_texts(exact, secret) == {}

    fast = train_device(tmp_path / "fast", records, fam)
    with api.open_device(fast, fam) as dev:
        before = dev.model.state_dict()
        receipt = dev.forget(keys=[gone], mode="fast")
        assert receipt["state"] == "approximate" and receipt["repair_steps"] >= TRAIN.repair_steps
        after = dev.model.state_dict()
        assert all(torch.equal(before[n], after[n]) for n in before if "lora_" not in n)  # the base never moves
        assert find_texts(fast, secret) == {}
        assert model_files(fast) != model_files(never)  # approximate until the exact pass
        assert dev.maintain()["state"] == "exact"
        assert_export_is_the_model(fast, fam, dev.model)
    assert model_files(fast) == model_files(never)


def assert_export_is_the_model(root: Path, fam: HFCausalLMFamily, model) -> None:
    """The live export, loaded by PEFT onto the base as an app would, gives the device model's logits."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    live = root / "exports" / (root / "exports" / "CURRENT").read_text().strip()
    assert (live / ADAPTER_FILE).is_file()
    base = AutoModelForCausalLM.from_pretrained(fam.root, local_files_only=True, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft 0.21 calls a transformers 5 deprecated name
        app = PeftModel.from_pretrained(base, live).eval()
    ids, mask = encode(fam.tokenizer, ["remind me to call my sister", "how is the weather"], TRAIN.max_len)
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask).logits
        assert torch.equal(app(input_ids=ids, attention_mask=mask).logits, want)
        with app.disable_adapter():  # the adapter is what personalises: without it, the base's logits
            assert not torch.allclose(app(input_ids=ids, attention_mask=mask).logits, want)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_any_causal_lm_trains_only_its_adapters_deterministically(tmp_path, lm_dirs, arch, one_thread):
    targets = ("c_attn",) if arch == "gpt2" else ("q_proj", "v_proj")
    fam = family(lm_dirs[arch], lora=LoraSettings(rank=2, alpha=4.0, target_modules=targets))
    root = make_device(tmp_path / "dev", persona_log(days=1, seed=5, mean=6.0), train=False)
    with LogStore(Device.open(root).store_path, readonly=True) as store:
        fam = fam.bind(store)
        day = next(iter(store.day_counts()))
        models = [fresh_model(fam) for _ in range(2)]
        start = {n: p.detach().clone() for n, p in models[0].named_parameters()}
        texts = [u.text for u in store.by_day(day)]
        base_loss = text_losses(models[0], fam.tokenizer, texts, TRAIN.max_len)
        for m in models:
            assert fam.train_day(m, day, day_seed(7, day)) == []
        moved = {n for n, p in models[0].named_parameters() if not torch.equal(p, start[n])}
        assert moved and moved <= set(fam.personal(models[0])) and all("lora_" in n for n in moved)
        assert all(torch.equal(a, b) for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values()))
        assert text_losses(models[0], fam.tokenizer, texts, TRAIN.max_len).mean() < base_loss.mean()
        assert fam.example_losses(models[0], store.by_day(day)).shape == (len(texts),)


@pytest.mark.parametrize("settings, match", [
    (dict(rank=0), "rank"), (dict(alpha=-1.0), "alpha"), (dict(target_modules=()), "target_modules"),
    (dict(target_modules="q_proj"), "target_modules"), (dict(target_modules=("q/proj",)), "target_modules")])
def test_bad_lora_settings_are_refused(settings, match):
    with pytest.raises(BadInput, match=match):
        LoraSettings(**settings)


def test_targets_and_rank_must_fit_the_model(lm_dirs):
    with pytest.raises(BadInput, match="name no linear layer.*q_proj"):
        family(lm_dirs["llama"], lora=LoraSettings(target_modules=("nope",)))
    with pytest.raises(BadInput, match="rank 64 exceeds"):
        family(lm_dirs["llama"], lora=LoraSettings(rank=64))
    with pytest.raises(BadInput, match="LMTrainConfig"):
        HFCausalLMFamily(None, lm_dirs["llama"], train={"lr": 1})


def test_a_missing_or_tampered_model_directory_is_refused_and_nothing_changes(tmp_path, lm_dirs):
    with pytest.raises(CorruptFile, match="no such model directory"):
        family(tmp_path / "absent")
    assert not (tmp_path / "absent").exists()
    pinned = tmp_path / "pinned"
    shutil.copytree(lm_dirs["llama"], pinned)
    (pinned / "pytorch_model.bin").write_bytes(b"pickle")  # listed by record_checksums, never loaded
    record_checksums(pinned)
    family(pinned)  # verifies
    (pinned / "model.safetensors").unlink()
    with pytest.raises(CorruptFile, match=r"model\.safetensors: missing \(pytorch_model\.bin is pickled"):
        family(pinned)
    shutil.copy(lm_dirs["llama"] / "model.safetensors", pinned / "model.safetensors")
    with open(pinned / "config.json", "a") as f:
        f.write(" ")
    with pytest.raises(CorruptFile, match=r"config\.json: checksum mismatch"):
        family(pinned)

    unpinned = tmp_path / "unpinned"  # no checksums.json: the device's ledger pins the model at first use
    shutil.copytree(lm_dirs["llama"], unpinned)
    whole = (unpinned / "model.safetensors").read_bytes()
    (unpinned / "model.safetensors").write_bytes(whole[:100])
    with pytest.raises(CorruptFile, match="cannot load the model offline"):
        family(unpinned)
    (unpinned / "model.safetensors").write_bytes(whole)
    root = train_device(tmp_path / "dev", persona_log(days=2, seed=4, mean=4.0), family(unpinned))
    from safetensors.torch import load_file, save_file

    weights = load_file(unpinned / "model.safetensors")
    name = sorted(weights)[0]
    weights[name] = weights[name] + 1e-3
    save_file(weights, unpinned / "model.safetensors", metadata={"format": "pt"})
    before = snapshot(root)
    with pytest.raises(CorruptFile, match="ledger belongs to model"):
        with api.open_device(root, family(unpinned)):
            pass
    assert snapshot(root) == before


def test_the_shipped_lm_loads_offline_and_scores_text(one_thread):
    fam = HFCausalLMFamily(None, lora=LORA)
    assert os.environ["HF_HUB_OFFLINE"] == os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert fam.checksums == json.loads((shipped_model_dir() / CHECKSUMS).read_text())
    assert fam.root == shipped_model_dir()
    fluent = [t for t, _ in load_clinc()["test"][:40]]
    scrambled = [" ".join(reversed(t.split())) for t in fluent]
    model = fam.new_model()
    good, bad = (text_losses(model, fam.tokenizer, t, TRAIN.max_len) for t in (fluent, scrambled))
    assert (good < bad).float().mean() > 0.9  # it knows word order: public text reads better than its reversal
