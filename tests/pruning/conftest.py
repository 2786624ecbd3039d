"""Models shared by the pruning tests: the shipped Shapes ViT and small random-weight ViT variants."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def shapes_vit():
    from core.models import load

    return load("shapes-vit")


@pytest.fixture(scope="session")
def shapes_batch(shapes_vit):
    from core.data import load
    from core.extract import preprocess

    ds = load("shapes", split="test", n=16, seed=3)
    return preprocess(ds.images, shapes_vit.card)


@pytest.fixture(scope="session")
def deit_tiny():
    import timm

    torch.manual_seed(0)
    return timm.create_model("deit_tiny_patch16_224", pretrained=False).eval()


def small_vit(kind: str = "plain", **kw):
    """A small random-weight timm ViT: "plain" (CLS), "distilled" (CLS + distillation token),
    "registers" (CLS + 4 registers), "no-cls" (average pooling, no class token)."""
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(1)
    args = dict(img_size=32, patch_size=4, embed_dim=48, depth=4, num_heads=3, num_classes=5)
    args.update(kw)
    if kind == "distilled":
        return VisionTransformerDistilled(**args).eval()
    if kind == "registers":
        return VisionTransformer(reg_tokens=4, **args).eval()
    if kind == "no-cls":
        return VisionTransformer(class_token=False, global_pool="avg", **args).eval()
    return VisionTransformer(**args).eval()
