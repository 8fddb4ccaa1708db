"""QSA, the internal API: status messages and the per-destination message queue.

A `StatusMessage` is what an internal subscriber learns about its subscription: one per
accepted NOTIFY (`reg`: one per registration it changed; `presence-list`: one per resource
it changed), and (in the `rfc6665` profile) one whenever the agent takes the
subscription out of service. `MessageQueue` is the FIFO a consumer pops from.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from reference.pidf import PresenceDocument
from reference.reginfo import Registration


@dataclass(frozen=True)
class StatusMessage:
    """One status report for an internal subscription (DESIGN §4)."""

    handle: int
    record: str
    subscriber: str
    package: str
    status: str
    document: PresenceDocument | None = None
    body: bytes = b""
    content_type: str | None = None
    reason: str | None = None
    retry_at: float | None = None
    subscriber_data: Any = None
    at: float = 0.0
    # How many earlier messages of this subscription a full queue replaced by this one.
    superseded: int = 0
    # Package `presence-list` (RFC 4662): the list and the resource this message is about
    # (one message per changed resource; `status` is that resource's instance state).
    list_uri: str | None = None
    resource: str | None = None
    # Package `reg` (RFC 3680): one message per registration (AOR) a NOTIFY changed, with
    # its state and contacts (state, event, expires, q, uri).
    registration: Registration | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-safe form (control protocol, traces)."""
        return {
            "handle": self.handle,
            "record": self.record,
            "subscriber": self.subscriber,
            "package": self.package,
            "status": self.status,
            "reason": self.reason,
            "retry_at": self.retry_at,
            "content_type": self.content_type,
            "body": self.body.decode("utf-8", "replace"),
            "document": self.document.to_json() if self.document is not None else None,
            "at": self.at,
            "superseded": self.superseded,
            **({} if self.list_uri is None else {"list_uri": self.list_uri,
                                                 "resource": self.resource}),
            **({} if self.registration is None
               else {"registration": self.registration.to_json()}),
        }


@dataclass
class QueueStats:
    delivered: int = 0
    popped: int = 0
    # Messages replaced by a later message of the same subscription because the queue was full.
    superseded: int = 0
    # Times the queue went beyond its bound because every queued message was the only
    # (latest) one of its subscription: then nothing may be dropped.
    over_bound: int = 0


@dataclass
class MessageQueue:
    """FIFO of status messages for one destination, bounded without silent loss.

    At the bound, a new message first replaces the oldest queued message *of the same
    subscription* (the newer state supersedes it); failing that, the oldest message of any
    subscription that has a newer one queued. The surviving message's `superseded` count
    tells the consumer how many states it missed. Only when every queued message is the sole
    latest state of its subscription does the queue grow past the bound (counted in
    `stats.over_bound`): the latest state of a subscription is never dropped.
    """

    bound: int = 10000
    _items: deque[StatusMessage] = field(default_factory=deque)
    _per_handle: dict[int, int] = field(default_factory=dict)
    stats: QueueStats = field(default_factory=QueueStats)

    def put(self, message: StatusMessage) -> None:
        if len(self._items) >= self.bound:
            message = self._make_room(message)
        self._items.append(message)
        self._per_handle[message.handle] = self._per_handle.get(message.handle, 0) + 1
        self.stats.delivered += 1

    def pop(self) -> StatusMessage | None:
        """The oldest message, or None when empty."""
        if not self._items:
            return None
        message = self._items.popleft()
        self._forget(message.handle)
        self.stats.popped += 1
        return message

    def pop_all(self) -> list[StatusMessage]:
        out: list[StatusMessage] = []
        while (message := self.pop()) is not None:
            out.append(message)
        return out

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[StatusMessage]:
        return iter(list(self._items))

    def _forget(self, handle: int) -> None:
        left = self._per_handle[handle] - 1
        if left:
            self._per_handle[handle] = left
        else:
            del self._per_handle[handle]

    def _make_room(self, incoming: StatusMessage) -> StatusMessage:
        victim_handle: int | None = None
        if incoming.handle in self._per_handle:
            victim_handle = incoming.handle
        else:
            for queued in self._items:
                if self._per_handle[queued.handle] > 1:
                    victim_handle = queued.handle
                    break
        if victim_handle is None:
            self.stats.over_bound += 1
            return incoming
        for index, queued in enumerate(self._items):
            if queued.handle == victim_handle:
                del self._items[index]
                self._forget(victim_handle)
                self.stats.superseded += 1
                carried = queued.superseded + 1
                if victim_handle == incoming.handle:
                    return dataclasses.replace(
                        incoming, superseded=incoming.superseded + carried)
                self._carry_to_next(victim_handle, index, carried)
                return incoming
        raise AssertionError("queue index out of step")  # pragma: no cover

    def _carry_to_next(self, handle: int, start: int, carried: int) -> None:
        for index in range(start, len(self._items)):
            queued = self._items[index]
            if queued.handle == handle:
                self._items[index] = dataclasses.replace(
                    queued, superseded=queued.superseded + carried)
                return
