"""Attribution tests: small models with known answers live in attribution_models.py.

The tests run torch on one thread (restored afterwards). These machines are shared: with other
sessions busy, two OpenMP threads spin-wait on each other and the same forward pass takes three to
seven times longer than on one thread (measured on the shipped models at batch 64)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
