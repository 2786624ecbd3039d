"""Density ratios from cross-fitted, calibrated domain classifiers against closed forms."""
import numpy as np
import pandas as pd
import pytest

from core.shift import ShiftSettings
from core.shift.weights import (
    ColumnTable,
    _platt_fit,
    assign_folds,
    calibrate,
    fit_domain_classifier,
    reliability,
)


def _fit(source, target, columns, **settings):
    table = ColumnTable.build(source, target, list(source.columns))
    return table, fit_domain_classifier(table, columns, ShiftSettings.make(**settings), seed=0)


@pytest.mark.parametrize("classifier", ["logistic", "gbm"])
def test_marginal_ratio_of_a_gaussian_mean_shift(classifier):
    """p_T/p_S for N(0.8, 1) against N(0, 1) is exp(0.8·x − 0.32); with unequal sizes the prior
    correction n_S/n_T must make the source's mean weight 1."""
    rng = np.random.default_rng(0)
    source, target = pd.DataFrame({"x": rng.normal(0, 1, 3000)}), pd.DataFrame({"x": rng.normal(0.8, 1, 1500)})
    table, fit = _fit(source, target, ["x"], classifier=classifier)
    log_w = fit.log_odds[:3000] - fit.prior_log_odds
    truth = 0.8 * source["x"].to_numpy() - 0.32
    core = np.abs(source["x"].to_numpy()) < 2  # where both densities have mass
    err = np.abs(log_w - truth)[core]
    assert np.median(err) < (0.08 if classifier == "logistic" else 0.2)
    assert np.corrcoef(log_w[core], truth[core])[0, 1] > (0.99 if classifier == "logistic" else 0.9)  # trees: steps
    assert np.exp(log_w).mean() == pytest.approx(1.0, abs=0.08)
    assert 0.6 < fit.auc < 0.75  # Φ(0.8/√2) ≈ 0.71


def test_conditional_ratio_is_an_odds_ratio_in_which_the_parent_shift_cancels():
    """Parent z shifts (N(0,1) → N(1,1)) and v | z shifts (N(z,1) → N(z + 0.6, 1)): the conditional
    weight odds(z, v)/odds(z) must recover p_T(v | z)/p_S(v | z) = exp(0.6·(v − z) − 0.18) alone."""
    rng = np.random.default_rng(1)
    zs, zt = rng.normal(0, 1, 4000), rng.normal(1, 1, 4000)
    source = pd.DataFrame({"z": zs, "v": zs + rng.normal(0, 1, 4000)})
    target = pd.DataFrame({"z": zt, "v": zt + 0.6 + rng.normal(0, 1, 4000)})
    table = ColumnTable.build(source, target, ["z", "v"])
    s = ShiftSettings.make(classifier="logistic")
    joint = fit_domain_classifier(table, ["z", "v"], s, seed=0)
    parent = fit_domain_classifier(table, ["z"], s, seed=0)
    log_w = (joint.log_odds - parent.log_odds)[:4000]
    truth = 0.6 * (source["v"] - source["z"]).to_numpy() - 0.18
    core = (np.abs(zs) < 1.5) & (np.abs(truth) < 1.5)
    assert np.corrcoef(log_w[core], truth[core])[0, 1] > 0.97
    assert np.median(np.abs(log_w - truth)[core]) < 0.12


def test_no_shift_gives_weights_near_one_and_chance_auc():
    rng = np.random.default_rng(2)
    source = pd.DataFrame({"x": rng.normal(size=2000), "c": rng.choice(list("abc"), 2000)})
    target = pd.DataFrame({"x": rng.normal(size=2000), "c": rng.choice(list("abc"), 2000)})
    table, fit = _fit(source, target, ["x", "c"])
    assert abs(fit.auc - 0.5) < 0.04
    assert np.quantile(np.abs(fit.log_odds - fit.prior_log_odds), 0.9) < 0.3


def test_categorical_columns_get_shared_codes_and_exact_frequency_ratios():
    rng = np.random.default_rng(3)
    source = pd.DataFrame({"c": rng.choice(["x", "y"], 4000, p=[0.5, 0.5])})
    target = pd.DataFrame({"c": rng.choice(["y", "x"], 4000, p=[0.2, 0.8])})
    table, fit = _fit(source, target, ["c"], classifier="logistic")
    assert table.categorical["c"] and table.n_categories["c"] == 2
    w = np.exp(fit.log_odds[:4000] - fit.prior_log_odds)
    is_x = source["c"].to_numpy() == "x"
    assert w[is_x].mean() == pytest.approx(1.6, rel=0.06) and w[~is_x].mean() == pytest.approx(0.4, rel=0.1)


def test_constant_columns_need_no_classifier():
    source, target = pd.DataFrame({"k": np.full(50, 8.0)}), pd.DataFrame({"k": np.full(70, 8.0)})
    table, fit = _fit(source, target, ["k"])
    assert fit.skipped and fit.auc == 0.5
    np.testing.assert_allclose(fit.log_odds - fit.prior_log_odds, 0.0)


def test_folds_are_stratified_by_domain():
    folds = assign_folds(100, 40, 4, np.random.default_rng(0))
    for k in range(4):
        assert (folds[:100] == k).sum() == 25 and (folds[100:] == k).sum() == 10


def test_platt_scaling_recovers_a_logistic_link():
    rng = np.random.default_rng(4)
    s = rng.normal(0, 2, 40000)
    y = (rng.random(40000) < 1 / (1 + np.exp(-(1.7 * s - 0.6)))).astype(np.int64)
    a, b = _platt_fit(s, y)
    assert a == pytest.approx(1.7, abs=0.05) and b == pytest.approx(-0.6, abs=0.05)
    folds = np.arange(40000) % 3
    for method in ("platt", "isotonic"):
        p = calibrate(s, y, folds, method)
        _, ece = reliability(p, y.astype(float))
        assert ece < 0.02


def test_reliability_keeps_tied_probabilities_in_one_bin():
    prob = np.r_[np.full(500, 0.2), np.full(500, 0.7)]
    y = np.r_[np.zeros(400), np.ones(100), np.zeros(150), np.ones(350)]
    table, ece = reliability(prob, y)
    assert len(table) == 2 and ece == pytest.approx(0.0, abs=1e-12)
