"""core.kernels: row reductions and softmax statistics against NumPy/SciPy in float64."""
import numpy as np
import pytest
import scipy.special

from core.kernels.rows import centred_sq_norms, column_means
from core.kernels.softmax import row_softmax_score, tempered_moments


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_reductions_accumulate_in_float64(dtype):
    x = (np.random.default_rng(0).normal(1e3, 1.0, (3000, 37))).astype(dtype)  # a large offset: float32 sums would drift
    ref = x.astype(np.float64)
    np.testing.assert_allclose(column_means(x), ref.mean(0), rtol=1e-13)
    c = ref.mean(0)
    np.testing.assert_allclose(centred_sq_norms(x, c), ((ref - c) ** 2).sum(1), rtol=1e-10)
    assert np.isnan(column_means(np.zeros((0, 3), dtype))).all()
    assert centred_sq_norms(np.zeros((0, 3), dtype), np.zeros(3)).shape == (0,)


def test_row_softmax_scores_and_tempered_moments():
    f = np.random.default_rng(1).normal(0, 4, (500, 9))
    p = scipy.special.softmax(f / 1.7, axis=1)
    np.testing.assert_allclose(row_softmax_score(f, "msp", 1.7), p.max(1), rtol=1e-13)
    np.testing.assert_allclose(row_softmax_score(f, "energy", 1.7), scipy.special.logsumexp(f / 1.7, axis=1), rtol=1e-13)
    np.testing.assert_allclose(row_softmax_score(f, "neg_entropy", 1.7), (p * np.log(p)).sum(1), rtol=1e-11)
    assert row_softmax_score(np.zeros((0, 4)), "msp").shape == (0,)
    beta = 0.6
    q = scipy.special.softmax(beta * f, axis=1)
    mean = (q * f).sum(1)
    var = (q * (f - mean[:, None]) ** 2).sum(1)
    got = tempered_moments(f, beta)
    np.testing.assert_allclose(got, (mean.mean(), var.mean()), rtol=1e-11)
