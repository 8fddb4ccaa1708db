"""The asyncio UDP runtime over real loopback sockets, against a tiny notifier in the test.

Every wait is bounded (`until(...)` polls with a deadline); no sleeps-and-hope.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from reference import AgentConfig, StatusMessage
from reference.pidf import build_pidf
from reference.sip import Request, Response, make_response, parse_message
from reference.udp import UdpRuntime

RECORD = "sip:alice@lab.test"
SUBSCRIBER = "sip:bob@lab.test"


async def until(condition: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    """Poll `condition` every 10 ms until true; fail the test after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        await asyncio.sleep(0.01)


def run(coro: Awaitable[Any], timeout: float = 20.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


class TinyNotifier(asyncio.DatagramProtocol):
    """A presence notifier good enough for the runtime tests.

    Answers SUBSCRIBE with `reject` (a status code) or 200 + Expires, then sends a NOTIFY
    (active with a PIDF, or terminated;reason=timeout for Expires: 0). Remembers every
    request and response it receives.
    """

    def __init__(self, *, reject: int | None = None, basic: str = "open",
                 answer: bool = True) -> None:
        self.reject = reject
        self.basic = basic
        self.answer = answer
        self.requests: list[Request] = []
        self.responses: list[Response] = []
        self.dialogs: dict[str, tuple[Request, tuple[str, int]]] = {}
        self.cseq = 1
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    async def open(self) -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", 0))
        self.port = transport.get_extra_info("sockname")[1]
        return self.port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (CPython 3.11's selector datagram transport does not subclass DatagramTransport.)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        message = parse_message(data)
        source = (str(addr[0]), int(addr[1]))
        if isinstance(message, Response):
            self.responses.append(message)
            return
        self.requests.append(message)
        if not self.answer or message.method != "SUBSCRIBE":
            return
        assert self.transport is not None
        if self.reject is not None:
            response = make_response(message, self.reject, to_tag="n1")
            self.transport.sendto(response.to_bytes(), source)
            return
        expires = message.expires if message.expires is not None else 600
        response = make_response(message, 200, to_tag="n1", headers=[
            ("Expires", str(expires)), ("Contact", f"<sip:127.0.0.1:{self.port}>")])
        self.transport.sendto(response.to_bytes(), source)
        self.dialogs[message.call_id] = (message, source)
        state = f"active;expires={expires}" if expires else "terminated;reason=timeout"
        self.notify(message.call_id, state, self.basic)

    def notify(self, call_id: str, state: str, basic: str | None,
               extra: str = "") -> None:
        subscribe, source = self.dialogs[call_id]
        self.cseq += 1
        body = build_pidf(RECORD, basic=basic, note=f"tiny {basic}") if basic else b""
        content = "Content-Type: application/pidf+xml\r\n" if body else ""
        text = (
            f"NOTIFY sip:{source[0]}:{source[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bKtiny{self.cseq}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <{RECORD}>;tag=n1\r\n"
            f"To: {subscribe.headers.get('From')}\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: {self.cseq} NOTIFY\r\n"
            f"Contact: <sip:127.0.0.1:{self.port}>\r\n"
            "Event: presence\r\n"
            f"Subscription-State: {state}\r\n{extra}{content}"
            f"Content-Length: {len(body)}\r\n\r\n")
        assert self.transport is not None
        self.transport.sendto(text.encode() + body, source)

    def methods(self) -> list[str]:
        return [r.method for r in self.requests]


def lab_config(port: int, **params: Any) -> AgentConfig:
    values: dict[str, Any] = {"presence_route": f"<sip:127.0.0.1:{port};lr>"}
    values.update(params)
    return AgentConfig.from_mapping(values)


# ---------------------------------------------------------------- tests


def test_subscribe_notify_status_over_loopback(tmp_path: Path) -> None:
    async def scenario() -> None:
        notifier = TinyNotifier()
        port = await notifier.open()
        trace = tmp_path / "trace.jsonl"
        runtime = await UdpRuntime.open(lab_config(port), "127.0.0.1", 0, trace_path=trace)
        seen: list[StatusMessage] = []
        runtime.add_listener("q", seen.append)
        try:
            handle = runtime.subscribe(RECORD, SUBSCRIBER, "q")
            await until(lambda: len(seen) >= 1, what="a status message")
            assert seen[0].handle == handle
            assert seen[0].status == "active"
            assert seen[0].document is not None and seen[0].document.basic == "open"
            # Via and Contact carry the port really bound (we asked for port 0).
            subscribe = notifier.requests[0]
            assert f"127.0.0.1:{runtime.local_address[1]}" in (subscribe.headers.get("Via") or "")
            assert notifier.responses and notifier.responses[0].status == 200
            # A later NOTIFY reaches the listener too.
            notifier.notify(subscribe.call_id, "active;expires=500", "closed")
            await until(lambda: len(seen) >= 2, what="the second status")
            assert seen[1].document is not None and seen[1].document.basic == "closed"
            stats = runtime.stats()
            assert stats["rx_requests_by_method"]["NOTIFY"] == 2
            assert stats["tx_responses_by_status"]["200"] == 2
            assert stats["subscriptions"] == 1
        finally:
            runtime.close()
            notifier.close()
        records = [json.loads(line) for line in trace.read_text().splitlines()]
        assert records and all({"time", "kind"} <= set(r) for r in records)

    run(scenario())


def test_unknown_dialog_notify_gets_481_and_garbage_is_counted() -> None:
    async def scenario() -> None:
        notifier = TinyNotifier()
        port = await notifier.open()
        runtime = await UdpRuntime.open(lab_config(port), "127.0.0.1", 0)
        try:
            agent_at = runtime.local_address
            notifier.dialogs["nope"] = (
                cast(Request, parse_message(
                    b"SUBSCRIBE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKq\r\n"
                    b"From: <sip:bob@lab.test>;tag=zz\r\nTo: <sip:x@y>\r\nCall-ID: nope\r\n"
                    b"CSeq: 1 SUBSCRIBE\r\nContent-Length: 0\r\n\r\n")),
                agent_at)
            notifier.notify("nope", "active;expires=60", "open")
            assert notifier.transport is not None
            notifier.transport.sendto(b"\x00\xffnot sip at all\r\n\r\n", agent_at)
            await until(lambda: bool(notifier.responses), what="a 481")
            assert notifier.responses[0].status == 481
            await until(lambda: runtime.stats()["parse_errors"] >= 1, what="parse error")
            assert runtime.stats()["sent_481"] == 1
        finally:
            runtime.close()
            notifier.close()

    run(scenario())


def test_refresh_timer_runs_on_the_loop_clock() -> None:
    async def scenario() -> None:
        notifier = TinyNotifier()
        port = await notifier.open()
        config = lab_config(port, default_expiration=2, resubscribe_delta=1,
                            min_resubscribe_time=1)
        runtime = await UdpRuntime.open(config, "127.0.0.1", 0)
        try:
            runtime.subscribe(RECORD, SUBSCRIBER, "q")
            await until(lambda: notifier.methods().count("SUBSCRIBE") >= 2, timeout=4,
                        what="a refresh SUBSCRIBE")
            first, refresh = notifier.requests[0], notifier.requests[-1]
            assert refresh.call_id == first.call_id
            assert refresh.cseq.number > first.cseq.number
        finally:
            runtime.close()
            notifier.close()

    run(scenario())


def test_graceful_shutdown_unsubscribes_and_ends_when_idle() -> None:
    async def scenario() -> None:
        notifier = TinyNotifier()
        port = await notifier.open()
        runtime = await UdpRuntime.open(lab_config(port, wait_for_term_notify=5),
                                        "127.0.0.1", 0)
        seen: list[StatusMessage] = []
        runtime.add_listener("q", seen.append)
        runtime.subscribe(RECORD, SUBSCRIBER, "q")
        await until(lambda: bool(seen), what="active")
        loop = asyncio.get_running_loop()
        started = loop.time()
        await runtime.shutdown()
        # Idle long before wait_for_term_notify: the terminated NOTIFY ended it.
        assert loop.time() - started < 2.0
        assert runtime.closed and runtime.agent.is_idle
        assert notifier.requests[-1].method == "SUBSCRIBE"
        assert notifier.requests[-1].expires == 0
        notifier.close()

    run(scenario())


def test_shutdown_is_bounded_when_the_notifier_is_silent() -> None:
    async def scenario() -> None:
        notifier = TinyNotifier()
        port = await notifier.open()
        config = lab_config(port, wait_for_term_notify=1, failover_timeout=1,
                            transaction_timeout=0.5)
        runtime = await UdpRuntime.open(config, "127.0.0.1", 0)
        seen: list[StatusMessage] = []
        runtime.add_listener("q", seen.append)
        runtime.subscribe(RECORD, SUBSCRIBER, "q")
        await until(lambda: bool(seen), what="active")
        notifier.answer = False  # the unsubscribe goes unanswered
        loop = asyncio.get_running_loop()
        started = loop.time()
        await runtime.shutdown()
        assert loop.time() - started < 1 + 1.0 + 0.5  # wait_for_term_notify + grace + slack
        assert runtime.closed
        notifier.close()

    run(scenario())


def test_unresolvable_host_is_counted_not_fatal() -> None:
    async def scenario() -> None:
        config = AgentConfig.from_mapping(
            {"presence_route": "<sip:no-such-host.invalid:5070;lr>", "on_error_retry_time": 60})
        runtime = await UdpRuntime.open(config, "127.0.0.1", 0)
        try:
            runtime.subscribe(RECORD, SUBSCRIBER, "q")
            await until(lambda: runtime.counters.resolve_failures >= 1, timeout=10,
                        what="a resolve failure")
            # The negative cache answers the retransmissions without new lookups.
            runtime.subscribe("sip:carol@lab.test", SUBSCRIBER, "q")
            assert runtime.counters.resolve_failures >= 2
            assert runtime.counters.datagrams_sent == 0
        finally:
            runtime.close()

    run(scenario())


def test_busy_port_raises_oserror() -> None:
    async def scenario() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
            taken.bind(("127.0.0.1", 0))
            port = taken.getsockname()[1]
            with pytest.raises(OSError):
                await UdpRuntime.open(AgentConfig(), "127.0.0.1", port)

    run(scenario())


def test_listener_gets_queued_messages_and_discarded_destinations_drop() -> None:
    async def scenario() -> None:
        runtime = await UdpRuntime.open(AgentConfig(), "127.0.0.1", 0)
        try:
            message = StatusMessage(handle=1, record=RECORD, subscriber=SUBSCRIBER,
                                    package="presence", status="active")
            runtime._deliver_effect("late", message)
            assert len(runtime.queue("late")) == 1  # kept until someone listens
            seen: list[StatusMessage] = []
            runtime.add_listener("late", seen.append)
            assert seen == [message] and len(runtime.queue("late")) == 0
            runtime.remove_listener("late", discard=True)
            runtime._deliver_effect("late", message)
            assert "late" not in runtime.queues
            assert runtime.counters.statuses_discarded == 1
        finally:
            runtime.close()

    run(scenario())
