"""docs/mobile.md states what the library computes: its out-of-scope rule and its next-word input, run as written,
give the answers of core.numerics.oos_rule, base.decide and the app runtime."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from assistant_forget.core.numerics import oos_rule, softmax
from assistant_forget.device.clinc import load_clinc
from assistant_forget.export.convert import export_onnx, make_spec
from assistant_forget.export.runtime import Runtime
from assistant_forget.families.assistant.base import decide

pytestmark = pytest.mark.usefixtures("one_thread")
DOC = Path(__file__).resolve().parents[2] / "docs" / "mobile.md"


def doc_function(block: str, name: str):
    """The function `name` defined by the doc's ```python <block>``` code block, run as written."""
    found = re.findall(rf"```python {re.escape(block)}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(found) == 1, f"docs/mobile.md must have one ```python {block} block"
    scope: dict = {}
    exec(compile(found[0], f"{DOC}:{block}", "exec"), scope)
    return scope[name]


@pytest.fixture(scope="module")
def model(make_model):
    """A model whose intent probabilities have clear winners, so thresholds between them matter."""
    m = make_model(seed=5, adapter_rank=2)
    with torch.no_grad():
        m.intent.weight.mul_(60.0)
    return m


def _rows(n_labels: int, oos: int) -> np.ndarray:
    """Probability rows for every branch of the rule: oos on top, in scope above or below a threshold, ties."""
    rng = np.random.default_rng(0)
    rows = list(rng.dirichlet(np.full(n_labels, 0.3), size=40))
    for top, p_top in [(oos, 0.2), (oos, 0.9), (0, 0.2), (0, 0.45), (0, 0.5), (0, 0.95), (n_labels - 2, 0.3)]:
        row = np.full(n_labels, (1.0 - p_top) / (n_labels - 1))
        row[top] = p_top
        rows.append(row)
    tie = np.zeros(n_labels)
    tie[[1, 2]] = 0.4
    tie[oos] = 0.2
    rows.append(tie)
    return np.array(rows)  # (N, I)


@pytest.mark.parametrize("with_oos_label", [True, False])
def test_the_docs_oos_rule_is_oos_rule_and_base_decide(labels, with_oos_label):
    answer = doc_function("oos-rule", "answer")
    names = list(labels) if with_oos_label else [f"intent_{i}" for i in range(6)]
    oos = names.index("oos") if with_oos_label else len(names) - 1  # the runtime's and predict_intents' choice
    probs = _rows(len(names), oos)
    branches = set()
    for threshold in (0.0, 0.25, 0.5, 0.9):
        idx, conf = oos_rule(probs, oos, threshold)
        t_idx, t_conf = decide(torch.from_numpy(probs), oos, threshold)
        for row, i, c, ti, tc in zip(probs, idx, conf, t_idx.tolist(), t_conf.tolist()):
            label, confidence = answer(row.tolist(), names, threshold)
            assert (label, confidence) == pytest.approx((names[int(i)], float(c)), abs=1e-12)
            assert (label, confidence) == pytest.approx((names[ti], tc), abs=1e-12)
            top = int(row.argmax())
            branches.add("oos on top" if top == oos else "rejected" if label == names[oos] else "kept")
    assert branches == {"oos on top", "rejected", "kept"}


def test_the_runtime_answers_what_the_docs_rule_says(model, tokenizer_path, labels):
    """Runtime.intent equals the doc's rule on softmax(intent_logits), with a threshold that splits the texts."""
    answer = doc_function("oos-rule", "answer")
    tok = tokenizer_path.read_bytes()
    texts = [t for t, _ in load_clinc()["test"][::97]]
    probe = Runtime(export_onnx(model, make_spec(model, tok, labels, "exact")), tok)
    rows = [np.array([probe.encode(t)]) for t in texts]  # (1, T) each
    tops = [softmax(probe.run(ids, np.ones_like(ids))[0])[0].max() for ids in rows]
    threshold = float(np.median(tops))
    rt = Runtime(export_onnx(model, make_spec(model, tok, labels, "exact", oos_threshold=threshold)), tok)
    rejected = 0
    for text in texts:
        ids = np.array([rt.encode(text)])  # (1, T)
        probs = softmax(rt.run(ids, np.ones_like(ids))[0])[0]  # (I,)
        label, confidence = answer(probs.tolist(), list(labels), threshold)
        got = rt.intent(text)
        assert (got.label, got.confidence) == pytest.approx((label, confidence), abs=1e-12)
        rejected += label == "oos" and int(probs.argmax()) != labels.index("oos")
    assert 0 < rejected < len(texts)


class _Recorder:
    """An onnxruntime session stand-in that records the input ids of every run and delegates to the real one."""

    def __init__(self, session) -> None:
        self.session, self.ids = session, []

    def run(self, names, feeds):
        self.ids.append(feeds["input_ids"])
        return self.session.run(names, feeds)


@pytest.mark.parametrize("prefix", ["", "set an ", "Set an ALA", "  wake  zoë ",
                                    "please remind me to call mom about the dinner on friday " * 3,
                                    "please remind me to call mom about the dinner on friday " * 3 + "tomor"])
def test_suggest_feeds_the_docs_context_and_never_more_than_max_len(model, tokenizer_path, labels, prefix):
    context_of = doc_function("suggest-context", "suggestion_context")
    tok = tokenizer_path.read_bytes()
    rt = Runtime(export_onnx(model, make_spec(model, tok, labels, "exact")), tok)
    rt.session = recorder = _Recorder(rt.session)
    max_pieces = 4
    assert rt.suggest(prefix, k=3, max_pieces=max_pieces)
    ctx = context_of(prefix, rt.sp.EncodeAsIds, rt.sp.DecodeIds, rt.bos_id, rt.max_len, max_pieces)
    first = recorder.ids[0]
    assert first.tolist() == [ctx]  # the search starts from the context alone
    for ids in recorder.ids:
        assert ids.shape[1] <= rt.max_len and (ids[:, : len(ctx)] == ctx).all()
    if len(rt.sp.EncodeAsIds(prefix)) > rt.max_len:  # a long prefix keeps the latest pieces that fit
        assert len(ctx) == rt.max_len - max_pieces
        if prefix.endswith(" "):  # the next word is free, so the search reaches max_pieces: exactly max_len
            assert max(ids.shape[1] for ids in recorder.ids) == rt.max_len
