"""The UDP runtime's one wake-up for the core's timers, the send batching of a read, and
the IP-literal cache.

Real-loop waits are bounded (`until` from test_udp polls with a deadline); no sleeps-and-hope.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from reference import AgentConfig
from reference.udp import LITERAL_CACHE_SIZE, UdpRuntime, _ip_literal
from tests.reference.test_udp import run, until

# ---------------------------------------------------------------- on the real loop


def _watch_wakes(runtime: UdpRuntime) -> list[tuple[float, float | None]]:
    """Record (now, the agent's next deadline) at every wake-up of the agent's timers."""
    wakes: list[tuple[float, float | None]] = []
    runtime.wake_observer = lambda now, deadline: wakes.append((now, deadline))
    return wakes


@pytest.mark.usefixtures("loop_name")
def test_runtime_wakes_the_agent_at_its_deadlines_never_early() -> None:
    async def scenario() -> None:
        # T1 off the millisecond grid: uvloop's clock counts whole milliseconds, so its timers
        # come up to a tick early for such deadlines (the runtime must wait, not wake early).
        config = AgentConfig.from_mapping({"profile": "rfc6665", "t1": 0.0203})
        runtime = await UdpRuntime.open(config, "127.0.0.1", 0)
        wakes = _watch_wakes(runtime)
        try:
            # Nothing answers on the discard port: Timer E retransmits, each retransmission
            # arms the next one from inside a wake-up (the chained case).
            runtime.subscribe("sip:bob@127.0.0.1:9", "sip:alice@127.0.0.1", "q")
            await until(lambda: runtime.agent.counters.get("tx.retransmissions", 0) >= 3,
                        timeout=5, what="three retransmissions")
            assert len(wakes) >= 3
            assert all(deadline is not None and now >= deadline for now, deadline in wakes)
            assert runtime.counters.timers_fired >= 3
            assert runtime.stats()["live_timers"] == runtime.agent.armed_timers > 0
        finally:
            runtime.close()

    run(scenario())


@pytest.mark.usefixtures("loop_name")
def test_close_cancels_the_wakeup() -> None:
    async def scenario() -> None:
        config = AgentConfig.from_mapping({"profile": "rfc6665", "t1": 0.02})
        runtime = await UdpRuntime.open(config, "127.0.0.1", 0)
        wakes = _watch_wakes(runtime)
        runtime.subscribe("sip:bob@127.0.0.1:9", "sip:alice@127.0.0.1", "q")
        assert runtime.agent.next_deadline() is not None
        runtime.close()
        await asyncio.sleep(0.1)
        assert wakes == []

    run(scenario())


# ---------------------------------------------------------------- send batching


@pytest.mark.usefixtures("loop_name")
def test_sends_of_a_read_batch_leave_in_order_and_close_flushes_them() -> None:
    async def scenario() -> None:
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(2.0)  # bounded wait for each datagram
        runtime = await UdpRuntime.open(AgentConfig(), "127.0.0.1", 0)
        try:
            address = ("127.0.0.1", peer.getsockname()[1])
            runtime._outbox = []  # as inside `_read_ready`
            for number in range(3):
                runtime._sendto(b"answer %d" % number, address)
            assert runtime.counters.datagrams_sent == 0  # held until the batch ends
            runtime.close()  # e.g. a listener closing the runtime mid-batch
            assert [peer.recv(100) for _ in range(3)] == [b"answer 0", b"answer 1",
                                                          b"answer 2"]
            assert runtime.counters.datagrams_sent == 3
        finally:
            runtime.close()
            peer.close()

    run(scenario())


class _RefusingSocket(socket.socket):
    """A UDP socket whose kernel buffer is 'full' for its first `refusals` sends."""

    refusals = 0

    def sendto(self, data: bytes, address: object) -> int:  # type: ignore[override]
        if self.refusals:
            self.refusals -= 1
            raise BlockingIOError
        return super().sendto(data, address)  # type: ignore[call-overload,no-any-return]


@pytest.mark.usefixtures("loop_name")
def test_a_read_batch_the_kernel_refuses_waits_for_the_socket_in_order() -> None:
    async def scenario() -> None:
        from reference import Agent
        from reference.ids import OsRandomIds

        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(2.0)
        sock = _RefusingSocket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(("127.0.0.1", 0))
        runtime = UdpRuntime(Agent(AgentConfig(), ids=OsRandomIds()), sock)
        try:
            address = ("127.0.0.1", peer.getsockname()[1])
            # The first send of the batch and the first retry when the socket turns
            # writable are refused: all three wait, then leave in their order.
            sock.refusals = 2
            runtime._send_batch([(b"answer %d" % number, address) for number in range(3)])
            assert runtime.counters.datagrams_sent == 0 and len(runtime._backlog) == 3
            runtime._sendto(b"answer 3", address)  # behind the backlog, not before it
            await until(lambda: runtime.counters.datagrams_sent == 4, timeout=2.0)
            assert [peer.recv(100) for _ in range(4)] == [
                b"answer 0", b"answer 1", b"answer 2", b"answer 3"]
            assert not runtime._backlog and runtime.counters.send_errors == 0
        finally:
            runtime.close()
            peer.close()

    run(scenario())


@pytest.mark.usefixtures("loop_name")
def test_answers_to_a_burst_all_arrive() -> None:
    """Many datagrams in one read batch: every one is answered (a 481 each), in order."""
    async def scenario() -> None:
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(2.0)
        runtime = await UdpRuntime.open(AgentConfig(), "127.0.0.1", 0)
        try:
            port = peer.getsockname()[1]
            for number in range(40):
                peer.sendto((
                    "NOTIFY sip:x@127.0.0.1 SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKburst{number}\r\n"
                    "Max-Forwards: 70\r\nFrom: <sip:n@lab.test>;tag=a\r\n"
                    "To: <sip:s@lab.test>;tag=nope\r\n"
                    f"Call-ID: burst{number}\r\nCSeq: 1 NOTIFY\r\n"
                    "Contact: <sip:n@127.0.0.1>\r\nEvent: presence\r\n"
                    "Subscription-State: active\r\nContent-Length: 0\r\n\r\n").encode(),
                    runtime.local_address)
            loop = asyncio.get_running_loop()
            answers = [await loop.run_in_executor(None, peer.recv, 65535) for _ in range(40)]
            assert all(a.startswith(b"SIP/2.0 481 ") for a in answers)
            order = [int(a.split(b"branch=z9hG4bKburst")[1].split(b"\r\n")[0].split(b";")[0])
                     for a in answers]
            assert order == list(range(40))
        finally:
            runtime.close()
            peer.close()

    run(scenario())


# ---------------------------------------------------------------- IP literal cache


@pytest.mark.parametrize(("host", "literal"), [
    ("127.0.0.1", "127.0.0.1"), ("[::1]", "::1"), ("::1", "::1"),
    ("[2001:db8::7]", "2001:db8::7"), ("lab.test", None), ("127.0.0.256", None), ("", None),
])
def test_ip_literal(host: str, literal: str | None) -> None:
    assert _ip_literal(host) == literal
    assert _ip_literal(host) == literal  # cached answer is the same


def test_ip_literal_cache_is_bounded() -> None:
    for number in range(LITERAL_CACHE_SIZE + 10):
        _ip_literal(f"host{number}.lab.test")
    assert _ip_literal.cache_info().currsize <= LITERAL_CACHE_SIZE


@pytest.mark.usefixtures("loop_name")
def test_close_gives_the_signals_back() -> None:
    """A runtime closed inside a longer-lived process leaves SIGINT as it found it (Ctrl-C
    raises KeyboardInterrupt again); before, a closed runtime's handler stayed installed."""
    import signal

    async def scenario() -> None:
        runtime = await UdpRuntime.open(AgentConfig.from_mapping({}), "127.0.0.1", 0)
        runtime.install_signal_handlers()
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        runtime.close()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL

    run(scenario())
