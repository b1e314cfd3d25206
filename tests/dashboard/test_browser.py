"""The dashboard in a real headless Chromium: open it with the token URL, see the calendar, pick a day, forget
it through the preview and confirm, see the receipt and the day marked forgotten, run the exact pass and a
verification; then no HTTP response after the forget, no page and no file of the device holds a forgotten text.

With AF_DASHBOARD_SCREENSHOTS=DIR the flow also saves docs' screenshots there (tools/dashboard_screenshots.py).
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections import Counter
from pathlib import Path

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from assistant_forget import api
from assistant_forget.device.store import LogStore
from dashkit import copy_device
from devkit import private_texts
from scan import find_texts

SHOTS = os.environ.get("AF_DASHBOARD_SCREENSHOTS")


def shot(driver, name: str, element_id: str) -> None:
    """Save a screenshot of the window with `element_id` in view (only when screenshots are asked for)."""
    if not SHOTS:
        return
    driver.execute_script("document.getElementById(arguments[0]).scrollIntoView({block: 'start'});"
                          "window.scrollBy(0, -12);", element_id)
    driver.save_screenshot(str(Path(SHOTS) / f"dashboard-{name}.png"))


def waiter(driver, timeout: float = 60) -> WebDriverWait:
    """A wait that retries when the page re-rendered a section under it (a fragment refresh)."""
    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,))


def leaked(body: bytes, texts: list[str]) -> list[str]:
    """The texts `body` holds, as stored, lower-cased, JSON-escaped or HTML-escaped."""
    out = []
    for t in texts:
        forms = {t, t.lower(), json.dumps(t)[1:-1], json.dumps(t, ensure_ascii=False)[1:-1], html.escape(t)}
        if any(f.encode() in body for f in forms):
            out.append(t)
    return out


def network_bodies(driver) -> dict[str, bytes]:
    """URL -> body of every response the browser received since the performance log was last read."""
    out: dict[str, bytes] = {}
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") != "Network.responseReceived":
            continue
        rid, url = msg["params"]["requestId"], msg["params"]["response"]["url"]
        try:
            got = driver.execute_cdp_cmd("Network.getResponseBody", {"requestId": rid})
        except Exception:  # noqa: BLE001 - a redirect or an evicted body has none to read
            continue
        body = base64.b64decode(got["body"]) if got.get("base64Encoded") else got["body"].encode()
        out[f"{url}#{rid}"] = body
    return out


def test_forget_a_day_through_the_page(trained_device, tmp_path, serve, browser):
    root = copy_device(trained_device, tmp_path / "dev")
    before = api.status(root)
    days = sorted(before["days"])
    day = days[len(days) // 2]
    with LogStore(root / "logs.sqlite", readonly=True) as store:
        on_day = store.by_day(day)
        kept = {u.text for u in store.all() if u.local_date != day}
    kept_blob = "\n".join(kept).encode()  # a text also said (in any case) on a kept day legitimately stays
    forgotten = [t for t in private_texts(sorted({u.text for u in on_day})) if not leaked(kept_blob, [t])]
    assert forgotten, "the chosen day has no text of its own to look for"

    server = serve(root)
    d, wait = browser, waiter(browser)
    d.get(server.url)
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#calendar button.cell.day")))
    assert "token=" not in d.current_url, "the token stays in the address bar"
    cookie = next(c for c in d.get_cookies() if c["name"] == f"af_dashboard_{server.port}")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    cells = d.find_elements(By.CSS_SELECTOR, "#calendar button.cell.day")
    assert sorted(c.get_attribute("data-day") for c in cells) == days
    assert {c.get_attribute("data-state") for c in cells} == {"trained"}

    # a day: its counts by intent, its utterances only on the explicit click
    d.find_element(By.CSS_SELECTOR, f'#calendar button.cell[data-day="{day}"]').click()
    panel = wait.until(EC.visibility_of_element_located((By.ID, "day")))
    wait.until(lambda _: panel.find_elements(By.CSS_SELECTOR, "table.intents tbody tr"))
    rows = {r.find_elements(By.TAG_NAME, "td")[0].text: int(r.find_elements(By.TAG_NAME, "td")[1].text)
            for r in panel.find_elements(By.CSS_SELECTOR, "table.intents tbody tr")}
    assert rows == dict(Counter(u.intent for u in on_day))
    assert not leaked(panel.text.encode(), forgotten), "texts shown before they were asked for"
    shot(d, "calendar", "model")
    panel.find_element(By.ID, "show-utterances").click()
    wait.until(EC.visibility_of_element_located((By.ID, "utterance-list")))
    assert set(leaked(panel.text.encode(), forgotten)) == set(forgotten)

    # the preview: the plan, before anything changes
    panel.find_element(By.ID, "forget-day").click()
    preview = wait.until(EC.visibility_of_element_located((By.ID, "confirm-forget")))
    box = d.find_element(By.ID, "preview")
    assert f"Forget {len(on_day)} utterance" in preview.text
    shown = box.text.lower()  # the fact labels are upper-cased by the style sheet
    assert day in shown and "expected time" in shown and "repair budget" in shown and "method" in shown
    assert api.status(root)["days"] == before["days"] and api.history(root) == []
    shot(d, "preview", "calendar")

    # confirm: progress, then the receipt; the day is marked forgotten by that receipt
    d.get_log("performance")  # what came before the forget is not checked
    preview.click()
    receipt_box = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#receipt[data-receipt]")))
    receipt = api.history(root)[-1]
    assert receipt_box.get_attribute("data-receipt") == receipt["id"] and receipt["days"] == {day: len(on_day)}
    assert receipt["id"] in receipt_box.text
    cell = wait.until(lambda _: d.find_element(By.CSS_SELECTOR, f'#calendar button.cell[data-day="{day}"][data-receipt]'))
    assert cell.get_attribute("data-receipt") == receipt["id"]
    assert cell.get_attribute("data-state") == ("pending" if receipt["state"] == "approximate" else "forgotten")
    assert d.find_element(By.ID, "preview").text == "" and d.find_element(By.ID, "day").text == ""
    assert d.find_element(By.CSS_SELECTOR, f'#receipts-table tr[data-receipt="{receipt["id"]}"]')
    cell.click()  # a forgotten day names its receipt
    named = wait.until(EC.visibility_of_element_located((By.ID, "day-receipt")))
    assert receipt["id"] in named.text and f"{len(on_day)} utterances forgotten" in named.text
    assert "highlight" in d.find_element(By.CSS_SELECTOR, f'#receipts-table tr[data-receipt="{receipt["id"]}"]') \
        .get_attribute("class")
    assert not d.find_elements(By.ID, "show-utterances")  # nothing left to show
    shot(d, "receipt", "model")

    # the exact pass from the page, when the forget left one pending
    if receipt["state"] == "approximate":
        d.find_element(By.ID, "maintain-button").click()
        wait.until(lambda _: d.find_element(By.ID, "model-state").text == "exact")
        assert d.find_element(By.CSS_SELECTOR, f'#calendar button.cell[data-day="{day}"]').get_attribute(
            "data-state") == "forgotten"
        assert "exact pass" in d.find_element(By.ID, "receipt").text.lower()
        assert api.history(root)[-1]["type"] == "exact_pass"

    # the verification of the forget, with its figures and plots
    d.find_element(By.CSS_SELECTOR, f'button[data-action="verify"][data-receipt="{receipt["id"]}"]').click()
    ver = waiter(d, 180).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#verification[data-passed]")))
    assert ver.get_attribute("data-passed") == "true" and "model equals the oracle" in ver.text.lower()
    plots = ver.find_elements(By.CSS_SELECTOR, "img.plot")
    assert plots and all(d.execute_script("return arguments[0].naturalWidth", p) > 0 for p in plots)
    audits = api.history(root)[0]["verification"]["audits"]
    assert audits and audits[-1]["passed"] is True
    shot(d, "verification", "verification")
    stored = wait.until(lambda _: d.find_element(
        By.CSS_SELECTOR, f'#receipts-table tr[data-receipt="{receipt["id"]}"] button[data-action="figures"]'))
    assert stored.text.startswith("passed (1 audit")
    stored.click()
    wait.until(lambda _: "as stored in the receipt" in d.find_element(By.ID, "verification").text)

    # nothing the browser received after the forget, and nothing in the page, holds a forgotten text
    bodies = network_bodies(d)
    assert any("/api/jobs/" in u for u in bodies) and any("/fragments/calendar" in u for u in bodies)
    assert {u: leaked(b, forgotten) for u, b in bodies.items() if leaked(b, forgotten)} == {}
    assert not leaked(d.page_source.encode(), forgotten)
    assert d.execute_script("return localStorage.length + sessionStorage.length") == 0

    # ... nor any endpoint fetched afterwards with the browser's session, receipts download included
    server.cookie = f"{cookie['name']}={cookie['value']}"
    paths = ["/", "/fragments/calendar", "/fragments/model", "/fragments/receipts", "/receipts.json",
             f"/api/verification/{receipt['id']}"]
    paths += [p for dd in days for p in (f"/api/day/{dd}", f"/api/day/{dd}/utterances")]
    paths += sorted({u.split("#")[0].split(str(server.port), 1)[1] for u in bodies if "/api/jobs/" in u})
    for path in paths:
        r = server.request(path)
        assert r.status == 200 and not leaked(r.body, forgotten), path
    assert server.request(f"/api/day/{day}/utterances").json()["utterances"] == []
    assert json.loads(server.request("/receipts.json").body) == api.history(root)

    # ... nor any file of the device, SQLite's -wal and -shm included
    server.stop()
    assert find_texts(root, forgotten) == {}


def test_forget_a_phrase_through_the_page(trained_device, tmp_path, serve, browser):
    root = copy_device(trained_device, tmp_path / "dev")
    with LogStore(root / "logs.sqlite", readonly=True) as store:
        rows = store.all()
    phrase = max(private_texts(sorted({u.text for u in rows})), key=len)
    server = serve(root)
    d, wait = browser, waiter(browser)
    d.get(server.url)
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#calendar button.cell.day")))

    # a range: two clicks on the calendar fill it; its preview lists both days; Cancel changes nothing
    days = sorted({u.local_date for u in rows})
    d.find_element(By.CSS_SELECTOR, 'input[name="kind"][value="range"]').click()
    for day in (days[2], days[1]):
        d.find_element(By.CSS_SELECTOR, f'#calendar button.cell[data-day="{day}"]').click()
    wait.until(lambda _: d.find_element(By.CSS_SELECTOR, 'input[name="to"]').get_attribute("value") == days[2])
    assert d.find_element(By.CSS_SELECTOR, 'input[name="from"]').get_attribute("value") == days[1]
    d.find_element(By.ID, "preview-button").click()
    wait.until(EC.visibility_of_element_located((By.ID, "confirm-forget")))
    shown = [r.text.split()[0] for r in d.find_elements(By.CSS_SELECTOR, "#preview table.plan-days tbody tr")]
    assert shown == days[1:3]
    d.find_element(By.ID, "cancel-forget").click()
    assert not d.find_element(By.ID, "preview").is_displayed() and api.history(root) == []

    # ticked utterances: the day's list, two ticks, their preview; Cancel again
    d.find_element(By.CSS_SELECTOR, 'input[name="kind"][value="day"]').click()
    d.find_element(By.CSS_SELECTOR, f'#calendar button.cell[data-day="{days[0]}"]').click()
    wait.until(EC.element_to_be_clickable((By.ID, "show-utterances"))).click()
    ticks = wait.until(lambda _: d.find_elements(By.CSS_SELECTOR, "#utterance-list input[type=checkbox]"))[:2]
    for t in ticks:
        t.click()
    d.find_element(By.ID, "forget-selected").click()
    wait.until(EC.visibility_of_element_located((By.ID, "confirm-forget")))
    assert sorted(li.text.split("· ")[-1] for li in d.find_elements(By.CSS_SELECTOR, "#preview .matched li")) == \
        sorted(t.get_attribute("value") for t in ticks)
    d.find_element(By.ID, "cancel-forget").click()
    assert api.history(root) == [] and d.find_element(By.CSS_SELECTOR, 'input[name="ids"]').get_attribute("value") == ""

    d.find_element(By.CSS_SELECTOR, 'input[name="kind"][value="contains"]').click()
    field = d.find_element(By.CSS_SELECTOR, 'input[name="contains"]')
    assert field.is_displayed() and not d.find_element(By.CSS_SELECTOR, 'input[name="date"]').is_displayed()
    field.send_keys(phrase.upper())
    d.find_element(By.ID, "preview-button").click()
    confirm = wait.until(EC.visibility_of_element_located((By.ID, "confirm-forget")))
    matched = d.find_elements(By.CSS_SELECTOR, "#preview .matched li .text")
    assert phrase in [m.text for m in matched]
    gone_ids = {u.id for u in rows if phrase.lower() in u.text.lower()}
    kept = "\n".join(u.text for u in rows if u.id not in gone_ids).encode()
    gone = [t for t in {m.text for m in matched} if not leaked(kept, [t])]
    assert phrase in gone and len(matched) == len(gone_ids)

    d.get_log("performance")
    confirm.click()
    wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#receipt[data-receipt]")))
    receipt = api.history(root)[-1]
    assert receipt["selector"] == {"kind": "contains"} and receipt["utterances"] == len(gone_ids)
    wait.until(lambda _: d.find_elements(By.CSS_SELECTOR, "#calendar button.cell[data-receipt]"))
    assert field.get_attribute("value") == "" and d.find_element(By.ID, "preview").text == ""
    bodies = network_bodies(d)
    secret = gone + [phrase.upper()]
    assert bodies and {u: leaked(b, secret) for u, b in bodies.items() if leaked(b, secret)} == {}
    assert not leaked(d.page_source.encode(), secret)
    assert d.execute_script("return localStorage.length + sessionStorage.length") == 0
    server.stop()
    assert find_texts(root, gone) == {}
