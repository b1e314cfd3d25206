"""tools/bench_peers.py's scoring glue: peers are scored by the base model's metric and threshold code."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import bench_peers  # noqa: E402
from assistant_forget.device.clinc import intent_labels  # noqa: E402

N = len(intent_labels())
OOS = N - 1


def _probs(rows: list[tuple[int, float]]) -> np.ndarray:
    """One row per (top class, its probability); the rest spread evenly over the other classes."""
    out = np.zeros((len(rows), N))
    for r, (c, p) in enumerate(rows):
        out[r] = (1 - p) / (N - 1)
        out[r, c] = p
    return out


def test_scores_use_the_oos_rule():
    probs = _probs([(0, 0.9), (1, 0.2), (OOS, 0.8), (2, 0.25)])
    gold = np.array([0, 1, OOS, OOS])
    s = bench_peers.scores(probs, gold, threshold=0.3)  # rows 2 and 4 below 0.3 -> oos
    assert s["in_scope_accuracy"] == 0.5 and s["oos_recall"] == 1.0
    assert s["in_scope_accuracy_argmax"] == 1.0 and s["oos_recall_argmax"] == 0.5


def test_fasttext_probabilities_follow_the_label_order():
    names = intent_labels()

    class Fake:
        def predict(self, texts, k=-1):
            return [[f"__label__{names[3]}", f"__label__{names[OOS]}"] for _ in texts], [[0.7, 0.3] for _ in texts]

    p = bench_peers._ft_probs(Fake(), ["a", "b"])
    assert p.shape == (2, N) and p[0, 3] == 0.7 and p[1, OOS] == 0.3 and p.sum() == 2.0


def test_table_has_a_row_per_model():
    row = {"name": "m", "in_scope_accuracy": 0.9, "oos_recall": 0.5, "in_scope_accuracy_argmax": 0.91,
           "oos_recall_argmax": 0.3, "oos_threshold": 0.3, "disk_bytes": 1000, "latency_p50_ms_1thread": 0.5}
    lines = bench_peers.table([row, {**row, "name": "n", "tokenizer_bytes": 10}]).splitlines()
    assert len(lines) == 4 and "| 90.00 % | 50.00 %" in lines[2] and "tokenizer 10 B" in lines[3]


def test_calibration_identity_and_oos_bias():
    probs = _probs([(0, 0.9), (1, 0.4)])
    assert np.allclose(bench_peers.calibrated(probs, 1.0, 0.0), probs)
    assert (bench_peers.calibrated(probs, 1.0, 1.0)[:, OOS] > probs[:, OOS]).all()
