"""The control protocol over real loopback TCP, with the UDP runtime and a tiny notifier."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from reference.control import ControlLimits, ControlServer
from reference.udp import UdpRuntime
from tests.reference.test_udp import RECORD, SUBSCRIBER, TinyNotifier, lab_config, run, until

# Every test here runs on both event loops (tests/event_loops.py).
pytestmark = pytest.mark.usefixtures("loop_name")


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.events: list[dict[str, Any]] = []

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read(self, timeout: float = 5.0) -> dict[str, Any] | None:
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        if not line:
            return None
        obj: dict[str, Any] = json.loads(line)
        return obj

    async def request(self, **fields: Any) -> dict[str, Any]:
        """Send one request; return its reply, keeping pushed events aside."""
        await self.send_raw(json.dumps(fields).encode() + b"\n")
        while True:
            obj = await self.read()
            assert obj is not None, "connection closed before the reply"
            if "event" in obj:
                self.events.append(obj)
            else:
                return obj

    async def event(self, timeout: float = 5.0) -> dict[str, Any]:
        if self.events:
            return self.events.pop(0)
        obj = await self.read(timeout)
        assert obj is not None and "event" in obj, obj
        return obj

    def close(self) -> None:
        self.writer.close()


DEFAULT_LIMITS = ControlLimits()
MAX_LINE = DEFAULT_LIMITS.max_line


@asynccontextmanager
async def agent_with_control(*, limits: ControlLimits = DEFAULT_LIMITS,
                             token: str | None = None, **params: Any) -> AsyncIterator[
        tuple[TinyNotifier, UdpRuntime, ControlServer, list[int]]]:
    notifier = TinyNotifier()
    port = await notifier.open()
    runtime = await UdpRuntime.open(lab_config(port, **params), "127.0.0.1", 0)
    shutdowns: list[int] = []
    server = ControlServer(runtime, on_shutdown=lambda: shutdowns.append(1), token=token,
                           limits=limits)
    await server.start("127.0.0.1", 0)
    try:
        yield notifier, runtime, server, shutdowns
    finally:
        await server.close()
        runtime.close()
        notifier.close()


async def connect(server: ControlServer) -> Client:
    reader, writer = await asyncio.open_connection(*server.address)
    return Client(reader, writer)


def test_subscribe_gets_handle_and_status_events() -> None:
    async def scenario() -> None:
        async with agent_with_control() as (_, runtime, server, _shut):
            client = await connect(server)
            reply = await client.request(op="subscribe", record=RECORD, subscriber=SUBSCRIBER,
                                         id="req-1")
            assert reply == {"ok": True, "handle": 1, "id": "req-1"}
            event = await client.event()
            assert event["event"] == "status" and event["handle"] == 1
            assert event["status"] == "active"
            assert event["record"] == RECORD and event["subscriber"] == SUBSCRIBER
            assert event["content_type"] == "application/pidf+xml"
            tuple0 = event["document"]["tuples"][0]
            assert tuple0["basic"] == "open"
            assert tuple0["notes"][0]["text"] == "tiny open"
            dump = await client.request(op="dump")
            assert dump["ok"] and dump["subscriptions"][0]["handle"] == 1
            stats = await client.request(op="stats")
            assert stats["stats"]["rx_requests_by_method"]["NOTIFY"] == 1
            assert stats["stats"]["control_connections"] == 1
            assert (await client.request(op="unsubscribe", handle=1)) == {"ok": True}
            await until(lambda: runtime.agent.is_idle, what="the unsubscribe to finish")
            client.close()

    run(scenario())


@pytest.mark.parametrize(("line", "error"), [
    (b"{not json\n", "not valid JSON"),
    (b"[1, 2]\n", "must be a JSON object"),
    (b'{"op": "explode"}\n', "unknown op 'explode'"),
    (b'{"id": 7}\n', "missing 'op'"),
    (b'{"op": "subscribe", "record": "sip:a@b"}\n', "'subscriber' must be"),
    (b'{"op": "subscribe", "record": "not a uri", "subscriber": "x"}\n', "bad record URI"),
    (b'{"op": "subscribe", "record": "sip:a@b", "subscriber": "x", "package": "dialog"}\n',
     "package 'dialog'"),
    (b'{"op": "unsubscribe", "handle": "1"}\n', "'handle' must be an integer"),
    (b'{"op": "unsubscribe", "handle": 99}\n', "unknown handle 99"),
])
def test_bad_requests_get_errors_and_connection_stays_usable(line: bytes, error: str) -> None:
    async def scenario() -> None:
        async with agent_with_control() as (_, _runtime, server, _shut):
            client = await connect(server)
            await client.send_raw(line)
            reply = await client.read()
            assert reply is not None and reply["ok"] is False
            assert error in reply["error"]
            assert (await client.request(op="stats", id=2))["ok"] is True
            client.close()

    run(scenario())


def test_too_long_line_gets_an_error_then_disconnect() -> None:
    async def scenario() -> None:
        async with agent_with_control() as (_, _runtime, server, _shut):
            client = await connect(server)
            await client.send_raw(b'{"op":"stats","pad":"' + b"x" * (MAX_LINE + 10))
            reply = await client.read()
            assert reply is not None and reply["ok"] is False and "too long" in reply["error"]
            assert await client.read() is None  # then the server closes
            # The server still serves others.
            other = await connect(server)
            assert (await other.request(op="stats"))["ok"] is True
            other.close()
            client.close()

    run(scenario())


def test_two_clients_each_get_only_their_own_events() -> None:
    async def scenario() -> None:
        async with agent_with_control() as (_, runtime, server, _shut):
            first, second = await connect(server), await connect(server)
            h1 = (await first.request(op="subscribe", record=RECORD,
                                      subscriber=SUBSCRIBER))["handle"]
            h2 = (await second.request(op="subscribe", record="sip:carol@lab.test",
                                       subscriber=SUBSCRIBER))["handle"]
            assert h1 != h2
            assert (await first.event())["handle"] == h1
            assert (await second.event())["handle"] == h2
            # Nothing else arrives for either (stats replies come straight after).
            await first.request(op="stats")
            await second.request(op="stats")
            assert not first.events and not second.events
            # One client may not unsubscribe the other's handle.
            reply = await first.request(op="unsubscribe", handle=h2)
            assert reply["ok"] is False
            # Closing a connection ends its subscriptions.
            first.close()
            await until(lambda: h1 not in runtime.agent.subscriptions, what="h1 to end")
            assert h2 in runtime.agent.subscriptions
            second.close()

    run(scenario())


def test_shutdown_op_calls_back() -> None:
    async def scenario() -> None:
        async with agent_with_control() as (_, _runtime, server, shutdowns):
            client = await connect(server)
            assert (await client.request(op="shutdown")) == {"ok": True}
            await until(lambda: bool(shutdowns), what="the shutdown callback")
            client.close()

    run(scenario())


def test_client_that_stops_reading_is_disconnected() -> None:
    async def scenario() -> None:
        async with agent_with_control(limits=ControlLimits(max_outbox_lines=5)) as (
                _, _runtime, server, _shut):
            client = await connect(server)
            await client.request(op="stats")  # the connection is registered now
            (connection,) = server.connections.values()
            # Pushed faster than the write loop can run: the sixth line overflows the outbox.
            for number in range(6):
                connection.push({"event": "log", "n": number})
            assert connection.closed
            assert server.counters["not_reading"] == 1
            await until(lambda: not server.connections, what="the connection to be dropped")
            client.close()

    run(scenario())


def test_close_with_idle_clients_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with agent_with_control() as (_, _runtime, server, _shut):
            client = await connect(server)
            await client.request(op="stats")
            await server.close()
            assert await client.read() is None  # the server hung up
            client.close()

    run(scenario())
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


# ---------------------------------------------------------------- issue 13: input, auth, limits

class _SizeNotifier(TinyNotifier):
    """Remembers the size of every SUBSCRIBE it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if data.startswith(b"SUBSCRIBE "):
            self.sizes.append(len(data))
        super().datagram_received(data, addr)


@pytest.mark.parametrize(("record", "subscriber", "error"), [
    (RECORD, "sip:bob@lab.test\r\nRoute: <sip:evil.test>", "control character"),
    (RECORD, "sip:bob@lab.test\n", "control character"),
    (RECORD, 'hello world "<>', "not a sip:, sips: or pres: URI"),
    (RECORD, "http://lab.test/bob", "not a sip:, sips: or pres: URI"),
    (RECORD, '"Bob" <sip:bob@lab.test>', "not a sip:, sips: or pres: URI"),
    (RECORD, "sip:bob@lab.test?Subject=x", "URI headers are not allowed"),
    ("sip:alice@lab.test?Route=%3Csip:evil.test%3E", SUBSCRIBER, "URI headers are not allowed"),
    ("sip:" + "a" * 60_000 + "@lab.test", SUBSCRIBER, "longer than 2048 bytes"),
    (RECORD, "sip:" + "b" * 2100 + "@lab.test", "longer than 2048 bytes"),
    ("sip:alice@lab.test\x00", SUBSCRIBER, "control character"),
    ("sip:al ice@lab.test", SUBSCRIBER, "bad record URI"),
])
def test_refused_subscribe_registers_nothing(record: str, subscriber: str, error: str) -> None:
    # With max_subscriptions=1, one refused subscribe that left anything behind would make
    # the valid one after it fail.
    async def scenario() -> None:
        async with agent_with_control(max_subscriptions=1) as (notifier, runtime, server, _):
            client = await connect(server)
            reply = await client.request(op="subscribe", record=record, subscriber=subscriber)
            assert reply["ok"] is False and error in reply["error"], reply
            assert not runtime.agent.subscriptions
            assert (await client.request(op="stats"))["stats"]["control"][
                "subscribe_refused"] == 1
            reply = await client.request(op="subscribe", record=RECORD, subscriber=SUBSCRIBER)
            assert reply["ok"] is True, reply
            await until(lambda: len(notifier.dialogs) == 1, what="the valid SUBSCRIBE")
            # Only the valid subscribe reached the wire. (On a loaded machine the agent may
            # retransmit it before the notifier reads it: the same request again, one Call-ID.)
            (valid_call_id,) = notifier.dialogs
            assert {(r.method, r.call_id) for r in notifier.requests} == {
                ("SUBSCRIBE", valid_call_id)}
            assert len((await client.request(op="dump"))["subscriptions"]) == 1
            client.close()

    run(scenario())


def test_longest_uris_keep_the_subscribe_far_below_the_udp_maximum() -> None:
    from reference.subscribe_input import MAX_URI_BYTES

    async def scenario() -> None:
        notifier = _SizeNotifier()
        port = await notifier.open()
        runtime = await UdpRuntime.open(lab_config(port), "127.0.0.1", 0)
        server = ControlServer(runtime)
        await server.start("127.0.0.1", 0)
        try:
            client = await connect(server)
            short = await client.request(op="subscribe", record="sip:a@b.test",
                                         subscriber="sip:c@d.test")
            await until(lambda: len(notifier.sizes) == 1, what="the short SUBSCRIBE")
            suffix = "@lab.test"
            record = "sip:" + "r" * (MAX_URI_BYTES - 4 - len(suffix)) + suffix
            subscriber = "sips:" + "s" * (MAX_URI_BYTES - 5 - len(suffix)) + suffix
            assert len(record) == len(subscriber) == MAX_URI_BYTES
            longest = await client.request(op="subscribe", record=record,
                                           subscriber=subscriber)
            assert short["ok"] and longest["ok"], longest
            await until(lambda: len(notifier.sizes) >= 2, what="the long SUBSCRIBE")
            fixed = notifier.sizes[0] - 2 * len("sip:a@b.test") - len("sip:c@d.test")
            print(f"SUBSCRIBE: {fixed} bytes besides the URIs; with the longest URIs "
                  f"{notifier.sizes[1]} bytes (UDP maximum 65,507)")
            assert notifier.sizes[1] == fixed + 3 * MAX_URI_BYTES
            assert notifier.sizes[1] < 65_507 // 8
            client.close()
        finally:
            await server.close()
            runtime.close()
            notifier.close()

    run(scenario())


def test_per_connection_subscription_cap() -> None:
    limits = ControlLimits(max_subscriptions_per_connection=2)

    async def scenario() -> None:
        async with agent_with_control(limits=limits) as (_, runtime, server, _shut):
            first, second = await connect(server), await connect(server)
            handles = [(await first.request(op="subscribe", record=f"sip:p{i}@lab.test",
                                            subscriber=SUBSCRIBER))["handle"]
                       for i in range(2)]
            reply = await first.request(op="subscribe", record=RECORD, subscriber=SUBSCRIBER)
            assert reply == {"ok": False,
                             "error": "max_subscriptions_per_connection (2) reached"}
            assert len(runtime.agent.subscriptions) == 2
            # Another connection has its own allowance; an unsubscribe frees one.
            assert (await second.request(op="subscribe", record=RECORD,
                                         subscriber=SUBSCRIBER))["ok"]
            assert (await first.request(op="unsubscribe", handle=handles[0]))["ok"]
            assert (await first.request(op="subscribe", record=RECORD,
                                         subscriber=SUBSCRIBER))["ok"]
            first.close()
            second.close()

    run(scenario())


def test_dump_shows_only_the_callers_subscriptions_unless_admin() -> None:
    async def scenario() -> None:
        async with agent_with_control() as (_, _runtime, server, _shut):
            first, second = await connect(server), await connect(server)
            h1 = (await first.request(op="subscribe", record=RECORD,
                                      subscriber=SUBSCRIBER))["handle"]
            h2 = (await second.request(op="subscribe", record="sip:carol@lab.test",
                                       subscriber="sip:dave@lab.test"))["handle"]
            for client, mine in ((first, h1), (second, h2)):
                dump = await client.request(op="dump")
                assert [s["handle"] for s in dump["subscriptions"]] == [mine]
            reply = await first.request(op="dump", all=True)
            assert reply["ok"] is False and "admin" in reply["error"]
            first.close()
            second.close()

    run(scenario())


TOKEN = "s3cret-token-for-tests"


def test_token_is_required_first_and_makes_the_connection_admin(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with agent_with_control(token=TOKEN) as (_, _runtime, server, shutdowns):
            client = await connect(server)
            for op in ("stats", "dump", "shutdown", "subscribe"):
                reply = await client.request(op=op, record=RECORD, subscriber=SUBSCRIBER)
                assert reply["ok"] is False and "authentication required" in reply["error"]
            assert not shutdowns
            assert await client.request(op="auth", token=TOKEN, id=1) == {
                "ok": True, "admin": True, "id": 1}
            h1 = (await client.request(op="subscribe", record=RECORD,
                                       subscriber=SUBSCRIBER))["handle"]
            other = await connect(server)
            await other.request(op="auth", token=TOKEN)
            h2 = (await other.request(op="subscribe", record="sip:carol@lab.test",
                                      subscriber=SUBSCRIBER))["handle"]
            dump = await client.request(op="dump", all=True)
            assert [s["handle"] for s in dump["subscriptions"]] == [h1, h2]
            # A wrong token: one error reply, then the server hangs up (counted).
            intruder = await connect(server)
            reply = await intruder.request(op="auth", token=TOKEN[:-1] + "X")
            assert reply == {"ok": False, "error": "wrong control token"}
            assert await intruder.read() is None
            stats = (await client.request(op="stats"))["stats"]["control"]
            assert stats["auth_failures"] == 1
            for each in (client, other, intruder):
                each.close()

    run(scenario())
    assert TOKEN[:-1] not in caplog.text


def test_auth_without_a_configured_token_is_an_error() -> None:
    async def scenario() -> None:
        async with agent_with_control() as (_, _runtime, server, _shut):
            client = await connect(server)
            reply = await client.request(op="auth", token="anything")
            assert reply["ok"] is False and "no control token" in reply["error"]
            assert (await client.request(op="stats"))["ok"]
            client.close()

    run(scenario())


@pytest.mark.parametrize(("limits", "token", "error", "counter"), [
    (ControlLimits(line_timeout=0.5), None, "request line not completed within 0.5 s",
     "line_timeout"),
    (ControlLimits(idle_timeout=0.5), None, "no request for 0.5 s and no subscription",
     "idle"),
    (ControlLimits(auth_timeout=0.5), TOKEN, "not authenticated within 0.5 s",
     "auth_timeout"),
])
def test_deadlines_close_the_connection_with_a_reason(
        limits: ControlLimits, token: str | None, error: str, counter: str) -> None:
    async def scenario() -> None:
        async with agent_with_control(limits=limits, token=token) as (_, _rt, server, _shut):
            client = await connect(server)
            watcher = await connect(server)
            if token:
                await watcher.request(op="auth", token=token)
            # The watcher holds a subscription: no idle deadline; it keeps sending requests
            # at a normal pace.
            await watcher.request(op="subscribe", record=RECORD, subscriber=SUBSCRIBER)
            loop = asyncio.get_running_loop()
            started = loop.time()
            if counter == "line_timeout":
                for byte in b'{"op"':  # a byte every 0.09 s, never a newline
                    client.writer.write(bytes([byte]))
                    await asyncio.sleep(0.09)
            reply = await client.read(timeout=5)
            assert reply == {"ok": False, "error": error}
            assert await client.read() is None
            assert 0.4 < loop.time() - started < 3.0
            stats = (await watcher.request(op="stats"))["stats"]["control"]
            assert stats[counter] == 1
            assert (await watcher.request(op="dump"))["ok"]
            client.close()
            watcher.close()

    run(scenario())


def test_fetch_gets_one_status_then_the_handle_is_gone() -> None:
    async def scenario() -> None:
        async with agent_with_control() as (notifier, runtime, server, _shut):
            client = await connect(server)
            reply = await client.request(op="fetch", record=RECORD, subscriber=SUBSCRIBER)
            assert reply["ok"] and isinstance(reply["handle"], int)
            event = await client.event()
            assert event["handle"] == reply["handle"] and event["status"] == "terminated"
            assert event["retry_at"] is None and event["document"] is not None
            await until(lambda: runtime.agent.is_idle, what="the fetch to end")
            assert notifier.requests[-1].expires == 0 and len(notifier.requests) == 1
            client.close()

    run(scenario())


def test_fetch_refused_in_ser() -> None:
    async def scenario() -> None:
        async with agent_with_control(profile="ser") as (_, _runtime, server, _shut):
            client = await connect(server)
            reply = await client.request(op="fetch", record=RECORD, subscriber=SUBSCRIBER)
            assert reply == {"ok": False, "error": "fetch is not available in profile ser"}
            client.close()

    run(scenario())
