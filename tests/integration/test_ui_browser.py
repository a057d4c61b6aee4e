"""The review UI in a real headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium) against a real `remediator serve`, store and Git remote: list -> incident -> sign in ->
approve (the PR merges); a signed-out visitor gets no buttons; a form posted from another site is
refused. Screenshots of each page go to $TEST_ARTIFACTS_DIR/ui-screenshots (default: pytest's
temporary folder), never into the repository."""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest

from agents.config import load_settings
from memory.store import Store
from tests.integration import uiserver
from tests.integration.uiserver import TOKEN, UIServer

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
DRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
if CHROMIUM is None or DRIVER is None:
    pytest.skip("chromium / chromium-driver not installed (tests/run.sh installs Debian's packages)",
                allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extras")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = os.environ.get("TEST_ARTIFACTS_DIR")
    folder = Path(base) / "ui-screenshots" if base else tmp_path_factory.mktemp("ui-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots in {folder}")
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UIServer]:
    s = uiserver.start(tmp_path_factory.mktemp("ui-browser"))
    try:
        yield s
    finally:
        uiserver.stop(s.proc)


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Any]:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1800", f"--user-data-dir={tmp_path / 'profile'}", "--no-first-run"):
        opts.add_argument(arg)
    service = webdriver.ChromeService(executable_path=DRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=opts, service=service)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()   # ends chromedriver and the browser it started


def shot(driver: Any, folder: Path, name: str) -> None:
    path = folder / f"{name}.png"
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1400, min(max(900, int(height) + 40), 6000))
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 10_000


def test_list_incident_sign_in_approve(server: UIServer, browser: Any, shots: Path) -> None:
    inc = server.incident("cost_anomaly")
    browser.get(f"{server.url}/ui/")
    assert browser.find_element(By.ID, "open-by-kind").is_displayed()
    shot(browser, shots, "01-dashboard")

    browser.get(f"{server.url}/incidents")           # the path a new user tries
    assert browser.current_url.endswith("/ui/incidents")
    rows = browser.find_elements(By.CSS_SELECTOR, "#incidents tbody tr")
    assert len(rows) == len(server.report["incidents"])
    shot(browser, shots, "02-incidents")
    browser.find_element(By.CSS_SELECTOR, "#filters select[name=kind] option[value=cost_anomaly]").click()
    browser.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
    WebDriverWait(browser, 20).until(ec.url_contains("kind=cost_anomaly"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#incidents tbody tr")) == 1
    browser.find_element(By.LINK_TEXT, inc["id"]).click()
    WebDriverWait(browser, 20).until(ec.presence_of_element_located((By.ID, "incident-id")))
    assert browser.find_element(By.ID, "incident-id").text == inc["id"]
    assert browser.find_element(By.CSS_SELECTOR, "#evidence svg.chart polyline.signal").is_displayed()
    assert "maxReplicas: 3" in browser.find_element(By.CSS_SELECTOR, "#prs pre.diff").text
    assert not browser.find_elements(By.ID, "approve")      # signed out: no buttons
    shot(browser, shots, "03-incident-signed-out")

    browser.find_element(By.ID, "signin").click()
    WebDriverWait(browser, 20).until(ec.presence_of_element_located((By.ID, "token")))
    shot(browser, shots, "04-sign-in")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "login").click()
    WebDriverWait(browser, 20).until(ec.presence_of_element_located((By.ID, "approve")))
    assert browser.find_element(By.ID, "user").text == "token"
    browser.find_element(By.ID, "reason").send_keys("cap looks right")
    shot(browser, shots, "05-incident-signed-in")
    browser.find_element(By.ID, "approve").click()
    WebDriverWait(browser, 60).until(ec.presence_of_element_located((By.ID, "flash")))
    assert browser.find_element(By.ID, "flash").text == "Approved."
    assert browser.find_element(By.ID, "status").text == "approved"
    assert "cap looks right" in browser.find_element(By.ID, "decisions").text
    assert not browser.find_elements(By.ID, "approve")
    shot(browser, shots, "06-approved")

    store = Store.open_existing(load_settings(server.config).memory.url)
    assert [(d.verdict, d.actor, d.source, d.reason) for d in store.list_decisions(incident_id=inc["id"])] == \
        [("approve", "ui:token", "ui", "cap looks right")]
    main = git.Repo(server.remote).heads["main"].commit
    assert "maxReplicas: 3" in (main.tree / "apps/ml-serving/image-captioner.yaml").data_stream.read().decode()


class _Attacker(http.server.BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = (f'<!doctype html><title>win a prize</title><h1>win a prize</h1>'
                f'<form id="f" method="post" action="{self.target}"><input name="verdict" value="reject">'
                f'<input name="reason" value="forged"></form><script>document.getElementById("f").submit()</script>')
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


def test_cross_site_and_signed_out_decisions_are_refused(server: UIServer, browser: Any, shots: Path) -> None:
    inc = server.incident("model_drift")
    target = f"{server.url}/ui/incidents/{inc['id']}/decide"
    # signed in (a session cookie in this browser)...
    browser.get(f"{server.url}/ui/login?next=/ui/incidents/{inc['id']}")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "login").click()
    WebDriverWait(browser, 20).until(ec.presence_of_element_located((By.ID, "approve")))
    assert browser.find_element(By.CSS_SELECTOR, "#evidence svg.chart rect.current").is_displayed()
    shot(browser, shots, "07-drift-incident")
    # ...the user visits another site whose page posts a "reject" to the UI
    _Attacker.target = target
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Attacker)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://localhost:{evil.server_address[1]}/")
        WebDriverWait(browser, 20).until(ec.presence_of_element_located((By.ID, "message")))
        assert browser.current_url == target
        assert "another site" in browser.find_element(By.ID, "message").text
        shot(browser, shots, "08-cross-site-refused")
    finally:
        evil.shutdown()
        evil.server_close()
    # signed out: the page has no buttons, and a hand-made form post is refused
    browser.delete_all_cookies()
    browser.get(f"{server.url}/ui/incidents/{inc['id']}")
    assert not browser.find_elements(By.ID, "approve")
    browser.execute_script(
        "const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0];"
        "const i = document.createElement('input'); i.name = 'verdict'; i.value = 'reject'; f.appendChild(i);"
        "document.body.appendChild(f); f.submit();", target)
    WebDriverWait(browser, 20).until(ec.presence_of_element_located((By.ID, "message")))
    assert "Only a signed-in reviewer" in browser.find_element(By.ID, "message").text
    shot(browser, shots, "09-signed-out-refused")

    store = Store.open_existing(load_settings(server.config).memory.url)
    assert store.list_decisions(incident_id=inc["id"]) == [] and store.get_incident(inc["id"]).status == "proposed"
