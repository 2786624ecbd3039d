"""The pruning and merging methods, one registry (:data:`core.pruning.base.REGISTRY`).

Each method is a class whose docstring is its description; the constructor takes the model's
:class:`~core.pruning.base.ModelInfo` and the parameters (validated against the spec), fixes the
token :class:`~core.pruning.schedule.Plan`, and ``reduce(ctx)`` carries out one block's decision.
All of them act between a block's attention and its MLP, on patch tokens only.
"""
from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F

from core.spec import ParamSpec

from .base import REGISTRY, ModelInfo, PruningError, facts_of
from .schedule import Plan, block_rates, keep_rate_plan, tome_plan, tome_r_for_keep_rate, tome_r_list
from .tokens import (
    DROPPED,
    DROPPED_SIMILAR,
    FUSED,
    KEPT,
    MERGED,
    LayerContext,
    Reduction,
    actions_from_map,
    elapsed,
    gather_tokens,
    keep_patches,
    split_top,
)
from .wpr import wpr_details

REF_ZERO = "Wang, Dedhia & Jha, Zero-TPrune, CVPR 2024 (arXiv 2305.17328)"
REF_TOME = "Bolya et al., Token Merging: Your ViT But Faster, ICLR 2023 (github facebookresearch/ToMe)"
REF_EVIT = "Liang et al., Not All Patches are What You Need (EViT), ICLR 2022 (github youweiliang/evit)"

KEEP_RATE = ParamSpec(
    "keep_rate", 0.7, "float", low=0.01, high=1.0, label="keep rate",
    help="Fraction of its patch tokens each pruning block keeps (1 prunes nothing). 0.7 at the default blocks is "
         "EViT's and DynamicViT's DeiT-S budget, about −35% MACs.")
LAYERS = ParamSpec(
    "layers", None, "int_list", low=0, optional=True, label="pruning blocks",
    help="Blocks (0-based) that prune. Empty: depth·{1/4, 1/2, 3/4}, i.e. blocks 3, 6, 9 of a 12-block DeiT "
         "(EViT's 4/7/10, rounded up: never earlier than the papers) and 2, 3, 5 of the 6-block Shapes ViT.")
SCHEDULE = ParamSpec(
    "schedule", None, "float_list", low=0.01, high=1.0, optional=True, label="per-block keep rates",
    help="One keep rate per block (1 = that block prunes nothing); when given it replaces keep rate and pruning blocks.")


class Pruner:
    """Base class. ``needs_probs``: the block must form the full attention probabilities (otherwise
    it keeps fused attention and the method reads the class row or the keys from the context);
    ``prop_attn``: add log(size) to the attention logits (ToMe's proportional attention)."""

    spec: Any  # set by the registry
    needs_probs = False
    prop_attn = False
    score_name = "score"

    def __init__(self, info: ModelInfo, **params):
        self.info = info
        self.params: dict[str, Any] = self.spec.validate_params(params, PruningError, facts_of(info))
        self.plan: Plan = self._plan()

    def _plan(self) -> Plan:
        raise NotImplementedError

    def removes(self, block: int) -> int:
        """Patch tokens block ``block`` removes (ToMe: merges)."""
        return self.plan.removed[block]

    def reduce(self, ctx: LayerContext) -> Reduction:
        raise NotImplementedError

    def start(self, device) -> None:
        """Called when the model is patched (before the first forward pass)."""


class KeepRatePruner(Pruner):
    fuse = False

    def _plan(self) -> Plan:
        p = self.params
        rates = block_rates(self.info, p["keep_rate"], p.get("layers"), p.get("schedule"), self.spec.name)
        return keep_rate_plan(self.info, rates, fuse=self.fuse)

    def _kept(self, ctx: LayerContext) -> int:
        n = ctx.x.shape[1] - ctx.n_prefix
        return n - ctx.remove - (1 if self.fuse else 0)

    def _select(self, ctx: LayerContext, scores: torch.Tensor, t0: float) -> Reduction:
        k = self._kept(ctx)
        keep, _rest = split_top(scores, k)
        seconds = elapsed(t0, ctx.x)
        x, old_to_new = keep_patches(ctx.x, ctx.n_prefix, keep)
        return Reduction(x=x, old_to_new=old_to_new, scores=scores, actions=actions_from_map(old_to_new, DROPPED),
                         seconds=seconds)


def _cls_scores(ctx: LayerContext) -> torch.Tensor:
    """The class token's attention to every patch token, averaged over heads: [B,n]."""
    return ctx.cls_attention()[:, :, ctx.n_prefix:].mean(1)


@REGISTRY.register(
    "zero-tprune", "Zero-TPrune", "importance", ("vit",), REF_ZERO,
    params=(KEEP_RATE, LAYERS, SCHEDULE,
            ParamSpec("iterations", None, "int_list", low=0, high=500, optional=True, label="WPR iterations",
                      help="Power iterations of Weighted PageRank in each pruning block: one number for all, or one per "
                           "block. Empty: 30 in the first quarter of the blocks, 5 in the middle, 1 in the last quarter "
                           "(the paper: many early, few late)."),
            ParamSpec("init", "uniform", "choice", choices=("uniform", "cls"), label="WPR start",
                      help="Initial scores: uniform 1/N, or the class token weighted √N times any other token."),
            ParamSpec("head_agg", "rms", "choice", choices=("rms", "mean"), label="head aggregation",
                      help="rms: root mean square over heads (the paper's emphasis on informative regions, EIR); "
                           "mean: the plain average."),
            ParamSpec("head_filter", True, "bool", label="variance head filter",
                      help="Leave out heads whose importance is nearly flat or concentrated on a few tokens (VHF)."),
            ParamSpec("v_min", 0.01, "float", low=0.0, label="head variance min",
                      help="Heads whose variance of N·s (0 = flat) lies below this carry no ranking and are left out."),
            ParamSpec("v_max", 10.0, "float", low=0.0, label="head variance max",
                      help="Heads whose variance of N·s lies above this put their importance on a few tokens (a sink) "
                           "and are left out; a head that puts all on one of N tokens has N−1."),
            ParamSpec("s_share", 0.5, "float", low=0.0, high=1.0, label="similarity share",
                      help="Share of a block's pruned tokens that the S-stage removes as near-duplicates (key cosine "
                           "similarity); the I-stage removes the rest by importance.")))
class ZeroTPrune(KeepRatePruner):
    """Zero-shot pruning by importance and similarity, from each pruning block's attention graph.

    In every pruning block, in the order I′ → S → I:
    1. **I′**: one WPR iteration ranks the patch tokens (a cheap pre-ranking; nothing is pruned).
    2. **S-stage**: the less important half (A) is matched to the more important half (B) by
       cosine similarity of the keys averaged over heads; the A tokens of the most similar pairs are
       dropped (near-duplicates of kept tokens).
    3. **I-stage**: WPR, s ← Aᵀs per head on the attention graph of the surviving tokens (rows
       renormalised), many iterations in early blocks and few late; heads aggregated by root mean
       square over the heads the variance filter keeps; the top-k tokens stay.
    Importance = Weighted PageRank of the attention graph; the class, distillation and register
    tokens take part in the graph but are never pruned.
    """

    needs_probs = True
    score_name = "WPR importance"

    def __init__(self, info: ModelInfo, **params):
        super().__init__(info, **params)
        p = self.params
        if p["init"] == "cls" and not info.has_cls:
            raise PruningError("Zero-TPrune: the 'cls' start weights the class token, and this ViT has none; use 'uniform'.")
        if p["head_filter"] and not p["v_min"] < p["v_max"]:
            raise PruningError(f"Zero-TPrune: the head filter needs v_min < v_max, got [{p['v_min']}, {p['v_max']}].")
        its = p.get("iterations")
        depth = info.depth
        if its is None:
            quarter = depth / 4
            self.iterations = [30 if l < quarter else (1 if l >= depth - quarter else 5) for l in range(depth)]
        elif len(its) == 1:
            self.iterations = [int(its[0])] * depth
        elif len(its) == depth:
            self.iterations = [int(v) for v in its]
        else:
            raise PruningError(f"Zero-TPrune: iterations needs one number, or one per block ({depth}), got {len(its)}.")
        self.head_filter = (p["v_min"], p["v_max"]) if p["head_filter"] else None

    def reduce(self, ctx: LayerContext) -> Reduction:
        t0 = time.perf_counter()
        p, pre = self.params, ctx.n_prefix
        x, probs = ctx.x, ctx.probs
        b, big_n = x.shape[0], x.shape[1]
        n = big_n - pre
        k = n - ctx.remove
        s_drop = min(n // 2, int(math.floor(p["s_share"] * ctx.remove + 0.5)))
        device = x.device
        alive = None
        similar = None
        if s_drop > 0:
            pre_rank = wpr_details(probs, 1, p["init"], p["head_agg"], self.head_filter).importance[:, pre:]
            order = pre_rank.argsort(dim=1, descending=True, stable=True)
            n_b = n - n // 2
            b_idx, a_idx = order[:, :n_b], order[:, n_b:]  # B: the more important half, A: the rest
            keys = F.normalize(ctx.mean_keys()[:, pre:], dim=-1)
            sim = gather_tokens(keys, a_idx) @ gather_tokens(keys, b_idx).transpose(1, 2)
            best = sim.max(dim=-1).values  # each A token's similarity to its closest B token
            s_order = best.argsort(dim=1, descending=True, stable=True)
            similar = a_idx.gather(1, s_order[:, :s_drop])
            alive = torch.ones(b, big_n, dtype=torch.bool, device=device)
            alive.scatter_(1, similar + pre, False)
        # I-stage on the graph of the tokens the S-stage left (rows renormalised over them)
        res = wpr_details(probs, self.iterations[ctx.block], p["init"], p["head_agg"], self.head_filter, alive)
        imp = res.importance[:, pre:]
        ranked = imp if similar is None else imp.scatter(1, similar, float("-inf"))
        keep, _ = split_top(ranked, k)
        seconds = elapsed(t0, ctx.x)
        scores = imp.clone()
        if similar is not None:
            scores.scatter_(1, similar, float("nan"))
        x_new, old_to_new = keep_patches(x, pre, keep)
        actions = actions_from_map(old_to_new, DROPPED)
        if similar is not None:
            actions.scatter_(1, similar, DROPPED_SIMILAR)
        return Reduction(x=x_new, old_to_new=old_to_new, scores=scores, actions=actions, head_variance=res.variance,
                         head_kept=res.kept, seconds=seconds)


@REGISTRY.register(
    "tome", "ToMe", "merging", ("vit",), REF_TOME,
    params=(ParamSpec("keep_rate", 0.7, "float", low=0.01, high=1.0, label="keep rate",
                      help="Used when r is empty: r is the constant r whose MACs come closest to keeping this fraction of "
                           "tokens at the default pruning blocks, so keep rates cost alike across methods."),
            ParamSpec("r", None, "int", low=0, optional=True, bound=lambda f: f["r_max"],
                      help="Tokens merged in every block (constant schedule; the decreasing one starts at 2r). Empty: from "
                           "the keep rate."),
            ParamSpec("r_schedule", "constant", "choice", choices=("constant", "decreasing", "list"), label="r schedule",
                      help="constant: r in every block; decreasing: 2r linearly down to 0 (the same total); list: r_list."),
            ParamSpec("r_list", None, "int_list", low=0, optional=True, label="r per block",
                      help="With the 'list' schedule: the tokens merged in each block."),
            ParamSpec("prop_attn", True, "bool", label="proportional attention",
                      help="Add log(size) to the attention logits so a merged token counts as the patches it holds "
                           "(needed for DeiT and AugReg models).")))
class ToMe(Pruner):
    """Token merging by bipartite soft matching (no pruning: every patch ends up in some token).

    In every block, between attention and MLP: the keys averaged over heads, L2-normalised, are the
    matching metric; the patch tokens are split alternately into A and B; every A token finds its
    most similar B token, and the r most similar pairs merge by a size-weighted average (sizes add
    up). Proportional attention adds log(size) to the attention logits of later blocks. The
    class, distillation and register tokens never merge.
    """

    score_name = "similarity to the closest token of the other set"

    def _plan(self) -> Plan:
        p = self.params
        if p["r_schedule"] == "list":
            rs = tome_r_list(self.info, 0, "list", p.get("r_list"))
        else:
            r = p["r"] if p["r"] is not None else tome_r_for_keep_rate(self.info, p["keep_rate"])
            rs = tome_r_list(self.info, r, p["r_schedule"])
        self.r_effective = rs
        return tome_plan(self.info, rs)

    @property
    def prop_attn(self) -> bool:  # type: ignore[override]
        return bool(self.params["prop_attn"])

    def reduce(self, ctx: LayerContext) -> Reduction:
        t0 = time.perf_counter()
        pre, r = ctx.n_prefix, ctx.remove
        x = ctx.x
        b, n, d = x.shape[0], x.shape[1] - pre, x.shape[2]
        metric = F.normalize(ctx.mean_keys()[:, pre:], dim=-1)
        a, bm = metric[:, 0::2], metric[:, 1::2]
        n_a, n_b = a.shape[1], bm.shape[1]
        sim = a @ bm.transpose(1, 2)
        node_max, node_idx = sim.max(dim=-1)
        edge_order = node_max.argsort(dim=-1, descending=True, stable=True)
        src_idx, unm_idx = edge_order[:, :r], edge_order[:, r:]
        dst_idx = node_idx.gather(1, src_idx)
        seconds = elapsed(t0, ctx.x)

        size = ctx.size if ctx.size is not None else torch.ones(b, pre + n, 1, dtype=x.dtype, device=x.device)
        xp, sp = x[:, pre:] * size[:, pre:], size[:, pre:]
        xa, xb, sa, sb = xp[:, 0::2], xp[:, 1::2], sp[:, 0::2], sp[:, 1::2]
        x_dst = xb.scatter_reduce(1, dst_idx.unsqueeze(-1).expand(-1, -1, d), gather_tokens(xa, src_idx), reduce="sum")
        s_dst = sb.scatter_reduce(1, dst_idx.unsqueeze(-1), sa.gather(1, src_idx.unsqueeze(-1)), reduce="sum")
        x_unm, s_unm = gather_tokens(xa, unm_idx), sa.gather(1, unm_idx.unsqueeze(-1))
        merged_x = torch.cat([x_unm, x_dst], dim=1)
        merged_s = torch.cat([s_unm, s_dst], dim=1)
        x_new = torch.cat([x[:, :pre], merged_x / merged_s], dim=1)
        size_new = torch.cat([size[:, :pre], merged_s], dim=1)

        # where each patch token went: A tokens at 2i, B tokens at 2t+1 (patch-relative)
        n_unm = n_a - r
        a_new = torch.empty(b, n_a, dtype=torch.long, device=x.device)
        a_new.scatter_(1, unm_idx, torch.arange(pre, pre + n_unm, device=x.device).expand(b, n_unm))
        a_new.scatter_(1, src_idx, pre + n_unm + dst_idx)
        b_new = torch.arange(pre + n_unm, pre + n_unm + n_b, device=x.device).expand(b, n_b)
        old_to_new = torch.empty(b, n, dtype=torch.long, device=x.device)
        old_to_new[:, 0::2] = a_new
        old_to_new[:, 1::2] = b_new
        actions = torch.full((b, n), KEPT, dtype=torch.int8, device=x.device)
        act_a = torch.full((b, n_a), KEPT, dtype=torch.int8, device=x.device)
        act_a.scatter_(1, src_idx, MERGED)
        actions[:, 0::2] = act_a
        scores = torch.full((b, n), float("nan"), dtype=node_max.dtype, device=x.device)
        scores[:, 0::2] = node_max
        return Reduction(x=x_new, old_to_new=old_to_new, scores=scores, actions=actions, size=size_new, seconds=seconds)


@REGISTRY.register(
    "evit", "EViT", "importance", ("vit", "cls"), REF_EVIT,
    params=(KEEP_RATE, LAYERS, SCHEDULE,
            ParamSpec("fuse_weights", "mean", "choice", choices=("mean", "sum"), label="fusion",
                      help="mean: the fused token is Σaᵢxᵢ/Σaᵢ over the dropped tokens (keeps the feature scale of an "
                           "off-the-shelf model); sum: Σaᵢxᵢ as in EViT's code (trained with it).")))
class EViT(KeepRatePruner):
    """Keep the tokens the class token attends to most; fuse the inattentive ones into one token.

    In every pruning block the class token's attention row, averaged over heads, scores the patch
    tokens (aᵢ); the top-k stay, and the others are fused into one token Σaᵢxᵢ/Σaᵢ appended to the
    sequence (it competes like any token at later pruning blocks). Only the class token's row of
    the attention is computed explicitly; the block's own attention stays fused.
    """

    fuse = True
    score_name = "class-token attention"

    def reduce(self, ctx: LayerContext) -> Reduction:
        t0 = time.perf_counter()
        scores = _cls_scores(ctx)
        k = self._kept(ctx)
        keep, rest = split_top(scores, k)
        seconds = elapsed(t0, ctx.x)
        weights = scores.gather(1, rest).unsqueeze(-1)
        dropped = gather_tokens(ctx.x[:, ctx.n_prefix:], rest)
        fused = (dropped * weights).sum(1, keepdim=True)
        if self.params["fuse_weights"] == "mean":
            fused = fused / weights.sum(1, keepdim=True).clamp_min(1e-30)
        x, old_to_new = keep_patches(ctx.x, ctx.n_prefix, keep, fused=fused)
        actions = torch.full(old_to_new.shape, FUSED, dtype=torch.int8, device=x.device)
        actions.scatter_(1, keep, KEPT)
        return Reduction(x=x, old_to_new=old_to_new, scores=scores, actions=actions, seconds=seconds)


@REGISTRY.register("topk-cls", "Top-k by CLS attention", "importance", ("vit", "cls"), REF_EVIT,
                   params=(KEEP_RATE, LAYERS, SCHEDULE))
class TopKCLS(KeepRatePruner):
    """Keep the tokens the class token attends to most, and drop the others (EViT without fusion).

    The class token's attention row, averaged over heads, scores the patch tokens; the top-k stay.
    """

    score_name = "class-token attention"

    def reduce(self, ctx: LayerContext) -> Reduction:
        t0 = time.perf_counter()
        return self._select(ctx, _cls_scores(ctx), t0)


@REGISTRY.register("random", "Random", "baseline", ("vit",), "the floor every method should beat",
                   params=(KEEP_RATE, LAYERS, SCHEDULE,
                           ParamSpec("seed", 0, "int", low=0, help="Seed of the random draws (one generator per run).")))
class RandomPrune(KeepRatePruner):
    """Keep a uniformly random subset of the patch tokens: the floor baseline.

    Every patch token draws a uniform score from a seeded generator and the top-k stay, so every
    subset of the budget's size is equally likely. The generator is seeded when the model is
    patched, so a run over the same batches in the same order repeats exactly.
    """

    score_name = "random draw"

    generator: torch.Generator | None = None

    def start(self, device) -> None:
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(int(self.params["seed"]))

    def reduce(self, ctx: LayerContext) -> Reduction:
        t0 = time.perf_counter()
        if self.generator is None:
            self.start(ctx.x.device)
        n = ctx.x.shape[1] - ctx.n_prefix
        scores = torch.rand(ctx.x.shape[0], n, generator=self.generator, device=ctx.x.device)
        return self._select(ctx, scores, t0)


def create(name: str, info: ModelInfo, **params) -> Pruner:
    """Method ``name`` for a model described by ``info`` (parameters validated, defaults filled in)."""
    return REGISTRY.spec(name).impl(info, **params)


__all__ = ["EViT", "KeepRatePruner", "Pruner", "RandomPrune", "ToMe", "TopKCLS", "ZeroTPrune", "create"]
