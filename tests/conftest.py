"""Shared fixtures: a tiny SentencePiece tokenizer and seeded small models, independent of models/base."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable, Iterator

import pytest
import sentencepiece as spm
import torch

from assistant_forget.device.clinc import intent_labels, load_clinc
from assistant_forget.device.device import Device
from assistant_forget.families.assistant.model import AssistantModel, ModelConfig
from devkit import TINY_VOCAB


RAY_FILES = ("test_ray_executor.py", "test_fleet_audit.py", "test_fleet.py")  # they start local Ray clusters


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist's `--dist loadgroup` (`make test`): each test file is one group, so its module
    fixtures are built once, and the files that start Ray are one group, so two clusters never share the
    2 cores (their timeouts and worker-kill tests assume the machine). Without xdist the mark does nothing."""
    for item in items:
        name = item.path.name
        item.add_marker(pytest.mark.xdist_group("ray" if name in RAY_FILES else str(item.path)))


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run a test with one torch thread (small models gain nothing from more; the machine is shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SentencePiece model (pad=0, unk=1, bos=2, eos=3, byte fallback) trained on ~2,100 CLINC150 texts."""
    texts = [t for t, _ in load_clinc()["train"][::7]]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=buf, vocab_size=TINY_VOCAB, model_type="unigram",
        normalization_rule_name="nmt_nfkc_cf", byte_fallback=True, character_coverage=1.0,
        pad_id=0, unk_id=1, bos_id=2, eos_id=3, num_threads=1, input_sentence_size=0,
        shuffle_input_sentence=False, minloglevel=2)
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.model"
    path.write_bytes(buf.getvalue())
    return path


@pytest.fixture(scope="session")
def labels() -> tuple[str, ...]:
    """CLINC150's 151 intent labels ("oos" last)."""
    return intent_labels()


@pytest.fixture(scope="session")
def make_model() -> Callable[..., AssistantModel]:
    """Factory: a seeded random-init small AssistantModel in eval mode; adapters get nonzero lora_b."""

    def make(seed: int = 0, adapter_rank: int = 2, max_len: int = 32) -> AssistantModel:
        torch.manual_seed(seed)
        cfg = ModelConfig(vocab_size=TINY_VOCAB, d_model=32, n_heads=2, n_layers=2, d_ff=64, max_len=max_len,
                          adapter_rank=adapter_rank)
        model = AssistantModel(cfg)
        g = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_b" in name:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.05)  # a trained-looking adapter
        return model.eval()

    return make


@pytest.fixture(scope="module")
def model(make_model) -> AssistantModel:
    """The export tests' model: small, seed 0, rank-2 adapters (a module may override it)."""
    return make_model(seed=0, adapter_rank=2)


@pytest.fixture
def device_root(tmp_path: Path) -> Path:
    """A fresh, empty device directory."""
    return Device.create(tmp_path / "device", seed=0).root
