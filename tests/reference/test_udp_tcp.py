"""The runtime with `transports: udp,tcp` over real loopback sockets: a SUBSCRIBE to a
`transport=tcp` next hop goes over TCP, the notifier answers and sends its NOTIFY on the same
connection, the agent answers there; a connection lost under a SUBSCRIBE fails it at once
(as a 503, RFC 3261 §8.1.3.1, not at Timer F 32 s later). The notifier is the project's own
TcpTransport."""

from __future__ import annotations

import asyncio
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
