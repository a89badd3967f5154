"""The report page in a real browser: headless Chromium through selenium.

Checks what only a browser can: the pictures decode, and the page fits 1280 pixels without
horizontal scrolling. Skips when Chromium, its driver or selenium is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_report import write_run

from diffad.report.render import render_report

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def browser(tmp_path):
    """A headless Chromium 1280 pixels wide, with its own profile; no network needed."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip("headless Chromium not found: apt-get install chromium chromium-driver")
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium not installed: pip install -e '.[dev]'"
    )
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(arg)
    # An explicit driver path: selenium then never tries to download one.
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def test_report_renders_in_chromium_without_horizontal_scroll(browser, tmp_path):
    page = render_report(write_run(tmp_path / "run"))
    browser.get(page.as_uri())
    js = browser.execute_script
    assert js("return document.querySelectorAll('#summary tr.image-row').length") == 6
    widths = js(
        "return Array.from(document.querySelectorAll('.image-card'),"
        " c => c.querySelector('img') ? c.querySelector('img').naturalWidth : 0)"
    )
    assert len(widths) == 6 and all(w > 0 for w in widths)
    assert js("return document.querySelector('#qq img').naturalWidth") > 0
    assert "healthy calibration check:" in js(
        "return document.getElementById('calibration').innerText"
    )
    assert js("return window.innerWidth") >= 1200
    assert js("return document.documentElement.scrollWidth <= window.innerWidth")

    first = tmp_path / "report.png"
    assert browser.save_screenshot(str(first))
    # The whole page: the window as tall as the document, still 1280 pixels wide.
    height = js("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(height + 200, 12000))
    full = tmp_path / "report_full.png"
    assert browser.save_screenshot(str(full))
    for shot in (first, full):
        assert shot.read_bytes()[:8] == PNG_MAGIC and shot.stat().st_size > 10_000
