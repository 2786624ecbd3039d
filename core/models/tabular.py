"""scikit-learn models for table datasets, speaking the same ModelOutputs language as the image models.

Every model is a Pipeline ``StandardScaler -> estimator`` fitted on a seeded, stratified split.
:func:`run_tabular` returns logits, penultimate features and, where the model has one, an exact
linear head (``logits == features @ head_weight.T + head_bias``):

* logistic regression: features = standardised inputs z, head = (coef_, intercept_). Multiclass
  uses the multinomial (softmax) form, so softmax(logits) == predict_proba. A binary model has a
  single score s = w·z + b; it becomes the symmetric pair [-s/2, +s/2], whose softmax is
  [1 - σ(s), σ(s)] == predict_proba.
* MLP: features = activations of the last hidden layer, head = the output layer (binary: the
  single logistic unit, made symmetric as above).
* trees (random forest, gradient boosting): features = standardised inputs, logits =
  log(predict_proba) clipped at 1e-12, no linear head.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.outputs import ExtractError, ModelOutputs

from .registry import ModelError

_KINDS = ("logistic-regression", "gradient-boosting", "random-forest", "mlp")
_PROBA_FLOOR = 1e-12
_MANY_ROWS = 50_000


def available_tabular() -> list[str]:
    """The scikit-learn model kinds :func:`train_tabular` can fit."""
    return list(_KINDS)


def tabular_defaults(kind: str) -> dict[str, Any]:
    """Default estimator parameters of ``kind`` (what the UI shows; any can be overridden)."""
    _check_kind(kind)
    return {
        "logistic-regression": {"C": 1.0, "max_iter": 2000},
        "gradient-boosting": {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 31},
        "random-forest": {"n_estimators": 200, "max_depth": None, "min_samples_leaf": 1},
        "mlp": {"hidden_layer_sizes": (64, 32), "alpha": 1e-3, "max_iter": 800, "learning_rate_init": 1e-3},
    }[kind].copy()


@contextmanager
def _small_data_threads(n_rows: int):
    """One OpenMP thread for small tables: HistGradientBoosting spends far longer synchronising its
    threads than computing on a few thousand rows (7 s instead of 0.2 s on wine with a busy CPU)."""
    if n_rows >= _MANY_ROWS:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def _check_kind(kind: str) -> None:
    if kind not in _KINDS:
        raise ModelError(f"Unknown tabular model '{kind}'. Choose one of: {', '.join(_KINDS)}.")


def _estimator(kind: str, seed: int, params: dict):
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    cls = {"logistic-regression": LogisticRegression, "gradient-boosting": HistGradientBoostingClassifier,
           "random-forest": RandomForestClassifier, "mlp": MLPClassifier}[kind]
    merged = {**tabular_defaults(kind), **params}
    valid = cls().get_params()
    unknown = sorted(set(merged) - set(valid))
    if unknown:
        raise ModelError(f"Unknown parameter(s) {', '.join(unknown)} for {kind} ({cls.__name__}). "
                         f"Valid parameters: {', '.join(sorted(valid))}.")
    if "random_state" in valid:
        merged.setdefault("random_state", seed)
    if kind == "random-forest":
        merged.setdefault("n_jobs", 1)
    try:
        return cls(**merged)
    except (TypeError, ValueError) as e:
        raise ModelError(f"Invalid parameters for {kind}: {e}") from e


@dataclass
class TabularModel:
    """A fitted ``StandardScaler -> estimator`` pipeline and its card.

    ``card`` holds name, kind, class_names, feature_names, test_accuracy (held-out),
    train_accuracy, train_index / test_index (rows of the training dataset), seed, params, source.
    """

    pipeline: Any
    card: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.card["kind"]

    @property
    def feature_names(self) -> list[str]:
        return list(self.card["feature_names"])

    @property
    def class_names(self) -> list[str]:
        return list(self.card["class_names"])

    @property
    def train_index(self) -> np.ndarray:
        return np.asarray(self.card["train_index"], np.int64)

    @property
    def test_index(self) -> np.ndarray:
        return np.asarray(self.card["test_index"], np.int64)

    @property
    def scaler(self):
        return self.pipeline[0]

    @property
    def estimator(self):
        return self.pipeline[-1]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities [N, C] for raw (unscaled) features [N, F] in ``feature_names`` order."""
        return _full_proba(self, self.pipeline.predict_proba(np.asarray(x, np.float64)))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predict_proba(x).argmax(1)

    def __repr__(self) -> str:
        acc = self.card.get("test_accuracy")
        return f"TabularModel({self.kind!r}, features={len(self.feature_names)}, classes={len(self.class_names)}, " \
               f"test_accuracy={acc if acc is None else round(acc, 4)})"


def _full_proba(model: TabularModel, proba: np.ndarray) -> np.ndarray:
    """Put the estimator's probability columns (its classes_) into the model's C class slots."""
    classes = np.asarray(model.estimator.classes_)
    c = len(model.class_names)
    if len(classes) == c and np.array_equal(classes, np.arange(c)):
        return proba
    full = np.zeros((len(proba), c), proba.dtype)
    full[:, classes] = proba
    return full


def _table_xy(dataset, what: str) -> tuple[np.ndarray, np.ndarray]:
    from core.data.dataset import DataError

    if getattr(dataset, "frame", None) is None:
        raise ModelError(f"A {what} needs a table dataset, but '{dataset.name}' is a {dataset.kind} dataset.")
    names = dataset.feature_names
    if not names:
        raise ModelError(f"The table '{dataset.name}' has no feature columns besides the label '{dataset.label}'.")
    bad = [c for c in names if not np.issubdtype(dataset.frame[c].dtype, np.number)
           and not np.issubdtype(dataset.frame[c].dtype, np.bool_)]
    if bad:
        raise ModelError(f"The feature columns must be numeric; these are not: {', '.join(map(str, bad[:8]))}.")
    try:
        x, y = dataset.table_arrays()
    except (DataError, ValueError, TypeError) as e:
        raise ModelError(f"Could not read the table '{dataset.name}' as numbers: {e}") from e
    if not np.isfinite(x).all():
        raise ModelError(f"The table '{dataset.name}' has missing or infinite feature values; fill or drop them first.")
    return x, np.asarray(y, np.int64)


def train_tabular(kind: str, dataset, seed: int = 0, test_size: float = 0.25, **params) -> TabularModel:
    """Fit ``StandardScaler -> kind`` on a seeded stratified split of a table dataset.

    Rows whose label is -1 (no in-distribution class) are left out of both splits. The held-out
    accuracy goes to ``card["test_accuracy"]``. ``params`` override :func:`tabular_defaults`.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    _check_kind(kind)
    if not 0.0 < float(test_size) < 1.0:
        raise ModelError(f"test_size must be a fraction between 0 and 1, got {test_size}.")
    x, y = _table_xy(dataset, "scikit-learn model")
    num_classes = len(dataset.class_names)
    rows = np.flatnonzero((y >= 0) & (y < num_classes))
    if len(rows) == 0:
        raise ModelError(f"The table '{dataset.name}' has no rows with a label in 0..{num_classes - 1}.")
    counts = np.bincount(y[rows], minlength=num_classes)
    present = np.flatnonzero(counts)
    if len(present) < 2:
        raise ModelError(f"Training needs at least two classes; '{dataset.name}' has only {len(present)}.")
    if counts[present].min() < 2:
        few = [dataset.class_names[c] for c in present if counts[c] < 2]
        raise ModelError(f"A stratified split needs at least 2 rows per class; too few rows for: {', '.join(few)}.")
    n_test = int(np.ceil(float(test_size) * len(rows)))
    if n_test < len(present) or len(rows) - n_test < len(present):
        raise ModelError(f"{len(rows)} rows are too few to hold out {test_size:.0%} with every one of the "
                         f"{len(present)} classes on both sides; use a larger table or another test_size.")
    train_idx, test_idx = train_test_split(rows, test_size=float(test_size), stratify=y[rows], random_state=int(seed))
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)

    estimator = _estimator(kind, int(seed), dict(params))
    pipeline = Pipeline([("scale", StandardScaler()), ("model", estimator)])
    with warnings.catch_warnings(record=True) as caught, _small_data_threads(len(train_idx)):
        warnings.simplefilter("always", ConvergenceWarning)
        try:
            pipeline.fit(x[train_idx], y[train_idx])
        except ValueError as e:
            raise ModelError(f"Fitting {kind} failed: {e}") from e
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)

    card = {
        "name": f"{kind} on {dataset.name}",
        "kind": kind,
        "class_names": list(map(str, dataset.class_names)),
        "feature_names": list(map(str, dataset.feature_names)),
        "label": dataset.label,
        "data": dataset.name,
        "data_fingerprint": dataset.fingerprint(),
        "seed": int(seed),
        "test_size": float(test_size),
        "params": {k: v for k, v in estimator.get_params().items() if k in {**tabular_defaults(kind), **params}},
        "train_index": train_idx.tolist(),
        "test_index": test_idx.tolist(),
        "converged": converged,
        "test_accuracy": None,
        "source": f"scikit-learn {type(estimator).__name__} trained on '{dataset.name}' (seed {int(seed)})",
    }
    model = TabularModel(pipeline=pipeline, card=card)
    with _small_data_threads(len(rows)):
        card["train_accuracy"] = float((model.predict(x[train_idx]) == y[train_idx]).mean())
        card["test_accuracy"] = float((model.predict(x[test_idx]) == y[test_idx]).mean())
    return model


# --------------------------------------------------------------------------------------------
# ModelOutputs
# --------------------------------------------------------------------------------------------

def _binary_head(w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One logistic score s = z·w + b -> symmetric 2-class head with logits [-s/2, s/2]."""
    w = np.asarray(w, np.float64).reshape(-1)
    b = float(np.asarray(b, np.float64).reshape(-1)[0])
    return np.stack([-w / 2, w / 2]), np.array([-b / 2, b / 2])


def _mlp_hidden(mlp, z: np.ndarray) -> np.ndarray:
    """Activations of the MLP's last hidden layer (sklearn's forward pass up to the output layer)."""
    from sklearn.neural_network._base import ACTIVATIONS

    h = z
    for w, b in zip(mlp.coefs_[:-1], mlp.intercepts_[:-1]):
        h = h @ w + b
        ACTIVATIONS[mlp.activation](h)  # in place
    return h


def _head_into_slots(model: TabularModel, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the head for the estimator's classes_ -> rows for all C classes (absent classes: -inf-ish bias)."""
    classes = np.asarray(model.estimator.classes_)
    c = len(model.class_names)
    if len(classes) == c and np.array_equal(classes, np.arange(c)):
        return w, b
    full_w = np.zeros((c, w.shape[1]))
    full_b = np.full(c, np.log(_PROBA_FLOOR))
    full_w[classes], full_b[classes] = w, b
    return full_w, full_b


def tabular_outputs(model: TabularModel, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """logits [N,C], features [N,D], head_weight [C,D] or None, head_bias [C] or None (float64)."""
    z = model.scaler.transform(np.asarray(x, np.float64))
    est = model.estimator
    kind = model.kind
    if kind == "logistic-regression":
        w, b = np.asarray(est.coef_, np.float64), np.asarray(est.intercept_, np.float64)
        if w.shape[0] == 1:
            w, b = _binary_head(w, b)
        w, b = _head_into_slots(model, w, b)
        return z @ w.T + b, z, w, b
    if kind == "mlp":
        h = _mlp_hidden(est, z)
        w, b = np.asarray(est.coefs_[-1], np.float64).T, np.asarray(est.intercepts_[-1], np.float64)
        if w.shape[0] == 1:
            w, b = _binary_head(w, b)
        w, b = _head_into_slots(model, w, b)
        return h @ w.T + b, h, w, b
    proba = _full_proba(model, est.predict_proba(z))
    return np.log(np.clip(proba, _PROBA_FLOOR, None)), z, None, None


def _dataset_labels(model: TabularModel, dataset) -> np.ndarray | None:
    """The dataset's labels in the model's class indexing (by class name; unknown names -> -1)."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        return None
    labels = np.asarray(labels, np.int64)
    names = list(map(str, dataset.class_names))
    if names == model.class_names:
        return labels
    index = {name: i for i, name in enumerate(model.class_names)}
    lookup = np.array([index.get(name, -1) for name in names] + [-1], np.int64)
    return np.where((labels >= 0) & (labels < len(names)), lookup[np.clip(labels, -1, len(names))], -1)


def run_tabular(model: TabularModel, dataset, progress: Callable[[float, str], None] | None = None,
                batch_size: int = 8192):
    """Run a fitted :class:`TabularModel` over a table dataset -> :class:`core.extract.ModelOutputs`.

    The dataset must have every feature column the model was trained on (extra columns are
    ignored and listed in ``meta["ignored_columns"]``); columns are matched by name.
    """

    if not isinstance(model, TabularModel):
        raise ExtractError(f"Expected a torch model or a TabularModel from train_tabular, got {type(model).__name__}.")
    if getattr(dataset, "frame", None) is None:
        raise ExtractError(f"The {model.kind} model '{model.card.get('name')}' needs a table, "
                           f"but dataset '{dataset.name}' is a {dataset.kind} dataset.")
    have = [str(c) for c in dataset.feature_names]
    missing = [c for c in model.feature_names if c not in have]
    if missing:
        show = ", ".join(missing[:8]) + (f" … (+{len(missing) - 8} more)" if len(missing) > 8 else "")
        raise ExtractError(f"The table '{dataset.name}' lacks {len(missing)} feature column(s) the model "
                           f"'{model.card.get('name')}' was trained on: {show}.")
    extra = [c for c in have if c not in model.feature_names]
    columns = {str(c): c for c in dataset.feature_names}
    try:
        x = dataset.frame[[columns[c] for c in model.feature_names]].to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as e:
        raise ExtractError(f"The feature columns of '{dataset.name}' must be numeric: {e}") from e
    if not np.isfinite(x).all():
        raise ExtractError(f"The table '{dataset.name}' has missing or infinite feature values.")

    n = len(x)
    if n == 0:
        raise ExtractError(f"The table '{dataset.name}' has no rows.")
    logits, feats = [], []
    w = b = None
    for start in range(0, n, batch_size):
        with _small_data_threads(min(n, batch_size)):
            lg, f, w, b = tabular_outputs(model, x[start:start + batch_size])
        logits.append(lg)
        feats.append(f)
        if progress is not None:
            done = min(n, start + batch_size)
            progress(done / n, f"{done}/{n} rows")
    logits_arr = np.concatenate(logits).astype(np.float32)
    feats_arr = np.concatenate(feats).astype(np.float32)
    return ModelOutputs(
        logits=logits_arr, features=feats_arr, labels=_dataset_labels(model, dataset),
        preds=logits_arr.argmax(1), head_weight=w, head_bias=b, class_names=model.class_names,
        meta={"model": model.card.get("name", model.kind), "data": dataset.name, "kind": model.kind,
              "ignored_columns": extra},
    )


def _register_runner() -> None:
    from core.extract import register_runner

    register_runner(lambda model: isinstance(model, TabularModel), run_tabular)


_register_runner()
