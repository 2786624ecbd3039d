"""The token-pruning page in a real browser: run the default analysis, see the accuracy/cost charts and the
per-image overlay of the tokens each block keeps."""
import pytest

from .conftest import assert_no_exception, wait_idle

pytestmark = pytest.mark.e2e


def test_pruning_page_runs_default_analysis(app_url, page, tmp_path):
    page.set_viewport_size({"width": 1400, "height": 6000})
    page.goto(app_url + "/Token_pruning")
    run = page.get_by_role("button", name="Run", exact=True)
    run.wait_for(timeout=180_000)
    wait_idle(page)
    assert_no_exception(page)
    run.click()
    page.get_by_text("Accuracy vs GMACs per image").wait_for(timeout=420_000)
    wait_idle(page, timeout=300_000)
    assert_no_exception(page)
    sweep = page.locator(".js-plotly-plot", has_text="Accuracy vs GMACs per image")
    assert sweep.count() == 1
    assert sweep.locator(".scatterlayer .trace").count() == 5  # four methods and the unpruned point
    assert page.locator(".js-plotly-plot", has_text="Accuracy vs measured images/s").count() == 1
    page.screenshot(path=str(tmp_path / "pruning_sweep.png"), full_page=True)

    page.get_by_role("tab", name="Per image").click()
    overlay = page.locator(".js-plotly-plot", has_text="Zero-TPrune −35%").first
    overlay.wait_for(timeout=60_000)
    wait_idle(page)
    assert_no_exception(page)
    # the input and one panel per pruning block (blocks 2, 3, 5 of the Shapes ViT), drawn as images
    assert overlay.locator("image").count() == 4
    assert "after block 5" in overlay.inner_text()
    page.screenshot(path=str(tmp_path / "pruning_per_image.png"), full_page=True)

    page.get_by_role("tab", name="Per layer").click()
    page.locator(".js-plotly-plot", has_text="Share of the object's patches").wait_for(timeout=60_000)
    wait_idle(page)
    assert_no_exception(page)
    assert "keeps the object" in page.inner_text("body")
    page.screenshot(path=str(tmp_path / "pruning_per_layer.png"), full_page=True)
