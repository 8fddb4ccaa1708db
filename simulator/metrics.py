"""Run metrics: message counts, rates, availability, status propagation delay, retries.

Fed by three sources: the network's meter (every datagram sent, classified from its first
line without a full parse, to keep it cheap), the notifier model (presence changes and which
internal subscriptions have a live dialog), and the agent hosts (status deliveries).

The meter runs for every datagram, so it only bumps two counters: a total per simulated
second and a count per (10-second bin, label bytes, fate), where the label is the request
method or the response code and CSeq method as written. Every message figure of the summary
and the time series is derived from those when asked for.
"""

from __future__ import annotations

import math
import re
from array import array
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Protocol

from simulator.figures import MetricsState

BIN_SECONDS = 60  # timeseries.csv granularity (one simulated minute)
FINE_BIN_SECONDS = 10  # plot granularity, fine enough to show synchronized retry waves
RETRANSMISSION_WINDOW = 64.0  # longer than any non-INVITE transaction (Timer F = 64*T1)
NO_CHANGE_SEEN = -math.inf  # a subscription started before its record changed
CLEAN_TOKENS = 256  # the meter remembers at most this many first bytes, and methods per code
_SUBSCRIBE_SLOT = 0  # the meter's slot of the request SUBSCRIBE (Metrics._labels)
# The meter's first look (Metrics._heads): b"SIP/2.0 " and a three-digit code, or a
# request's method and the space after it (the longest common one, SUBSCRIBE, and one more).
HEAD_BYTES = 11


def classify(data: bytes) -> tuple[str, str]:
    """('request', METHOD) or ('response', 'CODE METHOD') from the raw bytes."""
    end = data.find(b"\r\n")
    line = data[: end if end >= 0 else len(data)]
    if line.startswith(b"SIP/2.0 "):
        code = line[8:11].decode("ascii", "replace")
        return "response", f"{code} {_cseq_method(data).decode('ascii', 'replace')}"
    space = line.find(b" ")
    return "request", line[: space if space > 0 else len(line)].decode("ascii", "replace")


def _cseq_method(data: bytes) -> bytes:
    """A response's CSeq method, what ``classify`` reads ("?" for none). (Partitions, not
    find() calls from an offset: such a call costs more than the copies.)"""
    _, found, tail = data.partition(b"\r\nCSeq:")
    if found:
        line, crlf, _ = tail.partition(b"\r\n")
        # The line ends at its CRLF; without one, one byte before the end (what a slice
        # up to find()'s -1 would give). No slice ends before it starts: the compiled
        # build fails on those.
        if not crlf:
            line = tail[: len(tail) - 1] if tail else tail
        parts = line.split()
        if len(parts) == 2:
            return parts[1]
    return b"?"


def _line_end(data: bytes, start: int) -> int:
    """Where the header line starting at ``start`` ends, as ``classify``'s slice up to
    find()'s answer has it: at its CRLF or, without one, one byte before the end."""
    stop = data.find(b"\r\n", start)
    return stop if stop >= 0 else len(data) - 1


# The branch value: from the first "branch=" to the next ";", "," or space (one regular
# expression search instead of a Python loop over the value's bytes).
_BRANCH = re.compile(rb"branch=([^;, ]*)")


def percentile(values: list[float] | array[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class _Bin:
    deliveries: int = 0
    live_area: float = 0.0  # integral of live internal subscriptions over the bin
    subs_area: float = 0.0  # integral of existing internal subscriptions


class SeenChanges(Protocol):
    """Each live internal subscription's latest presence change seen (for the propagation
    delays), kept by the run's table of live subscriptions (``simulator.run``): a table of
    their own would cost ~50 B per subscription."""

    def see_change(self, sid: int, change: float) -> bool:
        """Whether ``change`` is later than the latest change live subscription ``sid`` has
        seen (then it is the latest); False for a subscription that is not live."""
        ...


class Metrics:
    """Counters and integrals for one run; ``summary()`` turns them into summary.json data.
    The run sets ``seen`` before its first subscription."""

    seen: SeenChanges

    def __init__(self, duration: float) -> None:
        self.duration = duration
        # (10 s bin, is a response, label, fate) -> datagrams. The current bin's datagrams
        # of fate "delivered" are counted in ``_pending`` and added here when the bin ends
        # or the table is read (``_fold``).
        self._traffic: defaultdict[tuple[int, bool, bytes, str], int] = defaultdict(int)
        # Each distinct (is a response, label) the meter has seen has a slot: its index in
        # ``_labels`` and in ``_pending`` (the current bin's "delivered" count), found by
        # ``_slots``. Slot 0 is the request SUBSCRIBE (``_SUBSCRIBE_SLOT``), whose branches
        # the meter also reads.
        self._labels: list[tuple[bool, bytes]] = [(False, b"SUBSCRIBE")]
        self._slots: dict[tuple[bool, bytes], int] = {(False, b"SUBSCRIBE"): _SUBSCRIBE_SLOT}
        self._pending: list[int] = [0]
        # What ``count`` looks up first: a datagram's first HEAD_BYTES bytes, when they tell
        # the label's first part (at most CLEAN_TOKENS of them). For a request whose first
        # token and space are within them and the token holds no CR (so it is within the
        # first line), its slot; for a response whose three code bytes hold no CR (so they
        # are the whole code), ~i: its code is ``_codes[i]``, and ``_methods[i]`` has the
        # slots of its labels by CSeq method (at most CLEAN_TOKENS each).
        self._heads: dict[bytes, int] = {}
        self._codes: list[bytes] = []
        self._methods: list[dict[bytes, int]] = []
        self._per_second: list[int] = []  # datagrams sent in each simulated second
        # The second of the last datagram counted, its span and its 10 s bin (an empty span
        # until the first datagram).
        self._second = 0
        self._second_start = 1.0
        self._second_end = 0.0
        self._fine_bin = 0
        self.bins: dict[int, _Bin] = {}
        # The minute bin of the last delivery and its span (``_delivery_minute``); an empty
        # span until the first delivery, so the placeholder bin is never counted in.
        self._delivery_bin = _Bin()
        self._delivery_start = 1.0
        self._delivery_end = 0.0
        self.deliveries: Counter[str] = Counter()
        self.delays: array[float] = array("d")
        self.subscribe_retransmissions = 0
        self.initial_subscribes = 0
        self.subscribe_calls = 0
        self.unsubscribe_calls = 0
        # Availability: live dialogs per notifier, notifier up flags, internal subscriptions.
        self._live_by_notifier: Counter[str] = Counter()
        self._up: dict[str, bool] = {}
        self._live_now = 0  # what _live() gives, kept current (advance runs very often)
        self._subscriptions = 0
        self._last_t = 0.0
        self.live_area = 0.0
        self.subs_area = 0.0
        # Propagation delay bookkeeping.
        self._last_change: dict[str, float] = {}
        self._branches_now: set[bytes] = set()
        self._branches_old: set[bytes] = set()
        self._branch_epoch = 0
        self._branch_epoch_end = RETRANSMISSION_WINDOW

    # -- time integrals ---------------------------------------------------------------------

    def _live(self) -> int:
        return sum(n for name, n in self._live_by_notifier.items() if self._up.get(name, True))

    def advance(self, now: float) -> None:
        """Accumulate the availability integrals up to ``now`` (split across minute bins)."""
        t = self._last_t
        if now <= t:
            return
        live = min(self._live_now, self._subscriptions)
        subs = self._subscriptions
        while t < now:
            index = int(t // BIN_SECONDS)
            edge = min(now, (index + 1) * BIN_SECONDS)
            span = edge - t
            if subs:
                b = self._bin(index)
                b.live_area += live * span
                b.subs_area += subs * span
            t = edge
        self.live_area += live * (now - self._last_t)
        self.subs_area += subs * (now - self._last_t)
        self._last_t = now

    def _bin(self, index: int) -> _Bin:
        b = self.bins.get(index)
        if b is None:
            b = self.bins[index] = _Bin()
        return b

    # -- events -----------------------------------------------------------------------------

    def count(self, now: float, data: bytes, fate: str) -> None:
        """One datagram sent (the network's meter, ``Network.set_meter``)."""
        if not self._second_start <= now < self._second_end:
            self._new_second(now)
        self._per_second[self._second] += 1
        # The label: b"METHOD" for a request, b"CODE METHOD" for a response, what
        # ``classify`` reads, left as bytes (decoded once per distinct label, for the
        # summary), found as its slot. Read in place with as few calls as can be: each
        # costs about as much as the rest of this method. First bytes seen before that
        # tell a request's label or a response's code are in ``_heads``; any others take
        # the general reading.
        slot = self._heads.get(data[:HEAD_BYTES])
        if slot is None:
            slot = self._read_slot(data)
        elif slot < 0:
            code = ~slot
            method = _cseq_method(data)
            slot = self._methods[code].get(method)
            if slot is None:
                slot = self._method_slot(code, method)
        if slot == _SUBSCRIBE_SLOT:
            self._subscribe_seen(data, now)
        if fate == "delivered":
            self._pending[slot] += 1
        else:
            is_response, label = self._labels[slot]
            self._traffic[(self._fine_bin, is_response, label, fate)] += 1

    def _read_slot(self, data: bytes) -> int:
        """The slot of a datagram whose first bytes are not in ``_heads``: the general
        reading (they are added when they tell the label's first part)."""
        head = data[:HEAD_BYTES]
        space = data.find(b" ")
        first = data[:space] if space > 0 else b""  # (a slice to -1 of b"" fails compiled)
        if space == 7 and first == b"SIP/2.0":
            code = data[8:11]
            if b"\r" in code:
                end = data.find(b"\r\n", 8, 12)  # perhaps a first line shorter than the code
                if end >= 0:
                    code = data[8:end]
            elif len(self._heads) < CLEAN_TOKENS:
                index = len(self._codes)
                self._heads[head] = ~index
                self._codes.append(code)
                self._methods.append({})
                return self._method_slot(index, _cseq_method(data))
            return self._slot(True, code + b" " + _cseq_method(data))
        if space <= 0 or b"\r" in first:
            end = data.find(b"\r\n")
            line = data if end < 0 else data[:end]
            space = line.find(b" ")
            return self._slot(False, line if space <= 0 else line[:space])
        slot = self._slot(False, first)
        if space < HEAD_BYTES and len(self._heads) < CLEAN_TOKENS:
            self._heads[head] = slot
        return slot

    def _method_slot(self, code: int, method: bytes) -> int:
        """The slot of the response label of ``_codes[code]`` and ``method``."""
        slot = self._slot(True, self._codes[code] + b" " + method)
        methods = self._methods[code]
        if len(methods) < CLEAN_TOKENS:
            methods[method] = slot
        return slot

    def _slot(self, is_response: bool, label: bytes) -> int:
        key = (is_response, label)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = len(self._labels)
            self._labels.append(key)
            self._pending.append(0)
        return slot

    def _fold(self) -> None:
        """Add the current bin's "delivered" counts to ``_traffic`` (when the bin ends and
        before the table is read)."""
        pending = self._pending
        traffic = self._traffic
        for slot, n in enumerate(pending):
            if n:
                is_response, label = self._labels[slot]
                traffic[(self._fine_bin, is_response, label, "delivered")] += n
                pending[slot] = 0

    def _new_second(self, now: float) -> None:
        """What ``count`` needs to know of the second ``now`` falls in, worked out once per
        second with a datagram, not per datagram (an int() and a division less each)."""
        second = int(now)
        self._second = second
        self._second_start = float(second)
        self._second_end = float(second + 1)
        fine_bin = second // FINE_BIN_SECONDS
        if fine_bin != self._fine_bin:
            self._fold()
            self._fine_bin = fine_bin
        if second >= self._branch_epoch_end:  # (a multiple of a second)
            self._age_branches(now)
        per_second = self._per_second
        if second >= len(per_second):
            per_second.extend([0] * (second + 1 - len(per_second)))

    # -- message figures, derived from the traffic counts -------------------------------------

    def _by_label(self) -> tuple[Counter[str], Counter[str]]:
        requests: Counter[str] = Counter()
        responses: Counter[str] = Counter()
        self._fold()
        for (_bin, is_response, label, _fate), count in self._traffic.items():
            counter = responses if is_response else requests
            counter[label.decode("ascii", "replace")] += count
        return requests, responses

    @property
    def requests(self) -> Counter[str]:
        return self._by_label()[0]

    @property
    def responses(self) -> Counter[str]:
        return self._by_label()[1]

    @property
    def fates(self) -> Counter[str]:
        fates: Counter[str] = Counter()
        self._fold()
        for (_bin, _response, _label, fate), count in self._traffic.items():
            fates[fate] += count
        return fates

    @property
    def per_second(self) -> Counter[int]:
        return Counter({second: n for second, n in enumerate(self._per_second) if n})

    @property
    def fine(self) -> dict[int, Counter[str]]:
        """Message counts per 10-second bin, by column key (method, or response class)."""
        fine: dict[int, Counter[str]] = {}
        self._fold()
        for (index, is_response, label, _fate), count in self._traffic.items():
            column = fine.get(index)
            if column is None:
                column = fine[index] = Counter()
            text = label.decode("ascii", "replace")
            column[text.split(" ", 1)[0][0] + "xx" if is_response else text] += count
        return dict(sorted(fine.items()))

    def _minute_messages(self) -> dict[int, Counter[str]]:
        minutes: dict[int, Counter[str]] = {}
        per_minute = BIN_SECONDS // FINE_BIN_SECONDS
        for index, column in self.fine.items():
            minute = minutes.get(index // per_minute)
            if minute is None:
                minute = minutes[index // per_minute] = Counter()
            minute.update(column)
        return minutes

    def _age_branches(self, now: float) -> None:
        """Two generations of RETRANSMISSION_WINDOW seconds cover any retransmission (they
        come within the window). Moved on by time, from every datagram: between refresh
        waves no SUBSCRIBE comes, and the last wave's branches must not stay until the next."""
        epoch = int(now // RETRANSMISSION_WINDOW)
        if epoch != self._branch_epoch:
            self._branches_old = self._branches_now if epoch == self._branch_epoch + 1 else set()
            self._branches_now = set()
            self._branch_epoch = epoch
        self._branch_epoch_end = (epoch + 1) * RETRANSMISSION_WINDOW

    def _subscribe_seen(self, data: bytes, now: float) -> None:
        # The branch of the first Via line and the tag of the first To line, each searched
        # for within its line's bounds (no copy of the line).
        branch = b""
        start = data.find(b"\r\nVia:") + 2
        if start >= 2:
            match = _BRANCH.search(data, start, _line_end(data, start))
            if match is not None:
                branch = match.group(1)
        if branch in self._branches_now or branch in self._branches_old:
            self.subscribe_retransmissions += 1
            return
        self._branches_now.add(branch)
        start = data.find(b"\r\nTo:") + 2
        if start < 2 or data.find(b";tag=", start, _line_end(data, start)) < 0:
            self.initial_subscribes += 1

    def subscription_started(self, record: str, now: float) -> float:
        """Count a new subscription to ``record``; returns the change it has seen (the
        record's latest so far), for ``seen``."""
        self.advance(now)
        self._subscriptions += 1
        self.subscribe_calls += 1
        return self._last_change.get(record, NO_CHANGE_SEEN)

    def subscription_ended(self, now: float) -> None:
        self.advance(now)
        self._subscriptions -= 1
        self.unsubscribe_calls += 1

    def dialog_live(self, notifier: str, delta: int, now: float) -> None:
        self.advance(now)
        self._live_by_notifier[notifier] += delta
        if self._up.get(notifier, True):
            self._live_now += delta

    def notifier_up(self, notifier: str, up: bool, now: float) -> None:
        self.advance(now)
        self._up[notifier] = up
        self._live_now = self._live()

    def presence_changed(self, record: str, now: float) -> None:
        self._last_change[record] = now

    def delivered(self, sid: int, record: str, status: str, now: float) -> None:
        self.deliveries[status] += 1
        if not self._delivery_start <= now < self._delivery_end:
            self._delivery_minute(now)
        self._delivery_bin.deliveries += 1
        if status not in ("active", "pending"):
            return
        change = self._last_change.get(record)
        if change is not None and self.seen.see_change(sid, change):
            self.delays.append(now - change)

    def _delivery_minute(self, now: float) -> None:
        """The minute bin ``now`` falls in and its span, for ``delivered``: worked out once
        per minute with a delivery, not per delivery (a call, an int() and a division less
        each). ``int(now // BIN_SECONDS)`` is the bin whose span holds ``now``."""
        index = int(now // BIN_SECONDS)
        self._delivery_bin = self._bin(index)
        self._delivery_start = float(index * BIN_SECONDS)
        self._delivery_end = float((index + 1) * BIN_SECONDS)

    # -- shards -----------------------------------------------------------------------------

    def state(self) -> MetricsState:
        """The raw figures (call ``advance(now)`` first to close the integrals)."""
        self._fold()
        return MetricsState(
            dict(self._traffic),
            list(self._per_second),
            {i: (b.deliveries, b.live_area, b.subs_area) for i, b in sorted(self.bins.items())},
            dict(self.deliveries),
            self.delays,
            self.subscribe_retransmissions,
            self.initial_subscribes,
            self.subscribe_calls,
            self.unsubscribe_calls,
            self.live_area,
            self.subs_area,
        )

    @classmethod
    def merged(cls, duration: float, states: list[MetricsState]) -> Metrics:
        """Metrics whose results are those of the union of the runs: counts summed, time
        series added bin by bin, integrals added (availability = live time / subscription
        time over every shard), delay samples concatenated. Sums run in list order, so the
        same list gives the same floats; one state gives back its own results exactly."""
        merged = cls(duration)
        traffic = merged._traffic
        per_second = merged._per_second
        for state in states:
            for key, count in state.traffic.items():
                traffic[key] = traffic.get(key, 0) + count
            if len(state.per_second) > len(per_second):
                per_second.extend([0] * (len(state.per_second) - len(per_second)))
            for second, count in enumerate(state.per_second):
                per_second[second] += count
            for index, (deliveries, live, subs) in state.bins.items():
                b = merged._bin(index)
                b.deliveries += deliveries
                b.live_area += live
                b.subs_area += subs
            merged.deliveries.update(state.deliveries)
            merged.delays.extend(state.delays)
            merged.subscribe_retransmissions += state.subscribe_retransmissions
            merged.initial_subscribes += state.initial_subscribes
            merged.subscribe_calls += state.subscribe_calls
            merged.unsubscribe_calls += state.unsubscribe_calls
            merged.live_area += state.live_area
            merged.subs_area += state.subs_area
        return merged

    # -- results ----------------------------------------------------------------------------

    def timeseries_rows(self) -> list[dict[str, Any]]:
        columns = ["SUBSCRIBE", "NOTIFY", "1xx", "2xx", "3xx", "4xx", "5xx", "6xx"]
        rows = []
        last = int(max(self.duration - 1e-9, 0) // BIN_SECONDS)
        minutes = self._minute_messages()
        empty: Counter[str] = Counter()
        for index in range(last + 1):
            b = self.bins.get(index, _Bin())
            messages = minutes.get(index, empty)
            row: dict[str, Any] = {"minute": index}
            for column in columns:
                row[column.lower()] = messages.get(column, 0)
            row["other"] = sum(v for k, v in messages.items() if k not in columns)
            row["deliveries"] = b.deliveries
            row["availability"] = round(b.live_area / b.subs_area, 6) if b.subs_area else ""
            row["subscriptions"] = round(b.subs_area / BIN_SECONDS, 3)
            rows.append(row)
        return rows

    def summary(self) -> dict[str, Any]:
        requests, responses = self._by_label()
        total = sum(requests.values()) + sum(responses.values())
        peak_second = max(self._per_second, default=0)
        delays = self.delays
        return {
            "messages": {
                "total": total,
                "requests": dict(sorted(requests.items())),
                "responses": dict(sorted(responses.items())),
                "by_fate": dict(sorted(self.fates.items())),
            },
            "rates": {
                "mean_messages_per_second": total / self.duration if self.duration else 0.0,
                "peak_messages_per_second": peak_second,
                "peak_messages_per_minute": max(
                    (sum(m.values()) for m in self._minute_messages().values()), default=0
                ),
            },
            "status_deliveries": dict(sorted(self.deliveries.items())),
            "availability": self.live_area / self.subs_area if self.subs_area else None,
            "propagation_delay_seconds": {
                "count": len(delays),
                "p50": percentile(delays, 50),
                "p95": percentile(delays, 95),
                "p99": percentile(delays, 99),
                "max": max(delays) if delays else None,
            },
            "retries": {
                "subscribe_retransmissions": self.subscribe_retransmissions,
                "initial_subscribes": self.initial_subscribes,
                "new_dialog_retries": max(0, self.initial_subscribes - self.subscribe_calls),
            },
            "internal_subscriptions": {
                "subscribe_calls": self.subscribe_calls,
                "unsubscribe_calls": self.unsubscribe_calls,
            },
        }
