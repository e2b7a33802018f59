"""End to end in a real browser: the dashboard as a person uses it."""

import pytest

from core.run_store import RunRecord, default_store
from tests.browser import chromium_page, dashboard, screenshot

pytestmark = pytest.mark.slow


def open_from_sidebar(page, title: str) -> None:
    """Click the page in the sidebar and wait for its title; one more click if a rerun of the
    page we left (its finished job's last refresh) won the race."""
    link = page.get_by_test_id("stSidebarNavItems").get_by_role("link", name=title)
    heading = page.get_by_role("heading", name=title, exact=True)
    for _ in range(2):
        link.click()
        try:
            heading.wait_for(timeout=30_000)
            return
        except Exception:  # playwright's TimeoutError: try the click once more
            continue
    heading.wait_for(timeout=30_000)


def test_compare_lists_runs_in_the_browser(sparselab_home):
    default_store().add(RunRecord(kind="tflite", model="digits-cnn", method="mn", sparsity=0.5, block="2:4",
                                  size_bytes=229_088, latency_ms=0.012, accuracy=0.98))
    with dashboard(sparselab_home) as url, chromium_page() as page:
        page.goto(url)
        page.get_by_role("heading", name="SparseLab").wait_for(timeout=60_000)
        open_from_sidebar(page, "Compare")
        page.get_by_text("1 of 1 runs").wait_for(timeout=60_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
        page.get_by_test_id("stDataFrame").wait_for(timeout=30_000)
        assert page.get_by_test_id("stException").count() == 0
        assert screenshot(page, "compare").stat().st_size > 10_000


def test_whatif_estimate_then_compare_in_the_browser(sparselab_home):
    with dashboard(sparselab_home) as url, chromium_page() as page:
        page.goto(url)
        open_from_sidebar(page, "What-if")
        page.get_by_role("heading", name="What-if").wait_for(timeout=60_000)
        form = page.get_by_test_id("stForm").first
        form.get_by_test_id("stSelectbox").first.click()
        page.get_by_role("option", name="bert-tiny", exact=True).click()
        page.get_by_label("Sequence length").fill("32")  # no Enter: in a form, Enter submits it
        form.get_by_role("button", name="Estimate").click()
        page.get_by_text("Answered in").wait_for(timeout=300_000)
        chart = page.locator(".js-plotly-plot").first
        chart.wait_for(timeout=30_000)
        assert chart.locator("path.js-line").count() >= 5  # one curve per block shape
        assert page.get_by_test_id("stException").count() == 0
        screenshot(page, "whatif")

        open_from_sidebar(page, "Compare")
        try:
            page.get_by_text("35 of 35 runs").wait_for(timeout=60_000)  # 7 sparsities x 5 blocks, each a run
        except Exception as exc:
            screenshot(page, "compare-after-whatif-failed")
            captions = page.get_by_test_id("stCaptionContainer").all_inner_texts()
            raise AssertionError(f"Compare shows {captions}") from exc
        page.get_by_test_id("stDataFrame").wait_for(timeout=30_000)
        screenshot(page, "compare-after-whatif")
