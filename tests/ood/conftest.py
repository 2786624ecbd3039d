"""Fixtures for the OOD tests (the worlds themselves live in ood_worlds.py)."""
from __future__ import annotations

import numpy as np
import pytest
from ood_worlds import ClusterWorld

from core.extract import ModelOutputs


@pytest.fixture(scope="session")
def world() -> ClusterWorld:
    return ClusterWorld()


@pytest.fixture(scope="session")
def train_outputs(world) -> ModelOutputs:
    return world.sample(600, seed=1)


@pytest.fixture(scope="session")
def id_outputs(world) -> ModelOutputs:
    return world.sample(200, seed=2)


@pytest.fixture(scope="session")
def ood_outputs(world) -> ModelOutputs:
    return world.sample(200, seed=3, ood=True)


@pytest.fixture()
def rng():
    return np.random.default_rng(12345)
