"""Bad input gets a ShiftError that says what was expected, what was got and what to do."""
import numpy as np
import pandas as pd
import pytest
from shift_worlds import GRAPH, predict_proba, sample

from core import shift
from core.errors import UserError
from core.shift import ShiftError


@pytest.fixture(scope="module")
def frames():
    return sample(300, 1), sample(300, 2, prior=0.7)


def run(source, target, **kw):
    args = dict(predict_proba=predict_proba, label="y", graph=GRAPH)
    args.update(kw)
    return shift.explain_performance_change(source, target, **args)


def test_error_type():
    assert issubclass(ShiftError, UserError)


def test_different_columns(frames):
    s, t = frames
    with pytest.raises(ShiftError, match=r"same columns; only in the source: z; only in the target: w"):
        run(s, t.rename(columns={"z": "w"}))


def test_label_missing_in_the_target(frames):
    s, t = frames
    with pytest.raises(ShiftError, match=r"label column 'y' is missing from the target"):
        run(s, t.drop(columns="y"))


def test_cyclic_graph(frames):
    with pytest.raises(ShiftError, match=r"cycle: .*x.*→.*z|cycle: .*z.*→.*x"):
        run(*frames, graph={"z": ["x"], "y": [], "x": ["y", "z"]})


def test_group_naming_unknown_columns(frames):
    with pytest.raises(ShiftError, match=r"group of node 'xz' names column\(s\) 'q'"):
        run(*frames, graph={"y": [], "xz": ["y"]}, groups={"xz": ["x", "q", "z"]})


def test_too_few_samples(frames):
    s, t = frames
    with pytest.raises(ShiftError, match=r"Too few samples .* got 300 in the source and 12 in the target"):
        run(s, t.iloc[:12])


def test_single_class_target(frames):
    s, t = frames
    with pytest.raises(ShiftError, match=r"target holds a single class \(1\).*at least two classes"):
        run(s, t[t.y == 1])


def test_label_outside_the_graph_and_bad_probabilities(frames):
    with pytest.raises(ShiftError, match=r"label 'y' belongs to no node"):
        run(*frames, graph={"z": [], "x": ["z"]})
    with pytest.raises(ShiftError, match="not logits"):
        run(*frames, predict_proba=lambda f: np.c_[f["x"].to_numpy(), -f["x"].to_numpy()])
    with pytest.raises(ShiftError, match=r"shape \[N, C\]"):
        run(*frames, predict_proba=lambda f: np.ones(len(f)))


def test_metric_that_does_not_apply(frames):
    s, t = frames
    three = lambda f: np.full((len(f), 3), 1 / 3)  # noqa: E731
    with pytest.raises(ShiftError, match="AUROC needs a task with exactly two classes; this model has 3 classes"):
        run(s, t, predict_proba=three, metric="auroc")
    with pytest.raises(ShiftError, match="Unknown shift metric"):
        run(s, t, metric="f1")


def test_unknown_settings_and_out_of_range_values(frames):
    with pytest.raises(ShiftError, match=r"no parameter\(s\) 'foldz'"):
        run(*frames, foldz=3)
    with pytest.raises(ShiftError, match=r"'folds' must be in \[2, 10\]"):
        run(*frames, folds=1)
    with pytest.raises(ShiftError, match="'classifier' must be one of"):
        run(*frames, classifier="svm")


def test_string_labels_need_classes_when_they_do_not_match_the_columns(frames):
    s, t = frames
    s2, t2 = s.assign(y=np.where(s.y == 1, "yes", "no")), t.assign(y=np.where(t.y == 1, "yes", "no"))
    res = run(s2, t2, classifier="logistic")  # sorted label values name the columns: "no", "yes"
    assert np.isfinite(res.total)
    three = lambda f: np.full((len(f), 3), 1 / 3)  # noqa: E731
    with pytest.raises(ShiftError, match="pass classes="):
        run(s2, t2, predict_proba=three)


def test_missing_values(frames):
    s, t = frames
    t = t.copy()
    t.loc[3, "x"] = np.nan
    with pytest.raises(ShiftError, match="Column 'x' has 1 missing value"):
        run(s, t)


def test_not_dataframes(frames):
    with pytest.raises(ShiftError, match="must be a pandas DataFrame"):
        run(np.zeros((3, 3)), frames[1])
    with pytest.raises(ShiftError, match="predict_proba must be a function"):
        run(*frames, predict_proba=pd.DataFrame())
