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
from collections.abc import Callable, Hashable
from typing import Any

from reference.timers import float_order, order_float

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

    An entry is ONE int (48 bytes, against 96 for an ``(at, seq, key)`` tuple and its
    ``seq`` int; the notifier keeps one per live dialog), ordered as ``(at, seq)`` is: the
    deadline's bits (``reference.timers.float_order``), then ``seq``, a count of pushes,
    then the key's code: an int key in [0, 2**49) is its own code (the notifier's dialog
    tags, read as ints), any other key is flagged and kept in ``_named`` by its entry.
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
        self._heap: list[int] = []
        self._named: dict[int, Hashable] = {}  # entry -> key, for keys without an int code
        self._seq = 0
        self._armed: Wakeup | None = None
        self._armed_at = 0.0
        self._waking = False
        self._compact_above = COMPACT_MINIMUM

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, at: float, key: Hashable) -> None:
        heapq.heappush(self._heap, self._entry(at, key))
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
        first: dict[Hashable, int] = {}
        for entry in self._heap:
            key = self._key(entry)
            current = due(key)
            if current is None or entry >> _AT_SHIFT > float_order(current):
                continue
            kept = first.get(key)
            if kept is None or entry < kept:
                first[key] = entry
        self._heap = list(first.values())
        heapq.heapify(self._heap)
        self._named = {entry: key for key, entry in first.items() if entry & _NAMED}
        self._compact_above = max(COMPACT_MINIMUM, 2 * len(self._heap))

    def clear(self) -> None:
        self._heap.clear()
        self._named.clear()

    def _entry(self, at: float, key: Hashable) -> int:
        seq = self._seq
        if seq >= SEQ_LIMIT:
            seq = self._renumber()
        self._seq = seq + 1
        if type(key) is int and 0 <= key < _INT_KEY_LIMIT:
            return (float_order(at) << _SEQ_BITS | seq) << _CODE_BITS | key << 1
        entry = (float_order(at) << _SEQ_BITS | seq) << _CODE_BITS | _NAMED
        self._named[entry] = key
        return entry

    def _key(self, entry: int) -> Hashable:
        return self._named[entry] if entry & _NAMED else (entry & _CODE_MASK) >> 1

    def _drop(self, entry: int) -> Hashable:
        """The key of ``entry``, which has just left the heap."""
        return self._named.pop(entry) if entry & _NAMED else (entry & _CODE_MASK) >> 1

    def _renumber(self) -> int:
        """Give the queued entries the counts 0, 1, ... in their order (so the order of
        equal deadlines is kept) when the count ran out of bits; returns the next. After
        2**40 pushes: never in a run, but the queue is not stopped by it."""
        named, self._named = self._named, {}
        entries = sorted(self._heap)
        for seq, entry in enumerate(entries):
            code = entry & _CODE_MASK
            entries[seq] = renumbered = (entry >> _AT_SHIFT << _SEQ_BITS | seq) << _CODE_BITS | code
            if code & _NAMED:
                self._named[renumbered] = named[entry]
        self._heap[:] = entries  # in place (callers hold the list); sorted: a heap
        return len(entries)

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
        due_below = float_order(now) + 1 << _AT_SHIFT  # entries due at `now` are below
        self._waking = True
        try:
            while heap and heap[0] < due_below:
                key = self._drop(heapq.heappop(heap))
                current = due(key)
                if current is None:
                    continue
                if current > now:
                    heapq.heappush(heap, self._entry(current, key))
                else:
                    self._fire(key)
        finally:
            self._waking = False
        while heap:
            entry = heap[0]
            key = self._key(entry)
            current = due(key)
            if current is None:
                self._drop(heapq.heappop(heap))
                continue
            at = order_float(entry >> _AT_SHIFT)
            if current > at:
                self._drop(heapq.heapreplace(heap, self._entry(current, key)))
            else:
                self._arm(at)
                return


# An entry's bits, high to low: the deadline (64), the push count (_SEQ_BITS), the key's
# code (_CODE_BITS): an int key k is k << 1, any other key _NAMED. 64 + 40 + 50 bits: a
# 6-digit int, 48 bytes.
_SEQ_BITS = 40
SEQ_LIMIT = 1 << _SEQ_BITS  # module-level so that a test can make it small
_CODE_BITS = 50
_CODE_MASK = (1 << _CODE_BITS) - 1
_AT_SHIFT = _SEQ_BITS + _CODE_BITS
_INT_KEY_LIMIT = 1 << _CODE_BITS - 1
_NAMED = 1
