"""The dashboard in a real browser: headless Chromium opens the page offline, logs no console errors, lays out every
plot with drawn marks, and a screenshot is kept (``docs/dashboard.png``, shown by the README)."""
import base64
import json
import shutil
from pathlib import Path

import pytest

import samp.cli
from samp.eval.records import append_record

from test_dashboard import history_records, speechlike_assignment

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "docs" / "dashboard.png"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")

pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                reason="needs Debian chromium and chromium-driver (scripts/bootstrap.sh installs them)")


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,1000",
                     "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_dashboard_renders_in_headless_chromium(browser, tmp_path):
    history = tmp_path / "history.jsonl"
    for record in history_records():
        append_record(history, record)
    assignment = tmp_path / "assignment.json"
    assignment.write_text(json.dumps({"samp, keep 0.5 (120 tokens of speech-like features)": speechlike_assignment()}))
    site = tmp_path / "site"
    assert samp.cli.main(["dashboard", str(history), "--out", str(site), "--assignment", str(assignment)]) == 0

    browser.get((site / "index.html").as_uri())
    assert browser.title == "samp benchmarks"
    plots = browser.execute_script("""
        return Array.from(document.querySelectorAll('svg.plot')).map(svg => {
            const box = svg.getBoundingClientRect();
            return {kind: svg.dataset.kind, width: box.width, height: box.height,
                    marks: svg.querySelectorAll(
                        '.marker, circle, rect.cell, rect.token, rect.bar, path.series').length};
        });""")
    kinds = {plot["kind"] for plot in plots}
    assert kinds == {"pareto-kept", "pareto-prefill", "heatmap", "stage-times", "history", "assignment"}
    for plot in plots:
        assert plot["width"] > 200 and plot["height"] > 50 and plot["marks"] > 0, plot
    # what a reader needs, as laid out: legends with distinct colours, the heat-map legend, the table of numbers
    layout = browser.execute_script("""
        const visible = el => { const b = el.getBoundingClientRect(); return b.width > 0 && b.height > 0; };
        const kept = document.querySelector('svg[data-kind="pareto-kept"]');
        const entries = Array.from(kept.querySelectorAll('g.legend-entry[data-colour]:not(.published)'));
        const drawn = entries.map(g => getComputedStyle(g.querySelector('.marker')).stroke);
        const table = document.querySelector('table.numbers');
        return {legend: entries.filter(visible).length, colours: drawn, references: kept.querySelectorAll(
                    'line.reference').length,
                heatLegend: Array.from(document.querySelectorAll('g.heat-legend')).filter(visible).length,
                tableRows: table ? table.querySelectorAll('tr').length : 0,
                tableWidth: table ? table.getBoundingClientRect().width : 0,
                titlesFit: Array.from(document.querySelectorAll('svg.plot')).every(svg => {
                    const title = svg.querySelector('text.title');
                    return title.getComputedTextLength() + title.getBBox().x <= svg.viewBox.baseVal.width; })};""")
    assert layout["legend"] >= 6 and len(set(layout["colours"])) == len(layout["colours"]), layout
    assert layout["references"] == 1 and layout["heatLegend"] == 2, layout
    assert layout["tableRows"] > 10 and layout["tableWidth"] > 600 and layout["titlesFit"], layout
    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    assert errors == []

    height = min(browser.execute_script("return document.documentElement.scrollHeight"), 1500)
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": 1400, "height": height, "scale": 1}})
    png = base64.b64decode(shot["data"])
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
    (tmp_path / "dashboard.png").write_bytes(png)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.write_bytes(png)
