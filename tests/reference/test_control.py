"""The control protocol over real loopback TCP, with the UDP runtime and a tiny notifier."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from reference import control
from reference.control import MAX_LINE, ControlServer
from reference.udp import UdpRuntime
from tests.reference.test_udp import RECORD, SUBSCRIBER, TinyNotifier, lab_config, run, until


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


@asynccontextmanager
async def agent_with_control(**params: Any) -> AsyncIterator[
        tuple[TinyNotifier, UdpRuntime, ControlServer, list[int]]]:
    notifier = TinyNotifier()
    port = await notifier.open()
    runtime = await UdpRuntime.open(lab_config(port, **params), "127.0.0.1", 0)
    shutdowns: list[int] = []
    server = ControlServer(runtime, on_shutdown=lambda: shutdowns.append(1))
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


def test_client_that_stops_reading_is_disconnected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control, "MAX_OUTBOX", 5)

    async def scenario() -> None:
        async with agent_with_control() as (_, _runtime, server, _shut):
            client = await connect(server)
            await client.request(op="stats")  # the connection is registered now
            (connection,) = server.connections.values()
            # Pushed faster than the write loop can run: the sixth line overflows the outbox.
            for number in range(6):
                connection.push({"event": "log", "n": number})
            assert connection.closed
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
