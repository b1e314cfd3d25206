"""Helpers of the dashboard tests: device copies, a real `assistant-forget serve` process with a plain HTTP
client that can send any Host header, and where the system's Chromium and chromedriver are."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


def copy_device(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock", ".work"))
    return dst


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes

    def json(self):
        return json.loads(self.body)


class Server:
    """`python -m assistant_forget.cli serve --device DIR --port 0` in its own process."""

    def __init__(self, device: Path) -> None:
        self.device = device
        self.proc = subprocess.Popen([sys.executable, "-m", "assistant_forget.cli", "serve", "--device", str(device),
                                      "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        found = threading.Event()

        def read() -> None:
            for line in self.proc.stdout:
                self.lines.append(line)
                if "token=" in line:
                    found.set()
        threading.Thread(target=read, daemon=True).start()
        if not found.wait(60):
            self.stop()
            raise AssertionError(f"serve printed no URL: {self.lines} {self.proc.stderr.read()}")
        m = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=([A-Za-z0-9_-]+)", "".join(self.lines))
        self.port, self.token = int(m.group(1)), m.group(2)
        self.url = m.group(0)
        self.cookie: str | None = None
        self.csrf: str | None = None

    def request(self, path: str, method: str = "GET", *, body: object = None, headers: dict | None = None,
                host: str | None = None, cookie: bool = True, csrf: bool = True) -> Response:
        """One request; by default with the session cookie and, for a POST, the CSRF token."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        h = {"Host": host or f"127.0.0.1:{self.port}", **(headers or {})}
        if cookie and self.cookie:
            h["Cookie"] = self.cookie
        if method == "POST" and csrf and self.csrf:
            h["X-CSRF-Token"] = self.csrf
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        headers_out: dict[str, str] = {}
        for k, v in r.getheaders():
            headers_out[k.lower()] = f"{headers_out[k.lower()]}, {v}" if k.lower() in headers_out else v
        out = Response(r.status, headers_out, r.read())
        conn.close()
        return out

    def login(self) -> Response:
        """Spend the one-time token: keep the session cookie, read the page's CSRF token."""
        r = self.request(f"/?token={self.token}", cookie=False)
        assert r.status == 303, r
        self.cookie = r.headers["set-cookie"].split(";")[0]
        page = self.request("/")
        self.csrf = re.search(rb'name="csrf-token" content="([^"]+)"', page.body).group(1).decode()
        return r

    def wait_job(self, job_id: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.request(f"/api/jobs/{job_id}").json()
            if job["state"] != "running":
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} still running after {timeout} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def browser_paths() -> tuple[str, str]:
    """(chromium, chromedriver) from PATH; a missing one fails the test (it is a requirement, not an option)."""
    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail("the browser tests need Chromium and its driver on PATH (Debian: apt-get install chromium "
                    f"chromium-driver); found chromium={chromium}, chromedriver={driver}", pytrace=False)
    return chromium, driver


def asgi_request(app, path: str, method: str = "GET", headers: dict | None = None, body: bytes = b"") -> Response:
    """One request to an ASGI `app` in this process (no socket): for tests that need the server's state."""
    import asyncio

    raw_path, _, query = path.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": raw_path, "raw_path": raw_path.encode(), "query_string": query.encode(), "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80)}
    sent: list[dict] = []
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    out: dict[str, str] = {}
    for k, v in start.get("headers", []):
        out[k.decode().lower()] = f"{out[k.decode().lower()]}, {v.decode()}" if k.decode().lower() in out else v.decode()
    return Response(start["status"], out, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))
