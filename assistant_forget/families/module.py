"""The plain `nn.Module` family: any module, a keyed dataset and a loss get the toolkit's forgetting.

Each key (a day, a user, a session: any name `check_key` accepts) holds items, each one input tensor and
one target tensor, stored in the device's item database (device/items.py) as safetensors bytes. Training a
key runs `epochs` passes of AdamW over its items in batches, from a seed derived from the device seed and
the key, so a key's update depends only on (state, its items, seed) and the exact tier's replay reproduces
it bit for bit. Every parameter personalises unless `personal` names fewer. There is no replay of other
keys, so a key has no readers. `publish` exports nothing (the assistant's app export is its own family's);
`new_model` returns a copy of the module as it was when the family was made: the initial state.
"""

from __future__ import annotations

import copy
import hashlib
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
import torch.nn as nn

from ..core.errors import BadInput
from ..core.fitting import fit, minibatches
from ..core.keys import check_key
from ..core.method import check_count, check_positive
from ..core.tensorfile import tensors_from_bytes, tensors_to_bytes
from ..device.items import Item

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (outputs (B, ...), targets (B, ...)) -> mean loss


@dataclass(frozen=True)
class ModuleConfig:
    lr: float = 1e-2  # AdamW learning rate (fresh optimizer per key)
    epochs: int = 3  # passes over a key's items
    batch_size: int = 16
    repair_steps: int = 4  # the fast tier's shortest repair ...
    repair_per_step: int = 32  # ... plus one step per this many subtracted items ...
    repair_steps_max: int = 32  # ... at most this many
    repair_sample: int = 256  # retained items the repair and the retained loss draw from
    checkpoint_every: int = 7
    delta_dtype: str = "float32"

    def __post_init__(self) -> None:
        check_positive("lr", self.lr)
        for name in ("epochs", "batch_size", "repair_per_step", "repair_sample", "checkpoint_every"):
            check_count(name, getattr(self, name), 1)
        for name in ("repair_steps", "repair_steps_max"):
            check_count(name, getattr(self, name), 0)
        if self.delta_dtype not in ("float16", "float32"):
            raise BadInput(f"delta_dtype must be float16 or float32, got {self.delta_dtype!r}")


def encode(x: torch.Tensor, y: torch.Tensor) -> bytes:
    """One item's payload: safetensors bytes of its input and target."""
    return tensors_to_bytes({"x": x.detach().cpu().contiguous(), "y": y.detach().cpu().contiguous()})


def decode(payload: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    t = tensors_from_bytes(payload, "an item payload")
    return t["x"], t["y"]


def items_of(data: dict[str, Sequence[tuple[torch.Tensor, torch.Tensor]]]) -> list[Item]:
    """Store items of a keyed dataset {key: [(x, y), ...]}. An item's id is a hash of its key and content (and
    which copy it is of identical items under the key), so adding the same item twice is refused as a duplicate."""
    if not isinstance(data, dict) or not data:
        raise BadInput("data must be a non-empty dict {key: [(input tensor, target tensor), ...]}")
    out: list[Item] = []
    seen: dict[tuple[str, bytes], int] = {}
    for key, pairs in data.items():
        check_key(key)
        for i, pair in enumerate(pairs):
            if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(t, torch.Tensor) for t in pair)):
                raise BadInput(f"data[{key!r}][{i}] must be an (input tensor, target tensor) pair")
            payload = encode(*pair)
            seen[(key, payload)] = n = seen.get((key, payload), 0) + 1
            out.append(Item(hashlib.sha256(f"{key}\x1f{n}\x1f".encode() + payload).hexdigest()[:24], key, payload))
    return out


class ModuleFamily:
    """A plain `nn.Module` + loss as a model family (see core/family.py for the protocol)."""

    name = "module"

    def __init__(self, module: nn.Module, loss: Loss, config: ModuleConfig | None = None,
                 personal: Iterable[str] | None = None, store=None) -> None:
        if not isinstance(module, nn.Module):
            raise BadInput(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if not callable(loss):
            raise BadInput("loss must be a callable (outputs, targets) -> scalar tensor, e.g. F.cross_entropy")
        self.cfg = config or ModuleConfig()
        self.initial = copy.deepcopy(module).cpu().eval()
        names = [n for n, _ in self.initial.named_parameters()]
        self._personal = names if personal is None else [n for n in names if n in set(personal)]
        unknown = sorted(set(personal or ()) - set(names))
        if unknown or not self._personal:
            raise BadInput(f"personal parameters must name parameters of the module; unknown: {unknown[:3]}")
        self.loss, self.store = loss, store
        self.checkpoint_every, self.delta_dtype = self.cfg.checkpoint_every, self.cfg.delta_dtype
        self.min_repair_steps = self.cfg.repair_steps
        h = hashlib.sha256(tensors_to_bytes({n: p.detach() for n, p in self.initial.state_dict().items()}))
        h.update(repr(sorted(asdict(self.cfg).items())).encode() + repr(self._personal).encode()
                 + type(module).__qualname__.encode())
        self.model_id = f"module-{h.hexdigest()[:16]}"

    def bind(self, store) -> "ModuleFamily":
        """This family reading its data from `store` (an ItemStore, or a view of one)."""
        bound = copy.copy(self)
        bound.store = store
        return bound

    # -- the protocol ------------------------------------------------------------------------------
    def new_model(self) -> nn.Module:
        return copy.deepcopy(self.initial)

    def personal(self, model: nn.Module) -> list[str]:
        return list(self._personal)

    def fingerprint(self, key: str) -> str:
        h = hashlib.sha256()
        for it in self.store.by_day(key):
            h.update(it.id.encode() + b"\x1f" + hashlib.sha256(it.payload).digest() + b"\x1e")
        return h.hexdigest()

    def _batch(self, items: Sequence[Item]) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [decode(it.payload) for it in items]
        return torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs])

    def _fit(self, model: nn.Module, items: list[Item], seed: int, steps: int | None, lr: float | None = None,
             done: Callable[[], bool] | None = None) -> int:
        rng = random.Random(seed)
        torch.manual_seed(seed)
        batches = minibatches(rng, items, self.cfg.batch_size, steps, self.cfg.epochs)
        def loss(batch: list[Item]) -> torch.Tensor:
            x, y = self._batch(batch)
            return self.loss(model(x), y)

        return fit(model, batches, loss, lr or self.cfg.lr, self.cfg.repair_steps, done)

    def train_day(self, model: nn.Module, key: str, seed: int) -> list[str]:
        self._fit(model, self.store.by_day(key), seed, None)
        return []

    def _retained(self, seed: int) -> list[Item]:
        rows = self.store.all()
        return rows if len(rows) <= self.cfg.repair_sample else random.Random(seed).sample(rows, self.cfg.repair_sample)

    def retained_loss(self, model: nn.Module) -> float:
        rows = self._retained(0x1055)
        if not rows:
            return 0.0
        with torch.inference_mode():
            return float(self.example_losses(model, rows).mean())

    def repair(self, model: nn.Module, seed: int, steps: int | None = None, target: float | None = None,
               lr: float | None = None) -> int:
        steps = self.cfg.repair_steps if steps is None else steps
        done = None if target is None else (lambda: self.retained_loss(model) <= target)
        return self._fit(model, self._retained(seed), seed, steps, lr, done)

    def repair_budget(self, subtracted: int, retained: int) -> int:
        return max(self.cfg.repair_steps, min(self.cfg.repair_steps_max, -(-subtracted // self.cfg.repair_per_step)))

    def example_losses(self, model: nn.Module, items: Sequence[Item]) -> torch.Tensor:
        was = model.training
        model.eval()
        with torch.inference_mode():
            pairs = [decode(i.payload) for i in items]
            out = torch.stack([self.loss(model(x.unsqueeze(0)), y.unsqueeze(0)) for x, y in pairs])
        model.train(was)
        return out

    def within(self, first: str, last: str) -> "ModuleFamily":
        return self.bind(_Window(self.store, first, last))

    def publish(self, root: Path, model: nn.Module, state: str, formats: Sequence[str] | None = None) -> None:
        return None


class _Window:
    """A store seen through [first, last]: what a SISA shard of this family trains on."""

    def __init__(self, store, first: str, last: str) -> None:
        self.store, self.first, self.last = store, first, last

    def by_day(self, key: str) -> list[Item]:
        return self.store.by_day(key) if self.first <= key <= self.last else []

    def all(self) -> list[Item]:
        return self.store.by_range(self.first, self.last)
