"""Model registry: the shipped zoo, timm models by name, and local checkpoints.

Checkpoints and model folders are user input. A checkpoint is never unpickled (safetensors, or
``torch.load(weights_only=True)`` after its zip directory is bounded), its format is read from its
content rather than its name, and every tensor must be dense, hold data, be unquantized, real and
finite. A model card is bounded in size and nesting before it is parsed, checked entry by entry,
and its architecture is built on the meta device and compared with the weights before a real
model is built. Every refusal is a :class:`ModelError` that names the file and the fix.
"""
from __future__ import annotations

import difflib
import io
import json
import math
import os
import pickle
import re
import socket
import struct
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as safetensors_load
from torch import nn

from core.errors import UserError
from core.limits import MAX_CARD_BYTES, MAX_CARD_DEPTH, MAX_CHECKPOINT_BYTES, MAX_INPUT_SIDE, MAX_MODEL_CLASSES

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
    return _read_card_json(path)


def attach_card(model: nn.Module, card: dict) -> nn.Module:
    model.card = card
    model.eval()
    return model


def _plain(exc: BaseException) -> str:
    """The first line of an exception's message, without memory addresses, for a user-facing message."""
    text = str(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)[:300]


def _show(keys: list[str]) -> str:
    return ", ".join(keys[:8]) + (f" … (+{len(keys) - 8} more)" if len(keys) > 8 else "")


def _mismatch(own: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor]) -> list[str]:
    """What differs between a model's parameter shapes and a state dict: missing, unexpected, wrong shape."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if own[k] != tuple(state[k].shape))
    parts = []
    if missing:
        parts.append(f"missing keys ({len(missing)}): {_show(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {_show(unexpected)}")
    if wrong_shape:
        parts.append("shape mismatches (checkpoint vs model): "
                     + _show([f"{k} {tuple(state[k].shape)} vs {own[k]}" for k in wrong_shape]))
    return parts


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a state dict, turning key and shape mismatches into one readable ModelError."""
    parts = _mismatch({k: tuple(v.shape) for k, v in model.state_dict().items()}, state)
    if parts:
        raise ModelError(f"The checkpoint {source} does not match the architecture: " + "; ".join(parts) + ". It holds "
                         "the weights of another architecture: choose the one it was saved from.")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:  # e.g. a dtype that cannot be copied into float parameters
        raise ModelError(f"The checkpoint {source} could not be copied into the model ({_plain(e)}).") from None


# --------------------------------------------------------------------------------------------
# Model folders: card.json + model.safetensors
# --------------------------------------------------------------------------------------------

#: timm.create_model's own keywords (they load files, download, or change what the model is), never
#: taken from a model card or passed through as architecture arguments.
_FACTORY_KWARGS = frozenset({"pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir",
                             "scriptable", "exportable", "no_jit", "features_only", "device", "dtype", "pretrained_strict",
                             "weights_only", "out_indices", "feature_cls", "embed_layer"})
_FAMILIES = ("timm", "vit-convstem")
_MAX_ARGUMENT = 1_000_000  # no width, size or count of a real architecture comes near this
_MAX_LAYERS = 1_000  # layers/blocks in all: ResNet-1001 is the deepest classic
_LAYER_COUNT = re.compile(r"depth|layers|blocks", re.IGNORECASE)
_CARD_EXAMPLE = ('{"architecture": {"family": "timm", "timm_name": "resnet18", "kwargs": {"num_classes": 3}}, '
                 '"class_names": ["cat", "dog", "emu"]}')
_JSON_TOKENS = re.compile(r'\\.|["\[\]{}]')


def _json_depth(text: str) -> int:
    """Deepest nesting of [ and { in JSON text, outside strings; linear, without recursion."""
    depth = peak = 0
    in_string = False
    for token in _JSON_TOKENS.findall(text):
        if token == '"':
            in_string = not in_string
        elif in_string or len(token) == 2:  # escapes only occur inside strings
            continue
        elif token in "[{":
            depth += 1
            peak = max(peak, depth)
        else:
            depth -= 1
    return peak


def _json_type(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number")


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _read_card_json(path: Path) -> dict:
    """A model card as a dict, refusing before parsing anything that is too large or too deeply nested."""
    where = f"The model card '{path}'"
    try:
        size = path.stat().st_size
        if size > MAX_CARD_BYTES:
            raise ModelError(f"{where} is {size:,} bytes; a model card is a short JSON file (at most {MAX_CARD_BYTES:,} "
                             f"bytes), e.g. {_CARD_EXAMPLE}.")
        raw = path.read_bytes()
    except OSError as e:
        raise ModelError(f"Could not read the model card '{path}': {e.strerror or _plain(e)}.") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ModelError(f"{where} is not UTF-8 text (byte {e.start} cannot be read). Save it as UTF-8 JSON.") from None
    depth = _json_depth(text)
    if depth > MAX_CARD_DEPTH:
        raise ModelError(f"{where} is nested {depth:,} levels deep; a model card needs a few (at most {MAX_CARD_DEPTH} are "
                         f"accepted). It is not a model card: write one like {_CARD_EXAMPLE}.")
    try:
        card = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise ModelError(f"{where} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}). Fix it; a card looks "
                         f"like {_CARD_EXAMPLE}.") from None
    except (ValueError, RecursionError) as e:  # NaN/Infinity, numbers of thousands of digits
        raise ModelError(f"{where} could not be read as JSON ({_plain(e)}). A card looks like {_CARD_EXAMPLE}.") from None
    if not isinstance(card, dict):
        raise ModelError(f"{where} must hold a JSON object such as {_CARD_EXAMPLE}; it holds {_json_type(card)}.")
    return card


def _name_list(value, what: str, where: str) -> list[str]:
    """A list of class names: strings (or numbers, written as text)."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        shown = f"the text {value!r}" if isinstance(value, str) else f"{_json_type(value)} ({value!r})"
        raise ModelError(f"{where}: {what} must be a list of names such as [\"cat\", \"dog\"], got {shown}.")
    bad = [v for v in value if isinstance(v, bool) or not isinstance(v, (str, int, float))]
    if bad:
        raise ModelError(f"{where}: {what} must be a list of names (text), but it holds {_json_type(bad[0])}: {bad[0]!r}.")
    names = [str(v) for v in value]
    if len(names) > MAX_MODEL_CLASSES:
        raise ModelError(f"{where}: {what} lists {len(names):,} names; at most {MAX_MODEL_CLASSES:,} classes are accepted.")
    return names


def _number_list(value, what: str, where: str, positive: bool = False) -> list[float]:
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in value)
            or (positive and any(v <= 0 for v in value))):
        sign = "positive " if positive else ""
        raise ModelError(f"{where}: {what} must be a list of three {sign}numbers (one per colour channel, e.g. "
                         f"[0.5, 0.5, 0.5]), got {value!r}.")
    return [float(v) for v in value]


def _check_architecture(arch, where: str) -> dict:
    """A card's ``architecture`` entry, checked field by field (the family, the timm name, the arguments)."""
    example = "'architecture': {\"family\": \"timm\", \"timm_name\": \"resnet18\", \"kwargs\": {\"num_classes\": 3}}"
    if not isinstance(arch, dict):
        raise ModelError(f"{where}: 'architecture' must be an object such as {example}; it is {_json_type(arch)} "
                         f"({arch!r:.80}).")
    family = arch.get("family")
    if family not in _FAMILIES:
        got = "missing" if "family" not in arch else f"{family!r}"
        raise ModelError(f"{where}: the architecture's 'family' must be one of {', '.join(map(repr, _FAMILIES))}; it is "
                         f"{got}. Write it like {example}.")
    kwargs = arch.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise ModelError(f"{where}: the architecture's 'kwargs' must be an object of arguments such as "
                         f"{{\"num_classes\": 3}}; it is {_json_type(kwargs)}.")
    refused = sorted(k for k in kwargs if k in _FACTORY_KWARGS)
    if refused:
        raise ModelError(f"{where}: the architecture argument(s) {', '.join(map(repr, refused))} are not accepted in a "
                         "model card (they would load other files or change what the model is). Remove them.")
    if "num_classes" in kwargs:
        _num_classes(kwargs["num_classes"], f"{where}: the architecture's 'num_classes'")
    for key, value in kwargs.items():
        # Even on the meta device, building costs time per layer: bound what a card may ask for.
        numbers = value if isinstance(value, list) else [value]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
            continue
        if any(not math.isfinite(v) or abs(v) > _MAX_ARGUMENT for v in numbers) or len(numbers) > 64 or (
                _LAYER_COUNT.search(key) and sum(numbers) > _MAX_LAYERS):
            raise ModelError(f"{where}: the architecture argument {key!r} = {value!r:.60} is larger than any real model "
                             "uses. Correct it.")
    if family == "timm":
        name = arch.get("timm_name")
        if not isinstance(name, str) or not name:
            raise ModelError(f"{where}: a 'timm' architecture needs 'timm_name', the name of a timm model such as "
                             f"'resnet18'; it is {'missing' if name is None else _json_type(name)}.")
        _check_timm_name(name, where=f"{where} names the timm architecture")
    return {**arch, "kwargs": dict(kwargs)}


def _check_card(card: dict, where: str) -> dict:
    """Check a model card's entries and fill the defaults; returns the completed card."""
    if "architecture" not in card:
        raise ModelError(f"{where} has no 'architecture' entry. A card looks like {_CARD_EXAMPLE}.")
    card["architecture"] = _check_architecture(card["architecture"], where)
    card["class_names"] = _name_list(card.get("class_names"), "'class_names'", where)
    if card.get("input_size") is not None:
        card["input_size"] = _input_size(card["input_size"], where=f"{where}: 'input_size'")
    for key in ("mean", "std"):
        if card.get(key) is not None:
            card[key] = _number_list(card[key], repr(key), where, positive=key == "std")
    acc = card.get("test_accuracy")
    if acc is not None and (isinstance(acc, bool) or not isinstance(acc, (int, float)) or not 0 <= acc <= 1):
        raise ModelError(f"{where}: 'test_accuracy' must be a fraction between 0 and 1 (or null), got {acc!r}.")
    for key in ("name", "description", "source"):
        if card.get(key) is not None and not isinstance(card[key], str):
            raise ModelError(f"{where}: {key!r} must be text, got {_json_type(card[key])}.")
    return card


def _build_skeleton(arch: dict, where: str) -> nn.Module | None:
    """Build the architecture on the meta device: shapes only, no memory, so a card cannot ask for a
    model of a billion parameters before its shapes have been compared with the weights file.

    Returns None when the architecture cannot be built on the meta device (then the real build is
    the check).
    """
    try:
        with torch.device("meta"):
            return build_architecture(arch)
    except TypeError as e:
        raise _architecture_error(e, arch, where) from None
    except NotImplementedError:
        return None
    except (ValueError, KeyError, AttributeError, RuntimeError, AssertionError, IndexError, ZeroDivisionError,
            OverflowError) as e:
        if "meta" in str(e).lower():
            return None
        raise _architecture_error(e, arch, where) from None


def _architecture_error(e: Exception, arch: dict, where: str) -> ModelError:
    what = f"'{arch.get('timm_name')}'" if arch.get("family") == "timm" else f"the {arch.get('family')!r} family"
    unexpected = re.search(r"unexpected keyword argument '([^']+)'", str(e))
    if unexpected:
        return ModelError(f"{where} gives the argument '{unexpected.group(1)}' to {what}, which does not accept it. "
                          "Remove it or correct its name.")
    return ModelError(f"{where} describes an architecture that cannot be built ({type(e).__name__}: {_plain(e)}). "
                      f"Check the arguments of {what}; a card looks like {_CARD_EXAMPLE}.")


def _read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ModelError(f"Could not read the weights '{path}': {e.strerror or _plain(e)}.") from None
    if size > MAX_CHECKPOINT_BYTES:
        raise ModelError(f"The weights '{path}' are {size:,} bytes; at most {MAX_CHECKPOINT_BYTES:,} are accepted.")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelError(f"Could not read the weights '{path}': {e.strerror or _plain(e)}.") from None
    return read_checkpoint(data, path.name, label=f"The weights file '{path}'")


def load_from_dir(path: Path, source: str | None = None) -> nn.Module:
    """Load a zoo folder (card.json + model.safetensors).

    The card is checked entry by entry (see :func:`_check_card`), the weights are read without
    unpickling and checked tensor by tensor (dense, finite), and the architecture is first built on
    the meta device to compare its shapes with the weights, so only a model that matches its
    weights is ever built for real.
    """
    path = Path(path)
    card_path = path / "card.json"
    where = f"The model card '{card_path}'"
    card = _check_card(_read_card_json(card_path), where)
    card.setdefault("name", path.name)
    _complete_card(card, source or f"folder: {path}")
    state = _read_weights_file(path / "model.safetensors")
    arch = card["architecture"]
    skeleton = _build_skeleton(arch, where)
    if skeleton is not None:
        parts = _mismatch({k: tuple(v.shape) for k, v in skeleton.state_dict().items()}, state)
        if parts:
            raise ModelError(f"The weights '{path / 'model.safetensors'}' do not match the architecture that the model card "
                             f"describes: " + "; ".join(parts) + ". Fix the card's architecture or use the weights saved "
                             "from that architecture.")
    try:
        model = build_architecture(arch)
    except (ValueError, TypeError, KeyError, AttributeError, RuntimeError, AssertionError, IndexError,
            ZeroDivisionError, OverflowError) as e:  # the card's entry is the input here
        raise _architecture_error(e, arch, where) from None
    load_state_strict(model, state, f"'{path.name}'")
    if card.get("input_size") is None:  # preprocessing needs one: the model's own, else timm's default
        side = getattr(getattr(model, "patch_embed", None), "img_size", None)
        cfg = getattr(model, "pretrained_cfg", None) or {}
        card["input_size"] = [3, *side] if side else [int(v) for v in cfg.get("input_size", (3, 224, 224))]
    n_out = int(getattr(model, "num_classes", 0) or 0)
    if card["class_names"] and n_out and len(card["class_names"]) != n_out:
        raise ModelError(f"{where} lists {len(card['class_names'])} class names but the model has {n_out} outputs. "
                         "Give one name per output.")
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
    if not isinstance(name_or_path, (str, Path)):
        raise ModelError(f"A model is named by text (a shipped model, a folder or a timm name), got {type(name_or_path).__name__}.")
    name = str(name_or_path).strip()
    if not name:
        raise ModelError("No model given: choose a shipped model or type a timm architecture name.")
    if len(name) > 1000 or "\x00" in name:
        raise ModelError(f"'{name[:60]}…' is not a model name or a folder path (it is {len(name):,} characters long "
                         "or holds a NUL character). Type a timm name such as 'resnet18' or the path of a model folder.")
    if name in zoo():
        return load_from_dir(ASSETS / name, source=f"shipped zoo: assets/models/{name}")
    path = Path(name).expanduser()
    try:
        is_dir = path.is_dir()
    except (OSError, ValueError):  # e.g. a name too long for the file system: not a folder
        is_dir = False
    if is_dir:
        if not (path / "card.json").is_file() or not (path / "model.safetensors").is_file():
            raise ModelError(f"The folder '{path}' is not a model folder: it needs card.json and model.safetensors.")
        return load_from_dir(path)
    return load_timm(name, **params)


def _complete_card(card: dict, source: str) -> dict:
    card.setdefault("test_accuracy", None)
    card.setdefault("source", source)
    card["mean"] = card.get("mean") or list(IMAGENET_MEAN)
    card["std"] = card.get("std") or list(IMAGENET_STD)
    card["class_names"] = list(card.get("class_names") or [])
    return card


def _input_size(value, where: str = "input_size") -> list[int] | None:
    """[3, H, W] from a side length, (H, W) or (3, H, W); at least 8 and at most MAX_INPUT_SIDE pixels a side."""
    if value is None:
        return None
    bad = ModelError(f"{where} must be a side length, (H, W) or (3, H, W) in whole pixels; got {value!r:.80}.")
    if isinstance(value, bool):
        raise bad
    if isinstance(value, (int, float, np.integer, np.floating)):
        if not math.isfinite(float(value)) or float(value) != int(value):
            raise bad
        size = [3, int(value), int(value)]
    elif isinstance(value, (list, tuple)):
        if any(isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(float(v))
               or float(v) != int(v) for v in value):
            raise bad
        dims = [int(v) for v in value]
        if len(dims) == 2:
            size = [3, *dims]
        elif len(dims) == 3:
            size = dims
        else:
            raise bad
    else:
        raise bad
    if size[0] != 3 or not (8 <= size[1] <= MAX_INPUT_SIDE and 8 <= size[2] <= MAX_INPUT_SIDE):
        raise ModelError(f"{where} must be 3 channels and between 8×8 and {MAX_INPUT_SIDE}×{MAX_INPUT_SIDE} pixels; got {size}.")
    return size


def _num_classes(value, where: str = "The number of classes") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)) or float(value) != int(value):
        raise ModelError(f"{where} must be a whole number, got {value!r:.80}.")
    n = int(value)
    if not 1 <= n <= MAX_MODEL_CLASSES:
        raise ModelError(f"{where} must be between 1 and {MAX_MODEL_CLASSES:,}, got {n:,}.")
    return n


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
    """timm.create_model; TypeError (an argument the model does not take) is left to the caller."""
    import timm

    if pretrained:
        with _offline_hub():
            try:
                return timm.create_model(name, pretrained=True, **kwargs)
            except (TypeError, ModelError):
                raise
            except Exception as e:  # hub/URL errors: LocalEntryNotFoundError, OfflineModeIsEnabled, URLError, ...
                raise ModelError(_pretrained_hint(name) + f"\n(The download failed with {type(e).__name__}.)") from e
    try:
        return timm.create_model(name, pretrained=False, **kwargs)
    except TypeError:
        raise
    except (ValueError, KeyError, AttributeError, RuntimeError, AssertionError, IndexError, ZeroDivisionError) as e:
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "its defaults"
        raise ModelError(f"The timm architecture '{name}' cannot be built with {shown} ({_plain(e)}). "
                         "Change those settings.") from None


def _unknown_timm_name(name: str) -> ModelError:
    import timm

    names = timm.list_models()
    close = difflib.get_close_matches(name.lower(), names, n=5, cutoff=0.6) if len(name) <= 100 else []
    if not close:  # prefix matches catch "vit_tiny" -> vit_tiny_patch16_224
        close = [n for n in names if n.startswith(name.lower())][:5]
    shipped = ", ".join(zoo()) or "none"
    hint = f" Did you mean: {', '.join(close)}?" if close else " See timm_names() for the list."
    return ModelError(f"'{name}' is neither a shipped model ({shipped}), a model folder, nor a timm architecture.{hint}")


def _check_timm_name(name: str, where: str | None = None) -> None:
    """Refuse names timm does not list, and hub/local-dir sources ("hf-hub:...", "local-dir:...")."""
    import timm

    if ":" not in name and timm.is_model(name):
        return
    if where is None:
        raise _unknown_timm_name(name)
    close = difflib.get_close_matches(name.lower(), timm.list_models(), n=3, cutoff=0.6) if len(name) <= 100 else []
    hint = f" Did you mean: {', '.join(close)}?" if close else " See timm_names() for the list."
    raise ModelError(f"{where} '{name[:100]}', which this version of timm does not have.{hint}")


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

    Extra keyword arguments go to ``timm.create_model`` (not its own file- and hub-loading ones).
    """
    _check_timm_name(name)
    refused = sorted(k for k in kwargs if k in _FACTORY_KWARGS)
    if refused:
        raise ModelError(f"The argument(s) {', '.join(map(repr, refused))} are not accepted here; use checkpoint= to load "
                         "weights and pretrained= for timm's own weights.")
    names_given = _name_list(class_names, "class_names", f"The model '{name}'") if class_names is not None else []
    if num_classes is None and names_given:
        num_classes = len(names_given)
    if num_classes is not None:
        num_classes = _num_classes(num_classes)
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
    except TypeError as e:
        unexpected = re.search(r"unexpected keyword argument '([^']+)'", str(e))
        if size is None or (unexpected and unexpected.group(1) != "img_size"):
            arg = f"the argument '{unexpected.group(1)}'" if unexpected else f"these arguments ({_plain(e)})"
            raise ModelError(f"The timm architecture '{name}' does not accept {arg}. Remove it or correct its name.") from None
        # Most CNNs take any input size and have no img_size argument.
        create_kwargs = dict(kwargs)
        try:
            model = _create_timm(name, pretrained, create_kwargs)
        except TypeError as e2:
            raise ModelError(f"The timm architecture '{name}' does not accept these arguments ({_plain(e2)}).") from None
        if model.pretrained_cfg.get("fixed_input_size", False):
            raise ModelError(f"'{name}' needs a fixed input size and does not accept input_size={size}.") from None

    source = f"timm: {name} ({'pretrained' if pretrained else 'random init'})"
    if state is not None:
        label = checkpoint_name or (Path(checkpoint).name if isinstance(checkpoint, (str, Path)) else "upload")
        key = classifier_key(model)
        if key is not None and key in state:
            ckpt_head, own_head = state[key], model.state_dict()[key]
            if ckpt_head.ndim != own_head.ndim or ckpt_head.shape[0] < 1:
                raise ModelError(
                    f"The checkpoint '{label}' has a classifier weight '{key}' of shape {tuple(ckpt_head.shape)}, but "
                    f"'{name}' needs one of {own_head.ndim} dimensions with one row per class (e.g. "
                    f"{tuple(own_head.shape)}). The file is damaged or holds the weights of another architecture.")
            ckpt_classes = int(ckpt_head.shape[0])
            own_classes = int(own_head.shape[0])
            if ckpt_classes != own_classes:
                if num_classes is not None:
                    raise ModelError(
                        f"The checkpoint '{label}' has a classifier ({key}) of {ckpt_classes} classes but the number of "
                        f"classes is set to {num_classes}. Set the number of classes to {ckpt_classes} (or leave it "
                        "empty to take it from the checkpoint).")
                if ckpt_classes > MAX_MODEL_CLASSES:
                    raise ModelError(f"The checkpoint '{label}' has a classifier of {ckpt_classes:,} classes; at most "
                                     f"{MAX_MODEL_CLASSES:,} are accepted.")
                model.reset_classifier(ckpt_classes)
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
    names = names_given or [f"class {i}" for i in range(n_out)]
    if names_given and n_out and len(names) != n_out:
        raise ModelError(f"{len(names)} class names were given but the model has {n_out} outputs; give one name per output.")
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


_TORCH_ZIP = b"PK\x03\x04"
_SAVE_HINT = ("Save just the weights with safetensors.torch.save_file(model.state_dict(), 'weights.safetensors') "
              "(or torch.save(model.state_dict(), 'weights.pth')) and upload that file.")


def _sniff_format(data: bytes) -> str | None:
    """'safetensors', 'torch' or None, from the first bytes (whatever the file is called).

    safetensors: a little-endian u64 header length, then the JSON header's '{'. torch.save: a zip
    archive (PyTorch 1.6 and later) or, for older files, a pickle stream (b'\\x80' and a protocol).
    """
    if len(data) >= 9 and data[8:9] == b"{":
        return "safetensors"
    if data.startswith(_TORCH_ZIP) or (data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")):
        return "torch"
    return None


def _check_torch_zip(data: bytes, label: str, corrupt: str, max_bytes: int) -> None:
    """Bound what a torch.save archive unpacks to before torch reads it (its records may be compressed)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            declared = sum(i.file_size for i in zf.infolist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError):
        raise ModelError(f"{corrupt}: it starts like a torch.save archive but its end is missing or damaged (the upload "
                         f"is cut short?). Upload the complete file again, or: {_SAVE_HINT}") from None
    if declared > max_bytes:
        raise ModelError(f"{label} unpacks to {declared:,} bytes; at most {max_bytes:,} are accepted. A model this large "
                         "does not suit this server: choose a smaller architecture.")


def read_checkpoint(checkpoint: bytes | str | Path, checkpoint_name: str | None = None, *,
                    label: str | None = None, max_bytes: int = MAX_CHECKPOINT_BYTES) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors or .pth/.pt bytes (or a path), never unpickling code.

    The format is read from the content (a valid file with the wrong extension still loads).
    Torch files go through ``torch.load(weights_only=True)`` after the sizes in their zip directory
    are bounded by ``max_bytes``. A dict with a ``state_dict``, ``model_state_dict`` or ``model``
    entry is unwrapped, and ``module.`` / ``_orig_mod.`` prefixes (DataParallel, torch.compile) are
    stripped. Every tensor must be dense, hold data (not 'meta'), be unquantized, real and finite.
    """
    if isinstance(checkpoint, (str, Path)):
        path = Path(checkpoint).expanduser()
        try:
            if not path.is_file():
                raise ModelError(f"No checkpoint file at '{path}'.")
            size = path.stat().st_size
            if size > max_bytes:
                raise ModelError(f"The checkpoint '{path}' is {size:,} bytes; at most {max_bytes:,} are accepted.")
            data = path.read_bytes()
        except OSError as e:
            raise ModelError(f"Could not read the checkpoint '{path}': {e.strerror or _plain(e)}.") from None
        checkpoint_name = checkpoint_name or path.name
    elif isinstance(checkpoint, (bytes, bytearray, memoryview)):
        data = bytes(checkpoint)
    else:
        raise ModelError(f"checkpoint must be bytes or a file path, got {type(checkpoint).__name__}.")
    label = label or (f"'{checkpoint_name}'" if checkpoint_name else "the uploaded checkpoint")
    if not data:
        raise ModelError(f"{label} is empty.")
    if len(data) > max_bytes:
        raise ModelError(f"{label} is {len(data):,} bytes; at most {max_bytes:,} are accepted.")
    corrupt = f"{label} is truncated or not a safetensors/torch file"
    fmt = _sniff_format(data)
    if fmt is None:
        raise ModelError(f"{corrupt}: it starts with {data[:12]!r}, which is neither how a safetensors file nor how a "
                         f"torch.save file begins. {_SAVE_HINT}")
    if fmt == "safetensors":
        try:
            obj = safetensors_load(data)
        except Exception as e:  # SafetensorError, or a header that is not JSON
            declared = struct.unpack("<Q", data[:8])[0]
            why = (f"its header declares {declared:,} bytes but the file has {len(data) - 8:,} after the length"
                   if declared > len(data) - 8 else f"the safetensors reader says: {_plain(e)}")
            raise ModelError(f"{corrupt}: it starts like a safetensors file but is damaged or cut short ({why}). "
                             f"Upload the complete file again, or: {_SAVE_HINT}") from None
    else:
        if data.startswith(_TORCH_ZIP):
            _check_torch_zip(data, label, corrupt, max_bytes)
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
                             f"(plain pickles and objects are never unpickled). {_SAVE_HINT}") from None
        except Exception as e:  # RuntimeError (bad zip), EOFError, ...
            raise ModelError(f"{corrupt}: PyTorch could not read it ({_plain(e)}). Upload the complete file again, "
                             f"or: {_SAVE_HINT}") from None
    return _state_dict_of(obj, label)


def _tensor_problem(t: torch.Tensor) -> str | None:
    """Why a tensor cannot be loaded as a weight, or None."""
    if t.is_meta:
        return ("holds no data (it is a 'meta' tensor, saved from a model whose weights were never created); save "
                "the state dict of the trained model")
    if t.layout != torch.strided:
        return f"is not a dense tensor (layout {str(t.layout).replace('torch.', '')}); save dense weights (tensor.to_dense())"
    if t.is_quantized:
        return (f"is quantized ({str(t.dtype).replace('torch.', '')}); save the float model's state dict, from before "
                "quantization")
    if t.is_complex():
        return f"holds complex numbers ({str(t.dtype).replace('torch.', '')}); weights are real numbers"
    if t.is_floating_point():
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            n_bad = int((~finite).sum())
            n_nan = int(torch.isnan(t).sum())
            return (f"holds {n_bad:,} non-finite value(s) ({n_nan:,} NaN, {n_bad - n_nan:,} infinite) out of {t.numel():,}, "
                    "so the model's outputs would not be numbers. Training probably diverged: use a checkpoint from "
                    "before it did")
    return None


def _state_dict_of(obj, label: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in _STATE_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise ModelError(f"{label} holds no state dict (expected a mapping of parameter names to tensors). {_SAVE_HINT}")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue  # bookkeeping entries such as "epoch" next to tensors
        original = key = str(key)
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        if key in state:
            raise ModelError(f"{label} holds the tensor '{key}' twice (again as '{original}'). {_SAVE_HINT}")
        problem = _tensor_problem(value)
        if problem:
            raise ModelError(f"{label}: the tensor '{original}' {problem}.")
        state[key] = value
    if not state:
        raise ModelError(f"{label} holds no tensors; keys found: {', '.join(map(str, list(obj)[:8]))}. {_SAVE_HINT}")
    return state


def describe(name: str) -> str:
    """One line about a shipped model, from its card."""
    try:
        card = read_card(name)
    except (ModelError, OSError, ValueError):
        return name
    acc = card.get("test_accuracy")
    return card.get("description", name) + (f" Test accuracy {acc:.1%}." if isinstance(acc, (int, float)) else "")
