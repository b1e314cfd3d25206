"""The assistant's settings without its model: personalisation settings, where the base model lives, and the
ledger's model id. torch-free, so that planning a forget (`forget --dry-run`) and `status` start in a blink.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ...core.errors import CorruptFile

ARTEFACTS = ("tokenizer.model", "model.safetensors", "config.json", "labels.json", "MODEL_CARD.md")


@dataclass(frozen=True)
class PersonalizationConfig:
    adapter_rank: int = 4  # rank of the low-rank adapters that carry personalisation
    personal: str = "adapters"  # which parameters personalise (see PERSONAL_SETS)
    lr: float = 1e-3  # AdamW learning rate (fresh optimizer every day)
    epochs: int = 2  # passes over the day's mixed batch set
    batch_size: int = 32  # utterances per step
    replay_personal: int = 32  # utterances sampled from the replay days
    replay_days: int = 1  # earlier retained days the replay draws from (recorded per day in the ledger)
    replay_window: int = 7  # ... chosen among the last this many earlier days with data
    replay_public: int = 128  # CLINC150 train utterances mixed in to keep the base's knowledge
    lm_weight: float = 0.5  # weight of the next-token loss beside the intent loss
    repair_steps: int = 8  # fewest steps of the fast tier's repair fine-tune on retained days ...
    repair_per_step: int = 40  # ... one step per this many personal utterances whose training was subtracted ...
    repair_steps_max: int = 64  # ... and at most this many (see `repair_budget`)
    repair_sample: int = 128  # fewest retained utterances the repair draws from
    checkpoint_every: int = 7  # ledger checkpoint after every C-th trained day
    delta_dtype: str = "float16"  # ledger storage of deltas

    def __post_init__(self) -> None:
        if self.personal not in PERSONAL_SETS:
            raise ValueError(f"personal={self.personal!r}: choose one of {sorted(PERSONAL_SETS)}")
        if (self.adapter_rank < 0 or self.epochs < 1 or self.batch_size < 1 or self.replay_days < 0
                or self.replay_window < 1 or self.repair_steps < 0 or self.repair_per_step < 1):
            raise ValueError(f"invalid personalisation config: {self}")

    def repair_budget(self, subtracted: int, retained: int) -> int:
        """Repair steps after a subtraction that removed the training of `subtracted` personal utterances, with
        `retained` utterances left to repair on.

        A day with many utterances (a phrase said a thousand times) moved the model much further than a usual
        day, and subtracting it leaves a larger gap to mend: 8 steps leave the fast model a point of intent
        accuracy below the oracle on such days, where 27 steps close it (tools/bench_quality.py; figures in
        docs/verification.md). A usual day, with its readers, stays at `repair_steps`. Past that floor the
        repair makes no more passes over the retained utterances (with the public sample) than a day's
        training makes over its own (`epochs`): a short history is not fitted over and over.

        >>> cfg = PersonalizationConfig()
        >>> cfg.repair_budget(60, 2400), cfg.repair_budget(1066, 2400), cfg.repair_budget(10**6, 2400)
        (8, 27, 64)
        >>> cfg.repair_budget(4100, 40), cfg.repair_budget(4100, 0)
        (11, 8)
        """
        passes = -(-self.epochs * (retained + self.replay_public) // self.batch_size)
        return max(self.repair_steps, min(self.repair_steps_max, passes, -(-subtracted // self.repair_per_step)))

    @property
    def min_repair_steps(self) -> int:
        """The fast tier's shortest repair (the family protocol's name for `repair_steps`)."""
        return self.repair_steps

    def fingerprint(self) -> str:
        """Hash of the settings that training depends on (part of the ledger's model id). The fast tier's
        repair settings are left out: they change no delta or checkpoint, so tuning them keeps every ledger."""
        kept = {k: v for k, v in asdict(self).items() if not k.startswith("repair_")}
        return hashlib.sha256(repr(sorted(kept.items())).encode()).hexdigest()[:12]


PERSONAL_SETS = {
    "adapters+norms+intent_bias": lambda n: "lora_" in n or ".ln" in n or n.startswith("ln_f") or n == "intent.bias",
    "adapters": lambda n: "lora_" in n,
    "norms+biases": lambda n: ".ln" in n or n.startswith("ln_f") or n.endswith(".bias"),
    "top_block+heads": lambda n: n.startswith("blocks.1.") and "lora_" not in n or n.startswith(("ln_f", "intent")),
    "all": lambda n: True,  # for comparison only: every weight, ~30x over the ledger budget
}


def model_id(checksums: dict[str, str], cfg: PersonalizationConfig) -> str:
    """The ledger's model id: the base weights' hash and the training settings' fingerprint."""
    return f"{checksums['model.safetensors'][:12]}-{cfg.fingerprint()}"


def base_dir(path: Path | str | None = None) -> Path:
    """The base-model directory: `path` if given, else $ASSISTANT_FORGET_BASE, else models/base/ in this repository."""
    if path is None:
        path = os.environ.get("ASSISTANT_FORGET_BASE") or Path(__file__).resolve().parents[3] / "models" / "base"
    return Path(path)


def read_checksums(root: Path) -> dict[str, str]:
    """checksums.json of a base directory; CorruptFile when missing, malformed or incomplete."""
    path = root / "checksums.json"
    try:
        sums = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorruptFile(f"{path}: missing; {root} is not a base-model directory "
                          "(build one with tools/build_base_model.py)") from None
    except (OSError, ValueError) as e:
        raise CorruptFile(f"{path}: unreadable ({e})") from None
    missing = [a for a in ARTEFACTS if not isinstance(sums, dict) or not isinstance(sums.get(a), str)]
    if missing:
        raise CorruptFile(f"{path}: no checksum for {', '.join(missing)}; rebuild the base model")
    absent = [n for n in sums if Path(n).name != n or not isinstance(sums[n], str) or not (root / n).is_file()]
    if absent:
        raise CorruptFile(f"{path}: lists {', '.join(map(repr, absent))}, which is not a file of {root} "
                          "(checksums.json was altered); restore models/base from the repository")
    return sums
