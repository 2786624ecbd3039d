"""The page's run of a workspace (core.shift.workflow.ShiftRequest / evaluate): scenarios, filters, uploads,
graph tables, provenance and the code that reproduces a kept result."""
import dataclasses
import io
import json

import numpy as np
import pandas as pd
import pytest

from core import codegen
from core.data import Dataset, load
from core.data.shapes import load_shapes
from core.shift import ShiftError
from core.shift import workflow as wf
from core.workspace import Resolver

TABLE_WS = {"model": {"kind": "tabular", "name": "logistic-regression", "seed": 0},
            "data": {"kind": "builtin", "name": "breast-cancer", "split": "test", "n": None, "seed": 0, "shift": None}}


@pytest.fixture(scope="module")
def resolver():
    return Resolver()


@pytest.fixture(scope="module")
def split_run(resolver):
    """The default comparison of a built-in table: its train split against its test split."""
    return wf.evaluate(resolver, wf.default_request(resolver, TABLE_WS))


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


# ---------------------------------------------------------------- requests
def test_default_requests_and_fingerprints(resolver):
    shapes_ws = {"model": {"kind": "zoo", "name": "shapes-vit"},
                 "data": {"kind": "builtin", "name": "shapes", "split": "test", "n": 300, "seed": 4, "shift": "size"}}
    req = wf.default_request(resolver, shapes_ws)
    # the source is the unshifted world at the workspace's sample; the target the preset at the next seed
    assert req.source == {**shapes_ws["data"], "shift": None}
    assert req.target == {**shapes_ws["data"], "shift": "background", "seed": 5}
    assert (req.graph, req.metric, req.n_boot) == (None, "log_loss", wf.DEFAULT_BOOT)
    table = wf.default_request(resolver, TABLE_WS)
    assert (table.source["split"], table.target["split"]) == ("train", "test")
    with pytest.raises(ShiftError, match="no built-in comparison"):
        wf.default_request(resolver, {"model": {"kind": "zoo", "name": "shapes-vit"},
                                      "data": {"kind": "builtin", "name": "digits", "split": "test", "n": None,
                                               "seed": 0, "shift": None}})
    # the fingerprint is a stable function of the JSON-able fields: equal requests share one cached result
    assert req.fingerprint == wf.default_request(resolver, json.loads(json.dumps(shapes_ws))).fingerprint
    assert dataclasses.replace(req, metric="accuracy").fingerprint != req.fingerprint
    assert json.loads(json.dumps(req.as_dict())) == req.as_dict()


def test_graph_table_round_trip_and_bad_rows():
    graph, groups = {"y": [], "z": [], "x": ["y", "z"]}, {"x": ["x1", "x2"], "y": ["y"]}
    table = wf.graph_table(graph, groups)
    assert list(table.columns) == ["node", "parents", "columns"]
    assert table.set_index("node").loc["x", "parents"] == "y, z" and table.set_index("node").loc["y", "columns"] == ""
    back_graph, back_groups = wf.graph_from_table(table)
    assert back_graph == graph and back_groups == {"x": ["x1", "x2"]}  # "y" stands for its own column
    # an added blank row (the editor's dynamic rows) is skipped; None cells are blanks
    extra = pd.concat([table, pd.DataFrame([{"node": None, "parents": None, "columns": None}])])
    assert wf.graph_from_table(extra)[0] == graph
    with pytest.raises(ShiftError, match="appears twice"):
        wf.graph_from_table(pd.concat([table, table.iloc[:1]]))
    with pytest.raises(ShiftError, match="graph is empty"):
        wf.graph_from_table(table.iloc[:0])
    with pytest.raises(ShiftError, match="one name"):
        wf.graph_from_table(pd.DataFrame([{"node": "a, b", "parents": "", "columns": ""}]))


def test_presets_and_graph_checks_of_each_scenario(resolver):
    shapes = wf.ShiftScenario("shapes", "label", ("label", "hue", "sat", "val", "bg_type", "bg_hue", "bg_val", "size",
                                                  "x", "y", "rotation", "marker", "noise"),
                              *wf.shapes_graph(wf.shapes_mechanisms(load_shapes(n=20))), "factors")
    presets = wf.graph_presets(shapes)
    assert list(presets)[0] == "Shapes world (recorded graph)"
    marg, groups = presets["All marginals"]
    assert all(p == [] for p in marg.values()) and groups["colour"] == ["hue", "sat", "val"]
    topo = presets["Topological order"][0]
    assert topo[list(topo)[-1]] == list(topo)[:-1]  # the last node's parents are all the others
    for g, gr in presets.values():
        wf.check_graph(shapes, g, gr)
    with pytest.raises(ShiftError, match="cycle"):
        wf.check_graph(shapes, {"class": ["colour"], "colour": ["class"]}, {"class": ["label"], "colour": ["hue"]})
    with pytest.raises(ShiftError, match="names column"):
        wf.check_graph(shapes, {"class": []}, {"class": ["label", "shininess"]})
    with pytest.raises(ShiftError, match="belongs to no node"):
        wf.check_graph(shapes, {"size": []}, None)
    sc = wf.scenario(resolver, wf.default_request(resolver, TABLE_WS))
    assert sc.kind == "table" and sc.label == "target" and len(sc.features) == 30
    presets = wf.graph_presets(sc)
    assert presets["Label → features"][0] == {"target": [], "features": ["target"]}
    assert presets["Features → label"][0] == {"features": [], "target": ["features"]}
    assert len(presets["All marginals"][0]) == 31 and presets["All marginals"][1] is None


def test_where_index_filters_tables_and_factor_tables():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "c": ["u", "v", "u", "w"], "target": [0, 1, 0, 1]})
    ds = Dataset("t", "table", frame["target"].to_numpy(), ["no", "yes"], frame=frame, label="target")
    assert wf.where_index(ds, None, "target") is None
    assert list(wf.where_index(ds, {"column": "a", "op": ">=", "value": 3}, "target")) == [2, 3]
    assert list(wf.where_index(ds, {"column": "c", "op": "!=", "value": "u"}, "target")) == [1, 3]
    assert list(wf.where_index(ds, {"column": "target", "op": "==", "value": 1}, "target")) == [1, 3]
    for where, message in [({"column": "b", "op": "==", "value": 1}, "does not have"),
                           ({"column": "a", "op": "~", "value": 1}, "Unknown filter operator"),
                           ({"column": "a", "op": "<", "value": "x"}, "not a number"),
                           ({"column": "c", "op": "<", "value": "u"}, "holds categories"),
                           ({"column": "a", "op": ">", "value": 9}, "No row of the target"),
                           ({"column": "a"}, "A row filter is")]:
        with pytest.raises(ShiftError, match=message):
            wf.where_index(ds, where, "target")
    shapes = load("shapes", split="test", n=60, seed=0)
    rows = wf.where_index(shapes, {"column": "bg_type", "op": "==", "value": "plain"}, "source")
    assert len(rows) and (shapes.factors["bg_type"].iloc[rows] == "plain").all()
    assert wf.describe_side({"kind": "builtin", "name": "breast-cancer", "split": "test"},
                            {"column": "target", "op": "==", "value": 1}, ds).endswith("where target == yes")


# ---------------------------------------------------------------- tables
def test_table_split_run_records_its_request_and_adds_up(split_run, resolver):
    e = split_run.explanation
    assert split_run.scenario.kind == "table" and e.nodes == ["target", "features"]
    assert split_run.fingerprint == split_run.request.fingerprint
    assert sum(e.attributions.values()) == pytest.approx(e.total, abs=1e-12)
    train = resolver.load_data({**TABLE_WS["data"], "split": "train"})
    assert e.n_source == len(train) == len(split_run.source_rows) and e.n_target == 142
    assert "train" in split_run.source_name and "test" in split_run.target_name
    # the model was fitted on the train split: it does better there (lower loss), and says so
    assert e.source_performance < e.target_performance
    assert split_run.nbytes >= e.nbytes
    frame = split_run.attributions_frame()
    assert list(frame["mechanism"]) == ["P(target)", "P(features | target)"] and frame["source"].iloc[0]
    weights = split_run.weights_frame()
    assert len(weights) == e.n_source and list(weights.columns) == ["source_row", "weight", "w P(target)",
                                                                    "w P(features | target)"]
    top = split_run.most_target_like(5)
    assert top["weight"].is_monotonic_decreasing and top["weight"].iloc[0] == e.weights.max()
    exported = json.loads(split_run.to_json())
    assert exported["request"]["target"]["split"] == "test" and exported["scenario"] == "table"
    section = wf.report_section(split_run, TABLE_WS)
    assert section.title == "Distribution-shift attribution" and len(section.figures) == 3
    assert "P(features | target)" in section.text or "P(target)" in section.text


def test_kept_result_rebuilds_its_request_and_the_snippet_reproduces_it(split_run, tmp_path):
    """The codegen/notebook path: provenance → request → snippet, and the snippet run gives the same numbers."""
    items = split_run.to_importances()
    mech, samples = items.values()
    assert mech.unit == "mechanism" and mech.names == ["P(target)", "P(features | target)"]
    assert samples.unit == "sample" and samples.values is split_run.explanation.weights
    for imp in (mech, samples):
        assert imp.provenance["analysis"] == "shift" and imp.provenance["request"] == split_run.request.as_dict()
    code = codegen.snippet_from_provenance(mech.provenance)
    assert code == codegen.snippet("shift", split_run.request)
    # saved to a file and loaded back (JSON provenance), the request still rebuilds
    from core.importance import load as load_importances
    from core.importance import save

    loaded = load_importances(save(items), "kept.npz")
    assert codegen.snippet_from_provenance(next(iter(loaded.values())).provenance) == code
    namespace: dict = {}
    exec(compile(code, "snippet", "exec"), namespace)  # the snippet runs offline and reproduces the numbers
    again = namespace["result"].explanation
    assert again.attributions == pytest.approx(split_run.explanation.attributions, abs=1e-12)
    nb = json.loads(codegen.notebook("shift", split_run.request, "Shift"))
    assert any("ShiftRequest(" in "".join(c["source"]) for c in nb["cells"])


def test_uploaded_tables_give_the_numbers_of_the_same_built_in_rows(split_run, resolver):
    """Uploading the train and test splits as CSV reproduces the split comparison exactly, whether the label is
    written as class indices or as class names (matched to the model's classes by name)."""
    train = resolver.load_data({**TABLE_WS["data"], "split": "train"}).frame
    test = resolver.load_data(TABLE_WS["data"]).frame
    names = np.array(["malignant", "benign"])
    for relabel in (False, True):
        s, t = train.copy(), test.copy()
        if relabel:  # "benign" < "malignant": the upload's own codes are swapped, the names map them back
            s["target"], t["target"] = names[s["target"]], names[t["target"]]
        req = dataclasses.replace(split_run.request,
                                  source=resolver.data_upload_spec("train.csv", csv_bytes(s), label="target"),
                                  target=resolver.data_upload_spec("test.csv", csv_bytes(t), label="target"))
        run = wf.evaluate(resolver, req)
        assert run.explanation.total == pytest.approx(split_run.explanation.total, abs=1e-12)
        assert run.explanation.attributions == pytest.approx(split_run.explanation.attributions, abs=1e-12)


@pytest.mark.parametrize("case, message", [
    ("different columns", "Source and target must have the same columns; only in the source: mean radius"),
    ("label missing in the target", "label column 'target' is missing from the target"),
    ("single-class target", "The target holds a single class"),
    ("unknown class", "label value 'cyst' is not a class of the model"),
])
def test_bad_uploads_are_refused_with_what_to_fix(resolver, split_run, case, message):
    test = resolver.load_data(TABLE_WS["data"]).frame
    target, options = test, {"label": "target", "min_classes": 1}
    if case == "different columns":
        target = test.drop(columns=["mean radius"])
    elif case == "label missing in the target":
        target, options = test.drop(columns=["target"]), {"unlabelled": True}
    elif case == "single-class target":
        target = test[test["target"] == 1]
    else:
        target = test.assign(target=np.where(test["target"] == 1, "benign", "cyst"))
    req = dataclasses.replace(split_run.request, source=TABLE_WS["data"],
                              target=resolver.data_upload_spec("t.csv", csv_bytes(target), **options))
    with pytest.raises(ShiftError, match=message):
        wf.evaluate(resolver, req)


def test_a_filter_on_the_table_and_too_few_rows(split_run, resolver):
    req = dataclasses.replace(split_run.request, source=TABLE_WS["data"], target=TABLE_WS["data"],
                              target_where={"column": "mean radius", "op": ">=", "value": 13.0})
    run = wf.evaluate(resolver, req)
    test = resolver.load_data(TABLE_WS["data"]).frame
    assert run.explanation.n_target == int((test["mean radius"] >= 13.0).sum()) == len(run.target_rows)
    assert (test["mean radius"].iloc[run.target_rows] >= 13.0).all()
    assert run.target_name.endswith("where mean radius >= 13.0")
    tiny = dataclasses.replace(req, target_where={"column": "mean smoothness", "op": ">=", "value": 0.1218})
    with pytest.raises(ShiftError, match="Too few samples for the domain classifiers"):
        wf.evaluate(resolver, tiny)
    single = dataclasses.replace(req, target_where={"column": "target", "op": "==", "value": 0})
    with pytest.raises(ShiftError, match="single class"):
        wf.evaluate(resolver, single)
    with pytest.raises(ShiftError, match="Unknown setting"):
        wf.evaluate(resolver, dataclasses.replace(req, settings={"n_boot": 5}))


# ---------------------------------------------------------------- data without metadata
def npz_bytes(n, seed, prior=(1 / 3, 1 / 3, 1 / 3), with_labels=True) -> bytes:
    """Class clusters x | y ~ N(μ_y, I) and a fixed linear head (as tests/shift/test_shift_workflow.py)."""
    rng = np.random.default_rng(seed)
    mu = np.zeros((3, 12))
    mu[0, 0], mu[1, 1], mu[2, 1], mu[2, 2] = 2.5, 2.5, 1.5, 1.5
    y = rng.choice(3, n, p=prior)
    x = mu[y] + rng.normal(size=(n, 12))
    logits = x @ mu.T - 0.5 * (mu ** 2).sum(1)
    buf = io.BytesIO()
    arrays = dict(logits=logits, features=x)
    if with_labels:
        arrays["labels"] = y
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_uploaded_outputs_split_a_label_shift_into_the_label():
    """Stored outputs without metadata: the variables are the label and the features' principal components;
    a pure change of the class prior goes to P(label) (ground truth: the target was drawn with another prior)."""
    resolver = Resolver()
    source = resolver.data_upload_spec("source.npz", npz_bytes(2000, 1))
    ws = {"model": {"kind": "none"}, "data": source}
    req = wf.ShiftRequest(ws, source, resolver.data_upload_spec("target.npz", npz_bytes(2000, 2, (0.7, 0.2, 0.1))),
                          n_boot=50)
    sc = wf.scenario(resolver, req)
    assert sc.kind == "outputs" and sc.columns == ("label", *[f"pc{i}" for i in range(1, 9)])
    run = wf.evaluate(resolver, req)
    e = run.explanation
    assert e.nodes == ["label", "features"] and "principal components of the features" in e.variables
    assert abs(e.total) > 0.05 and e.attributions["label"] / e.total >= 0.8, e.attributions
    unlabelled = dataclasses.replace(req, target=resolver.data_upload_spec("t.npz", npz_bytes(300, 3,
                                                                                              with_labels=False)))
    with pytest.raises(ShiftError, match="carries no labels"):
        wf.scenario(resolver, unlabelled)


def shapes_zip(ds) -> bytes:
    """An image folder of a Shapes dataset as a .zip: one folder per class name (sorted by name on loading,
    so the upload's class codes differ from the model's)."""
    import zipfile

    from PIL import Image

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, (img, y) in enumerate(zip(ds.images, ds.labels)):
            png = io.BytesIO()
            Image.fromarray(img).save(png, format="PNG")
            zf.writestr(f"{ds.class_names[y]}/{i:04d}.png", png.getvalue())
    return buf.getvalue()


def test_uploaded_image_folders_are_matched_to_the_model_classes_by_name():
    """Two image .zips in the Shapes workspace: the model runs over them, the variables are the label and its
    features, and each folder's class is the model's class of that name: the performances equal the log loss
    of the model on the original images with their true labels."""
    from scipy.special import softmax

    from core.extract import run as run_model
    from core.workspace import default_workspace

    resolver = Resolver()
    ws = default_workspace()
    src = load("shapes", split="test", n=120, seed=3)
    tgt = load("shapes", split="test", n=120, seed=4, shift="size")
    req = wf.ShiftRequest(ws, resolver.data_upload_spec("s.zip", shapes_zip(src)),
                          resolver.data_upload_spec("t.zip", shapes_zip(tgt)), n_boot=0)
    run = wf.evaluate(resolver, req)
    e = run.explanation
    assert run.scenario.kind == "outputs" and e.nodes == ["label", "features"]
    assert resolver.load_data(req.source).class_names != src.class_names  # sorted folder names: another order
    model = resolver.load_model(ws["model"], ws["data"])
    for ds, performance in ((src, e.source_performance), (tgt, e.target_performance)):
        p = softmax(run_model(model, ds).logits.astype(np.float64), axis=1)
        expected = -np.log(np.clip(p[np.arange(len(ds)), ds.labels], 1e-15, 1)).mean()
        assert performance == pytest.approx(expected, rel=1e-4)
    assert e.target_performance > e.source_performance  # small objects: the model does worse
