"""Fixtures for the shift-attribution tests (the world itself lives in shift_worlds.py)."""
from __future__ import annotations

import pytest
from shift_worlds import GRAPH, SHIFTS, DictCache, predict_proba, sample

from core import shift

N = 2000


@pytest.fixture(scope="session")
def source():
    return sample(N, seed=11)


@pytest.fixture(scope="session")
def targets():
    """The target of each single-mechanism shift, and an unshifted one."""
    out = {name: sample(N, seed=101, **kw) for name, kw in SHIFTS.items()}
    out["none"] = sample(N, seed=102)
    return out


@pytest.fixture(scope="session")
def explain(source, targets):
    """explain(shift, **options): the explanation of source → targets[shift] (memoised per options; the
    fitted density ratios are shared through a cache, so another metric or estimator refits nothing)."""
    memo = {}
    cache = DictCache()

    def run(name, **options):
        options.setdefault("metric", "log_loss")
        key = (name, tuple(sorted((k, repr(v)) for k, v in options.items())))
        if key not in memo:
            memo[key] = shift.explain_performance_change(source, targets[name], predict_proba=predict_proba,
                                                         label="y", graph=GRAPH, cache=cache,
                                                         **options)
        return memo[key]

    return run
