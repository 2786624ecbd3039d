"""Models: the shipped Shapes zoo, timm architectures by name, local checkpoints, scikit-learn tables.

``load(name_or_path, **params)`` returns a torch model in eval mode with a ``card`` dict;
``core.models.tabular.train_tabular`` fits scikit-learn models on table datasets.
"""
from .registry import (
    ModelError,
    available,
    classifier_key,
    describe,
    load,
    load_from_dir,
    load_state_strict,
    load_timm,
    read_card,
    read_checkpoint,
    timm_names,
    zoo,
)

__all__ = [
    "ModelError",
    "available",
    "classifier_key",
    "describe",
    "load",
    "load_from_dir",
    "load_state_strict",
    "load_timm",
    "read_card",
    "read_checkpoint",
    "timm_names",
    "zoo",
]
