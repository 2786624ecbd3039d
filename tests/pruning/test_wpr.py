"""Weighted PageRank against a hand-written power iteration, its stationary distribution and its symmetries."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.pruning import PruningError, wpr
from core.pruning.wpr import power_iterations, wpr_details


def random_attention(b: int, h: int, n: int, seed: int = 0, sharp: float = 3.0) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(0, sharp, (b, h, n, n))
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float64)


def hand_power(attn: np.ndarray, iters: int, init: str = "uniform") -> np.ndarray:
    """Per head: s ← Aᵀs, written out index by index."""
    b, h, n, _ = attn.shape
    out = np.zeros((b, h, n))
    for i in range(b):
        for k in range(h):
            s = np.full(n, 1.0 / n)
            if init == "cls":
                s = np.ones(n)
                s[0] = np.sqrt(n)
                s /= s.sum()
            for _ in range(iters):
                new = np.zeros(n)
                for src in range(n):
                    for dst in range(n):
                        new[dst] += attn[i, k, src, dst] * s[src]
                s = new
            out[i, k] = s
    return out


@pytest.mark.parametrize("iters", [0, 1, 7])
@pytest.mark.parametrize("init", ["uniform", "cls"])
def test_wpr_equals_hand_written_power_iteration(iters, init):
    attn = random_attention(2, 3, 6, seed=iters)
    per_head = hand_power(attn, iters, init)
    mean = per_head.mean(1)
    np.testing.assert_allclose(wpr(attn, iters=iters, init=init, head_agg="mean"), mean / mean.sum(1, keepdims=True),
                               rtol=1e-10, atol=1e-12)
    rms = np.sqrt((per_head ** 2).mean(1))
    np.testing.assert_allclose(wpr(attn, iters=iters, init=init, head_agg="rms"), rms / rms.sum(1, keepdims=True),
                               rtol=1e-10, atol=1e-12)


def test_wpr_rows_sum_to_one_and_keep_float32():
    attn = torch.from_numpy(random_attention(3, 2, 9).astype(np.float32))
    s = wpr(attn, iters=30)
    assert s.dtype == torch.float32 and s.shape == (3, 9)
    torch.testing.assert_close(s.sum(1), torch.ones(3))


def test_wpr_converges_to_the_stationary_distribution():
    """Many iterations reach the left Perron vector of A (Aᵀπ = π), for a strictly positive A."""
    attn = random_attention(1, 1, 8, seed=5, sharp=1.0)
    vals, vecs = np.linalg.eig(attn[0, 0].T)
    pi = np.real(vecs[:, np.argmax(np.real(vals))])
    pi /= pi.sum()
    np.testing.assert_allclose(wpr(attn, iters=200)[0], pi, atol=1e-10)


def test_wpr_is_permutation_equivariant():
    attn = random_attention(2, 4, 10, seed=2)
    perm = np.random.default_rng(1).permutation(10)
    permuted = attn[:, :, perm][:, :, :, perm]
    for agg in ("mean", "rms"):
        for filt in (None, (0.05, 3.0)):
            a = wpr(attn, iters=12, head_agg=agg, head_filter=filt)
            b = wpr(permuted, iters=12, head_agg=agg, head_filter=filt)
            np.testing.assert_allclose(b, a[:, perm], atol=1e-12)
    fixed0 = np.concatenate([[0], 1 + np.random.default_rng(2).permutation(9)])  # the CLS start needs token 0 fixed
    permuted = attn[:, :, fixed0][:, :, :, fixed0]
    np.testing.assert_allclose(wpr(permuted, iters=5, init="cls"), wpr(attn, iters=5, init="cls")[:, fixed0], atol=1e-12)


def test_variance_head_filter_leaves_out_flat_and_sink_heads():
    n = 8
    informative = random_attention(1, 1, n, seed=7)[0, 0]
    flat = np.full((n, n), 1.0 / n)  # every token equally important: variance 0
    sink = np.zeros((n, n))
    sink[:, 0] = 1.0  # all attention to token 0: variance n − 1
    attn = np.stack([flat, informative, sink])[None]
    res = wpr_details(torch.from_numpy(attn), 10, head_filter=(0.01, 5.0))
    var = res.variance[0].numpy()
    assert var[0] == pytest.approx(0.0, abs=1e-12) and var[2] == pytest.approx(n - 1)
    assert res.kept[0].tolist() == [False, True, False]
    only = wpr(informative[None, None], iters=10)
    np.testing.assert_allclose(res.importance.numpy(), only, atol=1e-12)
    # an image whose heads all fall outside the bounds keeps every head
    none = wpr_details(torch.from_numpy(attn), 10, head_filter=(100.0, 200.0))
    assert none.kept.all()
    np.testing.assert_allclose(none.importance.numpy(), wpr(attn, iters=10), atol=1e-12)


def test_numba_kernel_matches_torch():
    attn = torch.from_numpy(random_attention(4, 3, 33, seed=4).astype(np.float32))
    s0 = torch.full((4, 33), 1 / 33)
    fast = power_iterations(attn, s0, 9)
    slow = power_iterations(attn.clone().requires_grad_(True), s0, 9).detach()  # autograd path: torch matmuls
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kwargs, match", [
    ({"attn": np.ones((2, 3, 4))}, "shape"),
    ({"attn": np.ones((1, 1, 3, 3))}, "sum to 1"),
    ({"attn": random_attention(1, 1, 3), "init": "first"}, "init"),
    ({"attn": random_attention(1, 1, 3), "head_agg": "max"}, "head_agg"),
    ({"attn": random_attention(1, 1, 3), "iters": -1}, "iters"),
    ({"attn": random_attention(1, 1, 3), "head_filter": (0.5, 0.1)}, "v_min"),
])
def test_wpr_refuses_bad_input(kwargs, match):
    with pytest.raises(PruningError, match=match):
        wpr(**kwargs)


@pytest.mark.parametrize("grad", [False, True])
def test_alive_mask_equals_wpr_on_the_renormalised_subgraph(grad):
    """Zero-TPrune's I-stage after its S-stage: WPR on the surviving tokens' graph, rows renormalised;
    the masked kernel (and the torch path) must equal building that submatrix explicitly."""
    attn = torch.from_numpy(random_attention(2, 3, 9, seed=8))
    gone = torch.tensor([[2, 5], [0, 7]])
    alive = torch.ones(2, 9, dtype=torch.bool)
    alive.scatter_(1, gone, False)
    res = wpr_details(attn.clone().requires_grad_(grad), 6, "uniform", "rms", (0.05, 4.0), alive)
    for i in range(2):
        keep = alive[i].nonzero().squeeze(1)
        sub = attn[i][:, keep][:, :, keep]
        sub = sub / sub.sum(-1, keepdim=True)
        ref = wpr_details(sub[None], 6, "uniform", "rms", (0.05, 4.0))
        torch.testing.assert_close(res.importance[i, keep].detach(), ref.importance[0])
        torch.testing.assert_close(res.variance[i].detach(), ref.variance[0])
        assert (res.importance[i, ~alive[i]] == 0).all()
