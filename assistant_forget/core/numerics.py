"""The numerics shared by the app runtime, scoring and the metrics: stable log-softmax and the out-of-scope rule.

numpy only (the app runtime imports this and never torch). Everything is float64 after the max shift, so the
runtime, verification and the metrics read the same numbers off the same logits.
"""

from __future__ import annotations

import numpy as np


def logsumexp(x: np.ndarray) -> np.ndarray:
    """Log-sum-exp over the last axis, float64 (exp in the input's precision after the max shift: the fast part).

    >>> float(logsumexp(np.array([0.0, 0.0])))  # log 2
    0.6931471805599453
    """
    m = x.max(-1, keepdims=True)
    return m[..., 0].astype(np.float64) + np.log(np.exp(x - m).sum(-1, dtype=np.float64))


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis in float64, shifted by the maximum so exp never overflows."""
    z = x.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def softmax(x: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(x))


def oos_rule(probs: np.ndarray, oos_index: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The out-of-scope rule on (N, I) intent probabilities: (label index (N,), confidence (N,)).

    The argmax wins unless it is in scope and the best in-scope probability is below `threshold`; then the
    label is out of scope with confidence 1 - that probability. The app, verification and the base model's
    evaluation all decide with this one rule (exported with the model as `oos_threshold`).

    >>> oos_rule(np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.2, 0.2, 0.6]]), 2, 0.5)
    (array([0, 2, 2]), array([0.7, 0.6, 0.6]))
    """
    top = probs.argmax(-1)  # (N,)
    best_in = np.delete(probs, oos_index, axis=-1).max(-1)  # (N,)
    reject = (top != oos_index) & (best_in < threshold)
    conf = np.take_along_axis(probs, top[..., None], axis=-1)[..., 0]
    return np.where(reject, oos_index, top), np.where(reject, 1.0 - best_in, conf)
