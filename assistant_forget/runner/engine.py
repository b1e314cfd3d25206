"""The device engine: one device's model — a model family bound to the device's data — and its timeline.

`open_engine` wires the model-agnostic `Timeline` (core/timeline.py) to a family (core/family.py): the
family builds the model and names its personal parameters, trains a day and fingerprints its data; the
timeline keeps the ledger under DIR/ledger/. The assistant's family reads the utterance log; the plain
`nn.Module` family (families/module.py) reads the item database. The engine also publishes the current
model as the app's export through its family (DIR/exports/, see export/publish.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.errors import CorruptFile
from ..core.ledger import Ledger, Manifest
from ..core.timeline import Progress, SyncPlan, Timeline
from ..device.device import Device
from ..device.tombstones import LedgerBinding
from ..export.publish import DEFAULT_FORMATS, current_export, read_manifest
from ..families.assistant.base import BaseModel
from ..families.assistant.family import AssistantFamily
from ..families.assistant.personalize import PersonalizationConfig

@dataclass
class Engine:
    dev: Device
    store: object  # the family's data: a LogStore (assistant) or an ItemStore (module)
    family: object  # core.family.ModelFamily
    timeline: Timeline

    @property
    def model(self):
        return self.timeline.model

    @property
    def seed(self) -> int:
        return self.dev.seed

    # the assistant family's parts, for the code that is the assistant's own (verification, baselines)
    @property
    def base(self) -> BaseModel:
        return self.family.base

    @property
    def cfg(self) -> PersonalizationConfig:
        return self.family.cfg

    @property
    def trainer(self):
        return self.family.trainer

    def days_with_data(self) -> list[str]:
        return list(self.store.day_counts())

    def last_trained(self) -> str | None:
        return max(self.timeline.manifest().days, default=None)

    def sync(self, until: str | None = None, progress: Progress | None = None) -> SyncPlan:
        """Train new days up to `until` and run any pending exact pass (see Timeline.sync)."""
        return self.timeline.sync(self.days_with_data(), until, progress)

    def plan(self, until: str | None = None) -> SyncPlan:
        return self.timeline.plan(self.days_with_data(), until)

    def manifest(self) -> Manifest:
        return self.timeline.manifest()

    def current_export(self) -> Path | None:
        return current_export(self.dev.root)

    def export_formats(self) -> tuple[str, ...]:
        """Formats of the live export (a device keeps the formats it was last exported with)."""
        try:
            live = self.current_export()
            return tuple(read_manifest(live)["formats"]) if live is not None else DEFAULT_FORMATS
        except (FileNotFoundError, CorruptFile):
            return DEFAULT_FORMATS

    def publish(self, formats: tuple[str, ...] | None = None) -> str | None:
        """Export the current model for the app, atomically replacing (and deleting) the previous export;
        None for a family without an export."""
        m = self.manifest()
        return self.family.publish(self.dev.root, self.model, "approximate" if m.approximate else "exact",
                                   formats or self.export_formats())


def bind(dev: Device, store, family) -> Engine:
    """The engine of `dev` for `family` (already reading `store`); loads the committed personal state."""
    model = family.new_model()
    timeline = Timeline(
        Ledger(dev.root / "ledger", binding=LedgerBinding(dev.root)), model, family.personal(model),
        family.train_day, family.fingerprint, seed=dev.seed, model_id=family.model_id,
        checkpoint_every=family.checkpoint_every, delta_dtype=family.delta_dtype,
    )
    timeline.load()
    return Engine(dev, store, family, timeline)


def open_engine(dev: Device, store, cfg: PersonalizationConfig | None = None,
                base: BaseModel | None = None) -> Engine:
    """The assistant's engine of `dev` over an open utterance log."""
    return bind(dev, store, AssistantFamily(store, base, cfg))
