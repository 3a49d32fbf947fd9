"""Render ``samp dashboard`` for a records file and keep a screenshot of one kind of plot per model, taken in headless
Chromium as tests/test_dashboard_browser.py does (the README's pictures of a benchmark's Pareto plot).

    .venv/bin/python scripts/dashboard_plot_screenshot.py runs/records.jsonl --kind pareto-kept \\
        --out docs/whisper-real-pareto.png

With several models on the page each gets its own file (``<out stem>-<model>.png``). Needs Debian's chromium and
chromium-driver and selenium (scripts/bootstrap.sh installs them).
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

import samp.cli


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", type=Path, help="records JSONL (--samp-records of a benchmark run)")
    parser.add_argument("--kind", default="pareto-kept",
                        help="the plot's data-kind on the page (pareto-kept, pareto-prefill, heatmap, stage-times)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--width", type=int, default=1400, help="browser window width in pixels")
    args = parser.parse_args(argv)
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        print("needs Debian chromium and chromium-driver (scripts/bootstrap.sh installs them)", file=sys.stderr)
        return 2
    if not args.records.is_file():
        print(f"records file not found: {args.records}", file=sys.stderr)
        return 2
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    with tempfile.TemporaryDirectory() as scratch:
        site = Path(scratch) / "site"
        status = samp.cli.main(["dashboard", str(args.records), "--out", str(site)])
        if status != 0:
            return status
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                         "--disable-background-networking", f"--user-data-dir={Path(scratch) / 'profile'}",
                         f"--window-size={args.width},1000", "--force-device-scale-factor=1"):
            options.add_argument(argument)
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            driver.get((site / "index.html").as_uri())
            plots = driver.find_elements(By.CSS_SELECTOR, f'svg.plot[data-kind="{args.kind}"]')
            if not plots:
                print(f"the dashboard has no plot of kind {args.kind!r}", file=sys.stderr)
                return 2
            args.out.parent.mkdir(parents=True, exist_ok=True)
            for plot in plots:
                if len(plots) == 1:
                    path = args.out
                else:  # the plot's title starts with its model's name
                    title = plot.find_element(By.CSS_SELECTOR, "text.title").text
                    model = re.sub(r"[^A-Za-z0-9._-]+", "_", title.split(":")[0]).strip("_")
                    path = args.out.with_name(f"{args.out.stem}-{model}{args.out.suffix}")
                driver.execute_script("arguments[0].scrollIntoView(true);", plot)
                plot.screenshot(str(path))
                print(f"wrote {path}")
        finally:
            driver.quit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
