"""A local Hugging Face causal-LM directory: checked, pinned by checksums, loaded offline.

The base model of the `hf-causal-lm` family is any directory that `transformers.AutoModelForCausalLM` loads
(config.json, safetensors weights, tokenizer files: Llama, Qwen2, GPT-2 and the rest). Nothing here reaches for
the network: the offline variables are set before transformers is imported and every load passes
`local_files_only=True`; a model that needs its own code (`trust_remote_code`) is refused. Weights must be
safetensors: a pickled `pytorch_model.bin` could run code when loaded (DESIGN invariant 6).

Checksums pin the directory. `checksums.json` (written by `record_checksums`, shipped with models/lm-tiny)
lists the SHA-256 of every top-level file; when present, every file is checked against it and a file that
differs, is missing or is not listed is a CorruptFile naming it. Without one, the digest of every file is
still part of the family's model id, which the device's ledger records on its first training: a directory
changed after that first use is refused by the ledger (CorruptFile, exit 4), before anything changes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ...core.errors import CorruptFile
from ...core.fsio import atomic_write_bytes, sha256_file

CHECKSUMS = "checksums.json"
CONFIG = "config.json"
WEIGHTS = ("model.safetensors", "model.safetensors.index.json")  # one of them: single-file or sharded weights
TOKENIZER = ("tokenizer.json", "tokenizer.model", "vocab.json")  # one of them: a tokenizer transformers loads
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def go_offline() -> None:
    """Set the variables that keep huggingface_hub and transformers off the network (before importing them)."""
    os.environ.update(OFFLINE)


def model_files(root: Path) -> list[Path]:
    """The directory's top-level regular files that belong to the model (everything but checksums.json and
    dot files), sorted by name."""
    return sorted(p for p in root.iterdir()
                  if p.is_file() and not p.is_symlink() and p.name != CHECKSUMS and not p.name.startswith("."))


def compute_checksums(root: Path) -> dict[str, str]:
    """File name -> SHA-256 of every model file of `root`."""
    return {p.name: sha256_file(p) for p in model_files(root)}


def record_checksums(root: Path | str) -> dict[str, str]:
    """Write `root`/checksums.json for the files there now (pin a checkpoint of your own); returns them."""
    root = check_dir(root)
    sums = compute_checksums(root)
    atomic_write_bytes(root / CHECKSUMS, (json.dumps(sums, indent=2, sort_keys=True) + "\n").encode())
    return sums


def check_dir(root: Path | str) -> Path:
    """`root` as a model directory: CorruptFile naming what is missing (the directory, its config, weights in
    safetensors, a tokenizer)."""
    root = Path(root)
    if not root.is_dir():
        raise CorruptFile(f"{root}: no such model directory; point the family at a local Hugging Face model "
                          "directory (config.json, model.safetensors, tokenizer files): nothing is downloaded")
    if not (root / CONFIG).is_file():
        raise CorruptFile(f"{root / CONFIG}: missing; {root} is not a Hugging Face model directory")
    if not any((root / w).is_file() for w in WEIGHTS):
        pickled = sorted(p.name for p in root.glob("*.bin")) + sorted(p.name for p in root.glob("*.pt*"))
        why = (f" ({', '.join(pickled)} is pickled weights, which are refused: convert them to safetensors)"
               if pickled else "")
        raise CorruptFile(f"{root / WEIGHTS[0]}: missing{why}; the model's weights must be safetensors")
    if not any((root / t).is_file() for t in TOKENIZER):
        raise CorruptFile(f"{root / TOKENIZER[0]}: missing; the model directory needs its tokenizer files")
    return root


def verify_checksums(root: Path) -> dict[str, str]:
    """The checksums of `root`'s files, checked against its checksums.json when it has one (CorruptFile naming
    the first file that differs, is missing, or is not listed)."""
    sums = compute_checksums(root)
    path = root / CHECKSUMS
    if not path.exists():
        return sums
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CorruptFile(f"{path}: unreadable ({e}); restore the model directory") from None
    if not isinstance(recorded, dict) or not all(isinstance(v, str) for v in recorded.values()):
        raise CorruptFile(f"{path}: not a map of file name to SHA-256; restore the model directory")
    for name in sorted(set(recorded) | set(sums)):
        if name not in sums:
            raise CorruptFile(f"{root / name}: listed in {CHECKSUMS} but missing; restore the model directory")
        if name not in recorded:
            raise CorruptFile(f"{root / name}: not listed in {CHECKSUMS} (the directory was changed); remove it "
                              "or record the checksums again")
        if recorded[name] != sums[name]:
            raise CorruptFile(f"{root / name}: checksum mismatch with {CHECKSUMS} (tampered or damaged); "
                              "restore the model directory")
    return sums


def digest(sums: dict[str, str]) -> str:
    """One hash of a directory's checksums (what the family's model id pins)."""
    return hashlib.sha256(json.dumps(sums, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class LocalLM:
    """A loaded base: the causal LM (float32, eval mode), its tokenizer, where it came from, its checksums."""

    root: Path
    model: object  # transformers PreTrainedModel
    tokenizer: object  # transformers PreTrainedTokenizerBase
    checksums: dict[str, str]


def check_pinned(root: Path, sums: dict[str, str], pinned: dict[str, str]) -> None:
    """CorruptFile naming the first file of `root` whose checksum is not the one `pinned` (what a device
    recorded when it was created) lists: the model directory changed since."""
    for name in sorted(set(pinned) | set(sums)):
        if sums.get(name) != pinned.get(name):
            how = ("missing" if name not in sums else "not there when the device was created" if name not in pinned
                   else "changed since the device was created (checksum mismatch)")
            raise CorruptFile(f"{root / name}: {how}; the device is pinned to the model directory as it was: "
                              "restore it (nothing was changed)")


def load_local(root: Path | str, attn_implementation: str = "sdpa",
               pinned: dict[str, str] | None = None) -> LocalLM:
    """Check, verify and load the model directory `root` offline (see the module docstring); with `pinned`,
    its files must also have exactly those checksums (check_pinned)."""
    root = check_dir(root)
    sums = verify_checksums(root)
    if pinned is not None:
        check_pinned(root, sums, pinned)
    go_offline()
    import torch
    import transformers
    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        config = AutoConfig.from_pretrained(root, local_files_only=True, trust_remote_code=False)
        if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            raise CorruptFile(f"{root / CONFIG}: model type {config.model_type!r} is not a causal language model "
                              "that transformers knows")
        model = AutoModelForCausalLM.from_pretrained(
            root, config=config, local_files_only=True, trust_remote_code=False, use_safetensors=True,
            dtype=torch.float32, attn_implementation=attn_implementation)
        tokenizer = AutoTokenizer.from_pretrained(root, local_files_only=True, trust_remote_code=False)
    except CorruptFile:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CorruptFile(f"{root}: cannot load the model offline ({first[:300]})") from None
    if tokenizer.eos_token_id is None:
        raise CorruptFile(f"{root}: its tokenizer has no end-of-text token (eos_token); the causal-LM loss "
                          "needs one to end each utterance")
    return LocalLM(root, model.eval(), tokenizer, sums)
