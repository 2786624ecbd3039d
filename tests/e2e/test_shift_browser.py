"""The shift-attribution page in a real browser: run the default analysis, see the waterfall drawn, open every
view, and keep the result for the Importance page."""
import pytest

from .conftest import assert_no_exception, wait_idle

pytestmark = pytest.mark.e2e

#: what each view draws, once its tab is open
VIEWS = {"Importance weights": ".js-plotly-plot", "Drift per column": ".js-plotly-plot",
         "Most target-like samples": "[data-testid='stImage']", "Diagnostics": ".js-plotly-plot"}


def test_shift_page_runs_default_analysis_and_draws_the_waterfall(app_url, page, tmp_path):
    page.set_viewport_size({"width": 1400, "height": 6000})
    page.goto(app_url + "/Shift_attribution")
    page.get_by_role("button", name="Explain the change").wait_for(timeout=180_000)
    wait_idle(page, timeout=180_000)
    assert_no_exception(page)
    page.get_by_role("button", name="Explain the change").click()
    page.get_by_text("Target mass the source covers").wait_for(timeout=300_000)
    wait_idle(page, timeout=300_000)
    assert_no_exception(page)
    # the waterfall: one bar for the source, one per mechanism (8 in the Shapes world) and one for the target
    bars = page.locator(".js-plotly-plot .waterfalllayer .point")
    bars.nth(9).wait_for(timeout=60_000)
    assert bars.count() == 10
    heights = [bars.nth(i).locator("path").bounding_box()["height"] for i in range(10)]
    assert heights[0] > 10 and heights[-1] > heights[0]  # the loss grew from the source to the target
    assert max(heights[1:-1]) == heights[3]  # P(background), the preset's mechanism, is the tallest step
    body = page.inner_text("body")
    assert "P(background)" in body and "ground truth" in body
    page.screenshot(path=str(tmp_path / "shift.png"), full_page=True)
    for i, (tab, selector) in enumerate(VIEWS.items()):
        page.get_by_role("tab", name=tab).click()
        page.locator(f"{selector} >> visible=true").first.wait_for(timeout=60_000)
        assert_no_exception(page)
        if tab == "Most target-like samples":
            assert page.locator(f"{selector} >> visible=true").count() == 16
        page.screenshot(path=str(tmp_path / f"shift_view{i + 1}.png"), full_page=True)
    page.get_by_role("button", name="Keep attributions + weights").click()
    page.get_by_text("see the Importance page").wait_for(timeout=60_000)
    assert_no_exception(page)
