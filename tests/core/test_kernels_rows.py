"""core.kernels: row reductions and softmax statistics against NumPy/SciPy in float64."""
import numpy as np
import pytest
import scipy.special

from core.kernels.rows import centred_sq_norms, column_means, row_max
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
    got = row_max(x)
    assert got.dtype == np.float64 and np.array_equal(got, ref.max(1))  # exact, in either precision
    assert row_max(np.zeros((0, 3), dtype)).shape == (0,)


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


def test_float32_logsumexp_kernel():
    from core.kernels.softmax import logsumexp_float32

    rng = np.random.default_rng(2)
    f = rng.normal(0, 8, (3000, 13)).astype(np.float32)
    f[0] = 0.0  # all tied
    f[1, 0], f[1, 1:] = 1e4, -1e4  # huge margin: the other terms underflow to 0
    f[2] = rng.normal(0, 1, 13).astype(np.float32) - 3e3  # large negative offset
    ref = scipy.special.logsumexp(f.astype(np.float64), axis=1)
    got = logsumexp_float32(f)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(logsumexp_float32(f, 2.5), scipy.special.logsumexp(f.astype(np.float64) / 2.5, axis=1),
                               rtol=1e-6, atol=1e-6)
    assert got[0] == pytest.approx(np.log(13), rel=1e-7)
    assert logsumexp_float32(np.zeros((0, 3), np.float32)).shape == (0,)


def test_percentile_exact_matches_numpy():
    from core.kernels.rows import percentile_exact

    rng = np.random.default_rng(3)
    relu = np.maximum(rng.normal(0, 1, (400, 300)), 0)  # 120k values, half of them tied at 0
    for q in (0.0, 10.0, 50.0, 90.0, 97.3, 99.99, 100.0):
        assert percentile_exact(relu, q) == pytest.approx(float(np.percentile(relu, q)), rel=1e-15, abs=0)
    outlier = rng.normal(0, 1, 200_000)
    outlier[17] = 1e12  # one huge value: nearly everything falls in the first bin, still exact
    assert percentile_exact(outlier, 90.0) == pytest.approx(float(np.percentile(outlier, 90.0)), rel=1e-15)
    f32 = relu.astype(np.float32)  # float32 input: interpolated in float64 (NumPy interpolates in float32)
    assert percentile_exact(f32, 90.0) == pytest.approx(float(np.percentile(f32.astype(np.float64), 90.0)), rel=1e-15)
    assert percentile_exact(np.full(100_000, 2.5), 30.0) == 2.5
    assert percentile_exact(np.arange(10.0), 45.0) == pytest.approx(np.percentile(np.arange(10.0), 45.0))
    with pytest.raises(ValueError):
        percentile_exact(np.zeros(0), 50.0)
