"""ui.tables: Python format strings become browser-side column formats (no per-run Styler)."""
import pandas as pd
import pytest

from ui.tables import number_config, sprintf


@pytest.mark.parametrize("fmt, expected", [("{:.3f}", "%.3f"), ("{:.4g}", "%.4g"), ("{:.2f}×", "%.2f×"),
                                           ("{:.1%}", "percent"), ("{:,.0f}", "%.0f"), ("{:,f}", "localized"), ("x {:.1f} %", "x %.1f %%")])
def test_python_formats_map_to_sprintf(fmt, expected):
    assert sprintf(fmt) == expected


def test_unsupported_format_is_refused():
    with pytest.raises(ValueError, match="Unsupported"):
        sprintf("{:>8}")


def test_number_config_formats_numeric_columns_only_and_keeps_given_config():
    df = pd.DataFrame({"name": ["a"], "share": [0.5], "count": [3], "score": [1.23456], "flag": [True]})
    cfg = number_config(df, {"share": "{:.1%}", "name": "{:.2f}"}, precision=2, config={"count": "kept"})
    assert set(cfg) == {"share", "score", "count"}  # text and bool columns untouched
    assert cfg["share"]["type_config"]["format"] == "percent"
    assert cfg["score"]["type_config"]["format"] == "%.2f"
    assert cfg["count"] == "kept"


def test_a_shared_figure_serialises_exactly_like_the_figure_every_time():
    import numpy as np
    import plotly.graph_objects as go
    import plotly.io as pio
    from plotly.tools import return_figure_from_figure_or_data

    from ui.cache import SharedFigure, _shared

    fig = go.Figure(go.Histogram(x=np.random.default_rng(0).random(500)), layout={"title": "t"})
    reference = pio.to_json(fig, validate=False)
    shared = _shared(fig)
    assert isinstance(shared, SharedFigure)
    for _ in range(3):  # what st.plotly_chart does on each draw; the second draw reuses the first's dict
        assert pio.to_json(return_figure_from_figure_or_data(shared, validate_figure=True), validate=False) == reference


def test_best_values_name_the_best_detector_of_each_mean_column():
    from ui.ood import best_values

    summary = pd.DataFrame({"detector": ["a", "b"], "name": ["A", "B"], "auroc_mean": [0.9, 0.8],
                            "fpr95_mean": [0.5, 0.2], "auroc_near": [0.1, 0.99]})
    assert best_values(summary, list(summary.columns)) == "AUROC 0.900 (A) · FPR@95 0.200 (B)"
