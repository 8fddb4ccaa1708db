"""SimPy wake-ups for owners that keep their own deadlines.

``Wakeup`` is a bare SimPy-schedulable event: an owner schedules one for its earliest
deadline and ignores it when it fired after being superseded. The agent hosts arm one for
``Agent.next_deadline()`` (the core owns its timers, ``reference.timers``). ``Call`` is one
that runs an action (``call_later``: the workload's and the notifier model's delays).

``DeadlineQueue`` is the notifier model's timer store (its NOTIFY transactions and dialog
expiries), for owners that can tell a stale deadline from their own state: no cancel, no
token, one heap entry per deadline and one ``Wakeup`` armed for the earliest live one; a
deadline dropped before it reaches the head of the queue costs no SimPy event at all.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable
from typing import Any

NORMAL_PRIORITY = 1  # simpy.events.NORMAL: the priority env.timeout() uses
COMPACT_MINIMUM = 1024  # DeadlineQueue: heap entries below which compaction is not worth it


class Wakeup:
    """A bare SimPy-schedulable event (what ``Environment.step`` reads)."""

    __slots__ = ("callbacks",)
    _ok = True

    def __init__(self, callback: Callable[[Any], None]) -> None:
        self.callbacks: tuple[Callable[[Any], None], ...] | None = (callback,)


class Call:
    """A bare SimPy-schedulable event that runs ``action()`` when processed."""

    __slots__ = ("action", "callbacks")
    _ok = True

    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action
        self.callbacks: tuple[Callable[[Call], None], ...] | None = _RUN_ACTION


def _run_action(call: Call) -> None:
    call.action()


_RUN_ACTION = (_run_action,)  # shared: SimPy takes an event's callbacks, never changes them


def call_later(env: Any, delay: float, action: Callable[[], None]) -> None:
    """Run ``action()`` in ``delay`` (>= 0) seconds. ``env.schedule`` with the priority of
    ``env.timeout`` puts it where a timeout callback would run (SimPy orders by time,
    priority, then scheduling order), without the Timeout, its callback list and a closure
    per call."""
    env.schedule(Call(action), NORMAL_PRIORITY, delay)


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
        self._armed: Wakeup | None = None
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
        wakeup = Wakeup(self._wake)
        self._armed = wakeup
        self._armed_at = at
        delay = at - self._env.now
        self._env.schedule(wakeup, NORMAL_PRIORITY, delay if delay > 0.0 else 0.0)

    def _wake(self, wakeup: Wakeup) -> None:
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
