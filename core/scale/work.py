"""The per-shard work of a scaled audit, shared by both engines: produce a shard's samples, run the model
over them, drop the rows that cannot be used, score them, and write the scores.

Both engines call exactly these functions on exactly the same shards (one shard is one block of
:class:`~core.outputs.ModelOutputs`), so their scores agree sample by sample.
"""
from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import core.data as data
from core.errors import UserError
from core.limits import MAX_IMAGE_PIXELS
from core.outputs import ModelOutputs

from .plan import Shard, shard_seed

#: bytes read from one image file at most (a larger file is reported, not decoded)
MAX_FILE_BYTES = 64 * 2**20


@dataclass
class ShardSamples:
    """A shard's images (uint8 [n, S, S, 3]), labels (-1: no class), ids, and what could not be read."""

    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    class_names: list[str]
    problems: list[str] = field(default_factory=list)


def load_shard(shard: Shard, image_size: int = 64) -> ShardSamples:
    """The samples of ``shard``: generated (seeded per shard), rows of a fixed built-in set, or image files
    decoded with the upload validation of :mod:`core.data.uploads` (never unpickled; bad files reported
    with their path and skipped)."""
    src = shard.source
    ids = np.arange(shard.start, shard.start + shard.count).astype(str)
    if src["kind"] == "generated":
        ds = data.load(src["name"], split=src["split"], n=shard.count, seed=shard_seed(src["seed"], shard.index),
                       shift=src.get("shift"))
        return ShardSamples(ds.images, ds.labels.astype(np.int64), ids, list(ds.class_names))
    if src["kind"] == "rows":
        ds = data.load(src["name"], split=src["split"], seed=src["seed"])
        rows = slice(shard.start, shard.start + shard.count)
        return ShardSamples(ds.images[rows], ds.labels[rows].astype(np.int64), ids, list(ds.class_names))
    if src["kind"] == "files":
        return _load_files(shard, image_size)
    raise ValueError(f"unknown shard source {src['kind']!r}")


def _load_files(shard: Shard, image_size: int) -> ShardSamples:
    from core.data.uploads import _decode_image

    root = Path(shard.source["root"])
    images, labels, ids, problems = [], [], [], []
    for rel, label in zip(shard.source["paths"], shard.source["labels"]):
        path = root / rel
        try:
            if path.is_symlink():
                raise UserError(f"'{rel}' is a symbolic link; links are not read.")
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise UserError(f"'{rel}' has {size:,} bytes; at most {MAX_FILE_BYTES:,} are read per image.")
            images.append(_decode_image(path.read_bytes(), rel, image_size, MAX_IMAGE_PIXELS, archive=str(root)))
        except (UserError, OSError) as e:
            problems.append(f"{path}: {getattr(e, 'strerror', None) or e}")
            continue
        labels.append(label)
        ids.append(rel)
    arr = np.stack(images) if images else np.zeros((0, image_size, image_size, 3), np.uint8)
    return ShardSamples(arr, np.asarray(labels, np.int64), np.asarray(ids, dtype=str), [], problems)


def extract_shard(model, samples: ShardSamples, name: str, batch_size: int = 128) -> ModelOutputs:
    """The model's outputs on a shard's images: :func:`core.extract.run`, the in-memory audit's extraction."""
    from core.extract import run

    ds = data.Dataset(name=name, kind="image", labels=samples.labels, class_names=samples.class_names,
                      images=samples.images)
    if len(ds) == 0:
        c = model.get_classifier().out_features
        d = model.get_classifier().in_features
        return ModelOutputs(np.zeros((0, c), np.float32), np.zeros((0, d), np.float32), np.zeros(0, np.int64),
                            np.zeros(0, np.int64), *head_of(model))
    return run(model, ds, batch_size=batch_size)


def head_of(model) -> tuple[np.ndarray, np.ndarray]:
    head = model.get_classifier()
    b = head.bias.detach().float().numpy() if head.bias is not None else np.zeros(head.out_features, np.float32)
    return head.weight.detach().float().numpy(), b


def drop_bad_rows(out: ModelOutputs, ids: np.ndarray, shard: Shard) -> tuple[ModelOutputs, np.ndarray, list[str]]:
    """The rows with finite logits and features, and a problem line naming the others (by sample id)."""
    ok = np.isfinite(out.logits).all(1)
    if out.features is not None:
        ok &= np.isfinite(out.features).all(1)
    if ok.all():
        return out, ids, []
    bad = ids[~ok]
    shown = ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else "")
    line = f"{shard.describe()}: {len(bad)} sample(s) with NaN or inf outputs left out ({shown})"
    return out.subset(np.flatnonzero(ok)), ids[ok], [line]


def score_block(detectors: dict, out: ModelOutputs) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every fitted detector's float64 scores of one block; a detector that fails says why."""
    from core.ood import OODError

    scores, errors = {}, {}
    for name, det in detectors.items():
        if len(out) == 0:
            scores[name] = np.zeros(0)
            continue
        try:
            scores[name] = det.score(out)
        except OODError as e:
            errors[name] = str(e)
    return scores, errors


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "set"


def scores_path(root: str, shard: Shard, set_order: list[str]) -> str:
    """``<root>/<NN>-<set>/part-<shard>.parquet``: one folder per set in the audit's order, one file per shard."""
    return os.path.join(root, f"{set_order.index(shard.set_name):02d}-{slug(shard.set_name)}",
                        f"part-{shard.index:06d}.parquet")


def write_scores(path: str, shard: Shard, ids: np.ndarray, scores: dict[str, np.ndarray], detectors: list[str]) -> None:
    """The shard's scores as one Parquet file (``sample_id``, ``set``, one float64 column per detector; a
    detector that failed on this shard gets NaN), written under a temporary name and renamed, so a retried
    shard replaces its file whole and a finished shard is never half-written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {"sample_id": pa.array(ids.astype(str), pa.string()),
            "set": pa.array([shard.set_name] * len(ids), pa.string())}
    for d in detectors:
        cols[d] = pa.array(scores[d] if d in scores else np.full(len(ids), np.nan), pa.float64())
    table = pa.table(cols)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, path)


@dataclass
class ShardReport:
    """What the driver learns from one evaluated shard (the scores themselves stay in the Parquet file)."""

    key: str
    set_name: str
    n: int
    path: str
    problems: list[str]
    detector_errors: dict[str, str]
    seconds: dict[str, float]
    rss_mb: float = 0.0  #: the peak resident memory of the process that evaluated the shard, so far

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def evaluate_shard(model, detectors: dict, shard: Shard, image_size: int, out_root: str, set_order: list[str],
                   names: list[str]) -> ShardReport:
    """One evaluation shard end to end: samples, outputs, clean rows, scores, Parquet file."""
    import time

    t0 = time.perf_counter()
    try:
        samples = load_shard(shard, image_size)
    except UserError as e:
        return ShardReport(shard.key, shard.set_name, 0, "", [f"{shard.describe()}: could not be read ({e})"], {}, {})
    t1 = time.perf_counter()
    out = extract_shard(model, samples, shard.set_name)
    t2 = time.perf_counter()
    out, ids, bad = drop_bad_rows(out, samples.ids, shard)
    scores, errors = score_block(detectors, out)
    t3 = time.perf_counter()
    path = scores_path(out_root, shard, set_order)
    write_scores(path, shard, ids, scores, names)
    t4 = time.perf_counter()
    return ShardReport(shard.key, shard.set_name, len(ids), path, samples.problems + bad, errors,
                       {"load": t1 - t0, "extract": t2 - t1, "score": t3 - t2, "write": t4 - t3}, peak_rss_mb())


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB (Linux reports kB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fit_block(model, shard: Shard, image_size: int) -> tuple[ModelOutputs | None, np.ndarray, list[str], dict]:
    """One fit (or validation) shard: its clean outputs and ids, the problems, and the seconds per stage."""
    import time

    t0 = time.perf_counter()
    try:
        samples = load_shard(shard, image_size)
    except UserError as e:
        return None, np.zeros(0, str), [f"{shard.describe()}: could not be read ({e})"], {}
    t1 = time.perf_counter()
    out = extract_shard(model, samples, shard.set_name)
    t2 = time.perf_counter()
    out, ids, bad = drop_bad_rows(out, samples.ids, shard)
    return out, ids, samples.problems + bad, {"load": t1 - t0, "extract": t2 - t1}


__all__ = ["ShardReport", "ShardSamples", "drop_bad_rows", "evaluate_shard", "extract_shard", "fit_block", "load_shard",
           "score_block", "scores_path", "write_scores"]
