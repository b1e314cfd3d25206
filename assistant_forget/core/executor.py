"""One interface for embarrassingly parallel pure tasks: train a shadow or oracle model, verify one forget,
simulate one device.

    results = executor.map(task, items)  # results[i] == task(items[i]), in input order

A task is a picklable top-level function (importable by module and name, not a lambda or a closure) of
one picklable argument, with no shared state: it reads only its argument (and files it names, read-only),
draws every random choice from a seed the argument carries, pins nothing global it does not reset, and
returns a picklable result. Such a task gives the same result wherever it runs, so results do not depend on
the executor or the number of workers (DESIGN invariant 2 extends to parallel runs). The attacks are
written against `Executor` only; a distributed engine implements the same `map` and slots in without touching
them: core/ray_executor.py runs the same tasks on Ray (the optional `[fleet]` extra), and its `make_executor`
picks one from the command line's choices (--workers, --ray, --ray-address). Every executor is a context
manager: `with make_executor(...) as ex:` releases what it started (a local Ray instance) on the way out.

A task that raises stops the map: the exception of the first failing item *in input order* propagates,
with its type kept (so a BadInput still exits 2) and a note naming the item's index and value.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib.util
import multiprocessing
import os
from typing import Any, Callable, Iterable, Protocol, TypeVar

from .errors import BadInput

T = TypeVar("T")
R = TypeVar("R")
CONTEXTS = ("spawn", "forkserver")  # start methods that do not inherit the parent's threads and locks
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")  # BLAS pools, set to 1 per worker


class Executor(Protocol):
    """Runs `fn` on every item; returns the results in input order (see the module docstring for `fn`)."""

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]: ...


def map_rows(executor: Executor, fn: Callable[[T], dict], items: list[T],
             cost: Callable[[T], float] | None = None) -> list[dict]:
    """`executor.map(fn, items)` for tasks that return a dict (a row of a fleet report), in input order.

    With an executor that knows where tasks ran (Ray's `map_with_nodes`) each row gains "node". With `cost`
    (the expected work of an item) the items are submitted most costly first, so that on W workers the long
    tasks start early and the map does not end waiting on one long task that started last (longest
    processing time first); the rows come back in input order, so the report is the same on every executor.
    A failing item's note then gives its place in the submission order.
    """
    order = list(range(len(items)))
    if cost is not None:
        order.sort(key=lambda i: (-cost(items[i]), i))
    submitted = [items[i] for i in order]
    if hasattr(executor, "map_with_nodes"):
        done = [{**row, "node": node} for row, node in executor.map_with_nodes(fn, submitted)]
    else:
        done = executor.map(fn, submitted)
    rows: list[dict] = [{}] * len(items)
    for k, i in enumerate(order):
        rows[i] = done[k]
    return rows


def _noted(e: BaseException, index: int, item: Any) -> BaseException:
    """`e` with a note naming the item that raised it (PEP 678)."""
    text = repr(item)
    e.add_note(f"in task {index} of the map, item {text if len(text) <= 200 else text[:197] + '...'}")
    return e


class _Released:
    """`shutdown()` and the context manager of every executor; these start nothing that outlives a map."""

    def shutdown(self) -> None:
        """Nothing to release: a process pool lives for one map only."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


class SerialExecutor(_Released):
    """Every task in this process, one after another: for tests, debugging and one-core machines.

    >>> SerialExecutor().map(abs, [-2, 3, -5])
    [2, 3, 5]
    """

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        out = []
        for i, item in enumerate(items):
            try:
                out.append(fn(item))
            except Exception as e:
                raise _noted(e, i, item)
        return out


def one_thread_worker() -> None:
    """Worker initializer: one BLAS and one torch thread per task. Workers run side by side, so extra
    threads only contend, and one thread gives the same floating-point results on every run on one kind of CPU
    (core/threads.py). Torch is pinned only where it is installed."""
    for var in THREAD_VARS:
        os.environ[var] = "1"
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(1)


class ProcessExecutor(_Released):
    """A local process pool of `workers` processes (concurrent.futures), started with `context` ('spawn' or
    'forkserver': a fresh interpreter, nothing inherited but the arguments), one torch thread per task.

    Every item is its own task (tasks are heavy: a model to train); results come back in input order. On a
    failure the pending tasks are cancelled and the first failing item's exception is raised.
    """

    def __init__(self, workers: int, context: str = "spawn") -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise BadInput(f"workers must be an integer >= 1, got {workers!r}")
        if context not in CONTEXTS:
            raise BadInput(f"context must be one of {', '.join(CONTEXTS)} (fork would copy the parent's torch "
                             f"threads and locks), got {context!r}")
        self.workers, self.context = workers, context

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        items = list(items)
        if not items:
            return []
        ctx = multiprocessing.get_context(self.context)
        with cf.ProcessPoolExecutor(min(self.workers, len(items)), mp_context=ctx,
                                    initializer=one_thread_worker) as pool:
            futures = [pool.submit(fn, item) for item in items]
            out = []
            for i, (item, fut) in enumerate(zip(items, futures)):
                try:
                    out.append(fut.result())
                except Exception as e:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise _noted(e, i, item)
        return out

    def __repr__(self) -> str:
        return f"ProcessExecutor(workers={self.workers}, context={self.context!r})"


def local(workers: int | None = None) -> Executor:
    """The default executor: a ProcessExecutor of `workers` (default: the CPUs this process may use), or a
    SerialExecutor for one worker.

    >>> local(1)  # doctest: +ELLIPSIS
    <...SerialExecutor object at ...>
    """
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return SerialExecutor() if workers == 1 else ProcessExecutor(workers)

