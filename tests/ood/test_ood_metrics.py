"""core.ood.metrics / roc_curve against scikit-learn and brute-force references, ties included."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from core import ood
from core.ood import OODError


def brute_fpr(s_id, s_ood, convention, level=0.95):
    """Walk every distinct threshold; tied scores cross it together."""
    s_id, s_ood = np.asarray(s_id, float), np.asarray(s_ood, float)
    values = np.unique(np.concatenate([s_id, s_ood]))
    if convention == "ood-positive":  # flag score <= t as OOD, from the most OOD-like t upwards
        for t in values:
            if np.mean(s_ood <= t) >= level:
                return np.mean(s_id <= t), t
    else:  # accept score >= t as ID, from the highest t downwards
        for t in values[::-1]:
            if np.mean(s_id >= t) >= level:
                return np.mean(s_ood >= t), t
    raise AssertionError("unreachable: the extreme threshold reaches every level")


def brute_auroc(s_id, s_ood):
    s_id, s_ood = np.asarray(s_id, float)[:, None], np.asarray(s_ood, float)[None, :]
    return float(np.mean((s_ood < s_id) + 0.5 * (s_ood == s_id)))


def sklearn_reference(s_id, s_ood):
    s = np.concatenate([s_id, s_ood]).astype(float)
    is_ood = np.r_[np.zeros(len(s_id)), np.ones(len(s_ood))]
    return {"auroc": roc_auc_score(is_ood, -s), "aupr_in": average_precision_score(1 - is_ood, s),
            "aupr_out": average_precision_score(is_ood, -s)}


scores = st.one_of(
    st.lists(st.integers(-3, 3), min_size=1, max_size=60),  # heavy ties
    st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=64), min_size=1, max_size=60),
    st.lists(st.sampled_from([0.0, 0.1, 0.1 + 1e-12, 1.0]), min_size=1, max_size=60),
)


@settings(max_examples=300, deadline=None)
@given(s_id=scores, s_ood=scores)
def test_metrics_equal_sklearn_and_brute_force(s_id, s_ood):
    got = ood.metrics(s_id, s_ood)
    ref = sklearn_reference(s_id, s_ood)
    for key in ("auroc", "aupr_in", "aupr_out"):
        assert got[key] == pytest.approx(ref[key], abs=1e-12), key
    assert got["auroc"] == pytest.approx(brute_auroc(s_id, s_ood), abs=1e-12)
    fpr, thr = brute_fpr(s_id, s_ood, "ood-positive")
    assert got["fpr95"] == pytest.approx(fpr, abs=1e-15) and got["threshold"] == thr
    other = ood.metrics(s_id, s_ood, convention="id-positive")
    fpr, thr = brute_fpr(s_id, s_ood, "id-positive")
    assert other["fpr95"] == pytest.approx(fpr, abs=1e-15) and other["threshold"] == thr
    for key in ("auroc", "aupr_in", "aupr_out"):  # only the FPR depends on the convention
        assert other[key] == got[key]


@settings(max_examples=150, deadline=None)
@given(s_id=scores, s_ood=scores)
def test_roc_curve_matches_sklearn(s_id, s_ood):
    s = np.concatenate([s_id, s_ood]).astype(float)
    is_ood = np.r_[np.zeros(len(s_id)), np.ones(len(s_ood))]
    fpr, tpr, thr = ood.roc_curve(s_id, s_ood)
    ref_fpr, ref_tpr, ref_thr = sk_roc_curve(is_ood, -s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr, atol=1e-15)
    np.testing.assert_allclose(tpr, ref_tpr, atol=1e-15)
    np.testing.assert_array_equal(thr[1:], -ref_thr[1:])
    assert thr[0] == -np.inf
    fpr, tpr, thr = ood.roc_curve(s_id, s_ood, convention="id-positive")
    ref_fpr, ref_tpr, ref_thr = sk_roc_curve(1 - is_ood, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr, atol=1e-15)
    np.testing.assert_allclose(tpr, ref_tpr, atol=1e-15)
    np.testing.assert_array_equal(thr, ref_thr)


def test_hand_computed_case():
    s_id, s_ood = [3.0, 2.0, 2.0], [2.0, 1.0]
    m = ood.metrics(s_id, s_ood)
    # P(ood < id): id=3 beats both (2), each id=2 beats ood=1 (1) and ties ood=2 (½) -> (2 + 1.5 + 1.5) / 6
    assert m["auroc"] == pytest.approx(5 / 6)
    # OOD positive: flag score <= 1 catches 1/2 OOD, score <= 2 catches 2/2 with 2/3 of ID flagged
    assert m["fpr95"] == pytest.approx(2 / 3) and m["threshold"] == 2.0
    # ID positive: accepting score >= 2 keeps 3/3 ID (>= 95%) and accepts 1/2 OOD
    m = ood.metrics(s_id, s_ood, convention="id-positive")
    assert m["fpr95"] == pytest.approx(0.5) and m["threshold"] == 2.0


def test_extremes_and_ties():
    assert ood.metrics([1, 1, 1], [1, 1])["auroc"] == 0.5
    m = ood.metrics([2, 3, 4], [0, 1])
    assert m["auroc"] == 1.0 and m["fpr95"] == 0.0 and m["aupr_in"] == 1.0 and m["aupr_out"] == 1.0
    assert ood.metrics([0, 1], [2, 3])["auroc"] == 0.0
    # one tie group holding everything: one ROC point besides the origin
    fpr, tpr, thr = ood.roc_curve([5.0] * 4, [5.0] * 3)
    assert list(fpr) == [0.0, 1.0] and list(tpr) == [0.0, 1.0]


def test_large_random_agrees_with_sklearn(rng):
    s_id = np.round(rng.normal(1, 1, 20_000), 2)  # rounding makes many ties
    s_ood = np.round(rng.normal(0, 1, 15_000), 2)
    got, ref = ood.metrics(s_id, s_ood), sklearn_reference(s_id, s_ood)
    for key in ref:
        assert got[key] == pytest.approx(ref[key], abs=1e-10)
    assert got["fpr95"] == pytest.approx(brute_fpr(s_id, s_ood, "ood-positive")[0])


def test_roc_curve_downsampling(rng):
    fpr, tpr, thr = ood.roc_curve(rng.normal(size=5000), rng.normal(size=5000), max_points=100)
    assert len(fpr) <= 100 and fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


def test_accepts_float32_and_lists():
    a = ood.metrics(np.array([1, 2, 3], np.float32), [0.5, 2.5])
    b = ood.metrics([1.0, 2.0, 3.0], np.array([0.5, 2.5]))
    assert a == b


@pytest.mark.parametrize("s_id, s_ood, match", [
    ([], [1.0], "score_id is empty"),
    ([1.0], [], "score_ood is empty"),
    ([1.0, np.nan], [1.0], "NaN/inf"),
    ([1.0], [np.inf, 0.0], "NaN/inf"),
    (np.ones((2, 3)), [1.0], "1-D"),
    (["a"], [1.0], "numbers"),
])
def test_bad_inputs_raise(s_id, s_ood, match):
    with pytest.raises(OODError, match=match):
        ood.metrics(s_id, s_ood)
    with pytest.raises(OODError, match=match):
        ood.roc_curve(s_id, s_ood)


def test_bad_options_raise():
    with pytest.raises(OODError, match="convention"):
        ood.metrics([1.0], [0.0], convention="ood")
    with pytest.raises(OODError, match="tpr_level"):
        ood.metrics([1.0], [0.0], tpr_level=1.5)
    with pytest.raises(OODError, match="max_points"):
        ood.roc_curve([1.0, 2.0, 3.0], [0.0, 5.0], max_points=1)
    assert issubclass(OODError, ValueError)
