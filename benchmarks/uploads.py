"""Benchmark the hostile-upload guards: time to refuse each large hostile input, and the two
table checks that used to grow badly with the number of columns, against their old versions
measured in the same run.

    python benchmarks/uploads.py            # 2,000-column table for the old quadratic check
    python benchmarks/uploads.py --quick    # 1,000 columns

The refusal times are what a user waits before the message; every case is checked from headers,
footers or directories before anything is decoded, so each should take well under a second.
Prints markdown tables.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import core.models  # noqa: E402,F401  (imported up front: torch and timm must not count in the first timing)
from core.data.uploads import _check_unique_names, table_label_candidates  # noqa: E402
from core.errors import UserError  # noqa: E402
from tests.hostile import make_corpus as mc  # noqa: E402
from tests.hostile.guards import run_entry  # noqa: E402


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def old_duplicate_check(columns: list[str]) -> list[str]:
    """The check before issue 13: a list.count per column (quadratic)."""
    return sorted({c for c in columns if list(columns).count(c) > 1})


def old_label_candidates(frame: pd.DataFrame) -> list[str]:
    """The label-candidate search before issue 13: one pandas nunique per column."""
    hint = re.compile(r"^(label|labels|target|class|y|outcome|category)$", re.IGNORECASE)
    out = []
    for col in frame.columns:
        s = frame[col]
        present = s.dropna()
        k = present.nunique()
        if not 2 <= k <= 50 or k == len(present):
            continue
        if pd.api.types.is_float_dtype(s) and not np.all(present.to_numpy() == np.round(present.to_numpy())):
            continue
        out.append((0 if hint.match(str(col)) else 1, k, str(col)))
    return [c for _, _, c in sorted(out)]


_MEASURE = """
import pickle, sys
sys.path.insert(0, {repo!r})
import core.models, core.data.uploads
from core.errors import UserError
from tests.hostile import make_corpus as mc
from tests.hostile.guards import run_entry
from pathlib import Path
entry, content, name, root, options = pickle.load(open({path!r}, "rb"))
def status(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key))
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # resets the peak (VmHWM) to the current resident set
before = status("VmRSS:")
try:
    run_entry(entry, content, name, Path(root), mc.ARCH, options)
except UserError:
    pass
print((status("VmHWM:") - before) / 1024)
"""


def peak_memory_mb(case, content, root) -> float:
    """Growth of the peak RSS while one loader call runs, in a fresh process (Linux /proc: VmHWM after a reset)."""
    import pickle
    import subprocess

    path = root / "case.pickle"  # written and read by this benchmark only
    with open(path, "wb") as fh:
        pickle.dump((case.entry, content, case.name, str(root), case.options), fh)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", _MEASURE.format(repo=repo, path=str(path))], capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_columns = 1_000 if args.quick else 2_000

    import tempfile
    from pathlib import Path

    print("## Time and memory to refuse (or accept) the large hostile inputs\n")
    print("Peak memory: the growth of the peak resident set during the call, in a fresh process that")
    print("has already read the file (so the upload's own bytes do not count).\n")
    print("| case | loader | outcome | seconds | peak memory (MB) |")
    print("|---|---|---|---:|---:|")
    root = Path(tempfile.mkdtemp())
    for case in mc.CASES:
        if not case.generated and case.name != "columns_10k.csv":
            continue
        content = case.build()
        start = time.perf_counter()
        try:
            run_entry(case.entry, content, case.name, root, mc.ARCH, case.options)
            outcome = "accepted"
        except UserError:
            outcome = "refused"
        seconds = time.perf_counter() - start
        print(f"| {case.name} | {case.entry} | {outcome} | {seconds:.3f} | {peak_memory_mb(case, content, root):.0f} |")

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.integers(0, 3, (200, n_columns)), columns=[f"c{i}" for i in range(n_columns)])
    frame["label"] = rng.integers(0, 2, 200)
    names = list(frame.columns)
    assert table_label_candidates(frame) == old_label_candidates(frame)
    print(f"\n## Table checks at {n_columns:,} columns × 200 rows (best of 3)\n")
    print("| check | before (s) | now (s) | speed-up |")
    print("|---|---:|---:|---:|")
    for what, old, new in (
        ("duplicate column names", lambda: old_duplicate_check(names), lambda: _check_unique_names(names, "t.csv")),
        ("label candidates", lambda: old_label_candidates(frame), lambda: table_label_candidates(frame)),
    ):
        t_old, t_new = best_of(old, 1 if what.startswith("dup") else 3), best_of(new)
        print(f"| {what} | {t_old:.3f} | {t_new:.4f} | {t_old / t_new:,.0f}× |")


if __name__ == "__main__":
    main()
