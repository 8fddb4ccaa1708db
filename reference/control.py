"""Control protocol: line-delimited JSON over TCP (docs/control-protocol.md).

One JSON object per line in each direction. Requests carry `op` (and an optional `id` echoed
in the reply); every request gets exactly one reply `{"ok": true, ...}` or
`{"ok": false, "error": "..."}`. The server also pushes events (`{"event": "status", ...}`).

Each connection is its own QSA destination (`control-N`), so a client only receives the
status messages of the subscriptions it made; closing the connection unsubscribes them.
Per connection the outgoing lines are bounded (`MAX_OUTBOX`): a client that stops reading is
disconnected with a logged reason instead of growing memory without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from reference.qsa import StatusMessage
from reference.udp import UdpRuntime

log = logging.getLogger("reference.control")

DEFAULT_CONTROL = ("127.0.0.1", 5099)
# Longest request line accepted (bytes, newline excluded). Longer: error reply, disconnect.
MAX_LINE = 64 * 1024
# Lines (replies and events) waiting to be written to one client; beyond it: disconnect.
MAX_OUTBOX = 1000
# Live connections at most; more are refused with an error line.
MAX_CONNECTIONS = 64
# Requests are not read while more than this share of MAX_OUTBOX waits to be written: a
# client that pipelines thousands of requests is slowed down by TCP, not disconnected.
READ_PAUSE_SHARE = 0.5
# Requests handled back to back before other callbacks (SIP datagrams, timers) get a turn.
REQUESTS_PER_TURN = 64

OPS = ("subscribe", "unsubscribe", "dump", "stats", "shutdown")


class RequestError(ValueError):
    """A request that cannot be served; its text goes into the error reply."""


class _Connection:
    def __init__(self, server: ControlServer, number: int,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.destination = f"control-{number}"
        self.reader = reader
        self.writer = writer
        self.handles: set[int] = set()
        self.outbox: deque[bytes] = deque()
        self.wakeup = asyncio.Event()
        self.drained = asyncio.Event()
        self.closed = False
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"

    # ------------------------------------------------------------------ output
    def push(self, obj: dict[str, Any]) -> None:
        if self.closed:
            return
        if len(self.outbox) >= MAX_OUTBOX:
            self.drop(f"client is not reading: {MAX_OUTBOX} lines waiting")
            return
        self.outbox.append(json.dumps(obj, default=str, separators=(",", ":")).encode() + b"\n")
        self.wakeup.set()

    def on_status(self, message: StatusMessage) -> None:
        self.push({"event": "status", **message.to_json()})
        if message.status in ("terminated", "rejected") and \
                not self.server.runtime.agent.has_subscription(message.handle):
            self.handles.discard(message.handle)

    def drop(self, reason: str) -> None:
        if not self.closed:
            log.warning("control %s (%s): disconnecting: %s", self.destination, self.peer, reason)
            self.closed = True
            self.writer.transport.abort()
            self.wakeup.set()
            self.drained.set()

    async def write_loop(self) -> None:
        try:
            while not self.closed or self.outbox:
                if not self.outbox:
                    self.wakeup.clear()
                    await self.wakeup.wait()
                    continue
                if self.closed:
                    return
                while self.outbox:
                    self.writer.write(self.outbox.popleft())
                await self.writer.drain()
                self.drained.set()
        except (ConnectionError, OSError):
            self.closed = True
            self.drained.set()

    # ------------------------------------------------------------------ input
    async def read_loop(self) -> None:
        handled = 0
        while not self.closed:
            # Backpressure: while the client is slow to read our replies, read no requests.
            while len(self.outbox) > MAX_OUTBOX * READ_PAUSE_SHARE and not self.closed:
                self.drained.clear()
                await self.drained.wait()
            handled += 1
            if handled % REQUESTS_PER_TURN == 0:
                await asyncio.sleep(0)  # fairness: let datagrams and timers run
            try:
                line = await self.reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial.strip():
                    self.handle_line(exc.partial)
                return
            except asyncio.LimitOverrunError:
                self.push({"ok": False, "error": f"line too long (max {MAX_LINE} bytes)"})
                await self.flush_then_close()
                return
            except (ConnectionError, OSError):
                return
            if line.strip():
                self.handle_line(line)

    async def flush_then_close(self) -> None:
        """Let the write loop send what is queued (bounded), then close. A peer that reset
        the connection meanwhile just ends it."""
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            async with asyncio.timeout(2.0):
                while self.outbox and not self.closed:
                    await asyncio.sleep(0.01)
                await self.writer.drain()
        self.closed = True
        self.wakeup.set()
        self.drained.set()

    def handle_line(self, line: bytes) -> None:
        request_id: Any = None
        try:
            try:
                request = json.loads(line)
            except (ValueError, UnicodeDecodeError) as exc:
                raise RequestError(f"not valid JSON: {exc}") from None
            except RecursionError:
                # `[[[[...` within the line limit: json recurses once per level.
                raise RequestError("not valid JSON: nested too deeply") from None
            if not isinstance(request, dict):
                raise RequestError("request must be a JSON object")
            request_id = request.get("id")
            reply = self.server.dispatch(self, request)
        except RequestError as exc:
            reply = {"ok": False, "error": str(exc)}
        except Exception:  # a bug must cost one request, not the connection or the agent
            log.exception("control %s: request failed", self.destination)
            reply = {"ok": False, "error": "internal error (logged)"}
        if request_id is not None:
            reply["id"] = request_id
        self.push(reply)


class ControlServer:
    """Serve the control protocol for one `UdpRuntime`."""

    def __init__(self, runtime: UdpRuntime, *,
                 on_shutdown: Callable[[], None] | None = None) -> None:
        self.runtime = runtime
        self.on_shutdown = on_shutdown
        self.connections: dict[str, _Connection] = {}
        self._numbers = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.address: tuple[str, int] = ("", 0)

    async def start(self, host: str = DEFAULT_CONTROL[0], port: int = DEFAULT_CONTROL[1]) -> None:
        """Listen (port 0: any free port). Raises OSError when the port is taken."""
        # The reader limit bounds a line (plus the newline) before it is fully buffered.
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_LINE + 1)
        sockname = self._server.sockets[0].getsockname()
        self.address = (str(sockname[0]), int(sockname[1]))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections.values()):
            await connection.flush_then_close()
            connection.writer.close()  # the read loop sees EOF and the handler ends
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=2.0)
            for task in pending:
                task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        connection = _Connection(self, next(self._numbers), reader, writer)
        if len(self.connections) >= MAX_CONNECTIONS:
            log.warning("control: refusing %s: %d connections live", connection.peer,
                        MAX_CONNECTIONS)
            writer.write(b'{"ok":false,"error":"too many control connections"}\n')
            with contextlib.suppress(Exception):
                await writer.drain()
            writer.close()
            return
        self.connections[connection.destination] = connection
        self.runtime.add_listener(connection.destination, connection.on_status)
        log.info("control %s connected from %s", connection.destination, connection.peer)
        writer_task = asyncio.create_task(connection.write_loop())
        try:
            await connection.read_loop()
            if not connection.closed:
                await connection.flush_then_close()
        except asyncio.CancelledError:
            # Only ControlServer.close cancels a handler; ending quietly keeps asyncio's
            # stream callback (3.11) from logging the cancellation as an error.
            pass
        finally:
            connection.closed = True
            connection.wakeup.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer_task, 2.0)
            writer_task.cancel()
            self._forget(connection)
            with contextlib.suppress(Exception):
                writer.close()
            if task is not None:
                self._tasks.discard(task)

    def _forget(self, connection: _Connection) -> None:
        """A closed connection's subscriptions end with it (nobody could read them)."""
        self.connections.pop(connection.destination, None)
        self.runtime.remove_listener(connection.destination, discard=True)
        if not self.runtime.closed:
            for handle in sorted(connection.handles):
                if self.runtime.agent.has_subscription(handle):
                    self.runtime.unsubscribe(handle)
        log.info("control %s closed (%d subscription(s) ended)", connection.destination,
                 len(connection.handles))

    # ------------------------------------------------------------------ requests
    def dispatch(self, connection: _Connection, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "subscribe":
            record = _text(request, "record")
            subscriber = _text(request, "subscriber")
            package = request.get("package", "presence")
            if not isinstance(package, str):
                raise RequestError("'package' must be a string")
            try:
                handle = self.runtime.subscribe(record, subscriber, connection.destination,
                                                package)
            except ValueError as exc:
                raise RequestError(str(exc)) from None
            connection.handles.add(handle)
            return {"ok": True, "handle": handle}
        if op == "unsubscribe":
            given = request.get("handle")
            if isinstance(given, bool) or not isinstance(given, int):
                raise RequestError("'handle' must be an integer")
            handle = given
            if handle not in connection.handles:
                raise RequestError(f"unknown handle {handle} (not subscribed on this connection)")
            connection.handles.discard(handle)
            self.runtime.unsubscribe(handle)
            return {"ok": True}
        if op == "dump":
            return {"ok": True, "now": self.runtime.loop.time(),
                    "subscriptions": self.runtime.agent.dump()}
        if op == "stats":
            stats = self.runtime.stats()
            stats["control_connections"] = len(self.connections)
            return {"ok": True, "now": self.runtime.loop.time(), "stats": stats}
        if op == "shutdown":
            log.info("control %s asked for shutdown", connection.destination)
            if self.on_shutdown is not None:
                asyncio.get_running_loop().call_soon(self.on_shutdown)
            return {"ok": True}
        if not isinstance(op, str):
            raise RequestError("missing 'op' (one of: " + ", ".join(OPS) + ")")
        raise RequestError(f"unknown op {op!r} (one of: " + ", ".join(OPS) + ")")


def _text(request: dict[str, Any], name: str) -> str:
    value = request.get(name)
    if not isinstance(value, str) or not value.strip():
        raise RequestError(f"{name!r} must be a non-empty string")
    return value
