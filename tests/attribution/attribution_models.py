"""Small models with known answers for the attribution tests."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

IDENTITY_CARD = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "name": "linear"}


class LinearImage(nn.Module):
    """logits = W·vec(x) + b: every gradient method has a closed form."""

    def __init__(self, channels: int = 3, side: int = 4, classes: int = 3, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(channels * side * side, classes)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(self.fc.weight.shape, generator=g))
            self.fc.bias.copy_(torch.randn(classes, generator=g))
        self.shape = (channels, side, side)
        self.card = dict(IDENTITY_CARD, mean=[0.0] * channels, std=[1.0] * channels)

    def forward(self, x):
        return self.fc(x.flatten(1))

    def weight_map(self, targets) -> np.ndarray:
        return self.fc.weight.detach()[torch.as_tensor(targets)].reshape(len(targets), *self.shape).numpy()


class TinyCNN(nn.Module):
    """A small nonlinear CNN (conv, tanh, conv, pooling, linear) for completeness and Captum checks."""

    def __init__(self, channels: int = 3, classes: int = 4, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(channels, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8 * 4 * 4, classes)
        self.card = {"mean": [0.5] * channels, "std": [0.25] * channels, "name": "tiny-cnn"}

    def forward(self, x):
        h = torch.tanh(self.conv1(x))
        h = torch.tanh(self.conv2(h))
        h = nn.functional.adaptive_avg_pool2d(h, 4)
        return self.head(h.flatten(1))


class LinearTable(nn.Module):
    """logits = x·Wᵀ + b on table rows."""

    def __init__(self, weight, bias=None):
        super().__init__()
        w = torch.as_tensor(np.asarray(weight, np.float32))
        self.fc = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(w)
            self.fc.bias.copy_(torch.zeros(w.shape[0]) if bias is None else torch.as_tensor(np.asarray(bias, np.float32)))

    def forward(self, x):
        return self.fc(x)


def tiny_vit(global_pool: str = "token", seed: int = 0):
    """A two-block timm ViT on 32×32 inputs (4×4 patch grid + a class token)."""
    import timm

    torch.manual_seed(seed)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=32, depth=2,
                              num_heads=2, num_classes=3, global_pool=global_pool,
                              class_token=global_pool == "token")
    model.card = {"mean": [0.5] * 3, "std": [0.25] * 3, "name": "tiny-vit", "input_size": [3, 32, 32]}
    return model.eval()
