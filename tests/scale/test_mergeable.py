"""The mergeable (streaming) fits of core.ood.mergeable against the in-memory fits of the detectors.

Every detector whose merged fit is the in-memory one up to float64 rounding must score the same
(within 1e-9 relative, or exactly where the statistics are integer histograms); the hash-drawn banks
of KNN/NNGuide are checked against their definition (the bottom-k by hash, independent of blocks)."""
from __future__ import annotations

import numpy as np
import pytest

import core.ood as ood
from core.ood import mergeable
from core.ood.mergeable import fit_in_blocks, float32_order_keys, merge_class_gaussian, stream_fitter
from core.outputs import ModelOutputs


def world(n: int, d: int = 24, c: int = 5, seed: int = 0, signed: bool = True, labels: bool = True) -> ModelOutputs:
    h = np.random.default_rng(100 + c * d)  # one world (and one head) per shape; the seed draws the samples
    protos, spread = h.normal(0, 2, (c, d)), h.uniform(0.5, 1.5, d)
    w = h.normal(0, 0.5, (c, d)).astype(np.float32)
    b = h.normal(0, 0.1, c).astype(np.float32)
    g = np.random.default_rng(seed)
    y = g.integers(0, c, n)
    x = protos[y] + g.normal(0, 1, (n, d)) * spread
    if not signed:
        x = np.maximum(x, 0)
    x = x.astype(np.float32)
    logits = x @ w.T + b
    lab = y.copy() if labels else None
    if labels:
        lab[:3] = -1  # samples without a class are left out of per-class statistics
    return ModelOutputs(logits=logits, features=x, labels=lab, preds=logits.argmax(1), head_weight=w, head_bias=b,
                        meta={"model": "synthetic"})


def blocks_of(out: ModelOutputs, sizes) -> list:
    ids = np.array([f"s{i}" for i in range(len(out))])
    edges = np.cumsum([0, *sizes])
    assert edges[-1] == len(out)
    return [(out.subset(np.arange(a, b)), ids[a:b]) for a, b in zip(edges[:-1], edges[1:])]


# detectors whose merged statistics are the in-memory ones (up to float64 rounding, or exactly)
SAME_AS_IN_MEMORY = {
    "msp": {}, "maxlogit": {}, "energy": {}, "entropy": {}, "gen": {}, "gradnorm": {}, "ash-p": {}, "ash-b": {},
    "ash-s": {}, "scale": {}, "mahalanobis": {}, "rmds": {"shrinkage": 0.1}, "vim": {"dim": 12}, "residual": {},
    "she": {}, "fdbd": {}, "dice": {}, "react": {}, "klm": {}, "tempscale": {}, "conjnorm": {"temperature": 1.0},
    "wdiscood": {}, "knn": {"k": 5},
}


@pytest.mark.parametrize("n", [300, 3000])  # ReAct: np.percentile below 65,536 activations, the kernel above
def test_merged_fits_score_as_the_in_memory_fits(n):
    fit, test = world(n, seed=1), world(400, seed=2)
    fitted, errors = fit_in_blocks(SAME_AS_IN_MEMORY, blocks_of(fit, [n // 3, 7, n - n // 3 - 7]))
    assert not errors
    for name, params in SAME_AS_IN_MEMORY.items():
        ref = ood.create(name, **params).fit(fit)
        got = fitted[name].score(test)
        want = ref.score(test)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max(), err_msg=name)
    assert fitted["react"].threshold_ == ood.create("react").fit(fit).threshold_  # exact, not just close


def test_the_percentile_histograms_are_exact_on_ties_and_negative_values():
    g = np.random.default_rng(3)
    x = np.round(g.normal(0, 1, (2000, 40)), 1).astype(np.float32)  # many ties, both signs, -0.0 and 0.0
    x[0, :5] = -0.0
    out = ModelOutputs(logits=x[:, :3], features=x, labels=None, preds=np.zeros(2000), head_weight=np.ones((3, 40)),
                       head_bias=np.zeros(3))
    for p in (0.0, 3.0, 50.0, 90.0, 99.99, 100.0):
        fitted, _ = fit_in_blocks({"react": {"percentile": p}}, blocks_of(out, [999, 1, 1000]))
        assert fitted["react"].threshold_ == ood.create("react", percentile=p).fit(out).threshold_, p
    keys = float32_order_keys(np.array([-np.inf, -2.0, -0.0, 0.0, 1e-30, 3.0, np.inf], np.float32))
    assert (np.diff(keys.astype(np.int64)) > 0).all()


def test_the_class_gaussian_merge_is_exact_for_any_split():
    x = world(500, seed=4).features.astype(np.float64)
    y = np.random.default_rng(0).integers(-1, 4, 500)
    whole = mergeable.class_gaussian_partial(x, y, 4)
    parts = [mergeable.class_gaussian_partial(x[a:b], y[a:b], 4) for a, b in [(0, 1), (1, 90), (90, 91), (91, 500)]]
    merged = parts[0]
    for p in parts[1:]:
        merged = merge_class_gaussian(merged, p)
    np.testing.assert_array_equal(merged["counts"], whole["counts"])
    np.testing.assert_allclose(merged["means"], whole["means"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(merged["scatter"], whole["scatter"], rtol=1e-11, atol=1e-9)


def test_banks_are_the_bottom_k_by_hash_whatever_the_blocks():
    fit, test = world(900, seed=5), world(100, seed=6)
    params = {"knn": {"k": 3, "bank_fraction": 0.1, "seed": 7}, "nnguide": {"k": 4, "bank_fraction": 0.01, "seed": 7}}
    a, _ = fit_in_blocks(params, blocks_of(fit, [900]))
    b, _ = fit_in_blocks(params, blocks_of(fit, [100, 1, 500, 299]))
    for name in params:
        np.testing.assert_array_equal(a[name].bank_t_, b[name].bank_t_)
        np.testing.assert_array_equal(a[name].score(test), b[name].score(test))
    ids = np.array([f"s{i}" for i in range(900)])
    chosen = np.lexsort((ids, mergeable.sample_hashes(7, ids)))[:90]  # 10% of 900
    bank = ood._stats.l2_normalise(fit.features[chosen], np.float32)
    np.testing.assert_array_equal(a["knn"].bank_t_, bank.T)
    assert a["nnguide"].bank_t_.shape[1] == 20  # max(1% of 900, 5k) capped at... 5·k = 20


def test_unmergeable_detectors_say_why_and_fit_errors_name_the_problem():
    assert "ODIN re-runs the network" in mergeable.mergeable_reason("odin")
    with pytest.raises(mergeable.NotMergeable):
        stream_fitter("odin")
    one_class = world(50, c=2, seed=8)
    one_class.labels[:] = 1
    _, errors = fit_in_blocks({"mahalanobis": {}, "msp": {}}, blocks_of(one_class, [50]))
    assert "needs fit samples from at least 2 classes" in errors["mahalanobis"] and "msp" not in errors
