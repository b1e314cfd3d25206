"""The executor interface (core/executor.py) on Ray: the same pure tasks, on a local Ray instance or a cluster.

    with RayExecutor() as ex:                      # a local Ray instance, one task per CPU of this machine
        results = ex.map(task, items)              # results[i] == task(items[i]), in input order
    with RayExecutor("head-host:6379") as ex:      # join a running cluster (`ray start --head` / `--address`)
        placed = ex.map_with_nodes(task, items)    # [(result, node id), ...]: where each task ran

Every item is one Ray task that asks for `cpus_per_task` CPUs, runs with one torch and one BLAS thread
(core.executor.one_thread_worker, before every task) and returns the task's own result, so a map gives the
same results bit for bit as SerialExecutor and ProcessExecutor (the tasks are pure: module docstring of
core/executor.py). Fault tolerance is Ray's: a task whose worker process dies (killed, out of memory, its node
lost) is run again, up to `max_retries` times; an exception the task raises is not retried (a BadInput stays
a BadInput). As in ProcessExecutor, the exception of the first failing item in input order propagates with its
own type and a note naming the item, and the tasks still pending are cancelled.

`make_executor` picks the executor a command line asks for (--workers, --ray, --ray-address).

Ray is an optional extra (`pip install 'assistant-forget[fleet]'`), imported here only, inside functions:
nothing else in the package needs it, and without it this module still imports and says what to install.
Workers import a task by module and name: on a cluster every node needs the package installed (the same
version), and the driver's own source directories are put on the workers' path (`code_paths`) so that tasks
defined in scripts and test modules resolve on the nodes of this machine.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

from .errors import BadInput
from .executor import THREAD_VARS, Executor, _noted, local, one_thread_worker

T = TypeVar("T")
R = TypeVar("R")
INSTALL = "pip install 'assistant-forget[fleet]'"


def _ray():
    """The ray module, or a BadInput naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise BadInput(f"the Ray executor (--ray, --ray-address) needs Ray: {INSTALL}") from None
    return ray


def _run(fn: Callable[[Any], Any], item: Any, with_node: bool) -> Any:
    """The body of every Ray task: one thread, then `fn(item)` (and the id of the node it ran on)."""
    one_thread_worker()
    out = fn(item)
    if not with_node:
        return out
    import ray

    return out, ray.get_runtime_context().get_node_id()


def driver_code_paths() -> list[str]:
    """The driver's own source directories: the entries of sys.path that exist and are not part of the
    Python installation (the standard library, site-packages). Ray workers start from the installed packages
    only; these let them import tasks defined in scripts and test modules."""
    prefixes = {str(Path(p).resolve()) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    out = []
    for entry in sys.path:
        path = Path(entry or os.getcwd()).resolve()
        text = str(path)
        if not path.is_dir() or any(text == p or text.startswith(p + os.sep) for p in prefixes):
            continue
        if text not in out:
            out.append(text)
    return out


class RayExecutor:
    """`map` on Ray (module docstring). `address` None starts a local Ray instance with `num_cpus` CPUs (default:
    the CPUs this process may use), stopped by `shutdown()`; "host:port" or "auto" joins a running cluster
    (its CPUs are the cluster's; `shutdown()` only disconnects). Ray is started on the first `map`, or on
    entering a `with` block.

    `cpus_per_task` CPUs are reserved for each task (1: one torch thread each); `max_retries` is how many
    times a task whose worker died is run again; `spread` asks Ray to spread the tasks over the nodes rather
    than fill one node first; `log_to_driver` forwards the workers' output to this process; `code_paths`
    (default: driver_code_paths()) are added to the workers' import path.
    """

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None, cpus_per_task: float = 1,
                 max_retries: int = 3, spread: bool = False, log_to_driver: bool = False,
                 code_paths: Sequence[str] | None = None) -> None:
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise BadInput(f"a Ray address is 'host:port' or 'auto', got {address!r}")
        if num_cpus is not None:
            if address is not None:
                raise BadInput("num_cpus (--workers) sizes a local Ray instance; a cluster joined with "
                               "--ray-address brings its own CPUs")
            if isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1:
                raise BadInput(f"num_cpus must be an integer >= 1, got {num_cpus!r}")
        if isinstance(cpus_per_task, bool) or not isinstance(cpus_per_task, (int, float)) or not cpus_per_task > 0:
            raise BadInput(f"cpus_per_task must be a number > 0, got {cpus_per_task!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise BadInput(f"max_retries must be an integer >= 0, got {max_retries!r}")
        self.address = address.strip() if address else None
        self.num_cpus, self.cpus_per_task, self.max_retries = num_cpus, cpus_per_task, max_retries
        self.spread, self.log_to_driver = spread, log_to_driver
        self.code_paths = list(driver_code_paths() if code_paths is None else code_paths)
        self._remote = None  # the Ray remote function of `_run`, once connected
        self._owned = False  # True when this executor called ray.init (and so calls ray.shutdown)

    # -- connection -------------------------------------------------------------------------------------------
    def start(self) -> "RayExecutor":
        """Connect (start the local instance or join the cluster); a no-op once connected. If this process is
        already connected to Ray (a ray.init elsewhere), that connection is used and left open at shutdown."""
        ray = _ray()
        if self._remote is not None and ray.is_initialized():
            return self
        self._remote, self._owned = None, False  # never connected, or its connection was shut down elsewhere
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports, no prompt: runs are offline
        if not ray.is_initialized():
            env = {var: "1" for var in THREAD_VARS}
            if self.code_paths:
                env["PYTHONPATH"] = os.pathsep.join(self.code_paths + [p for p in os.environ.get(
                    "PYTHONPATH", "").split(os.pathsep) if p])
            kwargs: dict[str, Any] = dict(runtime_env={"env_vars": env}, log_to_driver=self.log_to_driver,
                                          logging_level=logging.WARNING)
            if self.address is None:
                kwargs.update(num_cpus=self.num_cpus or _cpus(), include_dashboard=False)
            else:
                _reachable(self.address)
                _use_token_if_available()
                kwargs.update(address=self.address)
            try:
                ray.init(**kwargs)
            except ConnectionError as e:  # the address answers no Ray, or refuses this process's token
                if self.address is None:
                    raise
                raise BadInput(f"could not join the Ray cluster at {self.address!r}: {e}. Start one with "
                               "`ray start --head`, pass its address (host:port); a cluster with token "
                               "authentication needs its token here (~/.ray/auth_token or RAY_AUTH_TOKEN) "
                               "and RAY_AUTH_MODE=token") from None
            self._owned = True
        self._remote = ray.remote(_run)
        return self

    def shutdown(self) -> None:
        """Disconnect; stops the local Ray instance this executor started. Safe to call twice."""
        if self._owned:
            import ray

            ray.shutdown()
        self._remote, self._owned = None, False

    def __enter__(self) -> "RayExecutor":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.shutdown()

    # -- the interface ----------------------------------------------------------------------------------------
    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """fn(item) for every item, one Ray task each; the results in input order."""
        return self._map(fn, list(items), with_node=False)

    def map_with_nodes(self, fn: Callable[[T], R], items: Iterable[T]) -> list[tuple[R, str]]:
        """As `map`, each result paired with the id of the Ray node its task ran on (its last attempt)."""
        return self._map(fn, list(items), with_node=True)

    def nodes(self) -> dict[str, dict[str, float]]:
        """The cluster's live nodes: node id -> its resources (CPU, memory, custom resources such as the
        `--resources` a node was started with)."""
        self.start()
        return {n["NodeID"]: dict(n["Resources"]) for n in _ray().nodes() if n.get("Alive")}

    def _map(self, fn: Callable, items: list, with_node: bool) -> list:
        if not items:
            return []
        self.start()
        ray = _ray()
        options: dict[str, Any] = dict(num_cpus=self.cpus_per_task, max_retries=self.max_retries,
                                       retry_exceptions=False)
        if self.spread:
            options["scheduling_strategy"] = "SPREAD"
        task = self._remote.options(**options)
        refs = [task.remote(fn, item, with_node) for item in items]
        out = []
        for i, (item, ref) in enumerate(zip(items, refs)):
            try:
                out.append(ray.get(ref))
            except Exception as e:
                for rest in refs[i + 1:]:
                    ray.cancel(rest)
                cause = getattr(e, "cause", None) if isinstance(e, ray.exceptions.RayTaskError) else None
                if isinstance(cause, Exception):  # the task's own exception, its type kept
                    raise _noted(cause, i, item) from e
                raise _noted(e, i, item)  # a system failure: the worker died more than max_retries times, ...
        return out

    def __repr__(self) -> str:
        where = f"address={self.address!r}" if self.address else f"local, num_cpus={self.num_cpus or _cpus()}"
        return f"RayExecutor({where}, cpus_per_task={self.cpus_per_task}, max_retries={self.max_retries})"


def make_executor(ray: bool = False, address: str | None = None, workers: int | None = None) -> Executor:
    """The executor a command line asks for: `--ray` (a local Ray instance of `workers` CPUs, default all of
    them), `--ray-address ADDR` (join the Ray cluster at ADDR, "host:port" or "auto"; implies Ray; `workers`
    must then be None: the cluster brings its own CPUs), otherwise core.executor.local(workers). It lives
    here, beside the one executor that needs an optional package, so that core/executor.py never imports
    this module; Ray itself is imported only when a Ray executor starts. Use it in a `with` block.

    >>> make_executor(workers=1)  # doctest: +ELLIPSIS
    <...SerialExecutor object at ...>
    >>> make_executor(ray=True, workers=2)
    RayExecutor(local, num_cpus=2, cpus_per_task=1, max_retries=3)
    """
    if address is not None or ray:
        return RayExecutor(address, num_cpus=workers)
    return local(workers)


def _cpus() -> int:
    """The CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _reachable(address: str, timeout: float = 5.0) -> None:
    """A BadInput at once if nothing listens at "host:port" (ray.init would retry for minutes); "auto" and
    URLs ("ray://...") are left to Ray."""
    import socket

    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise BadInput(f"a Ray address is 'host:port' or 'auto', got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise BadInput(f"no Ray cluster answers at {address} ({e.strerror or e}); start its head with "
                       f"`ray start --head --port {port}` or pass the address it printed") from None


def _use_token_if_available() -> None:
    """Before joining a cluster: if the token mode is not set and a token is at hand (RAY_AUTH_TOKEN,
    RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token), present it (RAY_AUTH_MODE=token). `ray start --head` does the
    same for the head (with this very function of Ray's, private but pinned with the [fleet] extra); a joining
    process does not by itself, and a token cluster then refuses it."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available as enable)
    except ImportError:  # another Ray: its own rules apply
        return
    enable(warn_if_disabled=False)
