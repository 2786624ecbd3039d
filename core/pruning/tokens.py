"""Token bookkeeping shared by the pruners: what a block hands a method, what the method decides,
and the tensor operations that carry the decision out.

A method sees the tokens after the block's attention residual (``x``), decides, and returns a
:class:`Reduction`: the new sequence and, for every patch token it was given, the position of the
token that now holds it (``old_to_new``, −1 when dropped; several tokens map to one position when
merged or fused). Chaining ``old_to_new`` over blocks traces every original patch to the token
that holds it, which is how merges and drops are shown on the image.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

#: what happened to a token at a block (per original patch in a :class:`~core.pruning.LayerTrace`)
ABSENT, KEPT, DROPPED, DROPPED_SIMILAR, MERGED, FUSED = -1, 0, 1, 2, 3, 4
ACTIONS = {ABSENT: "already gone", KEPT: "kept", DROPPED: "dropped (low importance)",
           DROPPED_SIMILAR: "dropped (similar to a kept token)", MERGED: "merged into another token",
           FUSED: "fused into the inattentive token"}


@dataclass
class LayerContext:
    """What a pruning block hands its method. ``x [B,N,D]``: tokens after the attention residual;
    ``n_prefix``; ``block``; ``remove``: patch tokens to remove here (ToMe: r); ``q``/``k [B,H,N,Dh]``:
    the block's queries and keys (after timm's q/k norm); ``scale``: the attention scale; ``bias
    [B,N]``: the additive key bias (ToMe's log size) or None; ``probs [B,H,N,N]``: the attention
    probabilities when the method asked for them (``needs_probs``); ``size [B,N,1]``: how many
    original patches each token holds (None: all 1). ``cls_attention()`` and ``mean_keys()`` compute
    what a method reads on demand, inside its timed decision."""

    x: torch.Tensor
    n_prefix: int
    block: int
    remove: int
    q: torch.Tensor
    k: torch.Tensor
    scale: float
    bias: torch.Tensor | None = None
    probs: torch.Tensor | None = None
    size: torch.Tensor | None = None

    def cls_attention(self) -> torch.Tensor:
        """The class token's attention row [B,H,N]: one query against every key (the full matrix is not formed)."""
        if self.probs is not None:
            return self.probs[:, :, 0]
        logits = (self.q[:, :, :1] * self.scale) @ self.k.transpose(-2, -1)
        if self.bias is not None:
            logits = logits + self.bias[:, None, None, :]
        return logits.softmax(dim=-1).squeeze(2)

    def mean_keys(self) -> torch.Tensor:
        """Keys averaged over heads [B,N,Dh] (ToMe's matching metric, Zero-TPrune's similarity)."""
        return self.k.mean(dim=1)


@dataclass
class Reduction:
    """A method's decision, carried out. ``x``: the new sequence; ``old_to_new [B,n]``: the new
    position of the token holding each of the n patch tokens (−1: dropped); ``size``: the new token
    sizes (ToMe) or None; ``scores [B,n]``: the method's score of each patch token (NaN where it has
    none); ``actions [B,n]`` (int8 codes of :data:`ACTIONS`); ``head_variance``/``head_kept [B,H]``
    (Zero-TPrune's head filter); ``seconds``: time spent deciding (the importance computation)."""

    x: torch.Tensor
    old_to_new: torch.Tensor
    scores: torch.Tensor
    actions: torch.Tensor
    size: torch.Tensor | None = None
    head_variance: torch.Tensor | None = None
    head_kept: torch.Tensor | None = None
    seconds: float = 0.0


def elapsed(t0: float, like: torch.Tensor) -> float:
    """Seconds since ``t0`` (``time.perf_counter``), after the device of ``like`` has finished its work."""
    if like.is_cuda:
        torch.cuda.synchronize(like.device)
    return time.perf_counter() - t0


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x [B,N,D] at idx [B,K] -> [B,K,D]."""
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def keep_patches(x: torch.Tensor, n_prefix: int, keep: torch.Tensor, fused: torch.Tensor | None = None):
    """The sequence [prefix, patches at ``keep`` (patch-relative, [B,k]), optional fused token [B,1,D]]
    and the ``old_to_new`` map of the n patch tokens (dropped ones -> the fused token, or −1)."""
    b, n = x.shape[0], x.shape[1] - n_prefix
    k = keep.shape[1]
    parts = [x[:, :n_prefix], gather_tokens(x[:, n_prefix:], keep)]
    old_to_new = torch.full((b, n), -1 if fused is None else n_prefix + k, dtype=torch.long, device=x.device)
    old_to_new.scatter_(1, keep, torch.arange(n_prefix, n_prefix + k, device=x.device).expand(b, k))
    if fused is not None:
        parts.append(fused)
    return torch.cat(parts, dim=1), old_to_new


def split_top(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices [B,k] of the k highest scores (sorted by position, so the kept tokens keep their
    order) and of the rest [B,n−k] (by descending score)."""
    order = scores.argsort(dim=1, descending=True, stable=True)
    keep = order[:, :k].sort(dim=1).values
    return keep, order[:, k:]


def actions_from_map(old_to_new: torch.Tensor, code: int) -> torch.Tensor:
    """KEPT where a patch token kept a position of its own, ``code`` where it was removed."""
    acts = torch.full(old_to_new.shape, KEPT, dtype=torch.int8, device=old_to_new.device)
    acts[old_to_new < 0] = code
    return acts


__all__ = ["ABSENT", "ACTIONS", "DROPPED", "DROPPED_SIMILAR", "FUSED", "KEPT", "MERGED", "LayerContext", "Reduction",
           "actions_from_map", "elapsed", "gather_tokens", "keep_patches", "split_top"]
