"""core.viz: figure builders put the right numbers in the figures."""
import numpy as np

import core.viz as viz


def test_histogram_densities_integrate_to_one():
    rng = np.random.default_rng(0)
    fig = viz.score_distributions({"id": rng.normal(size=1000), "ood": rng.normal(3, 1, size=400)}, bins=50)
    for trace in fig.data:
        width = trace.x[1] - trace.x[0]
        assert abs(np.sum(trace.y) * width - 1) < 1e-9
        assert len(trace.x) == 50  # binned in numpy: the figure does not grow with N


def test_ecdf_ends_at_one_and_is_monotone():
    fig = viz.score_distributions({"a": np.arange(100.0)}, kind="ecdf")
    y = np.asarray(fig.data[0].y)
    assert np.all(np.diff(y) >= 0) and y[-1] == 1.0


def test_confusion_matrix_counts():
    fig = viz.confusion_matrix(np.array([0, 0, 1, 1, -1]), np.array([0, 1, 1, 1, 0]), ["a", "b"], normalize=False)
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), [[1, 1], [0, 2]])
    fig = viz.confusion_matrix(np.array([0, 0, 1]), np.array([0, 1, 1]), ["a", "b"], normalize=True)
    np.testing.assert_allclose(np.asarray(fig.data[0].z), [[0.5, 0.5], [0, 1]])


def test_class_balance_and_roc_thinning():
    fig = viz.class_balance(np.array([0, 1, 1, 2, -1]), ["x", "y", "z"])
    assert list(fig.data[0].y) == [1, 2, 1]
    fpr = np.linspace(0, 1, 5000)
    fig = viz.roc_curves({"d": (fpr, fpr)}, max_points=100)
    assert len(fig.data[1].x) <= 100


def test_roc_curves_keep_many_curves_apart_and_highlight_one():
    fpr = np.linspace(0, 1, 50)
    curves = {f"d{i}": (fpr, fpr ** (1 + i / 10)) for i in range(25)}
    fig = viz.roc_curves(curves, highlight="d3")
    lines = [t for t in fig.data if t.name in curves]
    colours = [(t.line.color, t.line.dash) for t in lines]
    assert len(set(colours)) == 25  # 24 colours, then a dashed repeat
    assert lines[-1].name == "d3" and lines[-1].line.width == 4  # drawn last, on top
    assert all(t.line.width == 1.5 for t in lines[:-1])
    assert [t.name for t in sorted(lines, key=lambda t: t.legendrank)] == list(curves)  # legend in the given order
    plain = viz.roc_curves({"a": (fpr, fpr), "b": (fpr, fpr)})
    assert plain.data[1].line.color != plain.data[2].line.color and plain.data[1].line.width is None
