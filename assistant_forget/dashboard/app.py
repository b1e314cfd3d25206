"""The dashboard's Starlette application: server-rendered pages and fragments, a few JSON endpoints.

    GET  /                          the page: model and proof, calendar, forget form, receipts
    GET  /fragments/{name}          one section re-rendered (calendar, model, receipts) after a job
    GET  /api/day/{day}             a day's state and counts by intent (no text)
    GET  /api/day/{day}/utterances  a day's utterances, texts included: only on the user's explicit click
    POST /api/preview               the dry-run plan of a selector (api.forget(..., dry_run=True))
    POST /api/forget                run the forget in the background -> a job; with "expect" (the preview's
                                    counts and days), refused (409) when the selector now matches otherwise
    POST /api/maintain              run the pending exact pass -> a job
    POST /api/verify                verify a forget receipt (api.verify) -> a job
    GET  /api/jobs/{id}             a job's progress, then its receipt or summary, or its error
    GET  /api/verification/{id}     the latest verification summary stored in a forget receipt
    GET  /receipts.json             every receipt, as a download
    GET  /verify/{report}/{plot}    a plot of a verification report

Every request passes the guard (security.py) first. Library errors come back as {"error", "error_kind"}
JSON (an API call) or an error page (a page), never as a traceback.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import tempfile
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import api
from ..core import method as methods
from ..core.errors import BadInput, CorruptFile, DeviceBusy, DeviceNotFound, ForgetError, NothingToForget
from . import views
from .jobs import Jobs, message
from .security import Guard, Secrets

HERE = Path(__file__).parent
PLOTS = ("losses.png", "roc.png", "exposure.png")  # the plots a verification report may hold (verify/report.py)


class Changed(ForgetError):
    """What a selector matches changed between its preview and the confirm. Nothing was changed."""


STATUS = {BadInput: 400, DeviceNotFound: 404, NothingToForget: 404, DeviceBusy: 409, Changed: 409, CorruptFile: 500}
FRAGMENTS = {"calendar": "_calendar.html", "model": "_model.html", "receipts": "_receipts.html"}


def status_of(e: BaseException) -> int:
    """The HTTP status of a failure: a library error is the request's (4xx), except a corrupt file, which is
    the device's (500, like any other failure)."""
    return next((code for cls, code in STATUS.items() if isinstance(e, cls)), 400 if isinstance(e, ForgetError)
                else 500)


class Dashboard:
    """The application's state: the device, its jobs, the templates, where verification reports go."""

    def __init__(self, root: Path, keys: Secrets) -> None:
        self.root = Path(root)
        self.keys = keys
        self.jobs = Jobs(self.root)
        self.reports = Path(tempfile.mkdtemp(prefix="af-dashboard-reports-"))
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                                     autoescape=select_autoescape(default=True, default_for_string=True))
        self.templates.filters["short"] = lambda s: (s or "")[:8]

    def close(self) -> None:
        """Wait for a running job, then remove the verification reports (they stay only while serving)."""
        self.jobs.wait()
        shutil.rmtree(self.reports, ignore_errors=True)

    # -- rendering --------------------------------------------------------------------------------
    def render(self, name: str, **context) -> str:
        return self.templates.get_template(name).render(csrf=self.keys.csrf, device=str(self.root),
                                                        modes=methods.names(commits=True), **context)

    async def page(self, request: Request) -> Response:
        try:
            data = await run_in_threadpool(views.overview, self.root)
        except Exception as e:  # noqa: BLE001 - a page shows the library's message, never a traceback
            kind, text = message(e)
            return HTMLResponse(self.render("error.html", error=text, error_kind=kind), status_of(e))
        return HTMLResponse(self.render("index.html", **data, job=self._running()))

    async def fragment(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in FRAGMENTS:
            return JSONResponse({"error": f"no fragment {name!r}", "error_kind": "BadInput"}, 404)
        try:
            data = await run_in_threadpool(views.overview, self.root)
        except Exception as e:  # noqa: BLE001
            return self.error(e)
        return HTMLResponse(self.render(FRAGMENTS[name], **data, job=self._running()))

    def _running(self) -> dict | None:
        job = self.jobs.running()
        return job.public() if job else None

    @staticmethod
    def error(e: BaseException) -> JSONResponse:
        kind, text = message(e)
        return JSONResponse({"error": text, "error_kind": kind}, status_of(e))

    async def call(self, fn, *args, **kwargs) -> Response:
        """`fn(*args, **kwargs)` in a worker thread, its result as JSON or its failure as a readable error."""
        try:
            return JSONResponse(await run_in_threadpool(fn, *args, **kwargs))
        except Exception as e:  # noqa: BLE001
            return self.error(e)

    @staticmethod
    async def body(request: Request) -> dict:
        try:
            data = json.loads(await request.body() or b"{}")
        except ValueError:
            raise BadInput("the request body must be JSON") from None
        if not isinstance(data, dict):
            raise BadInput("the request must be a JSON object")
        return data

    # -- reading ------------------------------------------------------------------------------------
    async def day(self, request: Request) -> Response:
        return await self.call(views.day_detail, self.root, request.path_params["day"])

    async def utterances(self, request: Request) -> Response:
        day = request.path_params["day"]
        return await self.call(lambda: {"day": day, "utterances": views.day_utterances(self.root, day)})

    async def stored(self, request: Request) -> Response:
        return await self.call(views.stored_verification, self.root, request.path_params["receipt"])

    async def job(self, request: Request) -> Response:
        job = self.jobs.get(request.path_params["job"])
        if job is None:
            return JSONResponse({"error": "no such job (the server keeps the latest ones only)",
                                 "error_kind": "BadInput"}, 404)
        return JSONResponse(job.public())

    async def receipts(self, request: Request) -> Response:
        try:
            history = await run_in_threadpool(api.history, self.root)
        except Exception as e:  # noqa: BLE001
            return self.error(e)
        body = json.dumps(history, indent=2, sort_keys=True, ensure_ascii=True) + "\n"
        return Response(body, media_type="application/json",
                        headers={"content-disposition": 'attachment; filename="receipts.json"'})

    async def plot(self, request: Request) -> Response:
        report, name = request.path_params["report"], request.path_params["plot"]
        path = self.reports / report / name
        if not re.fullmatch(r"[0-9a-f]{16}", report) or name not in PLOTS or not path.is_file():
            return JSONResponse({"error": "no such plot", "error_kind": "BadInput"}, 404)
        return FileResponse(path, media_type="image/png")

    # -- changing -----------------------------------------------------------------------------------
    def _plan(self, sel: dict) -> dict:
        plan = api.forget(self.root, dry_run=True, **sel)
        return {**plan, "expected": views.expected_seconds(plan, api.history(self.root))}

    async def preview(self, request: Request) -> Response:
        try:
            sel = views.selector(await self.body(request))
        except Exception as e:  # noqa: BLE001
            return self.error(e)
        return await self.call(self._plan, sel)

    async def forget(self, request: Request) -> Response:
        try:
            body = await self.body(request)
            sel = views.selector(body)
            plan = await run_in_threadpool(api.forget, self.root, dry_run=True, **sel)
            expect = body.get("expect")
            if isinstance(expect, dict) and (expect.get("utterances"), expect.get("days")) != (plan["utterances"],
                                                                                               plan["days"]):
                raise Changed(f"the device changed since the preview: this now matches {plan['utterances']} "
                              f"utterance(s) on {len(plan['days'])} day(s); preview again (nothing was changed)")
            what = {"selector": _public(sel), "days": plan["days"], "utterances": plan["utterances"],
                    "method": plan["method"]}
            total = plan["exact_replay_days"] if plan["exact"] else None
            job = self.jobs.start("forget", what, lambda tick: api.forget(self.root, progress=tick, **sel), total)
        except Exception as e:  # noqa: BLE001
            return self.error(e)
        return JSONResponse(job.public(), 202)

    async def maintain(self, request: Request) -> Response:
        try:
            st = await run_in_threadpool(api.status, self.root)
            start = st["pending_exact_from"]
            if st["state"] != "approximate" or start is None:
                raise BadInput("no exact pass is pending: the model is exact")
            total = sum(1 for d in st["days"] if d >= start and d not in st["untrained_days"])
            job = self.jobs.start("maintain", {"from": start}, lambda tick: api.maintain(self.root, progress=tick),
                                  total)
        except Exception as e:  # noqa: BLE001
            return self.error(e)
        return JSONResponse(job.public(), 202)

    async def verify(self, request: Request) -> Response:
        try:
            rid = (await self.body(request)).get("receipt")
            history = await run_in_threadpool(api.history, self.root)
            receipt = next((r for r in history if r["id"] == rid and r.get("type") == "forget"), None)
            if receipt is None:
                raise BadInput("choose a forget receipt to verify")
            day = views.audit_day(receipt, history)
            if day is None:
                raise BadInput("every day of this forget was forgotten again later; verify the later receipt")
            out = self.reports / secrets.token_hex(8)

            def run(tick) -> dict:
                summary = api.verify(self.root, day, report=out, progress=tick)
                plots = [p for p in PLOTS if (out / p).is_file()]
                return {**summary, "report": None, "plots": [f"/verify/{out.name}/{p}" for p in plots]}

            job = self.jobs.start("verify", {"receipt": rid, "day": day}, run)
        except Exception as e:  # noqa: BLE001
            return self.error(e)
        return JSONResponse(job.public(), 202)


def _public(sel: dict) -> dict:
    """A selector as a receipt words it: dates, or only the kind (and count) for a phrase or ids."""
    if "date" in sel:
        return {"kind": "date", "from": sel["date"], "to": sel["date"]}
    if "start" in sel:
        return {"kind": "range", "from": sel["start"], "to": sel["end"]}
    if "ids" in sel:
        return {"kind": "utterance", "count": len(sel["ids"])}
    return {"kind": "contains"}


def create_app(root: Path, port: int, keys: Secrets | None = None) -> tuple[Guard, Dashboard]:
    """The guarded ASGI application for device `root` served on 127.0.0.1:`port`, and its state."""
    keys = keys or Secrets()
    dash = Dashboard(root, keys)
    routes = [
        Route("/", dash.page),
        Route("/fragments/{name}", dash.fragment),
        Route("/api/day/{day}", dash.day),
        Route("/api/day/{day}/utterances", dash.utterances),
        Route("/api/jobs/{job}", dash.job),
        Route("/api/verification/{receipt}", dash.stored),
        Route("/api/preview", dash.preview, methods=["POST"]),
        Route("/api/forget", dash.forget, methods=["POST"]),
        Route("/api/maintain", dash.maintain, methods=["POST"]),
        Route("/api/verify", dash.verify, methods=["POST"]),
        Route("/receipts.json", dash.receipts),
        Route("/verify/{report}/{plot}", dash.plot),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes)
    return Guard(app, port, keys), dash
