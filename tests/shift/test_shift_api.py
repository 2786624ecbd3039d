"""The public API the page builds on: signature, result fields, importances, cache, progress, specs."""
import inspect

import numpy as np
import pytest
from shift_worlds import GRAPH, DictCache, predict_proba

from core import shift
from core.importance import Importance
from core.spec import MethodSpec


def test_signature_keeps_the_issue_names():
    params = inspect.signature(shift.explain_performance_change).parameters
    assert list(params)[:10] == ["source", "target", "predict_proba", "label", "graph", "groups", "metric", "n_boot",
                                 "seed", "features"]
    assert params["source"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert all(params[k].kind is inspect.Parameter.KEYWORD_ONLY for k in ("predict_proba", "label", "graph"))
    assert (params["groups"].default, params["metric"].default, params["n_boot"].default, params["seed"].default) == \
        (None, "accuracy", 0, 0)
    assert {"progress", "cache", "settings"} <= set(params)


def test_result_fields(explain):
    res = explain("y", n_boot=30)
    assert res.total == pytest.approx(res.target_performance - res.source_performance)
    assert set(res.attributions) == set(res.ci) == set(GRAPH)
    assert res.mechanism_names == {"z": "P(z)", "y": "P(y)", "x": "P(x | y, z)"}
    assert res.weights.dtype == np.float32 and res.weights.shape == (res.n_source,)
    assert res.target_weights.shape == (res.n_target,)
    assert res.mechanism_weights.shape == (res.n_source, 3)
    assert len(res.coalitions.masks) == 8 and res.diagnostics.shapley == "exact"
    d = res.diagnostics
    assert len(d.mechanisms) == 3 and {c.label for c in d.classifiers} == {"z", "y", "z + y + x", "z + y"}
    assert 0 < d.ess_share <= 1 and d.timings.total > 0 and d.timings.classifiers > 0
    assert res.drift is not None and set(res.drift["column"]) == {"z", "y", "x"}
    assert res.drift.set_index("column").loc["y", "drifted"]  # the label prior moved
    assert res.c2st.auc > 0.6 and res.c2st.p_value < 1e-6
    assert res.label_shift.target_prior[1] == pytest.approx(res.label_shift.observed_target_prior[1], abs=0.05)
    frame = res.to_frame()
    assert list(frame["node"]) == res.nodes and frame["attribution"].sum() == pytest.approx(res.total)
    d_json = res.to_dict()
    assert d_json["attributions"][1]["mechanism"] == "P(y)" and "warnings" in d_json["diagnostics"]
    assert '"metric": "log_loss"' in res.to_json()


def test_importances_and_nbytes(explain):
    res = explain("x", n_boot=10)
    mech, samples = res.to_importances()
    assert isinstance(mech, Importance) and mech.unit == "mechanism"
    assert mech.names == ["P(z)", "P(y)", "P(x | y, z)"]
    np.testing.assert_allclose(mech.values, [res.attributions[n] for n in res.nodes])
    assert samples.unit == "sample" and samples.values is res.weights and samples.values.dtype == np.float32
    assert mech.provenance["analysis"] == "shift"
    arrays = res.weights.nbytes + res.target_weights.nbytes + res.mechanism_weights.nbytes
    assert res.nbytes >= arrays + res.boot_attributions.nbytes + res.coalitions.nbytes


def test_cache_keeps_the_density_ratios(source, targets):
    cache = DictCache()
    calls = []

    def run(**kw):
        return shift.explain_performance_change(source, targets["z"], predict_proba=predict_proba, label="y",
                                                graph=GRAPH, cache=cache, classifier="logistic",
                                                progress=lambda f, m: calls.append((f, m)), **kw)

    first = run(metric="log_loss")
    assert cache.computed == 4 and first.diagnostics.timings.cached_classifiers == 0
    second = run(metric="accuracy", estimator="source", clip_weight=20.0)  # no classifier changes
    assert cache.computed == 4 and second.diagnostics.timings.cached_classifiers == 4
    np.testing.assert_array_equal(first.mechanism_weights, second.mechanism_weights)
    run(metric="accuracy", calibration="isotonic")  # a classifier setting: refit
    assert cache.computed == 8
    fractions = [f for f, _ in calls]
    assert fractions[-1] == 1.0 and calls[-1][1] == "done" and all(0 <= f <= 1 for f in fractions)


def test_registries_and_settings_spec():
    assert shift.CLASSIFIERS.available() == ["gbm", "logistic"]
    assert shift.CALIBRATIONS.available() == ["platt", "isotonic", "none"]
    assert shift.SHAPLEY.available() == ["exact", "permutation"]
    assert shift.metrics_available() == ["accuracy", "log_loss", "brier", "auroc", "mse"]
    assert isinstance(shift.SETTINGS, MethodSpec) and shift.SETTINGS.defaults["classifier"] == "gbm"
    assert shift.CLASSIFIERS.spec("gbm").param("max_iter").default == 100
    caps = shift.metric_capabilities("classification", 6)
    assert shift.METRICS.unavailable_reason("auroc", caps) == \
        "AUROC needs a task with exactly two classes; this model has 6 classes."
    assert shift.METRICS.unavailable_reason("accuracy", caps) is None
    assert "regression" in shift.METRICS.unavailable_reason("mse", caps)
    assert not shift.METRICS.spec("log_loss").higher_is_better
    s = shift.ShiftSettings.make({"folds": 4}, classifier="logistic", classifier_params={"C": 0.5})
    assert s.folds == 4 and dict(s.classifier_params) == {"C": 0.5}
    assert shift.ShiftSettings.make(s) == s


def test_regression_and_auroc_metrics(source, targets):
    reg = shift.explain_performance_change(
        source, targets["x"], predict_proba=lambda f: f["x"].to_numpy() * 0.4 + 0.5, label="y", graph=GRAPH,
        metric="mse", classifier="logistic", audit=False)
    assert sum(reg.attributions.values()) == pytest.approx(reg.total)
    assert reg.attributions["x"] / reg.total > 0.8
    auc = shift.explain_performance_change(source, targets["x"], predict_proba=predict_proba, label="y", graph=GRAPH,
                                           metric="auroc", n_boot=20, classifier="logistic", audit=False)
    assert auc.total < -0.02 and auc.attributions["x"] / auc.total > 0.8
    assert auc.boot_attributions.shape == (20, 3)


def test_permutation_sampling_beyond_ten_players():
    rng = np.random.default_rng(0)
    cols = [f"c{i}" for i in range(10)]

    def frame(n, shift_c3):
        data = {c: rng.normal(size=n) for c in cols}
        data["c3"] = data["c3"] + shift_c3
        data["y"] = (rng.random(n) < 1 / (1 + np.exp(-data["c3"]))).astype(int)
        import pandas as pd

        return pd.DataFrame(data)

    src, tgt = frame(600, 0.0), frame(600, 1.5)
    graph = {**{c: [] for c in cols}, "y": ["c3"]}
    model = lambda f: np.c_[1 - 1 / (1 + np.exp(-f["c3"])), 1 / (1 + np.exp(-f["c3"]))]  # noqa: E731
    res = shift.explain_performance_change(src, tgt, predict_proba=model, label="y", graph=graph, metric="accuracy",
                                           classifier="logistic", n_permutations=64, audit=False)
    assert res.diagnostics.shapley == "permutation" and len(res.nodes) == 11
    assert sum(res.attributions.values()) == pytest.approx(res.total)
    assert res.attributions["c3"] / res.total > 0.8
