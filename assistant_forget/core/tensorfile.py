"""Tensors on disk: safetensors files whose SHA-256 is recorded by whoever references them.

Never pickle: a tampered file must be an error, not code execution (DESIGN invariant 6).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import CorruptFile
from .fsio import atomic_write_bytes, read_checked, sha256_bytes


def tensors_to_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """Serialise deterministically: same tensors and metadata give the same bytes."""
    clean = {k: v.detach().contiguous().cpu() for k, v in sorted(tensors.items())}
    return st_save(clean, metadata=metadata)


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    """Atomically write a safetensors file; return its SHA-256 for the caller's manifest."""
    data = tensors_to_bytes(tensors, metadata)
    atomic_write_bytes(Path(path), data)
    return sha256_bytes(data)


def tensors_from_bytes(data: bytes, source: str = "tensors") -> dict[str, torch.Tensor]:
    """Tensors from safetensors bytes; CorruptFile naming `source` when they do not parse."""
    try:
        return st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CorruptFile(f"{source}: not valid safetensors bytes ({e})") from None


def load_tensors(path: Path, sha256: str | None) -> dict[str, torch.Tensor]:
    """Load a safetensors file, checking it against `sha256` when given.

    Raises CorruptFile naming the file when it is missing, truncated, tampered with or unparsable.
    """
    data = read_checked(path, sha256)
    try:
        return st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CorruptFile(f"{path}: not a valid safetensors file ({e})") from None
