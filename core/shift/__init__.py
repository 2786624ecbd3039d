"""Distribution-shift attribution: why did the model's performance change between two datasets?

Zhang, Singh, Ghassemi & Joshi, "Why did the Model Fail?": Attributing Model Performance Changes
to Distribution Shifts (ICML 2023). The players are the mechanisms of a causal graph's Markov
factorisation; a coalition's value is the performance change when only its mechanisms shift,
estimated by re-weighting samples with odds ratios of domain classifiers; a mechanism's
attribution is its Shapley value, and the attributions add up to the observed change.

>>> from core import shift
>>> res = shift.explain_performance_change(src, tgt, predict_proba=model.predict_proba, label="y",
...                                        graph={"y": [], "x": ["y"]}, metric="log_loss", n_boot=200)  # doctest: +SKIP
>>> res.total, res.attributions, res.ci                                          # doctest: +SKIP

Modules: :mod:`.graph` (DAG, mechanisms, presets), :mod:`.weights` (cross-fitted calibrated domain
classifiers, density ratios), :mod:`.metrics` (weighted metrics), :mod:`.shapley` (exact and
sampled Shapley values), :mod:`.explain` (the estimator and its result), :mod:`.drift` (per-column
drift tests, C2ST, label-shift estimates), :mod:`.workflow` (Shapes presets and stored model
outputs). Registries (:data:`CLASSIFIERS`, :data:`CALIBRATIONS`, :data:`SHAPLEY`, :data:`METRICS`)
and the settings spec :data:`SETTINGS` let a page build its controls.
"""
from __future__ import annotations

from .base import (
    CALIBRATIONS,
    CLASSIFIERS,
    MAX_EXACT_PLAYERS,
    METRICS,
    SETTINGS,
    SHAPLEY,
    MetricSpec,
    ShiftError,
    ShiftSettings,
    metric_capabilities,
)
from .drift import C2STResult, LabelShiftEstimate, c2st, column_kind, dataset_drift, drift_table, label_shift
from .explain import (
    ClassifierReport,
    CoalitionTable,
    MechanismReport,
    ShiftDiagnostics,
    ShiftExplanation,
    Timings,
    explain_from_probabilities,
    explain_performance_change,
)
from .graph import (
    PRESETS,
    Mechanism,
    ShiftGraph,
    all_marginals,
    graph_preset,
    label_features_graph,
    make_graph,
    shapes_graph,
    topological_order,
)
from .metrics import metric_value, weighted_auroc
from .workflow import (
    ShapesShiftCase,
    explain_outputs_shift,
    explain_shapes_shift,
    shapes_case,
    shapes_mechanisms,
    shapes_variables,
)


def metrics_available() -> list[str]:
    """Ids of the metrics, in display order."""
    return METRICS.available()


__all__ = [
    "CALIBRATIONS",
    "CLASSIFIERS",
    "MAX_EXACT_PLAYERS",
    "METRICS",
    "PRESETS",
    "SETTINGS",
    "SHAPLEY",
    "C2STResult",
    "ClassifierReport",
    "CoalitionTable",
    "LabelShiftEstimate",
    "Mechanism",
    "MechanismReport",
    "MetricSpec",
    "ShapesShiftCase",
    "ShiftDiagnostics",
    "ShiftError",
    "ShiftExplanation",
    "ShiftGraph",
    "ShiftSettings",
    "Timings",
    "all_marginals",
    "c2st",
    "column_kind",
    "dataset_drift",
    "drift_table",
    "explain_from_probabilities",
    "explain_outputs_shift",
    "explain_performance_change",
    "explain_shapes_shift",
    "graph_preset",
    "label_features_graph",
    "label_shift",
    "make_graph",
    "metric_capabilities",
    "metric_value",
    "metrics_available",
    "shapes_case",
    "shapes_graph",
    "shapes_mechanisms",
    "shapes_variables",
    "topological_order",
    "weighted_auroc",
]
