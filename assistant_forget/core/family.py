"""Model families: what the forgetting core needs from a model, whatever the model is.

A family is the model-specific half of a device. It builds the model at its initial state (before any
personal data), names the parameters that personalise, trains one key's data in place (a key is a local
day on the assistant), fingerprints a key's data, repairs after a subtraction, scores examples for the
membership attacks, and publishes an export for the app. The timeline, the ledger, the journal, every
forgetting method, the receipts and the crash safety are written against this protocol only.

Three families ship: the assistant's intent + next-word transformer (families/assistant/), any local
Hugging Face causal LM with per-day LoRA adapters (families/hf_lm/), and any `torch.nn.Module` with a keyed
dataset and a loss (families/module.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Protocol, Sequence

import torch
import torch.nn as nn

from .keys import MAX_KEY, check_key  # noqa: F401  (part of the protocol: what a key may be)

def fresh_model(family) -> nn.Module:
    """`family`'s initial model with only its personal parameters trainable (what a day's training expects)."""
    model = family.new_model()
    personal = set(family.personal(model))
    for n, p in model.named_parameters():
        p.requires_grad_(n in personal)
    return model


class ModelFamily(Protocol):
    """The model-specific half of a device, as the timeline, the methods, the runner and verify use it."""

    name: str  # family name, recorded in receipts ("assistant", "module")
    model_id: str  # identifies the initial model and the training scheme; a ledger of another id is refused
    checkpoint_every: int  # ledger checkpoint after every C-th trained key
    delta_dtype: str  # storage dtype of the per-key deltas ("float16", "float32")
    min_repair_steps: int  # the fast tier's shortest repair; a longer budget stops once the retained loss is back

    def new_model(self) -> nn.Module:
        """The model at its initial state: every personal parameter as before any data, eval mode."""

    def personal(self, model: nn.Module) -> list[str]:
        """Names of the parameters that personalise, in the model's order (all others never change)."""

    def train_day(self, model: nn.Module, key: str, seed: int) -> Iterable[str] | None:
        """Train `key`'s data into `model`'s personal parameters in place; return the other keys it read.

        Must depend only on (model state, the key's data, the data of the keys it returns, seed)."""

    def fingerprint(self, key: str) -> str:
        """Hash of `key`'s current training data (changes when an item is added or removed)."""

    def repair(self, model: nn.Module, seed: int, steps: int | None = None, target: float | None = None) -> int:
        """A short fine-tune on retained data after a subtraction; stop early at `target` retained loss."""

    def retained_loss(self, model: nn.Module) -> float:
        """Mean training loss on a fixed sample of the retained data (the repair's yardstick)."""

    def repair_budget(self, subtracted: int, retained: int) -> int:
        """Repair steps after subtracting the training of `subtracted` items, with `retained` items left."""

    def example_losses(self, model: nn.Module, items: Sequence) -> torch.Tensor:
        """Per-item loss of `model` on `items` (the store's rows), shape (N,): what membership attacks read."""

    def within(self, first: str, last: str) -> "ModelFamily":
        """The same family whose training sees only keys in [first, last] (a SISA shard)."""

    def publish(self, root: Path, model: nn.Module, state: str, formats: Sequence[str] | None = None) -> str | None:
        """Export `model` for the app under DIR/exports/ (atomic); its version, or None without an export."""
