"""Settings of the `hf-causal-lm` family: the LoRA adapters that personalise and how a day trains them.

torch-free and validated on creation, so a bad rank, alpha or target list is refused (BadInput) before a model
is loaded or a device is touched. The training settings that change a delta or a checkpoint are part of the
family's model id (`fingerprint`); the fast tier's repair settings are not, so tuning them keeps every ledger.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

from ...core.errors import BadInput
from ...core.method import check_count, check_positive

DEFAULT_TARGETS = ("q_proj", "v_proj")  # Llama, Qwen2, Mistral, SmolLM; GPT-2's fused attention is "c_attn"


@dataclass(frozen=True)
class LoraSettings:
    """Which LoRA adapters personalise: rank, scale (alpha / rank) and the base modules they wrap.

    `target_modules` are module names as peft matches them: the last part of a module's dotted name
    ("q_proj" wraps every layer's query projection). Each must name at least one linear layer of the base."""

    rank: int = 4
    alpha: float = 8.0
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    init_seed: int = 0  # the seed of the adapters' A matrices (B starts at zero: the base's outputs unchanged)

    def __post_init__(self) -> None:
        check_count("rank", self.rank, 1)
        check_positive("alpha", self.alpha)
        check_count("init_seed", self.init_seed, 0)
        targets = self.target_modules
        if isinstance(targets, str) or not isinstance(targets, (tuple, list)) or not targets:
            raise BadInput(f"target_modules must be a non-empty list of module names, got {targets!r}")
        bad = [t for t in targets if not isinstance(t, str) or not t.replace("_", "").replace(".", "").isalnum()]
        if bad or len(set(targets)) != len(targets):
            raise BadInput("target_modules must be distinct module names (letters, digits, _ and .), "
                           f"got {list(targets)}")
        object.__setattr__(self, "target_modules", tuple(targets))


@dataclass(frozen=True)
class LMTrainConfig:
    """How a day trains the adapters, and the fast tier's repair."""

    lr: float = 5e-3  # AdamW learning rate (fresh optimizer every day)
    epochs: int = 3  # passes over the day's batch set
    batch_size: int = 16  # utterances per step
    max_len: int = 64  # tokens per utterance, <s> and </s> included (longer ones are cut)
    replay_public: int = 16  # CLINC150 train utterances mixed into each day (public text: keeps the base's fluency)
    repair_steps: int = 4  # fewest steps of the fast tier's repair on retained days ...
    repair_per_step: int = 32  # ... one step per this many utterances whose training was subtracted ...
    repair_steps_max: int = 32  # ... at most this many
    repair_sample: int = 128  # fewest retained utterances the repair and the retained loss draw from
    checkpoint_every: int = 7  # ledger checkpoint after every C-th trained day
    delta_dtype: str = "float16"  # ledger storage of the per-day deltas

    def __post_init__(self) -> None:
        check_positive("lr", self.lr)
        for name in ("epochs", "batch_size", "repair_per_step", "repair_sample", "checkpoint_every"):
            check_count(name, getattr(self, name), 1)
        for name in ("replay_public", "repair_steps", "repair_steps_max"):
            check_count(name, getattr(self, name), 0)
        check_count("max_len", self.max_len, 3)
        if self.delta_dtype not in ("float16", "float32"):
            raise BadInput(f"delta_dtype must be float16 or float32, got {self.delta_dtype!r}")

    def repair_budget(self, subtracted: int) -> int:
        """Repair steps after subtracting the training of `subtracted` utterances.

        >>> cfg = LMTrainConfig()
        >>> cfg.repair_budget(40), cfg.repair_budget(400), cfg.repair_budget(10**6)
        (4, 13, 32)
        """
        return max(self.repair_steps, min(self.repair_steps_max, -(-subtracted // self.repair_per_step)))


def fingerprint(lora: LoraSettings, train: LMTrainConfig) -> str:
    """Hash of every setting a trained delta depends on (the repair's settings left out)."""
    kept = {**{f"lora.{k}": v for k, v in asdict(lora).items()},
            **{k: v for k, v in asdict(train).items() if not k.startswith("repair_")}}
    return hashlib.sha256(repr(sorted(kept.items())).encode()).hexdigest()[:12]


def model_id(base_digest: str, lora: LoraSettings, train: LMTrainConfig, attn_implementation: str) -> str:
    """The family's model id: the base's digest (checkpoint.digest of its checksums) and every setting a delta
    depends on. The ledger records it, so a changed base or setting is refused before anything changes;
    torch-free, so `forget --dry-run` finds the ledger's manifest without loading the model."""
    settings = fingerprint(lora, train) + attn_implementation
    return f"hflm-{base_digest[:12]}-{hashlib.sha256(settings.encode()).hexdigest()[:12]}"
