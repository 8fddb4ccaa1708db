"""RFC 3261 §18 in the core: which transport a SUBSCRIBE takes (next hop transport=tcp, or
larger than udp_max_bytes), Via and Contact, no retransmission and Timer K = 0 over TCP,
answers on the connection a NOTIFY came on, and a lost connection failing as a locally
generated 503."""

from __future__ import annotations

import pytest

from reference.config import AgentConfig, ConfigError
from reference.timers import TimerKind
from tests.reference.harness import PEER, Harness

TCP_RECORD = "sip:bob@lab.test;transport=tcp"


def tcp_harness(**params: object) -> Harness:
    return Harness.make("rfc6665", transports="udp,tcp", **params)


def test_next_hop_transport_tcp_sends_over_tcp_with_tcp_via_and_contact() -> None:
    h = tcp_harness()
    h.subscribe(TCP_RECORD)
    [sent] = h.sent
    assert sent.transport == "tcp"
    request = h.last_subscribe()
    assert request.vias[0].transport == "TCP"
    assert request.headers.get("Contact") == "<sip:127.0.0.1:5060;transport=tcp>"


def test_without_tcp_configured_everything_stays_udp() -> None:
    h = Harness.make("rfc6665")
    h.subscribe(TCP_RECORD)
    assert [s.transport for s in h.sent] == ["udp"]
    assert h.last_subscribe().vias[0].transport == "UDP"


def test_a_request_larger_than_udp_max_bytes_goes_over_tcp() -> None:
    big = "X-Pad: " + "p" * 1400
    h = tcp_harness(additional_presence_headers=big)
    h.subscribe()
    request = h.last_subscribe()
    assert h.sent[-1].transport == "tcp" and len(h.sent[-1].data) > 1300
    assert request.vias[0].transport == "TCP"
    assert (request.headers.get("Contact") or "").endswith(";transport=tcp>")
    assert h.agent.counters["tx.oversize_to_tcp"] == 1
    small = tcp_harness()
    small.subscribe()
    assert small.sent[-1].transport == "udp"


def test_no_retransmission_over_tcp_and_timer_f_still_times_out() -> None:
    h = tcp_harness()
    h.subscribe(TCP_RECORD)
    kinds = {key.name for key in h.timers if key.kind is TimerKind.CLIENT_TX}
    assert kinds == {"F"}  # Timer E is not armed on a reliable transport
    h.advance_by(31.0)
    assert len(h.sent) == 1
    h.advance_by(2.0)  # 64*T1 = 32 s
    assert h.delivered[-1].status == "terminated" and h.delivered[-1].reason == "timeout"


def test_timer_k_is_zero_over_tcp() -> None:
    h = tcp_harness()
    h.subscribe(TCP_RECORD)
    h.respond(expires=600)
    assert not [k for k in h.timers if k.kind is TimerKind.CLIENT_TX]
    assert h.agent.transaction_count == 0


def test_notify_over_tcp_is_answered_on_its_connection_without_timer_j() -> None:
    h = tcp_harness()
    h.subscribe(TCP_RECORD)
    h.respond(expires=600)
    connection = ("127.0.0.1", 40001)  # the notifier's ephemeral port, not its Via port
    h.feed(h.notify_bytes(), source=connection, transport="tcp")
    answer = h.sent[-1]
    assert (answer.message.status, answer.destination, answer.transport) == (  # type: ignore[union-attr]
        200, connection, "tcp")
    assert not h.agent.ua.servers  # reliable: the server transaction ended with its answer


def test_lost_connection_fails_the_transaction_as_a_503_and_retries() -> None:
    h = tcp_harness()
    h.subscribe(TCP_RECORD)
    destination = h.sent[-1].destination
    h.agent.transport_lost(("127.0.0.1", 1), now=h.now)  # another peer: nothing happens
    h.absorb()
    assert not h.delivered
    h.agent.transport_lost(destination, now=h.now)
    h.absorb()
    failure = h.delivered[-1]
    # RFC 3261 §8.1.3.1 (TCP-007): a transport error is treated as a 503.
    assert (failure.status, failure.reason) == ("terminated", "503")
    assert failure.retry_at is not None and h.agent.counters["tx.transport_lost"] == 1
    h.advance(failure.retry_at)
    assert len(h.subscribes()) == 2 and h.sent[-1].transport == "tcp"


def test_udp_transactions_ignore_a_lost_connection() -> None:
    h = tcp_harness()
    h.subscribe()
    h.agent.transport_lost(PEER, now=h.now)
    h.absorb()
    assert not h.delivered and h.agent.transaction_count == 1


@pytest.mark.parametrize("value", ["tcp", "udp,udp", "udp,sctp", ""])
def test_transports_must_be_udp_or_udp_tcp(value: str) -> None:
    with pytest.raises(ConfigError, match="transports must be"):
        AgentConfig(transports=value).validate()
