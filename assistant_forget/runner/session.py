"""Opening a device for writing: the lock, the store, the engine, and recovery of what a crash interrupted.

The assistant's device reads its utterance log (DIR/logs.sqlite); a device of another model family reads
its item database (DIR/items.sqlite, device/items.py), or the utterance log when the family says so
(`reads = "log"`: the hf-causal-lm family, families/hf_lm/). Either way recovery runs first, so every command
starts from a device with no interrupted forget.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..core.threads import one_torch_thread
from ..core.timeline import Progress
from ..device.device import Device
from ..device.items import ITEMS_FILE, ItemStore
from ..device.store import LogStore
from . import forget as forgetting
from .engine import Engine, bind, open_engine


@contextmanager
def session(root: Path, progress: Progress | None = None, family=None) -> Iterator[Engine]:
    """Open a device for writing: lock, store, engine; roll forward an interrupted forget.

    `family`: None for the assistant, else a family with `bind(store)` (families/module.py's ModuleFamily,
    families/hf_lm's HFCausalLMFamily)."""
    dev = Device.open(root)
    if family is None:
        with dev.locked(), LogStore(dev.store_path) as store, one_torch_thread():
            eng = open_engine(dev, store)
            forgetting.recover(eng, progress)
            yield eng
        return
    with dev.locked(), family_store(dev, family) as store, one_torch_thread():
        eng = bind(dev, store, family.bind(store))
        forgetting.recover(eng, progress)
        yield eng


def family_store(dev: Device, family) -> LogStore | ItemStore:
    """The store `family` trains on: the utterance log for a family that reads it (`family.reads == "log"`),
    else the item database."""
    if getattr(family, "reads", "items") == "log":
        return LogStore(dev.store_path)
    return ItemStore(dev.root / ITEMS_FILE)
