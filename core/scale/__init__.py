"""Scaled OOD audits: the same detectors and metrics on a million images, locally or on a Ray cluster.

    from core.scale import plan_builtin, run_audit
    plan = plan_builtin({"kind": "zoo", "name": "shapes-vit"}, "shapes", n=1_000_000, n_fit=20_000,
                        detectors={"msp": {}, "mahalanobis": {}, "knn": {"k": 50, "bank_fraction": 0.25}})
    result = run_audit(plan, engine="ray", address="auto", scores_dir="scores/")
    result.table                       # AUROC, AUPR-In, AUPR-Out, FPR@95 per (detector, OOD set)

``python -m core.audit --engine ray --address auto --data shapes --n 1000000`` runs this from the
command line. Both engines (:mod:`core.scale.engines`) stream the data in shards through the same
functions (:mod:`core.scale.work`), fit the detectors from merged block statistics
(:mod:`core.ood.mergeable`) and write per-sample scores as Parquet; so their scores agree within
float rounding and their metrics are identical.

**The metrics are exact and the driver's memory is bounded**: :mod:`core.scale.metrics` reads one
detector's scores from the Parquet shards in key ranges of at most 4M scores (a histogram pass over
float64's order-preserving bit pattern, then one pass per range), and merges the sorted ranges with
the running state of :mod:`core.kernels.ranking`'s merge, so AUROC, both AUPRs and FPR@95 equal
:func:`core.ood.metrics`'s bit for bit at any size. The report's score plots use at most
``PLOT_SCORES`` scores per set (every k-th in stream order).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.ood.base import REGISTRY
from core.ood.mergeable import NotMergeable, stream_fitter
from core.ood.suite import METRIC_KEYS, SuiteResult

from .plan import DEFAULT_SHARD_SIZE, AuditPlan, ScaleError, Shard, plan_builtin, plan_folder, shard_seed

ENGINES = ("local", "ray")
PLOT_SCORES = 20_000


@dataclass
class ScaleResult:
    """A scaled audit's outcome: exact metrics per (detector, OOD set), the detectors run and those skipped
    (with the reason), the problems met (bad files, NaN rows), where the scores are, and the timings."""

    plan: AuditPlan
    engine: str
    detectors: list[str]
    skipped: dict[str, str]
    info: dict[str, dict]
    table: pd.DataFrame
    counts: dict[str, int]
    problems: list[str]
    scores_dir: str
    wall: dict[str, float] = field(default_factory=dict)
    work: dict[str, float] = field(default_factory=dict)
    workers: int = 1
    worker_rss_mb: float = 0.0
    plot_scores: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def images(self) -> int:
        return int(sum(self.counts.values()) + self.fit_images)

    @property
    def fit_images(self) -> int:
        return self.plan.size("fit", "validation")

    @property
    def nbytes(self) -> int:
        return int(sum(v.nbytes for per in self.plot_scores.values() for v in per.values()))

    def scores(self, detector: str, set_name: str) -> np.ndarray:
        """Every score of ``detector`` on ``set_name``, in stream order, read from the Parquet shards."""
        return read_scores(self.scores_dir, self.plan, detector, set_name)

    def sample_ids(self, set_name: str) -> np.ndarray:
        return read_scores(self.scores_dir, self.plan, "sample_id", set_name)

    def suite_result(self) -> SuiteResult:
        """A :class:`~core.ood.suite.SuiteResult` for the report (``core.ood.workflow.report_section``): the exact
        metric table, and the plotted scores (at most ``PLOT_SCORES`` per set)."""
        r = SuiteResult(id_name="ID", convention=self.plan.convention, groups=dict(self.plan.sets))
        r.scores = {d: self.plot_scores.get(d, {}) for d in self.detectors}
        r.params = {d: dict(self.plan.detectors[d]) for d in self.detectors}
        r.info = dict(self.info)
        r.errors = dict(self.skipped)
        r.table = self.table
        r.set_specs = {}
        return r


def _set_files(root: str, plan: AuditPlan, set_name: str) -> list[str]:
    from .work import scores_path

    order = list(plan.sets)
    paths = [scores_path(root, s, order) for s in plan.of_role("eval") if s.set_name == set_name]
    return [p for p in paths if os.path.exists(p)]


def read_scores(root: str, plan: AuditPlan, column: str, set_name: str) -> np.ndarray:
    import pyarrow.parquet as pq

    files = _set_files(root, plan, set_name)
    if not files:
        return np.zeros(0)
    arrays = [pq.read_table(f, columns=[column]).column(0).to_numpy(zero_copy_only=False) for f in files]
    return np.concatenate(arrays)


def compute_metrics(root: str, plan: AuditPlan, detectors: list[str],
                    max_values: int = 4_000_000) -> tuple[pd.DataFrame, dict[str, str]]:
    """Exact metrics of every detector on every OOD set against the ID set, from the score shards, one detector
    at a time and at most ``max_values`` scores in memory (:func:`core.scale.metrics.exact_metrics`: the
    numbers of :func:`core.ood.metrics`, bit for bit)."""
    import pyarrow.parquet as pq

    from .metrics import exact_metrics

    rows, errors = [], {}
    sets = plan.sets
    for det in detectors:
        def read(set_name, det=det):
            for f in _set_files(root, plan, set_name):
                yield pq.read_table(f, columns=[det]).column(0).to_numpy(zero_copy_only=False)

        got, errs = exact_metrics(read, "ID", [s for s in sets if s != "ID"], convention=plan.convention,
                                  max_values=max_values)
        for name, m in got.items():
            rows.append({"detector": det, "ood_set": name, "group": sets[name], **{k: m[k] for k in METRIC_KEYS}})
        errors.update({f"{name} · {REGISTRY.spec(det).name}": e for name, e in errs.items()})
    table = pd.DataFrame(rows, columns=["detector", "ood_set", "group", *METRIC_KEYS])
    order = {s: i for i, s in enumerate(sets)}
    table = table.sort_values(["detector", "ood_set"], key=lambda c: c.map(order) if c.name == "ood_set" else
                              c.map({d: i for i, d in enumerate(detectors)}), kind="stable").reset_index(drop=True)
    return table, errors


def plotted_scores(root: str, plan: AuditPlan, detector: str, counts: dict[str, int]) -> dict[str, np.ndarray]:
    """At most PLOT_SCORES scores of ``detector`` per set (every k-th in stream order), for the report's figure."""
    import pyarrow.parquet as pq

    out = {}
    for set_name in plan.sets:
        step = max(1, -(-counts.get(set_name, 0) // PLOT_SCORES))
        parts, offset = [], 0
        for f in _set_files(root, plan, set_name):
            v = pq.read_table(f, columns=[detector]).column(0).to_numpy(zero_copy_only=False)
            parts.append(v[(-offset) % step::step])
            offset += len(v)
        out[set_name] = np.concatenate(parts) if parts else np.zeros(0)
    return out


def split_detectors(plan: AuditPlan) -> tuple[dict, dict[str, str]]:
    """The fitters of the plan's detectors and, for those the scaled engines cannot run, the reason."""
    fitters, skipped = {}, {}
    for name, params in plan.detectors.items():
        try:
            fitters[name] = stream_fitter(name, params, has_validation=plan.has_validation)
        except NotMergeable as e:
            skipped[name] = str(e)
    return fitters, skipped


def run_audit(plan: AuditPlan, engine: str = "local", *, scores_dir: str | None = None, address: str | None = None,
              workers: int | None = None, progress: Callable[[float, str], None] | None = None,
              shard_hook: Callable[[Shard], None] | None = None, quiet: bool = False) -> ScaleResult:
    """Run ``plan`` on ``engine`` ("local" or "ray") and compute the exact metrics from the scores.

    ``scores_dir``: where the Parquet shards go (a temporary folder, removed afterwards, when None: the
    result then keeps only the plotted scores). ``workers``: the Ray actor pool size (default: the cluster's
    CPUs). ``shard_hook(shard)`` runs before each shard (tests use it to kill a worker)."""
    from core import runtime

    from . import engines

    if engine not in ENGINES:
        raise ScaleError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}.")
    report = progress or (lambda f, m: None)
    fitters, skipped = split_detectors(plan)
    if not fitters:
        raise ScaleError("None of the chosen detectors can run on the scaled engines: "
                         + "; ".join(f"{d}: {r}" for d, r in skipped.items()))
    temporary = scores_dir is None
    root = tempfile.mkdtemp(prefix="ie-scores-") if temporary else str(scores_dir)
    os.makedirs(root, exist_ok=True)
    t0 = time.perf_counter()
    try:
        if engine == "local":
            runtime.configure()
            run = engines.run_local(plan, fitters, root, report, shard_hook=shard_hook)
        else:
            run = engines.run_ray(plan, fitters, root, report, address=address,
                                  workers=workers or runtime.cores(), shard_hook=shard_hook, quiet=quiet)
        skipped.update({d: f"could not be fitted: {e}" for d, e in run.fit_errors.items()})
        ran = [d for d in plan.detectors if d in run.detectors]
        for rep in run.reports:
            for d, e in rep.detector_errors.items():
                run.problems.append(f"{REGISTRY.spec(d).name} on {rep.key}: {e}")
        report(0.9, "metrics from the scores")
        t1 = time.perf_counter()
        table, metric_errors = compute_metrics(root, plan, ran)
        counts = {}
        for rep in run.reports:
            counts[rep.set_name] = counts.get(rep.set_name, 0) + rep.n
        # the detector the report plots: the summary's best (mean AUROC over the sets every detector scored)
        best = (SuiteResult(id_name="ID", convention=plan.convention, groups=dict(plan.sets), table=table)
                .summary()["detector"].iloc[0] if not table.empty else None)
        plotted = {best: plotted_scores(root, plan, best, counts)} if best else {}
        run.wall["metrics"] = time.perf_counter() - t1
        run.problems += [f"{k}: {v}" for k, v in metric_errors.items()]
        run.wall["total"] = time.perf_counter() - t0
        info = {d: dict(run.detectors[d].info) for d in ran}
        result = ScaleResult(plan, engine, ran, skipped, info, table, counts, run.problems,
                             "" if temporary else root, run.wall, run.work, run.workers, run.worker_rss_mb, plotted)
        report(1.0, f"{result.images} images in {run.wall['total']:.1f} s")
        return result
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)


def summary(result: ScaleResult) -> pd.DataFrame:
    return result.suite_result().summary()


__all__ = ["DEFAULT_SHARD_SIZE", "ENGINES", "AuditPlan", "ScaleError", "ScaleResult", "Shard", "compute_metrics",
           "plotted_scores",
           "plan_builtin", "plan_folder", "read_scores", "run_audit", "shard_seed", "split_detectors", "summary"]
