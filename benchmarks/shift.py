"""Benchmark core.shift: where the time of one explanation goes, against the floor of fitting the same
domain classifiers alone with scikit-learn in the same process; and the coalition kernel against NumPy.

    python benchmarks/shift.py                     # 100k rows a dataset, 6 mechanisms, gradient boosting
    python benchmarks/shift.py --rows 20000 --quick
    python benchmarks/shift.py --classifier logistic --n-boot 200

The world: a → b, c → d, (b, d) → y (the label), y → x (two columns), i.e. six mechanisms P(a),
P(b | a), P(c), P(d | c), P(y | b, d), P(x | y); the target shifts P(a) and P(x | y). The model is a
fixed logistic function of (b, d, x). Targets: the whole explanation under 60 s on 2 cores and the
coalition evaluation at most 20% of it. Prints markdown tables.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core import shift  # noqa: E402
from core.kernels.coalitions import subset_products, subset_products_numpy  # noqa: E402
from core.shift.explain import _Explainer  # noqa: E402
from core.shift.weights import ColumnTable, _gbm_design, _logistic_design, _make_classifier, _subsample, assign_folds  # noqa: E402

GRAPH = {"a": [], "b": ["a"], "c": [], "d": ["c"], "y": ["b", "d"], "x": ["y"]}
GROUPS = {"x": ["x1", "x2"]}


def world(n: int, seed: int, a_mean: float = 0.0, x_shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(a_mean, 1, n)
    b = 0.8 * a + rng.normal(0, 0.6, n)
    c = rng.normal(0, 1, n)
    d = np.tanh(c) + rng.normal(0, 0.5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(1.2 * b - 0.8 * d)))).astype(np.int64)
    x1 = 1.5 * y + rng.normal(0, 1, n) + x_shift * y
    x2 = -y + rng.normal(0, 1, n)
    return pd.DataFrame({"a": a, "b": b, "c": c, "d": d, "y": y, "x1": x1, "x2": x2})


def model(frame: pd.DataFrame) -> np.ndarray:
    s = 0.6 * frame["b"] - 0.4 * frame["d"] + 0.9 * frame["x1"] - 0.5 * frame["x2"] - 0.7
    p = 1 / (1 + np.exp(-s.to_numpy()))
    return np.column_stack([1 - p, p])


def floor_seconds(source: pd.DataFrame, target: pd.DataFrame, settings: shift.ShiftSettings, seed: int) -> tuple[float, int]:
    """The same classifiers on the same rows and folds, only scikit-learn's ``fit`` timed."""
    g = shift.make_graph(GRAPH, list(source.columns), GROUPS)
    engine = _Explainer(source, target, None, None, None, None, g, "log_loss", "classification", "y", settings, seed,
                        [], None, None, True, {})
    sets = engine._needed_sets()
    table = ColumnTable.build(source, target, g.columns, ["y"])
    domain = table.domain
    total, fits = 0.0, 0
    for cols in sets:
        rng = np.random.default_rng(seed)
        folds = assign_folds(table.n_source, table.n_target, settings.folds, rng)
        if settings.classifier == "gbm":
            x, is_cat = _gbm_design(table, cols)
        else:
            x, is_cat = _logistic_design(table, cols), None
        with threadpool_limits(limits=settings.threads):
            for k in range(settings.folds):
                train = _subsample(np.flatnonzero(folds != k), domain, settings.max_fit_rows, rng)
                clf = _make_classifier(settings, is_cat, len(train), seed + 7919 * k)
                t0 = time.perf_counter()
                clf.fit(x[train], domain[train])
                total += time.perf_counter() - t0
                fits += 1
    return total, fits


def kernel_table(rows: int, players: tuple[int, ...]) -> list[str]:
    out = ["| coalitions | rows | numba DP (s) | NumPy matmul + exp (s) | speed-up |", "|---:|---:|---:|---:|---:|"]
    rng = np.random.default_rng(0)
    for p in players:
        k = 1 << p
        block = max(1, (1 << 21) // k)
        logw = rng.normal(0, 0.5, size=(rows, p))
        w, raw, clipped = np.empty((block, k)), np.zeros(k), np.zeros(k, np.int64)
        subset_products(logw[:8].copy(), np.log(50.0), w[:8], raw, clipped)  # compile outside the timing
        t0 = time.perf_counter()
        for s in range(0, rows, block):
            part = np.ascontiguousarray(logw[s:s + block])
            subset_products(part, np.log(50.0), w[:len(part)], raw, clipped)
        t_numba = time.perf_counter() - t0
        t0 = time.perf_counter()
        for s in range(0, rows, block):
            subset_products_numpy(logw[s:s + block], np.log(50.0))
        t_numpy = time.perf_counter() - t0
        out.append(f"| {k} | {rows:,} | {t_numba:.3f} | {t_numpy:.3f} | {t_numpy / t_numba:.1f}× |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000, help="rows per dataset (source and target each)")
    ap.add_argument("--classifier", default="gbm", choices=shift.CLASSIFIERS.available())
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-boot", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="skip the kernel table")
    args = ap.parse_args()
    n = args.rows
    source, target = world(n, 1), world(n, 2, a_mean=0.7, x_shift=-1.0)
    settings = shift.ShiftSettings.make(classifier=args.classifier, threads=args.threads, n_boot=args.n_boot)
    # warm numba's caches (compiled on first use in a fresh environment) outside the timing
    shift.explain_performance_change(source.iloc[:400], target.iloc[:400], predict_proba=model, label="y",
                                     graph=GRAPH, groups=GROUPS, metric="log_loss", classifier="logistic", audit=True)
    t0 = time.perf_counter()
    res = shift.explain_performance_change(source, target, predict_proba=model, label="y", graph=GRAPH, groups=GROUPS,
                                           metric="log_loss", settings=settings, n_boot=args.n_boot)
    wall = time.perf_counter() - t0
    floor, n_fits = floor_seconds(source, target, settings, seed=0)
    t = res.diagnostics.timings
    model_s = wall - t.total
    print(f"## core.shift: {n:,} + {n:,} rows, {len(res.nodes)} mechanisms, {len(res.diagnostics.classifiers)} domain "
          f"classifiers × {settings.folds} folds ({n_fits} fits, at most {settings.max_fit_rows:,} rows each), "
          f"{args.classifier}, {args.threads} thread(s), n_boot = {args.n_boot}\n")
    print("| stage | seconds | share of the explanation |")
    print("|---|---:|---:|")
    rows = [("domain classifiers (design, cross-fitted fits, predictions, calibration)", t.classifiers),
            ("  of which scikit-learn `fit` calls", t.classifier_fits),
            (f"coalition evaluation ({res.diagnostics.n_coalitions} coalitions × 2 sides, Shapley values"
             + (", bootstrap" if args.n_boot else "") + ")", t.coalitions),
            ("audit (drift table, C2ST, label-shift estimate)", t.audit),
            ("explanation total (core.shift)", t.total),
            ("the model's predict_proba on both datasets", model_s),
            ("floor: the same classifiers fitted alone with scikit-learn", floor)]
    for name, sec in rows:
        print(f"| {name} | {sec:.2f} | {sec / t.total:.1%} |")
    print(f"\nexplanation / floor = {t.total / floor:.2f}×; coalition evaluation = {t.coalitions / t.total:.1%} of the "
          f"explanation (target ≤ 20%); explanation {t.total:.1f} s (target < 60 s on 2 cores)\n")
    print("attributions (log loss): " + ", ".join(f"{m.name} {res.attributions[m.node]:+.4f}" for m in res.mechanisms)
          + f"; total {res.total:+.4f}\n")
    if not args.quick:
        print("### Coalition weights: numba subset-product kernel against NumPy\n")
        print("\n".join(kernel_table(n, (6, 10))))


if __name__ == "__main__":
    main()
