"""The error type, the registries and the settings of the shift-attribution module.

Three method families have variants a user interface offers as choices, each a
:class:`core.spec.Registry` so a page builds its controls from the specs:

- :data:`CLASSIFIERS`: the domain classifier that estimates each density ratio
  (``"gbm"``: histogram gradient boosting, ``"logistic"``: logistic regression);
- :data:`CALIBRATIONS`: how its scores become probabilities (``"platt"``, ``"isotonic"``, ``"none"``);
- :data:`SHAPLEY`: how the Shapley values are computed (``"exact"`` or ``"permutation"`` sampling);
- :data:`METRICS`: the performance measure whose change is explained.

:data:`SETTINGS` is the spec of one explanation's settings (every knob with its default, range and
help); :class:`ShiftSettings` is its validated value.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from core.errors import UserError
from core.spec import Capabilities, MethodSpec, ParamSpec, Registry


class ShiftError(UserError):
    """Input that distribution-shift attribution cannot use; the message says what was expected, what
    was got and how to fix it."""


# ---------------------------------------------------------------------------- domain classifiers
CLASSIFIERS: Registry[MethodSpec] = Registry(
    "shift", noun="domain classifier", error=ShiftError, groups=("domain classifier",), needs=(),
    order=("gbm", "logistic"))


@CLASSIFIERS.register(
    "gbm", "Gradient boosting", "domain classifier", (),
    "Ke et al., LightGBM (NeurIPS 2017), as scikit-learn's HistGradientBoostingClassifier; the paper "
    "(Zhang et al., ICML 2023) uses gradient-boosted trees (XGBoost)",
    params=(
        ParamSpec("max_iter", 100, "int", "Boosting rounds (early stopping on a 10% validation split may stop sooner).",
                  low=5, high=2000, log=True),
        ParamSpec("learning_rate", 0.1, "float", "Shrinkage of each tree.", low=0.005, high=1.0, log=True),
        ParamSpec("max_leaf_nodes", 15, "int", "Leaves per tree: how many interactions one tree can express.",
                  low=2, high=255),
        ParamSpec("min_samples_leaf", 40, "int", "Fewest rows in a leaf: larger values give smoother ratios.",
                  low=1, high=100000, log=True),
        ParamSpec("l2_regularization", 1.0, "float", "L2 penalty on the leaf values.", low=0.0, high=1000.0),
    ))
def _gbm_spec():
    """Histogram gradient-boosted trees on the node's columns (categorical columns split natively).
    They find interactions (a colour that depends on the class, a marker whose rate flips per
    class) that a linear model cannot, which a conditional mechanism P(v | parents) needs."""


@CLASSIFIERS.register(
    "logistic", "Logistic regression", "domain classifier", (),
    "Bickel, Brückner & Scheffer, Discriminative learning under covariate shift (JMLR 2009)",
    params=(ParamSpec("C", 1.0, "float", "Inverse L2 penalty.", low=1e-4, high=1e4, log=True),))
def _logistic_spec():
    """L2-regularised logistic regression on standardised numeric columns and one-hot categories.
    Fast, but linear in its inputs: it sees shifts of means and of category frequencies, not
    interactions, so a conditional mechanism that changes only jointly with its parents (P(v | pa)
    with the same marginal of v) stays invisible to it."""


# ---------------------------------------------------------------------------- calibration
CALIBRATIONS: Registry[MethodSpec] = Registry(
    "shift", noun="calibration", error=ShiftError, groups=("calibration",), needs=(),
    order=("platt", "isotonic", "none"))


@CALIBRATIONS.register("platt", "Platt scaling", "calibration", (),
                       "Platt, Probabilistic outputs for support vector machines (1999)")
def _platt_spec():
    """P(target | x) = σ(a·s(x) + b), with s the classifier's out-of-fold log-odds and (a, b) fitted
    by maximum likelihood on the other folds' scores (cross-fitted, so no row calibrates itself)."""


@CALIBRATIONS.register("isotonic", "Isotonic regression", "calibration", (),
                       "Zadrozny & Elkan, Transforming classifier scores into accurate multiclass "
                       "probability estimates (KDD 2002)")
def _isotonic_spec():
    """A monotone step function of the out-of-fold score fitted on the other folds (cross-fitted).
    Needs more rows than Platt scaling; its steps make many rows share one weight."""


@CALIBRATIONS.register("none", "None", "calibration", (), "")
def _no_calibration_spec():
    """The classifier's own probabilities σ(s(x)). Odds ratios are only as good as the probabilities,
    so use this to see how much calibration changes the answer."""


# ---------------------------------------------------------------------------- Shapley estimators
MAX_EXACT_PLAYERS = 10


def _check_shapley(spec: MethodSpec, caps: Capabilities) -> str | None:
    players = caps.facts.get("players")
    if spec.id == "exact" and players is not None and players > MAX_EXACT_PLAYERS:
        return (f"Exact Shapley values enumerate 2^{players} = {1 << players:,} coalitions; use permutation sampling "
                f"beyond {MAX_EXACT_PLAYERS} mechanisms.")
    return None


SHAPLEY: Registry[MethodSpec] = Registry(
    "shift", noun="Shapley estimator", error=ShiftError, groups=("shapley",), needs=(),
    order=("exact", "permutation"), check=_check_shapley)
N_PERMUTATIONS = ParamSpec("n_permutations", 256, "int", "Sampled orderings of the mechanisms (each also walked "
                           "in reverse); used by the permutation estimator.", low=2, high=100000, log=True)


@SHAPLEY.register("exact", "Exact (all coalitions)", "shapley", (),
                  "Shapley, A value for n-person games (1953)")
def _exact_spec():
    """φ_i = Σ_{S ⊆ N∖{i}} |S|!(n−|S|−1)!/n! · (v(S ∪ {i}) − v(S)) over all 2ⁿ coalitions, each
    evaluated once and cached. Up to 10 mechanisms (1024 coalitions)."""


@SHAPLEY.register("permutation", "Permutation sampling", "shapley", (),
                  "Castro, Gómez & Tejada, Polynomial calculation of the Shapley value based on sampling "
                  "(Computers & OR 2009); antithetic pairs: Mitchell et al. (JMLR 2022)",
                  params=(N_PERMUTATIONS,))
def _permutation_spec():
    """φ_i ≈ the mean over sampled orderings of v(players before i, plus i) − v(players before i).
    Every ordering is paired with its reverse (antithetic sampling), and each coalition met along the
    way is evaluated once. The values still add up to v(all) − v(∅) exactly."""


# ---------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class MetricSpec(MethodSpec):
    """A metric: whether higher is better, and whether it is a mean of per-sample losses (then every
    coalition is a weighted mean; AUROC is a pairwise statistic and has its own kernel)."""

    higher_is_better: bool = True
    per_sample: bool = True


METRICS: Registry[MetricSpec] = Registry(
    "shift", noun="metric", error=ShiftError, groups=("classification", "regression"),
    needs={"classes": "class probabilities and class labels (a classifier)",
           "binary": "a task with exactly two classes",
           "regression": "numeric predictions and a numeric label (a regression model)"},
    order=("accuracy", "log_loss", "brier", "auroc", "mse"), spec_type=MetricSpec)


@METRICS.register("accuracy", "Accuracy", "classification", ("classes",), "", higher_is_better=True)
def _accuracy_spec():
    """Share of samples whose most probable class is the label: mean of 1[argmax p(x) = y]."""


@METRICS.register("log_loss", "Log loss", "classification", ("classes",), "", higher_is_better=False)
def _log_loss_spec():
    """Cross-entropy: mean of −log p_y(x) (probabilities clipped at 1e-15). Moves even when accuracy
    barely does, so it shows shifts a near-perfect classifier survives."""


@METRICS.register("brier", "Brier score", "classification", ("classes",),
                  "Brier, Verification of forecasts expressed in terms of probability (1950)",
                  higher_is_better=False)
def _brier_spec():
    """Mean squared error of the probability vector: mean of Σ_c (p_c(x) − 1[y = c])², halved for two
    classes so that it equals (p_1 − y)² (scikit-learn's ``brier_score_loss``)."""


@METRICS.register("auroc", "AUROC", "classification", ("classes", "binary"), "", higher_is_better=True,
                  per_sample=False)
def _auroc_spec():
    """Area under the ROC curve of p_1(x) for the positive class 1: P(p_1(x⁺) > p_1(x⁻)) + ½·P(tie),
    with every pair weighted by the product of its two samples' weights."""


@METRICS.register("mse", "Mean squared error", "regression", ("regression",), "", higher_is_better=False)
def _mse_spec():
    """Mean of (ŷ(x) − y)² for a regression model (``predict_proba`` then returns [N] or [N, 1])."""


def metric_capabilities(task: str, n_classes: int) -> Capabilities:
    """What a model offers the metrics: ``task`` is "classification" or "regression"."""
    if task == "regression":
        return Capabilities(has=frozenset({"regression"}),
                            why_not={"classes": "this model predicts numbers, not class probabilities"})
    has = {"classes"} | ({"binary"} if n_classes == 2 else set())
    return Capabilities(has=frozenset(has), why_not={
        "binary": f"this model has {n_classes} classes",
        "regression": "this model predicts class probabilities"})


# ---------------------------------------------------------------------------- settings
ESTIMATORS = ("overlap", "symmetric", "source")
EFFICIENCY_RULES = ("proportional", "uniform", "rescale")
BOOTSTRAPS = ("rows", "refit")

SETTINGS = MethodSpec(
    id="iw-shapley", name="Importance-weighted Shapley attribution", group="shift", needs=frozenset(),
    reference="Zhang, Singh, Ghassemi & Joshi, \"Why did the Model Fail?\": Attributing Model Performance "
              "Changes to Distribution Shifts (ICML 2023)",
    description="Players are the mechanisms of the graph's Markov factorisation; the value of a coalition S is "
                "the performance change when only S's mechanisms take their target form, estimated by "
                "re-weighting samples with odds ratios of domain classifiers; the attribution of a mechanism "
                "is its Shapley value.",
    params=(
        ParamSpec("classifier", "gbm", "choice", "Domain classifier that estimates the density ratios.",
                  choices=tuple(CLASSIFIERS.available())),
        ParamSpec("calibration", "platt", "choice", "How classifier scores become probabilities (cross-fitted).",
                  choices=tuple(CALIBRATIONS.available())),
        ParamSpec("folds", 3, "int", "Cross-fitting folds: every row's ratio comes from classifiers that never saw it.",
                  low=2, high=10),
        ParamSpec("max_fit_rows", 60000, "int", "Most rows (both datasets together) one classifier is fitted on; "
                  "larger sets are subsampled per fold, every row still gets an out-of-fold ratio.",
                  low=200, high=10_000_000, log=True),
        ParamSpec("clip_prob", 0.001, "float", "Classifier probabilities are clipped to [ε, 1 − ε]. Where both "
                  "classifiers of a conditional hit the clip (no overlap in the parents) its ratio is 1.",
                  low=1e-6, high=0.2, log=True),
        ParamSpec("clip_weight", 100.0, "float", "Largest weight a sample may carry in a coalition (w ← min(w, c)); "
                  "the share clipped is reported.", low=1.0, high=1e6, log=True),
        ParamSpec("self_normalise", True, "bool", "Divide by the sum of the weights (Σwℓ/Σw) instead of by n (Σwℓ/n)."),
        ParamSpec("estimator", "overlap", "choice",
                  "Which samples estimate each coalition: 'source' re-weights the source only (the paper); "
                  "'symmetric' averages it with the target re-weighted towards the source; 'overlap' weighs the "
                  "two by their effective sample size times their support coverage squared.",
                  choices=ESTIMATORS),
        ParamSpec("efficiency", "proportional", "choice",
                  "How the gap between the estimated game's total v(all) − v(∅) and the observed change is shared: "
                  "in proportion to |φ|, equally (the exact Shapley values of the game with v(all) set to the "
                  "observed change), or by rescaling every φ (the reference implementation).",
                  choices=EFFICIENCY_RULES),
        ParamSpec("shapley", "auto", "choice", "Exact enumeration (up to 10 mechanisms), permutation sampling, or "
                  "auto: exact when it applies.", choices=("auto", "exact", "permutation")),
        N_PERMUTATIONS,
        ParamSpec("n_boot", 0, "int", "Bootstrap replicates for the confidence intervals (0: none).",
                  low=0, high=5000),
        ParamSpec("bootstrap", "rows", "choice", "'rows' resamples the rows with the fitted weights kept; 'refit' "
                  "also refits every classifier on each replicate (slow).", choices=BOOTSTRAPS),
        ParamSpec("ci_level", 0.95, "float", "Coverage of the percentile intervals.", low=0.5, high=0.999),
        ParamSpec("threads", 1, "int", "OpenMP threads per classifier fit. More threads than free cores stall "
                  "gradient boosting badly (measured 0.14 s with 1 thread against 5-13 s with 2 on a busy "
                  "2-core machine).", low=1, high=64),
    ))


@dataclass(frozen=True)
class ShiftSettings:
    """The validated settings of one explanation (see :data:`SETTINGS` for every field's meaning).

    ``classifier_params`` are the chosen domain classifier's parameters (:data:`CLASSIFIERS`)."""

    classifier: str = "gbm"
    calibration: str = "platt"
    folds: int = 3
    max_fit_rows: int = 60000
    clip_prob: float = 0.001
    clip_weight: float = 100.0
    self_normalise: bool = True
    estimator: str = "overlap"
    efficiency: str = "proportional"
    shapley: str = "auto"
    n_permutations: int = 256
    n_boot: int = 0
    bootstrap: str = "rows"
    ci_level: float = 0.95
    threads: int = 1
    classifier_params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def make(cls, settings: ShiftSettings | Mapping[str, Any] | None = None, **overrides) -> ShiftSettings:
        """Settings from a :class:`ShiftSettings`, a mapping and/or keywords (keywords win), each value
        validated against :data:`SETTINGS`; ``classifier_params`` against the classifier's spec."""
        base = settings.as_dict() if isinstance(settings, ShiftSettings) else dict(settings or {})
        base.update(overrides)
        clf_params = dict(base.pop("classifier_params", None) or {})
        values = SETTINGS.validate_params(base, ShiftError)
        clf_params = CLASSIFIERS.validate_params(values["classifier"], **clf_params)
        return cls(**values, classifier_params=tuple(sorted(clf_params.items())))

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["classifier_params"] = dict(self.classifier_params)
        return out

    def weight_key(self) -> tuple:
        """What the fitted density ratios depend on (a cache key part): changing anything else
        (metric, clipping of weights, Shapley estimator, bootstrap) reuses the fitted classifiers."""
        return (self.classifier, self.classifier_params, self.calibration, self.folds, self.max_fit_rows,
                self.clip_prob)


__all__ = [
    "BOOTSTRAPS",
    "CALIBRATIONS",
    "CLASSIFIERS",
    "EFFICIENCY_RULES",
    "ESTIMATORS",
    "MAX_EXACT_PLAYERS",
    "METRICS",
    "N_PERMUTATIONS",
    "SETTINGS",
    "SHAPLEY",
    "MetricSpec",
    "ShiftError",
    "ShiftSettings",
    "metric_capabilities",
]
