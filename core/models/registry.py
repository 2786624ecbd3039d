"""Model registry: the shipped zoo, timm models by name, and local checkpoints."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from .zoo import build_architecture

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "models"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelError(ValueError):
    """Raised when a model cannot be built or loaded; the message is meant for the user."""


def zoo() -> list[str]:
    """Names of the shipped models (folders of assets/models with a card and weights)."""
    if not ASSETS.is_dir():
        return []
    return sorted(p.name for p in ASSETS.iterdir() if (p / "card.json").is_file() and (p / "model.safetensors").is_file())


def read_card(name: str) -> dict:
    path = ASSETS / name / "card.json"
    if not path.is_file():
        raise ModelError(f"No shipped model named '{name}'. Shipped models: {', '.join(zoo()) or 'none'}.")
    return json.loads(path.read_text())


def attach_card(model: nn.Module, card: dict) -> nn.Module:
    model.card = card
    model.eval()
    return model


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a state dict, turning key and shape mismatches into one readable ModelError."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong_shape:
        def show(keys):
            return ", ".join(keys[:8]) + (f" … (+{len(keys) - 8} more)" if len(keys) > 8 else "")
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {show(unexpected)}")
        if wrong_shape:
            parts.append("shape mismatches: " + show([f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong_shape]))
        raise ModelError(f"The checkpoint {source} does not match the architecture: " + "; ".join(parts) + ".")
    model.load_state_dict(state, strict=True)


def load_from_dir(path: Path) -> nn.Module:
    """Load a zoo folder (card.json + model.safetensors)."""
    path = Path(path)
    card = json.loads((path / "card.json").read_text())
    model = build_architecture(card["architecture"])
    try:
        state = load_file(str(path / "model.safetensors"))
    except (SafetensorError, OSError) as e:
        raise ModelError(f"Could not read the weights in {path}: {e}") from e
    load_state_strict(model, state, f"'{path.name}'")
    return attach_card(model, card)
