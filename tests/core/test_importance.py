"""core.importance: statistics against closed forms, comparisons and export."""
import numpy as np
import pytest

from core.importance import Importance, compare


def test_gini_closed_forms():
    # all mass on one of n units: Gini = (n-1)/n; uniform: 0
    n = 10
    one_hot = np.zeros(n)
    one_hot[3] = 5.0
    assert Importance(one_hot, "feature").summary()["gini"] == pytest.approx((n - 1) / n)
    assert Importance(np.ones(n), "feature").summary()["gini"] == pytest.approx(0.0)
    assert Importance(np.ones(n), "feature").summary()["entropy"] == pytest.approx(np.log(n))


def test_compare_rank_and_distance():
    rng = np.random.default_rng(0)
    a = rng.normal(size=500)
    s = compare(Importance(a, "sample"), Importance(2 * a + 1, "sample"))
    assert s["spearman"] == pytest.approx(1.0) and s["kendall"] == pytest.approx(1.0)
    s = compare(Importance(a, "sample"), Importance(a + 3, "sample"))
    assert s["wasserstein"] == pytest.approx(3.0)
    assert s["ks"] > 0.8


def test_rank_agreement_needs_the_same_units():
    rng = np.random.default_rng(1)
    a = Importance(rng.normal(size=50), "sample", provenance={"data": "ID"})
    b = Importance(rng.normal(size=50), "sample", provenance={"data": "noise"})
    assert "spearman" not in compare(a, b) and "ks" in compare(a, b)
    c = Importance(a.values * 3, "sample", provenance={"data": "ID"})
    assert compare(a, c)["spearman"] == pytest.approx(1.0)


def test_frame_and_names():
    imp = Importance([0.2, 0.8], "mechanism", names=["size", "background"], provenance={"analysis": "shift"})
    df = imp.to_frame()
    assert list(df["unit"]) == ["size", "background"] and (df["analysis"] == "shift").all()
    maps = Importance(np.arange(8.0).reshape(2, 2, 2), "pixel").to_frame()
    assert len(maps) == 8 and list(maps.columns[:3]) == ["axis0", "axis1", "axis2"]
    with pytest.raises(ValueError):
        Importance([1.0, 2.0, 3.0], "feature", names=["a"])


def test_non_finite_values_are_ignored_in_statistics():
    s = Importance([1.0, np.nan, 3.0, np.inf], "sample").summary()
    assert s["n"] == 2 and s["mean"] == 2.0


def test_scores_with_an_arbitrary_zero_have_no_concentration_statistics():
    v = np.random.default_rng(0).normal(size=50)
    score = Importance(v, "sample", scale="score").summary()
    mass = Importance(v, "sample").summary()
    assert np.isnan(score["gini"]) and np.isnan(score["entropy"])
    assert np.isfinite(mass["gini"]) and np.isfinite(mass["entropy"])
    for key in ("n", "mean", "std", "min", "q05", "median", "q95", "max"):
        assert score[key] == pytest.approx(mass[key])
    with pytest.raises(ValueError, match="scale"):
        Importance(v, "sample", scale="ranks")
