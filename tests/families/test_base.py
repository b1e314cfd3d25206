"""The shipped base model: checksummed loading, tamper detection, accuracy guard, intents, suggestions, training."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from assistant_forget.families.assistant.base import ARTEFACTS, LabelSet, base_dir, load_base, predict_intents, suggest
from assistant_forget.build.evaluate import evaluate_base
from assistant_forget.build.training import TrainConfig, augment_texts, make_examples, train
from assistant_forget.device.clinc import OOS, intent_labels, load_clinc
from assistant_forget.core.errors import BadInput, CorruptFile
from assistant_forget.core.fsio import sha256_file
from assistant_forget.families.assistant.model import ModelConfig

REGRESSION_MARGIN = 0.01  # allowed drop below the recorded subset accuracy (numerics differ across CPUs)


@pytest.fixture(scope="module")
def base():
    return load_base()


@pytest.fixture(scope="module")
def metrics() -> dict:
    return json.loads((base_dir() / "metrics.json").read_text())


def _copy_base(tmp_path: Path) -> Path:
    dst = tmp_path / "base"
    shutil.copytree(base_dir(), dst)
    return dst


def test_shipped_artefacts_match_checksums_and_card(base):
    sums = json.loads((base_dir() / "checksums.json").read_text())
    assert set(ARTEFACTS) <= set(sums)
    for name, digest in sums.items():
        assert sha256_file(base_dir() / name) == digest, name
    card = (base_dir() / "MODEL_CARD.md").read_text()
    for name, digest in sums.items():
        if name != "MODEL_CARD.md":
            assert digest in card, f"MODEL_CARD.md does not list the sha256 of {name}"
    assert base.tokenizer.sha256 == sums["tokenizer.model"]
    assert not base.model.training
    assert tuple(base.labels) == intent_labels()
    assert 0.0 <= base.labels.oos_threshold < 1.0


def test_card_reports_the_recorded_metrics(metrics):
    card = (base_dir() / "MODEL_CARD.md").read_text()
    for key in ("in_scope_accuracy", "oos_recall"):
        assert f"{100 * metrics[key]:.2f} %" in card, key
    assert f"{metrics['test_perplexity']:.2f}" in card
    assert f"{metrics['parameters']:,}" in card and "CC BY 3.0" in card


def test_accuracy_regression_guard(base, metrics):
    recorded = metrics["regression_subset"]
    now = evaluate_base(base, "test", limit=recorded["n"])
    assert now["n"] == recorded["n"]
    assert now["in_scope_accuracy"] >= recorded["in_scope_accuracy"] - REGRESSION_MARGIN


def test_tampered_weights_raise_corrupt_file_naming_the_file(tmp_path):
    root = _copy_base(tmp_path)
    weights = root / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(CorruptFile, match="model.safetensors"):
        load_base(root)


@pytest.mark.parametrize("name", ["tokenizer.model", "labels.json", "config.json"])
def test_tampered_or_missing_files_are_refused(tmp_path, name):
    root = _copy_base(tmp_path)
    (root / name).write_bytes((root / name).read_bytes() + b" ")
    with pytest.raises(CorruptFile, match=name):
        load_base(root)
    (root / name).unlink()
    with pytest.raises(CorruptFile, match=name):
        load_base(root)


def test_missing_checksums_is_refused(tmp_path):
    root = _copy_base(tmp_path)
    (root / "checksums.json").unlink()
    with pytest.raises(CorruptFile, match="checksums.json"):
        load_base(root)


def test_loading_never_unpickles(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("pickle used on a load path")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert load_base().model is not None


def test_predict_intents_on_clear_utterances_and_threshold(base):
    texts = ["set an alarm for 6 am tomorrow", "what's the weather like in boston", "Translate Hello into French"]
    got = predict_intents(base.model, base.tokenizer, base.labels, texts)
    assert [g[0] for g in got] == ["alarm", "weather", "translate"]
    assert all(0.0 < c <= 1.0 for _, c in got)
    never = LabelSet(base.labels.names, oos_threshold=1.01)
    assert {g[0] for g in predict_intents(base.model, base.tokenizer, never, texts)} == {OOS}
    with pytest.raises(BadInput, match="list of texts"):
        predict_intents(base.model, base.tokenizer, base.labels, "one string")


def test_suggest_completes_words_and_predicts_the_next(base):
    done = suggest(base.model, base.tokenizer, "set an ala", k=3)
    assert "alarm" in done and all(w.startswith("ala") for w in done)
    nxt = suggest(base.model, base.tokenizer, "what is the ", k=5)
    assert len(nxt) == 5 and len(set(nxt)) == 5 and all(w and " " not in w for w in nxt)
    assert {"french", "spanish"} <= set(suggest(base.model, base.tokenizer, "how do you say hello in ", k=5))
    assert {"flight", "hotel"} <= set(base.suggest("book a ", k=5))
    with pytest.raises(BadInput, match="k must be"):
        suggest(base.model, base.tokenizer, "hi", k=0)


def _tiny_run(seed: int, soft: bool = False) -> dict[str, torch.Tensor]:
    tok = load_base().tokenizer
    rows = load_clinc()["train"][::50]
    index = {n: i for i, n in enumerate(intent_labels())}
    labels = [index[i] for _, i in rows]
    probs = torch.full((len(rows), len(index)), 1.0 / len(index)) if soft else None
    emb = torch.randn(len(rows), 8, generator=torch.Generator().manual_seed(0)) if soft else None
    lm = [i % 2 == 0 for i in range(len(rows))]
    ex = make_examples(tok, [t for t, _ in rows], labels, probs, lm=lm, emb=emb)
    cfg = ModelConfig(d_model=16, n_heads=2, n_layers=1, d_ff=32, dropout=0.1)
    model, hist = train(cfg, TrainConfig(seed=seed, epochs=1, batch_size=16, max_steps=4, threads=1,
                                         distill_weight=0.5 if soft else 0.0, embed_weight=1.0), ex)
    assert hist[-1]["steps"] == 4
    return model.state_dict()


def test_training_is_deterministic_in_the_seed():
    a, b, c = _tiny_run(0), _tiny_run(0), _tiny_run(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    d = _tiny_run(0, soft=True)
    assert any(not torch.equal(a[k], d[k]) for k in a), "soft labels and teacher embeddings had no effect"
    assert all(torch.equal(d[k], e) for k, e in _tiny_run(0, soft=True).items())


def test_training_reduces_both_losses():
    tok = load_base().tokenizer
    rows = load_clinc()["train"][::30]
    index = {n: i for i, n in enumerate(intent_labels())}
    ex = make_examples(tok, [t for t, _ in rows], [index[i] for _, i in rows])
    cfg = ModelConfig(d_model=32, n_heads=2, n_layers=1, d_ff=64)
    _, hist = train(cfg, TrainConfig(epochs=4, batch_size=32, lr=1e-2, warmup_frac=0.0, piece_dropout=0.0), ex)
    assert hist[-1]["intent_loss"] < hist[0]["intent_loss"] and hist[-1]["lm_loss"] < hist[0]["lm_loss"]


def test_augmentation_is_deterministic_and_keeps_sources():
    texts = load_clinc()["train"][:40]
    a = augment_texts([t for t, _ in texts], 3, seed=5)
    assert a == augment_texts([t for t, _ in texts], 3, seed=5)
    assert a != augment_texts([t for t, _ in texts], 3, seed=6)
    assert len(a) == 120 and [i for i, _ in a] == [i for i in range(40) for _ in range(3)]
    assert all(t.strip() for _, t in a)
