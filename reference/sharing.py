"""Shared subscriptions (`share_subscriptions=1`, rfc6665 only; issue 18).

Rules of this file:
* Internal subscriptions with the same (record, subscriber, package) share one SIP dialog:
  the first one's subscription sends the SUBSCRIBEs, later ones join it as members. Every
  member gets every status message, with its own handle, destination and subscriber data.
* A member that joins a live subscription gets its last status message at once (the current
  state; a failure with its retry time while one is being recovered from).
* Unsubscribing a member removes it; only the last member's unsubscribe reaches the table
  (DESTROY: an unsubscribe SUBSCRIBE as usual). A subscription being destroyed, or a fetch,
  is never joined: a new subscribe then starts a dialog of its own.
* Bounds (docs/limits.md): members per dialog `MAX_MEMBERS`; every member counts against
  `max_subscriptions` like a subscription of its own.
The agent owns the index and calls these functions; nothing here reads time or randomness.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from reference.qsa import StatusMessage

SharingKey = tuple[str, str, str]  # (record, subscriber, package)
MAX_MEMBERS = 10_000


@dataclass(slots=True)
class Member:
    """One internal subscription of a shared dialog."""

    handle: int
    destination: str
    subscriber_data: Any


class SharingIndex:
    """Which subscription (by its handle) serves a key, and which handle belongs to which
    subscription (joined handles only: a subscription's own handle is its key)."""

    def __init__(self) -> None:
        self._by_key: dict[SharingKey, int] = {}
        self._owner: dict[int, int] = {}

    def serving(self, key: SharingKey) -> int | None:
        return self._by_key.get(key)

    def register(self, key: SharingKey, handle: int) -> None:
        self._by_key[key] = handle

    def withdraw(self, key: SharingKey, handle: int) -> None:
        """The subscription stops serving new joiners (it is ending)."""
        if self._by_key.get(key) == handle:
            del self._by_key[key]

    def join(self, member: int, handle: int) -> None:
        self._owner[member] = handle

    def owner_of(self, member: int) -> int | None:
        return self._owner.get(member)

    def leave(self, member: int) -> None:
        self._owner.pop(member, None)

    @property
    def joined(self) -> int:
        """Handles that joined another subscription's dialog."""
        return len(self._owner)


def copies(message: StatusMessage, members: list[Member]) -> list[tuple[str, StatusMessage]]:
    """The message once per member: (destination, the message with its handle and data)."""
    return [(m.destination, dataclasses.replace(message, handle=m.handle,
                                                subscriber_data=m.subscriber_data))
            for m in members]
