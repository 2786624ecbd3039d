"""Thread pools are sized once at start-up; request code never changes them."""
from __future__ import annotations

import threading

import numpy as np
import torch

from core import ood, runtime
from core.outputs import ModelOutputs


def test_configure_runs_once_and_sets_one_blas_thread():
    first = runtime.configure()
    assert runtime.configure() is first and runtime.is_configured()
    assert first["blas"] == 1 and runtime.blas_threads() == 1
    assert torch.get_num_threads() == first["torch"] == runtime.cores()


def test_fitting_covariance_detectors_in_threads_leaves_thread_counts_alone():
    """ViM, Mahalanobis and WDiscOOD run the Gram workers and the eigendecomposition; several sessions doing so
    at once must leave torch's and BLAS's thread counts as start-up set them."""
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(3000, 48)).astype(np.float32)
    w = rng.normal(size=(4, 48)).astype(np.float32)
    out = ModelOutputs(logits=feats @ w.T, features=feats, labels=rng.integers(0, 4, 3000), preds=np.zeros(3000),
                       head_weight=w, head_bias=np.zeros(4, np.float32))
    before = (torch.get_num_threads(), runtime.blas_threads())
    seen, errors = [], []

    def session(name):
        try:
            ood.create(name).fit(out).score(out)
            seen.append(torch.get_num_threads())
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=session, args=(n,)) for n in ("vim", "mahalanobis", "wdiscood", "vim") * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert set(seen) == {before[0]}
    assert (torch.get_num_threads(), runtime.blas_threads()) == before
