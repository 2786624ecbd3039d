"""core.attribution.workflow: the request, the sample filter, the cost estimate, the run with its request, the
marker table against hand computation, the report section, the code snippet rebuilt from a kept result, and the
audit's attribution branch."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from core import codegen
from core.attribution import AttributionError
from core.attribution import workflow as W
from core.attribution.base import PassEstimate
from core.attribution.suite import AttributionResult, estimate_run
from core.importance import load, save
from core.workspace import Resolver, default_workspace

WINE = {"model": {"kind": "tabular", "name": "logistic-regression", "seed": 0},
        "data": {"kind": "builtin", "name": "wine", "split": "test", "n": None, "seed": 0, "shift": None}}
SHAPES = {"model": {"kind": "zoo", "name": "shapes-cnn"},
          "data": {"kind": "builtin", "name": "shapes", "split": "test", "n": 60, "seed": 3, "shift": None}}


@pytest.fixture(scope="module")
def resolver():
    return Resolver()


def test_request_is_json_round_trip_stable():
    req = W.AttributionRequest(SHAPES, {"rise": {"masks": 300}}, metrics=["deletion"], classes=[2, 1], indices=None)
    again = W.AttributionRequest(**json.loads(json.dumps(req.as_dict())))
    assert again == req and again.fingerprint == req.fingerprint
    assert req.metrics == ("deletion",) and req.classes == (2, 1)
    assert W.AttributionRequest(SHAPES, {"rise": {"masks": 301}}).fingerprint != req.fingerprint
    # the request's seed seeds every method that draws at random; others get no seed
    p = W.method_params(dataclasses.replace(req, methods={"rise": {"masks": 300}, "saliency": {}}, seed=7))
    assert p == {"rise": {"masks": 300, "seed": 7}, "saliency": {}}
    assert W.compact_params("rise", {"masks": 2000, "grid": 5, "p": 0.5}) == {"grid": 5}


def test_default_requests(resolver):
    img = W.default_request(resolver, default_workspace())
    assert img.methods == {"saliency": {}, "integrated-gradients": {}, "gradcam": {}, "rise": {"masks": 500}}
    assert img.n_samples == 4 and img.target == "predicted" and "randomisation" not in img.metrics
    tab = W.default_request(resolver, WINE)
    # exact Shapley is limited to 12 features (wine has 13); gradients need a torch model
    assert tab.methods == {"feature-ablation": {}, "permutation": {}, "kernelshap": {"samples": 500}}
    assert tab.n_samples == 20 and "localisation" not in tab.metrics  # no masks for a table
    reasons = W.usable(resolver.load_model(WINE["model"], WINE["data"]))
    assert "differentiable" in reasons["integrated-gradients"] and "image" in reasons["gradcam"]
    assert "12 features" in reasons["exact-shapley"]
    cnn = resolver.load_model(SHAPES["model"], SHAPES["data"])
    assert "CNN" in W.usable(cnn)["attention-rollout"] and W.usable(cnn)["gradcam"] is None


def test_samples_follow_the_filter_and_the_seed(resolver):
    out = resolver.outputs(SHAPES["model"], SHAPES["data"])
    labels = resolver.load_data(SHAPES["data"]).labels
    req = W.AttributionRequest(SHAPES, {"saliency": {}}, classes=(0, 3), correctness="correct", n_samples=5, seed=1)
    cands = W.candidates(resolver, req)
    np.testing.assert_array_equal(cands, np.flatnonzero(np.isin(labels, [0, 3]) & (out.preds == labels)))
    idx = W.sample_indices(resolver, req)
    assert len(idx) == 5 and set(idx) <= set(cands) and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(idx, W.sample_indices(resolver, req))  # seeded
    assert not np.array_equal(idx, W.sample_indices(resolver, dataclasses.replace(req, seed=2)))
    wrong = W.candidates(resolver, dataclasses.replace(req, classes=None, correctness="incorrect"))
    np.testing.assert_array_equal(wrong, np.flatnonzero(out.preds != labels))
    # fewer matches than asked: all of them
    few = dataclasses.replace(req, classes=(0,), n_samples=60)
    np.testing.assert_array_equal(W.sample_indices(resolver, few), W.candidates(resolver, few))
    np.testing.assert_array_equal(W.sample_indices(resolver, dataclasses.replace(req, indices=(4, 9))), [4, 9])
    with pytest.raises(AttributionError, match="0..59"):
        W.sample_indices(resolver, dataclasses.replace(req, indices=(4, 60)))
    with pytest.raises(AttributionError, match="1..64"):
        W.sample_indices(resolver, dataclasses.replace(req, n_samples=65))
    with pytest.raises(AttributionError, match="widen the filter"):
        W.sample_indices(resolver, dataclasses.replace(req, classes=(99,)))


def test_estimate_counts_every_pass(resolver):
    req = W.AttributionRequest(SHAPES, {"rise": {"masks": 300}, "integrated-gradients": {"steps": 10},
                                        "attention-rollout": {}}, n_samples=3)
    est = W.estimate(resolver, req)
    model, dataset = W.load(resolver, SHAPES)
    expect = estimate_run(model, dataset, est.indices, W.method_params(req), metrics=req.metrics)
    assert est.passes == expect and est.passes["attention-rollout"] == PassEstimate(0)  # not for a CNN
    curve = 65 * 3  # one image row per step of the 64×64 maps, plus the intact image
    assert est.passes["rise"] == PassEstimate(3 * 300 + 2 * curve)
    # IG: a forward and a backward pass per step, and f(x), f(baseline) for its completeness check
    assert est.passes["integrated-gradients"] == PassEstimate(3 * (10 + 2) + 2 * curve, 3 * 10)
    assert est.equivalent == sum(p.equivalent for p in expect.values()) and est.seconds is None
    assert not est.needs_confirmation
    slow = dataclasses.replace(est, seconds_per_pass=1.0)
    assert slow.seconds == est.equivalent and slow.needs_confirmation
    assert 0 < W.pass_seconds(resolver, SHAPES, rows=8, repeats=1) < 1


def test_evaluate_records_the_request_and_the_marker(resolver):
    req = W.AttributionRequest(SHAPES, {"saliency": {}, "gradcam": {}, "lime": {}}, metrics=("sparseness", "localisation"),
                               n_samples=3)
    with pytest.raises(AttributionError, match="lime"):
        W.evaluate(resolver, req)
    req = dataclasses.replace(req, methods={"saliency": {}, "gradcam": {}, "attention-rollout": {}})
    cache = _Cache()
    res = W.evaluate(resolver, req, cache=cache)
    assert res.request == req and res.fingerprint == req.fingerprint
    assert res.methods == ["saliency", "gradcam"] and "CNN" in res.errors["attention-rollout"]
    dataset = resolver.load_data(SHAPES["data"])
    np.testing.assert_array_equal(res.region_masks["marker"], dataset.masks["marker"][res.indices])
    assert res.nbytes >= res.region_masks["marker"].nbytes + sum(v.nbytes for v in res.maps.values())
    assert set(res._pixel_maps) == set(res.methods)  # filled before the result is shared
    n_computed = len(cache.computed)
    W.evaluate(resolver, req, cache=cache)
    assert len(cache.computed) == n_computed  # every method's work came from the cache
    only_bad = dataclasses.replace(req, methods={"attention-rollout": {}})
    with pytest.raises(AttributionError, match="No method could run"):
        W.evaluate(resolver, only_bad)
    outputs_only = {"model": {"kind": "none"}, "data": SHAPES["data"]}
    with pytest.raises(AttributionError, match="precomputed outputs"):
        W.default_request(resolver, outputs_only)


class _Cache:
    def __init__(self):
        self.store, self.computed = {}, []

    def get_or_compute(self, key, compute):
        if key not in self.store:
            self.computed.append(key)
            self.store[key] = compute()
        return self.store[key]


def _handmade(maps: dict[str, np.ndarray], marker: np.ndarray) -> AttributionResult:
    n = len(marker)
    return AttributionResult(kind="image", indices=np.arange(n), targets=np.zeros(n, np.int64), labels=np.zeros(n, np.int64),
                             preds=np.zeros(n, np.int64), target_probability=np.ones(n, np.float32), class_names=["a"],
                             maps={m: v[:, None].astype(np.float32) for m, v in maps.items()},
                             nan_samples={m: ~np.isfinite(v.reshape(n, -1)).all(1) for m, v in maps.items()},
                             region_masks={"marker": marker})


def test_region_table_against_hand_computation():
    marker = np.zeros((3, 4, 4), bool)
    marker[0, 0, 0] = marker[1, :2, :2] = True  # image 2 shows no marker
    on = np.zeros((3, 4, 4))
    on[:, 0, 0] = 3.0
    on[:, 3, 3] = -1.0  # |a| on the marker: 3/4 in image 0; 3/4 in image 1 (its marker holds (0, 0))
    flat = np.ones((3, 4, 4))
    nan = flat.copy()
    nan[0, 1, 1] = np.nan
    table = W.region_table(_handmade({"on": on, "flat": flat, "nan": nan}, marker)).set_index("method")
    area = (1 + 4) / 32  # the marker's share of the images that show it
    assert table.loc["on", "images"] == 2 and table.loc["on", "share_abs"] == pytest.approx(0.75)
    assert table.loc["on", "share_positive"] == pytest.approx(1.0) and table.loc["on", "area_share"] == pytest.approx(area)
    assert table.loc["flat", "share_abs"] == pytest.approx((1 / 16 + 4 / 16) / 2)
    assert table.loc["on", "ratio"] == pytest.approx(0.75 / area)
    assert table.loc["nan", "images"] == 1 and table.loc["nan", "share_abs"] == pytest.approx(4 / 16)  # NaN map left out
    assert W.region_table(_handmade({"on": on}, np.zeros((3, 4, 4), bool))).empty


def test_kept_result_rebuilds_its_request_and_the_report(resolver, tmp_path):
    req = W.AttributionRequest(WINE, {"feature-ablation": {}, "kernelshap": {"samples": 64}}, metrics=("deletion",),
                               n_samples=6, correctness="correct", seed=4)
    res = W.evaluate(resolver, req)
    imps = res.to_importances()
    assert set(imps) == {"feature-ablation", "kernelshap"} and imps["kernelshap"].unit == "feature"
    prov = imps["kernelshap"].provenance
    assert prov["request"]["methods"] == {"kernelshap": {"samples": 64}} and prov["seed"] == 4
    one = dataclasses.replace(req, methods={"kernelshap": {"samples": 64}})
    assert codegen.snippet_from_provenance(prov) == codegen.snippet("attribution", one)
    # through a saved file (JSON provenance: tuples come back as lists)
    loaded = load(save({"k": imps["kernelshap"]}), "kept.npz")
    assert codegen.snippet_from_provenance(loaded["k"].provenance) == codegen.snippet("attribution", one)
    # the snippet runs and gives the same maps
    scope: dict = {}
    exec(codegen.snippet("attribution", one).replace("print()\nresult.summary()", ""), scope)
    np.testing.assert_allclose(scope["result"].maps["kernelshap"], res.maps["kernelshap"])
    numbers = json.loads(eval(codegen.ANALYSES["attribution"]["numbers"], {"result": res}))
    assert [r["method"] for r in numbers] == list(res.summary()["method"]) and "seconds" not in numbers[0]
    section = W.report_section(res, WINE)
    assert section.title == "Attribution" and "Ranking" in section.text and len(section.figures) == 2
    assert list(section.tables[0][1]["method"])[-1] == "random map"
    frame = W.attributions_frame(res)
    assert len(frame) == 2 * 6 * 13 and set(frame["feature"]) == set(res.feature_names)
    with np.load(__import__("io").BytesIO(W.attributions_npz(res))) as z:
        np.testing.assert_array_equal(z["kernelshap"], res.maps["kernelshap"])
        assert list(z["feature_names"]) == res.feature_names
    metrics = W.metrics_frame(res)
    assert list(metrics["method"].unique()) == ["feature-ablation", "kernelshap", "random map"]
    assert isinstance(W.summary_table(res), pd.DataFrame)


def test_audit_runs_the_default_attribution(tmp_path):
    from core import audit

    out = tmp_path / "report.html"
    assert audit.main(["--data", "wine", "--model", "logistic-regression", "--analyses", "attribution", "--out", str(out),
                       "--quiet"]) == 0
    html = out.read_text()
    assert "Attribution" in html and "AttributionRequest(" in html and "Feature ablation" in html
