"""Forgetting a phrase and utterance ids through the dashboard's HTTP endpoints on a real server: the preview
lists what matched, the forget runs as a job, and afterwards no response — the job's status, the pages, the
day lists, a repeated preview, the receipts download — holds a forgotten text or the phrase."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from assistant_forget import api
from assistant_forget.core.errors import DeviceBusy
from assistant_forget.dashboard import views
from assistant_forget.dashboard.jobs import Jobs
from assistant_forget.device.device import Device
from assistant_forget.device.store import LogStore
from dashkit import copy_device
from devkit import private_texts
from scan import find_texts


def every_response(server, days: list[str], job_ids: list[str]) -> dict[str, bytes]:
    paths = ["/", "/fragments/calendar", "/fragments/model", "/fragments/receipts", "/receipts.json"]
    paths += [p for d in days for p in (f"/api/day/{d}", f"/api/day/{d}/utterances")]
    paths += [f"/api/jobs/{j}" for j in job_ids]
    out = {}
    for p in paths:
        r = server.request(p)
        assert r.status == 200, (p, r.body[:200])
        out[p] = r.body
    return out


def holding(bodies: dict[str, bytes], texts: list[str]) -> dict[str, list[str]]:
    forms = {t: {t, t.lower(), json.dumps(t)[1:-1]} for t in texts}
    hits = {p: [t for t, fs in forms.items() if any(f.encode() in b for f in fs)] for p, b in bodies.items()}
    return {p: ts for p, ts in hits.items() if ts}


def test_a_phrase_then_ids_are_forgotten_and_no_response_holds_them(trained_device, tmp_path, serve):
    root = copy_device(trained_device, tmp_path / "dev")
    with LogStore(root / "logs.sqlite", readonly=True) as store:
        rows = store.all()
    days = sorted({u.local_date for u in rows})
    texts = private_texts(sorted({u.text for u in rows}))
    phrase = max(texts, key=len)  # a long text: it matches itself (and any longer text holding it)
    server = serve(root)
    server.login()

    plan = server.request("/api/preview", "POST", body={"kind": "contains", "contains": phrase.upper()})
    assert plan.status == 200
    matched = plan.json()["matched"]
    assert phrase in {m["text"] for m in matched}  # before the forget, the preview shows what will go
    gone = sorted({m["text"] for m in matched})
    stale = server.request("/api/forget", "POST", body={"kind": "contains", "contains": phrase.upper(), "expect": {
        "utterances": len(matched) + 1, "days": plan.json()["days"]}})
    assert stale.status == 409 and "changed since the preview" in stale.json()["error"] and api.history(root) == []
    job = server.request("/api/forget", "POST", body={"kind": "contains", "contains": phrase.upper(), "mode": "fast",
                                                      "expect": {"utterances": len(matched), "days": plan.json()["days"]}})
    assert job.status == 202 and job.json()["what"]["selector"] == {"kind": "contains"}
    done = server.wait_job(job.json()["id"])
    assert done["state"] == "done", done
    assert done["result"]["selector"] == {"kind": "contains"} and done["result"]["utterances"] == len(matched)

    # utterance ids: ticked in a day's list, then forgotten the same way
    day = days[-1]
    listed = server.request(f"/api/day/{day}/utterances").json()["utterances"]
    pick = [u for u in listed if u["text"] in texts][:2]
    assert pick
    ids = " ".join(u["id"] for u in pick)
    prev = server.request("/api/preview", "POST", body={"kind": "ids", "ids": ids}).json()
    assert sorted(m["id"] for m in prev["matched"]) == sorted(u["id"] for u in pick)
    job2 = server.request("/api/forget", "POST", body={"kind": "ids", "ids": ids, "mode": "exact"}).json()
    done2 = server.wait_job(job2["id"])
    assert done2["state"] == "done" and done2["result"]["state"] == "exact", done2
    gone += [u["text"] for u in pick]
    gone_ids = {m["id"] for m in matched} | {u["id"] for u in pick}

    kept = "\n".join(u.text for u in rows if u.id not in gone_ids)  # the same words kept on another row stay
    gone = [t for t in gone if t not in kept and t.lower() not in kept.lower()]
    assert phrase in gone
    bodies = every_response(server, days, [job.json()["id"], job2["id"]])
    assert holding(bodies, gone + [phrase.upper()]) == {}
    unverified = server.request(f"/api/verification/{done['result']['id']}")
    assert unverified.status == 400 and "not been verified" in unverified.json()["error"]
    again = server.request("/api/preview", "POST", body={"kind": "contains", "contains": phrase})
    assert again.status == 404 and phrase.encode() not in again.body
    assert [r["type"] for r in api.history(root)] == ["forget", "forget"]
    server.stop()
    assert find_texts(root, gone) == {}


def test_one_job_at_a_time(trained_device, tmp_path):
    root = copy_device(trained_device, tmp_path / "dev")
    jobs, release = Jobs(root), threading.Event()
    first = jobs.start("forget", {"selector": {"kind": "date"}}, lambda tick: release.wait(30) and None)
    with pytest.raises(DeviceBusy, match="already running a forget"):
        jobs.start("maintain", {}, lambda tick: None)
    release.set()
    jobs.wait(30)
    assert jobs.get(first.id).state == "done"
    failed = jobs.start("forget", {}, lambda tick: api.forget(root, date="2026-13-01"))
    jobs.wait(30)
    assert failed.state == "failed" and failed.error_kind == "BadInput" and "\n" not in failed.error
    bug = jobs.start("forget", {}, lambda tick: {}["missing"])
    jobs.wait(30)
    assert bug.error_kind == "InternalError" and "bug" in bug.error and "Traceback" not in bug.error


def test_calendar_states():
    st = {"days": {"2026-03-01": 4, "2026-03-02": 2, "2026-03-04": 9, "2026-03-05": 1},
          "untrained_days": ["2026-03-05"], "forgotten_days": ["2026-03-02", "2026-03-03"],
          "pending_exact_from": "2026-03-03", "state": "approximate"}
    history = [{"id": "a" * 32, "type": "forget", "days": {"2026-03-02": 3}, "state": "exact"},
               {"id": "b" * 32, "type": "forget", "days": {"2026-03-03": 5}, "state": "approximate"}]
    s = views.day_states(st, history)
    assert {d: v["state"] for d, v in s.items()} == {"2026-03-01": "trained", "2026-03-02": "forgotten",
                                                     "2026-03-03": "pending", "2026-03-04": "trained",
                                                     "2026-03-05": "untrained"}
    assert s["2026-03-02"]["receipt"] == "a" * 32 and s["2026-03-02"]["count"] == 2  # partly forgotten
    assert s["2026-03-03"]["forgotten"] == 5 and s["2026-03-03"]["count"] == 0
    grid = views.year_grid(s)
    assert [y["year"] for y in grid] == [2026] and all(len(w) == 7 for w in grid[0]["weeks"])
    cells = {c["day"]: c for w in grid[0]["weeks"] for c in w if c}
    assert len(cells) == 365 and cells["2026-03-04"]["level"] == 4 and not cells["2026-03-06"]["logged"]
    assert grid[0]["weeks"][0][:3] == [None, None, None]  # 2026-01-01 is a Thursday
    assert views.audit_day(history[0], history) == "2026-03-02"
    assert views.audit_day(history[0], history + [{"id": "c", "type": "forget", "days": {"2026-03-02": 2}}]) is None


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "assistant_forget.cli", *argv], capture_output=True, text=True,
                          timeout=60)


def test_serve_refuses_a_missing_device_and_a_taken_port(tmp_path):
    r = run_cli("serve", "--device", str(tmp_path / "none"))
    assert r.returncode == 3 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        (tmp_path / "dev").mkdir()
        (tmp_path / "dev" / "device.json").write_text('{"format": 1, "seed": 0}')
        r = run_cli("serve", "--device", str(tmp_path / "dev"), "--port", str(s.getsockname()[1]))
    assert r.returncode == 2 and "cannot listen" in r.stderr and "--port" in r.stderr


def test_serve_help_loads_no_web_or_model_library():
    probe = ("import sys\nfrom assistant_forget.cli import main\ntry:\n    main(['serve', '--help'])\n"
             "except SystemExit:\n    pass\nprint(sorted(m for m in ('torch', 'starlette', 'uvicorn', 'jinja2') "
             "if m in sys.modules), file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "--device" in r.stdout and r.stderr.strip().splitlines()[-1] == "[]"


def test_the_page_says_when_its_own_job_is_running(trained_device, tmp_path):
    from assistant_forget.dashboard.app import create_app
    from dashkit import asgi_request

    root = copy_device(trained_device, tmp_path / "dev")
    app, dash = create_app(root, 8000)
    host = {"Host": "127.0.0.1:8000"}
    entered = asgi_request(app, f"/?token={dash.keys.token}", headers=host)
    assert entered.status == 303
    session = {**host, "Cookie": entered.headers["set-cookie"].split(";")[0]}
    locked, release = threading.Event(), threading.Event()

    def call(tick) -> None:
        with Device.open(root).locked():  # as the library call of a running forget holds it
            locked.set()
            release.wait(30)

    try:
        dash.jobs.start("forget", {"selector": {"kind": "date"}}, call)
        assert locked.wait(30)
        page = asgi_request(app, "/", headers=session)
        assert b"This dashboard is running a forget" in page.body and b"another process" not in page.body
        assert b'data-job="' in page.body  # the page resumes following it
        day = sorted(api.status(root)["days"])[0]
        second = asgi_request(app, "/api/forget", "POST", {**session, "X-CSRF-Token": dash.keys.csrf},
                              json.dumps({"kind": "day", "date": day}).encode())
        assert second.status == 409 and "already running a forget" in second.json()["error"]
    finally:
        release.set()
        dash.close()
    assert not dash.reports.exists()
