"""The runtime with `transports: udp,tcp` over real loopback sockets: a SUBSCRIBE to a
`transport=tcp` next hop, or one over 1,300 bytes, goes over TCP, the notifier answers and
sends its NOTIFY on the same connection, the agent answers there (and on a connection the
notifier opens to its listener); subscriptions to one destination share a connection; a
connection lost under a SUBSCRIBE fails it at once (as a 503, RFC 3261 §8.1.3.1, not at
Timer F 32 s later) and the subscription subscribes again. The notifier is the project's own
TcpTransport."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable

import pytest

from reference import AgentConfig, StatusMessage
from reference.effects import Address
from reference.pidf import build_pidf
from reference.sip import Request, Response, make_response, parse_message
from reference.tcp import TcpTransport
from reference.udp import UdpRuntime
from tests.reference.test_udp import run

RECORD = "sip:alice@lab.test"


async def until(condition: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        await asyncio.sleep(0.01)


class TcpNotifier:
    """Answers SUBSCRIBE 200 and sends an active NOTIFY on the same connection (or, with
    `drop`, closes the connection instead of answering)."""

    def __init__(self, *, drop: bool = False) -> None:
        self.drop = drop
        self.requests: list[tuple[Request, Address]] = []
        self.responses: list[Response] = []
        self.transport = TcpTransport(self._message, lambda peer: None)

    def _message(self, data: bytes, peer: Address) -> None:
        message = parse_message(data)
        if isinstance(message, Response):
            self.responses.append(message)
            return
        self.requests.append((message, peer))
        if self.drop:
            self.transport.connections[peer].close()
            return
        answer = make_response(message, 200, to_tag="n1", headers=[
            ("Expires", "600"), ("Contact", "<sip:127.0.0.1:1;transport=tcp>")])
        self.transport.send(answer.to_bytes(), peer)
        body = build_pidf(RECORD, basic="open")
        notify = (
            "NOTIFY sip:agent@127.0.0.1 SIP/2.0\r\n"
            "Via: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKn1\r\nMax-Forwards: 70\r\n"
            f"From: <{RECORD}>;tag=n1\r\nTo: {message.headers.get('From')}\r\n"
            f"Call-ID: {message.call_id}\r\nCSeq: 1 NOTIFY\r\n"
            "Contact: <sip:127.0.0.1:1;transport=tcp>\r\nEvent: presence\r\n"
            "Subscription-State: active;expires=600\r\nContent-Type: application/pidf+xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        self.transport.send(notify, peer)


async def start(drop: bool = False) -> tuple[UdpRuntime, TcpNotifier, list[StatusMessage]]:
    notifier = TcpNotifier(drop=drop)
    address = await notifier.transport.listen()
    config = AgentConfig(profile="rfc6665", transports="udp,tcp",
                         presence_route=f"<sip:127.0.0.1:{address[1]};lr;transport=tcp>")
    runtime = await UdpRuntime.open(config, "127.0.0.1", 0)
    statuses: list[StatusMessage] = []
    runtime.add_listener("t", statuses.append)
    return runtime, notifier, statuses


# Every test here runs on both event loops (tests/event_loops.py).
pytestmark = pytest.mark.usefixtures("loop_name")


def test_subscription_over_tcp_end_to_end() -> None:
    async def scenario() -> None:
        runtime, notifier, statuses = await start()
        assert runtime.tcp is not None and runtime.tcp.local_address == runtime.local_address
        runtime.subscribe(RECORD, "sip:bob@lab.test", "t")
        await until(lambda: statuses and notifier.responses, what="status and 200")
        [(subscribe, _peer)] = notifier.requests
        assert subscribe.vias[0].transport == "TCP"
        assert (subscribe.headers.get("Contact") or "").endswith(";transport=tcp>")
        assert statuses[0].status == "active" and statuses[0].document is not None
        assert notifier.responses[0].status == 200  # the NOTIFY's answer, same connection
        tcp = runtime.stats()["tcp"]
        assert tcp["connected"] == 1 and tcp["accepted"] == 0
        assert notifier.transport.counters.accepted == 1
        runtime.close()
        notifier.transport.close()
    run(scenario())


def test_connection_lost_under_a_subscribe_fails_it_at_once() -> None:
    async def scenario() -> None:
        runtime, notifier, statuses = await start(drop=True)
        loop = asyncio.get_running_loop()
        started = loop.time()
        runtime.subscribe(RECORD, "sip:bob@lab.test", "t")
        await until(lambda: bool(statuses), what="the failure")
        assert loop.time() - started < 5  # not Timer F's 32 s
        assert (statuses[0].status, statuses[0].reason) == ("terminated", "503")
        assert runtime.agent.counters["tx.transport_lost"] == 1
        runtime.close()
        notifier.transport.close()
    run(scenario())


# --- issue 17 audit: the runtime's half of RFC 3261 §18 on real sockets -------------------


class UdpTrap(asyncio.DatagramProtocol):
    """A UDP socket on the notifier's port that only records what arrives there."""

    def __init__(self) -> None:
        self.datagrams: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.datagrams.append(data)


def test_an_oversize_subscribe_to_a_udp_next_hop_goes_over_tcp_to_its_port() -> None:
    """RFC 3261 §18.1.1: the route names no transport, the SUBSCRIBE is over 1,300 bytes:
    it goes over TCP to the same host and port, nothing reaches the UDP socket there."""
    async def scenario() -> None:
        notifier = TcpNotifier()
        host, port = await notifier.transport.listen()
        loop = asyncio.get_running_loop()
        udp, trap = await loop.create_datagram_endpoint(UdpTrap, local_addr=(host, port))
        config = AgentConfig(profile="rfc6665", transports="udp,tcp",
                             presence_route=f"<sip:{host}:{port};lr>",
                             additional_presence_headers="X-Pad: " + "p" * 1400)
        runtime = await UdpRuntime.open(config, "127.0.0.1", 0)
        statuses: list[StatusMessage] = []
        runtime.add_listener("t", statuses.append)
        runtime.subscribe(RECORD, "sip:bob@lab.test", "t")
        await until(lambda: bool(statuses and notifier.responses), what="status and 200")
        [(subscribe, _peer)] = notifier.requests
        assert len(subscribe.to_bytes()) > 1300
        assert subscribe.vias[0].transport == "TCP"
        assert (subscribe.headers.get("Contact") or "").endswith(";transport=tcp>")
        assert statuses[0].status == "active" and trap.datagrams == []
        assert runtime.agent.counters["tx.oversize_to_tcp"] == 1
        runtime.close()
        notifier.transport.close()
        udp.close()
    run(scenario())


def test_a_notify_on_a_connection_the_notifier_opens_is_answered_on_it() -> None:
    """RFC 3261 §18 / §18.2.2: the agent listens on TCP at its Contact address; a NOTIFY the
    notifier sends on a new connection (the first one closed) is answered on that one."""
    async def scenario() -> None:
        runtime, notifier, statuses = await start()
        runtime.subscribe(RECORD, "sip:bob@lab.test", "t")
        await until(lambda: bool(statuses and notifier.responses), what="status and 200")
        [(subscribe, peer)] = notifier.requests
        notifier.transport.connections[peer].close()
        await until(lambda: not notifier.transport.connections, what="the close")
        agent_tcp = runtime.tcp
        assert agent_tcp is not None
        await until(lambda: not agent_tcp.connections, what="the agent's side of the close")
        body = build_pidf(RECORD, basic="closed")
        notify = (
            f"NOTIFY sip:agent@{runtime.local_address[0]} SIP/2.0\r\n"
            "Via: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKn2\r\nMax-Forwards: 70\r\n"
            f"From: <{RECORD}>;tag=n1\r\nTo: {subscribe.headers.get('From')}\r\n"
            f"Call-ID: {subscribe.call_id}\r\nCSeq: 2 NOTIFY\r\n"
            "Contact: <sip:127.0.0.1:1;transport=tcp>\r\nEvent: presence\r\n"
            "Subscription-State: active;expires=600\r\nContent-Type: application/pidf+xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        notifier.transport.send(notify, runtime.local_address)
        await until(lambda: len(notifier.responses) == 2, what="the 200 on the new connection")
        assert notifier.responses[1].status == 200
        assert runtime.stats()["tcp"]["accepted"] == 1
        assert statuses[-1].document is not None and statuses[-1].document.basic == "closed"
        runtime.close()
        notifier.transport.close()
    run(scenario())


def test_a_subscription_whose_connection_is_lost_subscribes_again() -> None:
    """Connection loss under a SUBSCRIBE fails it like a timeout; the retry rules then send a
    new SUBSCRIBE, over a new connection (real sockets, not the core harness)."""
    async def scenario() -> None:
        notifier = TcpNotifier(drop=True)
        address = await notifier.transport.listen()
        config = AgentConfig(profile="rfc6665", transports="udp,tcp", on_error_retry_time=1,
                             presence_route=f"<sip:127.0.0.1:{address[1]};lr;transport=tcp>")
        runtime = await UdpRuntime.open(config, "127.0.0.1", 0)
        statuses: list[StatusMessage] = []
        runtime.add_listener("t", statuses.append)
        runtime.subscribe(RECORD, "sip:bob@lab.test", "t")
        await until(lambda: bool(statuses), what="the failure")
        assert statuses[0].retry_at is not None
        notifier.drop = False
        await until(lambda: len(notifier.requests) == 2, timeout=10, what="the new SUBSCRIBE")
        await until(lambda: statuses[-1].status == "active", what="the retried subscription")
        assert notifier.transport.counters.accepted == 2
        runtime.close()
        notifier.transport.close()
    run(scenario())


def test_subscriptions_to_one_destination_share_one_connection() -> None:
    """RFC 3261 §18: connections are kept per destination and reused by later requests."""
    async def scenario() -> None:
        runtime, notifier, statuses = await start()
        runtime.subscribe(RECORD, "sip:bob@lab.test", "t")
        await until(lambda: len(statuses) == 1, what="the first subscription")
        runtime.subscribe("sip:carol@lab.test", "sip:bob@lab.test", "t")
        await until(lambda: len(statuses) == 2, what="the second subscription")
        assert len(notifier.requests) == 2
        assert notifier.requests[0][1] == notifier.requests[1][1]  # the same source port
        assert runtime.stats()["tcp"]["connected"] == 1
        assert notifier.transport.counters.accepted == 1
        runtime.close()
        notifier.transport.close()
    run(scenario())


def test_port_0_tries_another_pair_when_the_tcp_twin_is_taken(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The UDP port the OS picks for port 0 may be taken on TCP: `open` closes that attempt
    and binds another pair; a port asked for by number is not moved."""
    from reference import tcp

    real_listen = tcp.TcpTransport.listen
    refused: list[int] = []
    listened: list[int] = []

    async def listen_taken_once(self: tcp.TcpTransport, host: str = "127.0.0.1",
                                port: int = 0) -> tuple[str, int]:
        listened.append(port)
        if not refused:
            refused.append(port)
            raise OSError(errno.EADDRINUSE, "address already in use")
        return await real_listen(self, host, port)

    monkeypatch.setattr(tcp.TcpTransport, "listen", listen_taken_once)
    config = AgentConfig(profile="rfc6665", transports="udp,tcp")

    async def scenario() -> None:
        runtime = await UdpRuntime.open(config, "127.0.0.1", 0)
        try:
            assert runtime.tcp is not None and runtime.tcp.local_address is not None
            bound = runtime.tcp.local_address[1]
            # At least one more attempt; on a busy machine a real collision may add others.
            assert len(listened) >= 2 and listened[-1] == bound
            if bound != refused[0]:
                # The refused attempt's UDP socket was closed: its port binds again.
                probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                probe.bind(("127.0.0.1", refused[0]))
                probe.close()
        finally:
            runtime.close()
        refused.clear()
        with pytest.raises(OSError):
            await UdpRuntime.open(config, "127.0.0.1", bound)
        assert refused == [bound]

    run(scenario())
