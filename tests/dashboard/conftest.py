"""Fixtures of the dashboard tests: one small trained device per session (tests work on copies), servers
stopped after each test, and the system's headless Chromium driven by Selenium."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dashkit import Server, browser_paths
from devkit import make_device, persona_log

DAYS = int(os.environ.get("AF_DASHBOARD_DAYS", "5"))  # tools/dashboard_screenshots.py asks for a longer log


@pytest.fixture(scope="session")
def trained_device(tmp_path_factory) -> Path:
    """A trained device of DAYS days of a synthetic persona, built once; tests work on copies."""
    return make_device(tmp_path_factory.mktemp("dashboard") / "built", persona_log(days=DAYS, mean=7.0))


@pytest.fixture
def serve():
    """Start servers on devices; every one is stopped at the end of the test."""
    started: list[Server] = []

    def start(device: Path) -> Server:
        s = Server(device)
        started.append(s)
        return s
    yield start
    for s in started:
        s.stop()


@pytest.fixture
def browser():
    """Headless Chromium through the system chromedriver, logging network events (their bodies are checked)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = browser_paths()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1250", "--no-first-run", "--disable-extensions", "--hide-scrollbars"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    d = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    d.set_page_load_timeout(60)
    yield d
    d.quit()
