"""Attribution on a world with known mechanisms: the shifted mechanism takes the change.

Every target shifts exactly one mechanism of the graph z → x ← y (shift_worlds.py): the covariate
marginal P(z), the label prior P(y) or the conditional P(x | y, z). The mechanism that shifted must
receive at least 80% of the change and every other one at most 15% of it (at n = 2000 rows a side
the classifier noise is a few percent).
"""
import itertools
import math

import numpy as np
import pytest
from shift_worlds import GRAPH

MAIN, OTHERS = 0.8, 0.15


@pytest.mark.parametrize("metric", ["log_loss", "accuracy"])
@pytest.mark.parametrize("shifted", ["z", "y", "x"])
def test_the_shifted_mechanism_takes_the_change(explain, shifted, metric):
    res = explain(shifted, metric=metric)
    assert res.significant is None and abs(res.total) > 0.03  # a real change, not noise
    share = {node: v / res.total for node, v in res.attributions.items()}
    assert share[shifted] >= MAIN, share
    for node in GRAPH:
        if node != shifted:
            assert abs(share[node]) <= OTHERS, share


@pytest.mark.parametrize("estimator", ["source", "symmetric"])
def test_the_other_estimators_agree_on_a_shift_both_datasets_cover(explain, estimator):
    res = explain("x", estimator=estimator)
    assert res.attributions["x"] / res.total >= MAIN


@pytest.mark.parametrize("estimator", ["overlap", "symmetric", "source"])
def test_attributions_add_up_to_the_observed_change(explain, estimator):
    res = explain("y", estimator=estimator, n_boot=20)
    observed = res.target_performance - res.source_performance
    assert res.total == pytest.approx(observed, abs=1e-12)
    assert sum(res.attributions.values()) == pytest.approx(res.total, abs=1e-9)
    np.testing.assert_allclose(res.boot_attributions.sum(1), res.boot_total, atol=1e-9)


def test_no_shift_gives_no_change(explain):
    res = explain("none", n_boot=100)
    assert abs(res.total) < 0.05
    assert res.total_ci[0] < 0 < res.total_ci[1] and not res.significant
    assert all(abs(v) < 0.03 for v in res.attributions.values())
    assert all(lo <= 0 <= hi for lo, hi in res.ci.values())


def test_exact_shapley_of_the_run_equals_brute_force_over_its_coalition_values(explain):
    res = explain("z")
    tab = res.coalitions
    value = dict(zip(tab.masks.tolist(), tab.value))
    p = len(res.nodes)
    phi = np.zeros(p)
    for order in itertools.permutations(range(p)):
        mask = 0
        for j in order:
            phi[j] += value[mask | 1 << j] - value[mask]
            mask |= 1 << j
    phi /= math.factorial(p)
    np.testing.assert_allclose([res.diagnostics.unadjusted[n] for n in res.nodes], phi, atol=1e-12)
    assert value[0] == 0.0
    # the efficiency rule then shares what the estimated game missed, so the attributions add up to the change
    assert res.diagnostics.residual == pytest.approx(res.total - value[(1 << p) - 1], abs=1e-12)


def test_source_side_coalition_values_are_the_reweighted_metric(explain, source):
    """v̂(S) from the source = the self-normalised weighted log loss under min(Π_{j∈S} w_j, c) − the
    source's log loss, computed here with scikit-learn."""
    from shift_worlds import predict_proba
    from sklearn.metrics import log_loss

    res = explain("x", estimator="source")
    probs, y = predict_proba(source), source["y"].to_numpy()
    base = log_loss(y, probs)
    tab = res.coalitions
    for i, mask in enumerate(tab.masks):
        cols = [j for j in range(len(res.nodes)) if (mask >> j) & 1]
        w = np.minimum(np.prod(res.mechanism_weights[:, cols].astype(np.float64), axis=1), res.settings.clip_weight)
        assert tab.source_value[i] == pytest.approx(log_loss(y, probs, sample_weight=w) - base, abs=2e-5)


def test_permutation_sampling_is_close_to_exact(explain):
    exact = explain("y")
    sampled = explain("y", shapley="permutation", n_permutations=400)
    assert sampled.diagnostics.shapley == "permutation"
    assert sum(sampled.attributions.values()) == pytest.approx(sampled.total, abs=1e-9)
    for n in exact.nodes:
        assert sampled.attributions[n] == pytest.approx(exact.attributions[n], abs=0.03 * abs(exact.total))


def test_bootstrap_intervals_cover_the_estimate_and_the_refit_bootstrap_runs(explain):
    res = explain("y", n_boot=200)
    lo, hi = res.ci["y"]
    assert lo <= res.attributions["y"] <= hi and hi - lo < abs(res.total)
    assert res.boot_attributions.shape == (200, 3) and res.significant
    refit = explain("y", n_boot=3, bootstrap="refit", classifier="logistic")
    assert refit.boot_attributions.shape == (3, 3)
    np.testing.assert_allclose(refit.boot_attributions.sum(1), refit.boot_total, atol=1e-9)


def test_weights_follow_the_shift(explain, source, targets):
    """Under a label-prior shift the weight of P(y) is the ratio of the class frequencies (≈ 0.9/0.5 for
    class 1, 0.1/0.5 for class 0), and the other mechanisms' weights stay near 1."""
    res = explain("y")
    y, yt = source["y"].to_numpy(), targets["y"]["y"].to_numpy()
    w = res.mechanism_weights[:, res.nodes.index("y")]
    for k in (0, 1):
        assert np.median(w[y == k]) == pytest.approx((yt == k).mean() / (y == k).mean(), rel=0.07)
    assert np.median(np.abs(np.log(res.mechanism_weights[:, res.nodes.index("z")]))) < 0.1
    top = res.most_target_like(50)
    assert y[top].mean() > 0.9
