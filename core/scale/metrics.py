"""Exact OOD metrics from score shards in bounded memory: the same numbers as :func:`core.ood.metrics`.

:func:`core.ood.metrics` sorts both score samples and merges them once (:mod:`core.kernels.ranking`).
Here the scores are read from Parquet shards, set by set, a bounded number at a time:

1. one pass counts every set and builds a histogram of the pooled scores over the top 16 bits of
   float64's order-preserving bit pattern (a fixed, data-independent binning);
2. consecutive bins are grouped into key ranges of at most ``max_values`` scores; a bin with more is
   refined by the next bits of the key in another pass (a bin of one repeated value needs no values at
   all: it is one tie group, and its counts per set are enough);
3. range by range, in ascending order, the scores inside the range are gathered per set, sorted, and
   merged by :func:`merge_chunk`, the merge of :mod:`core.kernels.ranking` with its running state
   carried from one range to the next. A tie group never straddles two ranges, so the state after the
   last range gives AUROC, both AUPRs and FPR@95 exactly as the one-shot merge does, bit for bit.

Memory: ``max_values`` float64 scores (default 4M: 32 MB) and a 65,536-bin histogram, whatever the
number of samples; passes: two, plus one per ``max_values`` scores and per refinement.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from numba import njit

from core.ood.base import OODError
from core.ood.metrics import CONVENTIONS

#: fields of the running state of :func:`merge_chunk`
_OOD_LE, _ID_LE, _AUC, _AP_IN, _AP_OUT, _FOUND, _FPR_O, _THR_O, _FPR_I, _THR_I, _GROUPS = range(11)
BITS = 16


def new_state() -> np.ndarray:
    s = np.zeros(11)
    s[[_FPR_O, _THR_O, _FPR_I, _THR_I]] = np.nan
    return s


@njit(cache=True, nogil=True)
def merge_tie(v, a, b, n_id, n_ood, level, state):
    """One tie group (``a`` OOD and ``b`` ID samples at ``v``) without materialising it: one step of
    :func:`merge_chunk`."""
    ood_below = state[0]
    id_below = state[1]
    ood_le = ood_below + a
    id_le = id_below + b
    id_acc = n_id - id_below
    ood_acc = n_ood - ood_below
    if b > 0:
        state[2] += b * (ood_below + 0.5 * a)
        state[3] += b * (id_acc / (id_acc + ood_acc))
    if a > 0:
        state[4] += a * (ood_le / (ood_le + id_le))
    if state[5] < 0.5 and ood_le / n_ood >= level:
        state[5] = 1.0
        state[6] = id_le / n_id
        state[7] = v
    if id_acc / n_id >= level:
        state[8] = ood_acc / n_ood
        state[9] = v
    state[10] += 1
    state[0] = ood_le
    state[1] = id_le


@njit(cache=True, nogil=True)
def merge_chunk(id_sorted, ood_sorted, n_id, n_ood, level, state):
    """Merge one key range of both sorted samples into the running ``state``, one tie group at a time
    (:func:`merge_tie`; ``core.kernels.ranking._merge_pass`` does the same operations in the same order)."""
    ni = id_sorted.size
    no = ood_sorted.size
    i = 0
    j = 0
    while i < ni or j < no:
        if j >= no:
            v = id_sorted[i]
        elif i >= ni:
            v = ood_sorted[j]
        else:
            v = min(id_sorted[i], ood_sorted[j])
        a = 0
        while j < no and ood_sorted[j] == v:
            j += 1
            a += 1
        b = 0
        while i < ni and id_sorted[i] == v:
            i += 1
            b += 1
        merge_tie(v, a, b, n_id, n_ood, level, state)


def order_keys(x: np.ndarray) -> np.ndarray:
    """uint64 keys in the order of the float64 values (negative: all bits flipped; others: sign bit set).
    −0.0 gets the key of 0.0 (they are one value, so one tie group)."""
    bits = (np.asarray(x, np.float64) + 0.0).view(np.uint64)
    neg = (bits >> np.uint64(63)).astype(bool)
    return np.where(neg, ~bits, bits | np.uint64(1 << 63))


def value_of_key(key: int) -> float:
    k = np.uint64(key)
    bits = k & np.uint64((1 << 63) - 1) if k >> np.uint64(63) else ~k
    return float(np.array([bits], np.uint64).view(np.float64)[0])


Reader = Callable[[str], Iterable[np.ndarray]]


def exact_metrics(read: Reader, id_name: str, ood_names: list[str], convention: str = "ood-positive",
                  tpr_level: float = 0.95, max_values: int = 4_000_000) -> tuple[dict[str, dict], dict[str, str]]:
    """AUROC, AUPR-In, AUPR-Out, FPR@95 and its threshold of every OOD set against the ID set, as
    :func:`core.ood.metrics` gives them, from ``read(set_name)`` (an iterable of score arrays, read anew on
    every call) in memory bounded by ``max_values`` scores. Returns (metrics per set, error per set)."""
    if convention not in CONVENTIONS:
        raise OODError(f"convention must be one of {', '.join(map(repr, CONVENTIONS))}, got {convention!r}.")
    names = [id_name, *ood_names]
    counts, errors = {}, {}
    hist = np.zeros(1 << BITS, np.int64)
    for name in names:  # pass 1: counts, finiteness, the pooled histogram of the top bits
        n, bad = 0, 0
        for chunk in read(name):
            chunk = np.asarray(chunk, np.float64)
            finite = np.isfinite(chunk)
            bad += int((~finite).sum())
            n += chunk.size
            hist += np.bincount((order_keys(chunk[finite]) >> np.uint64(64 - BITS)).astype(np.int64),
                                minlength=1 << BITS)
        if n == 0 or bad:
            errors[name] = (f"contains {bad} NaN/inf value(s) out of {n}; scores must be finite." if bad
                            else "is empty; metrics need at least one ID and one OOD score.")
        counts[name] = n
    if id_name in errors:
        return {}, {k: f"the ID set {errors[id_name]}" for k in ood_names}
    ranges = _ranges(read, names, errors, hist, max_values)
    oods = [s for s in ood_names if s not in errors]
    states = {s: new_state() for s in oods}
    n_id = float(counts[id_name])
    for group in _batches(ranges, max_values):
        lo, hi = group[0][0], group[-1][1]
        if len(group) == 1 and group[0][4]:  # one repeated value: its counts per set are the whole story
            v = value_of_key(lo)
            per = group[0][3]
            for s in oods:
                merge_tie(v, float(per.get(s, 0)), float(per.get(id_name, 0)), n_id, float(counts[s]), tpr_level,
                          states[s])
            continue
        values = {name: np.sort(_gather(read, name, lo, hi)) for name in [id_name, *oods]}
        for s in oods:
            merge_chunk(values[id_name], values[s], n_id, float(counts[s]), tpr_level, states[s])
    out = {}
    for s in oods:
        st = states[s]
        n_ood = float(counts[s])
        fpr, thr = (st[_FPR_O], st[_THR_O]) if convention == "ood-positive" else (st[_FPR_I], st[_THR_I])
        out[s] = {"auroc": float(st[_AUC] / (n_id * n_ood)), "aupr_in": float(st[_AP_IN] / n_id),
                  "aupr_out": float(st[_AP_OUT] / n_ood), "fpr95": float(fpr), "threshold": float(thr)}
    return out, {k: v for k, v in errors.items() if k != id_name}


def _gather(read: Reader, name: str, lo: int, hi: int) -> np.ndarray:
    parts = []
    for chunk in read(name):
        chunk = np.asarray(chunk, np.float64)
        keys = order_keys(chunk)
        parts.append(chunk[(keys >= np.uint64(lo)) & (keys <= np.uint64(hi))])
    return np.concatenate(parts) if parts else np.zeros(0)


def _ranges(read: Reader, names: list[str], errors: dict, hist: np.ndarray, max_values: int) -> list[tuple]:
    """Ascending inclusive key ranges (lo, hi, pooled count, counts per set or None, single value?) of at most ``max_values``
    pooled scores each, except single-value ranges (tie groups), which may hold any number."""
    shift = 64 - BITS
    todo = [(b << shift, ((b + 1) << shift) - 1, int(c)) for b, c in enumerate(hist) if c]
    out = []
    while todo:
        lo, hi, c = todo.pop(0)
        if c <= max_values:
            out.append((lo, hi, c, None, False))
            continue
        if lo == hi:
            out.append((lo, hi, c, _count_value(read, names, errors, lo), True))
            continue
        # refine: the next bits of the key inside [lo, hi]
        width = hi - lo + 1
        step = max(1, -(-width // (1 << BITS)))
        sub = np.zeros(1 << BITS, np.int64)
        for name in names:
            if name in errors:
                continue
            for chunk in read(name):
                keys = order_keys(np.asarray(chunk, np.float64))
                inside = keys[(keys >= np.uint64(lo)) & (keys <= np.uint64(hi))]
                sub += np.bincount(((inside - np.uint64(lo)) // np.uint64(step)).astype(np.int64), minlength=1 << BITS)
        pieces = [(lo + k * step, min(hi, lo + (k + 1) * step - 1), int(n)) for k, n in enumerate(sub) if n]
        todo = pieces + todo
    return out


def _count_value(read: Reader, names: list[str], errors: dict, key: int) -> dict[str, int]:
    v = value_of_key(key)
    return {name: int(sum(int((np.asarray(c, np.float64) == v).sum()) for c in read(name)))
            for name in names if name not in errors}


def _batches(ranges: list[tuple], max_values: int) -> Iterable[list[tuple]]:
    """Consecutive ranges merged into groups gathered in one pass (at most ``max_values`` scores), tie
    groups alone."""
    group, total = [], 0
    for r in ranges:
        if r[4]:
            if group:
                yield group
                group, total = [], 0
            yield [r]
            continue
        if group and total + r[2] > max_values:
            yield group
            group, total = [], 0
        group.append(r)
        total += r[2]
    if group:
        yield group


__all__ = ["exact_metrics", "merge_chunk", "order_keys"]
