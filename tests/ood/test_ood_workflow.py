"""core.ood.workflow: the OOD analysis of a workspace without any UI (what the page and the audit CLI call)."""
from __future__ import annotations

import dataclasses

import pytest

from core.cache import ByteCache
from core.ood import OODError, workflow
from core.ood.workflow import OODRequest, evaluate
from core.workspace import Resolver

TABLE = {"model": {"kind": "tabular", "name": "logistic-regression", "seed": 7},
         "data": {"kind": "builtin", "name": "wine", "split": "test", "n": None, "seed": 0, "shift": None}}


@pytest.fixture(scope="module")
def resolver():
    return Resolver()


def test_evaluate_runs_the_default_table_request_with_progress(resolver, scored_sets):
    request = workflow.default_request(resolver, TABLE)
    assert request.set_names == workflow.DEFAULT_TABLE_SETS and request.n_fit == 0
    assert "odin" not in request.detectors  # a table model has no torch network
    request = dataclasses.replace(request, detectors={"msp": {}, "mahalanobis": {}})
    seen = []
    cache = ByteCache(1 << 30)
    result = evaluate(resolver, request, progress=lambda f, m: seen.append((f, m)), cache=cache)
    assert set(result.detectors) == {"msp", "mahalanobis"} and not result.errors
    assert set(result.table["ood_set"]) == set(workflow.DEFAULT_TABLE_SETS)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert result.fingerprint == request.fingerprint and result.id_outputs is not None
    assert result.set_specs["ID"] == TABLE["data"] and result.id_index is None
    # a second run with one detector more fits and scores only the new one
    n = len(scored_sets)
    again = evaluate(resolver, dataclasses.replace(request, detectors={"msp": {}, "mahalanobis": {}, "energy": {}}),
                     cache=cache)
    assert {d for d, _ in scored_sets[n:]} == {"energy"}
    assert again.scores["msp"]["ID"] is result.scores["msp"]["ID"]


def test_the_fingerprint_ignores_the_convention_only():
    a = OODRequest(TABLE, ("far: table global",), {"msp": {}})
    assert dataclasses.replace(a, convention="id-positive").fingerprint == a.fingerprint
    assert dataclasses.replace(a, n_fit=10).fingerprint != a.fingerprint
    assert dataclasses.replace(a, detectors={"msp": {}, "energy": {}}).fingerprint != a.fingerprint


def test_bad_requests_are_refused_with_the_reason(resolver):
    with pytest.raises(OODError, match="Unknown OOD set.*'far: noise'.*offers: near: table dependency"):
        evaluate(resolver, OODRequest(TABLE, ("far: noise",), {"msp": {}}))
    with pytest.raises(OODError, match="at least one detector"):
        evaluate(resolver, OODRequest(TABLE, ("far: table global",), {}))
    with pytest.raises(OODError, match="at least one OOD set"):
        evaluate(resolver, OODRequest(TABLE, (), {"msp": {}}))


def test_concurrent_sessions_compute_each_run_and_each_model_pass_once(monkeypatch):
    """Eight 'sessions' press Run at once with two distinct requests, through shared caches as the page does:
    each request runs once, each (model, data) pass runs once, and sessions with the same request share one
    result object."""
    import threading
    from collections import Counter

    import core.workspace as cws

    passes = Counter()
    real = cws.extract_run

    def counting(model, dataset, *args, **kwargs):
        passes[dataset.name, len(dataset), dataset.fingerprint()] += 1
        return real(model, dataset, *args, **kwargs)

    monkeypatch.setattr(cws, "extract_run", counting)
    shared = {name: ByteCache(1 << 30, name=name) for name in ("models", "datasets", "outputs", "results")}
    ws = {**TABLE, "model": {**TABLE["model"], "seed": 4242}}  # a model no other test has run
    requests = [OODRequest(ws, ("far: table global",), {"msp": {}, "energy": {}}),
                OODRequest(ws, ("far: table global", "near: table local"), {"msp": {}, "mahalanobis": {}})]
    runs, results, errors = Counter(), {}, []
    barrier = threading.Barrier(8)

    def session(i):
        try:
            resolver = Resolver(models=shared["models"], datasets=shared["datasets"], outputs=shared["outputs"])
            request = requests[i % 2]

            def run():
                runs[request.fingerprint] += 1
                return evaluate(resolver, request, cache=shared["results"])

            barrier.wait()
            results[i] = shared["results"].get_or_compute(("ood-run", request.fingerprint), run)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert runs == Counter({r.fingerprint: 1 for r in requests})
    assert passes and set(passes.values()) == {1}, passes
    assert all(results[i] is results[i % 2] for i in range(8))
