"""Torch thread pinning: every training, forgetting and scoring run uses one thread (defined once here)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread: the model is tiny, extra threads only contend (10x slower on a busy
    2-core machine), and one thread gives the same floating-point results on every run on one machine
    (another kind of CPU may round differently: tests/sim/test_versions.py)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
