"""Every detector against an independent computation of its formula, and its defining property."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
from ood_worlds import ClusterWorld, make_outputs
from scipy.spatial.distance import cdist, mahalanobis

from core import ood
from core.extract import ModelOutputs


def logits_only(logits, labels=None, dtype=np.float32) -> ModelOutputs:
    logits = np.asarray(logits, dtype)
    return ModelOutputs(logits=logits, features=None, labels=labels, preds=logits.argmax(1))


@pytest.fixture(scope="module")
def small(world):
    """A small fit/score pair with features, labels and a head (float32 like real outputs)."""
    return world.sample(120, seed=11), world.sample(40, seed=12)


# ---------------------------------------------------------------------------- logit-based
def test_softmax_scores_in_float64_are_exact(rng):
    from core.ood._stats import energy, generalized_entropy_score, max_softmax, neg_entropy

    f = rng.normal(0, 3, (50, 7))
    p = scipy.special.softmax(f, axis=1)
    np.testing.assert_allclose(max_softmax(f), p.max(1), rtol=1e-13)
    np.testing.assert_allclose(max_softmax(f, 0.5), scipy.special.softmax(f / 0.5, axis=1).max(1), rtol=1e-13)
    np.testing.assert_allclose(energy(f), scipy.special.logsumexp(f, axis=1), rtol=1e-13)
    np.testing.assert_allclose(energy(f, 3.0), 3.0 * scipy.special.logsumexp(f / 3.0, axis=1), rtol=1e-13)
    np.testing.assert_allclose(neg_entropy(f), -scipy.stats.entropy(p, axis=1), rtol=1e-12)
    top = np.sort(p, 1)[:, -3:]
    np.testing.assert_allclose(generalized_entropy_score(f, 0.1, 3), -(top ** 0.1 * (1 - top) ** 0.1).sum(1), rtol=1e-12)


def test_msp_maxlogit_energy_entropy(rng):
    # ModelOutputs hold float32 logits; they are scored in float32 relative to the row max (~1e-7 error)
    rtol = 1e-6
    f = rng.normal(0, 3, (50, 7))
    out = logits_only(f)
    f = out.logits.astype(np.float64)
    p = scipy.special.softmax(f, axis=1)
    for name in ("msp", "maxlogit", "energy", "entropy"):
        assert ood.create(name).score(out).dtype == np.float64
    np.testing.assert_allclose(ood.create("msp").score(out), p.max(1), rtol=rtol)
    np.testing.assert_array_equal(ood.create("maxlogit").score(out), f.max(1))
    np.testing.assert_allclose(ood.create("energy").score(out), scipy.special.logsumexp(f, axis=1), rtol=rtol)
    np.testing.assert_allclose(ood.create("energy", temperature=2.0).score(out),
                               2.0 * scipy.special.logsumexp(f / 2.0, axis=1), rtol=rtol)
    np.testing.assert_allclose(ood.create("entropy").score(out), -scipy.stats.entropy(p, axis=1), rtol=rtol * 100)


def test_confident_float32_logits_keep_their_order():
    """A float32 softmax rounds p_max to 1 once the margin passes ~17; the scores here keep the ranking
    (and their value to ~1e-7 relative) far beyond that, as float64 scipy does."""
    margins = np.array([18.0, 22.0, 26.0, 30.0, 34.0])
    f = np.zeros((len(margins), 4))
    f[:, 0] = margins
    out = logits_only(f)
    assert len(np.unique(torch.softmax(torch.from_numpy(out.logits), 1).amax(1).numpy())) == 1  # float32 saturates
    msp, ent = ood.create("msp").score(out), ood.create("entropy").score(out)
    assert (np.diff(msp) > 0).all() and (np.diff(ent) > 0).all()
    np.testing.assert_allclose(msp, 1.0 / (1.0 + 3.0 * np.exp(-margins)), rtol=1e-13)
    e = np.exp(-margins)
    s3 = 3 * e  # Σ_{c≠argmax} exp(f_c − max f)
    exact_neg_entropy = -np.log1p(s3) / (1 + s3) + 3 * e / (1 + s3) * (-margins - np.log1p(s3))
    np.testing.assert_allclose(ent, exact_neg_entropy, rtol=1e-6)  # scipy's own value is off by 1e-3 at the end
    gen = ood.create("gen").score(out)
    g = 0.1
    q = 3 * np.exp(-margins) / (1 + 3 * np.exp(-margins))  # 1 − p_max, exactly
    expected = -((1 - q) ** g * q ** g + 3 * (q / 3) ** g * (1 - q / 3) ** g)
    np.testing.assert_allclose(gen, expected, rtol=1e-5)
    assert (np.diff(gen) > 0).all()


def test_gen_hand_computed():
    p = np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3]])
    out = logits_only(np.log(p))
    g = 0.1
    expected = -((p ** g) * ((1 - p) ** g)).sum(1)
    np.testing.assert_allclose(ood.create("gen").score(out), expected, rtol=1e-6)
    # top_m = 1 keeps only the largest probability
    np.testing.assert_allclose(ood.create("gen", top_m=1).score(out), -(p.max(1) ** g * (1 - p.max(1)) ** g), rtol=1e-6)


def test_klm_matches_definition(rng):
    fit = logits_only(rng.normal(0, 2, (300, 4)))
    test = logits_only(rng.normal(0, 2, (30, 4)))
    p_fit = scipy.special.softmax(fit.logits.astype(float), axis=1)
    pred = p_fit.argmax(1)
    templates = [p_fit[pred == c].mean(0) for c in range(4) if (pred == c).any()]
    p = scipy.special.softmax(test.logits.astype(float), axis=1)
    expected = -np.array([min(scipy.stats.entropy(row, d) for d in templates) for row in p])
    np.testing.assert_allclose(ood.create("klm").fit(fit).score(test), expected, rtol=1e-8, atol=1e-12)


def test_klm_kernels_over_many_blocks_with_ties_and_unpredicted_classes(rng):
    from core.kernels.softmax import min_kl_to_templates, softmax_class_means

    f = rng.normal(0, 4, (2100, 6)).astype(np.float32)  # several row blocks
    f[:, 5] -= 30.0  # class 5 is never predicted: no template
    f[:40, 1] = f[:40, 0] = f[:40].max(1) + 1.0  # exact ties between classes 0 and 1: the first wins
    p = scipy.special.softmax(f.astype(np.float64), axis=1)
    pred = f.argmax(1)
    means, classes, got_pred = softmax_class_means(f)
    np.testing.assert_array_equal(got_pred, pred)
    assert list(classes) == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(means, [p[pred == c].mean(0) for c in classes], rtol=1e-12)
    log_t = np.log(means)
    q = rng.normal(0, 6, (700, 6)).astype(np.float32)
    pq = scipy.special.softmax(q.astype(np.float64), axis=1)
    expected = np.array([min(scipy.stats.entropy(row, t) for t in means) for row in pq])
    np.testing.assert_allclose(min_kl_to_templates(q, log_t), expected, rtol=1e-9, atol=1e-13)


def test_tempscale_recovers_a_known_temperature(rng):
    g = rng.normal(0, 2, (6000, 5))
    y = np.array([rng.choice(5, p=row) for row in scipy.special.softmax(g, axis=1)])
    t_true = 2.5
    out = logits_only(g * t_true, labels=y)  # softmax(f / 2.5) is the true distribution
    det = ood.create("tempscale").fit(out)
    assert det.info["temperature"] == pytest.approx(t_true, rel=0.06)
    np.testing.assert_allclose(det.score(out), scipy.special.softmax(out.logits / det.info["temperature"], 1).max(1),
                               rtol=1e-6)
    fixed = ood.create("tempscale", temperature=4.0).fit(logits_only(g))  # no labels needed when fixed
    assert fixed.info["temperature"] == 4.0


# ---------------------------------------------------------------------------- feature-based
def _tied_precision(x, y):
    xc = np.concatenate([x[y == c] - x[y == c].mean(0) for c in np.unique(y)])
    return np.linalg.pinv(np.cov(xc, rowvar=False, bias=True)), {c: x[y == c].mean(0) for c in np.unique(y)}


def test_mahalanobis_equals_scipy(small):
    fit, test = small
    x, y = fit.features.astype(float), fit.labels
    vi, means = _tied_precision(x, y)
    expected = np.array([-min(mahalanobis(z, m, vi) ** 2 for m in means.values()) for z in test.features.astype(float)])
    np.testing.assert_allclose(ood.create("mahalanobis").fit(fit).score(test), expected, rtol=1e-8)


def test_rmds_equals_definition(small):
    fit, test = small
    x, y = fit.features.astype(float), fit.labels
    vi, means = _tied_precision(x, y)
    vi0 = np.linalg.pinv(np.cov(x, rowvar=False, bias=True))
    mu0 = x.mean(0)
    expected = np.array([-min(mahalanobis(z, m, vi) ** 2 - mahalanobis(z, mu0, vi0) ** 2 for m in means.values())
                         for z in test.features.astype(float)])
    np.testing.assert_allclose(ood.create("rmds").fit(fit).score(test), expected, rtol=1e-7, atol=1e-7)


def test_knn_equals_brute_force_kth_neighbour(small):
    fit, test = small
    norm = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    d = np.sort(cdist(norm(test.features.astype(float)), norm(fit.features.astype(float))), axis=1)
    for k in (1, 7, 120):
        np.testing.assert_allclose(ood.create("knn", k=k).fit(fit).score(test), -d[:, k - 1], atol=2e-5)
    det = ood.create("knn", k=500).fit(fit)  # k is capped at the bank size
    assert det.info["k"] == 120
    np.testing.assert_allclose(det.score(test), -d[:, -1], atol=2e-5)


def test_knn_bank_fraction_keeps_a_seeded_subset_and_scores_against_it(small):
    fit, test = small
    norm = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    q, bank_all = norm(test.features.astype(float)), norm(fit.features.astype(float))
    det = ood.create("knn", k=3, bank_fraction=0.25, seed=4).fit(fit)
    assert det.info["bank_size"] == 30  # ceil(0.25 · 120)
    # the score is the distance to the 3rd nearest of *some* 30 fit samples: find which from the bank itself
    bank = det.bank_t_.T.astype(float)
    member = cdist(bank, bank_all).argmin(1)
    assert len(set(member)) == 30 and np.allclose(cdist(bank, bank_all).min(1), 0, atol=1e-6)
    expected = -np.sort(cdist(q, bank_all[member]), axis=1)[:, 2]
    np.testing.assert_allclose(det.score(test), expected, atol=2e-5)
    # the same seed gives the same bank; another seed another one
    again = ood.create("knn", k=3, bank_fraction=0.25, seed=4).fit(fit)
    other = ood.create("knn", k=3, bank_fraction=0.25, seed=5).fit(fit)
    np.testing.assert_array_equal(again.bank_t_, det.bank_t_)
    assert not np.array_equal(other.bank_t_, det.bank_t_)


def test_vim_and_residual_match_an_independent_numpy_computation(small):
    fit, test = small
    w, b = fit.head_weight.astype(float), fit.head_bias.astype(float)
    x, z = fit.features.astype(float), test.features.astype(float)
    dim = 5
    u = -np.linalg.pinv(w) @ b
    evals, evecs = np.linalg.eig((x - u).T @ (x - u) / len(x))  # as the ViM code: assume_centered
    ns = np.real(evecs[:, np.argsort(-np.real(evals))[dim:]])
    vlogit_fit = np.linalg.norm((x - u) @ ns, axis=1)
    alpha = fit.logits.astype(float).max(1).mean() / vlogit_fit.mean()
    vlogit = np.linalg.norm((z - u) @ ns, axis=1)
    expected = scipy.special.logsumexp(test.logits.astype(float), axis=1) - alpha * vlogit
    det = ood.create("vim", dim=dim).fit(fit)
    # covariance and eigenvectors are float64; the projection of the float32 features runs in float32 (~1e-6)
    assert det.info["alpha"] == pytest.approx(alpha, rel=1e-6)
    np.testing.assert_allclose(det.score(test), expected, rtol=1e-6, atol=1e-6 * np.abs(alpha * vlogit).max())
    np.testing.assert_allclose(ood.create("residual", dim=dim).fit(fit).score(test), -vlogit, rtol=1e-5)


def test_centred_gram_in_row_blocks_equals_the_float64_product(rng):
    from core.ood._stats import centred_gram

    # float32 rows far from the origin: the centring must happen in float64, before the products
    x = (1e3 + rng.normal(size=(1037, 300))).astype(np.float32)
    center = x.astype(np.float64).mean(0) + 0.25
    xc = x.astype(np.float64) - center
    expected = xc.T @ xc
    for chunk in (100, 1037, 4096):  # ragged last block, one block, a block larger than the data
        for workers in (1, 2, 3):  # worker threads summing interleaved blocks
            got = centred_gram(x, center, chunk=chunk, workers=workers)
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
            np.testing.assert_array_equal(got, got.T)
    # fixed blocks per worker: the same sums in the same order on every call
    np.testing.assert_array_equal(centred_gram(x, center, chunk=100, workers=2),
                                  centred_gram(x, center, chunk=100, workers=2))
    assert centred_gram(x[:0], center).shape == (300, 300)
    # one centre per group; rows of group −1 are left out
    which = rng.integers(-1, 4, size=len(x))
    centers = 1e3 + rng.normal(size=(4, 300))
    keep = which >= 0
    xg = x[keep].astype(np.float64) - centers[which[keep]]
    expected = xg.T @ xg
    for workers in (1, 2):
        got = centred_gram(x, centers, chunk=100, which=which, workers=workers)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())


def test_vim_residual_norm_is_the_same_in_any_row_blocks(small):
    fit, test = small
    det = ood.create("residual", dim=5).fit(fit)
    whole = det._residual_norm(test.features, chunk=len(test.features))
    np.testing.assert_allclose(det._residual_norm(test.features, chunk=7), whole, rtol=1e-6)


def test_vim_default_dimension_rule():
    from core.ood.feature import vim_principal_dim

    assert [vim_principal_dim(d) for d in (2048, 4096, 768, 1024, 512, 384, 128, 2)] == [1000, 1000, 512, 512, 256,
                                                                                         192, 64, 1]


def test_she_hand_computed():
    w = np.eye(2, dtype=np.float32)
    x_fit = np.array([[2, 0], [4, 0], [0, 3], [5, 1]], np.float32)  # the last one is misclassified (label 1)
    fit = make_outputs(x_fit, w, np.zeros(2, np.float32), labels=np.array([0, 0, 1, 1]))
    test = make_outputs(np.array([[1, 0], [0, 2]], np.float32), w, np.zeros(2, np.float32))
    # m_0 = mean of correct class-0 samples = (3, 0); m_1 = (0, 3)
    np.testing.assert_allclose(ood.create("she").fit(fit).score(test), [3.0, 6.0])


def test_nnguide_matches_definition(small):
    fit, test = small
    det = ood.create("nnguide", k=10, bank_fraction=1.0).fit(fit)
    norm = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    energy = lambda o: scipy.special.logsumexp(o.logits.astype(float), axis=1)  # noqa: E731
    bank = norm(fit.features.astype(float)) * energy(fit)[:, None]
    sims = np.sort(norm(test.features.astype(float)) @ bank.T, axis=1)[:, -10:]
    np.testing.assert_allclose(det.score(test), energy(test) * sims.mean(1), rtol=1e-5)


def test_fdbd_matches_definition(small):
    fit, test = small
    w = fit.head_weight.astype(float)
    f = test.logits.astype(float)
    mu = fit.features.astype(float).mean(0)
    expected = []
    for fi, zi in zip(f, test.features.astype(float)):
        c = fi.argmax()
        s = sum(abs(fi[c] - fi[k]) / np.linalg.norm(w[c] - w[k]) for k in range(len(fi)) if k != c)
        expected.append(s / np.linalg.norm(zi - mu))
    np.testing.assert_allclose(ood.create("fdbd").fit(fit).score(test), expected, rtol=1e-6)
    # the 'norm' option divides by ‖z‖ instead of the distance to the fit mean
    z = test.features.astype(float)
    by_norm = np.array(expected) * np.linalg.norm(z - mu, axis=1) / np.linalg.norm(z, axis=1)
    np.testing.assert_allclose(ood.create("fdbd", normalizer="norm").fit(fit).score(test), by_norm, rtol=1e-6)


def test_gradnorm_closed_form_equals_autograd(rng):
    c, d = 5, 8
    head = torch.nn.Linear(d, c).double()
    z = torch.from_numpy(np.abs(rng.normal(size=(6, d))))
    expected = []
    for zi in z:
        head.zero_grad()
        logp = torch.log_softmax(head(zi[None]), dim=1)
        kl = (torch.full((1, c), 1.0 / c) * (np.log(1.0 / c) - logp)).sum()  # KL(uniform ‖ softmax)
        kl.backward()
        expected.append(head.weight.grad.abs().sum().item())
    out = make_outputs(z.numpy().astype(np.float32), head.weight.detach().numpy().astype(np.float32),
                       head.bias.detach().numpy().astype(np.float32))
    np.testing.assert_allclose(ood.create("gradnorm").score(out), expected, rtol=1e-5)


# ---------------------------------------------------------------------------- activation shaping
def test_react_at_percentile_100_is_energy_on_the_fit_set(small):
    fit, _ = small
    got = ood.create("react", percentile=100).fit(fit).score(fit)
    np.testing.assert_allclose(got, ood.create("energy").score(fit), rtol=1e-6)
    det = ood.create("react").fit(fit)
    assert det.info["threshold"] == pytest.approx(np.percentile(fit.features, 90))
    clipped = np.minimum(fit.features.astype(float), det.info["threshold"])
    expected = scipy.special.logsumexp(clipped @ fit.head_weight.T.astype(float) + fit.head_bias, axis=1)
    np.testing.assert_allclose(det.score(fit), expected, rtol=1e-6)


def test_ash_and_scale_shapes(rng):
    z = np.abs(rng.normal(size=(20, 50)))
    k = 50 - round(50 * 0.9)  # 5 kept units
    p = ood.shape_features(z, "ash-p", 90)
    assert ((p != 0).sum(1) == k).all()
    np.testing.assert_array_equal(np.sort(p, 1)[:, -k:], np.sort(z, 1)[:, -k:])  # the largest k survive as they are
    bb = ood.shape_features(z, "ash-b", 90)
    np.testing.assert_allclose(bb.sum(1), z.sum(1))  # ASH-B preserves the sum
    assert ((bb != 0).sum(1) == k).all()
    s = ood.shape_features(z, "ash-s", 90)
    np.testing.assert_allclose(s, p * np.exp(z.sum(1) / p.sum(1))[:, None])
    sc = ood.shape_features(z, "scale", 85)
    top = np.sort(z, 1)[:, -(50 - round(50 * 0.85)):].sum(1)
    np.testing.assert_allclose(sc, z * np.exp(z.sum(1) / top)[:, None])
    # at p = 0 nothing is pruned: ASH-P is the identity, ASH-S and SCALE multiply by e
    np.testing.assert_allclose(ood.shape_features(z, "ash-p", 0), z)
    np.testing.assert_allclose(ood.shape_features(z, "ash-s", 0), z * np.e)
    np.testing.assert_allclose(ood.shape_features(z, "scale", 0), z * np.e)


@pytest.mark.parametrize("method", ["ash-p", "ash-b", "ash-s"])
def test_fused_shaping_kernel_equals_the_dense_definition_with_ties(rng, method):
    """ReLU features tie at 0 (and here also at 1): the fused kernel keeps exactly k units per row, breaking
    ties by the lower column index like the dense reference, so even ASH-B (which gives every kept unit
    s₁/k and so depends on *which* zeros are kept) agrees to rounding."""
    from core.kernels.shaping import shaped_logits

    z = np.maximum(rng.normal(0, 1, (300, 40)), 0).round(0).astype(np.float32)  # many exact ties
    z[:5] = 0.0  # all-zero rows
    w = rng.normal(0, 1, (6, 40))
    for pct in (10.0, 90.0, 97.5):
        k = 40 - int(np.round(40 * pct / 100))
        dense = ood.shape_features(z, method, pct) @ w.T
        assert ((ood.shape_features(z, "ash-p", pct) != 0).sum(1) <= k).all()
        np.testing.assert_allclose(shaped_logits(z, w, k, method), dense, rtol=1e-12, atol=1e-12)


def test_top_k_sums_equal_sorted_sums_with_ties(rng):
    from core.kernels.shaping import top_k_sums

    z = np.maximum(rng.normal(0, 1, (500, 64)), 0).round(1)  # ReLU-like, many exact ties
    z[:3] = 0.0
    z[3] = 1.5  # a constant row
    for dtype in (np.float32, np.float64):
        zz = z.astype(dtype)
        for k in (1, 5, 10, 63, 64):
            s1, s2 = top_k_sums(zz, k)
            np.testing.assert_allclose(s1, zz.sum(1, dtype=np.float64), rtol=1e-12)
            np.testing.assert_allclose(s2, np.sort(zz.astype(np.float64), 1)[:, -k:].sum(1), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError):
        top_k_sums(z, 0)


def test_shaping_detectors_score_the_energy_of_shaped_features(small):
    _, test = small
    w, b = test.head_weight.astype(float), test.head_bias.astype(float)
    for name, method, pct in [("ash-p", "ash-p", 90), ("ash-b", "ash-b", 90), ("ash-s", "ash-s", 90),
                              ("scale", "scale", 85)]:
        expected = scipy.special.logsumexp(ood.shape_features(test.features, method, pct) @ w.T + b, axis=1)
        np.testing.assert_allclose(ood.create(name).score(test), expected, rtol=1e-10)
    # ASH-P with nothing pruned is the plain energy
    np.testing.assert_allclose(ood.create("ash-p", percentile=0).score(test), ood.create("energy").score(test),
                               rtol=1e-6)


def test_dice_masks_low_contributions(small):
    fit, test = small
    det = ood.create("dice", percentile=70).fit(fit)
    contrib = fit.features.astype(float).mean(0)[None, :] * fit.head_weight.astype(float)
    mask = contrib > np.percentile(contrib, 70)
    assert det.info["kept_weights"] == pytest.approx(mask.mean())
    logits = test.features.astype(float) @ (fit.head_weight * mask).T + test.head_bias
    np.testing.assert_allclose(det.score(test), scipy.special.logsumexp(logits, axis=1), rtol=1e-10)


# ---------------------------------------------------------------------------- paper methods
def _wdiscood_reference(x, y, queries, normalize, lam):
    """WDiscOOD written out directly (Chen et al., ICCV 2023): optional L2 normalisation, whitening by the
    within-class covariance, discriminants of (S_w + αI)⁻¹S_b, and the residual of their span."""
    if normalize:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    classes = np.unique(y)

    def within(a):
        ac = np.concatenate([a[y == c] - a[y == c].mean(0) for c in classes])
        return ac.T @ ac / len(ac)

    evals, evecs = np.linalg.eigh(within(x))
    keep = evals > evals.max() * 1e-12
    wh = evecs[:, keep] @ np.diag(evals[keep] ** -0.5) @ evecs[:, keep].T
    xw = x @ wh
    mu_c = np.stack([xw[y == c].mean(0) for c in classes])
    mu = xw.mean(0)
    s_b = (mu_c - mu).T @ (mu_c - mu) / len(classes)
    ratio, vecs = np.linalg.eig(np.linalg.inv(within(xw) + 1e-5 * np.eye(len(x.T))) @ s_b)
    ratio, vecs = np.real(ratio), np.real(vecs)
    order = np.argsort(-ratio)[: len(classes) - 1]
    g = vecs[:, order] / np.linalg.norm(vecs[:, order], axis=0)
    q, _ = np.linalg.qr(g)
    h = np.eye(len(q)) - q @ q.T
    out = []
    for v in queries @ wh:
        disc = min(np.linalg.norm(g.T @ (v - m)) for m in mu_c)
        out.append(-disc - lam * np.linalg.norm(h @ (v - mu)))
    return np.array(out)


def test_wdiscood_matches_a_direct_reimplementation(small):
    fit, test = small
    x, y = fit.features.astype(float), fit.labels
    det = ood.create("wdiscood").fit(fit)
    assert det.info["num_disc"] == len(np.unique(y)) - 1 and det.info["normalize"] is False
    expected = _wdiscood_reference(x, y, test.features.astype(float), normalize=False, lam=5.0)  # ReLU-like: λ = 5
    np.testing.assert_allclose(det.score(test), expected, rtol=1e-6)


def test_wdiscood_on_signed_features_normalises_with_lambda_one(small):
    fit, test = small
    shift = fit.features.mean(0)  # centred features are signed, as a ViT's pre-logits
    fit_s = ModelOutputs(logits=fit.logits, features=(fit.features - shift).astype(np.float32), labels=fit.labels,
                         preds=fit.preds, head_weight=fit.head_weight, head_bias=fit.head_bias)
    test_s = ModelOutputs(logits=test.logits, features=(test.features - shift).astype(np.float32), labels=test.labels,
                          preds=test.preds, head_weight=test.head_weight, head_bias=test.head_bias)
    det = ood.create("wdiscood").fit(fit_s)
    assert det.info["normalize"] is True and det.info["residual_weight"] == 1.0
    expected = _wdiscood_reference(fit_s.features.astype(float), fit.labels, test_s.features.astype(float),
                                   normalize=True, lam=1.0)
    np.testing.assert_allclose(det.score(test_s), expected, rtol=1e-6)


def _conjnorm_direct(fit, test, p, t):
    q = p / (p - 1)
    pn = lambda a: a / np.linalg.norm(a, ord=p, axis=-1, keepdims=True)  # noqa: E731
    protos = [pn(fit.features[fit.labels == c].astype(float).mean(0)) for c in np.unique(fit.labels)]

    def d(z, mu):
        grad = mu * np.abs(mu) ** (q - 2) / np.linalg.norm(mu, ord=q) ** (q - 2)
        return -0.5 * np.linalg.norm(z, ord=q) ** 2 + z @ grad

    zf = pn(fit.features.astype(float))
    phi = [sum(np.exp(d(z, mu) / t) for z in zf) for mu in protos]
    return np.array([np.log(sum(np.exp(d(z, mu) / t) / ph for mu, ph in zip(protos, phi)))
                     for z in pn(test.features.astype(float))])


def test_conjnorm_matches_the_formula(small):
    fit, test = small
    fit = ModelOutputs(logits=fit.logits, features=fit.features + 0.05, labels=fit.labels, preds=fit.preds)
    test = ModelOutputs(logits=test.logits, features=test.features + 0.05, labels=None, preds=test.preds)
    for p, t in [(2.2, 0.5), (1.5, 1.0)]:  # temperatures where the direct exp() does not overflow
        np.testing.assert_allclose(ood.create("conjnorm", p=p, temperature=t).fit(fit).score(test),
                                   _conjnorm_direct(fit, test, p, t), rtol=1e-8)


def test_conjnorm_p2_limit_is_a_gaussian_like_kernel(small):
    fit, test = small
    # q = 2: d(z, μ) = −½‖z‖² + ⟨z, μ⟩ on unit vectors
    det = ood.create("conjnorm", p=2.0, temperature=0.3).fit(fit)
    n = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    protos = n(np.stack([fit.features[fit.labels == c].astype(float).mean(0) for c in np.unique(fit.labels)]))
    zf, zt = n(fit.features.astype(float)), n(test.features.astype(float))
    dist = lambda z: -0.5 + z @ protos.T  # noqa: E731
    log_phi = scipy.special.logsumexp(dist(zf) / 0.3, axis=0)
    expected = scipy.special.logsumexp(dist(zt) / 0.3 - log_phi, axis=1)
    np.testing.assert_allclose(det.score(test), expected, rtol=1e-7)
    # small T does not overflow
    assert np.isfinite(ood.create("conjnorm", temperature=1e-4).fit(fit).score(test)).all()


# ---------------------------------------------------------------------------- the defining property
@pytest.mark.parametrize("name", [n for n in ood.available() if n != "odin"])
def test_id_scores_higher_than_far_ood(name, train_outputs, id_outputs, ood_outputs):
    det = ood.create(name).fit(train_outputs)
    s_id, s_ood = det.score(id_outputs), det.score(ood_outputs)
    assert s_id.dtype == np.float64 and s_id.shape == (len(id_outputs),)
    assert np.isfinite(s_id).all() and np.isfinite(s_ood).all()
    assert ood.metrics(s_id, s_ood)["auroc"] > 0.9


def test_signed_features_pick_the_vit_recipe_for_wdiscood():
    world = ClusterWorld(seed=3)
    fit = world.sample(300, seed=1)
    signed = make_outputs(fit.features - 0.5, fit.head_weight, fit.head_bias, fit.labels)
    det = ood.create("wdiscood").fit(signed)
    assert det.info["normalize"] is True and det.info["residual_weight"] == 1.0
    det = ood.create("wdiscood", normalize=False, residual_weight=2.0).fit(signed)
    assert det.info["normalize"] is False and det.info["residual_weight"] == 2.0


def test_fdbd_boundary_distances_match_the_pairwise_definition():
    """The Gram-matrix form of ‖w_i − w_j‖ equals the direct pairwise norms."""
    from core.extract import ModelOutputs

    rng = np.random.default_rng(7)
    w = rng.normal(size=(5, 9))
    z = rng.normal(size=(40, 9))
    out = ModelOutputs(logits=z @ w.T, features=z, labels=None, preds=(z @ w.T).argmax(1), head_weight=w,
                       head_bias=np.zeros(5))
    det = ood.create("fdbd").fit(out)
    direct = np.linalg.norm(w[:, None, :] - w[None, :, :], axis=2)
    np.fill_diagonal(direct, 1.0)
    np.testing.assert_allclose(det.denominator_, direct, rtol=1e-5)
    f = out.logits.astype(np.float64)
    p = f.argmax(1)
    expected = (np.abs(f[np.arange(40), p][:, None] - f) / direct[p]).sum(1) / np.linalg.norm(z - z.mean(0), axis=1)
    np.testing.assert_allclose(det.score(out), expected, rtol=1e-4)


def test_mahalanobis_with_constant_features_is_a_clear_error():
    from core.extract import ModelOutputs

    z = np.ones((20, 4))
    out = ModelOutputs(logits=np.tile([[1.0, 0.0]], (20, 1)), features=z, labels=np.arange(20) % 2, preds=np.zeros(20))
    with pytest.raises(ood.OODError, match="no variance"):
        ood.create("mahalanobis").fit(out)


def test_odin_refuses_single_images_and_accepts_loader_batches():
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3))
    det = ood.create("odin", model=net).fit(None)
    with pytest.raises(ood.OODError, match=r"\[N, C, H, W\]"):
        det.score_inputs(torch.zeros(3, 4, 4))
    x = torch.randn(10, 3, 4, 4)
    loader = [(x[:6], torch.zeros(6)), (x[6:], torch.zeros(4))]
    np.testing.assert_allclose(det.score_inputs(loader), det.score_inputs(x), rtol=1e-6)
