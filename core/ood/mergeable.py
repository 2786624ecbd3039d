"""Fitting detectors from statistics merged across blocks: the streaming path of the scaled audit.

A detector's in-memory ``fit(outputs)`` sees every fit sample at once. At a million images the fit
set does not fit on one node, so :mod:`core.scale` streams it in blocks of :class:`ModelOutputs`
instead, and every detector is fitted here from statistics that are computed per block and merged:

- ``fitter = stream_fitter("mahalanobis", params)`` (or :class:`NotMergeable` with the reason);
- per pass: ``part = fitter.partial(BlockStats(outputs, ids))`` on every block (anywhere: a Ray
  worker or the local process), ``merged = fitter.merge(a, b)`` in any order (associative: sums,
  counts, exact integer histograms, a bottom-k reservoir), then ``done = fitter.advance(merged)``;
- ``fitter.detector`` is then fitted and scores exactly as one fitted in memory.

The statistics, per family:

- **counts and sums** (float64): fDBD's and DICE's mean feature, SHE's class patterns, KLM's mean
  softmax per predicted class, ViM's mean max-logit and mean virtual logit;
- **class Gaussians** (Mahalanobis, RMDS, WDiscOOD): per class the count and mean, and the pooled
  within-class scatter Σ_c Σ_{i∈c} (z_i − μ_c)(z_i − μ_c)ᵀ, merged with the parallel update of Chan,
  Golub & LeVeque (1979): M = M_A + M_B + Σ_c (n_cA n_cB / n_c) δ_c δ_cᵀ with δ_c = μ_cB − μ_cA, so no
  raw second moment is ever differenced (no cancellation);
- **Gram matrices about a fixed point** (ViM, Residual): Σ (z − u)(z − u)ᵀ with u = −W⁺b, plain sums;
- **an exact percentile** (ReAct): integer histograms of the order-preserving bit pattern of float32
  (the top 16 bits, then the low 16 bits inside the one or two bins that hold the order statistics),
  a fixed, data-independent binning that gives the exact order statistics, so the threshold equals the
  in-memory ``np.percentile`` bit for bit;
- **a seeded reservoir** (KNN, NNGuide banks): the k samples with the smallest 64-bit hash of
  (seed, sample id); the bottom-k of a union is the bottom-k of the bottom-k's, so it merges exactly
  and does not depend on the block order or the number of workers;
- **one order**: each block's statistics are summed in a fixed order (one thread) and the engines merge
  the blocks in the plan's order, so the merged statistics, and so the fitted detectors, are the same
  bit for bit whichever engine and however many workers computed them;
- **passes**: ViM's α and ConjNorm's partition need the fitted space first, TempScale's Newton iteration
  one pass per step, ReAct's second histogram the first.

Where the merged fit is the in-memory one up to float64 rounding (Mahalanobis, RMDS, ViM, Residual,
SHE, fDBD, DICE, KLM, ReAct exactly, KNN with the whole fit set as bank, ConjNorm, WDiscOOD,
TempScale), ``tests/scale`` checks that they agree. NNGuide's and KNN's sub-sampled banks are drawn by
hash instead of ``numpy.random.choice``: another (equally random) subset than the in-memory fit's.
"""
from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

from core.outputs import ModelOutputs

from . import create
from ._stats import centred_gram, class_means, energy, f64, l2_normalise
from .base import REGISTRY, Detector, OODError, class_assignment

#: detectors that need the model and the input images, or cannot be fitted from statistics: why
NOT_MERGEABLE = {
    "odin": "ODIN re-runs the network forward, backward and forward on every input image; the scaled engines score "
            "ModelOutputs blocks only, so run it with the in-memory audit (core.ood.workflow.evaluate).",
}


class NotMergeable(OODError):
    """A detector that cannot be fitted from merged statistics; the message says why."""


def mergeable_reason(name: str) -> str | None:
    """Why detector ``name`` cannot be fitted from merged block statistics (None when it can)."""
    if name in NOT_MERGEABLE:
        return NOT_MERGEABLE[name]
    if name not in _FITTERS:
        return f"{REGISTRY.spec(name).name} has no fit from merged statistics yet."
    return None


def mergeable_detectors() -> list[str]:
    return [d for d in REGISTRY.available() if mergeable_reason(d) is None]


# ---------------------------------------------------------------------------- per-block statistics
class BlockStats:
    """One block of outputs and its sample ids, with the statistics several fitters share computed once."""

    def __init__(self, outputs: ModelOutputs, ids):
        self.outputs = outputs
        self.ids = np.asarray(ids).astype(str)
        if len(self.ids) != len(outputs):
            raise ValueError(f"{len(self.ids)} sample ids for {len(outputs)} samples")
        self._memo: dict[Any, Any] = {}

    def memo(self, key, compute):
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def meta(self) -> dict:
        return self.memo("meta", lambda: block_meta(self.outputs))

    def class_gaussian(self, transform: str = "none") -> dict:
        return self.memo(("class_gaussian", transform), lambda: class_gaussian_partial(
            self._transformed(transform), class_assignment(self.outputs)[0], self.outputs.num_classes))

    def _transformed(self, transform: str) -> np.ndarray:
        x = self.outputs.features
        if transform == "l2":
            return self.memo("l2", lambda: l2_normalise(x))
        return x

    def hashes(self, seed: int) -> np.ndarray:
        return self.memo(("hash", seed), lambda: sample_hashes(seed, self.ids))


def block_meta(out: ModelOutputs) -> dict:
    """What every fit needs to know about the fit set: counts, classes, dimensions, the head, the signs."""
    y, source = class_assignment(out)
    c = out.num_classes
    return {
        "n": len(out),
        "classes": np.bincount(y[y >= 0], minlength=c).astype(np.int64),
        "labelled": 0 if out.labels is None else int(((out.labels >= 0) & (out.labels < c)).sum()),
        "has_labels": out.labels is not None,
        "source": source,
        "num_classes": c,
        "dim": None if out.features is None else int(out.features.shape[1]),
        "negative": bool(out.features is not None and len(out) and (out.features < 0).any()),
        "head": None if out.head_weight is None else (out.head_weight, out.head_bias),
        "class_names": list(out.class_names),
        "model": str(out.meta.get("model", "")) if out.meta else "",
    }


def merge_meta(a: dict, b: dict) -> dict:
    if a["num_classes"] != b["num_classes"] or a["dim"] != b["dim"]:
        raise OODError(f"Blocks of the fit set disagree: {a['num_classes']} and {b['num_classes']} classes, "
                       f"{a['dim']} and {b['dim']} features; were they produced by one model?")
    if (a["head"] is None) != (b["head"] is None) or (a["head"] is not None and not (
            np.array_equal(a["head"][0], b["head"][0]) and np.array_equal(a["head"][1], b["head"][1]))):
        raise OODError("Blocks of the fit set come with different classification heads; were they produced by one model?")
    return {**a, "n": a["n"] + b["n"], "classes": a["classes"] + b["classes"], "labelled": a["labelled"] + b["labelled"],
            "has_labels": a["has_labels"] and b["has_labels"], "negative": a["negative"] or b["negative"],
            "source": a["source"] if a["source"] == b["source"] else "labels and predictions"}


def class_gaussian_partial(x: np.ndarray, y: np.ndarray, c: int) -> dict:
    """Per class (of C) the count and the float64 mean, and the pooled within-class scatter of the block."""
    d = x.shape[1]
    counts = np.zeros(c, np.int64)
    means = np.zeros((c, d))
    if (y >= 0).any():
        m, classes, n = class_means(x, y)
        counts[classes] = n
        means[classes] = m
        which = np.where(y >= 0, y, -1)
        scatter = centred_gram(x, means, which=which, workers=1)  # one fixed summation order per block
    else:
        scatter = np.zeros((d, d))
    return {"counts": counts, "means": means, "scatter": scatter}


def merge_class_gaussian(a: dict, b: dict) -> dict:
    """Chan, Golub & LeVeque's pairwise update, per class, of the counts, means and pooled scatter."""
    na, nb = a["counts"].astype(np.float64), b["counts"].astype(np.float64)
    n = na + nb
    safe = np.where(n > 0, n, 1.0)
    delta = b["means"] - a["means"]
    means = a["means"] + delta * (nb / safe)[:, None]
    weight = na * nb / safe  # 0 for a class missing on either side
    scatter = a["scatter"] + b["scatter"] + (delta * weight[:, None]).T @ delta
    return {"counts": a["counts"] + b["counts"], "means": means, "scatter": scatter}


def sample_hashes(seed: int, ids) -> np.ndarray:
    """A 64-bit hash of (seed, sample id) per sample: the order of a seeded reservoir (BLAKE2b, stable
    across processes and machines, unlike Python's ``hash``)."""
    out = np.empty(len(ids), np.uint64)
    prefix = f"{int(seed)}|".encode()
    for i, s in enumerate(ids):
        out[i] = int.from_bytes(hashlib.blake2b(prefix + str(s).encode(), digest_size=8).digest(), "little")
    return out


def bottom_k(part: dict, k: int) -> dict:
    """The k rows with the smallest (hash, id), in that order (the canonical order of a bank)."""
    order = np.lexsort((part["ids"], part["hash"]))[:k]
    return {key: v[order] for key, v in part.items()}


def merge_bottom_k(a: dict, b: dict, k: int) -> dict:
    return bottom_k({key: np.concatenate([a[key], b[key]]) for key in a}, k)


def float32_order_keys(x: np.ndarray) -> np.ndarray:
    """uint32 keys whose order is the order of the float32 values (negative values: all bits flipped;
    others: the sign bit set). A fixed, data-independent map, so histograms of keys merge exactly."""
    bits = np.ascontiguousarray(x, np.float32).reshape(-1).view(np.uint32)
    neg = (bits >> np.uint32(31)).astype(bool)
    return np.where(neg, ~bits, bits | np.uint32(0x80000000))


def float32_of_key(key: int) -> np.float32:
    key = np.uint32(key)
    bits = key & np.uint32(0x7FFFFFFF) if key & np.uint32(0x80000000) else ~key
    return np.array([bits], np.uint32).view(np.float32)[0]


# ---------------------------------------------------------------------------- the fitters
class StreamFit:
    """Fits one detector from block statistics, one pass over the blocks at a time.

    ``source``: which blocks the passes read ("fit", or "validation" for detectors calibrated on held-out
    data when a validation set is given). Subclasses implement ``_partial(block)``, ``_merge(a, b)`` and
    ``_advance(merged) -> done`` for the passes after the first; the first pass always gathers the
    block metadata (counts, classes, head, dimensions) that the base checks as ``Detector.fit`` does."""

    passes_hint = 1

    def __init__(self, name: str, params: dict | None = None, source: str = "fit"):
        self.name = name
        self.detector: Detector = create(name, **dict(params or {}))
        self.params = dict(self.detector.params)
        self.source = source
        self.pass_no = 0
        self.meta: dict | None = None

    @property
    def spec(self):
        return self.detector.spec

    # -- the protocol
    def partial(self, block: BlockStats) -> Any:
        if self.pass_no == 0:
            return {"meta": block.meta(), "stats": self._first_partial(block)}
        return self._partial(block)

    def merge(self, a, b):
        if a is None:
            return b
        if b is None:
            return a
        if self.pass_no == 0:
            stats = b["stats"] if a["stats"] is None else a["stats"] if b["stats"] is None else self._merge(a["stats"], b["stats"])
            return {"meta": merge_meta(a["meta"], b["meta"]), "stats": stats}
        return self._merge(a, b)

    def advance(self, merged) -> bool:
        """Consume the merged statistics of this pass; True when the detector is fitted."""
        if merged is None:
            raise OODError(f"{self.spec.name}: the {self.source} set has no samples to fit on.")
        if self.pass_no == 0:
            self.meta = merged["meta"]
            self._begin(self.meta)
            merged = merged["stats"]
        done = self._advance(merged)
        self.pass_no += 1
        if done:
            self.detector.fitted = True
        return done

    # -- what subclasses change
    #: the first pass gathers ``_partial``'s statistics too (otherwise only the metadata, or ``_first_partial``'s)
    first_pass_stats = False

    def _first_partial(self, block: BlockStats):
        return self._partial(block) if self.first_pass_stats else None

    def _partial(self, block: BlockStats):
        return None

    def _merge(self, a, b):
        return None

    def _advance(self, merged) -> bool:
        return True

    # -- the checks of Detector.fit, from the merged metadata
    def _begin(self, meta: dict) -> None:
        det, spec = self.detector, self.spec
        src = describe_source_meta(meta)
        if meta["n"] == 0:
            raise OODError(f"{spec.name} needs at least one sample; {src} have none.")
        if "features" in spec.needs and meta["dim"] is None:
            raise OODError(f"{spec.name} needs penultimate features; {src} have none.")
        if "head" in spec.needs and meta["head"] is None:
            raise OODError(f"{spec.name} needs the weights of a linear classification head; {src} have none.")
        if "logits" in spec.needs and meta["num_classes"] < 2:
            raise OODError(f"{spec.name} compares classes and needs at least 2 logits; {src} have "
                           f"{meta['num_classes']}.")
        if spec.class_conditional and self._class_check():
            present = np.flatnonzero(meta["classes"])
            if len(present) < 2:
                names = meta["class_names"] or [str(k) for k in range(meta["num_classes"])]
                got = "no class" if len(present) == 0 else f"only class {names[present[0]]!r}"
                raise OODError(f"{spec.name} builds per-class statistics and needs fit samples from at least "
                               f"2 classes; the fit set's {meta['source']} contain {got}.")
        if "labels" in spec.needs and det._needs_labels() and meta["labelled"] == 0:
            raise OODError(f"{spec.name} needs class labels on the fit set; none (or only -1) were found in {src}.")
        det._fit_dims = {"classes": meta["num_classes"]}
        if "features" in spec.needs or "head" in spec.needs:
            det._fit_dims["feature dimension"] = meta["dim"]
        det._fit_head = meta["head"] if "head" in spec.needs else None
        det.info = {}

    def _class_check(self) -> bool:
        return True


def describe_source_meta(meta: dict) -> str:
    """:func:`core.ood.base.describe_source` of the merged fit set."""
    model = meta["model"]
    if model == "uploaded outputs":
        return "the uploaded .npz"
    return f"the outputs of '{model}'" if model else "these model outputs"


class _Stateless(StreamFit):
    """Detectors without statistics (MSP, Energy, ASH, ...): the first pass only checks the fit set."""


class _ClassGaussianFit(StreamFit):
    first_pass_stats = True

    transform = "none"

    def _partial(self, block):
        return block.class_gaussian(self.transform)

    def _merge(self, a, b):
        return merge_class_gaussian(a, b)

    def _advance(self, merged):
        classes = np.flatnonzero(merged["counts"])
        counts = merged["counts"][classes]
        cov = merged["scatter"] / counts.sum()
        self.detector._set_class_gaussian(merged["means"][classes], classes, counts, cov, self.meta["source"])
        return True


class _WDiscOODFit(StreamFit):
    """WDiscOOD: the first pass decides the normalisation (signed features), the second gathers the class
    Gaussian of the (normalised) features; whitening is linear, so the whitened statistics follow:
    S_w(x̃) = W S_w(x) W, μ̃_c = μ_c W, and the whitened global mean is (Σ n_c μ_c / n) W."""

    def _advance(self, merged):
        if self.pass_no == 0:
            self.detector._set_options(self.meta["negative"])
            return False
        from .paper import _sym_inv_sqrt

        det = self.detector
        classes = np.flatnonzero(merged["counts"])
        counts = merged["counts"][classes]
        means = merged["means"][classes]
        det.whiten_ = _sym_inv_sqrt(merged["scatter"] / counts.sum())
        means_w = means @ det.whiten_
        center = (counts @ means / counts.sum()) @ det.whiten_
        s_w = det.whiten_ @ (merged["scatter"] / counts.sum()) @ det.whiten_
        det._set_discriminants(means_w, center, s_w, self.meta["source"])
        return True

    def _partial(self, block):
        return block.class_gaussian("l2" if self.detector.normalize_ else "none")

    def _merge(self, a, b):
        return merge_class_gaussian(a, b)


class _ResidualFit(StreamFit):
    """ViM and Residual: the Gram matrix of z − u (u = −W⁺b, fixed by the head) and the mean max-logit in the
    first pass; ViM's mean virtual logit in a second, once the residual basis is known."""

    def _first_partial(self, block):
        out = block.outputs
        u = self._origin(out.head_weight, out.head_bias)
        return {"gram": centred_gram(out.features, u, workers=1), "n": len(out), "max_logit": float(f64(out.logits).max(1).sum())}

    def _origin(self, w, b):
        from .feature import residual_origin

        key = (w.tobytes(), b.tobytes())
        if getattr(self, "_origin_key", None) != key:
            self._origin_key, self._origin_value = key, residual_origin(w, b)
        return self._origin_value

    def _partial(self, block):  # ViM's second pass
        return {"vlogit": float(self.detector._residual_norm(block.outputs.features).sum()), "n": len(block.outputs)}

    def _merge(self, a, b):
        return {k: a[k] + b[k] for k in a}

    def _advance(self, merged):
        from .feature import residual_dim

        det = self.detector
        if self.pass_no == 0:
            w, b = self.meta["head"]
            dim = residual_dim(self.spec.name, det.params, w.shape[1])
            det.origin_ = self._origin(w, b)
            det._set_residual(merged["gram"] / merged["n"], dim)
            self._mean_max_logit = merged["max_logit"] / merged["n"]
            return self.name != "vim"
        det._set_alpha(self._mean_max_logit, merged["vlogit"] / merged["n"])
        return True


class _BankFit(StreamFit):
    """KNN and NNGuide: the bank is the seeded bottom-k of the fit samples by hash of (seed, sample id),
    kept in that canonical order, so it does not depend on blocks or workers. The first pass counts the
    fit set (the bank size is a share of it), the second keeps the bank."""

    def _bank_size(self, n: int) -> int:
        p = self.detector.params
        if self.name == "knn":
            return max(1, math.ceil(p["bank_fraction"] * n))
        return min(n, max(math.ceil(p["bank_fraction"] * n), 5 * p["k"]))

    def _advance(self, merged):
        if self.pass_no == 0:
            self.size = self._bank_size(self.meta["n"])
            return False
        det = self.detector
        bank = merged["rows"]
        if self.name == "knn":
            det.bank_t_ = np.ascontiguousarray(bank.T)
            det.bank_sq_ = (bank * bank).sum(1)
            det.k_ = min(det.params["k"], len(bank))
            det.info.update(k=det.k_, bank_size=len(bank))
        else:
            det.bank_t_ = np.ascontiguousarray(bank.T, np.float32)
            det.k_ = min(det.params["k"], self.size)
            det.info.update(k=det.k_, bank_size=int(self.size))
        det.info["bank"] = "the fit samples with the smallest hash of (seed, sample id)"
        return True

    def _partial(self, block):
        out = block.outputs
        h = block.hashes(self.detector.params["seed"])
        keep = np.lexsort((block.ids, h))[:self.size]
        if self.name == "knn":
            rows = l2_normalise(out.features[keep], np.float32)
        else:
            rows = l2_normalise(out.features[keep]) * energy(out.logits[keep])[:, None]
        return {"hash": h[keep], "ids": block.ids[keep], "rows": rows}

    def _merge(self, a, b):
        return merge_bottom_k(a, b, self.size)


class _SHEFit(StreamFit):
    first_pass_stats = True

    def _partial(self, block):
        out = block.outputs
        c = out.num_classes
        pred = out.logits.argmax(1)
        y, _ = class_assignment(out)
        x = f64(out.features)
        correct = np.zeros((c, x.shape[1]))
        predicted = np.zeros((c, x.shape[1]))
        np.add.at(correct, pred[pred == y], x[pred == y])
        np.add.at(predicted, pred, x)
        return {"correct": correct, "n_correct": np.bincount(pred[pred == y], minlength=c),
                "predicted": predicted, "n_predicted": np.bincount(pred, minlength=c)}

    def _merge(self, a, b):
        return {k: a[k] + b[k] for k in a}

    def _advance(self, m):
        c, d = m["correct"].shape
        patterns = np.zeros((c, d))
        fallback, empty = [], []
        for k in range(c):
            if m["n_correct"][k]:
                patterns[k] = m["correct"][k] / m["n_correct"][k]
            elif m["n_predicted"][k]:
                patterns[k] = m["predicted"][k] / m["n_predicted"][k]
                fallback.append(k)
            else:
                empty.append(k)
        self.detector.patterns_ = patterns
        self.detector.info.update(classes_from=self.meta["source"], fallback_classes=fallback, empty_classes=empty)
        return True


class _MeanFeatureFit(StreamFit):
    """fDBD's fit mean and DICE's mean activation: column sums and the count."""

    first_pass_stats = True

    def _partial(self, block):
        return {"sum": f64(block.outputs.features).sum(0), "n": len(block.outputs)}

    def _merge(self, a, b):
        return {"sum": a["sum"] + b["sum"], "n": a["n"] + b["n"]}

    def _advance(self, m):
        det = self.detector
        mean = m["sum"] / m["n"]
        w = f64(self.meta["head"][0])
        if self.name == "fdbd":
            sq = (w * w).sum(1)
            denom = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (w @ w.T), 0.0))
            np.fill_diagonal(denom, 1.0)
            det.denominator_ = np.maximum(denom, np.finfo(np.float64).tiny)
            det.mean_ = mean
        else:  # dice
            contrib = mean[None, :] * w
            det.mask_ = contrib > np.percentile(contrib, det.params["percentile"])
            det.info["kept_weights"] = float(det.mask_.mean())
        return True


class _ReActFit(StreamFit):
    """The exact p-th percentile of all fit activations from two exact integer histograms of float32 order
    keys: the top 16 bits locate the bins of the two order statistics np.percentile interpolates between,
    the low 16 bits inside those bins give their values."""

    def _first_partial(self, block):
        keys = float32_order_keys(block.outputs.features)
        return {"hist": np.bincount((keys >> np.uint32(16)).astype(np.int64), minlength=1 << 16),
                "max": float(block.outputs.features.max()) if keys.size else -np.inf, "count": int(keys.size)}

    def _partial(self, block):
        keys = float32_order_keys(block.outputs.features)
        out = {}
        for b in self._bins:
            low = keys[(keys >> np.uint32(16)) == b] & np.uint32(0xFFFF)
            out[b] = np.bincount(low.astype(np.int64), minlength=1 << 16)
        return out

    def _merge(self, a, b):
        if "hist" in a:
            return {"hist": a["hist"] + b["hist"], "max": max(a["max"], b["max"]), "count": a["count"] + b["count"]}
        return {k: a[k] + b[k] for k in a}

    def _advance(self, m):
        det = self.detector
        p = det.params["percentile"]
        if self.pass_no == 0:
            n = m["count"]
            if p >= 100:
                det.threshold_ = float(m["max"])
                det.info["threshold"] = det.threshold_
                return True
            self._n = n
            self._h = (n - 1) * (p / 100.0)
            lo = int(np.floor(self._h))
            self._ranks = (lo, min(lo + 1, n - 1))
            cum = np.cumsum(m["hist"])
            self._rank_bins = [int(np.searchsorted(cum, r, side="right")) for r in self._ranks]
            self._bins = sorted(set(self._rank_bins))
            self._below = {b: int(cum[b - 1]) if b > 0 else 0 for b in self._bins}
            return False
        values = []
        for r, b in zip(self._ranks, self._rank_bins):
            cum = np.cumsum(m[b])
            low = int(np.searchsorted(cum, r - self._below[b], side="right"))
            values.append(float32_of_key((b << 16) | low))
        a32, b32 = values
        lo_rank, hi_rank = self._ranks
        if self._n < 1 << 16:  # core.kernels.rows.percentile_exact hands small inputs to np.percentile
            stand_in = np.concatenate([np.full(lo_rank + 1, a32, np.float32), np.full(self._n - lo_rank - 1, b32, np.float32)])
            det.threshold_ = float(np.percentile(stand_in, p))
        else:
            a, b = float(a32), float(b32)
            det.threshold_ = float(a + (self._h - lo_rank) * (b - a))
        det.info["threshold"] = det.threshold_
        return True


class _KLMFit(StreamFit):
    first_pass_stats = True

    def _partial(self, block):
        from core.kernels.softmax import softmax_class_means

        means, classes, _ = softmax_class_means(block.outputs.logits)
        c = block.outputs.num_classes
        counts = np.zeros(c, np.int64)
        sums = np.zeros((c, c))
        counts_k = np.bincount(block.outputs.logits.argmax(1), minlength=c)[classes]
        counts[classes] = counts_k
        sums[classes] = means * counts_k[:, None]
        return {"sums": sums, "counts": counts}

    def _merge(self, a, b):
        return {"sums": a["sums"] + b["sums"], "counts": a["counts"] + b["counts"]}

    def _advance(self, m):
        det = self.detector
        classes = np.flatnonzero(m["counts"])
        if len(classes) < 2:
            raise OODError(f"{self.spec.name} builds per-class statistics and needs fit samples from at least 2 "
                           "classes; the fit set's predictions contain fewer.")
        det.templates_ = m["sums"][classes] / m["counts"][classes, None]
        det.info["classes_with_template"] = int(len(classes))
        det._log_templates = np.log(np.maximum(det.templates_, np.finfo(np.float64).tiny))
        return True

    def _class_check(self):
        return False  # KLM's classes are the predictions, checked once the templates are merged


class _TempScaleFit(StreamFit):
    """Temperature scaling: each bracketed Newton step on β = 1/T is one pass that sums the tempered moments
    of the label-shifted logits (:func:`core.ood.logit.newton_temperature_step`)."""

    max_steps = 200

    def _advance(self, m):
        from .logit import newton_temperature_step, temperature_of

        det = self.detector
        if self.pass_no == 0:
            if det.params["temperature"] is not None:
                det.temperature_ = float(det.params["temperature"])
                det.info["temperature"] = det.temperature_
                return True
            self._state = (1.0 / 1.5, 0.0, np.inf)
            return False
        if m["n"] == 0:
            raise OODError("Temperature scaling needs labelled fit samples with labels in 0..C-1.")
        self._state, done = newton_temperature_step(self._state, m["grad"] / m["n"], m["hess"] / m["n"])
        if done or self.pass_no >= self.max_steps:
            det.temperature_ = temperature_of(self._state)
            det.info["temperature"] = det.temperature_
            return True
        return False

    def _partial(self, block):
        from core.kernels.softmax import tempered_moments

        from .logit import label_shifted_logits

        out = block.outputs
        if out.labels is None:
            return {"grad": 0.0, "hess": 0.0, "n": 0}
        g = label_shifted_logits(out.logits, out.labels)
        if len(g) == 0:
            return {"grad": 0.0, "hess": 0.0, "n": 0}
        grad, hess = tempered_moments(g, self._state[0])
        return {"grad": grad * len(g), "hess": hess * len(g), "n": len(g)}

    def _merge(self, a, b):
        return {k: a[k] + b[k] for k in a}


class _ConjNormFit(StreamFit):
    """ConjNorm: the class means (first pass), then the log-partition per class, log Σ_i exp(d(z_i, μ_k)/T),
    merged with logaddexp (second pass)."""

    def _partial(self, block):
        from scipy.special import logsumexp

        from .paper import _p_normalise, conjugate_distance

        det = self.detector
        z = _p_normalise(f64(block.outputs.features), det.params["p"])
        d = conjugate_distance(z, det.prototypes_, det.q_)
        return {"log_partition": logsumexp(d / det.params["temperature"], axis=0)}

    def _first_partial(self, block):
        out = block.outputs
        y, _ = class_assignment(out)
        c = out.num_classes
        sums = np.zeros((c, out.features.shape[1]))
        np.add.at(sums, y[y >= 0], f64(out.features[y >= 0]))
        return {"sums": sums, "counts": np.bincount(y[y >= 0], minlength=c)}

    def _merge(self, a, b):
        if "sums" in a:
            return {"sums": a["sums"] + b["sums"], "counts": a["counts"] + b["counts"]}
        return {"log_partition": np.logaddexp(a["log_partition"], b["log_partition"])}

    def _advance(self, m):
        from .paper import _p_normalise

        det = self.detector
        if self.pass_no == 0:
            classes = np.flatnonzero(m["counts"])
            p = det.params["p"]
            det.q_ = p / (p - 1.0)
            det.prototypes_ = _p_normalise(m["sums"][classes] / m["counts"][classes, None], p)
            return False
        det.log_partition_ = m["log_partition"]
        det.info.update(classes_from=self.meta["source"], q=det.q_)
        return True


_STATELESS = ("msp", "maxlogit", "energy", "entropy", "gen", "gradnorm", "ash-p", "ash-b", "ash-s", "scale")
_FITTERS: dict[str, type[StreamFit]] = {
    **{d: _Stateless for d in _STATELESS},
    "mahalanobis": _ClassGaussianFit, "rmds": _ClassGaussianFit, "wdiscood": _WDiscOODFit,
    "vim": _ResidualFit, "residual": _ResidualFit, "knn": _BankFit, "nnguide": _BankFit, "she": _SHEFit,
    "fdbd": _MeanFeatureFit, "dice": _MeanFeatureFit, "react": _ReActFit, "klm": _KLMFit,
    "tempscale": _TempScaleFit, "conjnorm": _ConjNormFit,
}


def stream_fitter(name: str, params: dict | None = None, has_validation: bool = False) -> StreamFit:
    """The fitter of detector ``name`` from merged block statistics; :class:`NotMergeable` when there is none.

    Detectors calibrated on held-out data (``spec.fit_on == "validation"``: TempScale, KLM) read the
    "validation" blocks when ``has_validation``, as :func:`core.ood.suite.run_suite` does."""
    reason = mergeable_reason(name)
    if reason:
        raise NotMergeable(reason)
    source = "validation" if has_validation and REGISTRY.spec(name).fit_on == "validation" else "fit"
    return _FITTERS[name](name, params, source)


def fit_streaming(fitters: dict[str, StreamFit], run_pass, progress=None) -> tuple[dict[str, Detector], dict[str, str]]:
    """Fit every fitter by passes over the blocks. ``run_pass(source, fitters) -> {name: merged}`` is the
    engine's part: it evaluates ``f.partial`` on every block of ``source`` and merges with ``f.merge``.
    Returns the fitted detectors and, for those that failed, the reason (the others go on)."""
    active = dict(fitters)
    fitted, errors = {}, {}
    round_no = 0
    while active:
        for source in sorted({f.source for f in active.values()}):
            group = {k: f for k, f in active.items() if f.source == source}
            if progress is not None:
                progress(f"fit pass {round_no + 1} over the {source} set: {', '.join(group)}")
            merged = run_pass(source, group)
            for name, f in group.items():
                try:
                    if f.advance(merged.get(name)):
                        fitted[name] = f.detector
                        del active[name]
                except OODError as e:
                    errors[name] = str(e)
                    del active[name]
        round_no += 1
    for name, f in fitted.items():
        if fitters[name].source == "validation":
            f.info["fitted on"] = "the validation set (held-out ID samples)"
        elif f.spec.requires_fit or f.spec.class_conditional:
            f.info["fitted on"] = "the fit set"
    return {k: fitted[k] for k in fitters if k in fitted}, errors


def partials(fitters: dict[str, StreamFit], outputs: ModelOutputs, ids) -> dict[str, Any]:
    """Every fitter's statistics of one block (statistics several fitters share are computed once)."""
    block = BlockStats(outputs, ids)
    return {name: f.partial(block) for name, f in fitters.items()}


def merge_partials(fitters: dict[str, StreamFit], acc: dict | None, part: dict) -> dict:
    if acc is None:
        return dict(part)
    return {name: fitters[name].merge(acc.get(name), part.get(name)) for name in fitters}


def fit_in_blocks(names_params: dict[str, dict], blocks, validation_blocks=None) -> tuple[dict, dict]:
    """Fit from lists of (outputs, ids) blocks in this process (tests, notebooks): the whole streaming path
    without an engine."""
    fitters, errors = {}, {}
    for name, params in names_params.items():
        try:
            fitters[name] = stream_fitter(name, params, has_validation=validation_blocks is not None)
        except NotMergeable as e:
            errors[name] = str(e)
    sources = {"fit": blocks, "validation": validation_blocks or []}

    def run_pass(source, group):
        acc = None
        for out, ids in sources[source]:
            acc = merge_partials(group, acc, partials(group, out, ids))
        return acc or {}

    fitted, errs = fit_streaming(fitters, run_pass)
    errors.update(errs)
    return fitted, errors


__all__ = ["BlockStats", "NOT_MERGEABLE", "NotMergeable", "StreamFit", "fit_in_blocks", "fit_streaming",
           "float32_order_keys", "merge_class_gaussian", "merge_partials", "mergeable_detectors", "mergeable_reason",
           "partials", "sample_hashes", "stream_fitter"]
