"""The two engines of a scaled audit: one local process, or a Ray cluster (Ray Data).

Both run the same three stages over the same shards with the same functions (:mod:`core.scale.work`,
:mod:`core.ood.mergeable`):

1. **fit outputs**: every fit (and validation) shard through the model; the blocks are kept for the fit
   passes (local: spilled to a temporary folder as .npy files; Ray: materialised in the object store,
   which spills to disk), never gathered in one process;
2. **fit**: per pass, every fitter's statistics per block (local: in turn; Ray: one task per block), merged
   on the driver (a few D×D matrices, histograms and a bounded bank: constant in the number of images);
3. **evaluate**: every evaluation shard through the model and the fitted detectors (Ray: the detectors go
   to the object store once and each actor of the pool loads the model once), scores written as one
   Parquet file per shard; the driver receives only a small report per shard.

A worker that dies is restarted by Ray and its shard retried; a shard's file is written whole under a
temporary name and renamed, so a retry replaces it and finished shards are never lost. A shard that
cannot be read, or rows with NaN outputs, are reported (with the path or the sample ids) and the rest
goes on.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.ood.mergeable import fit_streaming, merge_partials, partials
from core.outputs import ModelOutputs

from .plan import AuditPlan, Shard
from .work import ShardReport, evaluate_shard, fit_block, peak_rss_mb

ROOT = str(Path(__file__).resolve().parents[2])
Note = Callable[[float, str], None]


@dataclass
class EngineRun:
    """What an engine hands back: the fitted detectors, why some could not be fitted, the per-shard reports
    and the seconds per stage (wall clock on the driver, and summed over shards on the workers)."""

    detectors: dict
    fit_errors: dict[str, str]
    reports: list[ShardReport]
    problems: list[str]
    wall: dict[str, float] = field(default_factory=dict)
    work: dict[str, float] = field(default_factory=dict)
    workers: int = 1
    worker_rss_mb: float = 0.0  #: the largest peak RSS of a process that ran shards


def load_model(plan: AuditPlan):
    from core.workspace import Resolver

    return Resolver().load_model(plan.model_spec, plan.data_spec)


def block_meta(plan: AuditPlan) -> dict:
    return {"model": str(plan.model_spec.get("name", ""))}


def _add(acc: dict, seconds: dict) -> None:
    for k, v in seconds.items():
        acc[k] = acc.get(k, 0.0) + v


# ---------------------------------------------------------------------------- blocks as bytes (no pickle)
def block_bytes(out: ModelOutputs, ids: np.ndarray) -> bytes:
    """A block as an .npz in memory (read back with allow_pickle=False)."""
    buf = io.BytesIO()
    np.savez(buf, logits=out.logits, features=out.features, labels=out.labels, ids=np.asarray(ids, dtype=str),
             head_weight=out.head_weight, head_bias=out.head_bias)
    return buf.getvalue()


def block_from_bytes(raw: bytes, meta: dict | None = None) -> tuple[ModelOutputs, np.ndarray]:
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        logits = z["logits"]
        out = ModelOutputs(logits=logits, features=z["features"], labels=z["labels"], preds=logits.argmax(1),
                           head_weight=z["head_weight"], head_bias=z["head_bias"], meta=dict(meta or {}))
        return out, z["ids"]


# ---------------------------------------------------------------------------- the local engine
def run_local(plan: AuditPlan, fitters: dict, scores_dir: str, progress: Note,
              shard_hook: Callable[[Shard], None] | None = None) -> EngineRun:
    """All three stages in this process, one shard at a time (memory bounded by one shard)."""
    model = load_model(plan)
    meta = block_meta(plan)
    wall, work, problems = {}, {}, []
    spill = tempfile.mkdtemp(prefix="ie-fit-blocks-")
    try:
        t0 = time.perf_counter()
        stored: dict[str, list[str]] = {"fit": [], "validation": []}
        fit_shards = plan.of_role("fit", "validation")
        for i, shard in enumerate(fit_shards):
            if shard_hook is not None:
                shard_hook(shard)
            out, ids, probs, secs = fit_block(model, shard, plan.image_size)
            problems += probs
            _add(work, secs)
            if out is not None and len(out):
                path = os.path.join(spill, f"{shard.role}-{shard.index:06d}.npz")
                Path(path).write_bytes(block_bytes(out, ids))
                stored[shard.role].append(path)
            progress(0.3 * (i + 1) / max(len(fit_shards), 1), f"fit outputs: {i + 1}/{len(fit_shards)} shards")
        wall["fit outputs"] = time.perf_counter() - t0

        t0 = time.perf_counter()

        def run_pass(source, group):
            acc = None
            for path in stored[source]:
                out, ids = block_from_bytes(Path(path).read_bytes(), meta)
                acc = merge_partials(group, acc, partials(group, out, ids))
            return acc or {}

        fitted, fit_errors = fit_streaming(fitters, run_pass, progress=lambda m: progress(0.3, m))
        wall["fit"] = time.perf_counter() - t0
    finally:
        shutil.rmtree(spill, ignore_errors=True)

    t0 = time.perf_counter()
    reports = []
    eval_shards = plan.of_role("eval")
    order = list(plan.sets)
    names = list(fitted)
    for i, shard in enumerate(eval_shards):
        if shard_hook is not None:
            shard_hook(shard)
        rep = evaluate_shard(model, fitted, shard, plan.image_size, scores_dir, order, names)
        reports.append(rep)
        _add(work, rep.seconds)
        progress(0.3 + 0.6 * (i + 1) / max(len(eval_shards), 1), f"evaluation: {i + 1}/{len(eval_shards)} shards")
    wall["evaluate"] = time.perf_counter() - t0
    problems += [p for r in reports for p in r.problems]
    return EngineRun(fitted, fit_errors, reports, problems, wall, work, workers=1,
                     worker_rss_mb=max([r.rss_mb for r in reports], default=0.0))


# ---------------------------------------------------------------------------- the Ray engine
class _ShardWorker:
    """A Ray Data actor: loads the model once, then turns shards into fit blocks or score files."""

    def __init__(self, context: str, mode: str, detectors=None, scores_dir: str = "", shard_hook=None,
                 threads: int = 1):
        # sized once per actor, at start-up (core.runtime reads IE_THREADS): never from request code
        os.environ["IE_THREADS"] = str(threads)
        from core import runtime

        runtime.configure()
        self.plan, self.order = _plan_from_json(context)
        self.model = load_model(self.plan)
        self.mode = mode
        self.scores_dir = scores_dir
        self.hook = shard_hook
        if detectors is not None:
            import ray

            self.detectors = ray.get(detectors[0])  # shared once through the object store
        else:
            self.detectors = {}
        self.names = list(self.detectors)

    def __call__(self, batch: dict) -> dict:
        out_rows = {"key": [], "payload": []}
        for text in batch["shard"]:
            shard = Shard.from_dict(json.loads(str(text)))
            if self.hook is not None:
                self.hook(shard)
            if self.mode == "fit":
                out, ids, problems, secs = fit_block(self.model, shard, self.plan.image_size)
                payload = {"role": shard.role, "problems": problems, "seconds": secs, "rss_mb": peak_rss_mb(),
                           "block": None if out is None or not len(out) else block_bytes(out, ids)}
            else:
                payload = evaluate_shard(self.model, self.detectors, shard, self.plan.image_size, self.scores_dir,
                                         self.order, self.names).to_dict()
            out_rows["key"].append(shard.key)
            out_rows["payload"].append(pickle.dumps(payload))
        return {"key": np.array(out_rows["key"], dtype=object), "payload": np.array(out_rows["payload"], dtype=object)}


def _plan_json(plan: AuditPlan) -> str:
    """What an actor needs of the plan (the model, the image size, the sets' order), without the shard list:
    each shard travels in its own row, so an audit of a million files does not copy their paths to every actor."""
    d = dict(plan.__dict__)
    d["shards"] = []
    return json.dumps({"plan": d, "set_order": list(plan.sets)})


def _plan_from_json(text: str) -> tuple[AuditPlan, list[str]]:
    d = json.loads(text)
    return AuditPlan(**d["plan"]), d["set_order"]


def connect_ray(address: str | None, workers: int, object_store_mb: int | None = None) -> bool:
    """Connect to a Ray cluster (``address``: "auto", "ray://host:10001", ...) or start a local one with
    ``workers`` CPUs and no dashboard. Workers import ``core`` from this checkout (PYTHONPATH); on a real
    cluster every node needs the project at the same path. Returns whether this call started Ray (and so
    should shut it down)."""
    try:
        import ray
    except ImportError:
        from .plan import ScaleError

        raise ScaleError("--engine ray needs Ray: pip install \"ray[data]>=2.60\" (or -r requirements-dev.txt).") from None
    if ray.is_initialized():
        return False
    # every Ray worker process sizes its thread pools once, for one CPU (a model actor or a statistics task)
    env = {"env_vars": {"PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
                        "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1", "IE_THREADS": "1"}}
    kwargs = {"runtime_env": env, "log_to_driver": False, "configure_logging": False}
    if address:
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            from .plan import ScaleError

            raise ScaleError(f"Could not join the Ray cluster at --address {address!r} ({e}). Start one with "
                             "'ray start --head' (then --address auto), or leave out --address to start one here.") from None
    else:
        extra = {"object_store_memory": object_store_mb * 2**20} if object_store_mb else {}
        ray.init(num_cpus=workers, include_dashboard=False, **kwargs, **extra)
    return True


def _items(shards: list[Shard]):
    import ray

    return ray.data.from_items([{"shard": json.dumps(s.to_dict())} for s in shards],
                               override_num_blocks=max(1, len(shards)))


def run_ray(plan: AuditPlan, fitters: dict, scores_dir: str, progress: Note, *, address: str | None = None,
            workers: int = 2, shard_hook: Callable[[Shard], None] | None = None, quiet: bool = False) -> EngineRun:
    """The three stages on Ray Data: actor pools for the model, tasks for the fit statistics."""
    started = connect_ray(address, workers)
    import ray

    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = not quiet
        ctx.verbose_progress = False
        ctx.enable_operator_progress_bars = False
        ctx.print_on_execution_start = False
        # blocks come back in the plan's order, so the statistics merge in the order the local engine uses
        # (the merged sums, and so the fitted detectors, are then identical bit for bit)
        ctx.execution_options.preserve_order = True
        pool = max(1, min(workers, int(ray.cluster_resources().get("CPU", workers))))
        plan_json = _plan_json(plan)
        wall, work, problems = {}, {}, []

        # 1. fit outputs: one actor per CPU loads the model once; the blocks stay in the object store
        t0 = time.perf_counter()
        fit_shards = plan.of_role("fit", "validation")
        blocks = _items(fit_shards).map_batches(
            _ShardWorker, fn_constructor_kwargs={"context": plan_json, "mode": "fit", "shard_hook": shard_hook},
            batch_size=1, compute=ray.data.ActorPoolStrategy(size=min(pool, max(1, len(fit_shards)))),
            num_cpus=1).materialize()
        by_role: dict[str, list[str]] = {"fit": [], "validation": []}
        fit_rss = []
        for row in blocks.select_columns(["key", "payload"]).iter_rows():
            info = pickle.loads(row["payload"])
            fit_rss.append(info["rss_mb"])
            problems += info["problems"]
            _add(work, info["seconds"])
            if info["block"] is not None:
                by_role[info["role"]].append(row["key"])
        wall["fit outputs"] = time.perf_counter() - t0
        progress(0.3, f"fit outputs: {len(fit_shards)} shards")

        # 2. fit passes: every block's statistics in a task, merged here
        t0 = time.perf_counter()
        meta = block_meta(plan)

        def run_pass(source, group):
            keys = set(by_role[source])
            if not keys:
                return {}

            def stats(batch, group=group, keys=keys):
                from core import runtime

                runtime.configure()  # once per Ray worker process (IE_THREADS from the job's environment)
                out_rows = []
                for key, raw in zip(batch["key"], batch["payload"]):
                    info = pickle.loads(raw)
                    if str(key) not in keys or info["block"] is None:
                        continue
                    out, ids = block_from_bytes(info["block"], meta)
                    out_rows.append(pickle.dumps(partials(group, out, ids)))
                return {"stats": np.array(out_rows, dtype=object)}

            acc = None
            for row in blocks.map_batches(stats, batch_size=1, num_cpus=1).iter_rows():
                acc = merge_partials(group, acc, pickle.loads(row["stats"]))
            return acc or {}

        fitted, fit_errors = fit_streaming(fitters, run_pass, progress=lambda m: progress(0.3, m))
        wall["fit"] = time.perf_counter() - t0

        # 3. evaluate: the fitted detectors go to the object store once; each actor loads the model once.
        # The shards' reports may come back in any order (nothing is merged from them).
        ctx.execution_options.preserve_order = False
        t0 = time.perf_counter()
        eval_shards = plan.of_role("eval")
        ref = ray.put(fitted)
        results = _items(eval_shards).map_batches(
            _ShardWorker, fn_constructor_kwargs={"context": plan_json, "mode": "eval", "detectors": [ref],
                                                 "scores_dir": scores_dir, "shard_hook": shard_hook},
            batch_size=1, compute=ray.data.ActorPoolStrategy(size=min(pool, max(1, len(eval_shards)))), num_cpus=1)
        reports = []
        for i, row in enumerate(results.iter_rows()):
            rep = ShardReport(**pickle.loads(row["payload"]))
            reports.append(rep)
            _add(work, rep.seconds)
            progress(0.3 + 0.6 * (i + 1) / max(len(eval_shards), 1), f"evaluation: {i + 1}/{len(eval_shards)} shards")
        wall["evaluate"] = time.perf_counter() - t0
        problems += [p for r in reports for p in r.problems]
        return EngineRun(fitted, fit_errors, reports, problems, wall, work, workers=pool,
                         worker_rss_mb=max([r.rss_mb for r in reports] + fit_rss, default=0.0))
    finally:
        if started:
            ray.shutdown()


__all__ = ["EngineRun", "block_bytes", "block_from_bytes", "connect_ray", "run_local", "run_ray"]
