"""core.data.table_ood: ADBench-style synthetic OOD rows for tables."""
import io

import numpy as np
import pandas as pd
import pytest

import core.data as data
from core.data import DataError, Dataset
from core.data.table_ood import table_outliers


def correlated_table(n=4000, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    a = rng.normal(0, 1, n) + 3 * y
    b = 2 * a + rng.normal(0, 0.1, n)  # strongly dependent on a
    c = rng.uniform(-1, 5, n)
    frame = pd.DataFrame({"a": a, "b": b, "c": c, "target": y})
    return Dataset(name="toy", kind="table", labels=y.astype(np.int64), class_names=["0", "1"], frame=frame, label="target")


def test_global_rows_fill_the_widened_range():
    ref = correlated_table()
    x, _ = ref.table_arrays()
    out = table_outliers(ref, "global", n=20000, seed=1)
    z, labels = out.table_arrays()
    assert out.feature_names == ["a", "b", "c"] and (labels == -1).all() and out.class_names == []
    lo, hi = x.min(0), x.max(0)
    mid, half = (lo + hi) / 2, (hi - lo) / 2 * 1.1
    assert (z >= mid - half).all() and (z <= mid + half).all()
    assert (z.min(0) < lo).all() and (z.max(0) > hi).all()  # 5% of each side lies outside the data
    # uniform: the mean is the middle of the range
    np.testing.assert_allclose(z.mean(0), mid, atol=0.02 * (hi - lo).max())


def test_dependency_rows_keep_marginals_and_break_correlations():
    ref = correlated_table()
    x, _ = ref.table_arrays()
    z, _ = table_outliers(ref, "dependency", seed=2).table_arrays()
    assert len(z) == len(x)
    for j in range(x.shape[1]):
        assert np.isin(z[:, j], x[:, j]).all()  # every value is one of the column's own values
    assert np.corrcoef(x[:, 0], x[:, 1])[0, 1] > 0.99
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 0.1


def test_local_rows_have_alpha_times_the_class_covariance():
    ref = correlated_table(n=6000)
    x, y = ref.table_arrays()
    out = table_outliers(ref, "local", n=60000, seed=3, alpha=5.0)
    z, _ = out.table_arrays()
    # the mixture has the classes' proportions and means, and each class's spread is scaled by 5
    np.testing.assert_allclose(z.mean(0), x.mean(0), atol=0.1)
    within = sum((y == c).mean() * np.cov(x[y == c], rowvar=False, bias=True) for c in (0, 1))
    between = np.cov(np.stack([x[y == c].mean(0) for c in (0, 1)]).repeat([int((y == 0).sum()), int((y == 1).sum())], 0),
                     rowvar=False, bias=True)
    np.testing.assert_allclose(np.cov(z, rowvar=False), 5 * within + between, rtol=0.05, atol=0.2)


def test_seeded_and_bad_input():
    ref = correlated_table(200)
    a = table_outliers(ref, "local", seed=4).frame
    pd.testing.assert_frame_equal(a, table_outliers(ref, "local", seed=4).frame)
    assert not a.equals(table_outliers(ref, "local", seed=5).frame)
    with pytest.raises(DataError, match="Unknown table OOD kind"):
        table_outliers(ref, "nope")
    with pytest.raises(DataError, match="need a table"):
        table_outliers(data.load("noise", n=4), "global")


def test_builtin_table_outliers_run_through_a_tabular_model():
    from core.models.tabular import run_tabular, train_tabular

    train = data.load("wine", split="train")
    model = train_tabular("logistic-regression", train, seed=0)
    out = run_tabular(model, table_outliers(train, "global", seed=0))
    assert len(out) == len(train) and np.isfinite(out.logits).all()


def test_unlabelled_table_upload():
    csv = pd.DataFrame({"x": [1.0, 2.0, np.nan], "colour": ["red", "blue", "red"]}).to_csv(index=False).encode()
    ds = data.load_table(io.BytesIO(csv), "ood.csv", unlabelled=True)
    assert (ds.labels == -1).all() and ds.class_names == [] and ds.label is None
    assert ds.feature_names == ["x", "colour=blue", "colour=red"]
    np.testing.assert_allclose(ds.table_arrays()[0][:, 0], [1.0, 2.0, 1.5])
    with pytest.raises(DataError, match="Choose the label column"):
        data.load_table(io.BytesIO(csv), "ood.csv")
    assert (data.load_upload(csv, "ood.csv", unlabelled=True).labels == -1).all()
