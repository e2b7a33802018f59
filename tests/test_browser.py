"""End to end in a real browser: the dashboard as a person uses it."""

import pytest

from core.run_store import RunRecord, default_store
from tests.browser import chromium_page, dashboard, screenshot

pytestmark = pytest.mark.slow


def test_compare_lists_runs_in_the_browser(sparselab_home):
    default_store().add(RunRecord(kind="tflite", model="digits-cnn", method="mn", sparsity=0.5, block="2:4",
                                  size_bytes=229_088, latency_ms=0.012, accuracy=0.98))
    with dashboard(sparselab_home) as url, chromium_page() as page:
        page.goto(url)
        page.get_by_role("heading", name="SparseLab").wait_for(timeout=60_000)
        page.get_by_role("link", name="Compare").click()
        page.get_by_text("1 of 1 runs").wait_for(timeout=60_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
        assert page.locator("[data-testid='stDataFrame']").count() == 1
        assert page.locator("[data-testid='stException']").count() == 0
        assert screenshot(page, "compare").stat().st_size > 10_000
