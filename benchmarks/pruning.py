"""Benchmark core.pruning: throughput and MACs of token pruning on DeiT-S, and the Shapes ViT sweep.

    python benchmarks/pruning.py                 # DeiT-S 224², batch 16, 7 interleaved rounds; Shapes sweep on 1000 images
    python benchmarks/pruning.py --quick         # 3 rounds, 200 Shapes images: a smoke run
    python benchmarks/pruning.py --threads 1     # torch intra-op threads (default: torch's own)

Part 1, speed: the DeiT-S architecture with random weights (pretrained weights change which
tokens are kept, not what a pass costs), 16 images of 224², on the CPU. Unpruned; Zero-TPrune at
−35% MACs (its defaults: keep rate matched by MACs at blocks 4/7/10, I′ → S → I, WPR with the
variance head filter); ToMe and EViT at the MACs Zero-TPrune reached. Every configuration is warmed
up, then timed one batch at a time in interleaved rounds in this one process (the machine is
shared, so a slow moment hits every configuration alike), and the median round is reported, with
each configuration's importance computation (WPR, similarity, top-k) and its share of the pruned
forward time; "paired speed-up" is the median over rounds of the unpruned time over the
configuration's time in the same round, which cancels load drifts between rounds. Targets (issue
9): Zero-TPrune ≥ 1.35× the unpruned throughput at about −35% MACs (the paper: 1.45× on an A100);
importance ≤ 5% of the pruned forward time. On a loaded 2-core machine, two intra-op threads spend
most of a small op waiting at OpenMP barriers; ``--threads 1`` measures the arithmetic.

Part 2, accuracy: the sweep of every method at −20/−35/−50% MACs on the shipped Shapes ViT
(the page's workflow, :func:`core.pruning.run_sweep`), with object-token retention after the last
block next to what random keeping gives at the same budget.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from core import pruning  # noqa: E402


def speed(rounds: int, warmup: int, batch: int) -> pd.DataFrame:
    import timm

    torch.manual_seed(0)
    model = timm.create_model("deit_small_patch16_224", pretrained=False).eval()
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    full = pruning.vit_flops(model)
    zero = pruning.match_budget(model, "zero-tprune", 0.35)
    reached = pruning.plan(model, "zero-tprune", **zero).macs(pruning.inspect_model(model), pruning.fixed_macs(model)) / full
    configs = [("unpruned", None, {}), ("Zero-TPrune", "zero-tprune", zero)]
    for name, method in (("ToMe", "tome"), ("EViT", "evit")):
        configs.append((name, method, pruning.match_budget(model, method, 1.0 - reached)))
    t0 = time.perf_counter()
    res = pruning.measure_throughput(model, x, [(m, p) for _, m, p in configs], rounds=rounds, warmup=warmup)
    wall = time.perf_counter() - t0
    rows = []
    base = res[0]["images_per_s"]
    base_rounds = res[0]["rounds"]
    for (name, method, params), r in zip(configs, res):
        # each round runs every configuration back to back, so the ratio within a round cancels slow drifts
        # of the shared machine's load; its median is the paired speed-up
        paired = statistics.median(b / t for b, t in zip(base_rounds, r["rounds"]))
        if method is None:
            macs, knob = full, ""
        else:
            plan = pruning.plan(model, method, **params)
            macs = plan.macs(pruning.inspect_model(model), pruning.fixed_macs(model))
            knob = f"r={params['r']}" if "r" in params else f"keep {params['keep_rate']:.4g}"
        rows.append({"config": name, "budget knob": knob, "GMACs": macs / 1e9, "MACs ratio": macs / full,
                     "images/s": r["images_per_s"], "speed-up": r["images_per_s"] / base, "paired speed-up": paired,
                     "ms/batch": 1e3 * r["seconds_per_batch"], "importance ms": 1e3 * r["importance_seconds"],
                     "importance share": r["importance_seconds"] / r["seconds_per_batch"],
                     "min..max ms": f"{1e3 * min(r['rounds']):.0f}..{1e3 * max(r['rounds']):.0f}"})
    print(f"timed {rounds} interleaved rounds after {warmup} warm-up pass(es) in {wall:.1f} s")
    return pd.DataFrame(rows)


def accuracy(n_images: int, rounds: int) -> pd.DataFrame:
    from core.data import load
    from core.models import load as load_model

    model = load_model("shapes-vit")
    data = load("shapes", split="test", n=n_images, seed=0)
    methods = {"zero-tprune": {}, "tome": {}, "evit": {}, "topk-cls": {}, "random": {"seed": 0}}
    t0 = time.perf_counter()
    res = pruning.run_sweep(model, data, methods, budgets=(0.2, 0.35, 0.5), batch_size=250, throughput_batch=64,
                            throughput_rounds=rounds)
    print(f"Shapes sweep: {n_images} images, {len(res.points)} configurations + unpruned in {time.perf_counter() - t0:.1f} s")
    for p in res.points:
        if p.note:
            print("note:", p.note)
    t = res.table()
    cols = ["label", "keep_rate", "r", "accuracy", "gmacs", "macs_ratio", "images_per_s", "speedup", "importance_share",
            "object_retention", "random_retention"]
    return t[cols]


def markdown(df: pd.DataFrame, digits: int = 3) -> str:
    """A DataFrame as a markdown table (numbers to ``digits`` decimals, blanks for missing values)."""
    def cell(v):
        if v is None or (isinstance(v, float) and v != v):
            return ""
        if isinstance(v, float):
            return f"{v:.{digits}f}"
        return str(v)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "|".join("---" for _ in df.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--n-images", type=int, default=None)
    ap.add_argument("--skip-accuracy", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = args.rounds or (3 if args.quick else 7)
    n_images = args.n_images or (200 if args.quick else 1000)
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, load average {load[0]:.2f} "
          f"on {os.cpu_count()} cores")
    table = speed(rounds, args.warmup, args.batch)
    print("\n## DeiT-S (random weights), 224², batch", args.batch, "— medians of interleaved rounds\n")
    print(markdown(table))
    z = table[table["config"] == "Zero-TPrune"].iloc[0]
    print(f"\nZero-TPrune: {z['speed-up']:.2f}× unpruned throughput (paired per round: {z['paired speed-up']:.2f}×) at "
          f"{1 - z['MACs ratio']:.1%} fewer MACs (target ≥ 1.35×); importance {z['importance share']:.1%} of its forward "
          f"time (target ≤ 5%).")
    if not args.skip_accuracy:
        print("\n## Shapes ViT sweep (accuracy at matched MACs)\n")
        print(markdown(accuracy(n_images, max(1, rounds // 2)), digits=4))


if __name__ == "__main__":
    main()
