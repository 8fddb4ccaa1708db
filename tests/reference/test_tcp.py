"""The asyncio TCP transport on real loopback sockets: framing, answering on the incoming
connection, reuse, loss reporting and every limit."""

from __future__ import annotations

import asyncio
import socket

import pytest

from reference.effects import Address
from reference.tcp import TcpLimits, TcpTransport
from tests.reference.test_udp import run

# Every test here runs on both event loops (tests/event_loops.py).
pytestmark = pytest.mark.usefixtures("loop_name")


def message(tag: str, body: bytes = b"") -> bytes:
    return (f"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nCall-ID: {tag}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class Endpoint:
    def __init__(self, limits: TcpLimits | None = None) -> None:
        self.received: list[tuple[bytes, Address]] = []
        self.lost: list[Address] = []
        self.got = asyncio.Event()
        self.transport = TcpTransport(self._on_message, self._on_lost, limits=limits)

    def _on_message(self, data: bytes, peer: Address) -> None:
        self.received.append((data, peer))
        self.got.set()

    def _on_lost(self, peer: Address) -> None:
        self.lost.append(peer)
        self.got.set()

    async def wait(self, predicate: object, timeout: float = 5.0) -> None:
        async def until() -> None:
            while not predicate():  # type: ignore[operator]
                self.got.clear()
                await self.got.wait()
        await asyncio.wait_for(until(), timeout)


async def pair(**limits: float) -> tuple[Endpoint, Endpoint, Address]:
    agent, peer = Endpoint(TcpLimits(**limits)), Endpoint(TcpLimits(**limits))  # type: ignore[arg-type]
    await agent.transport.listen()
    address = await peer.transport.listen()
    return agent, peer, address


def test_a_request_is_answered_on_the_connection_it_came_on_and_reused() -> None:
    async def scenario() -> None:
        agent, peer, address = await pair()
        agent.transport.send(message("1", b"x" * 3000), address)
        agent.transport.send(message("2"), address)
        await peer.wait(lambda: len(peer.received) == 2)
        (first, source), (second, _) = peer.received
        assert first == message("1", b"x" * 3000) and second == message("2")
        peer.transport.send(message("answer"), source)  # the source: agent's ephemeral port
        await agent.wait(lambda: agent.received)
        assert agent.received[0] == (message("answer"), address)
        assert (agent.transport.counters.connected, peer.transport.counters.accepted) == (1, 1)
        assert peer.transport.counters.connected == 0  # no second connection was opened
        agent.transport.close()
        peer.transport.close()
    run(scenario())


def test_loss_of_a_connection_is_reported_once() -> None:
    async def scenario() -> None:
        agent, peer, address = await pair()
        agent.transport.send(message("1"), address)
        await peer.wait(lambda: peer.received)
        peer.transport.connections[peer.received[0][1]].close()
        await agent.wait(lambda: agent.lost)
        await asyncio.sleep(0.05)
        assert agent.lost == [address] and not agent.transport.has_connection(address)
        agent.transport.close()
        peer.transport.close()
    run(scenario())


def test_a_failed_connect_is_a_loss() -> None:
    async def scenario() -> None:
        agent = Endpoint()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        agent.transport.send(message("1"), ("127.0.0.1", closed_port))
        await agent.wait(lambda: agent.lost)
        assert agent.transport.counters.connect_failures == 1
        agent.transport.close()
    run(scenario())


def test_unframeable_bytes_close_the_connection() -> None:
    async def scenario() -> None:
        agent = Endpoint()
        address = await agent.transport.listen()
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b"OPTIONS sip:x@h SIP/2.0\r\nCall-ID: 1\r\n\r\n")  # no Content-Length
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the agent
        await agent.wait(lambda: agent.lost)
        assert agent.transport.counters.framing_errors == 1 and not agent.received
        writer.close()
        agent.transport.close()
    run(scenario())


def test_keepalive_ping_gets_a_pong() -> None:
    async def scenario() -> None:
        agent = Endpoint()
        address = await agent.transport.listen()
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b"\r\n\r\n")
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\r\n"
        writer.close()
        agent.transport.close()
    run(scenario())


def test_idle_connections_are_closed() -> None:
    async def scenario() -> None:
        agent, peer, address = await pair(idle_timeout=0.2)
        agent.transport.send(message("1"), address)
        await agent.wait(lambda: agent.lost, timeout=3)
        assert agent.transport.counters.closed_idle + peer.transport.counters.closed_idle >= 1
        agent.transport.close()
        peer.transport.close()
    run(scenario())


def test_connections_beyond_the_limit_are_refused() -> None:
    async def scenario() -> None:
        agent = Endpoint(TcpLimits(max_connections=1))
        address = await agent.transport.listen()
        _r1, w1 = await asyncio.open_connection(*address)
        w1.write(message("1"))
        await agent.wait(lambda: agent.received)
        r2, w2 = await asyncio.open_connection(*address)
        assert await asyncio.wait_for(r2.read(), 5) == b""
        assert agent.transport.counters.refused == 1 and len(agent.transport.connections) == 1
        agent.transport.send(message("x"), ("127.0.0.1", 9))  # would need a second one
        await agent.wait(lambda: agent.lost)
        w1.close()
        w2.close()
        agent.transport.close()
    run(scenario())


def test_a_peer_that_does_not_read_is_cut_at_the_write_buffer_bound() -> None:
    async def scenario() -> None:
        agent = Endpoint(TcpLimits(max_write_buffer=100_000))
        sleeper = socket.socket()
        sleeper.bind(("127.0.0.1", 0))
        sleeper.listen(1)
        address = sleeper.getsockname()
        big = message("big", b"x" * 60_000)
        for _ in range(200):  # ~12 MB: beyond what the kernel buffers take
            agent.transport.send(big, address)
            if agent.lost:
                break
            await asyncio.sleep(0)
        await agent.wait(lambda: agent.lost)
        assert agent.transport.counters.write_overflows == 1
        agent.transport.close()
        sleeper.close()
    run(scenario())
