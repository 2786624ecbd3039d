"""Shapley values: exact enumeration equals the definition over all orderings; sampling and the
efficiency rules."""
import itertools
import math

import numpy as np
import pytest

from core.shift.shapley import (
    exact_shapley,
    permutation_masks,
    permutation_shapley,
    popcount,
    resolve_method,
    sample_permutations,
    share_residual,
)


def brute_force(values: np.ndarray, p: int) -> np.ndarray:
    """The definition: the mean over all p! orderings of each player's marginal contribution."""
    phi = np.zeros(p)
    for order in itertools.permutations(range(p)):
        mask = 0
        for player in order:
            phi[player] += values[mask | (1 << player)] - values[mask]
            mask |= 1 << player
    return phi / math.factorial(p)


@pytest.mark.parametrize("p", [1, 2, 3, 5, 6])
def test_exact_equals_brute_force_enumeration(p):
    rng = np.random.default_rng(p)
    values = rng.normal(size=1 << p)
    values[0] = 0.0
    np.testing.assert_allclose(exact_shapley(values, p), brute_force(values, p), atol=1e-12)


def test_exact_is_vectorised_over_replicates_and_efficient():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(7, 1 << 4))
    phi = exact_shapley(values, 4)
    for r in range(7):
        np.testing.assert_allclose(phi[r], brute_force(values[r], 4), atol=1e-12)
    np.testing.assert_allclose(phi.sum(1), values[:, -1] - values[:, 0], atol=1e-12)


def test_additive_game_gives_each_player_its_own_term():
    p, own = 4, np.array([0.3, -1.0, 0.0, 2.5])
    values = np.array([own[[j for j in range(p) if (m >> j) & 1]].sum() for m in range(1 << p)])
    np.testing.assert_allclose(exact_shapley(values, p), own, atol=1e-12)


def test_the_reverse_game_has_the_negated_values():
    """v'(R) = v(N∖R) − v(N) (the target switched back to the source) has Shapley values −φ, which is why
    averaging the two sides' estimates is the symmetrised attribution (φ(s→t) − φ(t→s))/2."""
    p = 5
    rng = np.random.default_rng(3)
    values = rng.normal(size=1 << p)
    values[0] = 0.0
    full = (1 << p) - 1
    reverse = np.array([values[full ^ m] - values[full] for m in range(1 << p)])
    np.testing.assert_allclose(exact_shapley(reverse, p), -exact_shapley(values, p), atol=1e-12)


def test_permutation_sampling_is_efficient_and_converges():
    p = 6
    rng = np.random.default_rng(1)
    values = rng.normal(size=1 << p)
    values[0] = 0.0
    perms = sample_permutations(p, 4000, np.random.default_rng(2))
    assert len(perms) == 4000
    np.testing.assert_array_equal(perms[2000:], perms[:2000, ::-1])  # antithetic pairs
    masks, index = permutation_masks(perms)
    assert masks[0] == 0 and masks[-1] == (1 << p) - 1
    phi = permutation_shapley(values[masks], perms, index)
    assert phi.sum() == pytest.approx(values[-1], abs=1e-12)
    np.testing.assert_allclose(phi, exact_shapley(values, p), atol=0.05)


def test_every_ordering_once_gives_the_exact_values():
    p = 4
    rng = np.random.default_rng(5)
    values = rng.normal(size=1 << p)
    perms = np.array(list(itertools.permutations(range(p))))
    masks, index = permutation_masks(perms)
    np.testing.assert_allclose(permutation_shapley(values[masks], perms, index), exact_shapley(values, p), atol=1e-12)


def test_share_residual_rules():
    phi = np.array([[0.5, -0.1, 0.0]])
    for rule in ("proportional", "uniform", "rescale"):
        np.testing.assert_allclose(share_residual(phi, np.array([1.0]), rule).sum(), 1.0)
    prop = share_residual(phi, np.array([1.0]), "proportional")[0]
    assert prop[2] == 0.0 and prop[0] > 0.5  # a zero attribution stays zero
    np.testing.assert_allclose(share_residual(phi, np.array([1.0]), "uniform")[0], phi[0] + 0.6 / 3)
    np.testing.assert_allclose(share_residual(phi, np.array([0.8]), "rescale")[0], phi[0] * 2)
    np.testing.assert_allclose(share_residual(np.zeros((1, 4)), np.array([1.0]), "proportional")[0], 0.25)


def test_method_resolution():
    assert resolve_method("auto", 10) == "exact" and resolve_method("auto", 11) == "permutation"
    with pytest.raises(ValueError, match="permutation"):
        resolve_method("exact", 12)
    np.testing.assert_array_equal(popcount(np.arange(8)), [0, 1, 1, 2, 1, 2, 2, 3])
