"""The model-agnostic core (ledger + timeline) on a model that is not the assistant: a small MLP regressor.

Answers the seed question "can *a* network forget": exact replay equals never having seen the day.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from assistant_forget.core.errors import CorruptFile
from assistant_forget.core.ledger import Ledger
from assistant_forget.core.timeline import Timeline

DAYS = [f"2026-01-{d:02d}" for d in range(1, 13)]


class Regressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def day_data(day: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(int(day.replace("-", "")))
    x = torch.randn(16, 4, generator=g)
    return x, x.sum(1, keepdim=True) * (1 + int(day[-2:]) % 3)


def make_timeline(root: Path, data: dict[str, tuple[torch.Tensor, torch.Tensor]], C: int = 3,
                  replay: int = 0) -> Timeline:
    """With `replay`, a day also trains on the day `replay` days before it (when that day has data)."""

    def train_day(model: nn.Module, day: str, seed: int) -> list[str]:
        torch.manual_seed(seed)
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)  # fresh per day
        earlier = sorted(d for d in data if d < day)
        reads = earlier[-replay:][:1] if replay else []
        x = torch.cat([data[d][0] for d in [day, *reads]])
        y = torch.cat([data[d][1] for d in [day, *reads]])
        for _ in range(5):
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        return reads

    def fingerprint(day: str) -> str:
        x, y = data[day]
        return hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()

    return Timeline(Ledger(root / "ledger"), Regressor(), ["body.2.weight", "body.2.bias", "body.0.bias"],
                    train_day, fingerprint, seed=42, model_id="regressor-v1", checkpoint_every=C)


def tensor_files(root: Path) -> dict[str, bytes]:
    """Name-stripped contents of every tensor file plus the manifest (names carry hashes of contents)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_training_twice_gives_identical_bytes(tmp_path: Path) -> None:
    data = {d: day_data(d) for d in DAYS}
    a, b = make_timeline(tmp_path / "a", data), make_timeline(tmp_path / "b", data)
    a.sync(DAYS)
    b.sync(DAYS)
    assert tensor_files(tmp_path / "a") == tensor_files(tmp_path / "b")
    assert len(a.manifest().checkpoints) == len(DAYS) // 3
    assert a.plan(DAYS).empty  # a second run does nothing


def test_rewind_and_replay_equals_never_seeing_the_day(tmp_path: Path) -> None:
    data = {d: day_data(d) for d in DAYS}
    seen = make_timeline(tmp_path / "seen", data)
    seen.sync(DAYS)
    before = seen.manifest().version
    forgotten = "2026-01-05"
    kept = [d for d in DAYS if d != forgotten]
    plan = seen.sync(kept)
    assert plan.rewind_to == "2026-01-03" and plan.days[0] == "2026-01-04"  # checkpoint before the day
    never = make_timeline(tmp_path / "never", data)
    never.sync(kept)
    assert tensor_files(tmp_path / "seen") == tensor_files(tmp_path / "never")
    assert seen.manifest().version != before


def test_fast_forget_subtracts_the_delta_then_exact_pass_matches(tmp_path: Path) -> None:
    data = {d: day_data(d) for d in DAYS}
    t = make_timeline(tmp_path / "dev", data)
    t.sync(DAYS)
    m = t.manifest()
    theta = t.get_state()
    delta = t.ledger.read_delta(m.days["2026-01-08"].delta)
    m2 = t.fast_forget(["2026-01-08"])
    assert m2.approximate and m2.pending_exact_from == "2026-01-08"
    assert "2026-01-08" not in m2.days and all(c < "2026-01-08" for c in m2.checkpoints)
    for n, v in t.get_state().items():
        torch.testing.assert_close(v, theta[n] - delta[n])
    assert not any("2026-01-08" in p.name for p in (tmp_path / "dev").rglob("*"))  # delta file purged
    kept = [d for d in DAYS if d != "2026-01-08"]
    t.sync(kept)
    never = make_timeline(tmp_path / "never", data)
    never.sync(kept)
    assert tensor_files(tmp_path / "dev") == tensor_files(tmp_path / "never")


def test_fast_forget_also_subtracts_the_days_that_replayed_it(tmp_path: Path) -> None:
    data = {d: day_data(d) for d in DAYS}
    t = make_timeline(tmp_path / "dev", data, replay=2)  # each day also trains on the day two before
    t.sync(list(data))
    m = t.manifest()
    assert m.days["2026-01-07"].reads == ("2026-01-05",) and m.days["2026-01-01"].reads == ()
    assert t.readers(["2026-01-05"]) == ["2026-01-07"]
    theta = t.get_state()
    deltas = {d: t.ledger.read_delta(m.days[d].delta) for d in ("2026-01-05", "2026-01-07")}
    m2 = t.fast_forget(["2026-01-05"])
    assert "2026-01-05" not in m2.days and m2.days["2026-01-07"].delta is None  # the reader stays a trained day
    assert m2.days["2026-01-06"].delta is not None
    assert not t.readers(["2026-01-05"], m2)  # no remaining delta was trained on the day's data
    for n, v in t.get_state().items():
        torch.testing.assert_close(v, theta[n] - deltas["2026-01-05"][n] - deltas["2026-01-07"][n])
    del data["2026-01-05"]
    t.sync(list(data))  # the exact pass: identical to never having had the day
    never = make_timeline(tmp_path / "never", data, replay=2)
    never.sync(list(data))
    assert tensor_files(tmp_path / "dev") == tensor_files(tmp_path / "never")


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_ledger_file_is_detected_by_name(tmp_path: Path, damage: str) -> None:
    data = {d: day_data(d) for d in DAYS[:4]}
    t = make_timeline(tmp_path / "dev", data)
    t.sync(DAYS[:4])
    victim = sorted((tmp_path / "dev" / "ledger" / "deltas").iterdir())[1]
    raw = victim.read_bytes()
    if damage == "flip":
        victim.write_bytes(raw[:-3] + bytes([raw[-3] ^ 1]) + raw[-2:])
    elif damage == "truncate":
        victim.write_bytes(raw[: len(raw) // 2])
    else:
        victim.unlink()
    with pytest.raises(CorruptFile, match=victim.name):
        t.ledger.verify()
