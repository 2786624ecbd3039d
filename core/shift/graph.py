"""The causal graph of a shift explanation: a DAG over named groups of columns, and its mechanisms.

A node is a group of columns (``groups[node]``; by default the node is a column of the same
name). The joint distribution factorises along the DAG as

    P(V) = Π_nodes P(v | pa(v)),

and every factor is a *mechanism*, a player of the Shapley game (Zhang et al., ICML 2023, §3):
the marginal P(v) of a root, the conditional P(v | pa(v)) of any other node.

Presets: :func:`all_marginals` (no edges: every node shifts on its own), :func:`topological_order`
(each node depends on all earlier ones: a chain rule that is valid for any joint distribution),
:func:`shapes_graph` (the Shapes world's recorded mechanisms) and :func:`label_features_graph`
(label and model features, for data without metadata).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .base import ShiftError


@dataclass(frozen=True)
class Mechanism:
    """One factor of the Markov factorisation: ``node`` given its ``parents`` (none for a root)."""

    node: str
    parents: tuple[str, ...] = ()

    @property
    def is_root(self) -> bool:
        return not self.parents

    @property
    def name(self) -> str:
        """``P(node)`` for a root, ``P(node | a, b)`` otherwise."""
        return f"P({self.node})" if self.is_root else f"P({self.node} | {', '.join(self.parents)})"


@dataclass(frozen=True)
class ShiftGraph:
    """A validated DAG: ``order`` lists the nodes topologically (parents first, otherwise in the order
    given), ``parents[node]`` and ``groups[node]`` (its columns) are tuples."""

    order: tuple[str, ...]
    parents: Mapping[str, tuple[str, ...]]
    groups: Mapping[str, tuple[str, ...]]

    @property
    def mechanisms(self) -> list[Mechanism]:
        """The players, in topological order."""
        return [Mechanism(n, self.parents[n]) for n in self.order]

    @property
    def columns(self) -> list[str]:
        """Every column of every node, in node order."""
        return [c for n in self.order for c in self.groups[n]]

    def columns_of(self, nodes: Sequence[str]) -> tuple[str, ...]:
        """The columns of a set of nodes, in the graph's node order (so equal sets give equal tuples)."""
        wanted = set(nodes)
        return tuple(c for n in self.order if n in wanted for c in self.groups[n])

    def node_of(self, column: str) -> str | None:
        for n in self.order:
            if column in self.groups[n]:
                return n
        return None

    def edges(self) -> list[tuple[str, str]]:
        return [(p, n) for n in self.order for p in self.parents[n]]

    def to_dict(self) -> dict:
        return {"graph": {n: list(self.parents[n]) for n in self.order},
                "groups": {n: list(self.groups[n]) for n in self.order}}


def _find_cycle(parents: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A directed cycle as a list of nodes [a, b, ..., a] following parent → child, or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for p in parents[node]:
            if state.get(p) == 1:
                cycle = stack[stack.index(p):] + [p]
                return cycle[::-1]  # parent → child reads as the edges of the graph
            if p not in state:
                found = visit(p)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for n in parents:
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def make_graph(graph: Mapping[str, Sequence[str]], columns: Sequence[str],
               groups: Mapping[str, Sequence[str]] | None = None) -> ShiftGraph:
    """Validate ``graph`` (node → parent nodes) and ``groups`` (node → columns) against the data's
    ``columns`` and return the :class:`ShiftGraph`.

    Without ``groups``, or for a node that ``groups`` leaves out, a node is the column of that name.
    Raises :class:`ShiftError` for a cycle, a parent that is not a node, a group naming unknown
    columns, a column in two groups, or a group for a node not in the graph.
    """
    if not isinstance(graph, Mapping) or not graph:
        raise ShiftError("The graph must map each node to the list of its parent nodes, e.g. "
                         "{'y': [], 'x': ['y']}; got " + (f"{type(graph).__name__}." if not isinstance(graph, Mapping)
                                                           else "an empty mapping."))
    parents: dict[str, tuple[str, ...]] = {}
    for node, pa in graph.items():
        if isinstance(pa, str) or not isinstance(pa, Sequence | set | frozenset | tuple):
            raise ShiftError(f"The parents of node '{node}' must be a list of node names, got {pa!r}.")
        pa = tuple(dict.fromkeys(str(p) for p in pa))
        if str(node) in pa:
            raise ShiftError(f"Node '{node}' lists itself as a parent; a node cannot cause itself.")
        parents[str(node)] = pa
    for node, pa in parents.items():
        unknown = [p for p in pa if p not in parents]
        if unknown:
            raise ShiftError(f"Parent(s) {', '.join(map(repr, unknown))} of node '{node}' are not nodes of the graph; "
                             f"add each as a node of its own (with [] as parents for a root). Nodes: "
                             f"{', '.join(parents)}.")
    cycle = _find_cycle(parents)
    if cycle:
        raise ShiftError(f"The graph has a cycle: {' → '.join(cycle)}. A causal graph must be acyclic; remove one "
                         "of these edges.")
    column_set = set(columns)
    groups = dict(groups or {})
    stray = [n for n in groups if n not in parents]
    if stray:
        raise ShiftError(f"groups names node(s) {', '.join(map(repr, stray))} that are not in the graph "
                         f"(nodes: {', '.join(parents)}).")
    resolved: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for node in parents:
        if node in groups:
            cols = groups[node]
            if isinstance(cols, str):
                cols = [cols]
            cols = tuple(dict.fromkeys(str(c) for c in cols))
            if not cols:
                raise ShiftError(f"The group of node '{node}' is empty; list the columns it stands for.")
            unknown = [c for c in cols if c not in column_set]
            if unknown:
                raise ShiftError(f"The group of node '{node}' names column(s) {', '.join(map(repr, unknown))} that are "
                                 f"not in the data. Available columns: {', '.join(map(str, columns))}.")
        elif node in column_set:
            cols = (node,)
        else:
            raise ShiftError(f"Node '{node}' is not a column of the data and has no group; give groups['{node}'] = "
                             f"[its columns]. Available columns: {', '.join(map(str, columns))}.")
        for c in cols:
            if c in owner:
                raise ShiftError(f"Column '{c}' belongs to two nodes, '{owner[c]}' and '{node}'; each column may "
                                 "belong to one node only.")
            owner[c] = node
        resolved[node] = cols
    # topological order, stable in the order the nodes were given
    order: list[str] = []
    placed: set[str] = set()
    remaining = list(parents)
    while remaining:
        for node in remaining:
            if all(p in placed for p in parents[node]):
                order.append(node)
                placed.add(node)
                remaining.remove(node)
                break
    return ShiftGraph(order=tuple(order), parents=parents, groups=resolved)


# ---------------------------------------------------------------------------- presets
def all_marginals(nodes: Sequence[str]) -> dict[str, list[str]]:
    """No edges: each node is a root and its marginal P(v) is a player. Valid when the nodes are
    independent; otherwise the product of marginal weights is not the joint ratio."""
    return {str(n): [] for n in nodes}


def topological_order(nodes: Sequence[str]) -> dict[str, list[str]]:
    """Each node's parents are all the nodes before it: P(v₁)·P(v₂ | v₁)·P(v₃ | v₁, v₂)···, the chain
    rule, which holds for every joint distribution (the order decides what each player means)."""
    nodes = [str(n) for n in nodes]
    return {n: nodes[:i] for i, n in enumerate(nodes)}


def shapes_graph(mechanisms: Sequence[str] | None = None) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The Shapes world's graph and groups, as :mod:`core.data.shapes` records them
    (``MECHANISM_PARENTS``, ``MECHANISM_COLUMNS``): nodes are mechanisms ("class", "colour", ...),
    each standing for its factor columns. ``mechanisms`` keeps a subset (with their parents)."""
    from core.data.shapes import MECHANISM_COLUMNS, MECHANISM_OPTIONAL_PARENTS, MECHANISM_PARENTS, MECHANISMS

    keep = list(MECHANISMS) if mechanisms is None else list(mechanisms)
    unknown = [m for m in keep if m not in MECHANISM_PARENTS]
    if unknown:
        raise ShiftError(f"Unknown Shapes mechanism(s) {', '.join(map(repr, unknown))}; the world has "
                         f"{', '.join(MECHANISMS)}.")
    missing_parents = {p for m in keep for p in MECHANISM_PARENTS[m] if p not in keep}
    keep = [m for m in MECHANISMS if m in set(keep) | missing_parents]
    parents = {m: list(MECHANISM_PARENTS[m]) + [p for p in MECHANISM_OPTIONAL_PARENTS.get(m, []) if p in keep]
               for m in keep}
    return parents, {m: list(MECHANISM_COLUMNS[m]) for m in keep}


def label_features_graph(label: str, feature_columns: Sequence[str], direction: str = "label->features",
                         features_node: str = "features") -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Two nodes for data without metadata: the label and the model's features.

    ``"label->features"``: players P(label) (label shift) and P(features | label) (conditional shift);
    ``"features->label"``: players P(features) (covariate shift) and P(label | features) (concept shift).
    """
    if direction not in ("label->features", "features->label"):
        raise ShiftError(f"direction must be 'label->features' or 'features->label', got {direction!r}.")
    groups = {label: [label], features_node: list(feature_columns)}
    if direction == "label->features":
        return {label: [], features_node: [label]}, groups
    return {features_node: [], label: [features_node]}, groups


PRESETS = ("all-marginals", "topological-order", "shapes", "label->features", "features->label")


def graph_preset(name: str, *, nodes: Sequence[str] = (), label: str | None = None,
                 features: Sequence[str] = ()) -> tuple[dict[str, list[str]], dict[str, list[str]] | None]:
    """(graph, groups) of preset ``name`` (one of :data:`PRESETS`), for a graph editor's buttons.

    "all-marginals" and "topological-order" use ``nodes`` (columns or node names, in order; groups
    None: a node is its column); "shapes" the Shapes world; "label->features"/"features->label" the
    ``label`` column and the ``features`` columns as one node."""
    if name == "all-marginals":
        return all_marginals(nodes), None
    if name == "topological-order":
        return topological_order(nodes), None
    if name == "shapes":
        return shapes_graph()
    if name in ("label->features", "features->label"):
        if label is None or not features:
            raise ShiftError(f"The '{name}' preset needs the label column and the feature columns.")
        return label_features_graph(label, features, name)
    raise ShiftError(f"Unknown graph preset {name!r}; presets: {', '.join(PRESETS)}.")

__all__ = ["PRESETS", "Mechanism", "ShiftGraph", "all_marginals", "graph_preset", "label_features_graph", "make_graph",
           "shapes_graph", "topological_order"]
