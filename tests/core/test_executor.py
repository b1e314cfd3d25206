"""The executor interface (core/executor.py): input order, results independent of the worker count bit for
bit, one torch thread per worker, and a failing item named in the exception it raises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from assistant_forget.core.errors import BadInput
from assistant_forget.core.executor import ProcessExecutor, SerialExecutor, local, map_rows


def fit(seed: int) -> bytes:
    """A pure task: a small seeded least-squares fit with torch on numpy data; the weights' bytes."""
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.normal(size=(64, 8)))
    y = x @ torch.from_numpy(rng.normal(size=(8, 1))) + 0.1 * torch.from_numpy(rng.normal(size=(64, 1)))
    w = torch.zeros(8, 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        ((x @ w - y) ** 2).mean().backward()
        opt.step()
    return w.detach().numpy().tobytes()


def fit_and_threads(seed: int) -> tuple[bytes, int]:
    return fit(seed), torch.get_num_threads()


def fail_on_three(k: int) -> int:
    if k == 3:
        raise BadInput(f"item {k} is bad")
    return k


def test_serial_and_two_workers_give_identical_bytes_in_input_order() -> None:
    seeds = [5, 1, 4, 2, 3, 0]
    serial = SerialExecutor().map(fit, seeds)
    assert serial == [fit(s) for s in seeds] and len(set(serial)) == len(seeds)
    pooled = ProcessExecutor(2).map(fit_and_threads, seeds)
    assert [w for w, _ in pooled] == serial
    assert {t for _, t in pooled} == {1}  # the worker initializer pinned torch
    assert ProcessExecutor(2).map(fit, []) == []


@pytest.mark.parametrize("executor", [SerialExecutor(), ProcessExecutor(2)], ids=["serial", "process"])
def test_a_failing_item_raises_its_own_exception_naming_the_item(executor) -> None:
    with pytest.raises(BadInput, match="item 3 is bad") as info:
        executor.map(fail_on_three, [0, 1, 2, 3, 4, 3])
    assert any("in task 3 of the map, item 3" in note for note in info.value.__notes__)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(BadInput, match="workers"):
        ProcessExecutor(0)
    with pytest.raises(BadInput, match="fork"):
        ProcessExecutor(2, context="fork")
    assert isinstance(local(1), SerialExecutor) and isinstance(local(3), ProcessExecutor)


def row_of(k: int) -> dict:
    return {"k": k, "square": k * k}


class Recording(SerialExecutor):
    """A serial executor that keeps the order the items were submitted in."""

    def __init__(self) -> None:
        self.seen: list = []

    def map(self, fn, items):
        self.seen = list(items)
        return super().map(fn, self.seen)


class Placing(Recording):
    def map_with_nodes(self, fn, items):
        return [(r, f"node-{r['k'] % 2}") for r in self.map(fn, items)]


def test_map_rows_submits_the_costliest_first_and_returns_rows_in_input_order() -> None:
    items = [3, 9, 1, 9, 5]
    ex = Recording()
    rows = map_rows(ex, row_of, items, cost=lambda k: k)
    assert ex.seen == [9, 9, 5, 3, 1]  # ties keep input order
    assert rows == [row_of(k) for k in items]
    assert map_rows(ex, row_of, items) == rows and ex.seen == items  # no cost: input order
    placed = map_rows(Placing(), row_of, items, cost=lambda k: -k)
    assert placed == [{**row_of(k), "node": f"node-{k % 2}"} for k in items]
    assert map_rows(ProcessExecutor(2), row_of, items, cost=lambda k: k) == rows
