"""Method specs and registries, shared by every analysis module (OOD detectors, token pruners,
attribution methods, shift explainers).

A *spec* says everything a user interface or a script needs to know about a method without
running it: its id and display name, a group, a description (the formula and the paper), a
reference, what it **needs** (logits, features, a torch model, gradients, attention, ...), what it
**assumes** about the data, its **parameters** (type, default, range, choices, help, and an upper
bound that depends on the data), and whether it is **slow** (then a default selection leaves it
out and says why). A :class:`Registry` holds the specs of one family and offers the same entry
points in every module: ``available()``, ``spec(name)``, ``create(name, **params)`` and
``unavailable_reason(name, capabilities)``.

Adding an analysis module
-------------------------
The path the pruning, attribution and shift modules take (``core/ood`` is the worked example):

1. **Errors.** Define ``class PruningError(UserError)`` (from :mod:`core.errors`); raise it, with
   a sentence a non-programmer can act on, whenever the *input* is wrong. Anything else is a bug
   and reaches the user as "this is a bug" with the traceback in the server log.
2. **Registry.** ``REGISTRY = Registry("pruning", noun="method", error=PruningError,
   groups=(...), needs={"attention": "attention maps (a Vision Transformer)", ...},
   order=(...))``. Register each method with ``@REGISTRY.register("tome", "ToMe", group, needs,
   reference, params=(ParamSpec(...), ...))`` on a class or a function whose docstring is the
   description. Expose ``available = REGISTRY.available``, ``spec = REGISTRY.spec`` and
   ``create = REGISTRY.create`` (or a ``method=`` function) from the package.
3. **Capabilities.** Describe what the workspace offers as :class:`Capabilities` (the needs it
   meets, why the others are unmet, and numeric facts such as ``feature_dim`` that bound
   parameters); ``REGISTRY.unavailable_reason(name, caps)`` then explains why a method does not
   apply, so the page hides it and shows the reason. ``ParamSpec(bound=...)`` derives a
   parameter's upper bound from those facts, so no page hard-codes a cap.
4. **Workflow.** Write the whole run (resolve the workspace's data, extract outputs, run the
   methods) as a core function taking a :class:`core.workspace.Resolver`, the settings, a
   ``progress(fraction, message)`` callback and a cache (anything with
   ``get_or_compute(key, fn)``; :class:`core.cache.ByteCache` bounds it in bytes and computes
   identical work in flight once). It returns a typed result dataclass with its inputs'
   fingerprint; the page, the audit CLI and a notebook all call it.
5. **UI.** A ``ui/<module>.py`` with the widget groups (``ui.params.param_controls(spec)``
   builds a method's controls from its spec) and a thin ``pages/N_<Module>.py``; an AppTest of
   each view and a browser test.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Generic, TypeVar

import numpy as np

from .errors import SpecError, UserError

PARAM_TYPES = ("int", "float", "bool", "choice", "int_list", "float_list")


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a method: enough for a UI to build a control and to validate the value.

    ``type``: "int", "float", "bool", "choice", or "int_list"/"float_list" (a sequence of
    numbers, e.g. a per-layer schedule; ``low``/``high`` bound each element).
    ``low``/``high`` bound numbers (inclusive). ``optional``: ``None`` is accepted and means
    "automatic" (``help`` says what that picks). ``log`` suggests a log-scaled control.
    ``label``: a readable name for the control (default: the id with spaces).
    ``bound``: the data-dependent upper bound, ``bound(facts) -> number or None`` with the facts
    of :class:`Capabilities` (ViM's principal dimension must stay below the feature dimension).
    """

    name: str
    default: Any
    type: str
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    optional: bool = False
    log: bool = False
    label: str | None = None
    bound: Callable[[Mapping[str, Any]], float | None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.type not in PARAM_TYPES:
            raise ValueError(f"ParamSpec {self.name!r}: unknown type {self.type!r}; expected one of {PARAM_TYPES}.")

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ")

    def high_for(self, facts: Mapping[str, Any] | None) -> float | None:
        """The upper bound given the data's facts: the tighter of ``high`` and ``bound(facts)``."""
        high = self.high
        if self.bound is not None and facts:
            try:
                b = self.bound(facts)
            except (KeyError, TypeError):
                b = None
            if b is not None:
                high = b if high is None else min(high, b)
        return high

    def _number(self, value: Any, where: str, error: type[UserError], kind: str) -> float | int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise error(f"{where} must be a number, got {value!r}.")
        if kind == "int":
            if not math.isfinite(float(value)) or float(value) != int(value):
                raise error(f"{where} must be a whole number, got {value!r}.")
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise error(f"{where} must be finite, got {value!r}.")
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise error(f"{where} must be in [{self.low}, {self.high}], got {value!r}.")
        return value

    def validate(self, value: Any, owner: str, error: type[UserError] = SpecError) -> Any:
        """The value, converted to the parameter's type; ``error`` (a :class:`UserError`) with a
        message naming ``owner`` and the parameter when it is not acceptable."""
        where = f"{owner}: parameter '{self.name}'"
        if value is None:
            if self.optional:
                return None
            raise error(f"{where} may not be None.")
        if self.type == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise error(f"{where} must be True or False, got {value!r}.")
            return bool(value)
        if self.type == "choice":
            try:
                ok = value in self.choices
            except TypeError:
                ok = False
            if not ok:
                raise error(f"{where} must be one of {', '.join(map(repr, self.choices))}, got {value!r}.")
            return value
        if self.type in ("int_list", "float_list"):
            if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                raise error(f"{where} must be a list of numbers, got {value!r}.")
            items = list(value)
            if not items:
                raise error(f"{where} must hold at least one number.")
            kind = "int" if self.type == "int_list" else "float"
            return tuple(self._number(v, f"{where}[{i}]", error, kind) for i, v in enumerate(items))
        return self._number(value, where, error, self.type)


@dataclass(frozen=True)
class Capabilities:
    """What a run has at hand, for :meth:`Registry.unavailable_reason`.

    ``has``: the needs it meets (e.g. {"logits", "features", "model", "gradients"}).
    ``why_not``: for an unmet need, the sentence saying why (e.g. "a random forest has no
    gradients"). ``facts``: anything a family check or a parameter bound reads (the feature
    dimension, the number of tokens, the number of table columns, the model object, ...).
    """

    has: frozenset[str] = frozenset()
    why_not: Mapping[str, str] = field(default_factory=dict)
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodSpec:
    """What a UI needs to know about a method without running it (see the module docstring).

    ``impl`` is the class or function that implements it; ``slow`` is ``None`` for a method that
    suits a live demo, otherwise the reason it is left out of default selections ("two forward
    passes and a backward pass per image").
    """

    id: str
    name: str
    group: str
    description: str
    reference: str
    needs: frozenset[str]
    params: tuple[ParamSpec, ...] = ()
    assumes: tuple[str, ...] = ()
    slow: str | None = None
    impl: Any = field(default=None, repr=False, compare=False)

    @property
    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def param(self, name: str) -> ParamSpec:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def bounds(self, facts: Mapping[str, Any] | None) -> dict[str, float]:
        """Upper bounds that the data sets on the parameters (name -> bound), for the UI's controls."""
        out = {}
        for p in self.params:
            if p.bound is not None and facts:
                try:
                    b = p.bound(facts)
                except (KeyError, TypeError):
                    b = None
                if b is not None:
                    out[p.name] = b if p.high is None else min(p.high, b)
        return out

    def validate_params(self, params: Mapping[str, Any], error: type[UserError] = SpecError,
                        facts: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every parameter validated, defaults filled in; unknown names are refused with the valid ones.
        With ``facts``, data-dependent bounds apply too."""
        unknown = sorted(set(params) - {p.name for p in self.params})
        if unknown:
            valid = ", ".join(p.name for p in self.params) or "none"
            raise error(f"{self.name} has no parameter(s) {', '.join(map(repr, unknown))}; valid parameters: {valid}.")
        out = {}
        for p in self.params:
            value = p.validate(params.get(p.name, p.default), self.name, error)
            high = p.high_for(facts) if facts else None
            if high is not None and value is not None and p.type in ("int", "float") and value > high:
                raise error(f"{self.name}: parameter '{p.name}' must be at most {high:g} for this data, got {value!r}.")
            out[p.name] = value
        return out


S = TypeVar("S", bound=MethodSpec)


class Registry(Generic[S]):
    """The methods of one family, in a stable display order.

    ``needs`` maps every need a method of this family may declare to the phrase that completes
    "<method> needs ..." when it is unmet. ``check(spec, capabilities)`` adds family-specific
    reasons (a single-class fit set, a non-ViT model, ...). ``spec_type`` is the family's
    :class:`MethodSpec` subclass when it records more (e.g. a detector's ``fit_on``).
    """

    def __init__(self, family: str, *, noun: str = "method", error: type[UserError] = SpecError,
                 groups: Iterable[str] = (), needs: Mapping[str, str] | Iterable[str] = (),
                 assumptions: Iterable[str] = (), order: Iterable[str] = (),
                 check: Callable[[S, Capabilities], str | None] | None = None, spec_type: type[S] = MethodSpec):
        self.family = family
        self.noun = noun
        self.error = error
        self.groups = tuple(groups)
        self.needs = dict(needs) if isinstance(needs, Mapping) else {n: n for n in needs}
        self.assumptions = tuple(assumptions)
        self.order = tuple(order)
        self.check = check
        self.spec_type = spec_type
        self._specs: dict[str, S] = {}

    # -- registration
    def add(self, spec: S) -> S:
        self._check_spec(spec)
        self._specs[spec.id] = spec
        return spec

    def _check_spec(self, spec: S) -> None:
        if self.groups and spec.group not in self.groups:
            raise ValueError(f"{self.family}: unknown group {spec.group!r}")
        unknown = set(spec.needs) - set(self.needs)
        if unknown:
            raise ValueError(f"{self.family}: unknown needs {unknown}")
        if set(spec.assumes) - set(self.assumptions):
            raise ValueError(f"{self.family}: unknown assumptions {set(spec.assumes) - set(self.assumptions)}")
        if spec.id in self._specs:
            raise ValueError(f"{self.family}: {self.noun} {spec.id!r} registered twice")

    def register(self, id: str, name: str, group: str, needs: Iterable[str], reference: str,
                 params: Iterable[ParamSpec] = (), **extra):
        """Decorator for a class or function implementing method ``id``; its docstring is the
        description. ``extra``: ``assumes``, ``slow`` and the family spec's own fields."""
        probe = self.spec_type(id=id, name=name, group=group, description="", reference=reference,
                               needs=frozenset(needs), params=tuple(params), **extra)
        self._check_spec(probe)  # at the call, so a bad declaration fails where it is written

        def deco(obj):
            spec = self.spec_type(id=id, name=name, group=group, description=inspect.cleandoc(obj.__doc__ or ""),
                                  reference=reference, needs=frozenset(needs), params=tuple(params),
                                  impl=obj, **extra)
            self.add(spec)
            try:
                obj.spec = spec
            except (AttributeError, TypeError):
                pass
            return obj

        return deco

    # -- lookup
    def available(self) -> list[str]:
        """Ids of every registered method, in a stable display order."""
        return [k for k in self.order if k in self._specs] + sorted(k for k in self._specs if k not in self.order)

    def spec(self, name: str) -> S:
        try:
            return self._specs[name]
        except (KeyError, TypeError):
            raise self.error(f"Unknown {self.family} {self.noun} {name!r}; available: {', '.join(self.available())}.") \
                from None

    def specs(self) -> list[S]:
        return [self._specs[k] for k in self.available()]

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __getitem__(self, name: str) -> S:
        return self._specs[name]

    def __iter__(self):
        return iter(self.available())

    def __len__(self) -> int:
        return len(self._specs)

    def keys(self):
        return self._specs.keys()

    def values(self):
        return self._specs.values()

    def items(self):
        return self._specs.items()

    def get(self, name: str, default=None):
        return self._specs.get(name, default)

    # -- use
    def validate_params(self, name: str, facts: Mapping[str, Any] | None = None, **params) -> dict[str, Any]:
        return self.spec(name).validate_params(params, self.error, facts)

    def create(self, name: str, **params):
        """A new instance of method ``name`` (its ``impl`` called with the parameters)."""
        return self.spec(name).impl(**params)

    def unavailable_reason(self, name: str, caps: Capabilities | None = None) -> str | None:
        """Why method ``name`` cannot run with what ``caps`` offers, as a sentence; None when it can."""
        s = self.spec(name)
        caps = caps or Capabilities(has=frozenset(self.needs))
        for need in [n for n in self.needs if n in s.needs]:
            if need not in caps.has:
                why = caps.why_not.get(need)
                return f"{s.name} needs {self.needs[need]}" + (f"; {why}" if why else "") + "."
        return self.check(s, caps) if self.check is not None else None

    def usable(self, caps: Capabilities | None = None) -> dict[str, str | None]:
        """Every method -> the reason it cannot run (None when it can)."""
        return {k: self.unavailable_reason(k, caps) for k in self.available()}

    def default_selection(self, names: Iterable[str] | None = None) -> list[str]:
        """The methods a page selects by default: all of ``names`` (default: every method) except the slow ones."""
        names = self.available() if names is None else list(names)
        return [n for n in names if not self.spec(n).slow]


def spec_fields(spec: MethodSpec) -> dict[str, Any]:
    """The spec's fields as a plain dict (for provenance and exports; ``impl`` and callables left out)."""
    out = {}
    for f in fields(spec):
        if f.name == "impl":
            continue
        v = getattr(spec, f.name)
        if f.name == "params":
            v = [{"name": p.name, "default": p.default, "type": p.type, "low": p.low, "high": p.high,
                  "choices": list(p.choices), "optional": p.optional} for p in v]
        elif isinstance(v, frozenset):
            v = sorted(v)
        out[f.name] = v
    return out


__all__ = ["PARAM_TYPES", "Capabilities", "MethodSpec", "ParamSpec", "Registry", "spec_fields"]
