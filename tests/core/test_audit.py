"""The audit CLI: the built-in defaults offline, per-sample scores, and one-line reasons on bad input."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


def audit(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "core.audit", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "IE_THREADS": "2",
                                                "HOME": str(ROOT)})


@pytest.mark.slow
def test_audit_of_the_built_in_defaults_writes_a_report_and_scores(tmp_path):
    out, scores = tmp_path / "report.html", tmp_path / "scores"
    r = audit("--out", str(out), "--n", "200", "--n-fit", "300", "--detectors", "msp,energy,vim,knn",
              "--scores-out", str(scores))
    assert r.returncode == 0, r.stderr[-2000:]
    html = out.read_text()
    assert "Out-of-distribution detection" in html and "shapes-vit (shipped)" in html
    assert html.count("class=\"plotly-graph-div\"") >= 4 and "src=\"http" not in html and "<script src=" not in html
    assert "from core.scale import plan_builtin, run_audit" in html  # the code that reproduces it
    assert "Best detectors by mean AUROC" in r.stderr and "local engine" in r.stderr
    # the analyses that are not per-sample work run in memory on the same world, in the same report
    for title in ("Token pruning", "Distribution-shift attribution", "Attribution"):
        assert f">{title}<" in html, title
    frames = [pd.read_parquet(p) for p in sorted(scores.rglob("*.parquet"))]
    assert len(frames) == 7  # the ID set and the six default OOD sets, one shard each at this size
    assert {"sample_id", "set", "msp", "energy", "vim", "knn"} <= set(frames[0].columns)
    assert frames[0]["set"].iloc[0] == "ID" and list(frames[0]["sample_id"]) == [str(i) for i in range(200)]


@pytest.mark.parametrize("args, reason", [
    (["--data", "nope"], "--data 'nope' is neither a built-in dataset"),
    (["--detectors", "msp,zzz"], "Unknown OOD detector 'zzz'"),
    (["--data", "wine", "--model", "resnet18"], "--model 'resnet18' is not a tabular model"),
    (["--analyses", "magic"], "--analyses: unknown magic"),
    (["--data", "wine", "--engine", "ray"], "--engine ray audits the generated Shapes world"),
    (["--detectors", "odin"], "odin: ODIN re-runs the network"),
    (["--address", "auto"], "--address names a Ray cluster; add --engine ray"),
    (["--engine", "ray", "--analyses", "pruning"], "--engine ray runs the OOD audit"),
    (["--engine", "ray", "--analyses", "ood,shift"], "--analyses shift: not per-sample work"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, reason):
    r = audit("--out", str(tmp_path / "r.html"), "--quiet", *args)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("audit: ") and reason in lines[0], r.stderr
    assert not (tmp_path / "r.html").exists()


def test_a_table_file_is_audited_like_an_upload(tmp_path):
    rows = "\n".join(f"{i % 13},{(i * 7) % 11},{i % 5},{'a' if i % 3 else 'b'}" for i in range(120))
    (tmp_path / "t.csv").write_text("x,y,z,label\n" + rows + "\n")
    r = audit("--out", str(tmp_path / "r.html"), "--quiet", "--data", str(tmp_path / "t.csv"), "--label", "label",
              "--detectors", "msp,mahalanobis")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "logistic-regression (trained in-app) on upload: t.csv" in (tmp_path / "r.html").read_text()
