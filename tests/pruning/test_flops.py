"""Analytical MACs against closed forms and timm's published DeiT-S figure."""
from __future__ import annotations

import pytest
import torch

from core.pruning import PruningError, apply, patch_embed_macs, vit_flops

from .conftest import small_vit


def test_deit_small_unpruned_matches_timm_4_6_gmacs():
    import timm

    model = timm.create_model("deit_small_patch16_224", pretrained=False)
    macs = vit_flops(model)
    assert macs == pytest.approx(4.6e9, rel=0.01)
    n, d = 197, 384  # closed form: 12 blocks of 12ND² + 2N²D, a 16×16×3 → 384 patch projection, a 384 → 1000 head
    assert macs == 12 * (12 * n * d * d + 2 * n * n * d) + 196 * 768 * d + d * 1000


def test_closed_form_with_pruned_token_counts():
    model = small_vit(mlp_ratio=4.0)  # 32×32 image, 4×4 patches: 64 patches + CLS, D = 48, 4 blocks, 5 classes
    d = 48

    def block(n_attn, n_mlp):
        return 4 * n_attn * d * d + 2 * n_attn * n_attn * d + 8 * n_mlp * d * d

    embed, head = 64 * (3 * 16) * d, d * 5
    assert vit_flops(model) == 4 * block(65, 65) + embed + head
    attn, mlp = [65, 65, 40, 30], [65, 40, 30, 12]
    assert vit_flops(model, attn, mlp) == sum(block(a, m) for a, m in zip(attn, mlp)) + embed + head
    assert vit_flops(model, attn) == sum(block(a, a) for a in attn) + embed + head


def test_conv_stem_macs_of_the_shipped_vit(shapes_vit):
    # 3×3 stride-2 convs 3→32 (32×32 out), 32→64 (16×16), 64→128 (8×8), then 1×1 128→96 on 8×8
    expected = 32 * 32 * 32 * 27 + 64 * 16 * 16 * 32 * 9 + 128 * 8 * 8 * 64 * 9 + 96 * 64 * 128
    assert patch_embed_macs(shapes_vit) == expected
    n, d, f = 65, 96, 192  # mlp_ratio 2
    assert vit_flops(shapes_vit) == expected + 6 * (4 * n * d * d + 2 * n * n * d + 2 * n * d * f) + d * 6


def test_counting_the_stem_does_not_touch_batchnorm_statistics():
    from core.models.zoo import SHAPES_ARCHITECTURES, build_architecture

    model = build_architecture(SHAPES_ARCHITECTURES["shapes-vit"])
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    patch_embed_macs(model)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_session_macs_equal_vit_flops_of_the_observed_tokens(shapes_vit, shapes_batch):
    for method in ("zero-tprune", "tome", "evit"):
        with torch.no_grad(), apply(shapes_vit, method, keep_rate=0.6) as s:
            shapes_vit(shapes_batch)
        assert s.macs == vit_flops(shapes_vit, s.tokens_per_block, s.mlp_tokens_per_block)
        assert s.macs < s.macs_unpruned == vit_flops(shapes_vit)


def test_vit_flops_refuses_wrong_token_lists(shapes_vit):
    with pytest.raises(PruningError, match="one token count per block"):
        vit_flops(shapes_vit, [65, 65])
    with pytest.raises(PruningError, match="positive"):
        vit_flops(shapes_vit, [65, 65, 0, 0, 0, 0])
