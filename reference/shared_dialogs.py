"""Joining and leaving a shared dialog (`share_subscriptions=1`, rfc6665 only; issue 18).

Rules of this file:
* These are the QSA side of `reference.sharing`: the agent facade calls them on subscribe,
  unsubscribe and handle lookups; the rules of sharing itself are stated in that module.
* A joiner gets the current state (the subscription's last status message) at once, as a
  `Deliver` effect; nothing here sends SIP or arms timers.
* Every change is counted and traced, like every other QSA input.
"""

from __future__ import annotations

from typing import Any

from reference.core import Core, Subscription
from reference.effects import Deliver
from reference.sharing import MAX_MEMBERS, Member, SharingKey


def join(core: Core, key: SharingKey, handle: int, destination: str,
         subscriber_data: Any) -> bool:
    """Join the live subscription serving `key`, if there is one that takes members."""
    serving = core.sharing.serving(key)
    sub = core.subscriptions.get(serving) if serving is not None else None
    if sub is None or sub.unsubscribed or \
            (sub.members is not None and len(sub.members) >= MAX_MEMBERS):
        return False
    if sub.members is None:
        sub.members = [Member(sub.handle, sub.destination, sub.subscriber_data)]
    sub.members.append(Member(handle, destination, subscriber_data))
    core.sharing.join(handle, sub.handle)
    core.count("qsa.shared_join")
    core.trace("share", sub, joined=handle, members=len(sub.members))
    if sub.last_status is not None:
        core.count("qsa.delivered")
        core.effects.append(Deliver(destination, core.current_state(
            sub, handle, subscriber_data)))
    return True


def subscription_of(core: Core, handle: int) -> Subscription | None:
    """The subscription an internal handle belongs to (its own or a shared one)."""
    sub = core.subscriptions.get(handle)
    if sub is not None and (sub.members is None
                            or any(m.handle == handle for m in sub.members)):
        return sub
    owner = core.sharing.owner_of(handle)
    return core.subscriptions.get(owner) if owner is not None else None


def leave(core: Core, sub: Subscription, handle: int) -> bool:
    """`handle` leaves `sub`. True when other members remain (the dialog stays); False when
    it was the last one: the dialog stops serving joiners and is for the caller to end."""
    if sub.members is not None:
        core.sharing.leave(handle)
        if len(sub.members) > 1:
            sub.members = [m for m in sub.members if m.handle != handle]
            core.count("qsa.shared_leave")
            core.trace("share", sub, left=handle, members=len(sub.members))
            return True
    core.sharing.withdraw((sub.record, sub.subscriber, sub.package), sub.handle)
    return False
