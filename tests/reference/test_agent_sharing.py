"""share_subscriptions (issue 18): one dialog per (record, subscriber, package), every
member informed, the last one ends it."""

from __future__ import annotations

import pytest

from reference import Agent, AgentConfig
from reference.sharing import MAX_MEMBERS
from tests.reference.harness import RECORD, SUBSCRIBER, Harness


def _shared(**params: object) -> Harness:
    return Harness.make("rfc6665", share_subscriptions=1, **params)


def test_second_subscriber_joins_and_gets_the_current_state_at_once() -> None:
    h = _shared()
    first = h.confirmed()
    assert [m.handle for m in h.delivered] == [first]
    second = h.subscribe()
    assert second != first and len(h.subscribes()) == 1
    assert [m.handle for m in h.delivered] == [first, second]
    assert h.delivered[1].document == h.delivered[0].document
    h.notify(state="active;expires=600", basic="closed")
    assert [(m.handle, m.document.basic if m.document else None)
            for m in h.delivered[2:]] == [(first, "closed"), (second, "closed")]
    assert h.agent.subscription_count == 1 and h.agent.internal_subscription_count == 2
    assert h.agent.dump()[0]["members"] == [first, second]


def test_other_subscriber_or_record_gets_its_own_dialog() -> None:
    h = _shared()
    h.subscribe()
    h.subscribe(subscriber="sip:carol@lab.test")
    h.subscribe(record="sip:dave@lab.test")
    assert len(h.subscribes()) == 3


def test_leaving_keeps_the_dialog_the_last_one_ends_it() -> None:
    h = _shared()
    first = h.confirmed()
    second = h.subscribe()
    h.unsubscribe(first)
    assert len(h.subscribes()) == 1 and h.agent.has_subscription(second)
    assert not h.agent.has_subscription(first)
    h.unsubscribe(first)  # again: unknown now
    assert h.agent.counters["qsa.unsubscribe_unknown"] == 1
    h.notify(state="active;expires=600", basic="closed")
    assert h.delivered[-1].handle == second
    h.unsubscribe(second)
    assert h.last_subscribe().expires == 0
    # Once the dialog is ending, a new subscribe starts a dialog of its own.
    third = h.subscribe()
    assert h.last_subscribe().to.tag is None and h.agent.subscription_count == 2
    assert h.agent.has_subscription(third)


def test_failure_reaches_every_member() -> None:
    h = _shared()
    first = h.subscribe()
    second = h.subscribe()
    h.respond(status=403, to_tag=None)
    assert [(m.handle, m.status) for m in h.delivered] == [(first, "rejected"),
                                                            (second, "rejected")]
    # A member joining while the failure is being recovered from hears about it at once.
    third = h.subscribe()
    assert (h.delivered[-1].handle, h.delivered[-1].status) == (third, "rejected")


def test_close_ends_shared_dialogs() -> None:
    h = _shared()
    h.confirmed()
    h.subscribe()
    h.close()
    assert h.last_subscribe().expires == 0


def test_members_count_against_max_subscriptions() -> None:
    agent = Agent(AgentConfig(share_subscriptions=1, max_subscriptions=2))
    agent.subscribe(RECORD, SUBSCRIBER, "q", now=0.0)
    agent.subscribe(RECORD, SUBSCRIBER, "q", now=0.0)
    with pytest.raises(ValueError, match="max_subscriptions"):
        agent.subscribe(RECORD, SUBSCRIBER, "q", now=0.0)
    assert MAX_MEMBERS >= 1000


def test_sharing_off_by_default() -> None:
    h = Harness.make("rfc6665")
    h.subscribe()
    h.subscribe()
    assert len(h.subscribes()) == 2
