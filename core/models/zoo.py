"""Architectures of the shipped Shapes models, built from their model cards.

Both are plain timm models, so everything that works on timm models (``forward_features``,
``forward_head(pre_logits=True)``, attention blocks, token pruning) works on them.
"""
from __future__ import annotations

import timm
import torch
from timm.layers import PatchEmbed
from timm.models.vision_transformer import VisionTransformer
from torch import nn


class ConvStemPatchEmbed(PatchEmbed):
    """A PatchEmbed whose projection is a small convolutional stem.

    Three stride-2 3×3 convolutions (×8 downsampling) then a 1×1 projection, so a 64×64 image
    still becomes an 8×8 grid of patch tokens. Convolutional stems make ViTs train far faster
    from scratch (Xiao et al., "Early convolutions help transformers see better", 2021).
    """

    def __init__(self, img_size=64, patch_size=8, in_chans=3, embed_dim=128, stem_width=32, **kwargs):
        super().__init__(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim, **kwargs)
        if patch_size != 8:
            raise ValueError(f"ConvStemPatchEmbed downsamples by exactly 8; patch_size must be 8, got {patch_size}.")
        w = stem_width
        layers: list[nn.Module] = []
        chans = [in_chans, w, 2 * w, 4 * w]
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(chans[-1], embed_dim, 1))
        self.proj = nn.Sequential(*layers)


def build_architecture(arch: dict) -> nn.Module:
    """Build an untrained model from a card's ``architecture`` entry."""
    family = arch["family"]
    kwargs = dict(arch.get("kwargs", {}))
    if family == "vit-convstem":
        stem_width = kwargs.pop("stem_width", 32)
        return VisionTransformer(
            embed_layer=lambda **kw: ConvStemPatchEmbed(stem_width=stem_width, **kw), **kwargs
        )
    if family == "timm":
        return timm.create_model(arch["timm_name"], pretrained=False, **kwargs)
    raise ValueError(f"Unknown architecture family '{family}'.")


SHAPES_ARCHITECTURES = {
    "shapes-vit": {
        "family": "vit-convstem",
        "kwargs": {"img_size": 64, "patch_size": 8, "embed_dim": 96, "depth": 6, "num_heads": 3,
                   "mlp_ratio": 2.0, "num_classes": 6, "stem_width": 32},
    },
    "shapes-cnn": {"family": "timm", "timm_name": "resnet10t", "kwargs": {"num_classes": 6}},
}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def head_of(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The final linear classifier's weight [C,D] and bias [C]."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if not isinstance(head, nn.Linear):
        raise ValueError("The model's classifier is not a single linear layer, so it has no (W, b) head.")
    bias = head.bias if head.bias is not None else torch.zeros(head.out_features)
    return head.weight.detach().clone(), bias.detach().clone()
