"""The OOD page in a real browser: run the default analysis and see the results."""
import re

import pytest

from .conftest import assert_no_exception, wait_idle

pytestmark = pytest.mark.e2e


def test_ood_page_runs_default_analysis(app_url, page, tmp_path):
    page.goto(app_url + "/OOD_detection")
    page.get_by_role("button", name="Run detectors").wait_for(timeout=120_000)
    wait_idle(page)
    page.get_by_role("button", name="Run detectors").click()
    page.get_by_text("AUROC per detector and OOD set").wait_for(timeout=420_000)
    wait_idle(page, timeout=300_000)
    assert_no_exception(page)
    assert page.locator(".js-plotly-plot").count() >= 2
    body = page.inner_text("body")
    assert "Energy" in body and "Mahalanobis" in body
    page.screenshot(path=str(tmp_path / "ood.png"), full_page=True)
    # keep the scores as importance distributions and compare them on the Importance page
    page.get_by_role("button", name=re.compile(r"Keep .+ scores")).click()
    page.get_by_text("see the Importance page").wait_for(timeout=60_000)
    page.get_by_role("link", name="Importance distributions").click()
    page.get_by_text("Pairwise comparison").wait_for(timeout=60_000)
    wait_idle(page)
    assert_no_exception(page)
    assert page.locator(".js-plotly-plot").count() >= 1
    assert "shelf=" in page.url  # the shelf's id is in the link, so a reload finds it again
    page.reload()
    page.get_by_text("Pairwise comparison").wait_for(timeout=60_000)
    wait_idle(page)
    assert_no_exception(page)
    assert "Kept distributions (7)" in page.inner_text("body")
