"""Crash injection: SIGKILL train, forget (fast, exact), maintain, export and a what-if verify, then prove the
device recovers.

An injection copies a template device, runs one operation in a child process and kills it at the n-th hit
of a named crash point (assistant_forget/crashpoints.py) or after a random delay. A fresh process then
checks the device as the crash left it (store, ledger checksums, model and live export load), opens it for
writing (finishing an interrupted forget or exact pass, removing verification work copies), checks the
forget's guarantees, runs train, retries what never became durable, runs maintain, and demands: no journal,
no forgotten text in any file (tests/scan.py), no stray ledger file, export version or work copy, every
exact pass with exactly one receipt, and ledger + export files equal to the uninterrupted reference.

Every child runs with TMPDIR set to a temp directory of its own injection; after recovery that directory
and the verification report directory (DIR-verify) are byte-scanned too: no text of the day may be
anywhere the tool wrote. The operations: `train`, `forget_exact`, `forget_fast`, `maintain` (the pending
exact pass of a fast forget), `export` (onnx,coreml -> onnx) and `export_coreml` (onnx -> onnx,coreml),
both re-exporting the live version with other formats (the atomic directory exchange), and `verify_whatif`
(`verify --date` of a day not forgotten, which works on a copy of the device; after recovery the day is
forgotten, and nothing of the copy may remain).

A crash point an operation never reaches (not implemented yet, or not on its path) is never picked: its
injections are kills after a random delay instead, and the summary lists it under `points_never_hit`.
Children fork from a forkserver that imported torch once. `python tools/crash_inject.py --runs 500`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "tests"):  # the package, and the shared byte scan (tests/scan.py)
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from assistant_forget.core import crashpoints

OPS = ("train", "forget_exact", "forget_fast", "maintain", "export", "export_coreml",
       "verify_whatif")  # operations the harness interrupts
PRELOAD = ["torch", "torch._dynamo", "torch.onnx", "onnx", "onnxruntime", "assistant_forget.api",  # imported once,
           "assistant_forget.runner.engine", "assistant_forget.export.convert", "assistant_forget.export.runtime", "scan", "devkit"]
PRELOAD_IF_PRESENT = ["assistant_forget.verify.verification", "assistant_forget.verify.report", "coremltools"]
PROBE = "set an alarm for seven"  # what the app asks the loaded export
KNOWN_WINDOWS: dict[str, str] = {}  # crash points after which a reader may find the device unusable: none
# (`publish.old_moved_aside` was one until publish exchanged the directories atomically)
EXPECTED_POINTS = {  # crash points each operation should pass (reported when never hit, not an error)
    "maintain": ("forget.exact_pass_journaled", "forget.exact_pass_synced", "forget.exact_pass_receipt"),
    "export": ("publish.exchanged",), "export_coreml": ("publish.exchanged",), "verify_whatif": ("verify.copy_made",),
}
WORK = ".work"  # DIR/.work: where verification copies of the device live (workdir.py); empty after recovery
MAINTAIN_JOURNAL = "maintain.json"  # DIR/maintain.json: an exact pass in progress (forget.py)


@dataclass(frozen=True)
class HarnessConfig:
    days: int = 3  # days in the synthetic log (every exact forget replays them, so keep it small)
    mean: float = 5.0  # mean utterances per day
    persona_seed: int = 3  # seed of the persona and its log
    forget_index: int = 1  # index of the local day the forget operations remove
    untrained: int = 2  # days the `train` operation still has to train
    timeout_s: float = 600.0  # a child running longer than this is a failure


@dataclass
class Outcome:
    op: str  # interrupted operation
    how: str  # "point" (named crash point) or "delay" (random delay)
    point: str | None  # crash point name for "point" runs
    n: int | None  # which hit of the point killed it
    delay_s: float | None  # seconds after start for "delay" runs
    killed: bool  # the child died of SIGKILL (a delay longer than the operation lets it finish)
    phase: str  # a forget found after the kill: "not_started" | "pending" | "done" ("" for other operations)
    after_kill: list[str] = field(default_factory=list)  # consistency problems as the crash left the device
    after_recovery: list[str] = field(default_factory=list)  # problems after recovery (must be empty)
    died_before: str | None = None  # how a first run died unplanned (then recovered and run again)


@dataclass(frozen=True)
class Profile:
    seconds: float  # wall time of an uninterrupted run, fork included
    hits: dict[str, int]  # crash point -> hits during that run


# -- what runs in the children ---------------------------------------------------------------------

def _child(conn, fn: str, args: tuple, crash_at: str | None, log: str | None, tmpdir: str | None = None) -> None:
    """Child entry point: set TMPDIR, arm the crash point, run CHILD_FUNCS[fn](*args), send ("ok"|"error", value)."""
    if tmpdir:  # everything the tool puts in a temp directory lands where the parent scans it
        os.environ["TMPDIR"] = tmpdir
        tempfile.tempdir = tmpdir  # the forkserver may have cached the default already
    crashpoints.configure(crash_at, log)
    try:
        result = ("ok", CHILD_FUNCS[fn](*args))
    except BaseException as e:  # reported to the parent, which decides
        result = ("error", f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}")
    conn.send(result)
    conn.close()


def build_templates(work: str, cfg: dict) -> dict:
    """Template devices under `work`: full (trained), partial, pending (after a fast forget), coreml, never."""
    from assistant_forget import api
    from devkit import make_device, persona_log
    from scan import find_texts

    c = HarnessConfig(**cfg)
    root = Path(work)
    records = persona_log(c.days, seed=c.persona_seed, mean=c.mean)
    days = sorted({r["timestamp"][:10] for r in records})
    day = days[c.forget_index]
    make_device(root / "full", records)
    make_device(root / "never", records, keep=lambda r: r["timestamp"][:10] != day)
    make_device(root / "partial", records, train=False)
    api.train(root / "partial", until=days[-1 - c.untrained])
    shutil.copytree(root / "full", root / "pending")
    api.forget(root / "pending", date=day, mode="fast")
    shutil.copytree(root / "full", root / "coreml")
    api.export(root / "coreml", "onnx,coreml")
    for name in ("full", "never", "partial", "pending", "coreml"):
        shutil.rmtree(root / f"{name}-verify", ignore_errors=True)
    said = [r["text"] for r in records if r["timestamp"][:10] == day]
    public = find_texts(root / "never", said)  # said on other days too, or part of the public base
    texts = [t for t in said if t not in public]
    if find_texts(root / "full", texts).keys() != set(texts):
        raise RuntimeError("the byte scan does not find the day's texts on the device that holds them")
    return {"days": days, "day": day, "texts": texts}


def run_op(dev: str, op: str, day: str) -> dict | None:
    """One operation on `dev`, as the CLI runs it."""
    from assistant_forget import api

    if op == "train":
        return api.train(Path(dev))
    if op in ("forget_exact", "forget_fast"):
        return api.forget(Path(dev), date=day, mode=op.split("_")[1])
    if op == "maintain":
        return api.maintain(Path(dev))
    if op == "export":  # the live version loses its CoreML package: the directories are exchanged
        return api.export(Path(dev), "onnx")
    if op == "export_coreml":  # the live version gains one: exchanged too
        return api.export(Path(dev), "onnx,coreml")
    if op == "verify_whatif":  # `day` is not forgotten on the template: a what-if on a copy of the device
        return {k: v for k, v in api.verify(Path(dev), date=day).items() if isinstance(v, (str, int, float, bool))}
    raise ValueError(f"unknown operation {op!r}")


def consistency(dev: Path) -> list[str]:
    """What is wrong with `dev` as it is now, for a reader: store, ledger, model, live export."""
    from assistant_forget import api
    from assistant_forget.device.device import Device
    from assistant_forget.runner.engine import open_engine
    from assistant_forget.core.ledger import Ledger
    from assistant_forget.export.publish import current_export, verify_export
    from assistant_forget.export.runtime import load_current
    from assistant_forget.device.store import LogStore

    problems = []
    checks = [("status", lambda: api.status(dev)), ("ledger", lambda: Ledger(dev / "ledger").verify())]
    for name, check in checks:
        try:
            check()
        except Exception as e:
            problems.append(f"{name}: {type(e).__name__}: {e}")
    try:
        d = Device.open(dev)
        with LogStore(d.store_path, readonly=True) as store:
            open_engine(d, store)
        conn = sqlite3.connect(f"{d.store_path.resolve().as_uri()}?mode=ro", uri=True)
        verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
        conn.close()
        if verdict != "ok":
            problems.append(f"store: integrity_check says {verdict}")
    except Exception as e:
        problems.append(f"engine: {type(e).__name__}: {e}")
    try:
        if current_export(dev) is None:
            problems.append("export: nothing is published")
        else:
            rt = load_current(dev)
            verify_export(rt.path)
            rt.intent(PROBE)
            if rt.version != rt.path.name:
                problems.append(f"export: ONNX metadata says {rt.version}, directory is {rt.path.name}")
    except Exception as e:
        problems.append(f"export: {type(e).__name__}: {e}")
    return problems


def leftovers(dev: Path) -> list[str]:
    """Files a finished operation must not leave: unreferenced ledger files, other export versions, temp files."""
    from assistant_forget.core.ledger import Ledger
    from assistant_forget.export.publish import CURRENT, current_version, exports_dir

    ledger = Ledger(dev / "ledger")
    keep = ledger.referenced(ledger.load_manifest()) | {"manifest.json"}
    rel = [p.relative_to(ledger.root).as_posix() for p in ledger.root.rglob("*") if p.is_file()]
    out = [f"ledger/{r} is not referenced" for r in rel if r not in keep]
    live = current_version(dev)
    out += [f"exports/{p.name} is not live" for p in exports_dir(dev).iterdir() if p.name not in (CURRENT, live)]
    out += [f"{p.relative_to(dev)} is a temp file" for p in dev.rglob(".tmp-*")]
    return out + work_copies(dev)


def work_copies(dev: Path) -> list[str]:
    """Verification work copies left under DIR/.work (recovery must remove every one)."""
    work = dev / WORK
    if not work.is_dir():
        return []
    return [f"{p.relative_to(dev)} is a verification work copy" for p in sorted(work.iterdir())]


def maintain_journal(dev: Path) -> tuple[str | None, list[str]]:
    """The receipt id DIR/maintain.json holds (an exact pass in progress), or None; problems reading it."""
    path = dev / MAINTAIN_JOURNAL
    if not path.exists():
        return None, []
    try:
        rid = json.loads(path.read_text(encoding="utf-8"))["receipt"]
        return (rid, []) if isinstance(rid, str) else (None, [f"{MAINTAIN_JOURNAL}: receipt id is {rid!r}"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, [f"{MAINTAIN_JOURNAL}: unreadable after the kill ({type(e).__name__}: {e})"]


def receipt_checks(dev: Path, op: str, journaled: str | None) -> list[str]:
    """Every receipt line once (raw lines: `receipts.read_all` merges lines of one id and would hide a
    duplicate); the exact pass a kill interrupted after its journal ended with exactly one `exact_pass`
    line (its journal's id); an interrupted `maintain` ends with exactly one exact pass receipt."""
    from assistant_forget.device import receipts

    path = dev / receipts.FILENAME
    counts: Counter = Counter()
    out = [f"journal: {MAINTAIN_JOURNAL} is still there"] if (dev / MAINTAIN_JOURNAL).exists() else []
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            counts[(r.get("type"), r.get("id"))] += 1
        except (ValueError, AttributeError) as e:
            out.append(f"receipts: line {i} unreadable ({e})")
    out += [f"receipts: {t} receipt {rid} appears {n} times"
            for (t, rid), n in sorted(counts.items(), key=str) if n > 1]
    passes = sorted(rid for t, rid in counts if t == "exact_pass")
    if journaled is not None and counts[("exact_pass", journaled)] != 1:
        out.append(f"receipts: the journaled exact pass {journaled} has {counts[('exact_pass', journaled)]} "
                   "exact_pass receipts, expected 1")
    if op == "maintain" and len(passes) != 1:
        out.append(f"receipts: {len(passes)} exact_pass receipts after the interrupted maintain, expected 1")
    return out


def outside_checks(dirs: list[Path], texts: list[str]) -> list[str]:
    """What the tool wrote outside the device (TMPDIR, the report directory): no text of the day, no log copy."""
    from scan import find_texts

    out = []
    for base in (Path(d) for d in dirs):
        if not base.exists():
            continue
        for text, paths in find_texts(base, texts).items():
            out.append(f"outside the device: text {text!r} in {[str(p.relative_to(base.parent)) for p in paths][:3]}")
        out += [f"outside the device: {p.relative_to(base.parent)} is a copy of the log"
                for p in sorted(base.rglob("logs.sqlite*"))]
    return out


def export_matches_model(dev: Path) -> list[str]:
    """The live export must be the current model's (same version, same exact/approximate state)."""
    from assistant_forget.device.device import Device
    from assistant_forget.runner.engine import open_engine
    from assistant_forget.export.convert import make_spec, model_version
    from assistant_forget.export.publish import current_version
    from assistant_forget.device.store import LogStore

    d = Device.open(dev)
    with LogStore(d.store_path, readonly=True) as store:
        eng = open_engine(d, store)
        state = "approximate" if eng.manifest().approximate else "exact"
        spec = make_spec(eng.model, (eng.base.root / "tokenizer.model").read_bytes(), list(eng.base.labels),
                         state, eng.base.labels.oos_threshold)
        want = model_version(eng.model, spec)
    live = current_version(dev)
    return [] if live == want else [f"export: live version {live} is not the model's {want} ({state})"]


def forget_checks(dev: Path, day: str, texts: list[str]) -> list[str]:
    """A finished forget: journal gone, no text of the day in any file, no ledger file of the day, a receipt."""
    from assistant_forget.device import receipts
    from assistant_forget.runner.forget import JOURNAL
    from scan import find_texts

    out = [f"journal: {JOURNAL} is still there"] if (dev / JOURNAL).exists() else []
    out += [f"text {t!r} still in {[p.name for p in ps]}" for t, ps in find_texts(dev, texts).items()]
    out += [f"ledger: {p.name} holds the forgotten day" for p in (dev / "ledger").rglob(f"{day}*")]
    forgets = [r for r in receipts.read_all(dev) if r.get("type") == "forget"]
    if len(forgets) != 1:
        out.append(f"receipts: {len(forgets)} forget receipts, expected 1")
    return out


def after_crash(dev: str, op: str, day: str, texts: list[str], ref: str) -> dict:
    """Everything after the kill, in order: inspect, recover, inspect, finish, compare with the reference."""
    from assistant_forget import api
    from assistant_forget.runner.forget import JOURNAL
    from assistant_forget.device.store import LogStore
    from devkit import model_files

    root = Path(dev)
    after_kill = consistency(root)
    journaled, after = maintain_journal(root)  # an exact pass the kill interrupted after its journal
    phase = ""
    forgetting = op.startswith("forget")
    if forgetting:
        with LogStore(root / "logs.sqlite", readonly=True) as store:
            still = store.day_counts().get(day, 0)
        phase = "pending" if (root / JOURNAL).exists() else "not_started" if still else "done"
    with api.session(root):
        pass  # opening for writing finishes an interrupted forget or exact pass, removes work copies
    after += work_copies(root)
    if forgetting and phase != "not_started":
        after += forget_checks(root, day, texts) + leftovers(root) + export_matches_model(root)
        behind = api.status(root)["untrained_days"]
        after += [f"status: days trained before the forget are untrained after it: {behind}"] if behind else []
    if op == "maintain":
        run_op(dev, op, day)  # the phone runs maintain again at the next charging window (train would run
        # a pending exact pass without a receipt)
    if op == "verify_whatif":  # verification changes nothing on the device; run it again, then forget the day
        after += leftovers(root) + consistency(root)
        if model_files(root) != model_files(Path(ref).parent / "full"):
            after.append("verify: the what-if changed the device's ledger or export")
        run_op(dev, op, day)
        after += work_copies(root)
        api.forget(root, date=day, mode="exact")
    api.train(root)
    if phase == "not_started" or op in ("export", "export_coreml"):
        run_op(dev, op, day)  # the command did not finish: the user (or the phone) runs it again
    api.maintain(root)
    after += consistency(root) + leftovers(root) + export_matches_model(root) + receipt_checks(root, op, journaled)
    if op.startswith("forget") or op in ("maintain", "verify_whatif"):
        after += forget_checks(root, day, texts)
    mine, want = model_files(root), model_files(Path(ref))
    if mine != want:
        diff = sorted(set(mine) ^ set(want)) or sorted(k for k in mine if mine[k] != want[k])
        after.append(f"model files differ from the reference: {diff[:4]}")
    return {"phase": phase, "after_kill": after_kill, "after_recovery": list(dict.fromkeys(after))}


CHILD_FUNCS = {"build_templates": build_templates, "run_op": run_op, "after_crash": after_crash}
TEMPLATE = {"train": "partial", "forget_exact": "full", "forget_fast": "full", "maintain": "pending",
            "export": "coreml", "export_coreml": "full", "verify_whatif": "full"}  # where each operation starts
REFERENCE = {"train": "full", "forget_exact": "never", "forget_fast": "never", "maintain": "never",
             "export": "full", "export_coreml": "coreml",
             "verify_whatif": "never"}  # the device its finished result must equal, file for file


# -- the parent --------------------------------------------------------------------------------------

class Harness:
    """Templates, profiles and injections in one work directory; children come from a forkserver."""

    def __init__(self, work: Path, cfg: HarnessConfig = HarnessConfig()) -> None:
        self.work, self.cfg = Path(work), cfg
        self.ctx = mp.get_context("forkserver")
        self.ctx.set_forkserver_preload(PRELOAD + [m for m in PRELOAD_IF_PRESENT if _importable(m)])
        self.templates = self.work / "templates"
        self.info: dict = {}
        self.profiles: dict[str, Profile] = {}
        self.profile_errors: dict[str, str] = {}  # operation -> why its uninterrupted run failed
        self._runs = itertools.count(1)

    def _start(self, fn: str, *args, crash_at: str | None = None, log: str | None = None,
               tmpdir: str | None = None):
        recv, send = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(target=_child, args=(send, fn, args, crash_at, log, tmpdir), daemon=True)
        proc.start()
        send.close()
        return proc, recv

    def call(self, fn: str, *args, log: str | None = None, tmpdir: str | None = None):
        """Run CHILD_FUNCS[fn](*args) in a child to completion; its result, or RuntimeError with its error."""
        proc, recv = self._start(fn, *args, log=log, tmpdir=tmpdir)
        status, value = "error", f"ran longer than {self.cfg.timeout_s} s"
        try:
            if recv.poll(self.cfg.timeout_s):
                status, value = recv.recv()
        except EOFError:
            value = "died without an answer"
        proc.join(10)
        proc.kill()  # a no-op when it has exited
        if status != "ok":
            raise RuntimeError(f"{fn} failed: {value}")
        return value

    def prepare(self, profile: bool = True, ops: tuple[str, ...] = OPS) -> None:
        """Build the templates and (with `profile`) time every operation and count its crash point hits.

        An operation whose uninterrupted run fails (a part not implemented yet) is recorded in
        `profile_errors` and still injected, by delay: its recovery checks then say what is wrong.
        """
        shutil.rmtree(self.templates, ignore_errors=True)
        self.templates.mkdir(parents=True)
        self.info = self.call("build_templates", str(self.templates), asdict(self.cfg),
                              tmpdir=str(self._tmpdir("templates")))
        for op in ops if profile else ():
            log = self.work / f"hits-{op}.log"
            log.unlink(missing_ok=True)
            dev = self._fresh(op)
            t0 = time.perf_counter()
            try:
                self.call("run_op", str(dev), op, self.info["day"], log=str(log), tmpdir=str(self._tmpdir(dev.name)))
            except RuntimeError as e:
                self.profile_errors[op] = str(e)[:2000]
            hits = Counter(log.read_text(encoding="utf-8").split()) if log.exists() else Counter()
            self.profiles[op] = Profile(time.perf_counter() - t0, dict(sorted(hits.items())))
            self._discard(dev)

    def points_never_hit(self) -> dict[str, list[str]]:
        """Crash points an operation should pass (EXPECTED_POINTS) that its profiled run never reached."""
        out = {op: [p for p in pts if p not in self.profiles[op].hits]
               for op, pts in EXPECTED_POINTS.items() if op in self.profiles}
        return {op: pts for op, pts in out.items() if pts}

    def _fresh(self, op: str) -> Path:
        dev = self.work / "runs" / f"{next(self._runs):05d}-{op}"
        shutil.rmtree(dev, ignore_errors=True)
        shutil.copytree(self.templates / TEMPLATE[op], dev)
        return dev

    def _tmpdir(self, name: str) -> Path:
        """The TMPDIR of one injection's children (scanned, then removed, after recovery)."""
        path = self.work / "tmp" / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    @staticmethod
    def _outside(dev: Path) -> list[Path]:
        """Where the tool writes outside the device for `dev`: its TMPDIR and its report directory."""
        return [dev.parents[1] / "tmp" / dev.name, dev.parent / f"{dev.name}-verify"]

    def _discard(self, dev: Path) -> None:
        for path in [dev, *self._outside(dev)]:
            shutil.rmtree(path, ignore_errors=True)

    def inject(self, op: str, point: str | None = None, n: int = 1, delay: float | None = None,
               cli: bool = False) -> Outcome:
        """Run `op`, kill it at the n-th hit of `point` (or after `delay` seconds), check and recover.

        With `cli`, the operation is the `assistant-forget` command in a new Python process, armed through
        the AF_CRASH_AT environment variable, as a user or the phone's scheduler would run it.
        """
        if (point is None) == (delay is None):
            raise ValueError("give exactly one of point and delay")
        crash_at = None if point is None else f"{point}:{n}"
        dev = self._fresh(op)
        tmpdir = str(self._tmpdir(dev.name))
        if cli:
            killed, raised = self._run_cli(dev, op, crash_at, delay, tmpdir), None
        else:
            killed, raised = self._run_child(dev, op, crash_at, delay, tmpdir)
        died = None
        if raised is not None and raised[0] == "died":  # another death than ours (a native crash, the OOM
            died = raised[1]  # killer): still a crash the device must recover from, then the kill is run again
            lost = self._recover(Outcome(op, "died", point, n, delay, False, ""), dev, tmpdir)
            dev = self._fresh(op)
            tmpdir = str(self._tmpdir(dev.name))
            killed, raised = self._run_child(dev, op, crash_at, delay, tmpdir)
        out = Outcome(op, "point" if point else "delay", point, n if point else None, delay, killed, "")
        if died is not None:
            out.died_before = died
            out.after_recovery += [f"after the unplanned death: {p}" for p in lost.after_recovery]
        if raised is not None and raised[0] == "error":
            out.after_kill.append(f"{op} raised instead of reaching its kill: {raised[1].splitlines()[0]}")
        elif raised is not None and raised[0] == "died":
            out.after_kill.append(f"{op} died twice before reaching its kill, without an answer ({raised[1]})")
        return self._recover(out, dev, tmpdir)

    def _run_child(self, dev: Path, op: str, crash_at: str | None, delay: float | None,
                   tmpdir: str) -> tuple[bool, tuple[str, str] | None]:
        """Run `op` in a child armed at `crash_at` (or killed after `delay`): (died of our SIGKILL, its answer).

        The answer is None when killed or finished, ("error", traceback) when it raised, and ("died", how)
        when it died of something else without answering.
        """
        proc, recv = self._start("run_op", str(dev), op, self.info["day"], crash_at=crash_at, tmpdir=tmpdir)
        proc.join(self.cfg.timeout_s if delay is None else delay)
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        killed = proc.exitcode == -signal.SIGKILL
        raised = None
        if not killed and recv.poll():
            try:
                raised = recv.recv()
            except EOFError:
                raised = ("died", f"exit code {proc.exitcode}")
        elif not killed and proc.exitcode != 0:
            raised = ("died", f"exit code {proc.exitcode}")
        recv.close()
        return killed, raised

    def _recover(self, out: Outcome, dev: Path, tmpdir: str) -> Outcome:
        """Check `dev` as the interruption left it, recover it, check again, scan outside it; then discard it."""
        op = out.op
        try:
            res = self.call("after_crash", str(dev), op, self.info["day"], self.info["texts"],
                            str(self.templates / REFERENCE[op]), tmpdir=tmpdir)
            out.phase, out.after_recovery = res["phase"], out.after_recovery + res["after_recovery"]
            out.after_kill = out.after_kill + res["after_kill"]
        except RuntimeError as e:
            out.after_recovery = out.after_recovery + [str(e)]
        out.after_recovery += outside_checks(self._outside(dev), self.info["texts"])
        self._discard(dev)
        return out

    def _run_cli(self, dev: Path, op: str, crash_at: str | None, delay: float | None, tmpdir: str) -> bool:
        """Run `op` as `python -m assistant_forget.cli ...`; True when it died of SIGKILL."""
        day = self.info["day"]
        argv = {"train": ["train"], "forget_exact": ["forget", "--date", day, "--mode", "exact"],
                "forget_fast": ["forget", "--date", day, "--mode", "fast"], "maintain": ["maintain"],
                "export": ["export", "--format", "onnx"], "export_coreml": ["export", "--format", "onnx,coreml"],
                "verify_whatif": ["verify", "--date", day]}[op]
        env = {k: v for k, v in os.environ.items() if k not in (crashpoints.ENV_AT, crashpoints.ENV_LOG)}
        env["TMPDIR"] = tmpdir
        if crash_at:
            env[crashpoints.ENV_AT] = crash_at
        proc = subprocess.Popen([sys.executable, "-m", "assistant_forget.cli", *argv, "--device", str(dev)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(self.cfg.timeout_s if delay is None else delay)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return proc.returncode == -signal.SIGKILL

    def inject_many(self, jobs: list[dict], workers: int = 1) -> list[Outcome]:
        """`inject(**job)` for every job, `workers` at a time (each injection uses its own device copy)."""
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda job: self.inject(**job), jobs))

    def random_job(self, rng: random.Random, point_share: float = 0.6, ops: tuple[str, ...] = OPS) -> dict:
        """A random operation, to kill at a random hit of a random point it passes, or after a random delay.

        Only points the operation's profiled run passed are picked; one it never reached costs nothing here.
        """
        op = rng.choice(ops)
        prof = self.profiles[op]
        if prof.hits and rng.random() < point_share:
            point = rng.choice(sorted(prof.hits))
            return {"op": op, "point": point, "n": rng.randint(1, prof.hits[point])}
        return {"op": op, "delay": rng.uniform(0.0, prof.seconds)}


def summarize(outcomes: list[Outcome]) -> dict:
    """Counts by operation and by crash point: runs, killed, consistent after kill/recovery, forget phases."""
    def table(key) -> dict:
        rows: dict[str, Counter] = defaultdict(Counter)
        for o in outcomes:
            r = rows[key(o)]
            r["runs"] += 1
            r["killed"] += o.killed
            r["consistent_after_kill"] += not o.after_kill
            r["consistent_after_recovery"] += not o.after_recovery
            if o.phase:
                r[f"forget_{o.phase}"] += 1
                r["forgets_completed"] += not o.after_recovery
        return {k: dict(v) for k, v in sorted(rows.items())}

    outside = [o for o in outcomes if any(p.startswith("outside the device") for p in o.after_recovery)]
    traces = [o for o in outcomes if any(p.startswith(("text ", "outside the device: text")) for p in o.after_recovery)]
    return {"runs": len(outcomes), "killed": sum(o.killed for o in outcomes),
            "consistent_after_kill": sum(not o.after_kill for o in outcomes),
            "consistent_after_recovery": sum(not o.after_recovery for o in outcomes),
            "forgets": sum(bool(o.phase) for o in outcomes),
            "forgets_completed": sum(bool(o.phase) and not o.after_recovery for o in outcomes),
            "failures": sum(bool(o.after_recovery) for o in outcomes),
            "unplanned_deaths": sum(o.died_before is not None for o in outcomes),
            "runs_with_forgotten_text_left": len(traces), "runs_with_traces_outside_device": len(outside),
            "inconsistent_after_kill": dict(Counter(o.point or "(random delay)" for o in outcomes if o.after_kill)),
            "by_operation": table(lambda o: o.op),
            "by_point": table(lambda o: o.point or "(random delay)")}


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=50, help="injections to run (default 50; BENCHMARKS.md: 500)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random choices")
    p.add_argument("--days", type=int, default=HarnessConfig.days, help="days in the template devices")
    p.add_argument("--jobs", type=int, default=1, help="injections run at a time (default 1)")
    p.add_argument("--json", type=Path, default=None, help="also write the summary and every problem here")
    p.add_argument("--ops", default=",".join(OPS), help=f"comma-separated operations to interrupt (default all: "
                   f"{','.join(OPS)})")
    args = p.parse_args(argv)
    ops = tuple(o for o in args.ops.split(",") if o)
    if not ops or set(ops) - set(OPS):
        p.error(f"--ops takes names from {','.join(OPS)}")
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="crash-inject-") as tmp:
        h = Harness(Path(tmp), HarnessConfig(days=args.days))
        t0 = time.perf_counter()
        h.prepare(ops=ops)
        print(f"templates and profiles ready in {time.perf_counter() - t0:.1f} s; operation seconds: "
              + ", ".join(f"{op} {pr.seconds:.2f}" for op, pr in h.profiles.items()), file=sys.stderr)
        for op, err in h.profile_errors.items():
            print(f"PROFILE FAIL {op}: {err.splitlines()[0] if err else err}", file=sys.stderr)
        for op, pts in h.points_never_hit().items():
            print(f"note: {op} never reached {', '.join(pts)} (killed by delay instead)", file=sys.stderr)
        jobs = [h.random_job(rng, ops=ops) for _ in range(args.runs)]
        outcomes: list[Outcome] = []
        for i in range(0, len(jobs), 25):
            for o in h.inject_many(jobs[i:i + 25], args.jobs):
                outcomes.append(o)
                if o.after_recovery or (o.after_kill and o.point not in KNOWN_WINDOWS):
                    print(f"FAIL {asdict(o)}", file=sys.stderr)
            print(f"{len(outcomes)}/{args.runs} runs, {sum(bool(o.after_recovery) for o in outcomes)} failures, "
                  f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
        summary = {**summarize(outcomes), "seconds": round(time.perf_counter() - t0, 1), "seed": args.seed,
                   "config": asdict(h.cfg), "points_never_hit": h.points_never_hit(),
                   "profile_errors": {op: e.splitlines()[0] for op, e in h.profile_errors.items()},
                   "profiles": {op: asdict(pr) for op, pr in h.profiles.items()}}
    print(json.dumps({k: v for k, v in summary.items() if k != "profiles"}, indent=2))
    unexpected = set(summary["inconsistent_after_kill"]) - set(KNOWN_WINDOWS)
    if args.json:
        problems = [asdict(o) for o in outcomes if o.after_kill or o.after_recovery]
        args.json.write_text(json.dumps({**summary, "problems": problems}, indent=2) + "\n", encoding="utf-8")
    return 0 if summary["failures"] == 0 and not unexpected and not h.profile_errors else 1


if __name__ == "__main__":
    sys.exit(main())
