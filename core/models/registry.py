"""Model registry: the shipped zoo, timm models by name, and local checkpoints."""
from __future__ import annotations

import difflib
import io
import json
import os
import pickle
import socket
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import load_file
from torch import nn

from core.errors import UserError

from .zoo import build_architecture

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "models"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelError(UserError):
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
            shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong_shape]
            parts.append("shape mismatches (checkpoint vs model): " + show(shapes))
        raise ModelError(f"The checkpoint {source} does not match the architecture: " + "; ".join(parts) + ".")
    model.load_state_dict(state, strict=True)


def load_from_dir(path: Path, source: str | None = None) -> nn.Module:
    """Load a zoo folder (card.json + model.safetensors)."""
    path = Path(path)
    try:
        card = json.loads((path / "card.json").read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"Could not read the model card {path / 'card.json'}: {e}") from e
    if "architecture" not in card:
        raise ModelError(f"The model card {path / 'card.json'} has no 'architecture' entry.")
    card.setdefault("name", path.name)
    _complete_card(card, source or f"folder: {path}")
    try:
        model = build_architecture(card["architecture"])
    except ModelError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, RuntimeError) as e:  # the card's entry is the input here
        raise ModelError(f"The model card {path / 'card.json'} describes an architecture that cannot be built "
                         f"({type(e).__name__}: {e}). Expected 'architecture': {{'family': 'timm', 'timm_name': ..., "
                         "'kwargs': {...}} or the family of a shipped model.") from e
    try:
        state = load_file(str(path / "model.safetensors"))
    except (SafetensorError, OSError) as e:
        raise ModelError(f"Could not read the weights in {path}: {e}") from e
    load_state_strict(model, state, f"'{path.name}'")
    return attach_card(model, card)


# --------------------------------------------------------------------------------------------
# Resolution: shipped zoo name -> zoo-style folder -> timm architecture (+ optional checkpoint)
# --------------------------------------------------------------------------------------------

def available() -> list[str]:
    """Models that :func:`load` accepts by a short name: the shipped zoo (whatever is on disk)."""
    return zoo()


def timm_names(filter: str | None = None, pretrained: bool = False) -> list[str]:
    """timm architecture names for the UI. ``filter`` is a substring or an fnmatch pattern ("vit_*")."""
    import timm

    pattern = filter.strip() if filter else ""
    if pattern and not any(ch in pattern for ch in "*?["):
        pattern = f"*{pattern}*"
    return list(timm.list_models(pattern or "", pretrained=pretrained))


def load(name_or_path: str | Path, **params) -> nn.Module:
    """Load a model in eval mode with a ``card`` dict attached.

    Resolution order: a shipped zoo name (:func:`available`), a path to a zoo-style folder
    (``card.json`` + ``model.safetensors``), otherwise a timm architecture name. For timm the
    parameters are ``pretrained`` (bool, default False: random init), ``num_classes``,
    ``checkpoint`` (bytes or a path to .safetensors/.pth/.pt), ``checkpoint_name`` (the file
    name, to pick the format), ``class_names`` and ``input_size`` (int, (H, W) or (3, H, W)).

    The card holds at least ``name``, ``class_names``, ``input_size`` [3, H, W], ``mean``, ``std``,
    ``test_accuracy`` (None when unknown) and ``source``.
    """
    name = str(name_or_path).strip()
    if not name:
        raise ModelError("No model given: choose a shipped model or type a timm architecture name.")
    if name in zoo():
        return load_from_dir(ASSETS / name, source=f"shipped zoo: assets/models/{name}")
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "card.json").is_file() or not (path / "model.safetensors").is_file():
            raise ModelError(f"The folder '{path}' is not a model folder: it needs card.json and model.safetensors.")
        return load_from_dir(path)
    return load_timm(name, **params)


def _complete_card(card: dict, source: str) -> dict:
    card.setdefault("test_accuracy", None)
    card.setdefault("source", source)
    card.setdefault("mean", list(IMAGENET_MEAN))
    card.setdefault("std", list(IMAGENET_STD))
    card["class_names"] = list(card.get("class_names") or [])
    return card


def _input_size(value) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        side = int(value)
        size = [3, side, side]
    else:
        dims = [int(v) for v in value]
        if len(dims) == 2:
            size = [3, *dims]
        elif len(dims) == 3:
            size = dims
        else:
            raise ModelError(f"input_size must be a side length, (H, W) or (3, H, W); got {value!r}.")
    if size[0] != 3 or size[1] < 8 or size[2] < 8:
        raise ModelError(f"input_size must be 3 channels and at least 8×8 pixels; got {size}.")
    return size


@contextmanager
def _offline_hub():
    """Make the Hugging Face hub fail fast instead of waiting on a network that is not there.

    huggingface_hub reads HF_HUB_OFFLINE once at import time, so the constant is patched too.
    Files already in the local hub cache still load.
    """
    old_env = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = None
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        pass
    old_const = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(10)  # plain-URL weights (torch.hub) must not hang either
    try:
        yield
    finally:
        socket.setdefaulttimeout(old_timeout)
        if constants is not None:
            constants.HF_HUB_OFFLINE = old_const
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env


def _pretrained_hint(name: str) -> str:
    file = name.replace("/", "_") + ".safetensors"
    return (
        f"Pretrained weights for '{name}' cannot be downloaded: this app runs offline. On a machine with network, run\n"
        f"    import timm, safetensors.torch\n"
        f"    model = timm.create_model('{name}', pretrained=True)\n"
        f"    safetensors.torch.save_file(model.state_dict(), '{file}')\n"
        f"then upload '{file}' here as a local checkpoint (with pretrained off)."
    )


def _create_timm(name: str, pretrained: bool, kwargs: dict) -> nn.Module:
    import timm

    if pretrained:
        with _offline_hub():
            try:
                return timm.create_model(name, pretrained=True, **kwargs)
            except (TypeError, ModelError):
                raise
            except Exception as e:  # hub/URL errors: LocalEntryNotFoundError, OfflineModeIsEnabled, URLError, ...
                raise ModelError(_pretrained_hint(name) + f"\n(The download failed with {type(e).__name__}.)") from e
    return timm.create_model(name, pretrained=False, **kwargs)


def _unknown_timm_name(name: str) -> ModelError:
    import timm

    names = timm.list_models()
    close = difflib.get_close_matches(name.lower(), names, n=5, cutoff=0.6)
    if not close:  # prefix matches catch "vit_tiny" -> vit_tiny_patch16_224
        close = [n for n in names if n.startswith(name.lower())][:5]
    shipped = ", ".join(zoo()) or "none"
    hint = f" Did you mean: {', '.join(close)}?" if close else " See timm_names() for the list."
    return ModelError(f"'{name}' is neither a shipped model ({shipped}), a model folder, nor a timm architecture.{hint}")


def classifier_key(model: nn.Module) -> str | None:
    """State-dict key of the classifier weight (via timm's ``get_classifier``), e.g. 'fc.weight' or 'head.weight'."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if not isinstance(head, nn.Module) or not hasattr(head, "weight"):
        return None
    for module_name, module in model.named_modules():
        if module is head:
            return f"{module_name}.weight" if module_name else "weight"
    return None


def load_timm(name: str, pretrained: bool = False, num_classes: int | None = None,
              checkpoint: bytes | str | Path | None = None, checkpoint_name: str | None = None,
              class_names: list[str] | None = None, input_size=None, **kwargs) -> nn.Module:
    """A timm architecture: random init, pretrained (offline: local hub cache only) or a local checkpoint.

    Extra keyword arguments go to ``timm.create_model``.
    """
    import timm

    if not timm.is_model(name):
        raise _unknown_timm_name(name)
    if num_classes is None and class_names:
        num_classes = len(class_names)
    if num_classes is not None:
        num_classes = int(num_classes)
        if num_classes < 1:
            raise ModelError(f"The number of classes must be at least 1, got {num_classes}.")
        kwargs["num_classes"] = num_classes
    size = _input_size(input_size)
    state = None
    if checkpoint is not None:
        state = read_checkpoint(checkpoint, checkpoint_name)
        pretrained = False  # the checkpoint provides the weights

    create_kwargs = dict(kwargs)
    if size is not None:
        create_kwargs["img_size"] = tuple(size[1:])
    try:
        model = _create_timm(name, pretrained, create_kwargs)
    except TypeError:
        if size is None:
            raise
        # Most CNNs take any input size and have no img_size argument.
        create_kwargs = dict(kwargs)
        model = _create_timm(name, pretrained, create_kwargs)
        if model.pretrained_cfg.get("fixed_input_size", False):
            raise ModelError(f"'{name}' needs a fixed input size and does not accept input_size={size}.") from None

    source = f"timm: {name} ({'pretrained' if pretrained else 'random init'})"
    if state is not None:
        key = classifier_key(model)
        if key is not None and key in state:
            ckpt_classes = int(state[key].shape[0])
            own_classes = int(model.state_dict()[key].shape[0])
            if ckpt_classes != own_classes:
                if num_classes is not None:
                    raise ModelError(
                        f"The checkpoint's classifier ({key}) has {ckpt_classes} classes but the number of classes "
                        f"is set to {num_classes}. Set the number of classes to {ckpt_classes}.")
                model.reset_classifier(ckpt_classes)
        label = checkpoint_name or (Path(checkpoint).name if isinstance(checkpoint, (str, Path)) else "upload")
        try:
            load_state_strict(model, state, f"'{label}'")
        except ModelError as e:
            own = model.state_dict()
            hints = []
            if "pos_embed" in own and "pos_embed" in state and own["pos_embed"].shape != state["pos_embed"].shape:
                hints.append("The position embeddings differ in size: set the input size the checkpoint was trained at.")
            raise ModelError(" ".join([str(e), *hints])) from None
        source = f"timm: {name} + checkpoint '{label}'"

    cfg = dict(getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {})
    n_out = int(getattr(model, "num_classes", 0) or 0)
    names = [str(c) for c in class_names] if class_names else [f"class {i}" for i in range(n_out)]
    if class_names and n_out and len(names) != n_out:
        raise ModelError(f"{len(names)} class names were given but the model has {n_out} outputs.")
    card = {
        "name": name,
        "architecture": {"family": "timm", "timm_name": name,
                         "kwargs": {k: v for k, v in create_kwargs.items() if k in ("num_classes", "img_size")}},
        "class_names": names,
        "input_size": size or [int(v) for v in cfg.get("input_size", (3, 224, 224))],
        "mean": [float(v) for v in cfg.get("mean", IMAGENET_MEAN)],
        "std": [float(v) for v in cfg.get("std", IMAGENET_STD)],
        "test_accuracy": None,
        "source": source,
        "pretrained": bool(pretrained),
    }
    if n_out:
        card["architecture"]["kwargs"]["num_classes"] = n_out
    return attach_card(model, card)


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------

_STATE_KEYS = ("state_dict", "model_state_dict", "model")
_PREFIXES = ("module.", "_orig_mod.")


def _sniff_format(data: bytes) -> str:
    """'safetensors' or 'torch' from the first bytes (safetensors: u64 header length then '{')."""
    if len(data) >= 9 and data[8:9] == b"{":
        return "safetensors"
    return "torch"


def read_checkpoint(checkpoint: bytes | str | Path, checkpoint_name: str | None = None) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors or .pth/.pt bytes (or a path), never unpickling code.

    Torch files go through ``torch.load(weights_only=True)``. A dict with a ``state_dict``,
    ``model_state_dict`` or ``model`` entry is unwrapped, and ``module.`` / ``_orig_mod.``
    prefixes (DataParallel, torch.compile) are stripped.
    """
    if isinstance(checkpoint, (str, Path)):
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise ModelError(f"No checkpoint file at '{path}'.")
        checkpoint_name = checkpoint_name or path.name
        data = path.read_bytes()
    elif isinstance(checkpoint, (bytes, bytearray, memoryview)):
        data = bytes(checkpoint)
    else:
        raise ModelError(f"checkpoint must be bytes or a file path, got {type(checkpoint).__name__}.")
    label = f"'{checkpoint_name}'" if checkpoint_name else "the uploaded checkpoint"
    if not data:
        raise ModelError(f"{label} is empty.")
    suffix = Path(checkpoint_name).suffix.lower() if checkpoint_name else ""
    fmt = {".safetensors": "safetensors", ".pth": "torch", ".pt": "torch", ".bin": "torch", ".ckpt": "torch"}.get(suffix)
    fmt = fmt or _sniff_format(data)
    corrupt = f"{label} is truncated or not a safetensors/torch file"
    if fmt == "safetensors":
        try:
            obj = safetensors_load(data)
        except Exception as e:  # SafetensorError, or a header that is not JSON
            raise ModelError(f"{corrupt} ({e}).") from e
    else:
        try:
            with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it better
                warnings.simplefilter("ignore", UserWarning)
                obj = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
        except pickle.UnpicklingError as e:
            text = str(e)
            if "GLOBAL" in text or "global" in text:
                blocked = next((line.strip() for line in text.splitlines() if "GLOBAL" in line or "global" in line), "")
                raise ModelError(
                    f"{label} contains code or Python objects besides tensors, and such files are never unpickled here "
                    f"(for safety only weights are read). Save just the state dict, ideally with "
                    f"safetensors.torch.save_file(model.state_dict(), 'weights.safetensors'). [{blocked}]") from None
            raise ModelError(f"{corrupt}: it is not a torch.save file that holds only tensors "
                             f"(plain pickles and objects are never unpickled).") from None
        except Exception as e:  # RuntimeError (bad zip), EOFError, ...
            raise ModelError(f"{corrupt} ({type(e).__name__}).") from None
    return _state_dict_of(obj, label)


def _state_dict_of(obj, label: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in _STATE_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise ModelError(f"{label} holds no state dict (expected a mapping of parameter names to tensors).")
    state = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue  # bookkeeping entries such as "epoch" next to tensors
        key = str(key)
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        state[key] = value
    if not state:
        raise ModelError(f"{label} holds no tensors; keys found: {', '.join(map(str, list(obj)[:8]))}.")
    return state


def describe(name: str) -> str:
    """One line about a shipped model, from its card."""
    try:
        card = read_card(name)
    except (ModelError, OSError, ValueError):
        return name
    acc = card.get("test_accuracy")
    return card.get("description", name) + (f" Test accuracy {acc:.1%}." if isinstance(acc, (int, float)) else "")
