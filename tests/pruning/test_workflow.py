"""core.pruning.workflow: the request, the run through a resolver, budgets and their valid range, the Shapes
ground-truth verdicts, importances whose provenance rebuilds the request, the report section and the audit."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from core import codegen
from core.importance import load, save
from core.pruning import PruningError, workflow
from core.pruning.workflow import PruningRequest
from core.workspace import Resolver, default_workspace

DATA = {"kind": "builtin", "name": "shapes", "split": "test", "n": 120, "seed": 4, "shift": None}
WS = {"model": workflow.SHIPPED_VIT, "data": DATA}


@pytest.fixture(scope="module")
def resolver():
    return Resolver()


@pytest.fixture(scope="module")
def small(resolver):
    request = PruningRequest(WS, {"zero-tprune": {}, "evit": {}, "random": {}}, budgets=(0.35,), n_images=120, seed=3,
                             batch_size=60, throughput_batch=8, throughput_rounds=1)
    calls = []
    result = workflow.evaluate(resolver, request, progress=lambda f, m: calls.append((f, m)))
    return request, result, calls


def test_evaluate_records_the_request_and_runs_on_the_workspace(small, resolver):
    request, result, calls = small
    assert result.request is request and result.fingerprint == request.fingerprint
    assert result.n_images == 120 and result.budgets == (0.35,)
    assert [p.label for p in result.points] == ["Zero-TPrune −35%", "EViT −35%", "Random −35%"]
    assert result.point("random", 0.35).params["seed"] == 3  # the request's seed drives the random baseline
    data = resolver.load_data(DATA)
    assert np.array_equal(result.labels, data.labels[:120])
    fractions = [f for f, _ in calls]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    # the fingerprint is the settings', so equal requests share one cache entry and any change makes another
    same = PruningRequest(**request.as_dict())
    assert same.fingerprint == request.fingerprint
    assert dataclasses.replace(request, n_images=100).fingerprint != request.fingerprint


def test_the_shared_model_is_never_patched(resolver, monkeypatch):
    """Other sessions read the cached model at the same time: the run patches a private copy."""
    from core.pruning import sweep

    shared = resolver.load_model(workflow.SHIPPED_VIT, DATA)
    seen = []
    real = sweep.apply

    def spy(model, *a, **kw):
        seen.append(model)
        return real(model, *a, **kw)

    monkeypatch.setattr(sweep, "apply", spy)
    before = {k: v.clone() for k, v in shared.state_dict().items()}
    request = PruningRequest(WS, {"tome": {}}, budgets=(0.2,), n_images=16, batch_size=16, throughput_batch=4,
                             throughput_rounds=1)
    workflow.evaluate(resolver, request)
    assert seen and all(m is not shared for m in seen)
    assert all((shared.state_dict()[k] == v).all() for k, v in before.items())
    assert not any("forward" in blk.__dict__ for blk in shared.blocks)


def test_bad_input_is_refused_with_what_is_supported(resolver):
    cnn = PruningRequest({"model": {"kind": "zoo", "name": "shapes-cnn"}, "data": DATA}, {"tome": {}})
    with pytest.raises(PruningError, match="is a CNN, not a Vision Transformer.*Token pruning works on timm"):
        workflow.evaluate(resolver, cnn)
    table = PruningRequest({"model": workflow.SHIPPED_VIT, "data": {"kind": "builtin", "name": "wine", "split": "test",
                                                                    "n": None, "seed": 0, "shift": None}}, {"tome": {}})
    with pytest.raises(PruningError, match="needs images; 'wine' is a table dataset"):
        workflow.evaluate(resolver, table)
    with pytest.raises(PruningError, match="Choose at least one method"):
        workflow.evaluate(resolver, PruningRequest(WS, {}))
    with pytest.raises(PruningError, match="Unknown pruning method 'magic'"):
        workflow.evaluate(resolver, PruningRequest(WS, {"magic": {}}))
    assert workflow.data_spec_for({"model": {}, "data": table.workspace["data"]}) == default_workspace()["data"]


def test_budgets_beyond_reach_are_refused_with_the_valid_range(resolver):
    model = resolver.load_model(workflow.SHIPPED_VIT, DATA)
    limits = workflow.budget_limits(model, {"zero-tprune": {}, "tome": {}})
    # keep rate 0.01 at blocks 2, 3, 5 of 6: blocks 0-1 and block 2's attention stay whole, so at most about 42%
    # of the MACs go; ToMe merges in every block and reaches further
    assert 0.4 < limits["zero-tprune"] < 0.45 and 0.5 < limits["tome"] < 0.6
    assert workflow.max_reduction(model, "zero-tprune", {"layers": [5]}) < 0.2  # pruning only in the last block
    with pytest.raises(PruningError, match=r"−90% is out of reach.*Zero-TPrune −42%.*between 0% and −4\d%"):
        workflow.check_budgets(model, {"zero-tprune": {}, "tome": {}}, (0.35, 0.9))
    for bad in (1.0, -0.1, float("nan"), "0.3", True):
        with pytest.raises(PruningError, match=r"MACs reduction in \[0, 1\)"):
            workflow.check_budgets(model, {"tome": {}}, (bad,))
    with pytest.raises(PruningError, match="out of reach"):
        workflow.evaluate(resolver, PruningRequest(WS, {"tome": {}}, budgets=(0.8,), n_images=8))
    # a method's own knob: the MACs it costs, and the core's range for an impossible r
    assert workflow.reduction(model, "zero-tprune", {"keep_rate": 1.0}) == 0.0
    with pytest.raises(PruningError, match=r"must be in \[0, 32\].*got 40"):
        workflow.reduction(model, "tome", {"r": 20, "r_schedule": "decreasing"})


def test_as_given_budgets_run_each_method_once(resolver):
    request = PruningRequest(WS, {"zero-tprune": {"schedule": [1, 0.5, 1, 1, 1, 1]}, "tome": {"r": 4}}, budgets=None,
                             n_images=24, batch_size=24, throughput_batch=4, throughput_rounds=1)
    result = workflow.evaluate(resolver, request)
    zero, tome = result.point("zero-tprune"), result.point("tome")
    assert [lt.block for lt in zero.layers] == [1] and zero.layers[0].n_out == 32
    assert tome.params["r"] == 4 and tome.tokens_per_block[:2] == (65, 61)
    assert workflow.reduction(resolver.load_model(workflow.SHIPPED_VIT, DATA), "tome", {"r": 4}) == pytest.approx(
        1 - tome.macs_ratio)


def test_region_summary_matches_its_closed_form_and_the_verdicts_the_ground_truth(small):
    _request, result, _ = small
    summary = workflow.region_summary(result)
    p = result.point("evit", 0.35)
    from core.pruning import retention_weights

    w = retention_weights(p.layers[-1].origin).astype(np.float64)
    share = result.regions["object"].astype(np.float64)
    q = w.sum(1, keepdims=True) / result.info.n_patches
    row = summary[(summary["label"] == "EViT −35%") & (summary["region"] == "object")].iloc[0]
    assert row["retention"] == pytest.approx((share * w).sum() / share.sum())
    assert row["random"] == pytest.approx((share * q).sum() / share.sum())
    se = np.sqrt((share ** 2 * q * (1 - q)).sum()) / share.sum()
    assert row["z"] == pytest.approx((row["retention"] - row["random"]) / se)
    said = workflow.verdicts(result)
    # class-token attention keeps the object far above random's share; random keeps every region alike
    assert said["EViT −35%"].startswith("After block 5, EViT −35% keeps the object")
    assert said["Zero-TPrune −35%"].startswith("After block 5, Zero-TPrune −35% keeps the object")
    assert "keeps object, marker and background alike" in said["Random −35%"]


def test_kept_importances_rebuild_their_request(small, resolver):
    request, result, _ = small
    imps = workflow.to_importances(result, "zero-tprune", 0.35)
    assert list(imps) == [f"Pruning · Zero-TPrune −35% · block {b}" for b in (2, 3, 5)]
    imp = imps["Pruning · Zero-TPrune −35% · block 2"]
    assert imp.unit == "token" and imp.values.shape == (120, 64) and imp.values.dtype == np.float32
    assert imp.values is result.point("zero-tprune", 0.35).layers[0].scores  # shared, never copied
    one = dataclasses.replace(request, methods={"zero-tprune": {}}, budgets=(0.35,))
    # through a saved file too (JSON turns tuples into lists): the same request, the same fingerprint
    for prov in (imp.provenance, next(iter(load(save(imps), "kept.npz").values())).provenance):
        code = codegen.snippet_from_provenance(prov)
        assert code is not None and "PruningRequest(" in code and "'zero-tprune': {}" in code
        rebuilt = PruningRequest(**prov["request"])
        assert rebuilt.fingerprint == one.fingerprint
    # the snippet runs offline and reproduces the configuration's accuracy
    scope: dict = {}
    exec(compile(code, "snippet", "exec"), scope)  # noqa: S102
    again = scope["result"]
    assert again.fingerprint == one.fingerprint
    assert again.point("zero-tprune", 0.35).accuracy == result.point("zero-tprune", 0.35).accuracy
    assert np.array_equal(again.point("zero-tprune", 0.35).layers[0].origin,
                          result.point("zero-tprune", 0.35).layers[0].origin)


def test_report_section(small):
    _request, result, _ = small
    section = workflow.report_section(result, WS)
    assert section.title == "Token pruning"
    assert "keeps the object" in section.text and "shapes-vit (shipped)" in section.text
    assert len(section.figures) == 3 and len(section.tables) == 2
    assert len(section.tables[0][1]) == 1 + len(result.points)


def test_audit_runs_the_default_pruning_request_or_skips_with_one_line(tmp_path, capsys):
    from core import audit

    out = tmp_path / "r.html"
    assert audit.main(["--out", str(out), "--n", "60", "--analyses", "pruning", "--quiet"]) == 0
    html = out.read_text()
    assert "Token pruning" in html and "from core.pruning.workflow import PruningRequest, evaluate" in html
    assert "Pruning · Zero-TPrune −35% · block 2" in html  # the kept token importances
    capsys.readouterr()
    assert audit.main(["--out", str(tmp_path / "c.html"), "--n", "60", "--model", "shapes-cnn", "--analyses", "pruning",
                       "--quiet"]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("token pruning skipped: 'shapes-cnn' is a CNN"), lines


def test_per_image_helpers_count_what_the_sweep_recorded(small):
    _, result, _ = small
    pts = workflow.points_at(result, 0.35)
    assert {p.method for p in pts} == {"zero-tprune", "evit", "random"} and workflow.points_at(result, 0.9) == []
    wrong = workflow.wrong_counts(result, pts)
    expected = sum(((p.preds != result.labels) & (result.labels >= 0)).astype(int) for p in pts)
    assert np.array_equal(wrong, expected) and wrong.max() <= len(pts)
    zero = next(p for p in pts if p.method == "zero-tprune")
    for i in (0, 7):
        fates = workflow.token_fates(zero, i)
        assert list(fates["block"]) == [lt.block for lt in zero.layers]
        counted = fates.filter(like="patches ").sum(axis=1).to_numpy()
        # every patch still held when a block decided gets exactly one action there
        held = [int((lt.actions[i] >= 0).sum()) for lt in zero.layers]
        assert list(counted) == held
    left = workflow.heads_left_out(zero)
    expected_left = [f"block {lt.block} head {h}" for lt in zero.layers if lt.head_kept is not None
                     for h in range(np.asarray(lt.head_kept).shape[1]) if np.asarray(lt.head_kept)[:, h].mean() < 0.5]
    assert left == expected_left
