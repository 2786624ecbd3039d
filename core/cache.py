"""Caches bounded in bytes that compute identical work once, and a gate that bounds concurrent work.

Built for a server where many sessions press the same button at the same moment (a class of 30
on one 2-core machine):

- :class:`ByteCache` is a thread-safe LRU mapping bounded by the bytes its values hold
  (:func:`nbytes_of`). ``get_or_compute(key, compute)`` is *single-flight*: while one caller
  computes a key, later callers of the same key wait for it (seeing its progress) and share its
  result, so identical work runs once and is held once. A failure is re-raised to every waiter
  and nothing is cached.
- :class:`WorkGate` bounds how many distinct computations run at once (sized to the cores at
  start-up); the rest queue, reporting their place, instead of thrashing. The gate is re-entrant
  per thread, so a computation that needs another cached value inside it cannot deadlock.

Values shared through a cache are read-only by convention: callers never mutate what they get
(results expose methods that return new objects instead).
"""
from __future__ import annotations

import dataclasses
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

Progress = Callable[[float, str], None]


# ---------------------------------------------------------------------------- sizes
def nbytes_of(value: Any, _seen: set | None = None, _depth: int = 0) -> int:
    """Approximate bytes held by ``value``: numpy arrays, torch tensors and modules, pandas frames,
    objects with an ``nbytes`` attribute, and containers/dataclasses of those (each object counted once)."""
    if value is None or isinstance(value, (bool, int, float, complex)):
        return 0
    seen = _seen if _seen is not None else set()
    if id(value) in seen or _depth > 12:
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        return int(value.nbytes) if value.base is None or id(value.base) not in seen else 0
    if isinstance(value, (str, bytes, bytearray)):
        return len(value)
    nb = getattr(value, "nbytes", None)
    if isinstance(nb, (int, np.integer)) and not isinstance(value, type):
        return int(nb)
    mod = type(value).__module__
    if mod.startswith("torch"):
        import torch

        if isinstance(value, torch.Tensor):
            return int(value.element_size() * value.nelement())
        if isinstance(value, torch.nn.Module):
            return int(sum(t.element_size() * t.nelement() for t in list(value.parameters()) + list(value.buffers())))
    if mod.startswith("pandas"):
        try:
            usage = value.memory_usage(deep=True)
            return int(usage.sum() if hasattr(usage, "sum") else usage)
        except (AttributeError, TypeError, ValueError):
            return sys.getsizeof(value)
    if isinstance(value, dict):
        return sum(nbytes_of(v, seen, _depth + 1) for v in value.values())  # keys are small; values hold the bytes
    if isinstance(value, (list, tuple, set, frozenset)):
        return sum(nbytes_of(v, seen, _depth + 1) for v in value)
    if dataclasses.is_dataclass(value):
        return sum(nbytes_of(getattr(value, f.name), seen, _depth + 1) for f in dataclasses.fields(value))
    if hasattr(value, "__dict__"):
        return sum(nbytes_of(v, seen, _depth + 1) for v in vars(value).values())
    return sys.getsizeof(value)


# ---------------------------------------------------------------------------- the gate
class WorkGate:
    """At most ``slots`` computations at once across the process; re-entrant per thread.

    ``enter(progress)`` blocks until a slot is free, telling ``progress`` how many are ahead."""

    def __init__(self, slots: int):
        self.slots = max(1, int(slots))
        self._cond = threading.Condition()
        self._busy = 0
        self._queue: list[int] = []  # tickets, first come first served
        self._ticket = 0
        self._local = threading.local()

    @property
    def busy(self) -> int:
        return self._busy

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def __call__(self, progress: Progress | None = None):
        return _GateContext(self, progress)

    def _acquire(self, progress: Progress | None) -> bool:
        depth = getattr(self._local, "depth", 0)
        if depth:  # this thread already holds a slot: nested work runs in it
            self._local.depth = depth + 1
            return False
        with self._cond:
            self._ticket += 1
            ticket = self._ticket
            self._queue.append(ticket)
            while self._busy >= self.slots or self._queue[0] != ticket:
                if progress is not None:
                    ahead = self._queue.index(ticket) + self._busy - self.slots + 1
                    progress(0.0, f"waiting for a free worker ({max(ahead, 1)} ahead)")
                self._cond.wait(timeout=0.5)
            self._queue.pop(0)
            self._busy += 1
            self._cond.notify_all()
        self._local.depth = 1
        return True

    def _release(self, acquired: bool) -> None:
        self._local.depth -= 1
        if acquired:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()


class _GateContext:
    def __init__(self, gate: WorkGate, progress: Progress | None):
        self.gate, self.progress, self.acquired = gate, progress, False

    def __enter__(self):
        self.acquired = self.gate._acquire(self.progress)
        return self

    def __exit__(self, *exc):
        self.gate._release(self.acquired)
        return False


def default_slots() -> int:
    """Concurrent computations for this machine: one per two cores (each runs two compute threads), at least one."""
    env = os.environ.get("IE_WORKERS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, (os.cpu_count() or 2) // 2)


#: the process-wide gate every cache computes behind
GATE = WorkGate(default_slots())


# ---------------------------------------------------------------------------- the cache
class _Flight:
    """A computation in progress: its last progress report, then its result or exception."""

    def __init__(self):
        self.done = threading.Event()
        self.fraction, self.message = 0.0, "starting"
        self.value: Any = None
        self.error: BaseException | None = None
        self.waiters = 0

    def report(self, fraction: float, message: str) -> None:
        self.fraction, self.message = fraction, message


class ByteCache:
    """A thread-safe LRU mapping bounded by ``max_bytes`` (and optionally ``max_entries``) whose
    ``get_or_compute`` computes each key once however many callers ask at the same time.

    A value larger than the whole budget is returned but not kept. ``recharge(key)`` re-measures an
    entry that grew after insertion (a fitted detector that scored another set)."""

    def __init__(self, max_bytes: int, name: str = "cache", max_entries: int | None = None,
                 gate: WorkGate | None = None):
        self.name = name
        self.max_bytes = int(max_bytes)
        self.max_entries = max_entries
        self.gate = gate if gate is not None else GATE
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._flights: dict[Hashable, _Flight] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = self.computed = self.shared = 0

    # -- mapping
    def get(self, key: Hashable, default=None):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key][0]
            return default

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def put(self, key: Hashable, value: Any, nbytes: int | None = None) -> Any:
        size = nbytes_of(value) if nbytes is None else int(nbytes)
        with self._lock:
            self._store(key, value, size)
        return value

    def _store(self, key: Hashable, value: Any, size: int) -> None:
        if key in self._items:
            self._bytes -= self._items.pop(key)[1]
        if size > self.max_bytes:
            return
        self._items[key] = (value, size)
        self._bytes += size
        self._evict()

    def _evict(self) -> None:
        while self._items and (self._bytes > self.max_bytes
                               or (self.max_entries is not None and len(self._items) > self.max_entries)):
            _, (_, size) = self._items.popitem(last=False)
            self._bytes -= size

    def recharge(self, key: Hashable) -> None:
        """Re-measure ``key``'s value (it grew after insertion) and evict to stay within the budget."""
        with self._lock:
            if key not in self._items:
                return
            value, old = self._items[key]
        size = nbytes_of(value)
        with self._lock:
            if key in self._items and self._items[key][0] is value:
                self._bytes += size - old
                self._items[key] = (value, size)
                if size > self.max_bytes:
                    self._bytes -= self._items.pop(key)[1]
                self._evict()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"name": self.name, "entries": len(self._items), "bytes": self._bytes, "max_bytes": self.max_bytes,
                    "in_flight": len(self._flights), "hits": self.hits, "misses": self.misses,
                    "computed": self.computed, "shared": self.shared}

    # -- single-flight computation
    def get_or_compute(self, key: Hashable, compute: Callable[..., Any], progress: Progress | None = None,
                       nbytes: int | None = None) -> Any:
        """The cached value of ``key``, computing it with ``compute`` on a miss.

        With ``progress``, ``compute`` is called as ``compute(progress)`` and its reports reach every
        caller waiting on the same key; without, as ``compute()``. Concurrent callers of one key
        share one computation; distinct computations queue behind the :class:`WorkGate`."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key][0]
            flight = self._flights.get(key)
            owner = flight is None
            if owner:
                flight = self._flights[key] = _Flight()
                self.misses += 1
            else:
                flight.waiters += 1
                self.shared += 1
        if not owner:
            return self._wait(flight, progress)

        def report(fraction: float, message: str) -> None:
            flight.report(fraction, message)
            if progress is not None:
                progress(fraction, message)

        try:
            with self.gate(progress):
                value = compute(report) if progress is not None else compute()
            size = nbytes_of(value) if nbytes is None else int(nbytes)
            with self._lock:
                self._store(key, value, size)
                self.computed += 1
            flight.value = value
            return value
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()

    def _wait(self, flight: _Flight, progress: Progress | None) -> Any:
        last = None
        while not flight.done.wait(timeout=0.25 if progress is not None else None):
            state = (flight.fraction, flight.message)
            if progress is not None and state != last:
                progress(flight.fraction, f"{flight.message} (shared with another session)")
                last = state
        if flight.error is not None:
            raise flight.error
        return flight.value


__all__ = ["GATE", "ByteCache", "WorkGate", "default_slots", "nbytes_of"]
