"""Grad-CAM and attention rollout: the right layer, the definition, and a model left as it was."""
from __future__ import annotations

import copy

import numpy as np
import timm
import torch
import torch.nn.functional as F
from attribution_models import TinyCNN, tiny_vit

from core import attribution as A
from core.attribution.cam import attention_maps, gradcam_layer, rollout


def test_gradcam_of_a_cnn_matches_the_definition():
    model = TinyCNN()
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    a = A.attribute(model, x, [1, 2], "gradcam", layer="last")
    store = {}
    h = model.conv2.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    logits = model(x)
    h.remove()
    act = store["a"]
    (g,) = torch.autograd.grad(logits[[0, 1], [1, 2]].sum(), act)
    cam = (g.mean((2, 3), keepdim=True) * act).sum(1).clamp_min(0).detach()
    np.testing.assert_allclose(a[:, 0], cam.numpy(), rtol=1e-5, atol=1e-7)  # same resolution: no upsampling
    assert np.array_equal(a[:, 0], a[:, 2])  # every channel holds the map


def test_gradcam_auto_layer_needs_a_map_of_at_least_four_by_four():
    resnet = timm.create_model("resnet10t", pretrained=False, num_classes=3).eval()
    assert gradcam_layer(resnet, "auto", (3, 64, 64))[1] == "layer3"  # layer4 would be 2×2
    assert gradcam_layer(resnet, "auto", (3, 224, 224))[1] == "layer4"
    assert gradcam_layer(resnet, "last")[1] == "layer4"


def test_gradcam_on_a_vit_reads_the_tokens_entering_the_last_block():
    vit = tiny_vit("token")
    module, name, parts = gradcam_layer(vit, "auto")
    assert name == "blocks.0" and parts["grid"] == (4, 4) and parts["prefix"] == 1
    # why: with a class-token head, the patch tokens leaving the last block get no gradient at all
    x = torch.randn(2, 3, 32, 32)
    store = {}
    h = vit.blocks[1].register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    logits = vit(x)
    h.remove()
    (g,) = torch.autograd.grad(logits[:, 0].sum(), store["a"])
    assert g[:, 1:].abs().max() == 0 and g[:, 0].abs().max() > 0
    a = A.attribute(vit, x, [0, 1], "gradcam")
    assert a.shape == x.shape and (a >= 0).all() and a.max() > 0
    # a mean-pooled ViT reads the last block's output itself
    assert gradcam_layer(tiny_vit("avg"), "auto")[1] == "blocks.1"


def test_rollout_equals_explicit_attention_and_leaves_the_model_unchanged():
    vit = tiny_vit("token")
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    state = copy.deepcopy(vit.state_dict())
    with torch.no_grad():
        before = vit(x)
    fused = [b.attn.fused_attn for b in vit.blocks]
    a = A.attribute(vit, x, None, "attention-rollout")
    # reference: the non-fused path materialises the attention; capture it at attn_drop
    ref = copy.deepcopy(vit)
    maps = []
    for b in ref.blocks:
        b.attn.fused_attn = False
        b.attn.attn_drop.register_forward_hook(lambda m, i, o: maps.append(o.detach()))
    with torch.no_grad():
        ref(x)
    r = torch.eye(17).expand(3, 17, 17)
    for m in maps:
        bar = 0.5 * m.mean(1) + 0.5 * torch.eye(17)
        r = (bar / bar.sum(-1, keepdim=True)) @ r
    expected = F.interpolate(r[:, 0, 1:].reshape(3, 1, 4, 4), size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    np.testing.assert_allclose(a[:, 0], expected.numpy(), rtol=1e-5, atol=1e-7)
    # nothing about the model changed: weights, fused flags, hooks, outputs
    assert all(torch.equal(state[k], v) for k, v in vit.state_dict().items())
    assert [b.attn.fused_attn for b in vit.blocks] == fused
    assert all(len(b.attn._forward_pre_hooks) == 0 for b in vit.blocks)
    with torch.no_grad():
        assert torch.equal(before, vit(x))


def test_attention_maps_are_row_stochastic_and_rollout_keeps_mass():
    vit = tiny_vit("token")
    with attention_maps(vit) as maps, torch.no_grad():
        vit(torch.randn(2, 3, 32, 32))
    assert len(maps) == 2 and maps[0].shape == (2, 2, 17, 17)
    np.testing.assert_allclose(maps[0].sum(-1).numpy(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(rollout(maps).sum(-1).numpy(), 1.0, rtol=1e-5)


def test_rollout_and_gradcam_are_hidden_where_they_do_not_apply():
    cnn = TinyCNN()
    x = torch.randn(1, 3, 12, 12)
    assert "CNN without attention" in A.unavailable_reason("attention-rollout", cnn, x)
    assert A.unavailable_reason("gradcam", cnn, x) is None
