"""The web page in headless Chromium (Playwright): upload a real X-ray, see class and heatmap."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CXR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cxr"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOT_COPY = Path("/tmp/cxr_page.png")  # for a human to look at

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} missing (.ci/run installs Debian's chromium)"),
    pytest.mark.realdata,
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (requirements-dev.txt)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def xray() -> Path:
    files = [f for f in sorted((CXR / "covid").glob("*.png")) if f.stat().st_size < 150_000] if CXR.is_dir() else []
    if not files:
        pytest.skip(f"no real X-ray under {CXR}/covid (see shared/data/README.md)")
    return files[0]


def test_upload_shows_probabilities_heatmap_and_notice(served, browser, xray, tmp_path):
    from cxrkit import RESEARCH_NOTICE

    url, app = served
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    violations = []  # the page must work under its own Content-Security-Policy
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    response = page.goto(url + "/")
    assert "script-src 'sha256-" in response.headers["content-security-policy"]
    assert page.inner_text("#notice") == RESEARCH_NOTICE
    page.set_input_files("#file", str(xray))
    page.locator("#status", has_text="Done").wait_for(timeout=60_000)  # no wait_for_function: the CSP forbids eval

    expected = app.state.predictor.predict(xray).results[0]
    assert page.get_attribute("#predicted", "data-cls") == expected.predicted_class
    assert page.locator("#bars .bar").count() == len(app.state.predictor.classes)
    assert page.locator("#uncertain").is_visible() == expected.uncertain
    width = page.evaluate("document.getElementById('overlay').naturalWidth")
    assert width >= app.state.predictor.preprocessing.input_size  # the heatmap image arrived and decoded
    assert page.evaluate("document.getElementById('original').naturalWidth") > 0
    shot = tmp_path / "cxr_page.png"
    page.screenshot(path=str(shot), full_page=True)
    shutil.copyfile(shot, SCREENSHOT_COPY)

    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#error", state="visible", timeout=30_000)
    assert "notes.png" in page.inner_text("#error")
    assert violations == []
    page.close()
