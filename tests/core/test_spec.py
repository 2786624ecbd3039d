"""core.spec: parameters, specs and the registry every analysis module shares."""
from __future__ import annotations

import pytest

from core.errors import SpecError, UserError
from core.spec import Capabilities, MethodSpec, ParamSpec, Registry


class FamilyError(UserError):
    pass


def make_registry():
    reg = Registry("toy", noun="method", error=FamilyError, groups=("a", "b"),
                   needs={"gradients": "gradients of the model", "tokens": "a token grid"},
                   assumptions=("positive",), order=("second", "first"),
                   check=lambda spec, caps: ("too few features" if spec.id == "first"
                                             and caps.facts.get("features", 99) < 3 else None))

    @reg.register("first", "First", "a", {"gradients"}, "Paper A",
                  params=(ParamSpec("steps", 50, "int", "Steps.", low=1, high=1000,
                                    bound=lambda f: f.get("features")),
                          ParamSpec("schedule", (3, 2, 1), "int_list", "Per layer.", low=0, high=10)))
    def first(steps=50, schedule=(3, 2, 1)):
        """**First.** score = x."""
        return ("first", steps, schedule)

    @reg.register("second", "Second", "b", set(), "Paper B", slow="2000 forward passes per image")
    class Second:
        """Second method."""

        def __init__(self, **params):
            self.params = params

    @reg.register("third", "Third", "a", {"tokens"}, "Paper C")
    def third():
        """Third."""

    return reg


def test_registry_lookup_order_and_errors():
    reg = make_registry()
    assert reg.available() == ["second", "first", "third"]  # the declared order, then the rest sorted
    s = reg.spec("first")
    assert s.description == "**First.** score = x." and s.reference == "Paper A" and s.impl.spec is s
    assert s.defaults == {"steps": 50, "schedule": (3, 2, 1)}
    with pytest.raises(FamilyError, match="Unknown toy method 'nope'; available: second, first, third"):
        reg.spec("nope")
    assert reg.create("first", steps=3) == ("first", 3, (3, 2, 1))
    assert "first" in reg and len(reg) == 3 and reg["second"].name == "Second"


def test_declarations_are_checked_where_they_are_written():
    reg = make_registry()
    with pytest.raises(ValueError, match="unknown group"):
        reg.register("x", "X", "zzz", set(), "ref")
    with pytest.raises(ValueError, match="unknown needs"):
        reg.register("x", "X", "a", {"telepathy"}, "ref")
    with pytest.raises(ValueError, match="unknown assumptions"):
        reg.register("x", "X", "a", set(), "ref", assumes=("gaussian",))
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("first", "X", "a", set(), "ref")
    with pytest.raises(ValueError, match="unknown type"):
        ParamSpec("p", 1, "complex", "help")


def test_unavailable_reason_from_needs_and_family_checks():
    reg = make_registry()
    caps = Capabilities(has=frozenset({"tokens"}), why_not={"gradients": "a random forest is not differentiable"},
                        facts={"features": 8})
    assert reg.unavailable_reason("first", caps) == ("First needs gradients of the model; a random forest is not "
                                                     "differentiable.")
    assert reg.unavailable_reason("third", caps) is None
    caps2 = Capabilities(has=frozenset({"gradients"}), facts={"features": 2})
    assert reg.unavailable_reason("first", caps2) == "too few features"
    assert reg.unavailable_reason("third", caps2) == "Third needs a token grid."
    assert reg.usable(caps2) == {"second": None, "first": "too few features", "third": "Third needs a token grid."}
    assert reg.default_selection() == ["first", "third"]  # the slow one is left out


def test_parameters_are_validated_with_the_family_error():
    reg = make_registry()
    assert reg.validate_params("first", steps=7.0, schedule=[1, 2]) == {"steps": 7, "schedule": (1, 2)}
    with pytest.raises(FamilyError, match="no parameter.*'step'.*valid parameters: steps, schedule"):
        reg.validate_params("first", step=3)
    with pytest.raises(FamilyError, match="whole number"):
        reg.validate_params("first", steps=2.5)
    with pytest.raises(FamilyError, match=r"must be in \[1, 1000\]"):
        reg.validate_params("first", steps=0)
    with pytest.raises(FamilyError, match=r"schedule'\[1\] must be in \[0, 10\]"):
        reg.validate_params("first", schedule=[1, 11])
    with pytest.raises(FamilyError, match="list of numbers"):
        reg.validate_params("first", schedule="3,2")
    with pytest.raises(FamilyError, match="at least one number"):
        reg.validate_params("first", schedule=[])
    with pytest.raises(FamilyError, match="at most 8 for this data"):
        reg.validate_params("first", facts={"features": 8}, steps=9)
    with pytest.raises(SpecError):  # the default error type of a bare spec
        MethodSpec("m", "M", "a", "", "", frozenset(), params=(ParamSpec("k", 1, "int", "k", low=1),)).validate_params(
            {"k": 0})


def test_bounds_come_from_the_data_facts():
    spec = make_registry().spec("first")
    assert spec.bounds({"features": 8}) == {"steps": 8}
    assert spec.bounds({"features": 5000}) == {"steps": 1000}  # never above the static bound
    assert spec.bounds({}) == {} and spec.bounds(None) == {}


def test_the_ood_detectors_live_in_the_shared_registry():
    import core.ood as ood
    from core.ood.base import REGISTRY

    assert isinstance(REGISTRY, Registry) and ood.available() == REGISTRY.available()
    assert ood.spec("vim").bounds({"feature_dim": 96}) == {"dim": 95}
    assert issubclass(ood.OODError, UserError)
    from core.data import DataError
    from core.extract import ExtractError
    from core.models import ModelError
    from core.workspace import WorkspaceError

    assert all(issubclass(e, UserError) for e in (DataError, ExtractError, ModelError, WorkspaceError))
