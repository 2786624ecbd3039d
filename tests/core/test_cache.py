"""ByteCache: bounded in bytes, single-flight under concurrency; WorkGate: bounded, re-entrant."""
from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np
import pytest

from core.cache import ByteCache, WorkGate, nbytes_of
from core.outputs import ModelOutputs


def test_nbytes_of_counts_arrays_once_and_walks_containers():
    a = np.zeros(1000, np.float32)
    assert nbytes_of(a) == 4000
    assert nbytes_of({"x": a, "y": [a, a]}) == 4000  # the same array counted once
    out = ModelOutputs(logits=np.zeros((10, 3)), features=np.zeros((10, 4)), labels=None, preds=np.zeros(10))
    assert nbytes_of(out) == out.nbytes == 10 * 3 * 4 + 10 * 4 * 4 + 10 * 8
    import torch

    assert nbytes_of(torch.nn.Linear(4, 2)) == (8 + 2) * 4
    assert nbytes_of(None) == 0 and nbytes_of(3) == 0


def test_lru_is_bounded_by_bytes_and_entries():
    c = ByteCache(max_bytes=10_000, gate=WorkGate(1))
    for i in range(5):
        c.put(i, np.zeros(500, np.float32))  # 2000 bytes each
    assert len(c) == 5 and c.nbytes == 10_000
    c.put(5, np.zeros(500, np.float32))
    assert 0 not in c and 5 in c and c.nbytes == 10_000
    c.get(1)  # 1 becomes the most recent, so 2 goes next
    c.put(6, np.zeros(1000, np.float32))
    assert 1 in c and 2 not in c and 3 not in c and c.nbytes <= 10_000
    big = np.zeros(10_000, np.float32)
    assert c.put("big", big) is big and "big" not in c  # larger than the whole budget: returned, not kept
    d = ByteCache(max_bytes=1 << 30, max_entries=2, gate=WorkGate(1))
    for i in range(3):
        d.put(i, i)
    assert list(d._items) == [1, 2]


def test_recharge_follows_a_value_that_grew():
    c = ByteCache(max_bytes=10_000, gate=WorkGate(1))
    entry = {"a": np.zeros(100, np.float32)}
    c.put("k", entry)
    c.put("other", np.zeros(100, np.float32))
    assert c.nbytes == 800
    entry["b"] = np.zeros(2000, np.float32)
    c.recharge("k")
    assert c.nbytes == 8800
    entry["c"] = np.zeros(1000, np.float32)  # now 12400 bytes: over the budget, dropped
    c.recharge("k")
    assert "k" not in c and c.nbytes == 400


def test_concurrent_identical_and_distinct_requests_compute_each_key_once():
    """30 'sessions' ask for 3 distinct keys at the same moment: each key is computed exactly once, every
    caller gets the very same object, and at most `slots` computations ever run together."""
    gate = WorkGate(2)
    c = ByteCache(max_bytes=1 << 30, gate=gate)
    runs, running, peak = Counter(), [0], [0]
    lock = threading.Lock()

    def compute_for(key):
        def compute():
            with lock:
                runs[key] += 1
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.05)
            with lock:
                running[0] -= 1
            return np.full(10, key)
        return compute

    results = {}
    barrier = threading.Barrier(30)

    def session(i):
        key = i % 3
        barrier.wait()
        results[i] = c.get_or_compute(key, compute_for(key))

    threads = [threading.Thread(target=session, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert runs == Counter({0: 1, 1: 1, 2: 1})
    assert peak[0] <= 2
    for i, v in results.items():
        assert v is results[i % 3] and v[0] == i % 3
    stats = c.stats()
    assert stats["computed"] == 3 and stats["shared"] + stats["hits"] == 27


def test_waiters_see_the_progress_of_the_computation_they_share():
    c = ByteCache(max_bytes=1 << 20, gate=WorkGate(1))
    started, release = threading.Event(), threading.Event()
    seen = []

    def compute(report):
        report(0.5, "half way")
        started.set()
        release.wait(5)
        return "done"

    owner = threading.Thread(target=lambda: c.get_or_compute("k", compute, progress=lambda f, m: None))
    owner.start()
    started.wait(5)
    waiter_result = []
    waiter = threading.Thread(target=lambda: waiter_result.append(
        c.get_or_compute("k", lambda r: "again", progress=lambda f, m: seen.append((f, m)))))
    waiter.start()
    time.sleep(0.6)
    release.set()
    owner.join()
    waiter.join()
    assert waiter_result == ["done"]
    assert seen and seen[0][0] == 0.5 and "half way" in seen[0][1] and "shared" in seen[0][1]


def test_a_failure_reaches_every_waiter_and_is_not_cached():
    c = ByteCache(max_bytes=1 << 20, gate=WorkGate(2))
    calls = []
    started = threading.Event()

    def failing():
        calls.append(1)
        started.set()
        time.sleep(0.2)
        raise RuntimeError("boom")

    errors = []

    def call():
        try:
            c.get_or_compute("k", failing)
        except RuntimeError as e:
            errors.append(str(e))

    first = threading.Thread(target=call)
    first.start()
    started.wait(5)
    second = threading.Thread(target=call)
    second.start()
    first.join()
    second.join()
    assert errors == ["boom", "boom"] and len(calls) == 1 and "k" not in c
    assert c.get_or_compute("k", lambda: 7) == 7  # tried again after the failure


def test_gate_is_reentrant_so_nested_cached_work_cannot_deadlock():
    gate = WorkGate(1)
    c = ByteCache(max_bytes=1 << 20, gate=gate)
    inner = ByteCache(max_bytes=1 << 20, gate=gate)
    value = c.get_or_compute("outer", lambda: inner.get_or_compute("inner", lambda: 3) + 1)
    assert value == 4 and gate.busy == 0


def test_queued_work_reports_its_place():
    gate = WorkGate(1)
    c = ByteCache(max_bytes=1 << 20, gate=gate)
    release = threading.Event()
    t = threading.Thread(target=lambda: c.get_or_compute("slow", lambda: release.wait(5)))
    t.start()
    while gate.busy == 0:
        time.sleep(0.01)
    seen = []
    threading.Timer(0.3, release.set).start()
    assert c.get_or_compute("other", lambda r: 5, progress=lambda f, m: seen.append(m)) == 5
    t.join()
    assert any("waiting for a free worker" in m for m in seen)


@pytest.mark.parametrize("slots", [1, 3])
def test_gate_bounds_concurrency(slots):
    gate = WorkGate(slots)
    running, peak, lock = [0], [0], threading.Lock()

    def work():
        with gate():
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.02)
            with lock:
                running[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == slots and gate.busy == 0 and gate.waiting == 0
