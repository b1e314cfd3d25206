"""The assistant family: the shipped base model with zero-initialised adapters, personalised day by day.

It binds the pieces the core needs (core/family.py) to the assistant: the base model and tokenizer
(base.py), the day trainer over the utterance log (personalize.py), per-utterance scores for the attacks,
and the app's ONNX / CoreML export (export/publish.py). A key is a local day (YYYY-MM-DD).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from ...export.publish import DEFAULT_FORMATS, publish
from .base import BaseModel, load_base
from .config import model_id
from .model import AssistantModel
from .personalize import DayTrainer, PersonalizationConfig, fingerprint_day, joint_loss_per_example, personal_parameters


def build_personal_model(base: BaseModel, cfg: PersonalizationConfig) -> AssistantModel:
    """The base model plus zero-initialised adapters (identical outputs to the base until trained)."""
    model = AssistantModel(replace(base.config, adapter_rank=cfg.adapter_rank, dropout=base.config.dropout))
    missing, unexpected = model.load_state_dict(base.model.state_dict(), strict=False)
    if unexpected or any("lora_" not in k for k in missing):
        raise ValueError(f"base weights do not fit the personal model: missing={missing} unexpected={unexpected}")
    return model.eval()


class ShardView:
    """The log as one SISA shard sees it: only days in [first, last], so replay stays inside the shard."""

    def __init__(self, store, first: str, last: str) -> None:
        self.store, self.first, self.last = store, first, last

    def by_day(self, day: str) -> list:
        return self.store.by_day(day) if self.first <= day <= self.last else []

    def before(self, day: str) -> list:
        return [u for u in self.store.by_range(self.first, day) if u.local_date < day] if day > self.first else []

    def all(self) -> list:
        return self.store.by_range(self.first, self.last)


class AssistantFamily:
    """The assistant's intent + next-word transformer as a model family (see core/family.py)."""

    name = "assistant"

    def __init__(self, store, base: BaseModel | None = None, cfg: PersonalizationConfig | None = None) -> None:
        self.store = store
        self.base = base or load_base()
        self.cfg = cfg or PersonalizationConfig()
        self.trainer = DayTrainer(store, self.base.tokenizer, self.base.labels, self.cfg, self.base.config.max_len)
        self.model_id = model_id(self.base.checksums, self.cfg)
        self.checkpoint_every, self.delta_dtype = self.cfg.checkpoint_every, self.cfg.delta_dtype
        self.min_repair_steps = self.cfg.repair_steps

    def new_model(self) -> AssistantModel:
        return build_personal_model(self.base, self.cfg)

    def personal(self, model: nn.Module) -> list[str]:
        return personal_parameters(model, self.cfg)

    def train_day(self, model: nn.Module, key: str, seed: int) -> list[str]:
        return self.trainer.train_day(model, key, seed)

    def fingerprint(self, key: str) -> str:
        return fingerprint_day(self.store.by_day(key))

    def repair(self, model: nn.Module, seed: int, steps: int | None = None, target: float | None = None,
               lr: float | None = None) -> int:
        return self.trainer.repair(model, seed, steps, target, lr)

    def retained_loss(self, model: nn.Module) -> float:
        return self.trainer.retained_loss(model)

    def repair_budget(self, subtracted: int, retained: int) -> int:
        return self.cfg.repair_budget(subtracted, retained)

    def example_losses(self, model: nn.Module, items: Sequence) -> torch.Tensor:
        return joint_loss_per_example(model, self.base.tokenizer, [u.text for u in items],
                                      torch.tensor([self.trainer.label_index[u.intent] for u in items]),
                                      self.cfg.lm_weight, self.base.config.max_len)

    def within(self, first: str, last: str) -> "AssistantFamily":
        return AssistantFamily(ShardView(self.store, first, last), self.base, self.cfg)

    def publish(self, root: Path, model: nn.Module, state: str, formats: Sequence[str] | None = None) -> str:
        return publish(root, model, self.base.root / "tokenizer.model", list(self.base.labels), state,
                       tuple(formats or DEFAULT_FORMATS), oos_threshold=self.base.labels.oos_threshold)
