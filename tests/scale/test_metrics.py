"""Exact metrics from score shards in bounded memory (core.scale.metrics) against core.ood.metrics."""
from __future__ import annotations

import numpy as np
import pytest

from core.ood import metrics
from core.scale.metrics import exact_metrics, order_keys


def reader(sets: dict[str, np.ndarray], pieces: int = 5):
    def read(name):
        return np.array_split(sets[name], pieces)
    return read


@pytest.mark.parametrize("max_values", [10_000_000, 97, 5])
@pytest.mark.parametrize("convention", ["ood-positive", "id-positive"])
def test_bounded_merges_give_the_one_shot_metrics_bit_for_bit(max_values, convention):
    g = np.random.default_rng(0)
    sets = {
        "ID": np.concatenate([g.normal(1, 1, 300), np.full(40, 0.5), np.round(g.normal(0, 1, 60), 2), [-0.0, 0.0]]),
        "near": np.concatenate([g.normal(0, 1, 250), np.full(30, 0.5), np.round(g.normal(0, 1, 50), 2)]),
        "far": np.concatenate([1 - g.random(200) * 1e-12, -np.exp(g.normal(0, 5, 100))]),  # tight clusters, wide range
    }
    got, errors = exact_metrics(reader(sets), "ID", ["near", "far"], convention=convention, max_values=max_values)
    assert not errors
    for name in ("near", "far"):
        want = metrics(sets["ID"], sets[name], convention=convention)
        assert got[name] == {k: float(want[k]) for k in got[name]}, name


def test_a_huge_tie_group_needs_no_values_and_bad_sets_are_reported():
    sets = {"ID": np.concatenate([np.full(1000, 2.0), np.arange(50.0)]), "tied": np.full(700, 2.0),
            "nan": np.array([1.0, np.nan]), "empty": np.zeros(0)}
    got, errors = exact_metrics(reader(sets), "ID", ["tied", "nan", "empty"], max_values=10)
    want = metrics(sets["ID"], sets["tied"])
    assert got["tied"] == {k: float(want[k]) for k in got["tied"]}
    assert "NaN/inf" in errors["nan"] and "empty" in errors["empty"]
    keys = order_keys(np.array([-np.inf, -1e300, -1.0, 0.0, 5e-324, 1.0, np.inf]))
    assert (np.diff(keys.astype(object)) > 0).all() and order_keys(np.array([-0.0]))[0] == keys[3]
