"""The attribution registry, its error type, and the model adapter every method runs through.

Every method is a function registered with :func:`register` in :data:`REGISTRY` (a
:class:`core.spec.Registry`). Its docstring is the description the UI shows (what it computes,
the formula and the paper); its :class:`~core.spec.ParamSpec` tuple becomes the controls; its
``cost`` says how many forward and backward passes it needs per sample, so a page can ask for
confirmation before a long run.

A method is called as ``impl(subject, params) -> (values, info)`` where ``subject`` is a
:class:`Subject`: the model, the validated input ``x``, the targets and the batched ways to run
the model. ``values`` has exactly the shape of ``x``; ``info`` holds facts worth showing (IG's
completeness gap, how many ReAGent probes stopped, ...).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from core.errors import UserError
from core.spec import Capabilities, MethodSpec, ParamSpec, Registry  # noqa: F401  (ParamSpec: re-exported)


class AttributionError(UserError):
    """An attribution method or metric was given something it cannot use; the message is for the user."""


#: Everything a method can need, completing "<method> needs ..." (checked in this order, so the
#: kind of input is named first: Grad-CAM on a table "needs image inputs").
NEEDS = {
    "images": "image inputs",
    "tables": "table inputs (rows of features)",
    "gradients": "the gradients of a differentiable torch model",
    "spatial-layer": "a spatial feature map (a CNN's convolutional stages or a Vision Transformer's patch tokens)",
    "attention": "the attention maps of a timm Vision Transformer",
}
GROUPS = ("gradient", "perturbation", "shapley", "class-activation", "attention")
ORDER = ("saliency", "grad-x-input", "integrated-gradients", "smoothgrad", "vargrad", "gradcam", "attention-rollout",
         "occlusion", "rise", "feature-ablation", "permutation", "kernelshap", "exact-shapley", "reagent")

#: Upper bound on the features exact Shapley values enumerate (2^M coalitions).
EXACT_SHAPLEY_MAX_FEATURES = 12


@dataclass(frozen=True)
class PassEstimate:
    """How much model work a run takes: ``forward`` passes (one input each) and ``backward`` passes.

    ``equivalent`` counts a backward pass as two forward passes (its usual cost), so a page can
    compare methods on one number.
    """

    forward: int
    backward: int = 0

    @property
    def equivalent(self) -> int:
        return int(self.forward + 2 * self.backward)

    def __add__(self, other: PassEstimate) -> PassEstimate:
        return PassEstimate(self.forward + other.forward, self.backward + other.backward)

    def scaled(self, k: int) -> PassEstimate:
        return PassEstimate(self.forward * int(k), self.backward * int(k))


@dataclass(frozen=True)
class AttributionSpec(MethodSpec):
    """A :class:`MethodSpec` with the facts of attribution.

    ``inputs``: the input kinds the method explains ({"image"}, {"table"} or both).
    ``score``: what it attributes, "logit" (the target's logit; a scikit-learn model's
    probability) or "probability" (the softmax probability; RISE and ReAGent are defined on it).
    ``cost(facts, params) -> PassEstimate``: passes *per sample* for the input described by
    ``facts`` (see :func:`input_facts`). ``stochastic``: the result depends on ``seed``.
    """

    inputs: frozenset[str] = frozenset({"image"})
    score: str = "logit"
    cost: Callable[[Mapping[str, Any], Mapping[str, Any]], PassEstimate] | None = field(default=None, compare=False,
                                                                                       repr=False)
    stochastic: bool = False


def _check_method(spec: AttributionSpec, caps: Capabilities) -> str | None:
    """Family-specific reasons a method does not apply, beyond the needs the registry checks."""
    facts = caps.facts
    kind = facts.get("input_kind")
    if kind is not None and kind not in spec.inputs:
        made_for = " and ".join(sorted(spec.inputs))
        return f"{spec.name} explains {made_for} inputs; this input is a {kind}."
    if spec.id == "exact-shapley":
        m = facts.get("n_features")
        if m is not None and m > EXACT_SHAPLEY_MAX_FEATURES:
            return (f"Exact Shapley values enumerate all 2^M coalitions and are limited to {EXACT_SHAPLEY_MAX_FEATURES} "
                    f"features; this table has {m}. Use KernelSHAP, which samples coalitions.")
    return None


#: every attribution method, in the registry shared by all analysis modules (core.spec)
REGISTRY: Registry[AttributionSpec] = Registry(
    "attribution", noun="method", error=AttributionError, groups=GROUPS, needs=NEEDS, order=ORDER,
    check=_check_method, spec_type=AttributionSpec)


def register(id: str, name: str, group: str, needs, reference: str, params=(), inputs=("image",), score: str = "logit",
             cost=None, stochastic: bool = False, slow: str | None = None):
    """Decorator for a method function ``impl(subject, params) -> (values, info)``; its docstring is the description."""
    if score not in ("logit", "probability"):
        raise ValueError(f"score must be 'logit' or 'probability', got {score!r}")
    return REGISTRY.register(id, name, group, needs, reference, params=params, inputs=frozenset(inputs), score=score,
                             cost=cost, stochastic=stochastic, slow=slow)


# ---------------------------------------------------------------------------------------------- params
def seed_param() -> ParamSpec:
    return ParamSpec("seed", 0, "int", "Seed of every random draw, so a run can be repeated exactly.", low=0, high=2**31 - 1)


def image_side_bound(facts: Mapping[str, Any]) -> float | None:
    side = facts.get("image_side")
    return None if side is None else float(side)


# ---------------------------------------------------------------------------------------------- model
def is_torch(model) -> bool:
    return isinstance(model, nn.Module)


def has_proba(model) -> bool:
    return callable(getattr(model, "predict_proba", None))


def vit_parts(model) -> dict | None:
    """The pieces of a timm-style Vision Transformer (blocks, patch grid, prefix tokens, pooling), or None."""
    blocks = getattr(model, "blocks", None)
    embed = getattr(model, "patch_embed", None)
    if not isinstance(blocks, (nn.Sequential, nn.ModuleList)) or len(blocks) == 0 or embed is None:
        return None
    grid = getattr(embed, "grid_size", None)
    if grid is None or len(tuple(grid)) != 2:
        return None
    return {"blocks": blocks, "grid": tuple(int(g) for g in grid),
            "prefix": int(getattr(model, "num_prefix_tokens", 1 if getattr(model, "cls_token", None) is not None else 0)),
            "pool": str(getattr(model, "global_pool", "token"))}


def has_standard_attention(model) -> bool:
    """Every block has a timm ``Attention`` (a fused ``qkv`` projection and ``num_heads``)."""
    parts = vit_parts(model)
    if parts is None:
        return False
    for blk in parts["blocks"]:
        attn = getattr(blk, "attn", None)
        if attn is None or not isinstance(getattr(attn, "qkv", None), nn.Linear) or not hasattr(attn, "num_heads"):
            return False
    return True


def cnn_stages(model) -> list[str]:
    """Module names of a CNN's spatial stages, shallow to deep (timm ``feature_info``; else every Conv2d)."""
    if vit_parts(model) is not None:
        return []
    info = getattr(model, "feature_info", None)
    names = []
    if isinstance(info, list):
        names = [d.get("module") for d in info if isinstance(d, dict) and d.get("module")]
    elif info is not None and hasattr(info, "module_name"):
        try:
            names = list(info.module_name())
        except (TypeError, AttributeError):
            names = []
    modules = dict(model.named_modules())
    names = [n for n in names if n in modules]
    if names:
        return names
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def card_of(model) -> dict:
    card = getattr(model, "card", None)
    return card if isinstance(card, dict) else {}


def pixel_bounds(model, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel values of a black and a white pixel in the model's input space, shaped [1, C, 1, 1].

    The input is ``(pixel - mean) / std`` with the model card's normalisation (the defaults of
    :func:`core.extract.preprocess` without a card), so black is ``-mean/std``."""
    card = card_of(model)
    mean = list(card.get("mean", (0.5,) * 3))
    std = list(card.get("std", (0.25,) * 3))
    if len(mean) != channels:
        mean = [float(np.mean(mean))] * channels
    if len(std) != channels:
        std = [float(np.mean(std))] * channels
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (0.0 - m) / s, (1.0 - m) / s


# ---------------------------------------------------------------------------------------------- input
def input_kind(model, x) -> str:
    """"image" for a torch model on a 4-D input, "table" for 2-D inputs; an AttributionError otherwise."""
    if is_torch(model):
        ndim = x.ndim if hasattr(x, "ndim") else np.asarray(x).ndim
        if isinstance(x, pd.DataFrame) or ndim == 2:
            return "table"
        if ndim == 4:
            return "image"
        raise AttributionError(f"A torch model's input must be images [N, C, H, W] or table rows [N, F]; got an array "
                               f"with {ndim} dimensions. For one image pass x[None].")
    if has_proba(model):
        return "table"
    raise AttributionError(f"Cannot explain a {type(model).__name__}: expected a torch model or a model with "
                           "predict_proba (scikit-learn, core.models.tabular.TabularModel).")


def input_facts(model, x) -> dict[str, Any]:
    """Facts about an input that bound parameters and estimate costs: its kind, the number of
    samples, the image side and channels, or the number of features."""
    kind = input_kind(model, x)
    shape = tuple(np.shape(x))
    facts: dict[str, Any] = {"input_kind": kind, "n": int(shape[0]), "shape": shape}
    if kind == "image":
        facts.update(channels=int(shape[1]), height=int(shape[2]), width=int(shape[3]),
                     image_side=int(min(shape[2], shape[3])), n_pixels=int(shape[2] * shape[3]))
    else:
        facts.update(n_features=int(shape[1]))
    return facts


def _table_array(model, x) -> tuple[np.ndarray, list[str] | None]:
    names = None
    if isinstance(x, pd.DataFrame):
        want = list(getattr(model, "feature_names", []) or [])
        cols = [str(c) for c in x.columns]
        if want and set(want) <= set(cols) and cols != want:
            if len(cols) != len(want):
                raise AttributionError(f"The table has {len(cols)} columns but the model reads {len(want)} features; "
                                       "pass exactly the model's feature columns so the result can keep x's shape.")
            x = x[[x.columns[cols.index(c)] for c in want]]
        names = [str(c) for c in x.columns]
        try:
            arr = x.to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise AttributionError(f"Every table column must be numeric: {e}") from None
    else:
        arr = np.asarray(x, dtype=np.float64) if not isinstance(x, torch.Tensor) else x.detach().double().numpy()
    if arr.ndim != 2:
        raise AttributionError(f"Table inputs must be 2-D [rows, features], got shape {arr.shape}.")
    return arr, names


def resolve_targets(target, n: int, num_classes: int, predicted: Callable[[], np.ndarray]) -> np.ndarray:
    """``target`` as int64 [n]: None means each sample's predicted class; an int applies to all."""
    if target is None:
        return np.asarray(predicted(), np.int64)
    if isinstance(target, torch.Tensor):
        target = target.detach().cpu().numpy()
    t = np.asarray(target)
    if t.ndim == 0:
        t = np.full(n, int(t))
    if t.shape != (n,):
        raise AttributionError(f"target must be one class index or one per sample ({n}), got shape {t.shape}.")
    if not np.issubdtype(t.dtype, np.integer):
        if not np.all(np.equal(np.mod(t, 1), 0)):
            raise AttributionError(f"target must hold class indices (integers), got {t[:4]!r}.")
    t = t.astype(np.int64)
    bad = (t < 0) | (t >= num_classes)
    if bad.any():
        raise AttributionError(f"target must lie in 0..{num_classes - 1} (the model's classes); got {t[bad][:4].tolist()}.")
    return t


# ---------------------------------------------------------------------------------------------- subject
#: Input elements per chunk: bounds memory whatever the number of perturbations (4 MB of float32
#: input, so a 64×64 RGB model sees batches of 85 rows and a 224×224 one of 20). Measured on the
#: shipped models with one thread: forward throughput is flat from 16 to 128 rows and 20-30% lower
#: at 256-512 (activations fall out of cache); backward throughput is flat from 32 to 256.
FORWARD_BUDGET = 1 << 20
GRADIENT_BUDGET = 1 << 20
MAX_ROWS = 512


@dataclass
class Subject:
    """The model under explanation with its validated input, targets and batched runners.

    ``backend``: "torch" (an ``nn.Module``; images [N,C,H,W] or table rows [N,F]) or "proba"
    (anything with ``predict_proba``; table rows). ``x``: a float32 tensor for torch, a float64
    array for proba models. ``background``: reference rows for table methods (float64 [K, F]).
    ``progress(fraction)`` is called as chunks finish.
    """

    model: Any
    backend: str
    kind: str
    x: Any
    targets: np.ndarray
    num_classes: int
    background: np.ndarray | None = None
    feature_names: list[str] | None = None
    batch_size: int | None = None
    progress: Callable[[float], None] | None = None

    # -- construction
    @classmethod
    def build(cls, model, x, target=None, background=None, batch_size: int | None = None,
              progress: Callable[[float], None] | None = None) -> Subject:
        kind = input_kind(model, x)
        if batch_size is not None and (int(batch_size) < 1):
            raise AttributionError(f"batch_size must be at least 1, got {batch_size}.")
        names = None
        if is_torch(model):
            backend = "torch"
            if kind == "table":
                arr, names = _table_array(model, x)
                xt = torch.tensor(arr, dtype=torch.float32)
            else:
                if isinstance(x, np.ndarray):
                    if x.dtype == np.uint8:
                        raise AttributionError("x holds uint8 pixels; pass the model input instead, e.g. "
                                               "core.extract.preprocess(images, model.card) (a float tensor [N, 3, H, W]).")
                    xt = torch.tensor(np.asarray(x), dtype=torch.float32)
                elif isinstance(x, torch.Tensor):
                    xt = x.detach().float().contiguous()
                else:
                    raise AttributionError(f"Image inputs must be a torch tensor or numpy array, got {type(x).__name__}.")
            if len(xt) == 0:
                raise AttributionError("x holds no samples.")
            if not torch.isfinite(xt).all():
                raise AttributionError("x contains NaN or inf; attributions need finite inputs.")
            subject = cls(model=model, backend=backend, kind=kind, x=xt, targets=np.zeros(0, np.int64), num_classes=0,
                          feature_names=names, batch_size=batch_size, progress=progress)
            # without a target the predictions are needed anyway; otherwise one row tells the output's shape
            probe = subject.predict_torch(xt) if target is None else subject.predict_torch(xt[:1])
            if probe.ndim != 2:
                raise AttributionError(f"The model must return logits [N, classes]; it returned shape {tuple(probe.shape)}.")
            subject.num_classes = int(probe.shape[1])
            predicted = probe.argmax(1).numpy().astype(np.int64) if target is None else None
        else:
            arr, names = _table_array(model, x)
            if len(arr) == 0:
                raise AttributionError("x holds no rows.")
            if not np.isfinite(arr).all():
                raise AttributionError("x contains NaN or inf; attributions need finite inputs.")
            want = getattr(model, "feature_names", None)
            if want and len(want) != arr.shape[1]:
                raise AttributionError(f"The model reads {len(want)} features but x has {arr.shape[1]} columns.")
            subject = cls(model=model, backend="proba", kind="table", x=arr, targets=np.zeros(0, np.int64), num_classes=0,
                          feature_names=names or (list(want) if want else None), batch_size=batch_size, progress=progress)
            subject.num_classes = int(subject.predict_np(arr[:1]).shape[1])
            predicted = None
        if kind == "table":
            subject.background = subject._background(background)
        subject.targets = predicted if predicted is not None else resolve_targets(
            target, subject.n, subject.num_classes, lambda: subject.predict_np(subject.x_np).argmax(1))
        return subject

    def _background(self, background) -> np.ndarray:
        if background is None:
            return self.x_np.copy()
        bg, _ = _table_array(self.model, background)
        if bg.shape[1] != self.x_np.shape[1]:
            raise AttributionError(f"The background rows have {bg.shape[1]} features but x has {self.x_np.shape[1]}.")
        if len(bg) == 0 or not np.isfinite(bg).all():
            raise AttributionError("The background rows must be finite and at least one.")
        return bg

    # -- facts
    @property
    def n(self) -> int:
        return int(len(self.x))

    @property
    def x_np(self) -> np.ndarray:
        return self.x.numpy().astype(np.float64) if isinstance(self.x, torch.Tensor) else self.x

    def report(self, fraction: float) -> None:
        if self.progress is not None:
            self.progress(min(max(float(fraction), 0.0), 1.0))

    def rows_per_batch(self, gradient: bool = False) -> int:
        if self.batch_size is not None:
            return int(self.batch_size)
        per_row = int(np.prod(np.shape(self.x)[1:]))
        budget = GRADIENT_BUDGET if gradient else FORWARD_BUDGET
        cap = MAX_ROWS if self.kind == "image" else 16384
        return int(max(1, min(cap, budget // max(per_row, 1))))

    # -- running the model
    def predict_torch(self, rows: torch.Tensor, probability: bool = False) -> torch.Tensor:
        """Model outputs [R, C] for input rows (torch backend), batched, without gradients."""
        step = self.rows_per_batch()
        outs = []
        with torch.inference_mode():
            for s in range(0, len(rows), step):
                out = self.model(rows[s:s + step]).float()
                outs.append(out.softmax(1) if probability else out)
        return torch.cat(outs) if outs else torch.zeros(0, self.num_classes)

    def predict_np(self, rows: np.ndarray, probability: bool = False) -> np.ndarray:
        """Model outputs [R, C] as float64 for table rows: logits (or softmax) of a torch model,
        ``predict_proba`` of any other model."""
        rows = np.asarray(rows, np.float64)
        if self.backend == "torch":
            return self.predict_torch(torch.tensor(rows, dtype=torch.float32), probability).double().numpy()
        step = self.rows_per_batch()
        outs = [np.asarray(self.model.predict_proba(rows[s:s + step]), np.float64) for s in range(0, len(rows), step)]
        return np.concatenate(outs) if outs else np.zeros((0, self.num_classes))

    def target_scores(self, rows, targets: np.ndarray, probability: bool = False) -> np.ndarray:
        """The score of ``targets[r]`` for every row r (float64 [R])."""
        if isinstance(rows, torch.Tensor):
            out = self.predict_torch(rows, probability).double().numpy()
        else:
            out = self.predict_np(rows, probability)
        return out[np.arange(len(out)), np.asarray(targets, np.int64)]

    def iter_gradients(self, total: int, build: Callable[[int, int], torch.Tensor],
                       targets_of: Callable[[int, int], np.ndarray], progress_span: tuple[float, float] = (0.0, 1.0)):
        """Yield ``(start, stop, gradient)`` over ``total`` rows in memory-bounded chunks: the
        gradient of each row's target logit with respect to the row (float32, the rows' shape).

        ``build(s, e)`` makes rows s..e on demand, so IG's interpolation path or SmoothGrad's
        noisy copies never exist all at once; callers accumulate what they need.
        """
        if self.backend != "torch":
            raise AttributionError("Gradients need a torch model.")
        step = self.rows_per_batch(gradient=True)
        lo, hi = progress_span
        for s in range(0, total, step):
            e = min(total, s + step)
            xb = build(s, e).detach().clone().requires_grad_(True)
            t = torch.as_tensor(np.asarray(targets_of(s, e), np.int64))
            with torch.enable_grad():
                logits = self.model(xb)
                score = logits.gather(1, t[:, None]).sum()
                (g,) = torch.autograd.grad(score, xb)
            yield s, e, g.detach()
            self.report(lo + (hi - lo) * e / max(total, 1))

    def run_chunks(self, total: int, build: Callable[[int, int], Any], consume: Callable[[int, int, np.ndarray], None],
                   probability: bool = False, targets_of: Callable[[int, int], np.ndarray] | None = None,
                   progress_span: tuple[float, float] = (0.0, 1.0)) -> None:
        """Evaluate ``total`` perturbed rows in memory-bounded chunks: ``build(s, e)`` makes rows
        s..e, their target scores (``targets_of(s, e)``) or full outputs go to ``consume(s, e, out)``."""
        step = self.rows_per_batch()
        lo, hi = progress_span
        for s in range(0, total, step):
            e = min(total, s + step)
            rows = build(s, e)
            if targets_of is not None:
                out = self.target_scores(rows, targets_of(s, e), probability)
            elif isinstance(rows, torch.Tensor):
                out = self.predict_torch(rows, probability).double().numpy()
            else:
                out = self.predict_np(rows, probability)
            consume(s, e, out)
            self.report(lo + (hi - lo) * e / max(total, 1))


__all__ = ["AttributionError", "AttributionSpec", "EXACT_SHAPLEY_MAX_FEATURES", "NEEDS", "PassEstimate", "REGISTRY",
           "Subject", "cnn_stages", "has_proba", "has_standard_attention", "image_side_bound", "input_facts",
           "input_kind", "is_torch", "pixel_bounds", "register", "resolve_targets", "seed_param", "vit_parts"]
