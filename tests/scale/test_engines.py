"""The scaled audit's engines: the seeded shards, the local engine, and a local Ray cluster (2 CPUs, no
dashboard) that must give the local engine's scores and metrics, also when a worker is killed mid-run."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import core.data as data
from core.outputs import ModelOutputs
from core.scale import plan_builtin, plan_folder, run_audit
from core.scale.plan import Shard, shard_seed
from core.scale.work import drop_bad_rows, load_shard

MODEL = {"kind": "zoo", "name": "shapes-vit"}
DETECTORS = {"msp": {}, "mahalanobis": {}, "knn": {"k": 5}, "vim": {}, "react": {}, "odin": {}}


def test_shards_are_seeded_per_index_and_a_one_shard_set_is_the_in_memory_one():
    plan = plan_builtin(MODEL, "shapes", n=70, n_fit=40, detectors={"msp": {}}, shard_size=32,
                        set_names=["near: shapes-near-ood", "far: digits"], n_ood=10)
    ids = [s for s in plan.shards if s.set_name == "ID"]
    assert [(s.start, s.count) for s in ids] == [(0, 32), (32, 32), (64, 6)]
    assert [s.set_name for s in plan.shards if s.role == "validation"] == []  # no detector calibrates on it
    first = load_shard(ids[0])
    np.testing.assert_array_equal(first.images, data.load("shapes", split="test", n=32, seed=0).images)
    second = load_shard(ids[1])
    np.testing.assert_array_equal(second.images, data.load("shapes", split="test", n=32, seed=shard_seed(0, 1)).images)
    assert list(second.ids[:2]) == ["32", "33"] and len({shard_seed(0, j) for j in range(100)}) == 100
    digits = [s for s in plan.shards if s.set_name == "far: digits"]
    assert sum(s.count for s in digits) == len(data.load("digits", split="test").labels)


def test_rows_with_nan_outputs_are_reported_by_sample_id_and_left_out():
    x = np.ones((4, 3), np.float32)
    x[2, 1] = np.nan
    out = ModelOutputs(logits=x[:, :2], features=x, labels=np.zeros(4), preds=np.zeros(4))
    shard = Shard("ID", "eval", "id", {"kind": "generated"}, 0, 10, 4)
    kept, ids, problems = drop_bad_rows(out, np.array(["10", "11", "12", "13"]), shard)
    assert len(kept) == 3 and list(ids) == ["10", "11", "13"]
    assert "1 sample(s) with NaN or inf outputs left out (12)" in problems[0]


def _folder(root: Path) -> Path:
    world = data.load("shapes", split="train", n=24, seed=5)
    for i, (img, y) in enumerate(zip(world.images, world.labels)):
        folder = root / world.class_names[y]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    (root / "circle" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return root


def test_the_local_engine_audits_an_image_folder_and_reports_a_bad_file(tmp_path):
    plan = plan_folder(MODEL, _folder(tmp_path / "imgs"), detectors={"msp": {}, "energy": {}, "odin": {}},
                       set_names=["far: noise"], n_ood=20, shard_size=8)
    result = run_audit(plan, "local", scores_dir=str(tmp_path / "scores"))
    assert result.detectors == ["msp", "energy"] and "ODIN re-runs the network" in result.skipped["odin"]
    bad = [p for p in result.problems if "broken.png" in p]
    assert len(bad) == 1 and str(tmp_path / "imgs" / "circle" / "broken.png") in bad[0]
    assert result.counts["ID"] + plan.size("fit") == 25 and result.counts["far: noise"] == 20  # 24 images + 1 bad file
    ids = result.sample_ids("ID")
    assert all("/" in i and i.endswith(".png") for i in ids)
    assert set(result.table["ood_set"]) == {"far: noise"} and len(result.table) == 2


class KillOnce:
    """Kills the Ray worker process that picks up shard ``key`` the first time (never the driver)."""

    def __init__(self, key: str, marker: str):
        self.key, self.marker, self.driver = key, marker, os.getpid()

    def __call__(self, shard):
        if shard.key == self.key and os.getpid() != self.driver and not os.path.exists(self.marker):
            Path(self.marker).write_text("killed")
            os._exit(1)


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install -r requirements-dev.txt)")
    from core.scale.engines import ROOT

    # the workers import core, and this module for the kill hook
    path = os.pathsep.join([ROOT, str(Path(__file__).parent)])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_WAIT_POLICY": "PASSIVE"}})
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_gives_the_local_scores_and_metrics_even_when_workers_die(ray_cluster, tmp_path):
    plan = plan_builtin(MODEL, "shapes", n=160, n_fit=192, detectors=DETECTORS, shard_size=64,
                        set_names=["near: shapes-near-ood", "far: noise"], n_ood=96)
    local = run_audit(plan, "local", scores_dir=str(tmp_path / "local"))
    hooks = [KillOnce("fit#1", str(tmp_path / "killed-fit")), KillOnce("ID#1", str(tmp_path / "killed-eval"))]

    def hook(shard):
        for h in hooks:
            h(shard)

    remote = run_audit(plan, "ray", scores_dir=str(tmp_path / "ray"), workers=2, shard_hook=hook, quiet=True)
    assert (tmp_path / "killed-fit").exists() and (tmp_path / "killed-eval").exists()  # both workers did die
    assert remote.detectors == local.detectors == ["msp", "mahalanobis", "knn", "vim", "react"]
    assert remote.counts == local.counts == {"ID": 160, "near: shapes-near-ood": 96, "far: noise": 96}
    for det in remote.detectors:
        for set_name in plan.sets:
            np.testing.assert_array_equal(remote.sample_ids(set_name), local.sample_ids(set_name))
            np.testing.assert_allclose(remote.scores(det, set_name), local.scores(det, set_name), rtol=1e-6, atol=0)
    assert remote.table.equals(local.table)  # identical metrics
    assert remote.info["knn"]["bank_size"] == 192 and not remote.problems


def test_the_local_engine_gives_the_in_memory_audits_numbers_where_the_data_fits_one_shard(tmp_path):
    from core.ood.workflow import OODRequest, evaluate
    from core.workspace import Resolver

    dets = {"msp": {}, "mahalanobis": {}, "rmds": {}, "vim": {}, "react": {}, "knn": {"k": 5}, "klm": {},
            "tempscale": {}, "she": {}, "fdbd": {}}
    sets = ["near: shapes-near-ood", "far: noise"]
    plan = plan_builtin(MODEL, "shapes", n=100, n_fit=200, detectors=dets, set_names=sets)
    streamed = run_audit(plan, "local", scores_dir=str(tmp_path / "s"))
    ws = {"model": MODEL, "data": {"kind": "builtin", "name": "shapes", "split": "test", "n": 100, "seed": 0,
                                   "shift": None}}
    memory = evaluate(Resolver(), OODRequest(ws, tuple(sets), dets, n_fit=200))
    for det in dets:
        for set_name in plan.sets:
            np.testing.assert_allclose(streamed.scores(det, set_name), memory.scores[det][set_name], rtol=1e-6,
                                       atol=1e-9, err_msg=f"{det} on {set_name}")
    np.testing.assert_allclose(streamed.table[["auroc", "fpr95"]].to_numpy(),
                               memory.table[["auroc", "fpr95"]].to_numpy(), rtol=1e-12)
