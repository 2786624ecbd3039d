"""The sweep workflow on a handful of Shapes images: typed results, budgets, cache, progress, importances."""
from __future__ import annotations

import numpy as np
import pytest

from core import pruning
from core.pruning import PruningError, match_budget, run_sweep
from core.pruning.sweep import object_patch_share, region_retention

from .conftest import small_vit


class CountingCache:
    def __init__(self):
        self.store, self.computed = {}, 0

    def get_or_compute(self, key, fn):
        if key not in self.store:
            self.computed += 1
            self.store[key] = fn()
        return self.store[key]


@pytest.fixture(scope="module")
def shapes_small():
    from core.data import load

    return load("shapes", split="test", n=12, seed=5)


@pytest.fixture(scope="module")
def small_sweep(shapes_vit, shapes_small):
    cache, calls = CountingCache(), []
    result = run_sweep(shapes_vit, shapes_small, {"zero-tprune": {}, "tome": {}, "random": {"seed": 1}},
                       budgets=(0.35,), batch_size=5, throughput_batch=4, throughput_rounds=1,
                       progress=lambda f, m: calls.append((f, m)), cache=cache)
    return result, cache, calls


def test_sweep_result_is_typed_and_complete(small_sweep, shapes_small):
    result, _cache, calls = small_sweep
    assert [p.method for p in result.points] == ["zero-tprune", "tome", "random"]
    assert result.baseline.method == "unpruned" and result.baseline.macs_ratio == 1.0
    for p in result.points:
        assert abs((1 - p.macs_ratio) - 0.35) < 0.02 and p.note == ""
        assert p.preds.shape == (12,) and p.images_per_s > 0 and p.importance_seconds >= 0
        assert p.accuracy == pytest.approx(float((p.preds == shapes_small.labels).mean()))
        assert all(lt.origin.shape == (12, 64) for lt in p.layers)  # batches of 5, 5, 2 joined
    table = result.table()
    assert list(table["method"]) == ["unpruned", "zero-tprune", "tome", "random"]
    for col in ("accuracy", "gmacs", "images_per_s", "speedup", "importance_share", "object_retention", "random_retention"):
        assert col in table and table[col].notna().all()
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert result.nbytes == (result.baseline.nbytes + sum(p.nbytes for p in result.points) + result.labels.nbytes
                             + sum(v.nbytes for v in result.regions.values()))


def test_sweep_is_cached(small_sweep, shapes_vit, shapes_small):
    result, cache, _ = small_sweep
    before = cache.computed
    again = run_sweep(shapes_vit, shapes_small, {"zero-tprune": {}, "tome": {}, "random": {"seed": 1}},
                      budgets=(0.35,), batch_size=5, throughput_batch=4, throughput_rounds=1, cache=cache)
    assert cache.computed == before  # every evaluation and the timing came from the cache
    assert again.table().equals(result.table())


def test_retention_agreement_and_importances(small_sweep):
    result, _, _ = small_sweep
    rt = result.retention_table()
    assert set(rt["region"]) == {"object", "marker", "background"}
    zero = rt[(rt["method"] == "zero-tprune") & (rt["region"] == "object")]
    assert list(zero["block"]) == [2, 3, 5]
    assert ((zero["random"] > 0) & (zero["random"] <= 1)).all()
    agree = result.agreement(0.35)
    assert list(agree.index) == ["Zero-TPrune", "ToMe", "Random"]
    assert np.allclose(np.diag(agree), 1.0) and np.allclose(agree, agree.T)
    imps = result.to_importances(method="zero-tprune")
    assert len(imps) == 3 and all(i.unit == "token" for i in imps)
    lt = result.point("zero-tprune", 0.35).layers[0]
    assert imps[0].values is lt.scores and imps[0].values.dtype == np.float32  # no copy, float32 kept
    assert imps[0].provenance["block"] == 2 and len(imps[0].names) == 64
    stats = result.layer_statistics()
    z = stats[stats["method"] == "zero-tprune"]
    assert z["entropy_norm"].between(0, 1).all() and z["gini"].between(0, 1).all()
    assert stats[stats["method"] == "tome"]["gini"].isna().all()  # similarities are not amounts of importance


def test_token_scores_count_each_token_once(small_sweep):
    result, _, _ = small_sweep
    p = result.point("zero-tprune", 0.35)
    for j, lt in enumerate(p.layers):
        per_image = p.token_scores(j)
        dropped_by_similarity = (lt.actions == pruning.DROPPED_SIMILAR).sum(1)  # unscored: the S-stage removed them
        assert [len(v) for v in per_image] == list(lt.n_in - dropped_by_similarity)
        # WPR is a distribution over the surviving tokens; the class token holds the rest of the mass
        sums = np.array([v.sum() for v in per_image])
        assert ((sums > 0) & (sums <= 1 + 1e-5)).all()


def test_match_budget_hits_the_target(shapes_vit):
    full = pruning.vit_flops(shapes_vit)
    for method in pruning.available():
        params = match_budget(shapes_vit, method, 0.2)
        plan = pruning.plan(shapes_vit, method, **params)
        ratio = (plan.macs(pruning.inspect_model(shapes_vit), pruning.fixed_macs(shapes_vit))) / full
        assert abs(ratio - 0.8) < 0.02, (method, params, ratio)
    assert "r" in match_budget(shapes_vit, "tome", 0.2)
    with pytest.raises(PruningError, match="single cost"):
        match_budget(shapes_vit, "evit", 0.3, schedule=[1, 0.5, 1, 1, 1, 1])
    with pytest.raises(PruningError, match="single cost"):
        match_budget(shapes_vit, "tome", 0.3, r_schedule="list", r_list=[1] * 6)
    with pytest.raises(PruningError, match=r"\[0, 1\)"):
        match_budget(shapes_vit, "evit", 1.2)


def test_unreachable_budget_and_unavailable_methods_are_reported(shapes_small):
    model = small_vit("no-cls", img_size=64, patch_size=8)  # no class token: EViT cannot run
    result = run_sweep(model, shapes_small, {"evit": {}, "tome": {}}, budgets=(0.95,), batch_size=12,
                       throughput_batch=2, throughput_rounds=1)
    assert "class token" in result.errors["evit"]
    (tome,) = result.points
    assert "reaches" in tome.note and tome.macs_ratio > 0.1
    assert result.table()["accuracy"].notna().all()


def test_budgets_none_runs_as_given(shapes_vit, shapes_small):
    result = run_sweep(shapes_vit, shapes_small, {"topk-cls": {"keep_rate": 0.5}}, budgets=None, n_images=6,
                       batch_size=6, throughput_batch=2, throughput_rounds=1)
    (p,) = result.points
    assert p.budget is None and p.params["keep_rate"] == 0.5 and result.n_images == 6
    assert p.label == "Top-k by CLS attention"


def test_object_patch_share_is_area_pooling():
    mask = np.zeros((1, 8, 8), bool)
    mask[0, :4, :2] = True  # the top-left 4×2 pixels: half of patch (0,0) on a 2×2 grid of 4×4 patches
    share = object_patch_share(mask, (2, 2))
    assert share.tolist() == [[0.5, 0.0, 0.0, 0.0]]
    assert region_retention(np.array([[1.0, 0, 0, 0]]), share) == 1.0
    assert np.isnan(region_retention(np.ones((1, 4)), np.zeros((1, 4))))


def test_sweep_refuses_bad_input(shapes_vit, shapes_small):
    with pytest.raises(PruningError, match="at least one method"):
        run_sweep(shapes_vit, shapes_small, {})
    with pytest.raises(PruningError, match=r"\[0, 1\)"):
        run_sweep(shapes_vit, shapes_small, {"tome": {}}, budgets=(1.5,))
