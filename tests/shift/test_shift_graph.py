"""The causal graph: validation with actionable messages, topological order, mechanisms, presets."""
import pytest

from core import shift
from core.data.shapes import MECHANISM_COLUMNS, MECHANISM_PARENTS, MECHANISMS
from core.shift import ShiftError, make_graph

COLS = ["a", "b", "c", "y"]


def test_mechanisms_follow_the_markov_factorisation():
    g = make_graph({"c": ["a", "b"], "a": [], "b": ["a"], "y": ["c"]}, COLS)
    assert g.order == ("a", "b", "c", "y")  # parents first, otherwise as given
    assert [m.name for m in g.mechanisms] == ["P(a)", "P(b | a)", "P(c | a, b)", "P(y | c)"]
    assert g.columns_of(["c", "a"]) == ("a", "c")


def test_groups_map_nodes_to_columns_and_default_to_the_node_name():
    g = make_graph({"x": [], "y": ["x"]}, COLS, groups={"x": ["a", "b", "c"]})
    assert g.groups == {"x": ("a", "b", "c"), "y": ("y",)}
    assert g.node_of("b") == "x"


@pytest.mark.parametrize("graph, groups, words", [
    ({"a": ["b"], "b": ["c"], "c": ["a"], "y": []}, None, ["cycle", "→", "acyclic"]),
    ({"a": ["a"], "y": []}, None, ["itself"]),
    ({"a": ["q"], "y": []}, None, ["'q'", "not nodes"]),
    ({"x": [], "y": []}, {"x": ["a", "zz"]}, ["'zz'", "not in the data", "Available columns"]),
    ({"x": [], "y": []}, {"x": ["a"], "w": ["b"]}, ["'w'", "not in the graph"]),
    ({"x": [], "y": []}, {"x": ["a", "y"]}, ["'y'", "two nodes"]),
    ({"x": [], "y": []}, None, ["'x'", "no group"]),
    ({"a": "b", "y": []}, None, ["list of node names"]),
    ({}, None, ["empty"]),
])
def test_bad_graphs_are_refused_with_what_to_do(graph, groups, words):
    with pytest.raises(ShiftError) as err:
        make_graph(graph, COLS, groups)
    for w in words:
        assert w in str(err.value), str(err.value)


def test_the_cycle_message_names_the_cycle():
    with pytest.raises(ShiftError, match=r"a → b → c → a|b → c → a → b|c → a → b → c"):
        make_graph({"a": ["c"], "b": ["a"], "c": ["b"], "y": []}, COLS)


def test_presets():
    assert shift.all_marginals(["a", "b"]) == {"a": [], "b": []}
    assert shift.topological_order(["a", "b", "c"]) == {"a": [], "b": ["a"], "c": ["a", "b"]}
    assert shift.label_features_graph("y", ["f1", "f2"]) == ({"y": [], "features": ["y"]},
                                                             {"y": ["y"], "features": ["f1", "f2"]})
    assert shift.label_features_graph("y", ["f1"], "features->label")[0] == {"features": [], "y": ["features"]}
    with pytest.raises(ShiftError):
        shift.label_features_graph("y", ["f1"], "sideways")


def test_shapes_preset_is_the_worlds_recorded_graph():
    graph, groups = shift.shapes_graph()
    assert list(graph) == MECHANISMS
    # the marker follows the distractor in the suppressor world, so with the distractor it is a parent too
    assert graph == {m: list(MECHANISM_PARENTS[m]) + (["distractor"] if m == "marker" else []) for m in MECHANISMS}
    without, _ = shift.shapes_graph([m for m in MECHANISMS if m != "distractor"])
    assert without == {m: list(MECHANISM_PARENTS[m]) for m in MECHANISMS if m != "distractor"}
    assert groups == {m: list(MECHANISM_COLUMNS[m]) for m in MECHANISMS}
    sub, _ = shift.shapes_graph(["position", "marker"])  # parents come along
    assert set(sub) == {"position", "size", "marker", "class"}
    with pytest.raises(ShiftError, match="Unknown Shapes mechanism"):
        shift.shapes_graph(["sparkle"])


def test_optional_mechanisms_join_the_graph_only_when_a_dataset_turns_them_on():
    from core.data.shapes import load_shapes

    plain, suppressor = load_shapes(n=40, seed=1), load_shapes(n=40, seed=2, shift="suppressor")
    assert "distractor" not in shift.shapes_mechanisms(plain, plain)
    assert shift.shapes_mechanisms(plain, suppressor) == MECHANISMS


def test_graph_presets_for_an_editor():
    assert shift.graph_preset("all-marginals", nodes=["a", "b"]) == ({"a": [], "b": []}, None)
    assert shift.graph_preset("topological-order", nodes=["a", "b"])[0] == {"a": [], "b": ["a"]}
    assert shift.graph_preset("shapes") == shift.shapes_graph()
    graph, groups = shift.graph_preset("label->features", label="y", features=["f"])
    assert graph == {"y": [], "features": ["y"]} and groups["features"] == ["f"]
    with pytest.raises(ShiftError, match="needs the label"):
        shift.graph_preset("features->label")
    with pytest.raises(ShiftError, match="Unknown graph preset"):
        shift.graph_preset("star")
    assert set(shift.PRESETS) == {"all-marginals", "topological-order", "shapes", "label->features", "features->label"}


def test_exact_shapley_is_unavailable_beyond_ten_mechanisms():
    from core.spec import Capabilities

    assert shift.SHAPLEY.unavailable_reason("exact", Capabilities(facts={"players": 10})) is None
    assert "2^11" in shift.SHAPLEY.unavailable_reason("exact", Capabilities(facts={"players": 11}))
    assert shift.SHAPLEY.unavailable_reason("permutation", Capabilities(facts={"players": 30})) is None
