"""What a scaled OOD audit reads: its sets, cut into shards that any worker can produce on its own.

A shard is a JSON-able :class:`Shard`: which set it belongs to (the fit set, the validation set, the ID
evaluation set or an OOD set), where its samples come from, and the stream positions it covers. Every
sample has a stable id: its index in the set's seeded stream for generated data, its path for files.

**The Shapes world in seeded shards.** A generated set of ``n`` samples is ``ceil(n / shard_size)``
shards; shard ``j`` is ``core.data.load(name, split, n=count_j, seed=shard_seed(seed, j), shift=...)``
with ``shard_seed(seed, 0) = seed`` and ``shard_seed(seed, j) = crc32("shard|seed|j")`` otherwise. So a
million-image audit needs no storage and is reproducible on any number of workers, and a set that fits
in one shard is exactly the in-memory audit's (``load(name, split, n, seed)``). Fixed-size built-in sets
(digits) are cut by rows of their split.

**Image folders.** One sub-folder per class (as an uploaded .zip); files sorted by (class, path), cut
into shards of file lists; each file goes to the fit or the evaluation half by a hash of (seed, path),
so the split does not depend on the order or number of files read so far.
"""
from __future__ import annotations

import hashlib
import math
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import core.data as data
from core.data.uploads import IMAGE_EXTENSIONS
from core.errors import UserError

#: samples per shard: part of the stream's definition (ids and seeds), not a tuning knob of one run
DEFAULT_SHARD_SIZE = 2048
ROLES = ("fit", "validation", "eval")


class ScaleError(UserError):
    """A scaled audit that cannot be planned or run as asked; the message says why and what to do."""


def shard_seed(seed: int, index: int) -> int:
    """The seed of shard ``index`` of a generated set: the set's own seed for the first shard (so a one-shard
    set is the in-memory one), an independent stable seed for the others."""
    return int(seed) if index == 0 else zlib.crc32(f"shard|{int(seed)}|{int(index)}".encode()) & 0x7FFFFFFF


@dataclass(frozen=True)
class Shard:
    """One unit of work: ``count`` samples of set ``set_name`` from position ``start`` of its stream."""

    set_name: str  # "fit", "validation", "ID" or an OOD set's name
    role: str  # "fit", "validation" or "eval"
    group: str  # "id", "near", "far", "shift"
    source: dict  # {"kind": "generated"|"rows"|"files", ...}
    index: int
    start: int
    count: int

    @property
    def key(self) -> str:
        return f"{self.set_name}#{self.index}"

    def describe(self) -> str:
        if self.source["kind"] == "files":
            return f"shard {self.index} of '{self.set_name}' ({self.count} files under {self.source['root']})"
        return f"shard {self.index} of '{self.set_name}' (samples {self.start}..{self.start + self.count - 1})"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Shard:
        return cls(**d)


@dataclass
class AuditPlan:
    """Every shard of an audit, the model, the detectors and their parameters, and the options."""

    model_spec: dict
    data_spec: dict  # the workspace's data spec (for the model and the report)
    shards: list[Shard]
    detectors: dict[str, dict]
    image_size: int = 64
    class_names: list[str] = field(default_factory=list)
    seed: int = 0
    shard_size: int = DEFAULT_SHARD_SIZE
    convention: str = "ood-positive"
    notes: list[str] = field(default_factory=list)

    def of_role(self, *roles: str) -> list[Shard]:
        return [s for s in self.shards if s.role in roles]

    @property
    def sets(self) -> dict[str, str]:
        """Evaluation set name -> group, the ID set first."""
        return {s.set_name: s.group for s in self.of_role("eval")}

    @property
    def has_validation(self) -> bool:
        return any(s.role == "validation" for s in self.shards)

    def size(self, *roles: str) -> int:
        return sum(s.count for s in self.of_role(*(roles or ROLES)))


def _generated(set_name: str, role: str, group: str, name: str, split: str, n: int, seed: int, shift,
               shard_size: int) -> list[Shard]:
    shards = []
    for j in range(math.ceil(n / shard_size)):
        start = j * shard_size
        count = min(shard_size, n - start)
        shards.append(Shard(set_name, role, group, {"kind": "generated", "name": name, "split": split, "seed": seed,
                                                    "shift": shift}, j, start, count))
    return shards


def _rows(set_name: str, role: str, group: str, name: str, split: str, seed: int, shard_size: int) -> list[Shard]:
    n = len(data.load(name, split=split, seed=seed).labels)  # fixed-size sets are small (digits: 450 rows)
    return [Shard(set_name, role, group, {"kind": "rows", "name": name, "split": split, "seed": seed}, j, j * shard_size,
                  min(shard_size, n - j * shard_size)) for j in range(math.ceil(n / shard_size))]


def is_generated(name: str) -> bool:
    """Built-in image sets drawn from a generator (any n, any seed) rather than a fixed table of rows."""
    return data.kind_of(name) == "image" and name != "digits"


def candidate_sets(id_name: str | None, shifts: bool) -> dict[str, str]:
    """OOD set name -> group for an image workspace (the names of :func:`core.ood.workflow.candidate_sets`)."""
    out = {}
    for name in data.available():
        if data.kind_of(name) != "image" or name == id_name:
            continue
        out[f"{'near' if name == 'shapes-near-ood' else 'far'}: {name}"] = "near" if name == "shapes-near-ood" else "far"
    if shifts:
        out.update({f"shift: {p}": "shift" for p in data.shift_presets()})
    return out


def _ood_sets(id_name: str | None, set_names, seed: int, n_ood: int, shard_size: int):
    from core.ood.workflow import default_sets

    cands = candidate_sets(id_name, shifts=id_name == "shapes")
    names = list(set_names) if set_names else default_sets({k: {} for k in cands}, is_table=False)
    unknown = [s for s in names if s not in cands]
    if unknown:
        raise ScaleError(f"Unknown OOD set(s) {', '.join(map(repr, unknown))}; this workspace offers: {', '.join(cands)}.")
    shards = []
    for set_name in names:
        group = cands[set_name]
        if group == "shift":
            shards += _generated(set_name, "eval", "shift", id_name, "test", n_ood, seed, set_name.split(": ", 1)[1],
                                 shard_size)
            continue
        name = set_name.split(": ", 1)[1]
        if is_generated(name):
            shards += _generated(set_name, "eval", group, name, "test", n_ood, seed, None, shard_size)
        else:
            shards += _rows(set_name, "eval", group, name, "test", seed, shard_size)
    return shards


def plan_builtin(model_spec: dict, name: str, *, n: int, n_fit: int, seed: int = 0, set_names=None,
                 n_ood: int | None = None, detectors: dict[str, dict], shard_size: int = DEFAULT_SHARD_SIZE,
                 convention: str = "ood-positive", validation: bool = True) -> AuditPlan:
    """The scaled audit of a generated built-in world (the Shapes world): ``n`` ID test images, ``n_fit`` train
    images to fit on, ``n_fit`` val images to calibrate on (TempScale, KLM), and the default OOD sets of
    ``n_ood`` images each (default ``n``, as the in-memory audit)."""
    if not is_generated(name):
        raise ScaleError(f"--data {name}: the scaled engines generate built-in image worlds in shards (shapes, "
                         f"shapes-near-ood, ...); '{name}' is a fixed set, audit it with the in-memory path.")
    if n < 1 or n_fit < 2:
        raise ScaleError(f"--n must be at least 1 and --n-fit at least 2, got {n} and {n_fit}.")
    if shard_size < 1:
        raise ScaleError(f"--shard-size must be at least 1, got {shard_size}.")
    shards = _generated("fit", "fit", "id", name, "train", n_fit, seed, None, shard_size)
    needs_validation = validation and any(d in _validation_detectors() for d in detectors)
    if needs_validation:
        shards += _generated("validation", "validation", "id", name, "val", n_fit, seed, None, shard_size)
    shards += _generated("ID", "eval", "id", name, "test", n, seed, None, shard_size)
    shards += _ood_sets(name, set_names, seed, n if n_ood is None else n_ood, shard_size)
    return AuditPlan(model_spec, {"kind": "builtin", "name": name, "split": "test", "n": n, "seed": seed, "shift": None},
                     shards, detectors, seed=seed, shard_size=shard_size, convention=convention)


def _validation_detectors() -> set[str]:
    from core.ood.base import REGISTRY

    return {d for d in REGISTRY.available() if REGISTRY.spec(d).fit_on == "validation"}


def _half_of(seed: int, path: str) -> str:
    h = int.from_bytes(hashlib.blake2b(f"{seed}|{path}".encode(), digest_size=8).digest(), "little")
    return "fit" if h % 2 == 0 else "eval"


def plan_folder(model_spec: dict, root: str | Path, *, seed: int = 0, set_names=None, n_ood: int = 500,
                detectors: dict[str, dict], shard_size: int = DEFAULT_SHARD_SIZE, image_size: int = 64,
                convention: str = "ood-positive") -> AuditPlan:
    """The scaled audit of an image folder (one sub-folder per class): half of the files (by hash of (seed,
    path)) to fit on, the other half as the ID evaluation set, and the built-in image OOD sets."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ScaleError(f"--data '{root}' is not a folder.")
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()
                   and p.suffix.lower() in IMAGE_EXTENSIONS and not any(part.startswith(".") for part in p.relative_to(root).parts))
    rel = [p.relative_to(root).as_posix() for p in files]
    classes = sorted({r.split("/")[0] for r in rel if "/" in r})
    top = [r for r in rel if "/" not in r]
    if top:
        raise ScaleError(f"Images must sit in one sub-folder per class (e.g. 'cats/001.png'), but '{top[0]}' in '{root}' "
                         f"is not in a class folder ({len(top)} such file(s)).")
    if not rel:
        raise ScaleError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found under '{root}'.")
    rel.sort(key=lambda r: (r.split("/")[0], r))
    halves = {"fit": [], "eval": []}
    for r in rel:
        halves[_half_of(seed, r)].append(r)
    shards = []
    for role, set_name in (("fit", "fit"), ("eval", "ID")):
        paths = halves[role]
        for j in range(math.ceil(len(paths) / shard_size)):
            chunk = paths[j * shard_size:(j + 1) * shard_size]
            shards.append(Shard(set_name, role, "id", {"kind": "files", "root": str(root), "paths": chunk,
                                                        "labels": [classes.index(p.split("/")[0]) for p in chunk]},
                                j, j * shard_size, len(chunk)))
    if not halves["fit"] or not halves["eval"]:
        raise ScaleError(f"'{root}' holds {len(rel)} image(s); at least 2 are needed to fit and evaluate detectors.")
    shards += _ood_sets(None, set_names, seed, n_ood, shard_size)
    return AuditPlan(model_spec, {"kind": "folder", "root": str(root), "seed": seed}, shards, detectors,
                     image_size=image_size, class_names=classes, seed=seed, shard_size=shard_size, convention=convention)


__all__ = ["AuditPlan", "DEFAULT_SHARD_SIZE", "ScaleError", "Shard", "candidate_sets", "is_generated", "plan_builtin",
           "plan_folder", "shard_seed"]
