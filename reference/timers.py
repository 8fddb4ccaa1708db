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
import struct
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

    A heap entry is ONE int (48 bytes, against 96 for an ``(at, seq, key)`` tuple and its
    ``seq`` int), ordered as ``(at, seq)`` is: the deadline's IEEE 754 bits made
    order-preserving (``float_order``), then ``seq``, which grows with every arm (equal
    deadlines pop in arming order), then the key's code: a subscription's int key is its
    own code, any other key (a ``TimerKey``, an int beyond +-2**32) is flagged and found in
    ``_named`` by its entry. The live map holds each key's current entry, the same int
    object as in the heap; an entry is stale (its key cancelled or re-armed) when it is no
    longer its key's live entry. The heap is compacted when stale entries pass a quarter
    of the live ones (and 64), so memory stays within 1.25 entries per live timer; a
    compaction (C heapify) costs about as much as the arms that made it due. A deadline of
    -0.0 is kept as 0.0 (the two compare equal; only one of them can have a place in the
    order).
    """

    __slots__ = ("_heap", "_live", "_named", "_next_at", "_next_entry", "_seq")

    def __init__(self) -> None:
        self._heap: list[int] = []
        self._live: dict[Key, int] = {}
        self._named: dict[int, Key] = {}  # entry -> key, for live keys without an int code
        self._seq = 0
        # The entry `next_deadline` last answered for and its deadline: a driver asks after
        # every call into the agent, and the earliest timer is mostly the same one.
        self._next_entry = -1
        self._next_at = 0.0

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def at(self, key: Key) -> float | None:
        """The live deadline of ``key``, or None."""
        entry = self._live.get(key)
        return None if entry is None else order_float(entry >> _AT_SHIFT)

    def deadlines(self) -> dict[TimerKey, float]:
        """Every live timer with its deadline (for queries and tests, not hot paths)."""
        live = self._live
        return {public_key(key): order_float(entry >> _AT_SHIFT) for key, entry in live.items()}

    def arm(self, key: Key, at: float) -> None:
        seq = self._seq
        if seq >= _SEQ_LIMIT:
            seq = self._renumber()
        self._seq = seq + 1
        if type(key) is int and -_INT_KEY_LIMIT <= key < _INT_KEY_LIMIT:
            code = key << 2 if key >= 0 else ~key << 2 | _TIMER_N
        else:
            code = _NAMED
        entry = (float_order(at) << _SEQ_BITS | seq) << _CODE_BITS | code
        live = self._live
        old = live.get(key)
        if old is not None and old & _NAMED:
            del self._named[old]
        live[key] = entry
        if code == _NAMED:
            self._named[entry] = key
        heap = self._heap
        heapq.heappush(heap, entry)
        if len(heap) > 64 + len(live) + (len(live) >> 2):
            self._compact()

    def cancel(self, key: Key) -> None:
        entry = self._live.pop(key, None)
        if entry is not None and entry & _NAMED:
            del self._named[entry]

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None when no timer is armed."""
        heap = self._heap
        while heap:
            entry = heap[0]
            if self._key_if_live(entry) is not None:
                if entry != self._next_entry:
                    self._next_entry = entry
                    self._next_at = order_float(entry >> _AT_SHIFT)
                return self._next_at
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> Key | None:
        """Disarm and return the first timer due at ``now`` (see the order above), or None."""
        heap = self._heap
        # Entries due at `now` are those whose deadline bits are at most now's.
        due_below = float_order(now) + 1 << _AT_SHIFT
        while heap:
            entry = heap[0]
            key = self._key_if_live(entry)
            if key is None:
                heapq.heappop(heap)
                continue
            if entry >= due_below:
                return None
            heapq.heappop(heap)
            del self._live[key]
            if entry & _NAMED:
                del self._named[entry]
            return key
        return None

    def _key_if_live(self, entry: int) -> Key | None:
        """The key whose live entry ``entry`` is, or None when ``entry`` is stale."""
        code = entry & _CODE_MASK
        if code & _NAMED:
            return self._named.get(entry)  # only live entries are there
        key = code >> 2 if not code & _TIMER_N else ~(code >> 2)
        return key if self._live.get(key) == entry else None

    def _compact(self) -> None:
        self._heap = list(self._live.values())
        heapq.heapify(self._heap)

    def _renumber(self) -> int:
        """Give the live entries the sequence numbers 0, 1, ... in their order (so the
        order of equal deadlines is kept) when ``seq`` ran out of bits; returns the next.
        After 2**40 arms: never in a run, but a long-lived driver is not stopped by it."""
        entries = sorted(self._live.items(), key=lambda item: item[1])
        self._live, self._named = {}, {}
        for seq, (key, entry) in enumerate(entries):
            code = entry & _CODE_MASK
            renumbered = (entry >> _AT_SHIFT << _SEQ_BITS | seq) << _CODE_BITS | code
            self._live[key] = renumbered
            if code & _NAMED:
                self._named[renumbered] = key
        self._heap = list(self._live.values())  # sorted: already a heap
        return len(entries)


# An entry's bits, high to low: the deadline (64), seq (_SEQ_BITS), the key's code
# (_CODE_BITS): an int key k >= 0 is k << 2, ~k << 2 | _TIMER_N for k < 0 (Timer N),
# any other key _NAMED. 64 + 40 + 34 bits: a 5-digit int, 48 bytes.
_SEQ_BITS = 40
_SEQ_LIMIT = 1 << _SEQ_BITS
_CODE_BITS = 34
_CODE_MASK = (1 << _CODE_BITS) - 1
_AT_SHIFT = _SEQ_BITS + _CODE_BITS
_INT_KEY_LIMIT = 1 << _CODE_BITS - 2
_NAMED = 1
_TIMER_N = 2
_SIGN = 1 << 63
_DOUBLE = struct.Struct("<d")
_UINT64 = struct.Struct("<Q")
_pack_double = _DOUBLE.pack
_from_bytes = int.from_bytes


def float_order(at: float) -> int:
    """``at``'s IEEE 754 bits as a 64-bit unsigned int in the order of the floats (-0.0 as
    0.0): a non-negative float's bits with the sign bit set, a negative float's inverted.
    ``order_float`` gives the float back, bit for bit. (simulator.timers packs its entries
    the same way.)"""
    # (int.from_bytes of the packed double: one call less than unpacking it as "<Q".)
    if at >= 0.0:
        return _from_bytes(_pack_double(at + 0.0), "little") | _SIGN
    return _from_bytes(_pack_double(at), "little") ^ 0xFFFF_FFFF_FFFF_FFFF


def order_float(bits: int) -> float:
    """The float whose ``float_order`` is ``bits``."""
    bits = bits ^ _SIGN if bits & _SIGN else bits ^ 0xFFFF_FFFF_FFFF_FFFF
    at: float = _DOUBLE.unpack(_UINT64.pack(bits))[0]
    return at
