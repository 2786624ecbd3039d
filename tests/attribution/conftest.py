"""Attribution tests: small models with known answers live in attribution_models.py.

(The spin-waiting of OpenMP threads on a shared machine, which once made these tests run torch on one
thread, is gone since core sets OMP_WAIT_POLICY=PASSIVE at import.)"""
from __future__ import annotations

