"""The shipped Shapes ViT: accuracy at matched MACs against the random floor, and the object ground truth.

The default pruning blocks of this 6-block ViT are 2, 3 and 5 (the papers' quarter, half and three quarters
of the depth, rounded up). A finding these tests also pin down: pruning already at block 1 (a sixth of the
depth) keeps more object patches than random keeping when ranking by the class token's attention, yet
loses more accuracy than random keeping at −20% MACs (EViT and top-k by CLS attention). 600 images
(seed 0) keep the module fast; the same ordering held on 1000 images of two seeds.
"""
from __future__ import annotations

import pytest

from core.pruning import run_sweep

pytestmark = pytest.mark.slow

BUDGETS = (0.2, 0.35)


@pytest.fixture(scope="module")
def sweep(shapes_vit):
    from core.data import load

    data = load("shapes", split="test", n=600, seed=0)
    methods = {"zero-tprune": {}, "tome": {}, "evit": {}, "topk-cls": {}, "random": {"seed": 0}}
    return run_sweep(shapes_vit, data, methods, budgets=BUDGETS, batch_size=250, throughput_batch=8,
                     throughput_rounds=1)


def acc(sweep, method, budget):
    return sweep.point(method, budget).accuracy


def test_every_point_is_at_its_budget(sweep):
    assert not sweep.errors
    for p in sweep.points:
        assert abs((1 - p.macs_ratio) - p.budget) < 0.02, p.label


def test_zero_tprune_at_minus_20_percent_loses_at_most_one_point(sweep):
    assert sweep.baseline.accuracy >= 0.99
    assert sweep.baseline.accuracy - acc(sweep, "zero-tprune", 0.2) <= 0.01


@pytest.mark.parametrize("method", ["zero-tprune", "tome"])
@pytest.mark.parametrize("budget", BUDGETS)
def test_method_is_at_or_above_random(sweep, method, budget):
    assert acc(sweep, method, budget) >= acc(sweep, "random", budget)


@pytest.mark.parametrize("method", ["evit", "topk-cls"])
@pytest.mark.parametrize("budget", BUDGETS)
def test_class_token_methods_are_at_or_above_random(sweep, method, budget):
    assert acc(sweep, method, budget) >= acc(sweep, "random", budget)


def test_finding_pruning_at_block_1_puts_class_token_rankings_below_random(shapes_vit):
    """A finding, not a target: with the first pruning block at 1 of 6 (earlier than the papers' quarter of
    the depth), the class token's attention ranks tokens worse for accuracy than chance at −20% (2-3 points
    below random on every set tried), although it keeps more object patches."""
    from core.data import load

    data = load("shapes", split="test", n=600, seed=0)
    early = {m: {"layers": (1, 3, 4)} for m in ("evit", "topk-cls", "random")}
    s = run_sweep(shapes_vit, data, early, budgets=(0.2,), batch_size=250, throughput_batch=8, throughput_rounds=1)
    assert acc(s, "evit", 0.2) < acc(s, "random", 0.2) - 0.01
    assert acc(s, "topk-cls", 0.2) < acc(s, "random", 0.2) - 0.01


def test_object_token_retention_of_top_k_by_cls_beats_random_at_every_block(sweep):
    rt = sweep.retention_table()
    for budget in BUDGETS:
        rows = rt[(rt["method"] == "topk-cls") & (rt["region"] == "object") & (rt["budget"] == budget)]
        assert len(rows) == 3
        assert (rows["retention"] > rows["random"]).all()
        rnd = rt[(rt["method"] == "random") & (rt["region"] == "object") & (rt["budget"] == budget)]
        # random keeping retains the object at the rate it keeps any patch (the expectation, within sampling noise)
        assert (abs(rnd["retention"].to_numpy() - rnd["random"].to_numpy()) < 0.02).all()


def test_zero_tprune_keeps_the_object_above_random(sweep):
    rt = sweep.retention_table()
    rows = rt[(rt["method"] == "zero-tprune") & (rt["region"] == "object")]
    assert (rows["retention"] > rows["random"]).all()


def test_every_method_reports_retention_per_block(sweep):
    rt = sweep.retention_table()
    assert set(rt["method"]) == {"zero-tprune", "tome", "evit", "topk-cls", "random"}
    assert rt["retention"].between(0, 1).all()
