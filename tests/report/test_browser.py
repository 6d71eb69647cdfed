"""The page in a real headless Chromium: no errors, no network, figures laid out, sorting works."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
# A fixed, reportable place for the full-page screenshot.
SCREENSHOT = Path(tempfile.gettempdir()) / "uqbench-report-browser" / "report-full-page.png"


def _sync_playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("no browser: the playwright Python package is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"no browser: {CHROMIUM} is missing (Debian package chromium)")
    return sync_playwright


@pytest.mark.browser
def test_page_in_headless_chromium(full_page) -> None:
    sync_playwright = _sync_playwright()
    path, _, page_model = full_page
    url = path.resolve().as_uri()
    n_figures = sum(s["svg"] for s in page_model.sections.values())

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            problems: list[str] = []
            requests: list[str] = []
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url, wait_until="load")

            # Only the file itself is fetched (inline images are data: URIs, not requests).
            assert [u for u in requests if not u.startswith("data:")] == [url]

            boxes = page.eval_on_selector_all(
                "svg.fig", "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; })"
            )
            assert len(boxes) == n_figures > 0
            assert all(w > 50 and h > 50 for w, h in boxes), boxes
            # No figure is wider than the content column at 1280 px (nothing spills sideways).
            assert max(w for w, _ in boxes) <= 1280 - 210
            # The embedded data parses in the browser too.
            n_adapters = page.evaluate("JSON.parse(document.getElementById('uqbench-data').textContent).adapters.length")
            assert n_adapters == 3

            # Clicking a leaderboard header sorts its rows by that column.
            table = page.locator("table.leaderboard").nth(1)  # digits
            header = table.locator("th[data-metric='accuracy_score'] button")
            col = table.locator("thead th").evaluate_all(
                "ths => ths.findIndex(th => th.dataset.metric === 'accuracy_score')")
            values = f"rows => rows.map(r => parseFloat(r.cells[{col}].dataset.v))"
            header.click()
            ascending = table.locator("tbody tr").evaluate_all(values)
            assert ascending == sorted(ascending)
            header.click()
            descending = table.locator("tbody tr").evaluate_all(values)
            assert descending == sorted(ascending, reverse=True)
            assert table.locator("th[data-metric='accuracy_score']").get_attribute("aria-sort") == "descending"

            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            assert problems == []
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 10_000
    print(f"screenshot: {SCREENSHOT}")


@pytest.mark.browser
def test_escaped_run_runs_no_script(make_run_dir) -> None:
    """A run named like a script: the browser shows the text and never runs it."""
    sync_playwright = _sync_playwright()
    from uqbench.report import write_report

    evil = "<script>alert(1)</script>"
    run = make_run_dir(adapters=(evil,), datasets=("toy-gap",), seeds=(0,), latent=False, probe=False,
                       failures=None)
    path = write_report(run)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page()
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(path.resolve().as_uri(), wait_until="load")
            assert page.locator("script").count() == 2
            assert evil in page.locator("table.leaderboard td.name").first.inner_text()
            assert dialogs == []
        finally:
            browser.close()
    shutil.rmtree(run, ignore_errors=True)
