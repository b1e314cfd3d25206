"""Benchmark: the same population training (verify/population.py) serially, on a process pool and on Ray.

A persona's device lives D days and trains (tools/bench_devices.py); one day is forgotten with the fast tier;
then the per-example attacks' population of that forget (K models that forgot it with the method, K exact
oracles: 2K real training tasks, each training 1 + H days of the assistant model from the state before the
day) is trained through each executor in turn, in one run: SerialExecutor (this process), ProcessExecutor
(W spawned processes) and RayExecutor (a local Ray instance of W CPUs, or a cluster with --ray-address).
Prints, side by side, the seconds of each map, its speedup over serial, and the SHA-256 of the statistics
it produced: the three must be identical bit for bit (the tasks are pure; core/executor.py). Two more
workloads, each through the same executors: `--shadows K` trains the LiRA shadows of the same forget (2K
tasks, oracle.shadow_stats, what verify and tools/bench_quality.py train), and `--audit-devices N` audits a
fleet of N simulated devices (device_sim/audit.py, one task per device).

Ray's start (ray.init, once per process) is timed apart from the map: a fleet run pays it once. With `--maps 2`
each executor runs each workload twice in a row and the second map is quoted: Ray's workers have then imported
torch and the package (a cluster that has been running), while a process pool starts anew for every map.

    python tools/bench_fleet.py                                 # 16 tasks (K=8), 2 workers, this machine
    python tools/bench_fleet.py --models 4 --executors serial,ray
    python tools/bench_fleet.py --ray-address 127.0.0.1:6379    # an existing cluster (docs/fleet.md)
    python tools/bench_fleet.py --json fleet.json               # the figures as JSON too
    python tools/bench_fleet.py --audit-devices 16 --shadows 8  # and a 16-device fleet audit, and LiRA's shadows
    python tools/bench_fleet.py --audit-devices 16 --shadows 8 --maps 2   # each map twice: warm Ray workers

Every task is measured where it runs (CPU seconds, wall seconds, the peak RSS of its process): "CPU/wall" is
the tasks' CPU seconds over the map's wall seconds, the cores the map kept busy (at most the workers; on a
machine shared with other jobs the wall-clock speedup falls, this ratio says by how much the others took).
"peak MiB" is the largest peak RSS of a process that ran a task (for serial: this whole process).
Figures for docs/fleet.md's cost model: seconds per task (serial), per-task speedup, Ray's start.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from assistant_forget import api
from assistant_forget.core.executor import ProcessExecutor, SerialExecutor
from assistant_forget.runner.forget import forget, make_plan
from assistant_forget.runner.selector import Selector
from assistant_forget.verify.oracle import exact_replay
from assistant_forget.verify.population import population
from assistant_forget.verify.verification import only_forgotten, trained_texts
from bench_devices import make_device

EXECUTORS = ("serial", "process", "ray")


def timed_call(fn, item):
    """Run fn(item) and measure it where it runs: (result, CPU s, wall s, peak RSS of the process in MiB)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn(item)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return out, time.process_time() - c, time.perf_counter() - t, rss


class Timed:
    """An executor that runs another's map with every task measured (timed_call); keeps the measurements."""

    def __init__(self, inner) -> None:
        self.inner, self.tasks = inner, []

    def map(self, fn, items):
        out = self.inner.map(functools.partial(timed_call, fn), items)
        self.tasks = [o[1:] for o in out]
        return [o[0] for o in out]


def start_executor(name: str, args) -> tuple[object, float | None]:
    """The executor called `name` (serial, process, ray), started; and Ray's start in seconds (None for others)."""
    if name == "serial":
        return SerialExecutor(), None
    if name == "process":
        return ProcessExecutor(args.workers), None
    from assistant_forget.core.ray_executor import RayExecutor

    ex = RayExecutor(args.ray_address, num_cpus=None if args.ray_address else args.workers)
    t = time.perf_counter()
    ex.start()
    return ex, time.perf_counter() - t


def repeated(maps: int, run):
    """Run a workload `maps` times in a row on one started executor: (each run's seconds, the last result).
    The last is the figure quoted: on Ray its workers are warm by then (torch and the package imported, as on
    a cluster that has been running), while a process pool starts new processes for every map."""
    secs, out = [], None
    for _ in range(maps):
        t = time.perf_counter()
        out = run()
        secs.append(time.perf_counter() - t)
    return secs, out


def digest(pop) -> str:
    """SHA-256 of a population's statistics (both roles, float bytes): equal iff bit for bit equal."""
    h = hashlib.sha256()
    for a in (pop.method_stats, pop.oracle_stats):
        h.update(a.tobytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=8, help="days the device lives (default 8)")
    ap.add_argument("--mean", type=float, default=10.0, help="mean utterances per day (default 10)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--forget-day", type=int, default=2, help="index of the forgotten day (default 2)")
    ap.add_argument("--models", type=int, default=8, help="K models per side: 2K tasks (default 8)")
    ap.add_argument("--horizon", type=int, default=2, help="later days each task trains (default 2)")
    ap.add_argument("--mode", default="fast", help="the forgetting method under test (default fast)")
    ap.add_argument("--workers", type=int, default=2, help="processes / Ray CPUs (default 2)")
    ap.add_argument("--executors", default=",".join(EXECUTORS), help="which, in order (default all three)")
    ap.add_argument("--ray-address", default=None, help="join this Ray cluster instead of a local instance")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here too")
    ap.add_argument("--audit-devices", type=int, default=0, metavar="N",
                    help="also audit a fleet of N devices (device_sim fleet, then `fleet audit`) through each "
                         "executor, from identical copies of the fleet (default 0: skip)")
    ap.add_argument("--audit-days", type=int, default=6, help="days each audited device lives (default 6)")
    ap.add_argument("--shadows", type=int, default=0, metavar="K",
                    help="also train the quality benchmark's LiRA shadows of the forget (K per side: 2K tasks, "
                         "oracle.shadow_stats) through each executor (default 0: skip)")
    ap.add_argument("--maps", type=int, default=1, metavar="N",
                    help="run each workload N times in a row on each executor and quote the last (default 1; "
                         "2: Ray's workers are warm for the second)")
    args = ap.parse_args(argv)
    if args.maps < 1:
        ap.error("--maps must be at least 1")
    chosen = [e.strip() for e in args.executors.split(",") if e.strip()]
    if not chosen or any(e not in EXECUTORS for e in chosen):
        ap.error(f"--executors: a comma-separated subset of {', '.join(EXECUTORS)}")
    torch.set_num_threads(1)
    audits = bench_audit(args, chosen) if args.audit_devices else None

    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        dev = Path(tmp) / "dev"
        t = time.perf_counter()
        n, _ = make_device(dev, args.days, args.seed, args.mean)
        print(f"device: {args.days} days, {n} utterances, trained in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        with api.session(dev) as eng:
            day = sorted(eng.days_with_data())[args.forget_day]
            sel = Selector("date", day, day)
            plan = make_plan(eng, sel, args.mode)
            rows = sel.match(eng.store)
            forget(eng, sel, args.mode)
            before = exact_replay(eng, day).before
            texts = list(dict.fromkeys(t for t, _ in only_forgotten([(u.text, u.intent) for u in rows],
                                                                    trained_texts(eng))))
            results, ray_start = [], None
            shadows = bench_shadows(eng, before, day, rows, args, chosen) if args.shadows else None
            for name in chosen:
                ex, started = start_executor(name, args)
                ray_start = started if started is not None else ray_start
                try:
                    timed = Timed(ex)
                    secs, pop = repeated(args.maps, lambda: population(eng, before, day, rows, texts, plan,
                                                                        models=args.models, horizon=args.horizon,
                                                                        seed=args.seed, executor=timed))
                    results.append({"executor": name, "seconds": secs[-1], "map_seconds": secs, "sha256": digest(pop),
                                    "task_cpu_s": sum(c for c, _, _ in timed.tasks),
                                    "task_wall_s": sum(w for _, w, _ in timed.tasks),
                                    "peak_rss_mib": max(r for _, _, r in timed.tasks)})
                finally:
                    ex.shutdown()
                print(f"  {name}: " + " then ".join(f"{x:.1f}" for x in results[-1]["map_seconds"]) + " s",
                      file=sys.stderr)
        shutil.rmtree(dev, ignore_errors=True)

    tasks = 2 * args.models
    base = next((r["seconds"] for r in results if r["executor"] == "serial"), None)
    print(f"\n{tasks} population tasks (K={args.models} per side, horizon {args.horizon} days, {args.mode}); "
          f"workers {args.workers}; device {args.days} days, mean {args.mean}/day, seed {args.seed}")
    print(f"{'executor':<10}{'seconds':>9}{'s/task':>9}{'speedup':>9}{'task CPU s':>12}{'CPU/wall':>10}"
          f"{'peak MiB':>10}  sha256 of the statistics")
    for r in results:
        r["speedup"] = base / r["seconds"] if base else None
        sp = f"{r['speedup']:.2f}x" if base else "-"
        print(f"{r['executor']:<10}{r['seconds']:>9.1f}{r['seconds'] / tasks:>9.2f}{sp:>9}{r['task_cpu_s']:>12.1f}"
              f"{r['task_cpu_s'] / r['seconds']:>10.2f}{r['peak_rss_mib']:>10.0f}  {r['sha256'][:16]}")
    same = len({r["sha256"] for r in results}) == 1
    print(f"identical results: {'yes' if same else 'NO'}" + (f"; Ray start {ray_start:.1f} s (not in its map's "
                                                              "seconds)" if ray_start is not None else ""))
    if args.json:
        args.json.write_text(json.dumps({"tasks": tasks, "models": args.models, "horizon": args.horizon,
                                         "mode": args.mode, "workers": args.workers, "days": args.days,
                                         "seed": args.seed, "ray_start_s": ray_start, "identical": same,
                                         "results": results, "audit": audits, "shadows": shadows},
                                        indent=2) + "\n")
    return 0 if same and all(x is None or x["identical"] for x in (audits, shadows)) else 1


def bench_shadows(eng, before, day: str, rows, args, chosen: list[str]) -> dict:
    """The LiRA shadows of the forget as verify and tools/bench_quality.py train them (the forgotten utterances,
    each as often as said, and as many CLINC150 test utterances; K per side) through each executor; prints
    seconds, speedup and the SHA-256 of the (in, out) statistics."""
    from collections import Counter

    from assistant_forget.device.clinc import load_clinc
    from assistant_forget.verify.oracle import shadow_stats

    times = Counter((u.text, u.intent) for u in rows)
    unseen = load_clinc()["test"][: len(times)]
    pool = [(t, i, n) for (t, i), n in times.items()] + [(t, i, 1) for t, i in unseen]
    results, ray_start = [], None
    for name in chosen:
        ex, started = start_executor(name, args)
        ray_start = started if started is not None else ray_start
        try:
            secs, (ins, outs) = repeated(args.maps, lambda: shadow_stats(eng, before, day, pool, args.shadows, 64,
                                                                          args.seed, ex))
        finally:
            ex.shutdown()
        results.append({"executor": name, "seconds": secs[-1], "map_seconds": secs,
                        "sha256": hashlib.sha256(ins.tobytes() + outs.tobytes()).hexdigest()})
        sec = secs[-1]
        print(f"  shadows {name}: " + " then ".join(f"{x:.1f}" for x in secs) + " s", file=sys.stderr)
    print(f"\nLiRA shadows: {2 * args.shadows} tasks (K={args.shadows} per side), pool {len(pool)} utterances; "
          f"workers {args.workers}")
    same = side_by_side(results, "task", 2 * args.shadows, "statistics", ray_start)
    return {"tasks": 2 * args.shadows, "pool": len(pool), "identical": same, "ray_start_s": ray_start,
            "results": results}


def side_by_side(results: list[dict], unit: str, units: int, what: str, ray_start: float | None,
                 passed: str | None = None) -> bool:
    """Print one workload's executors side by side (seconds, per `unit`, speedup over serial, the SHA-256 of
    `what` they produced); add each one's "speedup" to its result; True when every executor gave the same."""
    base = next((r["seconds"] for r in results if r["executor"] == "serial"), None)
    print(f"{'executor':<10}{'seconds':>9}{'s/' + unit:>10}{'speedup':>9}" + (f"{'passed':>8}" if passed else "")
          + f"  sha256 of the {what}")
    for r in results:
        r["speedup"] = base / r["seconds"] if base else None
        sp = f"{r['speedup']:.2f}x" if base else "-"
        print(f"{r['executor']:<10}{r['seconds']:>9.1f}{r['seconds'] / units:>10.2f}{sp:>9}"
              + (f"{r[passed]:>8}" if passed else "") + f"  {r['sha256'][:16]}")
    same = len({r["sha256"] for r in results}) == 1
    print(f"identical {what}: {'yes' if same else 'NO'}" + (f"; Ray start {ray_start:.1f} s" if ray_start else ""))
    return same


def bench_audit(args, chosen: list[str]) -> dict:
    """A fleet of --audit-devices devices simulated once (a process pool), copied once per executor, and
    audited (device_sim/audit.py, --attacks loss-mia: the receipts, api.verify, the byte scans) through each;
    prints seconds, speedup and the SHA-256 of the verdicts (the rows without their wall times)."""
    from datetime import date

    from assistant_forget.core.executor import local
    from device_sim.audit import audit_specs, run_audit, verdicts
    from device_sim.fleet import fleet_specs, run_fleet

    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        src = Path(tmp) / "fleet"
        t = time.perf_counter()
        with local(args.workers) as ex:
            run_fleet(src, fleet_specs(src, args.audit_devices, args.audit_days, args.seed, 4.0, date(2026, 1, 1)), ex)
        print(f"fleet: {args.audit_devices} devices x {args.audit_days} days simulated in "
              f"{time.perf_counter() - t:.1f} s", file=sys.stderr)
        results, ray_start = [], None
        for name in chosen:
            copies = iter(range(args.maps))

            def audit_a_copy():  # each map audits its own copy: an audit appends to the receipts it checks
                fleet = Path(tmp) / f"{name}-{next(copies)}"
                shutil.copytree(src, fleet)
                return run_audit(fleet / "audit", audit_specs(fleet, fleet / "audit", "loss-mia"), ex)

            ex, started = start_executor(name, args)
            ray_start = started if started is not None else ray_start
            try:
                secs, rep = repeated(args.maps, audit_a_copy)
                sec = secs[-1]
            finally:
                ex.shutdown()
            rows = rep["rows"]
            sha = hashlib.sha256(json.dumps([verdicts(r) for r in rows], sort_keys=True).encode()).hexdigest()
            s = rep["summary"]
            results.append({"executor": name, "seconds": sec, "map_seconds": secs, "sha256": sha, "forgets": s["audited"],
                            "devices_passed": s["devices_passed"], "device_cpu_s": sum(r["seconds"] for r in rows),
                            "verify_s": s["verify_seconds"], "oracle_s": s["oracle_seconds"]})
            print(f"  audit {name}: " + " then ".join(f"{x:.1f}" for x in secs) + " s", file=sys.stderr)
    print(f"\nfleet audit: {args.audit_devices} devices x {args.audit_days} days, {results[0]['forgets']} forgets "
          f"verified; workers {args.workers}")
    same = side_by_side(results, "device", args.audit_devices, "verdicts", ray_start, passed="devices_passed")
    return {"devices": args.audit_devices, "days": args.audit_days, "identical": same, "ray_start_s": ray_start,
            "results": results}


if __name__ == "__main__":
    sys.exit(main())
