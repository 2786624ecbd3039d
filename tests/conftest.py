"""Fixtures shared by every test folder."""
import pytest

from core import runtime

runtime.configure()  # the thread pools the app sizes at start-up (one BLAS thread, torch on every core)


@pytest.fixture
def scored_sets(monkeypatch):
    """Records (detector id, set name) for every set a detector scores in core.ood.suite."""
    import core.ood.suite as suite

    calls = []
    real = suite._score_set

    def counting(det, name, es):
        calls.append((det.spec.id, name))
        return real(det, name, es)

    monkeypatch.setattr(suite, "_score_set", counting)
    return calls
