"""One-shot keyed timers on SimPy without one process per timer owner.

Two implementations with the same interface; ``benchmarks/sim_bench.py`` measures both.

* ``CallbackTimers`` schedules one ``env.timeout`` per start and appends a callback.
* ``HeapTimers`` keeps a per-node heap and arms a single SimPy timeout for the earliest entry.

Cancelled or replaced timers must not fire: ``CallbackTimers`` only runs the callback when
the key still maps to the very entry that woke up; ``HeapTimers`` gives each start a fresh
token (a generation number) and checks it.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable
from typing import Any, Protocol

TimerCallback = Callable[[Hashable], None]


class Timers(Protocol):
    def start(self, key: Hashable, at: float) -> None: ...
    def cancel(self, key: Hashable) -> None: ...
    def pending(self) -> int: ...


NORMAL_PRIORITY = 1  # simpy.events.NORMAL: the priority env.timeout() uses


class _Entry:
    """A started timer, which is also its own SimPy-schedulable event: what
    ``Environment.step`` reads (``callbacks``, ``_ok``) plus the key, when it should fire
    and when its pending wakeup is due. One small object per timer instead of an entry plus
    a ``Timeout`` with a closure, which matters with ~100,000 pending timers; ordering is
    the same as ``env.timeout``. A wakeup is stale when its key maps to another entry."""

    __slots__ = ("at", "callbacks", "key", "scheduled")
    callbacks: tuple[Callable[[Any], None]] | None
    _ok = True

    def __init__(self, callbacks: tuple[Callable[[Any], None]], key: Hashable, at: float):
        self.callbacks = callbacks
        self.key = key
        self.at = at
        self.scheduled = at


class CallbackTimers:
    """One scheduled SimPy event per started timer; stale events fire into a no-op.

    Re-arming a live timer to a later time (a refresh timer pushed back by each NOTIFY)
    schedules nothing: the pending wakeup, when due, re-schedules itself for the new time.
    So a key has at most one pending wakeup unless it is moved earlier (then a new entry is
    scheduled and the old one, no longer the key's entry, fires into a no-op).
    """

    def __init__(self, env: Any, callback: TimerCallback) -> None:
        self._env = env
        self._callback = callback
        self._live: dict[Hashable, _Entry] = {}
        self._callbacks = (self._fire,)  # shared by every entry: no per-timer allocation

    def start(self, key: Hashable, at: float) -> None:
        entry = self._live.get(key)
        if entry is not None and entry.scheduled <= at:
            entry.at = at  # the pending wakeup comes first and will defer itself
            return
        entry = _Entry(self._callbacks, key, at)
        self._live[key] = entry
        self._schedule(entry)

    def _schedule(self, entry: _Entry) -> None:
        delay = entry.scheduled - self._env.now
        self._env.schedule(entry, NORMAL_PRIORITY, delay if delay > 0.0 else 0.0)

    def _fire(self, entry: _Entry) -> None:
        key = entry.key
        if self._live.get(key) is not entry:
            return  # cancelled or replaced
        if entry.at != entry.scheduled:  # moved later while this wakeup was pending
            entry.scheduled = entry.at
            entry.callbacks = self._callbacks  # Environment.step set it to None
            self._schedule(entry)
            return
        del self._live[key]
        self._callback(key)

    def cancel(self, key: Hashable) -> None:
        self._live.pop(key, None)

    def pending(self) -> int:
        return len(self._live)


class HeapTimers:
    """A heap of (at, seq, token, key) per node; one SimPy timeout armed for the earliest."""

    def __init__(self, env: Any, callback: TimerCallback) -> None:
        self._env = env
        self._callback = callback
        self._live: dict[Hashable, int] = {}
        self._heap: list[tuple[float, int, Hashable]] = []
        self._tokens = itertools.count(1)
        self._armed_at: float | None = None

    def start(self, key: Hashable, at: float) -> None:
        token = next(self._tokens)
        self._live[key] = token
        heapq.heappush(self._heap, (at, token, key))
        if self._armed_at is None or at < self._armed_at:
            self._arm(at)

    def cancel(self, key: Hashable) -> None:
        # The heap entry stays; its token no longer matches, so it is skipped when due.
        self._live.pop(key, None)

    def pending(self) -> int:
        return len(self._live)

    def _arm(self, at: float) -> None:
        self._armed_at = at
        self._env.timeout(max(0.0, at - self._env.now)).callbacks.append(
            lambda _e, at=at: self._wake(at)
        )

    def _wake(self, armed_for: float) -> None:
        if self._armed_at != armed_for:
            return  # superseded by an earlier arm; that one (or a later one) owns the heap
        self._armed_at = None
        now = self._env.now
        heap = self._heap
        while heap and heap[0][0] <= now:
            _at, token, key = heapq.heappop(heap)
            if self._live.get(key) == token:
                del self._live[key]
                self._callback(key)
        # Drop stale heads so the next arm is for a live timer.
        while heap and self._live.get(heap[0][2]) != heap[0][1]:
            heapq.heappop(heap)
        if heap and (self._armed_at is None or heap[0][0] < self._armed_at):
            self._arm(heap[0][0])
