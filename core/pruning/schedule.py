"""Token budgets: how many tokens each block keeps, and budgets matched to a MACs target.

Every pruner acts between a block's attention and its MLP, on the patch tokens only (prefix
tokens: CLS, distillation, registers are never touched). Token counts depend on the budget alone,
never on the image, so the cost of a configuration is known before running it:

- keep-rate methods (Zero-TPrune, EViT, top-k by CLS, random): a block with keep rate ρ < 1
  keeps ``round(ρ·n)`` of its ``n`` patch tokens (at least 1); EViT adds its fused token. By
  default the pruning blocks are those of EViT and DynamicViT on DeiT (blocks 4, 7, 10 of 12,
  i.e. depth·{1/4, 1/2, 3/4}); ``layers`` or a per-block ``schedule`` overrides them.
- ToMe: block l merges ``r_l`` tokens, at most half of its patch tokens; the schedule is
  constant r, decreasing (2r linearly down to 0, the same total), or an explicit list. A
  schedule that asks a block to merge more than half of its tokens is refused, with the largest
  feasible constant r.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .base import ModelInfo, PruningError
from .flops import block_macs

#: where EViT and DynamicViT prune DeiT (blocks 4, 7, 10 of 12), as fractions of the depth
DEFAULT_LAYER_FRACTIONS = (0.25, 0.5, 0.75)


def default_layers(depth: int) -> tuple[int, ...]:
    """Block indices (0-based) that prune by default: depth·{1/4, 1/2, 3/4} rounded up, so that no block
    prunes earlier than the papers' schedule does (3, 6, 9 for 12 blocks; 2, 3, 5 for the 6-block Shapes ViT).

    Rounding down would prune the Shapes ViT at block 1, after a sixth of its depth rather than a
    quarter: there EViT and top-k by class-token attention lose 2-3 points more than random keeping at
    −20% MACs (measured on 1000 images of two seeds), because the class token's attention after one
    block does not yet rank tokens by what the prediction needs."""
    return tuple(sorted({min(depth - 1, math.ceil(depth * f - 1e-9)) for f in DEFAULT_LAYER_FRACTIONS}))


def keep_count(rate: float, n: int) -> int:
    """Tokens kept out of ``n`` at keep rate ``rate``: round(rate·n) (half up), at least 1, at most n."""
    if rate >= 1.0:
        return n
    return min(n, max(1, int(math.floor(rate * n + 0.5))))


@dataclass(frozen=True)
class Plan:
    """Token counts of one configuration. ``attn_tokens[l]``/``mlp_tokens[l]``: the whole sequence
    (prefix included) entering block l's attention / MLP; ``removed[l]``: patch tokens block l
    removes (pruned, fused or merged away; 0 where it does nothing); ``rates[l]`` the keep rate of
    block l (keep-rate methods) and ``r[l]`` the tokens it merges (ToMe)."""

    attn_tokens: tuple[int, ...]
    mlp_tokens: tuple[int, ...]
    removed: tuple[int, ...]
    rates: tuple[float, ...] | None = None
    r: tuple[int, ...] | None = None

    @property
    def final_tokens(self) -> int:
        return self.mlp_tokens[-1]

    def macs(self, info: ModelInfo, fixed: int = 0) -> int:
        return int(fixed + sum(block_macs(info, a, m) for a, m in zip(self.attn_tokens, self.mlp_tokens)))


def block_rates(info: ModelInfo, keep_rate: float, layers: Sequence[int] | None = None,
                schedule: Sequence[float] | None = None, method: str = "This method") -> tuple[float, ...]:
    """The keep rate of every block: ``schedule`` (one rate per block) when given, else ``keep_rate`` at
    ``layers`` (default :func:`default_layers`) and 1.0 elsewhere."""
    depth = info.depth
    if schedule is not None:
        rates = tuple(float(v) for v in schedule)
        if len(rates) != depth:
            raise PruningError(f"{method}: the per-block schedule needs one keep rate for each of the {depth} blocks, "
                               f"got {len(rates)}.")
        if any(not (0.0 < v <= 1.0) for v in rates):
            raise PruningError(f"{method}: every keep rate of the schedule must be in (0, 1], got {list(rates)}.")
        return rates
    if not (0.0 < keep_rate <= 1.0):
        raise PruningError(f"{method}: keep_rate must be in (0, 1] (1.0 prunes nothing), got {keep_rate!r}.")
    layers = default_layers(depth) if layers is None else tuple(int(v) for v in layers)
    bad = [v for v in layers if not 0 <= v < depth]
    if bad:
        raise PruningError(f"{method}: pruning blocks must be between 0 and {depth - 1} for this {depth}-block model, "
                           f"got {bad}.")
    return tuple(keep_rate if l in layers else 1.0 for l in range(depth))


def keep_rate_plan(info: ModelInfo, rates: Sequence[float], fuse: bool = False) -> Plan:
    """Token counts when block l keeps ``keep_count(rates[l], n)`` patch tokens (plus one fused token with ``fuse``)."""
    p, n = info.n_prefix, info.n_patches
    attn, mlp, removed = [], [], []
    for rate in rates:
        attn.append(p + n)
        keep = keep_count(rate, n)
        out = keep + 1 if fuse and keep < n else keep
        removed.append(n - out)
        n = out
        mlp.append(p + n)
    return Plan(tuple(attn), tuple(mlp), tuple(removed), rates=tuple(float(r) for r in rates))


def tome_r_max(n_patches: int, depth: int) -> int:
    """The largest r ToMe accepts: half the patch tokens (what the first block can merge; later blocks
    merge at most half of what they hold, as in ToMe)."""
    return n_patches // 2


def tome_r_list(info: ModelInfo, r: int, schedule: str = "constant", r_list: Sequence[int] | None = None) -> tuple[int, ...]:
    """ToMe's per-block r: ``constant`` (r everywhere), ``decreasing`` (2r linearly down to 0: the same
    total, more merging early, as ToMe's inflection −1), or ``list`` (``r_list``, one entry per block).
    As in ToMe, a block merges at most half of its patch tokens, so late blocks of an aggressive
    schedule merge fewer; an r above half the patch tokens is refused with the valid range."""
    depth = info.depth
    if schedule == "list":
        if r_list is None:
            raise PruningError("ToMe: the 'list' schedule needs r_list, one r per block.")
        rs = tuple(int(v) for v in r_list)
        if len(rs) != depth:
            raise PruningError(f"ToMe: r_list needs one r for each of the {depth} blocks, got {len(rs)}.")
    elif schedule == "constant":
        rs = (int(r),) * depth
    elif schedule == "decreasing":
        rs = tuple(int(math.floor(2 * r * (depth - 1 - l) / max(depth - 1, 1) + 0.5)) for l in range(depth))
    else:
        raise PruningError(f"ToMe: r_schedule must be 'constant', 'decreasing' or 'list', got {schedule!r}.")
    rmax = tome_r_max(info.n_patches, depth)
    bad = [v for v in rs if not 0 <= v <= rmax]
    if bad:
        what = "the decreasing schedule starts at 2r, so r" if schedule == "decreasing" else "r"
        raise PruningError(f"ToMe: {what} must be in [0, {rmax}] for this model ({info.n_patches} patch tokens; a block "
                           f"merges at most half of its tokens), got {bad[0]}.")
    n, effective = info.n_patches, []
    for v in rs:
        v = min(v, n // 2)
        effective.append(v)
        n -= v
    return tuple(effective)


def tome_plan(info: ModelInfo, rs: Sequence[int]) -> Plan:
    p, n = info.n_prefix, info.n_patches
    attn, mlp = [], []
    for v in rs:
        attn.append(p + n)
        n -= v
        mlp.append(p + n)
    return Plan(tuple(attn), tuple(mlp), tuple(int(v) for v in rs), r=tuple(int(v) for v in rs))


def unpruned_plan(info: ModelInfo) -> Plan:
    full = (info.n_tokens,) * info.depth
    return Plan(full, full, (0,) * info.depth)


def tome_r_for_keep_rate(info: ModelInfo, keep_rate: float) -> int:
    """The constant r whose MACs come closest to keeping ``keep_rate`` at the default pruning blocks
    (ties: the smaller r), so that ``keep_rate`` means a comparable cost for every method."""
    if keep_rate >= 1.0:
        return 0
    target = keep_rate_plan(info, block_rates(info, keep_rate)).macs(info)
    best, best_gap = 0, math.inf
    for r in range(0, tome_r_max(info.n_patches, info.depth) + 1):
        gap = abs(tome_plan(info, (r,) * info.depth).macs(info) - target)
        if gap < best_gap:
            best, best_gap = r, gap
    return best


def keep_rate_grid() -> np.ndarray:
    """The keep rates :func:`core.pruning.match_budget` searches (0.01 to 1 in steps of 0.0025)."""
    return np.round(np.arange(0.01, 1.0 + 1e-9, 0.0025), 4)


__all__ = ["DEFAULT_LAYER_FRACTIONS", "Plan", "block_rates", "default_layers", "keep_count", "keep_rate_grid",
           "keep_rate_plan", "tome_plan", "tome_r_for_keep_rate", "tome_r_list", "tome_r_max", "unpruned_plan"]
