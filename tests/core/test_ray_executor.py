"""The Ray executor (core/ray_executor.py) on a real Ray: one local instance for the module, and at the end a
two-node cluster started with `ray start` on this machine. Results equal the serial executor's bit for bit,
in input order; a task's exception keeps its type; a worker killed in the middle of a fleet run (device_sim
fleet's devices) is retried by Ray and the devices end as a serial run ends; a two-node cluster runs tasks on
both nodes and says which."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Iterator

import pytest
import torch

from assistant_forget.core.errors import BadInput
from assistant_forget.core.executor import ProcessExecutor, SerialExecutor
from assistant_forget.core.ray_executor import INSTALL, RayExecutor, make_executor
from device_sim.fleet import DeviceSpec, fleet_specs, live

SEEDS = [3, 0, 5, 1, 4, 2]


def train(seed: int) -> bytes:
    """A pure task: a seeded two-layer classifier trained 40 Adam steps on seeded data; its weights' bytes."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(128, 16, generator=gen)
    y = (x[:, :4].sum(1) > 0).long() + (x[:, 4] > 1).long()
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(40):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return b"".join(p.detach().numpy().tobytes() for p in model.parameters())


def train_and_threads(seed: int) -> tuple[bytes, int, str]:
    return train(seed), torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS", "")


def fail_on_three(k: int) -> int:
    if k == 3:
        raise BadInput(f"item {k} is bad")
    return k


def die_once(spec: tuple[str, int]) -> bytes:
    """Kill this worker process (SIGKILL, mid-task) on the first attempt of every item; train on the next."""
    marker = Path(spec[0]) / f"attempt-{spec[1]}"
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return train(spec[1])


def device_dies_once(spec: DeviceSpec) -> dict:
    """A fleet device (device_sim.fleet.live) whose worker is killed (SIGKILL) after it has lived one day of
    its first attempt: the retry starts the device over (`fresh`) and must end where a serial run ends."""
    marker = Path(spec.root).parent / f"killed-{spec.index}"
    if marker.exists():
        return live(spec)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(os.getpid()))
    live(replace(spec, days=1))  # a device directory half-lived, as a crash leaves it
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def serial() -> list[bytes]:
    """The reference: every seed trained in this process, one torch thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return SerialExecutor().map(train, SEEDS)
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[RayExecutor]:
    """One local Ray instance (2 CPUs) for the module's tests."""
    with RayExecutor(num_cpus=2) as ex:
        yield ex


def test_ray_gives_the_serial_results_bit_for_bit_in_input_order(local_ray, serial) -> None:
    assert len(set(serial)) == len(SEEDS)
    out = local_ray.map(train_and_threads, SEEDS)
    assert [w for w, _, _ in out] == serial
    assert {(t, omp) for _, t, omp in out} == {(1, "1")}  # one torch and one BLAS thread per task
    assert local_ray.map(train, []) == []


def test_a_failing_item_raises_its_own_exception_type_naming_the_item(local_ray) -> None:
    with pytest.raises(BadInput, match="item 3 is bad") as info:
        local_ray.map(fail_on_three, [0, 1, 2, 3, 4, 3])
    assert type(info.value) is BadInput  # the task's exception itself, not Ray's wrapper of it
    assert any("in task 3 of the map, item 3" in note for note in info.value.__notes__)
    assert local_ray.map(fail_on_three, [4, 0]) == [4, 0]  # the executor still works after a failure


def test_a_worker_killed_mid_fleet_run_is_retried_and_the_results_do_not_change(local_ray, tmp_path) -> None:
    import ray

    specs = fleet_specs(tmp_path / "ray", 2, 2, 3, 5.0, date(2026, 1, 1))
    rows = local_ray.map(device_dies_once, specs)
    assert sorted(p.name for p in (tmp_path / "ray" / "devices").glob("killed-*")) == ["killed-0", "killed-1"]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = SerialExecutor().map(live, fleet_specs(tmp_path / "serial", 2, 2, 3, 5.0, date(2026, 1, 1)))
    finally:
        torch.set_num_threads(before)
    same = ("error", "accuracy", "spoken", "utterances", "ledger_bytes", "state", "model_version")
    assert [{k: r[k] for k in same} for r in rows] == [{k: r[k] for k in same} for r in serial]
    assert all(r["error"] is None for r in rows)
    again = tmp_path / "no-retries"
    again.mkdir()
    with pytest.raises(ray.exceptions.WorkerCrashedError) as info:  # without retries the kill is fatal
        RayExecutor(max_retries=0).map(die_once, [(str(again), SEEDS[0])])
    assert any("in task 0 of the map" in note for note in info.value.__notes__)


def test_settings_and_a_missing_ray_are_refused_with_a_clear_message(monkeypatch) -> None:
    for kwargs, text in [({"address": " "}, "address"), ({"address": "auto", "num_cpus": 2}, "brings its own"),
                         ({"num_cpus": 0}, "num_cpus"), ({"max_retries": -1}, "max_retries"),
                         ({"cpus_per_task": 0}, "cpus_per_task")]:
        with pytest.raises(BadInput, match=text):
            RayExecutor(**kwargs)
    assert isinstance(make_executor(ray=True, workers=2), RayExecutor)
    assert isinstance(make_executor(workers=2), ProcessExecutor)
    with make_executor(workers=1) as ex:
        assert ex.map(abs, [-1]) == [1]
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets without the [fleet] extra
    with pytest.raises(BadInput, match=INSTALL.replace("[", r"\[").replace("]", r"\]")):
        RayExecutor().map(abs, [-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children() -> dict[int, list[int]]:
    """ppid -> pids of the processes running now."""
    out: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                out.setdefault(ppid, []).append(int(d.name))
    return out


def _tree(roots: list[int]) -> set[int]:
    """`roots` and all their descendants alive now."""
    kids, seen, todo = _children(), set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(kids.get(pid, []))
    return seen


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@contextlib.contextmanager
def two_node_cluster(root: Path) -> Iterator[str]:
    """A head (`--resources {"node_a": 1}`) and a second node (`{"node_b": 1}`), 1 CPU each, started with
    `ray start --block` in temporary directories of their own; yields the head's address. On the way out every
    process the two started is stopped (SIGTERM to `ray start`, which stops its node; SIGKILL to any process of
    theirs still alive after 30 s), and the test fails if one survives."""
    ray_cli = [sys.executable, "-m", "ray.scripts.scripts", "start", "--num-cpus", "1", "--node-ip-address",
               "127.0.0.1", "--disable-usage-stats", "--block"]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token")  # the token of ~/.ray/auth_token
    port, procs, tree = _free_port(), [], set()
    address = f"127.0.0.1:{port}"
    try:
        for name, extra in [("a", ["--head", "--port", str(port), "--include-dashboard", "false"]),
                            ("b", ["--address", address])]:
            log = root / f"{name}.log"
            with open(log, "w") as out:
                procs.append(subprocess.Popen(ray_cli + extra + ["--resources", f'{{"node_{name}": 1}}',
                                                                   "--temp-dir", str(root / name)],
                                              env=env, stdout=out, stderr=subprocess.STDOUT,
                                              start_new_session=True))
            deadline = time.monotonic() + 90
            while "Ray runtime started" not in log.read_text():
                assert procs[-1].poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.2)
        tree = _tree([p.pid for p in procs])
        yield address
    finally:
        tree |= _tree([p.pid for p in procs])
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(30)
        left = [pid for pid in tree if _alive(pid)]
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for p in procs:
            p.wait(10)
    assert not left, f"processes of the Ray cluster still running after its `ray start` stopped: {left}"


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary directory with a short path: Ray's sockets live under it (AF_UNIX paths: <= 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="ray-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_two_node_cluster_runs_tasks_on_both_nodes_and_reports_them(local_ray, serial, short_tmp) -> None:
    local_ray.shutdown()  # a process joins one Ray at a time; this test comes last in the module
    with pytest.raises(BadInput, match="no Ray cluster answers"):  # at once, not after Ray's minutes of retries
        RayExecutor(f"127.0.0.1:{_free_port()}").start()
    with two_node_cluster(short_tmp) as address:
        with RayExecutor(address) as ex:
            deadline = time.monotonic() + 60
            while len(ex.nodes()) < 2:
                assert time.monotonic() < deadline, f"the second node never joined: {ex.nodes()}"
                time.sleep(0.3)
            names = {node: next(r for r in res if r.startswith("node_")) for node, res in ex.nodes().items()}
            assert sorted(names.values()) == ["node_a", "node_b"]
            placed = ex.map_with_nodes(train, SEEDS)
        assert [w for w, _ in placed] == serial
        assert {names[node] for _, node in placed} == {"node_a", "node_b"}
