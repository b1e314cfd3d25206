"""The public corpus: CLINC150 (Larson et al., EMNLP 2019, CC BY 3.0), vendored in resources/clinc150/.

Only public text trains the tokenizer and the base model (DESIGN invariant 1).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

OOS = "oos"  # the out-of-scope label


@lru_cache(maxsize=1)
def load_clinc() -> dict[str, list[tuple[str, str]]]:
    """All splits of CLINC150 "full": train, val, test, oos_train, oos_val, oos_test -> [(text, intent)]."""
    raw = resources.files("assistant_forget").joinpath("resources/clinc150/data_full.json").read_text(encoding="utf-8")
    return {split: [(t, i) for t, i in rows] for split, rows in json.loads(raw).items()}


@lru_cache(maxsize=1)
def intent_labels() -> tuple[str, ...]:
    """The model's label set: the 150 in-scope intents, sorted, then "oos" (index 150).

    >>> labels = intent_labels()
    >>> len(labels), labels[-1], "alarm" in labels
    (151, 'oos', True)
    """
    return tuple(sorted({i for _, i in load_clinc()["train"]})) + (OOS,)
