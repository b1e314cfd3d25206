"""The dashboard's guard against a real `serve` process: the one-time token and its cookie, the Host check
(DNS rebinding), CSRF on every change, no CORS, no-store and CSP on every response, and a busy device."""

from __future__ import annotations

import pytest

from assistant_forget import api
from assistant_forget.device.device import Device
from dashkit import Server, copy_device
from scan import snapshot

PAGES = ["/", "/fragments/calendar", "/api/day/2026-02-03", "/api/day/2026-02-03/utterances", "/receipts.json",
         "/static/app.js", "/api/jobs/0123456789abcdef"]


@pytest.fixture(scope="module")
def device(trained_device, tmp_path_factory):
    return copy_device(trained_device, tmp_path_factory.mktemp("security") / "dev")


@pytest.fixture(scope="module")
def server(device):
    """One server for the module's tests that do not spend its token themselves."""
    s = Server(device)
    try:
        s.login()
        yield s
    finally:
        s.stop()


def day_of(device) -> str:
    return sorted(api.status(device)["days"])[1]


def test_without_the_session_cookie_everything_is_403(server):
    for path in PAGES:
        r = server.request(path, cookie=False)
        assert r.status == 403, path
        assert b"link" in r.body and r.headers["cache-control"].startswith("no-store")
    assert server.request("/api/preview", "POST", body={"kind": "day", "date": "2026-02-03"}, cookie=False).status == 403
    assert server.request("/", cookie=False, headers={"Cookie": f"af_dashboard_{server.port}=guess"}).status == 403


def test_the_token_works_once_and_leaves_the_url(device, serve):
    s = serve(device)
    assert s.request("/?token=wrong" + s.token[5:], cookie=False).status == 403
    assert s.request(f"/?token={s.token}", "HEAD", cookie=False).status == 403  # a link preview does not spend it
    first = s.login()
    assert first.headers["location"] == "/"  # the token leaves the address bar
    flags = [f.strip() for f in first.headers["set-cookie"].split(";")]
    assert "HttpOnly" in flags and "SameSite=Strict" in flags and "Path=/" in flags
    assert s.request("/").status == 200
    again = s.request(f"/?token={s.token}", cookie=False)
    assert again.status == 403, "a used token let a second browser in"
    assert s.token.encode() not in s.request("/").body


def test_a_foreign_host_header_is_refused(server):
    for host in ("evil.example", f"evil.example:{server.port}", "127.0.0.1", f"127.0.0.1:{server.port + 1}",
                 f"localhost.evil.example:{server.port}", f"[::1]:{server.port}"):
        r = server.request("/", host=host)
        assert 400 <= r.status < 500, host
        assert b"Host" in r.body
    assert server.request("/", host=f"localhost:{server.port}").status == 200
    r = server.request(f"/?token={server.token}", cookie=False, host="evil.example")
    assert r.status == 400 and "set-cookie" not in r.headers


def test_looking_writes_nothing(server, device):
    before = snapshot(device)
    day = day_of(device)
    for path in ["/", "/fragments/calendar", "/fragments/model", "/fragments/receipts", "/receipts.json",
                 f"/api/day/{day}", f"/api/day/{day}/utterances"]:
        assert server.request(path).status == 200, path
    assert server.request("/api/preview", "POST", body={"kind": "day", "date": day}).status == 200
    assert snapshot(device) == before and not (device / ".lock").exists()


def test_every_post_needs_the_csrf_token(server, device):
    before = snapshot(device)
    day = day_of(device)
    for path, body in [("/api/forget", {"kind": "day", "date": day}), ("/api/preview", {"kind": "day", "date": day}),
                       ("/api/maintain", {}), ("/api/verify", {"receipt": "x"})]:
        assert server.request(path, "POST", body=body, csrf=False).status == 403, path
        assert server.request(path, "POST", body=body, csrf=False,
                              headers={"X-CSRF-Token": server.csrf[:-2] + "xx"}).status == 403, path
    cross = server.request("/api/forget", "POST", body={"kind": "day", "date": day},
                           headers={"Origin": "http://evil.example"})
    assert cross.status == 403, "a cross-site POST with a stolen CSRF token got through"
    for method in ("PUT", "DELETE", "PATCH"):
        assert server.request("/api/forget", method, body={}).status == 405
    assert snapshot(device) == before and api.history(device) == []
    ok = server.request("/api/preview", "POST", body={"kind": "day", "date": day})
    assert ok.status == 200 and ok.json()["days"] == {day: api.status(device)["days"][day]}


def test_every_response_is_uncached_under_a_strict_policy_and_without_cors(server):
    for path in PAGES + ["/?token=x"]:
        for cookie in (True, False):
            r = server.request(path, cookie=cookie, headers={"Origin": f"http://127.0.0.1:{server.port}"})
            h = r.headers
            assert h["cache-control"] == "no-store, max-age=0", path
            assert "script-src 'self'" in h["content-security-policy"] and "frame-ancestors 'none'" in \
                h["content-security-policy"] and "unsafe" not in h["content-security-policy"]
            assert h["x-content-type-options"] == "nosniff" and h["referrer-policy"] == "no-referrer"
            assert not any(k.startswith("access-control-") for k in h), path
    pre = server.request("/api/forget", "OPTIONS", headers={"Origin": "http://evil.example",
                                                            "Access-Control-Request-Method": "POST"})
    assert pre.status in (403, 405) and not any(k.startswith("access-control-") for k in pre.headers)
    page = server.request("/").body
    assert b"<script>" not in page and b" style=" not in page and b"onclick" not in page


def test_library_errors_are_readable_messages(server, device):
    cases = [({"kind": "day", "date": "2026-13-45"}, 400), ({"kind": "day", "date": "2999-01-01"}, 400),
             ({"kind": "contains", "contains": "   "}, 400), ({"kind": "range", "from": "2026-02-05", "to": "2026-02-01"}, 400),
             ({"kind": "ids", "ids": "nosuchid"}, 404), ({"kind": "contains", "contains": "zqxv never said"}, 404),
             ({"kind": "day", "date": day_of(device), "mode": "sisa"}, 400), ({"kind": "what"}, 400)]
    for body, status in cases:
        r = server.request("/api/preview", "POST", body=body)
        assert r.status == status, (body, r.body)
        err = r.json()
        assert err["error"] and "\n" not in err["error"] and "Traceback" not in err["error"], body
    assert "nothing" in server.request("/api/preview", "POST", body=cases[5][0]).json()["error"]
    for body in ({"kind": "day"}, {"kind": "range", "from": "2026-02-03"}, {"kind": "contains", "contains": " "}):
        assert "--" not in server.request("/api/preview", "POST", body=body).json()["error"]  # worded for the page
    bad = server.request("/api/preview", "POST", body=None, headers={"Content-Type": "application/json"})
    assert bad.status == 400
    assert server.request("/api/maintain", "POST", body={}).json()["error_kind"] == "BadInput"  # nothing pending
    assert server.request("/api/day/yesterday").status == 400


def test_a_second_server_while_a_forget_runs_says_the_device_is_busy(server, device):
    """The test holds the device's writer lock, as a forget running in another process does."""
    day = day_of(device)
    before = snapshot(device)
    with Device.open(device).locked():  # creates DIR/.lock, as every writer does
        page = server.request("/")
        assert page.status == 200 and b"This device is busy" in page.body
        r = server.request("/api/forget", "POST", body={"kind": "day", "date": day})
        assert r.status == 409 and r.json()["error_kind"] == "DeviceBusy"
        assert "busy" in r.json()["error"] and "another assistant-forget process" in r.json()["error"]
        assert server.request("/api/maintain", "POST", body={}).status in (400, 409)
        assert server.request("/api/preview", "POST", body={"kind": "day", "date": day}).status == 200  # reads work
    assert {k: v for k, v in snapshot(device).items() if k != ".lock"} == before
    assert b"This device is busy" not in server.request("/").body


def test_a_damaged_file_is_an_error_page_not_a_traceback(server, device):
    path = device / "receipts.jsonl"
    assert not path.exists()
    path.write_text("{not json\n")
    try:
        page = server.request("/")
        assert page.status == 500 and b"receipts.jsonl" in page.body and b"line 1" in page.body
        assert b"Traceback" not in page.body and b'id="page-error"' in page.body
        r = server.request("/fragments/receipts")
        assert r.status == 500 and r.json()["error_kind"] == "CorruptFile"
    finally:
        path.unlink()
    assert server.request("/").status == 200
