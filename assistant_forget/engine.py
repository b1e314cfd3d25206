"""The device engine: one device's assistant model — shipped base + personal state — and its timeline.

`open_engine` wires the model-agnostic `Timeline` to the assistant: the base model with adapters, the
personal parameters, the day trainer reading the log store, and the ledger under DIR/ledger/. The engine
also publishes the current model as the app's export (DIR/exports/, see publish.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from .base import BaseModel, load_base
from .device import Device
from .errors import CorruptFile
from .ledger import Ledger, Manifest
from .model import AssistantModel
from .personalize import DayTrainer, PersonalizationConfig, fingerprint_day, personal_parameters
from .store import LogStore
from .timeline import Progress, SyncPlan, Timeline
from .tombstones import LedgerBinding

DEFAULT_FORMATS = ("onnx",)


@dataclass
class Engine:
    dev: Device
    store: LogStore
    base: BaseModel
    cfg: PersonalizationConfig
    trainer: DayTrainer
    timeline: Timeline

    @property
    def model(self) -> AssistantModel:
        return self.timeline.model  # type: ignore[return-value]

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
        from .publish import current_export

        return current_export(self.dev.root)

    def export_formats(self) -> tuple[str, ...]:
        """Formats of the live export (a device keeps the formats it was last exported with)."""
        from .publish import read_manifest

        try:
            live = self.current_export()
            return tuple(read_manifest(live)["formats"]) if live is not None else DEFAULT_FORMATS
        except (FileNotFoundError, CorruptFile):
            return DEFAULT_FORMATS

    def publish(self, formats: tuple[str, ...] | None = None) -> str:
        """Export the current model for the app, atomically replacing (and deleting) the previous export."""
        from .publish import publish

        m = self.manifest()
        return publish(self.dev.root, self.model, self.base.root / "tokenizer.model", list(self.base.labels),
                       "approximate" if m.approximate else "exact", formats or self.export_formats(),
                       oos_threshold=self.base.labels.oos_threshold)


def build_personal_model(base: BaseModel, cfg: PersonalizationConfig) -> AssistantModel:
    """The base model plus zero-initialised adapters (identical outputs to the base until trained)."""
    model = AssistantModel(replace(base.config, adapter_rank=cfg.adapter_rank, dropout=base.config.dropout))
    missing, unexpected = model.load_state_dict(base.model.state_dict(), strict=False)
    if unexpected or any("lora_" not in k for k in missing):
        raise ValueError(f"base weights do not fit the personal model: missing={missing} unexpected={unexpected}")
    return model.eval()


def open_engine(dev: Device, store: LogStore, cfg: PersonalizationConfig | None = None,
                base: BaseModel | None = None) -> Engine:
    """The engine of `dev` over an open store; loads the committed personal state into the model."""
    cfg = cfg or PersonalizationConfig()
    base = base or load_base()
    model = build_personal_model(base, cfg)
    trainer = DayTrainer(store, base.tokenizer, base.labels, cfg, base.config.max_len)
    model_id = f"{base.checksums['model.safetensors'][:12]}-{cfg.fingerprint()}"
    timeline = Timeline(
        Ledger(dev.root / "ledger", binding=LedgerBinding(dev.root)), model, personal_parameters(model, cfg),
        trainer.train_day, lambda day: fingerprint_day(store.by_day(day)),
        seed=dev.seed, model_id=model_id, checkpoint_every=cfg.checkpoint_every, delta_dtype=cfg.delta_dtype,
    )
    timeline.load()
    return Engine(dev, store, base, cfg, trainer, timeline)
