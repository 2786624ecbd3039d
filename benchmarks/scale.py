"""Scaled OOD audits: throughput and peak memory of the local engine and of Ray on the same cores.

    python benchmarks/scale.py                          # 50k and 200k images, both engines, interleaved
    python benchmarks/scale.py --sizes 20000 --cores 2

The workload is the audit of the Shapes world with the shipped ViT and every detector that merges
(core.ood.mergeable: all but ODIN): ``images`` = the ID test set and one OOD set (near: shapes-near-ood)
of half each, plus the fixed fit and validation sets (2,000 each). Each (engine, size) runs in its own
process, interleaved (local 50k, Ray 50k, local 200k, ...), and reports its wall time per stage, the
work per stage summed over the shards (generating, running the model, scoring, writing), images/s, the
driver's peak RSS and the largest peak RSS of a process that ran shards (for the local engine it is
the driver). Ray runs a local cluster with ``--cores`` CPUs (one model actor each) and no dashboard;
the local engine uses the same cores through torch's threads (IE_THREADS). The ratio is Ray's
images/s over the local engine's at the same size (target: ≥ 0.85 on one machine); memory should not
grow with the number of images.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(engine: str, images: int, cores: int, shard_size: int) -> dict:
    from core import runtime
    from core.ood.base import REGISTRY
    from core.ood.mergeable import mergeable_detectors
    from core.scale import plan_builtin, run_audit

    runtime.configure()
    detectors = {d: REGISTRY.spec(d).defaults for d in REGISTRY.default_selection(mergeable_detectors())}
    n = images // 2
    plan = plan_builtin({"kind": "zoo", "name": "shapes-vit"}, "shapes", n=n, n_fit=2000, detectors=detectors,
                        set_names=["near: shapes-near-ood"], n_ood=images - n, shard_size=shard_size)
    t0 = time.perf_counter()
    result = run_audit(plan, engine, workers=cores, quiet=True)
    wall = time.perf_counter() - t0
    driver = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"engine": engine, "images": result.images, "scored": int(sum(result.counts.values())), "wall": wall,
            "stages": result.wall, "work": result.work, "driver_rss_mb": driver,
            "worker_rss_mb": result.worker_rss_mb if engine == "ray" else driver, "workers": result.workers,
            "detectors": result.detectors, "skipped": sorted(result.skipped),
            "auroc_mean": float(result.table["auroc"].mean())}


def load_average() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[:3].__repr__()
    except OSError:
        return "?"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="50000,200000", help="total images per run, comma-separated")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--shard-size", type=int, default=2048)
    p.add_argument("--engines", default="local,ray")
    p.add_argument("--out", default="", help="a JSON-lines file to append each run to")
    p.add_argument("--child", nargs=2, metavar=("ENGINE", "IMAGES"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print("RESULT " + json.dumps(child(a.child[0], int(a.child[1]), a.cores, a.shard_size)), flush=True)
        return
    env = {**os.environ, "IE_THREADS": str(a.cores), "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}
    runs = []
    for images in [int(s) for s in a.sizes.split(",")]:
        for engine in a.engines.split(","):
            before = load_average()
            r = subprocess.run([sys.executable, __file__, "--child", engine, str(images), "--cores", str(a.cores),
                                "--shard-size", str(a.shard_size)], env=env, capture_output=True, text=True)
            line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
            if r.returncode != 0 or not line:
                sys.stderr.write(r.stderr[-3000:])
                raise SystemExit(f"{engine} at {images} images failed")
            run = json.loads(line[-1][7:])
            run["load_before"], run["load_after"] = before, load_average()
            runs.append(run)
            print(f"{engine:5s} {run['images']:>8,} images  {run['images'] / run['wall']:7.1f} img/s  wall "
                  f"{run['wall']:7.1f} s  driver {run['driver_rss_mb']:6.0f} MB  worker {run['worker_rss_mb']:6.0f} MB  "
                  f"load {before} -> {run['load_after']}", flush=True)
            if a.out:
                with open(a.out, "a") as f:
                    f.write(json.dumps(run) + "\n")
    print("\n| engine | images | images/s | Ray / local | wall s | fit outputs s | fit s | evaluate s | metrics s | "
          "driver peak RSS MB | worker peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    local = {r["images"]: r["images"] / r["wall"] for r in runs if r["engine"] == "local"}
    for r in runs:
        rate = r["images"] / r["wall"]
        ratio = f"{rate / local[r['images']]:.2f}" if r["engine"] == "ray" and r["images"] in local else ""
        s = r["stages"]
        print(f"| {r['engine']} | {r['images']:,} | {rate:.1f} | {ratio} | {r['wall']:.0f} | {s.get('fit outputs', 0):.0f} | "
              f"{s.get('fit', 0):.1f} | {s.get('evaluate', 0):.0f} | {s.get('metrics', 0):.1f} | "
              f"{r['driver_rss_mb']:.0f} | {r['worker_rss_mb']:.0f} |")
    print("\nWork per stage, summed over shards and workers (s per 1,000 images):")
    for r in runs:
        w = r["work"]
        per = 1000.0 / max(r["images"], 1)
        print(f"  {r['engine']:5s} {r['images']:>8,}: " + ", ".join(f"{k} {v * per:.2f}" for k, v in w.items()))


if __name__ == "__main__":
    main()
