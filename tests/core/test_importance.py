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


def test_stats_against_hand_computed_values():
    s = Importance(np.array([1.0, 1.0, 2.0, 4.0]), "feature").stats(top_k=2)
    p = np.array([1, 1, 2, 4]) / 8
    h = -(p * np.log(p)).sum()
    assert s["entropy"] == pytest.approx(h) and s["norm_entropy"] == pytest.approx(h / np.log(4))
    assert s["effective_n"] == pytest.approx(np.exp(h))
    # Gini by the mean absolute difference: Σ|xi−xj| / (2 n² mean)
    x = np.array([1.0, 1.0, 2.0, 4.0])
    assert s["gini"] == pytest.approx(np.abs(x[:, None] - x[None]).sum() / (2 * 16 * x.mean()))
    assert s["topk_mass"] == pytest.approx(6 / 8) and s["k"] == 2
    assert s["median"] == pytest.approx(1.5) and s["q25"] == pytest.approx(1.0)
    one = Importance(np.eye(1, 20).ravel(), "token").stats()
    assert one["effective_n"] == pytest.approx(1.0) and one["norm_entropy"] == pytest.approx(0.0)
    flat = Importance(np.ones(20, np.float32), "token").stats()
    assert flat["effective_n"] == pytest.approx(20) and flat["norm_entropy"] == pytest.approx(1.0)
    assert flat["topk_mass"] == pytest.approx(10 / 20)


def test_float32_values_are_kept_without_a_copy():
    v = np.random.default_rng(0).random((4, 8, 8)).astype(np.float32)
    imp = Importance(v, "pixel")
    assert imp.values is v and imp.nbytes == v.nbytes
    assert Importance([1, 2], "feature").values.dtype == np.float64


def test_lorenz_curve_area_is_half_the_gini():
    v = np.random.default_rng(3).exponential(size=400)
    imp = Importance(v, "sample")
    x, y = imp.lorenz(points=401)
    assert x[0] == 0 and y[-1] == pytest.approx(1.0) and np.all(np.diff(y) >= 0)
    area = np.trapezoid(x - y, x)
    assert 2 * area == pytest.approx(imp.stats()["gini"], abs=2e-3)


def test_identical_distributions_compare_to_the_trivial_values():
    v = np.random.default_rng(0).normal(size=300)
    a, b = Importance(v, "sample"), Importance(v.copy(), "sample")
    s = compare(a, b)
    assert s["spearman"] == pytest.approx(1) and s["kendall"] == pytest.approx(1) and s["top10_jaccard"] == 1.0
    assert s["js_divergence"] == pytest.approx(0) and s["wasserstein"] == pytest.approx(0) and s["ks"] == 0


def test_js_and_wasserstein_match_scipy():
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import wasserstein_distance

    from core.importance import js_divergence

    rng = np.random.default_rng(5)
    x, y = rng.normal(0, 1, 2000), rng.normal(0.7, 1.3, 1500)
    edges = np.linspace(min(x.min(), y.min()), max(x.max(), y.max()), 51)
    p, q = np.histogram(x, edges)[0], np.histogram(y, edges)[0]
    assert js_divergence(x, y, bins=50) == pytest.approx(jensenshannon(p, q, base=2) ** 2, rel=1e-9)
    s = compare(Importance(x, "sample", provenance={"data": "a"}), Importance(y, "sample", provenance={"data": "b"}))
    assert s["wasserstein"] == pytest.approx(wasserstein_distance(x, y))
    assert "spearman" not in s and "different shapes" in s["rank_note"]


def test_topk_overlap_and_units_that_differ():
    from core.importance import topk_jaccard

    a = np.array([5, 4, 3, 2, 1, 0.0])
    b = np.array([5, 4, 0, 0, 3, 2.0])
    assert topk_jaccard(a, b, 3) == pytest.approx(2 / 4)  # {0,1,2} vs {0,1,4}
    s = compare(Importance(np.ones(5), "token"), Importance(np.ones(5), "pixel"))
    assert "different units (token vs pixel)" in s["rank_note"] and "ks" in s


def test_compare_matrix_is_symmetric():
    from core.importance import compare_matrix

    rng = np.random.default_rng(2)
    items = {k: Importance(rng.normal(m, 1, 200), "sample") for k, m in (("a", 0), ("b", 1), ("c", 3))}
    m = compare_matrix(items, "wasserstein")
    assert np.allclose(m.values, m.values.T) and np.allclose(np.diag(m.values), 0)
    assert m.loc["a", "c"] > m.loc["a", "b"]


def test_save_and_load_round_trip_and_refuse_other_files():
    from core.importance import ImportanceError, load, make_provenance, save

    prov = make_provenance("ood", "energy", {"temperature": 1.0}, model={"kind": "zoo", "name": "shapes-vit"},
                           data={"kind": "builtin", "name": "shapes"}, seed=0)
    assert prov["versions"]["numpy"] and prov["seed"] == 0
    items = {"energy · ID": Importance(np.arange(5, dtype=np.float32), "sample", provenance=prov, scale="score"),
             "weights": Importance(np.ones((2, 3)), "mechanism", names=["a", "b", "c"])}
    back = load(save(items))
    assert list(back) == list(items)
    for k in items:
        assert back[k].values.dtype == items[k].values.dtype and np.array_equal(back[k].values, items[k].values)
        assert back[k].unit == items[k].unit and back[k].scale == items[k].scale and back[k].names == items[k].names
    assert back["energy · ID"].provenance["parameters"] == {"temperature": 1.0}
    with pytest.raises(ImportanceError, match="not an .npz archive"):
        load(b"hello", "notes.txt")
    import io

    buf = io.BytesIO()
    np.savez(buf, values_0=np.ones(3))
    with pytest.raises(ImportanceError, match="no manifest"):
        load(buf.getvalue(), "other.npz")
    buf = io.BytesIO()
    np.savez(buf, manifest=np.frombuffer(b'{"format": "importance-explorer/importances-v1", "items": '
                                         b'[{"name": "x", "array": "values_9"}]}', np.uint8))
    with pytest.raises(ImportanceError, match="names no array"):
        load(buf.getvalue(), "broken.npz")
    buf = io.BytesIO()
    np.savez(buf, manifest=np.frombuffer(b"\xff\xfe", np.uint8))
    with pytest.raises(ImportanceError, match="damaged"):
        load(buf.getvalue(), "garbled.npz")
