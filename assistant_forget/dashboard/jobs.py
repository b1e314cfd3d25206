"""Background jobs: a forget, an exact pass (maintain) or a verification, one at a time, with progress.

A job runs a library call in a thread so that the page can poll its progress. What a job keeps is what
its status may show after it ends: its kind, the selector's public description (dates, or only the kind for
a phrase or ids, as a receipt says it), progress as days and counts, and the result — a receipt or a
verification summary, which never hold text. The phrase itself lives only in the running call's arguments.

Errors become messages: a library error (ForgetError: bad input, busy, corrupt file, ...) as the library
words it, a refusal of the file system naming the file, anything else as an internal error without a
traceback.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..core.errors import DeviceBusy, ForgetError
from .views import busy

KEEP = 32  # finished jobs remembered (their status and result), oldest dropped first


def message(e: BaseException) -> tuple[str, str]:
    """(kind, one readable line) for an exception a job or a request raised."""
    if isinstance(e, ForgetError):
        return type(e).__name__, str(e) or type(e).__name__
    if isinstance(e, OSError):
        where = " -> ".join(str(f) for f in (e.filename, getattr(e, "filename2", None)) if f)
        return "OSError", (f"{where}: " if where else "") + f"{e.strerror or e}; check the device directory's " \
                                                             "files, permissions and free space"
    first = (str(e).splitlines() or [""])[0][:200]
    return "InternalError", (f"internal error ({type(e).__name__}{': ' + first if first else ''}); this is a bug "
                             "in assistant-forget: please report it with what you did")


@dataclass
class Job:
    """One background call and what its status shows."""

    kind: str  # "forget" | "maintain" | "verify"
    what: dict  # public description: the selector as a receipt words it, or the receipt verified
    total: int | None = None  # days the call is expected to (re)train, when known
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    state: str = "running"  # "running" | "done" | "failed"
    done: int = 0  # days (re)trained so far
    last: str | None = None  # the last day reported
    started: float = field(default_factory=time.monotonic)
    seconds: float | None = None
    result: dict | None = None
    error: str | None = None
    error_kind: str | None = None

    def tick(self, day: object) -> None:
        """The library's progress callback: one more day trained or replayed."""
        self.done += 1
        self.last = str(day)

    def public(self) -> dict:
        return {"id": self.id, "kind": self.kind, "what": self.what, "state": self.state, "done": self.done,
                "total": self.total, "last": self.last,
                "elapsed_s": round(self.seconds if self.seconds is not None else time.monotonic() - self.started, 1),
                "result": self.result, "error": self.error, "error_kind": self.error_kind}


class Jobs:
    """The dashboard's jobs on one device: at most one running; a busy device refuses a new one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._threads: list[threading.Thread] = []

    def running(self) -> Job | None:
        return next((j for j in self._jobs.values() if j.state == "running"), None)

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def start(self, kind: str, what: dict, call: Callable[[Callable[[object], None]], dict | None],
              total: int | None = None, done: Callable[[Job], None] | None = None) -> Job:
        """Run `call(progress)` in a thread as a new job; DeviceBusy when a job or another process is writing."""
        with self._lock:
            current = self.running()
            if current is not None:
                raise DeviceBusy(f"this dashboard is already running a {current.kind}; wait until it finishes")
            if busy(self.root):
                raise DeviceBusy(f"{self.root} is busy: another assistant-forget process (a forget, training, an "
                                 "exact pass or another dashboard) holds its lock; try again when it finishes")
            job = Job(kind, what, total)
            self._jobs[job.id] = job
            while len(self._jobs) > KEEP:
                self._jobs.popitem(last=False)
            thread = threading.Thread(target=self._run, args=(job, call, done), name=f"dashboard-{kind}", daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()
            return job

    @staticmethod
    def _run(job: Job, call, done) -> None:
        try:
            job.result = call(job.tick)
            job.state = "done"
        except BaseException as e:  # noqa: BLE001 - every failure becomes the job's message
            job.error_kind, job.error = message(e)
            job.state = "failed"
        finally:
            job.seconds = time.monotonic() - job.started
            if done is not None:
                done(job)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for running jobs (on shutdown: a forget is finished, not cut off)."""
        for t in list(self._threads):
            t.join(timeout)
