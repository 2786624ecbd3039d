"""Patching a ViT: identical logits at keep rate 1, exact restoration, token counts, prefix tokens,
tracing back to the original patches, and the messages for what is not supported."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core import pruning
from core.pruning import PruningError, apply, keep_count

from .conftest import small_vit

METHODS = pruning.available()


def snapshot(model):
    return ({k: v.detach().clone() for k, v in model.state_dict().items()},
            {name: sorted(m.__dict__) for name, m in model.named_modules()},
            {name: dict(m._forward_hooks) for name, m in model.named_modules()})


def assert_restored(model, snap):
    state, attrs, hooks = snap
    now = model.state_dict()
    assert set(now) == set(state) and all(torch.equal(state[k], now[k]) for k in state)
    assert {name: sorted(m.__dict__) for name, m in model.named_modules()} == attrs
    assert {name: dict(m._forward_hooks) for name, m in model.named_modules()} == hooks
    assert all("forward" not in blk.__dict__ for blk in model.blocks)


@pytest.mark.parametrize("method", METHODS)
def test_keep_rate_one_gives_identical_logits_on_the_shipped_vit(shapes_vit, shapes_batch, method):
    with torch.no_grad():
        ref = shapes_vit(shapes_batch)
        snap = snapshot(shapes_vit)
        with apply(shapes_vit, method, keep_rate=1.0) as s:
            out = shapes_vit(shapes_batch)
        assert torch.equal(out, ref)
        assert s.tokens_per_block == [65] * 6 and s.macs_ratio == 1.0
        with apply(shapes_vit, method, keep_rate=0.5):
            pruned = shapes_vit(shapes_batch)
        assert not torch.equal(pruned, ref)
        assert_restored(shapes_vit, snap)
        assert torch.equal(shapes_vit(shapes_batch), ref)


def test_keep_rate_one_gives_identical_logits_on_random_deit_tiny(deit_tiny):
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = deit_tiny(x)
        snap = snapshot(deit_tiny)
        for method in METHODS:
            with apply(deit_tiny, method, keep_rate=1.0) as s:
                assert torch.equal(deit_tiny(x), ref), method
            assert s.tokens_per_block == [197] * 12
        assert_restored(deit_tiny, snap)
        assert torch.equal(deit_tiny(x), ref)


@pytest.mark.parametrize("kind", ["distilled", "registers", "no-cls"])
def test_variants_keep_rate_one_identical(kind):
    model = small_vit(kind)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x)
        for method in METHODS:
            if pruning.unavailable_reason(method, model):
                assert kind == "no-cls" and method in ("evit", "topk-cls")
                continue
            with apply(model, method, keep_rate=1.0):
                assert torch.equal(model(x), ref), (kind, method)
            with apply(model, method, keep_rate=0.5) as s:
                out = model(x)
            assert out.shape == ref.shape and torch.isfinite(out).all()
            assert s.plan.mlp_tokens[-1] < model.num_prefix_tokens + 64


def test_exit_restores_the_model_after_an_exception(shapes_vit, shapes_batch):
    snap = snapshot(shapes_vit)
    with pytest.raises(RuntimeError, match="boom"), torch.no_grad(), apply(shapes_vit, "tome", keep_rate=0.5):
        shapes_vit(shapes_batch)
        raise RuntimeError("boom")
    assert_restored(shapes_vit, snap)


def test_nested_contexts_are_refused(shapes_vit):
    with apply(shapes_vit, "random"), pytest.raises(PruningError, match="already patched"):
        with apply(shapes_vit, "evit"):
            pass
    assert all("forward" not in blk.__dict__ for blk in shapes_vit.blocks)


@pytest.mark.parametrize("method, rate", [("zero-tprune", 0.6), ("topk-cls", 0.55), ("random", 0.8), ("evit", 0.6)])
def test_token_counts_match_the_budget(shapes_vit, shapes_batch, method, rate):
    with torch.no_grad(), apply(shapes_vit, method, keep_rate=rate) as s:
        shapes_vit(shapes_batch)
    fused = 1 if method == "evit" else 0
    n, expected_mlp = 64, []
    for block in range(6):
        if block in (2, 3, 5):  # default pruning blocks of a 6-block ViT: 6·{1/4, 1/2, 3/4} rounded up
            n = keep_count(rate, n) + fused
        expected_mlp.append(1 + n)
    assert s.mlp_tokens_per_block == expected_mlp
    assert s.tokens_per_block == [65] + expected_mlp[:-1]
    assert list(s.plan.mlp_tokens) == expected_mlp
    assert [lt.block for lt in s.layers] == [2, 3, 5]


def test_explicit_layers_schedule_and_tome_r(shapes_vit, shapes_batch):
    with torch.no_grad():
        with apply(shapes_vit, "random", keep_rate=0.5, layers=[0, 2]) as s:
            shapes_vit(shapes_batch)
        assert s.mlp_tokens_per_block == [33, 33, 17, 17, 17, 17]
        with apply(shapes_vit, "zero-tprune", schedule=[1.0, 0.9, 0.9, 0.9, 0.9, 1.0]) as s:
            shapes_vit(shapes_batch)
        assert s.mlp_tokens_per_block == [65, 1 + 58, 1 + 52, 1 + 47, 1 + 42, 1 + 42]
        with apply(shapes_vit, "tome", r=5) as s:
            shapes_vit(shapes_batch)
        assert s.mlp_tokens_per_block == [1 + 64 - 5 * (b + 1) for b in range(6)]
        with apply(shapes_vit, "tome", r=4, r_schedule="decreasing") as s:
            shapes_vit(shapes_batch)
        assert s.plan.r == (8, 6, 5, 3, 2, 0) and s.mlp_tokens_per_block[-1] == 65 - 24
        with apply(shapes_vit, "tome", r_schedule="list", r_list=[0, 10, 0, 10, 0, 0]) as s:
            shapes_vit(shapes_batch)
        assert s.mlp_tokens_per_block == [65, 55, 55, 45, 45, 45]
        with apply(shapes_vit, "tome", r=14) as s:  # late blocks merge at most half of what they hold, as in ToMe
            shapes_vit(shapes_batch)
        assert s.plan.r == (14, 14, 14, 11, 5, 3) and s.mlp_tokens_per_block[-1] == 1 + 3


def identity_blocks(kind: str):
    """A ViT whose blocks add nothing (zero output projections): tokens pass unchanged, so every
    token after pruning must equal an input token (or a merge of input tokens)."""
    model = small_vit(kind)
    with torch.no_grad():
        for blk in model.blocks:
            for lin in (blk.attn.proj, blk.mlp.fc2):
                lin.weight.zero_()
                lin.bias.zero_()
    return model


def run_captured(model, method, **params):
    seen = {}
    pre = model.blocks[0].register_forward_pre_hook(lambda m, args: seen.__setitem__("in", args[0].clone()))
    post = model.blocks[-1].register_forward_hook(lambda m, args, out: seen.__setitem__("out", out.clone()))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    try:
        with torch.no_grad(), apply(model, method, **params) as s:
            model(x)
    finally:
        pre.remove()
        post.remove()
    return seen["in"], seen["out"], s


@pytest.mark.parametrize("kind", ["plain", "distilled", "registers"])
@pytest.mark.parametrize("method", ["zero-tprune", "topk-cls", "random"])
def test_prefix_tokens_are_never_pruned_and_traces_point_at_the_original_patches(kind, method):
    model = identity_blocks(kind)
    x_in, x_out, s = run_captured(model, method, keep_rate=0.6)
    p = model.num_prefix_tokens
    assert torch.equal(x_out[:, :p], x_in[:, :p])  # CLS, distillation and register tokens untouched, in place
    origin = s.origin
    assert origin.min() >= -1 and (origin[origin >= 0] >= p).all()
    n_out = x_out.shape[1] - p
    for i in range(2):
        kept = np.flatnonzero(origin[i] >= 0)
        assert len(kept) == n_out
        for patch in kept:  # the token at the traced position is exactly that original patch
            assert torch.equal(x_out[i, origin[i, patch]], x_in[i, p + patch])


def test_tome_merges_are_size_weighted_averages_of_the_traced_patches():
    model = identity_blocks("registers")
    x_in, x_out, s = run_captured(model, "tome", r=6, prop_attn=True)
    p = model.num_prefix_tokens
    assert torch.equal(x_out[:, :p], x_in[:, :p])
    origin = s.origin
    assert (origin >= p).all()  # merging never drops a patch
    for i in range(2):
        for token in np.unique(origin[i]):
            members = np.flatnonzero(origin[i] == token)
            torch.testing.assert_close(x_out[i, token], x_in[i, p + members].mean(0), rtol=1e-5, atol=1e-6)
    assert s.mlp_tokens_per_block[-1] == p + 64 - 4 * 6


def test_evit_fuses_the_dropped_patches_into_one_token():
    model = identity_blocks("plain")
    x_in, x_out, s = run_captured(model, "evit", keep_rate=0.5)
    for lt in s.layers:
        assert (lt.origin >= 0).all()  # fused, never dropped
        for i in range(2):
            fused = lt.actions[i] == pruning.FUSED
            assert fused.any() and len(np.unique(lt.origin[i, fused])) == 1  # one token takes every inattentive patch
            assert lt.origin[i, fused][0] == 1 + lt.n_out - 1  # appended after the kept tokens
    last = s.layers[-1]
    for i in range(2):
        assert x_out.shape[1] == 1 + len(np.unique(last.origin[i]))


@pytest.mark.parametrize("kind", ["plain", "registers"])
def test_every_method_runs_on_every_variant_with_finite_outputs(kind):
    model = small_vit(kind)
    x = torch.randn(2, 3, 32, 32)
    for method in METHODS:
        with torch.no_grad(), apply(model, method, keep_rate=0.4) as s:
            assert torch.isfinite(model(x)).all()
        assert s.importance_seconds >= 0 and len(s.layers) > 0
        for lt in s.layers:
            assert lt.origin.shape == (2, 64) and lt.scores.dtype == np.float32 and lt.actions.dtype == np.int8


def test_unsupported_models_get_a_message_naming_what_is_supported():
    from timm.models.vision_transformer import ResPostBlock

    from core.models import load

    cnn = load("shapes-cnn")
    for method in METHODS:
        reason = pruning.unavailable_reason(method, cnn)
        assert "'shapes-cnn' is a CNN, not a Vision Transformer" in reason and "DeiT" in reason and "'shapes-vit'" in reason
    with pytest.raises(PruningError, match="not a Vision Transformer"):
        with apply(cnn, "tome"):
            pass
    respost = small_vit(block_fn=ResPostBlock)
    reason = pruning.unavailable_reason("zero-tprune", respost)
    assert "ResPostBlock" in reason and "pre-norm Block" in reason
    no_cls = small_vit("no-cls")
    assert "class token" in pruning.unavailable_reason("evit", no_cls)
    assert pruning.unavailable_reason("zero-tprune", no_cls) is None
    with pytest.raises(PruningError, match="class token"):
        with apply(no_cls, "zero-tprune", init="cls"):
            pass


def test_create_gives_the_configured_method(shapes_vit):
    pruner = pruning.create("evit", shapes_vit, keep_rate=0.5, fuse_weights="sum")
    assert pruner.params["fuse_weights"] == "sum" and pruner.plan.mlp_tokens[-1] == 1 + 10  # 64 → 32+1 → 17+1 → 9+1 (a fused token each)
    with pytest.raises(PruningError, match="class token"):
        pruning.create("topk-cls", small_vit("no-cls"))


def test_impossible_budgets_are_refused_with_the_valid_range(shapes_vit):
    with pytest.raises(PruningError, match=r"keep_rate.*\[0.01, 1.0\]"):
        with apply(shapes_vit, "evit", keep_rate=1.5):
            pass
    with pytest.raises(PruningError, match=r"\[0.01, 1.0\]"):
        with apply(shapes_vit, "random", keep_rate=0.0):
            pass
    assert pruning.param_bounds("tome", shapes_vit)["r"] == 32  # a block merges at most half of its 64 patch tokens
    with pytest.raises(PruningError, match=r"at most 32"):
        with apply(shapes_vit, "tome", r=40):
            pass
    with pytest.raises(PruningError, match=r"r must be in \[0, 32\].*got 40"):
        with apply(shapes_vit, "tome", r_schedule="list", r_list=[40, 3, 0, 0, 0, 0]):
            pass
    with pytest.raises(PruningError, match=r"starts at 2r, so r must be in \[0, 32\]"):
        with apply(shapes_vit, "tome", r=20, r_schedule="decreasing"):
            pass
    with pytest.raises(PruningError, match="between 0 and 5"):
        with apply(shapes_vit, "topk-cls", layers=[2, 7]):
            pass
    with pytest.raises(PruningError, match="one keep rate for each of the 6 blocks"):
        with apply(shapes_vit, "random", schedule=[0.5, 0.5]):
            pass
    with pytest.raises(PruningError, match="no parameter"):
        with apply(shapes_vit, "random", r=3):
            pass
    with pytest.raises(PruningError, match="Unknown pruning method"):
        with apply(shapes_vit, "dynamicvit"):
            pass
    with pytest.raises(PruningError, match="own size"):
        with torch.no_grad(), apply(shapes_vit, "random", keep_rate=0.5):
            shapes_vit.blocks(torch.zeros(1, 30, 96))


def test_random_is_seeded(shapes_vit, shapes_batch):
    def origins(seed):
        with torch.no_grad(), apply(shapes_vit, "random", keep_rate=0.5, seed=seed) as s:
            shapes_vit(shapes_batch)
        return s.origin

    assert np.array_equal(origins(3), origins(3))
    assert not np.array_equal(origins(3), origins(4))
