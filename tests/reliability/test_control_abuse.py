"""Control protocol abuse (issue 8 §4), over real loopback TCP with the UDP runtime.

Complements tests/reference/test_control.py (bad JSON, unknown ops, the line limit, the
outbox bound with a patched push): here junk of every kind on one connection, JSON nested
deeper than the parser's recursion, thousands of pipelined subscribes, 64 connections that
dribble a byte per second while a newcomer still reaches `shutdown` (issue 13), and a client
that really stops reading while the agent pushes large status events: it is disconnected by
the byte bound of its outbox, with a logged and counted reason, while another client and the
SIP side carry on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
from typing import Any

import pytest

from reference.cli import TOKEN_ENV, build_parser
from reference.control import ControlLimits, ControlServer
from reference.pidf import build_pidf
from reference.udp import UdpRuntime
from tests.reference.test_control import Client, agent_with_control, connect
from tests.reference.test_udp import RECORD, SUBSCRIBER, TinyNotifier, lab_config, run, until


def test_junk_lines_each_get_an_error_and_the_connection_stays_usable() -> None:
    junk = [
        b"\xff\xfe\x00garbage",
        b"[" * (ControlLimits().max_line - 10),            # nested deeper than json can recurse
        b'{"op": "subscribe"}',             # missing fields
        b'{"op": "subscribe", "record": 5, "subscriber": "x"}',
        b'{"op": "subscribe", "record": "not a uri", "subscriber": "x"}',
        b'{"op": "subscribe", "record": "sip:a@b", "subscriber": "x", "package": "dialog"}',
        b'{"op": "unsubscribe", "handle": true}',
        b'{"op": "unsubscribe", "handle": 99999}',
        b'{"op": ["stats"]}',
        b'{"op": "SHUTDOWN"}',
        b'"just a string"',
        b"null",
        b'{"op": "stats", "id": ' + b"1" * 5000 + b"}",  # beyond Python's int digit limit
    ]

    async def scenario() -> None:
        async with agent_with_control() as (_, _runtime, server, shutdowns):
            client = await connect(server)
            for number, line in enumerate(junk):
                await client.send_raw(line + b"\n")
                reply = await client.read()
                assert reply is not None, f"line {number}: connection closed"
                assert reply["ok"] is False and reply["error"], number
            assert (await client.request(op="stats", id="after"))["ok"] is True
            assert not shutdowns
            client.close()

    run(scenario())


def test_thousands_of_pipelined_subscribes_on_one_connection() -> None:
    total, limit = 2000, 1500

    async def scenario() -> None:
        async with agent_with_control(max_subscriptions=limit) as (notifier, runtime,
                                                                   server, _):
            assert notifier.transport is not None  # room for SUBSCRIBE bursts: no kernel drops
            notifier.transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            client = await connect(server)
            replies: list[dict[str, Any]] = []
            events: list[dict[str, Any]] = []

            async def reader() -> None:
                while len(replies) < total:
                    obj = await client.read(timeout=20)
                    assert obj is not None
                    (events if "event" in obj else replies).append(obj)

            reading = asyncio.create_task(reader())
            lines = [json.dumps({"op": "subscribe", "record": f"sip:p{i}@lab.test",
                                 "subscriber": SUBSCRIBER, "id": i}).encode() + b"\n"
                     for i in range(total)]
            for start in range(0, total, 500):  # written in big chunks, read concurrently
                await client.send_raw(b"".join(lines[start:start + 500]))
            await asyncio.wait_for(reading, 30)
            # One reply per request, in request order; the limit answered, not fatal.
            assert [r["id"] for r in replies] == list(range(total))
            ok = [r for r in replies if r["ok"]]
            assert len(ok) == limit
            assert len({r["handle"] for r in ok}) == limit
            assert all("max_subscriptions" in r["error"] for r in replies[limit:])
            # Another client is served meanwhile; the SIP side holds every subscription.
            other = await connect(server)
            stats = (await other.request(op="stats"))["stats"]
            assert stats["subscriptions"] == limit
            assert stats["control_connections"] == 2
            await until(lambda: len(notifier.dialogs) == limit, timeout=20,
                        what="every SUBSCRIBE answered")
            # Closing the connection ends its subscriptions (unsubscribe sent for each).
            client.close()
            await until(lambda: all(s.unsubscribed for s in runtime.agent.subscriptions.values())
                        and len(server.connections) == 1, timeout=10,
                        what="the closed connection's subscriptions ended")
            other.close()

    run(scenario(), timeout=90)


def test_slow_connections_cannot_lock_out_shutdown() -> None:
    # Issue 13 §3b: 64 connections each sending one byte per second used to hold every slot;
    # a 65th client (the operator's `shutdown`) was refused.
    limit = ControlLimits().max_connections

    async def scenario() -> None:
        async with agent_with_control() as (_, _runtime, server, shutdowns):
            slow = [await connect(server) for _ in range(limit)]
            await until(lambda: len(server.connections) == limit,
                        what="all slow connections registered")

            async def dribble() -> None:
                for byte in b'{"op":"stats"':
                    for client in slow:
                        if not client.writer.is_closing():
                            client.writer.write(bytes([byte]))
                    await asyncio.sleep(1.0)

            dribbling = asyncio.create_task(dribble())
            await asyncio.sleep(1.5)
            operator = await connect(server)
            assert await operator.request(op="shutdown", id="op") == {"ok": True, "id": "op"}
            await until(lambda: bool(shutdowns), what="the shutdown callback")
            stats = (await operator.request(op="stats"))["stats"]
            assert stats["control"]["evicted"] == 1
            assert stats["control_connections"] == limit
            # The evicted one was told why, then closed.
            told = [line for c in slow if (line := await _last_words(c))]
            assert told == [{"ok": False, "error": f"evicted: {limit} control connections live "
                                                   "and this one was the least recently used"}]
            dribbling.cancel()
            for client in [*slow, operator]:
                client.close()

    run(scenario(), timeout=30)


async def _last_words(client: Client) -> dict[str, Any] | None:
    """The line a closed connection got before its end; None while it is still open."""
    try:
        line = await asyncio.wait_for(client.reader.readline(), 0.05)
    except TimeoutError:
        return None
    assert await client.reader.readline() == b""
    return json.loads(line) if line else None


class _BigNotifier(TinyNotifier):
    """Sends NOTIFYs whose PIDF carries a long note, so status events are large."""

    def big_notify(self, call_id: str, size: int) -> None:
        subscribe, source = self.dialogs[call_id]
        self.cseq += 1
        body = build_pidf(RECORD, basic="open", note="n" * size)
        text = (f"NOTIFY sip:{source[0]}:{source[1]} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bKbig{self.cseq}\r\n"
                f"Max-Forwards: 70\r\nFrom: <{RECORD}>;tag=n1\r\n"
                f"To: {subscribe.headers.get('From')}\r\nCall-ID: {call_id}\r\n"
                f"CSeq: {self.cseq} NOTIFY\r\nContact: <sip:127.0.0.1:{self.port}>\r\n"
                f"Event: presence\r\nSubscription-State: active;expires=600\r\n"
                f"Content-Type: application/pidf+xml\r\nContent-Length: {len(body)}\r\n\r\n")
        assert self.transport is not None
        self.transport.sendto(text.encode() + body, source)


def test_client_that_stops_reading_is_dropped_others_unaffected(
        caplog: pytest.LogCaptureFixture) -> None:
    # Issue 13 §3a: the outbox was bounded in lines only (1,000), so 60 KB events pinned
    # ~120 MB per stalled client. Default limits here: the byte bound (1 MiB) must act long
    # before the line bound, after the kernel buffers (client receive buffer shrunk below)
    # and the transport buffer filled for real.
    max_bytes = ControlLimits().max_outbox_bytes
    caplog.set_level(logging.WARNING, logger="reference.control")

    async def scenario() -> None:
        notifier = _BigNotifier()
        port = await notifier.open()
        runtime = await UdpRuntime.open(lab_config(port), "127.0.0.1", 0)
        server = ControlServer(runtime)
        await server.start("127.0.0.1", 0)
        try:
            # The stalled client: tiny receive buffer, subscribes, then never reads again.
            raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            raw.setblocking(False)
            await asyncio.get_running_loop().sock_connect(raw, server.address)
            reader, writer = await asyncio.open_connection(sock=raw)
            stalled = Client(reader, writer)
            reply = await stalled.request(op="subscribe", record=RECORD, subscriber="sip:s@x")
            await until(lambda: len(notifier.dialogs) == 1, what="the stalled one's dialog")
            (stalled_call_id,) = notifier.dialogs
            healthy = await connect(server)
            reply = await healthy.request(op="subscribe", record="sip:carol@lab.test",
                                          subscriber="sip:h@x")
            healthy_handle = reply["handle"]
            await until(lambda: len(notifier.dialogs) == 2, what="the healthy one's dialog")
            healthy_call_id = next(c for c in notifier.dialogs if c != stalled_call_id)
            stalled_conn = next(c for c in server.connections.values() if c.handles and
                                reply["handle"] not in c.handles)
            sent = 0
            while not stalled_conn.closed and sent < 900:
                notifier.big_notify(stalled_call_id, 20_000)
                sent += 1
                if sent % 20 == 0:
                    await asyncio.sleep(0.01)  # let the runtime and the write loops run
            await until(lambda: stalled_conn.closed, what="the stalled client dropped")
            # Dropped by bytes, not lines: logged with its reason and counted; its
            # subscription ends with the connection.
            (reason,) = [r.getMessage() for r in caplog.records
                         if "client is not reading" in r.getMessage()]
            assert "bytes waiting" in reason and str(max_bytes) in reason
            waiting = int(reason.split("client is not reading: ")[1].split()[0])
            assert waiting <= max_bytes
            print(f"stalled client dropped after {sent} events of ~40 KB, {waiting} bytes "
                  f"waiting in the agent")
            assert server.counters["not_reading"] == 1
            await until(lambda: stalled_conn.destination not in server.connections,
                        what="the connection forgotten")
            assert all(s.unsubscribed for s in runtime.agent.subscriptions.values()
                       if s.handle != healthy_handle)
            # Every NOTIFY was still answered on the SIP side.
            await until(lambda: sum(1 for r in notifier.responses if r.status == 200)
                        >= sent, timeout=10, what="every NOTIFY answered")
            # The healthy client keeps getting its own events and replies.
            notifier.big_notify(healthy_call_id, 100)
            event = await healthy.event()
            while event["handle"] != healthy_handle or "nnnn" not in event["body"]:
                event = await healthy.event()
            assert (await healthy.request(op="stats"))["ok"]
            healthy.close()
            stalled.close()
        finally:
            await server.close()
            runtime.close()
            notifier.close()

    run(scenario(), timeout=60)


def test_control_binds_loopback_by_default_and_needs_a_token_otherwise(tmp_path: Any) -> None:
    assert build_parser().parse_args([]).control.startswith("127.0.0.1:")
    usage = build_parser().format_help()
    assert "--control-token-file FILE" in usage and TOKEN_ENV in usage
    assert '{"op":"auth","token"' in usage  # the example
    command = [sys.executable, "-m", "reference", "--listen", "127.0.0.1:0",
               "--control", "0.0.0.0:0", "--duration", "0"]
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    refused = subprocess.run(command, capture_output=True, text=True, timeout=30,
                             check=False, env=env)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "is not loopback" in refused.stderr
    token_file = tmp_path / "control.token"
    token_file.write_text("file-secret-123\n", encoding="utf-8")
    for extra, extra_env in (([], {TOKEN_ENV: "env-secret-123"}),
                             (["--control-token-file", str(token_file)], {})):
        done = subprocess.run([*command, *extra, "--log-level", "debug"], capture_output=True,
                              text=True, timeout=30, check=False, env={**env, **extra_env})
        assert done.returncode == 0, done.stderr
        line = next(x for x in done.stderr.splitlines() if "control protocol on tcp" in x)
        assert "NOT loopback" in line and "token required" in line
        assert "secret" not in done.stderr
