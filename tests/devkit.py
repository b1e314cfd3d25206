"""Build small synthetic device directories for tests: a persona's log, imported, optionally trained."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Callable, Iterator

import pytest

from assistant_forget import api
from assistant_forget.device.importer import import_jsonl
from device_sim.canary import Canary
from device_sim.generator import generate_days, write_jsonl
from device_sim.persona import make_persona

TINY_VOCAB = 320  # smallest SentencePiece vocabulary with byte fallback for this text (256 bytes + 4 specials + chars)
START = date(2026, 2, 2)


def persona_log(days: int = 6, seed: int = 3, mean: float = 6.0, canaries: tuple[Canary, ...] = ()) -> list[dict]:
    """A persona's records for `days` days from START (deterministic)."""
    return generate_days(make_persona(seed), START, days, seed, mean_per_day=mean, canaries=canaries, travel=False)


def make_device(root: Path, records: list[dict], *, train: bool = True,
                keep: Callable[[dict], bool] = lambda r: True, device_seed: int = 0) -> Path:
    """Import the kept `records` into a new device at `root` and (by default) train every day."""
    src = root.parent / f"{root.name}.jsonl"
    write_jsonl([r for r in records if keep(r)], src)
    import_jsonl(root, src, seed=device_seed)
    src.unlink()
    if train:
        api.train(root)
    return root


def model_files(root: Path) -> dict[str, bytes]:
    """Every ledger and export file of a device (relative path -> bytes): what the exact tier must reproduce."""
    out = {}
    for sub in ("ledger", "exports"):
        for p in sorted((root / sub).rglob("*")):
            if p.is_file():
                out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


def private_texts(texts: list[str]) -> list[str]:
    """The texts a byte scan can look for: those not already in the public base artefacts.

    A one-word utterance ("positive") is also a piece of the public tokenizer, which every device ships.
    """
    from assistant_forget.families.assistant.base import base_dir
    from scan import find_texts

    public = find_texts(base_dir(), texts)
    return [t for t in texts if t not in public]


@contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """`path` and everything under it unwritable for this process, root included (chattr +i), then restored."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")]}
        for p, m in modes.items():
            p.chmod(m & ~0o222)
        try:
            yield
        finally:
            for p, m in modes.items():
                p.chmod(m)
        return
    if subprocess.run(["chattr", "-R", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("root on a file system without immutable files: nothing makes a file read-only for root")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-R", "-i", str(path)], check=True)
