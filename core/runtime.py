"""Thread pools sized once for the machine, at start-up, never from request code.

A server running many sessions must not change process-wide thread counts per request: one
session restoring "its" count undoes another's, and new script threads inherit whatever was left.
:func:`configure` runs once (the app's pages and the audit CLI call it first; later calls are no-ops)
and fixes:

- torch: ``cores`` intra-op threads, one inter-op thread;
- NumPy/SciPy BLAS (OpenBLAS): one thread. Our BLAS-heavy NumPy code (the float64 Gram of
  ``core.ood._stats``) runs its own worker threads, one BLAS thread each, and the small symmetric
  eigendecompositions (D ≲ 2000) gain nothing from threads while losing a lot on a busy machine;
- numba: ``cores`` threads.

``IE_THREADS`` overrides ``cores``. OpenMP's passive waiting is set when ``core`` is imported (see
``core/__init__.py``); :func:`configure` reports whether it took effect (it cannot if torch was imported first).
"""
from __future__ import annotations

import os
import threading

_lock = threading.Lock()
_configured: dict | None = None


def cores() -> int:
    env = os.environ.get("IE_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover  (not Linux)
        return max(1, os.cpu_count() or 1)


def configure() -> dict:
    """Size torch, BLAS and numba thread pools once for this machine; returns what was set."""
    global _configured
    with _lock:
        if _configured is not None:
            return _configured
        import numba
        import scipy.linalg  # noqa: F401  (load every BLAS library before limiting them: SciPy ships its own)
        import torch
        from threadpoolctl import threadpool_limits

        n = cores()
        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already started parallel work (e.g. in a test process): keep its pool
            pass
        threadpool_limits(limits=1, user_api="blas")
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        _configured = {"cores": n, "torch": torch.get_num_threads(), "blas": 1, "numba": numba.get_num_threads(),
                       "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}
        return _configured


def is_configured() -> bool:
    return _configured is not None


def blas_threads() -> int:
    """Threads NumPy's BLAS uses now (1 after :func:`configure`)."""
    from threadpoolctl import threadpool_info

    counts = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(counts) if counts else 1


__all__ = ["blas_threads", "configure", "cores", "is_configured"]
