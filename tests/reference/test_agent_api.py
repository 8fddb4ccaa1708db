"""The agent's public API: subscribe/unsubscribe arguments, effects order, introspection."""

from __future__ import annotations

import pytest

from reference import Agent, AgentConfig, Deliver, Send

from .harness import RECORD, Harness


@pytest.mark.parametrize("profile", ["ser", "rfc6665"])
def test_record_in_angle_brackets_is_stripped(profile: str) -> None:
    h = Harness.make(profile)
    h.subscribe(record=f"<{RECORD}>")
    assert h.last_subscribe().uri == RECORD


@pytest.mark.parametrize("profile", ["ser", "rfc6665"])
def test_bad_subscribe_arguments(profile: str) -> None:
    agent = Agent(AgentConfig(profile=profile, max_subscriptions=1))
    with pytest.raises(ValueError, match="record"):
        agent.subscribe("not a uri", "sip:a@b", "q", now=0.0)
    with pytest.raises(ValueError, match="package"):
        agent.subscribe(RECORD, "sip:a@b", "q", package="dialog", now=0.0)
    agent.subscribe(RECORD, "sip:a@b", "q", now=0.0)
    with pytest.raises(ValueError, match="max_subscriptions"):
        agent.subscribe(RECORD, "sip:a@b", "q", now=0.0)


def test_handles_are_distinct_and_unknown_unsubscribe_is_ignored() -> None:
    h = Harness.make("rfc6665")
    assert [h.subscribe() for _ in range(3)] == [1, 2, 3]
    h.unsubscribe(99)
    assert h.agent.counters["qsa.unsubscribe_unknown"] == 1
    assert len(h.agent.subscriptions) == 3


@pytest.mark.parametrize("profile", ["ser", "rfc6665"])
def test_200_to_notify_goes_out_before_the_status_message(profile: str) -> None:
    """Spec A9: REPLY(200) first, then the QSA message."""
    h = Harness.make(profile)
    h.subscribe()
    h.respond()
    start = len(h.log)
    h.notify()
    kinds = [type(e) for e in h.log[start:] if isinstance(e, Send | Deliver)]
    assert kinds == [Send, Deliver]


@pytest.mark.parametrize(("profile", "state"), [("ser", "waiting"), ("rfc6665", "waiting")])
def test_sub134_2xx_without_to_tag_is_a_failure(profile: str, state: str) -> None:
    h = Harness.make(profile)
    h.subscribe()
    h.respond(to_tag=None)
    assert h.state() == state


def test_dump_and_counters() -> None:
    h = Harness.make("ser")
    h.subscribe()
    h.respond(expires=600)
    (row,) = h.agent.dump()
    assert row["state"] == "confirmed" and row["state_number"] == 2
    assert row["timer"] == "REFRESH" and row["timer_at"] == pytest.approx(570.0)
    assert row["call_id"] == h.last_subscribe().call_id
    assert h.agent.counters["subscribe.initial"] == 1
    assert h.agent.live_timer_count() == 1 and h.agent.dialog_count == 1


def test_trace_zero_emits_no_trace_events() -> None:
    h = Harness.make("rfc6665", trace=0)
    h.subscribe()
    h.respond()
    h.notify()
    assert h.log and not any(type(e).__name__ == "TraceEvent" for e in h.log)


def test_waking_an_agent_without_due_timers_changes_nothing() -> None:
    agent = Agent(AgentConfig())
    assert agent.next_deadline() is None
    assert agent.handle_timers(1.0) == 0
    assert [e for e in agent.drain_effects() if type(e).__name__ != "TraceEvent"] == []
    handle = agent.subscribe("sip:bob@lab.test", "sip:alice@lab.test", "q", now=0.0)
    first = agent.next_deadline()
    assert first is not None and first > 0.0
    assert agent.handle_timers(first - 0.001) == 0  # early: nothing is due yet
    assert agent.next_deadline() == first and handle in agent.subscriptions


def test_garbage_datagram_never_raises() -> None:
    h = Harness.make("rfc6665")
    h.subscribe()
    for data in (b"", b"\x00\xff", b"SIP/2.0 200 OK\r\n\r\n", b"NOTIFY x SIP/2.0\r\n\r\n"):
        h.feed(data)
    assert h.state() == "unconfirmed"


def test_public_queries_answer_what_the_runtime_and_control_protocol_need() -> None:
    h = Harness.make("rfc6665")
    handle = h.subscribe()
    assert h.agent.has_subscription(handle) and not h.agent.has_subscription(handle + 1)
    assert h.agent.subscription_count == 1
    stats = h.agent.stats()
    assert stats["subscriptions"] == 1 and stats["tx_subscribe"] == 1
    assert stats["live_timers"] == h.agent.armed_timers == len(h.timers) > 0
    h.feed(b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKo"
           b"\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: o1\r\n"
           b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\r\n")
    stats = h.agent.stats()
    assert stats["rx_requests_by_method"] == {"OPTIONS": 1}
    assert stats["tx_responses_by_status"] == {"200": 1}
    assert stats["counters"]["rx.request.OPTIONS"] == 1
