"""A device of the `hf-causal-lm` family: the settings it records at creation, and the family they open.

`assistant-forget init --family hf-causal-lm --base-model DIR --lora-rank R ...` validates the settings, checks
the model directory and records, in the device's family record (device/family_record.py, DIR/family.json):
the base's directory (absolute; `shipped` for models/lm-tiny, so a device of the shipped LM moves with the
repository), the SHA-256 of each of its files, the LoRA settings, the training settings and the attention
kernel. Every later command opens the device with exactly that family (`family_from`), and a model directory
that is missing or whose files changed since is a CorruptFile (exit 4) before anything changes.

torch-free except `family_from` and `validate_on_model`, so `status` and `forget --dry-run` (`planner`) read a
device without loading the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ...core.errors import BadInput, CorruptFile
from .checkpoint import check_dir, check_pinned, digest, verify_checksums
from .config import LMTrainConfig, LoraSettings, model_id

NAME = "hf-causal-lm"
SHIPPED = "shipped"  # the base_model entry of a device on models/lm-tiny
ATTENTION = ("sdpa", "eager")


def _shipped() -> Path:
    return Path(__file__).resolve().parents[3] / "models" / "lm-tiny"


def settings_for(base_model: Path | str | None, lora: LoraSettings, train: LMTrainConfig,
                 attn_implementation: str = "sdpa") -> dict:
    """The record of a new device: BadInput for a bad setting, CorruptFile for a missing or incomplete model
    directory or one whose checksums.json does not match. Reads the directory, loads nothing."""
    if not isinstance(lora, LoraSettings) or not isinstance(train, LMTrainConfig):
        raise BadInput("lora and train must be a LoraSettings and an LMTrainConfig")
    if attn_implementation not in ATTENTION:
        raise BadInput(f"attn_implementation must be one of {ATTENTION}, got {attn_implementation!r}")
    root = _shipped() if base_model is None else Path(base_model).expanduser().resolve()
    sums = verify_checksums(check_dir(root))
    where = SHIPPED if root == _shipped().resolve() else str(root)
    return {"base_model": where, "checksums": sums, "lora": {**asdict(lora), "target_modules":
            list(lora.target_modules)}, "train": asdict(train), "attn_implementation": attn_implementation}


@dataclass(frozen=True)
class LMRecord:
    """A device's recorded settings, parsed and validated."""

    base: Path
    checksums: dict
    lora: LoraSettings
    train: LMTrainConfig
    attn_implementation: str

    @property
    def model_id(self) -> str:
        return model_id(digest(self.checksums), self.lora, self.train, self.attn_implementation)


def parse(settings: dict, where: Path | str = "family.json") -> LMRecord:
    """The record of `settings` (as `settings_for` wrote them); CorruptFile naming `where` when they are not."""
    try:
        base = _shipped() if settings["base_model"] == SHIPPED else Path(settings["base_model"])
        sums = settings["checksums"]
        if not isinstance(sums, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in sums.items()):
            raise TypeError("checksums must map file names to SHA-256 digests")
        lora = LoraSettings(**{**settings["lora"], "target_modules": tuple(settings["lora"]["target_modules"])})
        train = LMTrainConfig(**settings["train"])
        attn = settings["attn_implementation"]
        if attn not in ATTENTION:
            raise ValueError(f"attention kernel {attn!r}")
    except (KeyError, TypeError, ValueError, BadInput) as e:
        raise CorruptFile(f"{where}: not valid hf-causal-lm settings ({e}); restore the device's family record") from None
    return LMRecord(base, dict(sums), lora, train, attn)


def check_base(rec: LMRecord) -> Path:
    """The recorded base directory, checked: CorruptFile when it is missing, incomplete or changed."""
    root = check_dir(rec.base)
    check_pinned(root, verify_checksums(root), rec.checksums)
    return root


def family_from(rec: LMRecord):
    """The device's family (loads the model; CorruptFile for a missing or changed model directory)."""
    from .family import HFCausalLMFamily

    check_base(rec)
    return HFCausalLMFamily(None, rec.base, lora=rec.lora, train=rec.train,
                            attn_implementation=rec.attn_implementation, pinned=rec.checksums)


class Planner:
    """What `forget --dry-run` plans with in place of the loaded family: its repair settings (runner/plan.py
    reads only those)."""

    def __init__(self, rec: LMRecord) -> None:
        self.cfg, self.model_id = rec.train, rec.model_id
        self.min_repair_steps = rec.train.repair_steps
        self.checkpoint_every, self.delta_dtype = rec.train.checkpoint_every, rec.train.delta_dtype

    def repair_budget(self, subtracted: int, retained: int) -> int:
        return self.cfg.repair_budget(subtracted)
