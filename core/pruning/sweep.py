"""The pruning page's workflow: accuracy against cost for several methods and budgets.

    result = run_sweep(model, dataset, {"zero-tprune": {}, "tome": {}, "evit": {}, "random": {}},
                       budgets=(0.2, 0.35), progress=cb, cache=cache)
    result.table()              # one row per (method, budget) plus the unpruned model
    result.agreement(0.35)      # kept-token overlap between methods
    result.retention_table()    # object / marker / background retention per block, next to random
    result.to_importances()     # per-block token importances as core.importance.Importance

A *budget* is a MACs reduction (0.35 = −35% of the unpruned model's MACs, patch embedding and
head included). :func:`match_budget` turns it into each method's own knob (keep rate, or ToMe's
r) from the analytical token counts, so every method is compared at (nearly) the same cost.

Throughput is measured honestly on a shared machine: every configuration is warmed up once, then
timed one batch at a time in interleaved rounds, and the median round is reported (images/s),
next to the time the method spent computing its importance (WPR, similarity, top-k).

Ground truth: the Shapes world's masks (``dataset.masks``) pooled to the patch grid give each
patch's share of the object (and the marker, and the background). A patch alone in its token is
retained with weight 1, a patch merged into a token of s patches with 1/s, a dropped one with 0;
a region's retention is Σ share·weight / Σ share, and random keeping at the same budget retains
every patch with the expectation (tokens left)/(patches), whatever the region.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .base import REGISTRY, ModelInfo, PruningError, capabilities, inspect_model
from .flops import fixed_macs
from .patch import LayerTrace, apply, retention_weights
from .schedule import keep_rate_grid, tome_plan, tome_r_list, tome_r_max, unpruned_plan

UNPRUNED = "unpruned"


# ---------------------------------------------------------------------------------------- budgets
def match_budget(model, method: str, reduction: float, **params) -> dict[str, Any]:
    """The parameters of ``method`` whose analytical MACs come closest to ``(1 − reduction)`` times the
    unpruned model's (``reduction=0.35``: −35%); the rest of ``params`` is kept. Keep-rate methods get
    ``keep_rate`` (searched in steps of 0.0025, ties to the larger), ToMe gets ``r`` (its constant or
    decreasing schedule). A fixed per-block schedule has a single cost and is refused."""
    if not (0.0 <= reduction < 1.0):
        raise PruningError(f"A budget is a MACs reduction in [0, 1) (0.35 = −35%), got {reduction!r}.")
    info = inspect_model(model)
    spec = REGISTRY.spec(method)
    fixed = fixed_macs(model)
    full = unpruned_plan(info).macs(info, fixed)
    target = (1.0 - reduction) * full
    params = dict(params)
    impl = spec.impl
    if method == "tome":
        if params.get("r_schedule") == "list":
            raise PruningError("ToMe with an explicit r list has a single cost; use the constant or decreasing schedule to "
                               "sweep budgets.")
        best, best_gap = 0, np.inf
        for r in range(0, tome_r_max(info.n_patches, info.depth) + 1):
            try:
                rs = tome_r_list(info, r, params.get("r_schedule", "constant"))
            except PruningError:  # the decreasing schedule starts at 2r
                break
            gap = abs(tome_plan(info, rs).macs(info, fixed) - target)
            if gap < best_gap:
                best, best_gap = r, gap
        params["r"] = best
        params.pop("keep_rate", None)
        return params
    if params.get("schedule") is not None:
        raise PruningError(f"{spec.name} with a per-block schedule has a single cost; clear the schedule to sweep budgets.")
    best_rate, best_gap = 1.0, np.inf
    for rate in keep_rate_grid()[::-1]:
        pruner = impl(info, **{**params, "keep_rate": float(rate)})
        gap = abs(pruner.plan.macs(info, fixed) - target)
        if gap < best_gap - 1e-6:
            best_rate, best_gap = float(rate), gap
    params["keep_rate"] = best_rate
    return params


# ---------------------------------------------------------------------------------------- ground truth
def object_patch_share(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Share of each patch's pixels inside ``mask`` ([N,H,W] bool, image resolution): [N, rows·cols] float32
    (area-averaged onto the patch grid, row-major like the patch tokens)."""
    m = torch.from_numpy(np.ascontiguousarray(mask)).float().unsqueeze(1)
    pooled = F.adaptive_avg_pool2d(m, grid)
    return pooled.flatten(1).numpy().astype(np.float32)


def region_shares(dataset, grid: tuple[int, int]) -> dict[str, np.ndarray]:
    """Patch shares of every mask of ``dataset`` ("object", "marker", ...) and of the background (the rest)."""
    out: dict[str, np.ndarray] = {}
    for name, mask in (getattr(dataset, "masks", None) or {}).items():
        out[name] = object_patch_share(mask, grid)
    if out:
        out["background"] = np.clip(1.0 - sum(out.values()), 0.0, 1.0).astype(np.float32)
    return out


def region_retention(retention: np.ndarray, share: np.ndarray) -> float:
    """Σ share·retention / Σ share over the images (NaN when the region is empty everywhere)."""
    total = float(share.sum())
    return float((share * retention).sum() / total) if total > 0 else float("nan")


# ---------------------------------------------------------------------------------------- results
@dataclass
class SweepPoint:
    """One configuration run over the dataset.

    ``method`` (registry id, or "unpruned"), ``name``, ``budget`` (the MACs reduction asked for;
    None for the unpruned model or a configuration run as given), ``params`` (what actually ran),
    ``macs`` per image and ``macs_ratio`` (to the unpruned model), ``accuracy`` (None without
    labels), ``preds [N]``, ``images_per_s``, ``seconds_per_batch`` and ``importance_seconds``
    (per batch, medians of the timed rounds), ``tokens_per_block``/``mlp_tokens_per_block``,
    ``layers`` (one :class:`~core.pruning.LayerTrace` per pruning block over all N images),
    ``score_name`` and ``score_scale`` ("mass" when the scores are amounts of importance);
    ``note``: why the MACs reached differ from the budget by more than 2 points (e.g. ToMe's r is
    capped), else "".
    """

    method: str
    name: str
    budget: float | None
    params: dict[str, Any]
    macs: float
    macs_ratio: float
    accuracy: float | None
    preds: np.ndarray
    tokens_per_block: tuple[int, ...]
    mlp_tokens_per_block: tuple[int, ...]
    layers: list[LayerTrace] = field(default_factory=list)
    score_name: str = ""
    score_scale: str = "mass"
    images_per_s: float = float("nan")
    seconds_per_batch: float = float("nan")
    importance_seconds: float = float("nan")
    note: str = ""

    @property
    def label(self) -> str:
        if self.method == UNPRUNED:
            return "unpruned"
        return self.name if self.budget is None else f"{self.name} −{self.budget:.0%}"

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def importance_share(self) -> float:
        """Importance computation as a share of the pruned forward time."""
        return self.importance_seconds / self.seconds_per_batch if self.seconds_per_batch > 0 else float("nan")

    def final_retention(self, n_images: int, n_patches: int) -> np.ndarray:
        """[N,N0] float32: each patch's retention after the last block (1 everywhere when nothing was pruned)."""
        if not self.layers:
            return np.ones((n_images, n_patches), np.float32)
        return retention_weights(self.layers[-1].origin)

    def origins_before(self, j: int) -> np.ndarray:
        """[N,N0]: a label of each patch's token *before* the j-th pruning block decided (its sequence
        position; before the first pruning block every patch is a token of its own)."""
        if j > 0:
            return self.layers[j - 1].origin
        n, n0 = self.layers[0].origin.shape
        return np.broadcast_to(np.arange(n0, dtype=np.int32), (n, n0))

    def token_scores(self, j: int) -> list[np.ndarray]:
        """Per image, the scores of the tokens the j-th pruning block ranked (one value per token, not
        per patch: a merged or fused token counts once; NaN-scored tokens left out)."""
        lt = self.layers[j]
        before = self.origins_before(j)
        out = []
        for i in range(lt.scores.shape[0]):
            alive = np.flatnonzero(lt.actions[i] >= 0)
            _, first = np.unique(before[i, alive], return_index=True)
            v = lt.scores[i, alive[first]]
            out.append(v[np.isfinite(v)])
        return out

    def layer(self, block: int) -> LayerTrace:
        for lt in self.layers:
            if lt.block == block:
                return lt
        raise KeyError(f"{self.label} does not prune at block {block}; it prunes at {[lt.block for lt in self.layers]}.")

    @property
    def nbytes(self) -> int:
        return int(self.preds.nbytes + sum(lt.nbytes for lt in self.layers))


@dataclass
class SweepResult:
    """Every point of a sweep, with the ground truth they are judged against.

    ``baseline``: the unpruned model; ``points``: one :class:`SweepPoint` per (method, budget) in
    order; ``errors``: method id -> message for a method that could not run; ``regions``: region
    name -> [N,N0] patch share (Shapes masks pooled to the patch grid; empty without masks);
    ``labels [N]``; ``info``: the model's :class:`~core.pruning.ModelInfo`; ``fingerprint``: the
    cache key of the inputs; ``request``: the :class:`core.pruning.workflow.PruningRequest` that
    produced it (None when :func:`run_sweep` was called directly).
    """

    model_name: str
    data_name: str
    n_images: int
    batch_size: int
    budgets: tuple[float | None, ...]
    info: ModelInfo
    baseline: SweepPoint
    points: list[SweepPoint]
    labels: np.ndarray | None
    regions: dict[str, np.ndarray] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    fingerprint: str = ""
    request: Any = None

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(p.method for p in self.points))

    def point(self, method: str, budget: float | None = None) -> SweepPoint:
        if method == UNPRUNED:
            return self.baseline
        for p in self.points:
            if p.method == method and (budget is None or (p.budget is not None and abs(p.budget - budget) < 1e-9)):
                return p
        raise KeyError(f"No point for {method!r} at budget {budget!r}.")

    def table(self) -> pd.DataFrame:
        """One row per point (the unpruned model first): accuracy, GMACs, MACs ratio, images/s, speed-up,
        importance ms per batch and its share of the forward time, tokens after the last block, and the
        object retention after the last block next to random's."""
        base = self.baseline
        rows = []
        for p in [base, *self.points]:
            row = {"method": p.method, "name": p.name, "label": p.label, "budget": p.budget,
                   "keep_rate": p.params.get("keep_rate") if p.params.get("r") is None else None,
                   "r": p.params.get("r"), "accuracy": p.accuracy,
                   "accuracy_drop": (None if p.accuracy is None or base.accuracy is None else base.accuracy - p.accuracy),
                   "gmacs": p.gmacs, "macs_ratio": p.macs_ratio, "images_per_s": p.images_per_s,
                   "speedup": p.images_per_s / base.images_per_s if base.images_per_s > 0 else float("nan"),
                   "importance_ms": 1e3 * p.importance_seconds, "importance_share": p.importance_share,
                   "final_tokens": p.mlp_tokens_per_block[-1], "note": p.note}
            if "object" in self.regions:
                ret = p.final_retention(self.n_images, self.info.n_patches)
                row["object_retention"] = region_retention(ret, self.regions["object"])
                row["random_retention"] = float(ret.sum(1).mean() / self.info.n_patches)
            rows.append(row)
        return pd.DataFrame(rows)

    def retention_table(self) -> pd.DataFrame:
        """Per point, pruning block and region (object, marker, background): the retention after the
        block and what random keeping gives at the same budget (tokens left / patches)."""
        rows = []
        n0 = self.info.n_patches
        for p in self.points:
            for lt in p.layers:
                ret = lt.retention()
                random = float(ret.sum(1).mean() / n0)
                for region, share in self.regions.items():
                    rows.append({"method": p.method, "name": p.name, "label": p.label, "budget": p.budget,
                                 "block": lt.block, "region": region, "retention": region_retention(ret, share),
                                 "random": random})
        return pd.DataFrame(rows, columns=["method", "name", "label", "budget", "block", "region", "retention", "random"])

    def layer_statistics(self) -> pd.DataFrame:
        """Per point and pruning block, the concentration of the token scores over each image's
        tokens, averaged over images: ``entropy`` of p = s/Σs, ``entropy_norm`` (÷ log of the token
        count, comparable across blocks) and ``gini`` (sorted ascending, Σ(2i−n−1)s₍ᵢ₎/(n·Σs)). NaN for
        scores that are not amounts of importance (ToMe's similarities, random draws)."""
        rows = []
        for p in self.points:
            for j, lt in enumerate(p.layers):
                ent, ent_n, gini = [], [], []
                if p.score_scale == "mass":
                    for v in p.token_scores(j):
                        v = np.clip(v.astype(np.float64), 0, None)
                        total = v.sum()
                        if v.size < 2 or total <= 0:
                            continue
                        q = v / total
                        e = float(-(q[q > 0] * np.log(q[q > 0])).sum())
                        srt = np.sort(v)
                        n = v.size
                        ent.append(e)
                        ent_n.append(e / np.log(n))
                        gini.append(float(np.sum((2 * np.arange(1, n + 1) - n - 1) * srt) / (n * total)))
                rows.append({"method": p.method, "label": p.label, "budget": p.budget, "block": lt.block,
                             "tokens": lt.n_in, "entropy": _mean(ent), "entropy_norm": _mean(ent_n), "gini": _mean(gini)})
        return pd.DataFrame(rows, columns=["method", "label", "budget", "block", "tokens", "entropy", "entropy_norm", "gini"])

    def agreement(self, budget: float | None = None) -> pd.DataFrame:
        """Kept-token overlap between the methods at ``budget`` after their last block: per image
        Σ_p min(r_A, r_B) / min(Σ r_A, Σ r_B) over the patches' retention weights (|A∩B|/k for two
        methods that each keep k patches), averaged over images. Two independent random choices of k
        of n patches overlap k/n on average."""
        pts = [p for p in self.points if budget is None or (p.budget is not None and abs(p.budget - budget) < 1e-9)]
        if budget is None:
            pts = list({p.method: p for p in pts}.values())
        labels = [p.name for p in pts]
        rets = [p.final_retention(self.n_images, self.info.n_patches) for p in pts]
        m = np.full((len(pts), len(pts)), np.nan)
        for i, a in enumerate(rets):
            for j, b in enumerate(rets):
                inter = np.minimum(a, b).sum(1)
                denom = np.minimum(a.sum(1), b.sum(1))
                m[i, j] = float(np.mean(inter / np.maximum(denom, 1e-12)))
        return pd.DataFrame(m, index=labels, columns=labels)

    def to_importances(self, method: str | None = None, budget: float | None = None) -> list:
        """Every pruning block's token scores as :class:`core.importance.Importance` (unit "token",
        values [N, N0] float32 over the original patches, NaN where a patch was already gone)."""
        from core.importance import Importance

        rows, cols = self.info.grid
        names = [f"patch r{r} c{c}" for r in range(rows) for c in range(cols)]
        out = []
        for p in self.points:
            if method is not None and p.method != method:
                continue
            if budget is not None and (p.budget is None or abs(p.budget - budget) > 1e-9):
                continue
            for lt in p.layers:
                out.append(Importance(
                    values=lt.scores, unit="token", names=names, scale=p.score_scale,
                    provenance={"analysis": "pruning", "method": f"{p.label} · block {lt.block}", "parameters": dict(p.params),
                                "model": self.model_name, "data": self.data_name, "block": lt.block,
                                "score": p.score_name}))
        return out

    @property
    def nbytes(self) -> int:
        arrays = [self.labels] + list(self.regions.values())
        return int(self.baseline.nbytes + sum(p.nbytes for p in self.points)
                   + sum(a.nbytes for a in arrays if a is not None))


# ---------------------------------------------------------------------------------------- running
SCORE_SCALE = {"tome": "score", "random": "score"}


def _inputs(dataset, model, start: int, stop: int) -> torch.Tensor:
    from core.extract import preprocess

    return preprocess(dataset.images[start:stop], getattr(model, "card", {}) or {})


def _logits(model, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out[0] if isinstance(out, tuple) else out


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _concat_traces(parts: list[LayerTrace]) -> LayerTrace:
    """One block's traces of several batches as one trace over all their images."""
    first = parts[0]

    def cat(name: str):
        return None if getattr(first, name) is None else np.concatenate([getattr(t, name) for t in parts])

    return LayerTrace(block=first.block, n_in=first.n_in, n_out=first.n_out, origin=cat("origin"), scores=cat("scores"),
                      actions=cat("actions"), head_variance=cat("head_variance"), head_kept=cat("head_kept"))


@torch.no_grad()
def _evaluate(model, dataset, method: str | None, params: dict, batch_size: int,
              progress: Callable[[float], None] | None = None) -> dict:
    """Predictions, token counts and per-block traces of one configuration over the whole dataset."""
    n = len(dataset)
    preds, traces = [], []
    with apply(model, method, trace=True, **params) if method else contextlib.nullcontext() as session:
        for start in range(0, n, batch_size):
            logits = _logits(model, _inputs(dataset, model, start, min(n, start + batch_size)))
            preds.append(logits.argmax(1).cpu().numpy())
            if session is not None:
                traces.append(list(session.layers))
            if progress is not None:
                progress(min(n, start + batch_size) / n)
    layers = [_concat_traces([t[j] for t in traces]) for j in range(len(traces[0]))] if traces else []
    out = {"preds": np.concatenate(preds).astype(np.int64) if preds else np.zeros(0, np.int64), "layers": layers}
    if session is not None:
        out.update(tokens=tuple(session.tokens_per_block), mlp_tokens=tuple(session.mlp_tokens_per_block),
                   macs=session.macs, params=session.params, score_name=session.score_name)
    return out


@torch.no_grad()
def measure_throughput(model, x: torch.Tensor, configs: Sequence[tuple[str | None, dict]], rounds: int = 5,
                       warmup: int = 1, progress: Callable[[float], None] | None = None) -> list[dict[str, float]]:
    """Time one forward pass of batch ``x`` under every configuration (``(method or None, params)``),
    interleaved: ``warmup`` untimed passes each, then ``rounds`` rounds in which every configuration
    runs once. Returns per configuration the medians ``seconds_per_batch``, ``importance_seconds``
    and ``images_per_s`` (= batch / median seconds), plus every round's seconds in ``rounds``."""
    if rounds < 1:
        raise PruningError(f"rounds must be at least 1, got {rounds}.")
    times: list[list[float]] = [[] for _ in configs]
    imp: list[list[float]] = [[] for _ in configs]
    total = max(1, len(configs) * (rounds + warmup))
    done = 0

    def run(i: int, timed: bool):
        method, params = configs[i]
        if method is None:
            t0 = time.perf_counter()
            _logits(model, x)
            dt, it = time.perf_counter() - t0, 0.0
        else:
            with apply(model, method, trace=False, **params) as s:
                t0 = time.perf_counter()
                _logits(model, x)
                dt, it = time.perf_counter() - t0, s.importance_seconds
        if timed:
            times[i].append(dt)
            imp[i].append(it)

    for _ in range(warmup):
        for i in range(len(configs)):
            run(i, False)
            done += 1
            if progress is not None:
                progress(done / total)
    for _ in range(rounds):
        for i in range(len(configs)):
            run(i, True)
            done += 1
            if progress is not None:
                progress(done / total)
    out = []
    for t, it in zip(times, imp):
        med = statistics.median(t)
        out.append({"seconds_per_batch": med, "importance_seconds": statistics.median(it),
                    "images_per_s": len(x) / med, "rounds": list(t)})
    return out


def model_fingerprint(model) -> str:
    """A short hash of the model's class, card name and parameters (cache key)."""
    h = hashlib.sha1()
    h.update(type(model).__name__.encode())
    h.update(str((getattr(model, "card", None) or {}).get("name", "")).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def run_sweep(model, dataset, methods: Mapping[str, Mapping[str, Any]],
              budgets: Sequence[float] | None = (0.2, 0.35), *, n_images: int | None = None, batch_size: int = 64,
              throughput_batch: int = 32, throughput_rounds: int = 5,
              progress: Callable[[float, str], None] | None = None, cache=None, fingerprint: str | None = None,
              model_name: str | None = None) -> SweepResult:
    """Run every method at every budget over ``dataset`` (images) on ``model`` (a supported timm ViT).

    ``methods``: method id -> its parameters (the budget knob is set per budget by
    :func:`match_budget`). ``budgets``: MACs reductions (0.2 = −20%); ``None`` runs each method once
    with its parameters as given. ``n_images``: the first n images (default all). ``batch_size``:
    images per forward pass for accuracy; ``throughput_batch`` images per timed pass and
    ``throughput_rounds`` interleaved timing rounds (median reported).
    ``progress(fraction, message)`` is called as work proceeds. ``cache`` (anything with
    ``get_or_compute(key, fn)``) keeps every configuration's evaluation and the timing of a whole
    set of configurations under keys built from ``fingerprint`` (default: a hash of the model's
    parameters and the dataset's fingerprint) and the configuration.
    A method that cannot run is reported in ``result.errors`` instead of stopping the others.
    """
    info = inspect_model(model)
    if getattr(dataset, "images", None) is None:
        raise PruningError(f"Token pruning needs images; dataset '{getattr(dataset, 'name', '?')}' has none.")
    if n_images is not None:
        if n_images < 1:
            raise PruningError(f"n_images must be at least 1, got {n_images}.")
        dataset = dataset.subset(np.arange(min(n_images, len(dataset))))
    if len(dataset) == 0:
        raise PruningError("The dataset has no images.")
    if batch_size < 1 or throughput_batch < 1:
        raise PruningError("batch_size and throughput_batch must be at least 1.")
    if not methods:
        raise PruningError(f"Choose at least one method; available: {', '.join(REGISTRY.available())}.")
    budget_list: tuple[float | None, ...] = (None,) if budgets is None else tuple(float(b) for b in budgets)
    for b in budget_list:
        if b is not None and not (0.0 <= b < 1.0):
            raise PruningError(f"A budget is a MACs reduction in [0, 1) (0.35 = −35%), got {b!r}.")
    report = progress or (lambda f, m: None)
    name = model_name or str((getattr(model, "card", None) or {}).get("name", type(model).__name__))
    if fingerprint is None:
        data_fp = dataset.fingerprint() if hasattr(dataset, "fingerprint") else str(len(dataset))
        fingerprint = f"{model_fingerprint(model)}-{data_fp}-{len(dataset)}"

    def cached(key: str, fn):
        return cache.get_or_compute(key, fn) if cache is not None else fn()

    # resolve every configuration first: a bad parameter fails before any long run
    configs: list[tuple[str, float | None, dict]] = []
    errors: dict[str, str] = {}
    for method, params in methods.items():
        try:
            reason = REGISTRY.unavailable_reason(method, capabilities(model))
            if reason:
                raise PruningError(reason)
            for b in budget_list:
                resolved = dict(params or {}) if b is None else match_budget(model, method, b, **dict(params or {}))
                REGISTRY.spec(method).impl(info, **resolved)  # validates now
                configs.append((method, b, resolved))
        except PruningError as exc:
            errors[method] = str(exc)
    was_training = model.training
    model.eval()
    try:
        n_steps = len(configs) + 1
        base_eval = cached(f"pruning|{fingerprint}|{UNPRUNED}|{batch_size}",
                           lambda: _evaluate(model, dataset, None, {}, batch_size,
                                             lambda f: report(0.8 * f / n_steps, f"unpruned: {f:.0%} of the images")))
        evals = []
        for i, (method, b, params) in enumerate(configs):
            spec = REGISTRY.spec(method)
            msg = f"{spec.name}" + ("" if b is None else f" at −{b:.0%} MACs")
            report(0.8 * (i + 1) / n_steps, msg)
            key = f"pruning|{fingerprint}|{method}|{json.dumps(params, sort_keys=True, default=str)}|{batch_size}"
            try:
                evals.append(cached(key, lambda method=method, params=params, i=i, msg=msg: _evaluate(
                    model, dataset, method, params, batch_size,
                    lambda f: report(0.8 * (i + 1 + f) / n_steps, f"{msg}: {f:.0%} of the images"))))
            except PruningError as exc:
                errors[method] = str(exc)
                evals.append(None)
        keep = [(c, e) for c, e in zip(configs, evals) if e is not None]
        x = _inputs(dataset, model, 0, min(len(dataset), throughput_batch))
        timing_configs = [(None, {})] + [(m, p) for (m, _b, p), _e in keep]
        timing_key = (f"pruning-speed|{fingerprint}|{len(x)}|{throughput_rounds}|"
                      + json.dumps(timing_configs, sort_keys=True, default=str))
        speeds = cached(timing_key, lambda: measure_throughput(
            model, x, timing_configs, rounds=throughput_rounds,
            progress=lambda f: report(0.8 + 0.2 * f, "measuring throughput (interleaved rounds)")))
    finally:
        model.train(was_training)

    labels = dataset.labels if getattr(dataset, "labels", None) is not None else None

    def accuracy(preds: np.ndarray) -> float | None:
        if labels is None:
            return None
        ok = labels >= 0
        return float((preds[ok] == labels[ok]).mean()) if ok.any() else None

    fixed = fixed_macs(model)
    full_macs = float(unpruned_plan(info).macs(info, fixed))
    full_tokens = (info.n_tokens,) * info.depth
    baseline = SweepPoint(method=UNPRUNED, name="unpruned", budget=None, params={}, macs=full_macs, macs_ratio=1.0,
                          accuracy=accuracy(base_eval["preds"]), preds=base_eval["preds"], tokens_per_block=full_tokens,
                          mlp_tokens_per_block=full_tokens, score_name="", **_speed(speeds[0]))
    points = []
    for ((method, b, _params), ev), speed in zip(keep, speeds[1:]):
        spec = REGISTRY.spec(method)
        reached = 1.0 - ev["macs"] / full_macs
        note = ""
        if b is not None and abs(reached - b) > 0.02:
            note = (f"{spec.name} reaches −{reached:.0%} MACs at most on this model ({_knob(ev['params'])}), not the "
                    f"−{b:.0%} asked for.")
        points.append(SweepPoint(
            method=method, name=spec.name, budget=b, params=ev["params"], macs=ev["macs"], macs_ratio=ev["macs"] / full_macs,
            accuracy=accuracy(ev["preds"]), preds=ev["preds"], tokens_per_block=ev["tokens"],
            mlp_tokens_per_block=ev["mlp_tokens"], layers=ev["layers"], score_name=ev["score_name"],
            score_scale=SCORE_SCALE.get(method, "mass"), note=note, **_speed(speed)))
    report(1.0, "done")
    return SweepResult(model_name=name, data_name=str(getattr(dataset, "name", "")), n_images=len(dataset),
                       batch_size=batch_size, budgets=budget_list, info=info, baseline=baseline, points=points,
                       labels=labels, regions=region_shares(dataset, info.grid), errors=errors, fingerprint=fingerprint)


def _knob(params: dict) -> str:
    return f"r = {params['r']}" if params.get("r") is not None else f"keep rate {params.get('keep_rate')}"


def _speed(s: dict) -> dict:
    return {"images_per_s": s["images_per_s"], "seconds_per_batch": s["seconds_per_batch"],
            "importance_seconds": s["importance_seconds"]}


__all__ = ["UNPRUNED", "SweepPoint", "SweepResult", "match_budget", "measure_throughput", "model_fingerprint",
           "object_patch_share", "region_retention", "region_shares", "run_sweep"]
