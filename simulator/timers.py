"""One-shot keyed timers on SimPy without one process per timer owner.

Implementations with the same interface; ``benchmarks/sim_bench.py`` measures them.

* ``CallbackTimers`` schedules one ``env.timeout`` per start and appends a callback.
* ``HeapTimers`` keeps a per-node heap and arms a single SimPy timeout for the earliest entry.

``DeadlineQueue`` is a third, lazier shape for owners that can tell a stale deadline from
their own state (the notifier's NOTIFY transactions and dialog expiries): no cancel, no
token, one heap entry per deadline and one SimPy wakeup armed for the earliest live one.
``LazyTimers`` puts the keyed start/cancel interface on it; the agent hosts use it.

Measured with tracemalloc over 100,000 timers (keys and times owned by the caller): a live
timer costs 248 B with ``CallbackTimers`` (its entry, the SimPy queue tuple with its time
and id, the dict slot) and 153 B with ``LazyTimers``; moving every timer earlier leaves
220 B resp. 93 B per timer queued until its old time (``LazyTimers`` compacts its queue
when it doubles); and a ``LazyTimers`` timer cancelled before it reaches the head of the
queue costs no SimPy event at all (the simulator ran 388,437 SimPy events for the 10k
bench with ``CallbackTimers`` everywhere, 212,376 with ``LazyTimers``/``DeadlineQueue``).

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


COMPACT_MINIMUM = 1024  # DeadlineQueue: heap entries below which compaction is not worth it


class _Wakeup:
    """A bare SimPy-schedulable event (what ``Environment.step`` reads)."""

    __slots__ = ("callbacks",)
    _ok = True

    def __init__(self, callback: Callable[[Any], None]) -> None:
        self.callbacks: tuple[Callable[[Any], None], ...] | None = (callback,)


class DeadlineQueue:
    """(at, key) deadlines in a heap; ``fire(key)`` runs when a key's deadline is due.

    The owner never cancels or moves an entry: ``due(key)`` returns the key's current
    deadline (None when it no longer has one). A popped entry whose key is now due later is
    pushed again for that time, one whose key is gone is dropped; entries reaching the head
    are checked before a wakeup is armed for them, so a NOTIFY answered before its Timer E
    costs a heap push and pop, not a SimPy event. One SimPy wakeup is armed, for the
    earliest live deadline. Deadlines due at the same instant fire in push order, the
    order separate SimPy events would have had. Keys are any hashables (never compared).
    """

    def __init__(
        self,
        env: Any,
        fire: Callable[[Any], None],
        due: Callable[[Any], float | None],
    ) -> None:
        self._env = env
        self._fire = fire
        self._due = due
        self._heap: list[tuple[float, int, Hashable]] = []
        self._seq = itertools.count()
        self._armed: _Wakeup | None = None
        self._armed_at = 0.0
        self._waking = False
        self._compact_above = COMPACT_MINIMUM

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, at: float, key: Hashable) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), key))
        if not self._waking:
            if self._armed is None or at < self._armed_at:
                self._arm(at)
            if len(self._heap) > self._compact_above:
                self.compact()

    def compact(self) -> None:
        """Drop the entries that could only ever be dropped: those of keys without a
        deadline and all but the first of a key's entries at or before its deadline
        (a deadline moved earlier again and again leaves one entry each time, which a
        run may never reach). Amortized O(1) per push: it runs when the heap doubled."""
        due = self._due
        first: dict[Hashable, tuple[float, int, Hashable]] = {}
        for entry in self._heap:
            at, seq, key = entry
            current = due(key)
            if current is None or at > current:
                continue
            kept = first.get(key)
            if kept is None or (at, seq) < kept[:2]:
                first[key] = entry
        self._heap = list(first.values())
        heapq.heapify(self._heap)
        self._compact_above = max(COMPACT_MINIMUM, 2 * len(self._heap))

    def clear(self) -> None:
        self._heap.clear()

    def _arm(self, at: float) -> None:
        wakeup = _Wakeup(self._wake)
        self._armed = wakeup
        self._armed_at = at
        delay = at - self._env.now
        self._env.schedule(wakeup, NORMAL_PRIORITY, delay if delay > 0.0 else 0.0)

    def _wake(self, wakeup: _Wakeup) -> None:
        if wakeup is not self._armed:
            return  # superseded by an earlier arm
        self._armed = None
        heap = self._heap
        due = self._due
        now = self._env.now
        self._waking = True
        try:
            while heap and heap[0][0] <= now:
                key = heapq.heappop(heap)[2]
                current = due(key)
                if current is None:
                    continue
                if current > now:
                    heapq.heappush(heap, (current, next(self._seq), key))
                else:
                    self._fire(key)
        finally:
            self._waking = False
        while heap:
            at, _seq, key = heap[0]
            current = due(key)
            if current is None:
                heapq.heappop(heap)
            elif current > at:
                heapq.heapreplace(heap, (current, next(self._seq), key))
            else:
                self._arm(at)
                return


class LazyTimers:
    """Keyed one-shot timers (the ``Timers`` interface) on a ``DeadlineQueue``.

    Only the deadline per key is kept; a start that moves a deadline later pushes nothing
    (the queued entry, when due, is pushed again for the new time), one that moves it
    earlier or restarts a cancelled key pushes a new entry; stale entries are dropped when
    they come up. Fires in deadline order, equal deadlines in start order.
    """

    def __init__(self, env: Any, callback: TimerCallback) -> None:
        self._callback = callback
        self._deadlines: dict[Hashable, float] = {}
        self._queue = DeadlineQueue(env, self._fire, self._deadlines.get)

    def start(self, key: Hashable, at: float) -> None:
        current = self._deadlines.get(key)
        self._deadlines[key] = at
        if current is None or at < current:
            self._queue.push(at, key)

    def cancel(self, key: Hashable) -> None:
        self._deadlines.pop(key, None)

    def pending(self) -> int:
        return len(self._deadlines)

    def _fire(self, key: Hashable) -> None:
        del self._deadlines[key]
        self._callback(key)
