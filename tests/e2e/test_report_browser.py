"""The HTML report opens offline in headless Chromium with every figure drawn."""
import numpy as np
import pytest

from core.importance import Importance
from core.report import Section, build_report

pytestmark = pytest.mark.e2e


def test_report_renders_every_figure_without_network(browser, tmp_path):
    import core.viz as viz

    rng = np.random.default_rng(0)
    data = {"kind": "builtin", "name": "shapes"}
    items = {"energy · ID": Importance(rng.normal(size=400), "sample", scale="score", provenance={"data": data}),
             "msp · ID": Importance(rng.normal(size=400), "sample", scale="score", provenance={"data": data}),
             "tokens": Importance(rng.exponential(size=(4, 65)).astype(np.float32), "token")}
    section = Section("An analysis", "Some text.", figures=[viz.grouped_bars({"a": {"x": 1.0, "y": 2.0}}, title="bars")])
    path = tmp_path / "report.html"
    path.write_text(build_report(items, sections=[section], code="print('hello')"))
    html = path.read_text()
    expected = html.count('class="plotly-graph-div"')
    assert expected >= 6
    context = browser.new_context(viewport={"width": 1300, "height": 1000}, offline=True)
    page = context.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {expected}",
                           timeout=60_000)
    assert page.locator(".js-plotly-plot").count() == expected
    assert [u for u in requests if not u.startswith(("file:", "data:", "blob:"))] == []
    assert "print('hello')" in page.inner_text("body")
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    context.close()
