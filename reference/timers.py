"""The one deadline queue of the core (aioquic's timer model).

Rules of this file:
* The core owns every timer it needs in one ``DeadlineQueue``; it never asks a runtime to
  arm one. A driver reads ``Agent.next_deadline()`` after every call, arms ONE wake-up for
  it, and calls ``Agent.handle_timers(now)`` when it comes.
* A timer is named by a typed ``TimerKey``, or, for a subscription's two timers, by an int
  (``Key``: the handle itself, or ``timer_n_key(handle)``), so that a subscription needs no
  key object of its own (a ``TimerKey`` is 80 bytes); ``deadlines()`` shows every key as a
  ``TimerKey``. Arming a key that is live replaces its deadline, cancelling a key that is
  not live does nothing.
* Order of equal deadlines, the one order every driver gets: timers fire by deadline, and
  timers with the same deadline fire in the order they were (last) armed. A timer armed
  while ``handle_timers(now)`` runs, with a deadline at or before ``now``, fires in the same
  call, after the ones already due.
* Nothing here reads a clock: ``now`` is always given.
"""

from __future__ import annotations

import heapq
import itertools
from enum import Enum
from typing import NamedTuple


class TimerKind(Enum):
    SUBSCRIPTION = "sub"  # the one state-machine timer of a subscription (DELAY, REFRESH...)
    TIMER_N = "n"  # rfc6665 Timer N of a subscription (RFC 6665 §4.1.2.4)
    CLIENT_TX = "tx"  # a timer (E, F, K) of a SUBSCRIBE client transaction
    SERVER_TX = "stx"  # the one housekeeping timer: Timers J and K of every transaction

    # Members are singletons compared by identity: hash them by identity in C instead of
    # Enum's Python-level hash of the name (every TimerKey lookup hashes its kind). Neither
    # hash is stable across processes; nothing iterates keys in hash order.
    __hash__ = object.__hash__


class TimerKey(NamedTuple):
    """Which timer: its kind plus the handle (subscription timers) or the branch and the
    transaction's timer name (client transaction timers)."""

    kind: TimerKind
    handle: int = 0
    branch: str = ""
    name: str = ""


# A subscription's state-machine timer is keyed by its handle (>= 0, the very int object
# the subscription holds), its Timer N by the handle's complement (< 0); every other timer
# by its TimerKey.
Key = int | TimerKey


def timer_n_key(handle: int) -> int:
    """The key of a subscription's Timer N."""
    return ~handle


def public_key(key: Key) -> TimerKey:
    """``key`` as a TimerKey (an int key is a subscription's timer or its Timer N)."""
    if isinstance(key, int):
        if key >= 0:
            return TimerKey(TimerKind.SUBSCRIPTION, key)
        return TimerKey(TimerKind.TIMER_N, ~key)
    return key


class DeadlineQueue:
    """Keyed one-shot deadlines in one heap with lazy deletion.

    A heap entry is ``(at, seq, key)``; ``seq`` grows with every arm, so equal deadlines pop
    in arming order (and keys are never compared). The live map holds each key's current
    entry, the same tuple as in the heap (a live timer costs one tuple); an entry is stale
    (its key cancelled or re-armed) when its ``seq`` is no longer the live entry's. The
    heap is compacted when stale entries pass a quarter of the live ones (and 64), so
    memory stays within 1.25 entries per live timer; a compaction (C heapify) costs about
    as much as the arms that made it due.
    """

    __slots__ = ("_heap", "_live", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Key]] = []
        self._live: dict[Key, tuple[float, int, Key]] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def at(self, key: Key) -> float | None:
        """The live deadline of ``key``, or None."""
        entry = self._live.get(key)
        return None if entry is None else entry[0]

    def deadlines(self) -> dict[TimerKey, float]:
        """Every live timer with its deadline (for queries and tests, not hot paths)."""
        return {public_key(key): entry[0] for key, entry in self._live.items()}

    def arm(self, key: Key, at: float) -> None:
        entry = (at, next(self._seq), key)
        live = self._live
        live[key] = entry
        heap = self._heap
        heapq.heappush(heap, entry)
        if len(heap) > 64 + len(live) + (len(live) >> 2):
            self._compact()

    def cancel(self, key: Key) -> None:
        self._live.pop(key, None)

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None when no timer is armed."""
        heap, live = self._heap, self._live
        while heap:
            at, seq, key = heap[0]
            entry = live.get(key)
            if entry is not None and entry[1] == seq:
                return at
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> Key | None:
        """Disarm and return the first timer due at ``now`` (see the order above), or None."""
        heap, live = self._heap, self._live
        while heap:
            at, seq, key = heap[0]
            entry = live.get(key)
            if entry is None or entry[1] != seq:
                heapq.heappop(heap)
                continue
            if at > now:
                return None
            heapq.heappop(heap)
            del live[key]
            return key
        return None

    def _compact(self) -> None:
        self._heap = list(self._live.values())
        heapq.heapify(self._heap)
