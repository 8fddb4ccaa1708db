"""One-shot keyed timers on SimPy without one process per timer owner.

Two implementations with the same interface; ``benchmarks/sim_bench.py`` measures both.

* ``CallbackTimers`` schedules one ``env.timeout`` per start and appends a callback.
* ``HeapTimers`` keeps a per-node heap and arms a single SimPy timeout for the earliest entry.

Cancelled or replaced timers must not fire: each start gets a fresh token (a global
generation number) and the callback only runs when the key still maps to that token.
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


class _Wakeup:
    """A minimal SimPy-schedulable event: what ``Environment.step`` reads (``callbacks``,
    ``_ok``) plus the timer's key and token. Far smaller than a ``Timeout`` with a closure,
    which matters with ~100,000 pending timers; ordering is the same as ``env.timeout``."""

    __slots__ = ("callbacks", "key", "token")
    _ok = True

    def __init__(self, callbacks: tuple[Callable[[Any], None]], key: Hashable, token: int):
        self.callbacks = callbacks
        self.key = key
        self.token = token


class _Entry:
    """A live timer: its token, when it should fire, and when its pending wakeup is due."""

    __slots__ = ("at", "scheduled", "token")

    def __init__(self, token: int, at: float) -> None:
        self.token = token
        self.at = at
        self.scheduled = at


class CallbackTimers:
    """One scheduled SimPy event per started timer; stale events fire into a no-op.

    Re-arming a live timer to a later time (a refresh timer pushed back by each NOTIFY)
    schedules nothing: the pending wakeup, when due, re-schedules itself for the new time.
    So a key has at most one pending wakeup unless it is moved earlier.
    """

    def __init__(self, env: Any, callback: TimerCallback) -> None:
        self._env = env
        self._callback = callback
        self._live: dict[Hashable, _Entry] = {}
        self._tokens = itertools.count(1)
        self._callbacks = (self._fire,)  # shared by every wakeup: no per-timer allocation

    def start(self, key: Hashable, at: float) -> None:
        entry = self._live.get(key)
        if entry is not None and entry.scheduled <= at:
            entry.at = at  # the pending wakeup comes first and will defer itself
            return
        entry = _Entry(next(self._tokens), at)
        self._live[key] = entry
        self._schedule(key, entry)

    def _schedule(self, key: Hashable, entry: _Entry) -> None:
        delay = entry.scheduled - self._env.now
        wakeup = _Wakeup(self._callbacks, key, entry.token)
        self._env.schedule(wakeup, NORMAL_PRIORITY, delay if delay > 0.0 else 0.0)

    def _fire(self, wakeup: _Wakeup) -> None:
        key = wakeup.key
        entry = self._live.get(key)
        if entry is None or entry.token != wakeup.token:
            return  # cancelled or replaced
        if entry.at != entry.scheduled:  # moved later while this wakeup was pending
            entry.scheduled = entry.at
            self._schedule(key, entry)
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
