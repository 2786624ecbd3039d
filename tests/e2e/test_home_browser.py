"""The home page in a real browser: it opens on the shipped ViT and Shapes test data."""
import pytest

from .conftest import assert_no_exception, wait_idle

pytestmark = pytest.mark.e2e


def test_home_page_renders_default_workspace(app_url, page, tmp_path):
    page.goto(app_url)
    page.get_by_text("Accuracy on this data").wait_for(timeout=120_000)
    wait_idle(page)
    assert_no_exception(page)
    body = page.inner_text("body")
    assert "shapes-vit" in body
    assert "Importance Explorer" in body
    # the preview grid shows images with "label → prediction" captions (they arrive after the text on a busy machine)
    page.locator("[data-testid='stImage']").nth(7).wait_for(timeout=90_000)
    assert page.locator("[data-testid='stImage']").count() >= 8
    page.get_by_role("tab", name="Confusion matrix").click()
    page.locator(".js-plotly-plot >> visible=true").first.wait_for(timeout=90_000)
    page.screenshot(path=str(tmp_path / "home.png"), full_page=True)
