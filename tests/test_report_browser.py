"""The HTML report in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright), offline:
every table and chart is there and visible with its marks, nothing tries the network, no script runs that
we did not write (no alert from the hostile strings), no console or page error, and the page screenshots.

Skipped where Chromium or Playwright is missing, unless DLGPU_REQUIRE_BROWSER=1 (scripts/check sets it where
it could install Chromium), in which case the test fails instead."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from dlgpu.report.html import render_html
from test_report_render import EMPTY_CHARTS, EXPECTED_MARKS, EXPECTED_ROWS, sample_comparison

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def _sync_playwright() -> Any:
    """Playwright's entry point, or a skip (a failure under DLGPU_REQUIRE_BROWSER=1) saying what is missing."""
    missing = None
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} is not installed (apt-get install chromium)"
    else:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            missing = "the playwright package is not installed (pip install 'playwright>=1.40')"
    if missing:
        if os.environ.get("DLGPU_REQUIRE_BROWSER") == "1":
            pytest.fail(f"DLGPU_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)
    return sync_playwright


@pytest.mark.slow
def test_report_in_headless_chromium(tmp_path: Path) -> None:
    sync_playwright = _sync_playwright()
    report = tmp_path / "report.html"
    report.write_text(render_html(sample_comparison(), title="dlgpu report <script>alert(1)</script>"),
                      encoding="utf-8")
    blocked: list[str] = []
    console_errors: list[str] = []
    page_errors: list[str] = []
    dialogs: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
            context.route("**/*", route)
            page = context.new_page()
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(report.as_uri(), wait_until="load")

            assert page.title() == "dlgpu report <script>alert(1)</script>"  # shown as text, not run
            for table_id, n_rows in EXPECTED_ROWS.items():
                table = page.locator(f'table[data-table="{table_id}"]')
                assert table.count() == 1 and table.is_visible()
                assert table.locator("tbody tr").count() == n_rows
                assert table.locator("caption").inner_text().strip()
            assert page.locator("table[data-table]").count() == len(EXPECTED_ROWS)
            assert page.locator("table[data-runs] tbody tr").count() == 3

            for chart_id, marks in EXPECTED_MARKS.items():
                svg = page.locator(f'svg[data-chart="{chart_id}"]')
                assert svg.count() == 1 and svg.is_visible(), chart_id
                assert svg.get_attribute("role") == "img" and svg.get_attribute("aria-label")
                box = svg.bounding_box()
                assert box is not None and box["width"] > 300 and box["height"] > 150, (chart_id, box)
                for kind, n in marks.items():
                    drawn = svg.locator(f'[data-mark="{kind}"]')
                    assert drawn.count() == n, (chart_id, kind)
                    sizes = drawn.evaluate_all("els => els.map(e => e.getBBox()).map(b => b.width + b.height)")
                    assert all(s > 0 for s in sizes), (chart_id, kind, sizes)
            for chart_id in EMPTY_CHARTS:
                assert page.locator(f'[data-chart-empty="{chart_id}"]').inner_text().startswith("no data:")

            # the hostile strings are on the page as text, and made no element
            assert page.locator("img").count() == 0 and page.locator("script").count() == 1
            body = page.locator("body").inner_text()
            assert "<script>alert(1)</script>" in body and '"><img src=x onerror=alert(1)>' in body

            # the inline sorting script works (and is only a nicety: the table was complete without it)
            th = page.locator('table[data-table="accuracy"] thead th').nth(3)
            th.click()
            first = page.locator('table[data-table="accuracy"] tbody tr').first.locator("td").nth(3)
            assert first.inner_text().startswith("-11.5%") or first.inner_text().startswith("-12%")
            assert th.get_attribute("aria-sort") == "ascending"

            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            page_blocked = list(blocked)

            # the guard works: a page that does try the network is caught (so an empty list means something)
            probe = context.new_page()
            with contextlib.suppress(Exception):
                probe.goto("http://dlgpu.invalid/probe")
            assert blocked[len(page_blocked):] == ["http://dlgpu.invalid/probe"]
        finally:
            browser.close()

    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    if os.environ.get("DLGPU_ARTIFACTS"):
        out = Path(os.environ["DLGPU_ARTIFACTS"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, out / "report.png")
    assert not page_blocked, f"the page tried the network: {page_blocked}"
    assert not dialogs, f"a dialog fired: {dialogs}"
    assert not page_errors, page_errors
    assert not console_errors, console_errors


def test_a_missing_browser_skips_unless_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("DLGPU_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-chromium is not installed"):
        _sync_playwright()
    monkeypatch.setenv("DLGPU_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="DLGPU_REQUIRE_BROWSER=1 but"):
        _sync_playwright()
