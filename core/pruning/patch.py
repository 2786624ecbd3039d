"""Patching a timm ViT in place: :func:`apply` and the :class:`PruningSession` it yields.

Every block of the model gets an instance-level ``forward`` (the class's method stays untouched),
removed again on exit, so leaving the context restores the model exactly: same parameters, same
buffers, same attributes, same code path. A block that removes nothing in a configuration runs
the class's own ``forward`` (fused attention, bit-identical logits); a pruning block recomputes
the attention with the same modules and computes explicitly only what its method reads: the
full probabilities (Zero-TPrune), the class token's row (EViT, top-k), or keys averaged over
heads (ToMe, Zero-TPrune's S-stage). Its attention output still comes from fused SDPA unless the
method needs the full probabilities anyway, in which case they are reused for the output.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .base import REGISTRY, ModelInfo, PruningError, capabilities, inspect_model
from .flops import fixed_macs
from .methods import Pruner
from .schedule import unpruned_plan
from .tokens import ABSENT, LayerContext


@dataclass
class LayerTrace:
    """What one pruning block did to a batch, per *original* patch (N0 = patches of the image).

    ``block``: block index; ``n_in``/``n_out``: patch tokens before/after (prefix excluded);
    ``origin [B,N0]`` (int32): sequence position of the token holding each patch after this block
    (−1: dropped; patches sharing a position were merged or fused into one token);
    ``scores [B,N0]`` (float32): the method's score of the token that held the patch when the block
    decided (NaN where the patch was already gone or the method gives it none);
    ``actions [B,N0]`` (int8): codes of :data:`core.pruning.ACTIONS` (kept, dropped, dropped as
    similar, merged, fused, −1 already gone); ``head_variance``/``head_kept [B,H]``: Zero-TPrune's
    head filter (variance of N·s per head and the heads it aggregated), else None.
    """

    block: int
    n_in: int
    n_out: int
    origin: np.ndarray
    scores: np.ndarray
    actions: np.ndarray
    head_variance: np.ndarray | None = None
    head_kept: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        arrays = (self.origin, self.scores, self.actions, self.head_variance, self.head_kept)
        return int(sum(a.nbytes for a in arrays if a is not None))

    def groups(self, image: int) -> np.ndarray:
        """Per original patch of image ``image``: the id of the token holding it (−1: dropped)."""
        return self.origin[image]

    def retention(self) -> np.ndarray:
        """[B,N0] float32: 1/(patches in its token) for each surviving patch, 0 for a dropped one.
        A patch alone in its token counts 1, two merged patches ½ each; rows sum to the tokens kept."""
        return retention_weights(self.origin)


def retention_weights(origin: np.ndarray) -> np.ndarray:
    """[B,N0] -> [B,N0] float32: each surviving patch's share of its token (1/group size), 0 when dropped."""
    origin = np.asarray(origin)
    out = np.zeros(origin.shape, np.float32)
    for i, row in enumerate(origin):
        alive = row >= 0
        if alive.any():
            _, inverse, counts = np.unique(row[alive], return_inverse=True, return_counts=True)
            out[i, alive] = 1.0 / counts[inverse]
    return out


@dataclass
class PruningSession:
    """The live state of a patched model, yielded by :func:`apply`.

    Fixed by the configuration: ``method`` (id), ``name``, ``params`` (validated, defaults filled
    in), ``info`` (:class:`~core.pruning.ModelInfo`), ``plan`` (token counts, known before running),
    ``score_name`` (what the per-layer ``scores`` are), ``macs``/``macs_unpruned``/``macs_ratio``.
    After each forward pass: ``tokens_per_block`` (tokens entering each block's attention, prefix
    included), ``mlp_tokens_per_block`` (entering each MLP), ``importance_seconds`` (time the method
    spent deciding in that pass: WPR, similarity, top-k; the attention itself excluded), and with
    ``trace`` the per-block :class:`LayerTrace` list ``layers``. ``importance_seconds_total`` and
    ``forwards`` add up over passes.
    """

    model: torch.nn.Module = field(repr=False)
    info: ModelInfo
    pruner: Pruner = field(repr=False)
    trace: bool = True
    tokens_per_block: list[int] = field(default_factory=list)
    mlp_tokens_per_block: list[int] = field(default_factory=list)
    layers: list[LayerTrace] = field(default_factory=list)
    importance_seconds: float = 0.0
    importance_seconds_total: float = 0.0
    forwards: int = 0

    def __post_init__(self):
        self._fixed = fixed_macs(self.model)
        self._size: torch.Tensor | None = None
        self._origin: torch.Tensor | None = None

    # ------------------------------------------------------------------ configuration facts
    @property
    def method(self) -> str:
        return self.pruner.spec.id

    @property
    def name(self) -> str:
        return self.pruner.spec.name

    @property
    def params(self) -> dict:
        return dict(self.pruner.params)

    @property
    def plan(self):
        return self.pruner.plan

    @property
    def score_name(self) -> str:
        return self.pruner.score_name

    @property
    def macs(self) -> float:
        """MACs per image of this configuration (analytical, :func:`core.pruning.vit_flops`)."""
        return float(self.plan.macs(self.info, self._fixed))

    @property
    def macs_unpruned(self) -> float:
        return float(unpruned_plan(self.info).macs(self.info, self._fixed))

    @property
    def macs_ratio(self) -> float:
        return self.macs / self.macs_unpruned

    @property
    def origin(self) -> np.ndarray | None:
        """[B,N0] after the last block of the last pass (see :class:`LayerTrace`), with ``trace``."""
        return None if self._origin is None else self._origin.cpu().numpy().astype(np.int32)

    # ------------------------------------------------------------------ the patched blocks
    def _begin(self, x: torch.Tensor) -> None:
        depth = self.info.depth
        self.tokens_per_block = [0] * depth
        self.mlp_tokens_per_block = [0] * depth
        self.layers = []
        self.importance_seconds = 0.0
        self.forwards += 1
        self._size = None
        p, n0 = self.info.n_prefix, self.info.n_patches
        self._origin = torch.arange(p, p + n0, device=x.device).expand(x.shape[0], n0).clone() if self.trace else None

    def forward_for(self, block: torch.nn.Module, index: int):
        def forward(x, attn_mask=None, is_causal=False):
            return self._run_block(block, index, x, attn_mask, is_causal)

        return forward

    def _run_block(self, blk, index: int, x: torch.Tensor, attn_mask, is_causal: bool) -> torch.Tensor:
        if index == 0:
            self._begin(x)
        if attn_mask is not None or is_causal:
            raise PruningError("Token pruning does not support attention masks or causal attention.")
        expected = self.plan.attn_tokens[index]
        if x.shape[1] != expected:
            raise PruningError(f"Block {index} received {x.shape[1]} tokens, but the pruning plan expects {expected}: the "
                               f"input must have the model's own size {self.info.img_size}.")
        self.tokens_per_block[index] = int(x.shape[1])
        pruner = self.pruner
        remove = pruner.removes(index)
        bias = self._size.log().squeeze(-1) if (self._size is not None and pruner.prop_attn) else None
        if remove == 0 and bias is None:
            self.mlp_tokens_per_block[index] = int(x.shape[1])
            return type(blk).forward(blk, x)  # the block's own code: identical output when nothing is pruned
        need = remove > 0
        attn_out, probs, q, k = attention(blk.attn, blk.norm1(x), bias, need and pruner.needs_probs)
        x = x + blk.drop_path1(blk.ls1(attn_out))
        if need:
            ctx = LayerContext(x=x, n_prefix=self.info.n_prefix, block=index, remove=remove, q=q, k=k,
                               scale=float(blk.attn.scale), bias=bias, probs=probs, size=self._size)
            if x.is_cuda:
                torch.cuda.synchronize(x.device)
            # no thread-count change here (request code; core.runtime sizes the pools once): with OpenMP's
            # passive waiting the small decision ops no longer stall at barriers on a shared machine
            red = pruner.reduce(ctx)
            if self.trace:
                self._record(index, x.shape[1] - self.info.n_prefix, red)
            self.importance_seconds += red.seconds
            self.importance_seconds_total += red.seconds
            if red.size is not None:
                self._size = red.size
            x = red.x
        self.mlp_tokens_per_block[index] = int(x.shape[1])
        return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))

    def _record(self, index: int, n_in: int, red) -> None:
        p = self.info.n_prefix
        origin = self._origin
        alive = origin >= 0
        rel = (origin - p).clamp_min(0)
        new_origin = torch.where(alive, red.old_to_new.gather(1, rel), torch.full_like(origin, -1))
        scores = torch.where(alive, red.scores.gather(1, rel).float(), torch.full(origin.shape, float("nan"),
                                                                                     device=origin.device))
        actions = torch.where(alive, red.actions.gather(1, rel), torch.tensor(ABSENT, dtype=torch.int8,
                                                                               device=origin.device))
        self._origin = new_origin
        hv = None if red.head_variance is None else red.head_variance.detach().float().cpu().numpy()
        hk = None if red.head_kept is None else red.head_kept.detach().cpu().numpy()
        self.layers.append(LayerTrace(
            block=index, n_in=int(n_in), n_out=int(red.x.shape[1] - p),
            origin=new_origin.detach().cpu().numpy().astype(np.int32),
            scores=scores.detach().cpu().numpy().astype(np.float32),
            actions=actions.detach().cpu().numpy().astype(np.int8), head_variance=hv, head_kept=hk))


def attention(attn, h: torch.Tensor, bias: torch.Tensor | None, need_probs: bool):
    """timm ``Attention.forward`` on ``h`` with an optional additive key bias [B,N] (ToMe's log size).
    Returns (output, probs [B,H,N,N] or None, q, k [B,H,N,Dh]): fused SDPA unless ``need_probs``, in
    which case the probabilities are formed explicitly and reused for the output."""
    b, n, _ = h.shape
    gate_layer = getattr(attn, "gate", None)
    gate = gate_layer(h).sigmoid() if gate_layer is not None else None
    qkv = attn.qkv(h).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    mask = None if bias is None else bias.to(q.dtype)[:, None, None, :]
    probs = None
    if need_probs:
        logits = (q * attn.scale) @ k.transpose(-2, -1)
        if mask is not None:
            logits = logits + mask
        probs = logits.softmax(dim=-1)
        out = attn.attn_drop(probs) @ v
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             dropout_p=attn.attn_drop.p if attn.training else 0.0)
    out = out.transpose(1, 2).reshape(b, n, attn.num_heads * attn.head_dim)
    norm = getattr(attn, "norm", None)
    if norm is not None:
        out = norm(out)
    if gate is not None:
        out = out * gate
    return attn.proj_drop(attn.proj(out)), probs, q, k


@contextmanager
def apply(model, method: str, keep_rate: float = 0.7, *, trace: bool = True, **params):
    """Prune or merge the tokens of a timm ViT in place, for the duration of a ``with`` block.

    ``method``: a registry id (:func:`core.pruning.available`); ``keep_rate``: the fraction of its
    patch tokens each pruning block keeps (1.0 prunes nothing; ToMe derives its r from it unless
    ``r`` is given); ``params``: the method's parameters (see ``core.pruning.spec(method).params``).
    ``trace=False`` skips the per-block traces (for throughput measurements).
    Yields a :class:`PruningSession`; after a forward pass it holds ``tokens_per_block`` and the
    traces. On exit the model is exactly as before. Raises :class:`PruningError` for an unsupported
    model, an unknown method or a parameter out of range.

    >>> with apply(model, "zero-tprune", keep_rate=0.7) as session:   # doctest: +SKIP
    ...     logits = model(x)
    ...     session.tokens_per_block, session.macs_ratio
    """
    info = inspect_model(model)
    spec = REGISTRY.spec(method)
    reason = REGISTRY.unavailable_reason(method, capabilities(model))
    if reason:
        raise PruningError(reason)
    if any("forward" in blk.__dict__ for blk in model.blocks):
        raise PruningError("This model is already patched (a pruning context is open on it); leave that context first.")
    pruner = spec.impl(info, keep_rate=keep_rate, **params)
    session = PruningSession(model=model, info=info, pruner=pruner, trace=trace)
    param = next(model.parameters(), None)
    pruner.start(param.device if param is not None else torch.device("cpu"))
    patched = []
    try:
        for i, blk in enumerate(model.blocks):
            blk.forward = session.forward_for(blk, i)
            patched.append(blk)
        yield session
    finally:
        for blk in patched:
            blk.__dict__.pop("forward", None)


__all__ = ["LayerTrace", "PruningSession", "apply", "attention", "retention_weights"]
