"""The attribution page in a real browser: run the default analysis, see the heatmap grid drawn (every method's map
over every sample, the object's outline), the metrics table and the deletion/insertion curves."""
import os

import pytest

from .conftest import assert_no_exception, wait_idle

pytestmark = pytest.mark.e2e


def test_attribution_page_runs_default_analysis(app_url, page, tmp_path):
    shots = os.environ.get("IE_SCREENSHOTS") or str(tmp_path)
    page.set_viewport_size({"width": 1400, "height": 6000})
    page.goto(app_url + "/Attribution")
    run = page.get_by_role("button", name="Run", exact=True)
    run.wait_for(timeout=180_000)
    wait_idle(page)
    assert_no_exception(page)
    assert "Estimated work" in page.inner_text("body")
    page.screenshot(path=f"{shots}/attribution_settings.png", full_page=True)
    run.click()
    grid = page.locator(".js-plotly-plot", has_text="Attribution maps")
    grid.wait_for(timeout=420_000)
    wait_idle(page, timeout=300_000)
    assert_no_exception(page)
    assert grid.count() == 1
    # four samples under four methods: one heatmap each, drawn as a raster; the object's outline on all 20 cells
    grid.locator("g.hm image").first.wait_for(timeout=60_000)
    assert grid.locator("g.hm image").count() == 16
    assert grid.locator("g.contour").count() == 20
    for name in ("Saliency", "Integrated Gradients", "Grad-CAM", "RISE"):
        assert name in grid.inner_text()
    page.screenshot(path=f"{shots}/attribution_heatmaps.png", full_page=True)

    for tab, marker in (("Distributions", "Attribution values per method"), ("Metrics", "Ranking"),
                        ("Curves", "Deletion: pixels removed")):
        page.get_by_role("tab", name=tab).click()
        page.get_by_text(marker).first.wait_for(timeout=60_000)
        wait_idle(page)
        assert_no_exception(page)
        page.screenshot(path=f"{shots}/attribution_{tab.lower()}.png", full_page=True)
    assert page.locator(".js-plotly-plot", has_text="Insertion: pixels inserted").count() == 1
