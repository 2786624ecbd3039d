"""Drift tests against scipy on known shifts, Evidently's size-aware defaults, C2ST, label-shift estimates."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from core import shift


def frames(n, seed=0, mean=0.0, cat_p=(0.5, 0.3, 0.2), bin_p=0.5):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"num": rng.normal(mean, 1, n), "cat": rng.choice(list("abc"), n, p=cat_p),
                         "flag": (rng.random(n) < bin_p).astype(int), "const": np.zeros(n)})


def test_small_samples_use_tests_large_samples_use_distances():
    small = shift.drift_table(frames(500), frames(500, 1, mean=0.5, cat_p=(0.2, 0.3, 0.5), bin_p=0.7))
    row = small.set_index("column")
    assert row.loc["num", "test"] == "KS" and row.loc["cat", "test"] == "chi²" and row.loc["flag", "test"] == "Z-test"
    assert row.loc["num", "drifted"] and row.loc["cat", "drifted"] and row.loc["flag", "drifted"]
    assert not row.loc["const", "drifted"]
    large = shift.drift_table(frames(3000), frames(3000, 1)).set_index("column")
    assert large.loc["num", "test"] == "Wasserstein (normed)" and large.loc["cat", "test"] == "Jensen-Shannon"
    assert not large["drifted"].any()  # no shift: every distance under 0.1
    assert not shift.dataset_drift(large.reset_index())


def test_statistics_match_scipy():
    a, b = frames(400), frames(600, 1, mean=0.3, cat_p=(0.4, 0.4, 0.2))
    row = shift.drift_table(a, b).set_index("column")
    ks = stats.ks_2samp(a["num"], b["num"])
    assert row.loc["num", "ks"] == pytest.approx(ks.statistic) and row.loc["num", "ks_p_value"] == pytest.approx(ks.pvalue)
    assert row.loc["num", "wasserstein_norm"] == pytest.approx(stats.wasserstein_distance(a["num"], b["num"]) / a["num"].std(ddof=0))
    table = pd.crosstab(np.r_[np.zeros(400), np.ones(600)], np.r_[a["cat"], b["cat"]]).to_numpy()
    assert row.loc["cat", "chi2_p_value"] == pytest.approx(stats.chi2_contingency(table, correction=False)[1])
    fa = a["cat"].value_counts(normalize=True).sort_index()
    fb = b["cat"].value_counts(normalize=True).sort_index()
    m = (fa + fb) / 2
    js = np.sqrt((stats.entropy(fa, m) + stats.entropy(fb, m)) / 2)
    assert row.loc["cat", "jensen_shannon"] == pytest.approx(js)


def test_table_is_sorted_by_effect_and_kinds_follow_evidently():
    t = shift.drift_table(frames(300), frames(300, 2, mean=2.0))
    assert t["column"].iloc[0] == "num" and list(t["effect"]) == sorted(t["effect"], reverse=True)
    assert shift.column_kind(pd.Series([1, 2, 3, 4, 5]), pd.Series([1, 2])) == "categorical"
    assert shift.column_kind(pd.Series(np.arange(10.0)), pd.Series([1.0])) == "numeric"
    assert shift.column_kind(pd.Series([0, 1]), pd.Series([1, 1])) == "binary"


def test_c2st():
    same = shift.c2st(frames(800), frames(800, 1), ["num", "cat"], classifier="logistic")
    assert abs(same.auc - 0.5) < 0.05 and same.p_value > 0.01
    moved = shift.c2st(frames(800), frames(800, 1, mean=1.0), ["num", "cat"], classifier="logistic")
    assert moved.auc > 0.7 and moved.score == pytest.approx(2 * moved.auc - 1) and moved.p_value < 1e-10


@pytest.mark.parametrize("method", ["bbse", "em"])
def test_label_shift_estimates_recover_the_target_prior(method):
    """x | y ~ N(2y, 1) for y ∈ {0, 1, 2}; the model is the source's exact posterior (uniform prior);
    the target's prior is (0.6, 0.3, 0.1)."""
    rng = np.random.default_rng(0)

    def world(n, prior):
        y = rng.choice(3, n, p=prior)
        return rng.normal(2 * y, 1.0), y

    def posterior(x):
        logp = -0.5 * (x[:, None] - 2 * np.arange(3)) ** 2
        p = np.exp(logp - logp.max(1, keepdims=True))
        return p / p.sum(1, keepdims=True)

    xs, ys = world(6000, [1 / 3] * 3)
    xt, yt = world(6000, [0.6, 0.3, 0.1])
    est = shift.label_shift(posterior(xs), ys, posterior(xt), method=method, labels_target=yt)
    np.testing.assert_allclose(est.target_prior, [0.6, 0.3, 0.1], atol=0.03)
    assert est.error < 0.03 and est.target_prior.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(est.weights, est.target_prior / est.source_prior)
    naive = np.bincount(posterior(xt).argmax(1), minlength=3) / 6000  # predicted frequencies are biased
    assert np.abs(naive - [0.6, 0.3, 0.1]).sum() > 2 * np.abs(est.target_prior - [0.6, 0.3, 0.1]).sum()
