"""core.ood.suite: many detectors over an ID set and several OOD sets."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ood_worlds import make_outputs

from core import ood
from core.ood import OODError
from core.ood.suite import EvalSet, extremes, flagged_counts, per_class, run_suite


class DictCache:
    def __init__(self):
        self.items, self.computed = {}, 0

    def get_or_compute(self, key, fn):
        if key not in self.items:
            self.computed += 1
            self.items[key] = fn()
        return self.items[key]


@pytest.fixture(scope="module")
def sets(world):
    near = world.sample(100, seed=23)
    near = make_outputs(near.features + 1.5, near.head_weight, near.head_bias)  # same model, shifted features
    return {"ID": EvalSet(world.sample(150, seed=21), "id"),
            "far: novel": EvalSet(world.sample(100, seed=22, ood=True), "far"),
            "near: shifted": EvalSet(near, "near")}


def test_run_suite_tables_and_cache(train_outputs, sets):
    dets = {"msp": {}, "knn": {"k": 5}, "vim": {}, "nope": {}}
    cache, calls = DictCache(), []
    result = run_suite(train_outputs, sets, "ID", dets, cache=cache, cache_key=lambda d, p: f"{d}{sorted(p.items())}",
                       progress=lambda f, m: calls.append(f))
    assert result.detectors == ["msp", "knn", "vim"] and "unknown detector" in result.errors["nope"]
    assert set(result.scores["knn"]) == {"ID", "far: novel", "near: shifted"}
    assert len(result.table) == 6 and set(result.table.columns) >= {"detector", "ood_set", "group", "auroc", "fpr95"}
    far = result.table[(result.table.detector == "knn") & (result.table.ood_set == "far: novel")].iloc[0]
    assert far.auroc == pytest.approx(ood.metrics(result.scores["knn"]["ID"], result.scores["knn"]["far: novel"])["auroc"])
    summary = result.summary()
    assert list(summary.columns[:4]) == ["detector", "auroc_mean", "auroc_far", "auroc_near"]
    for key in ("auroc", "aupr_in", "aupr_out", "fpr95"):  # every metric: its mean and its mean per group
        t = result.table[result.table.detector == "knn"]
        row = summary[summary.detector == "knn"].iloc[0]
        assert row[f"{key}_mean"] == pytest.approx(t[key].mean())
        assert row[f"{key}_near"] == pytest.approx(t[t.group == "near"][key].mean())
    assert summary["auroc_mean"].is_monotonic_decreasing and {"fit_s", "score_s"} <= set(summary.columns)
    assert result.params["knn"]["k"] == 5 and result.info["knn"]["k"] == 5
    assert calls and calls[-1] == 1.0 and all(0 <= f <= 1 for f in calls)
    again = run_suite(train_outputs, sets, "ID", dets, convention="id-positive", cache=cache,
                      cache_key=lambda d, p: f"{d}{sorted(p.items())}")
    assert cache.computed == 3  # scores reused; only the metrics change with the convention
    assert again.convention == "id-positive"


def test_failures_are_reported_not_raised(train_outputs, sets, world):
    other_model = dict(sets)
    other_model["other head"] = EvalSet(make_outputs(world.sample(20, seed=9).features, world.w * 2, world.b), "far")
    result = run_suite(train_outputs, other_model, "ID", {"odin": {}, "msp": {}, "vim": {}})
    assert result.detectors == ["msp", "vim"] and "torch model" in result.errors["odin"]
    assert "different classification head" in result.set_errors["other head · ViM"]
    with pytest.raises(OODError, match="not among the sets"):
        run_suite(train_outputs, sets, "test", {"msp": {}})


def test_odin_in_the_suite_uses_the_inputs(train_outputs):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4)).eval()
    x = torch.randn(30, 3, 2, 2)
    with torch.no_grad():
        logits = model(x).numpy()
    from core.extract import ModelOutputs

    out = ModelOutputs(logits=logits, features=None, labels=None, preds=logits.argmax(1))
    sets = {"ID": EvalSet(out.subset(np.arange(20)), "id", x[:20]),
            "far": EvalSet(out.subset(np.arange(20, 30)), "far", lambda: iter([x[20:25], x[25:]])),
            "no images": EvalSet(out.subset(np.arange(20, 30)), "upload")}
    result = run_suite(out, sets, "ID", {"odin": {"epsilon": 0.0, "temperature": 1.0}}, model=model)
    expected = torch.softmax(torch.from_numpy(logits).double(), 1).max(1).values.numpy()
    np.testing.assert_allclose(result.scores["odin"]["far"], expected[20:], rtol=1e-6)
    assert "input images" in result.set_errors["no images · ODIN"]


def test_helpers():
    scores = {"ID": np.array([3.0, 2.0, 5.0]), "far": np.array([0.0, 4.0])}
    counts = flagged_counts(scores, 2.5)
    assert list(counts["flagged"]) == [1, 1] and list(counts["share flagged"]) == [1 / 3, 0.5]
    # a score equal to the threshold is flagged, as in metrics(): at metrics' own threshold the counts give its FPR@95
    assert list(flagged_counts(scores, 2.0)["flagged"]) == [1, 1]
    m = ood.metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 1.0]))
    at = flagged_counts({"ID": np.array([1.0, 2.0, 3.0, 4.0]), "OOD": np.array([0.0, 1.0])}, m["threshold"])
    assert at["share flagged"].tolist() == [m["fpr95"], 1.0]
    low, high = extremes(scores, k=2)
    assert low == [("far", 0, 0.0), ("ID", 1, 2.0)] and high == [("ID", 2, 5.0), ("far", 1, 4.0)]
    table = per_class(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 0, 2, -1]), ["a", "b", "c"], np.array([1.5]))
    assert list(table["class"]) == ["a", "c"] and list(table["n"]) == [2, 1]
    assert table["auroc"].tolist() == [0.5, 1.0]


def test_tempscale_calibrates_on_the_validation_set_when_given(train_outputs, sets, world):
    from core.ood.logit import fit_temperature

    val = world.sample(120, seed=31)
    # a validation set whose logits are twice as confident: its NLL-optimal T differs from the fit set's
    val = make_outputs(val.features, val.head_weight * 2.0, val.head_bias * 2.0, labels=val.labels)
    with_val = run_suite(train_outputs, sets, "ID", {"tempscale": {}, "knn": {"k": 5}}, validation=val)
    without = run_suite(train_outputs, sets, "ID", {"tempscale": {}, "knn": {"k": 5}})
    t_val = with_val.info["tempscale"]["temperature"]
    assert t_val == pytest.approx(fit_temperature(val.logits, val.labels), rel=1e-9)
    assert without.info["tempscale"]["temperature"] == pytest.approx(
        fit_temperature(train_outputs.logits, train_outputs.labels), rel=1e-9)
    assert abs(t_val - without.info["tempscale"]["temperature"]) > 1e-3
    assert "validation set (120" in with_val.info["tempscale"]["fitted on"]
    assert "no held-out validation set" in without.info["tempscale"]["fitted on"]
    # detectors that fit on the fit set ignore the validation set
    np.testing.assert_array_equal(with_val.scores["knn"]["ID"], without.scores["knn"]["ID"])
    assert ood.spec("tempscale").fit_on == "validation" and ood.spec("knn").fit_on == "fit"
    # KL matching's templates come from the validation set too (METHODS: "ID validation samples")
    klm = run_suite(train_outputs, sets, "ID", {"klm": {}}, validation=val)
    expected = ood.create("klm").fit(val).score(sets["ID"].outputs)
    np.testing.assert_array_equal(klm.scores["klm"]["ID"], expected)
    assert "validation set" in klm.info["klm"]["fitted on"]


def test_summary_means_cover_only_the_sets_every_detector_scored(train_outputs, sets):
    from core.extract import ModelOutputs

    far = sets["far: novel"].outputs
    logits_only = ModelOutputs(logits=far.logits, features=None, labels=None, preds=far.preds)  # an .npz of logits
    with_upload = {**sets, "upload: logits.npz": EvalSet(logits_only, "upload")}
    result = run_suite(train_outputs, with_upload, "ID", {"msp": {}, "knn": {"k": 5}})
    assert "upload: logits.npz" in result.scores["msp"] and "upload: logits.npz" not in result.scores["knn"]
    summary = result.summary().set_index("detector")
    common = ["far: novel", "near: shifted"]
    assert summary.attrs["mean_over"] == common
    assert summary.attrs["left_out"] == {"upload: logits.npz": ["knn"]}
    t = result.table
    for det in ("msp", "knn"):
        rows = t[(t["detector"] == det) & t["ood_set"].isin(common)]
        for key in ("auroc", "aupr_in", "aupr_out", "fpr95"):
            assert summary.loc[det, f"{key}_mean"] == pytest.approx(rows[key].mean())
        assert summary.loc[det, "auroc_far"] == pytest.approx(rows[rows["group"] == "far"]["auroc"].mean())
    assert "auroc_upload" not in summary.columns
    assert summary.loc["msp", "sets"] == 3 and summary.loc["knn", "sets"] == 2
    # when every detector scored every set, nothing is left out
    full = run_suite(train_outputs, sets, "ID", {"msp": {}, "knn": {"k": 5}}).summary()
    assert full.attrs["left_out"] == {} and list(full["sets"]) == [2, 2]


def test_with_convention_recomputes_the_metrics_from_the_same_scores(train_outputs, sets):
    from core.ood.metrics import metrics

    result = run_suite(train_outputs, sets, "ID", {"msp": {}, "knn": {"k": 5}})
    other = result.with_convention("id-positive")
    assert other.convention == "id-positive" and result.convention == "ood-positive"
    assert other.scores is result.scores
    for _, row in other.table.iterrows():
        s = result.scores[row["detector"]]
        want = metrics(s["ID"], s[row["ood_set"]], convention="id-positive")
        assert row["fpr95"] == pytest.approx(want["fpr95"]) and row["auroc"] == pytest.approx(want["auroc"])
    assert not np.allclose(other.table["fpr95"], result.table["fpr95"])  # the conventions differ on this data


def test_a_fitted_detector_scores_only_the_sets_it_has_not_seen(train_outputs, sets, scored_sets):
    scored = scored_sets
    cache = DictCache()
    keys = {name: f"spec of {name}" for name in sets}
    dets = {"msp": {}, "knn": {"k": 5}}
    first = run_suite(train_outputs, {k: sets[k] for k in ("ID", "far: novel")}, "ID", dets, cache=cache,
                      cache_key=lambda d, p: f"{d}{sorted(p.items())}", set_keys=keys)
    assert cache.computed == 2 and len(scored) == 4
    scored.clear()
    second = run_suite(train_outputs, sets, "ID", dets, cache=cache,
                       cache_key=lambda d, p: f"{d}{sorted(p.items())}", set_keys=keys)
    assert cache.computed == 2  # no detector fitted again
    assert sorted(scored) == [("knn", "near: shifted"), ("msp", "near: shifted")]  # only the new set is scored
    for det in dets:
        np.testing.assert_array_equal(second.scores[det]["far: novel"], first.scores[det]["far: novel"])
    fresh = run_suite(train_outputs, sets, "ID", dets)
    for det in dets:
        for name in sets:
            np.testing.assert_array_equal(second.scores[det][name], fresh.scores[det][name])
    # another parameter value is another fit
    run_suite(train_outputs, sets, "ID", {"knn": {"k": 3}}, cache=cache,
              cache_key=lambda d, p: f"{d}{sorted(p.items())}", set_keys=keys)
    assert cache.computed == 3


def test_facts_a_detector_notes_while_scoring_reach_the_result(train_outputs, sets):
    cache = DictCache()
    for _ in range(2):  # fresh, then from the cache
        result = run_suite(train_outputs, sets, "ID", {"gen": {}, "knn": {"k": 5}}, cache=cache,
                           cache_key=lambda d, p: f"{d}{sorted(p.items())}")
        assert result.info["gen"]["top_m"] == train_outputs.num_classes  # GEN notes M when it scores
        assert "fitted on" in result.info["knn"]
