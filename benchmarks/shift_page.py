"""The work of the shift-attribution page's default run, in CPU seconds (the classroom budget: ~10 s for one
user on 2 quiet cores).

    python benchmarks/shift_page.py                 # the default: 500 images a side, 200 bootstrap replicates
    python benchmarks/shift_page.py --n 300 1000    # other sizes, for comparison

CPU seconds (``time.process_time``, every thread of this process) measure the work itself, so the numbers
hold on a busy machine; wall seconds are printed beside them. The page opens with the workspace's outputs
computed (the home page and the page header run the model over the workspace's data, the default
source), so the run itself costs the target's images and the explanation. Its parts:

- the workspace's outputs: rendering and running the model over the source (at page load, not the run);
- the run: rendering and running the model over the target, the domain classifiers, coalitions, bootstrap;
- a rerun with another metric: the fitted density ratios come from the cache (nothing is refitted).

Prints a markdown table with each part's share of the 10 s budget.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core import runtime  # noqa: E402
from core.cache import ByteCache  # noqa: E402
from core.shift import workflow  # noqa: E402
from core.workspace import Resolver, default_workspace  # noqa: E402

BUDGET_S = 10.0


def timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - w0


def measure(n: int) -> list[tuple[str, float, float]]:
    resolver = Resolver()  # fresh caches: nothing computed before
    ws = default_workspace()
    ws["data"]["n"] = n
    rows = []
    _, cpu, wall = timed(lambda: resolver.load_model(ws["model"], ws["data"]))
    rows.append((f"n={n}: load the model (once per server)", cpu, wall))
    _, cpu, wall = timed(lambda: resolver.current(ws))
    rows.append((f"n={n}: workspace outputs = source (at page load)", cpu, wall))
    request = workflow.default_request(resolver, ws)
    results = ByteCache(1 << 32, name="results")
    run, cpu, wall = timed(lambda: workflow.evaluate(resolver, request, cache=results))
    t = run.explanation.diagnostics.timings
    rows.append((f"n={n}: **the default run** (target images + explanation)", cpu, wall))
    rows.append((f"n={n}:   of which the explanation (classifiers {t.classifiers:.2f} s, coalitions and bootstrap "
                 f"{t.coalitions:.3f} s, audit {t.audit:.2f} s; wall)", float("nan"), t.total))
    rerun = dataclasses.replace(request, metric="accuracy")
    again, cpu, wall = timed(lambda: workflow.evaluate(resolver, rerun, cache=results))
    rows.append((f"n={n}: rerun with another metric ({again.explanation.diagnostics.timings.cached_classifiers} "
                 "ratios from the cache)", cpu, wall))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[500], help="images per side")
    args = p.parse_args()
    runtime.configure()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("| part | CPU s | wall s | CPU share of the 10 s budget |\n|---|---:|---:|---:|")
    for n in args.n:
        for name, cpu, wall in measure(n):
            share = "" if cpu != cpu else f"{cpu / BUDGET_S:.0%}"
            cpu_text = "" if cpu != cpu else f"{cpu:.2f}"
            print(f"| {name} | {cpu_text} | {wall:.2f} | {share} |")


if __name__ == "__main__":
    main()
