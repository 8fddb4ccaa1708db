"""Control protocol: line-delimited JSON over TCP (docs/control-protocol.md).

One JSON object per line in each direction. Requests carry `op` (and an optional `id` echoed
in the reply); every request gets exactly one reply `{"ok": true, ...}` or
`{"ok": false, "error": "..."}`. The server also pushes events (`{"event": "status", ...}`).

Rules of this file:
* Each connection is its own QSA destination (`control-N`): a client only receives the status
  messages of the subscriptions it made, `dump` shows only those (unless the connection is
  admin: it authenticated with the control token), and closing the connection unsubscribes
  them.
* With a token configured, the first request must be `{"op": "auth", "token": ...}`; a wrong
  token closes the connection. The token is compared in constant time and never logged.
* Every bound is a field of `ControlLimits` (docs/limits.md); reaching one is counted in
  `ControlServer.counters` (reported by `stats`) and, when it costs the connection, logged
  with its reason. Nothing is dropped silently: a client that cannot keep up with its own
  replies and events is disconnected, not served a gap.
* No client can lock others out: a request line must complete within `line_timeout`, a
  connection without subscriptions and requests goes after `idle_timeout`, and at
  `max_connections` the newcomer is served and the least useful connection is dropped
  instead (see `_evict`), so `shutdown` stays reachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reference.qsa import StatusMessage
from reference.udp import UdpRuntime

log = logging.getLogger("reference.control")

DEFAULT_CONTROL = ("127.0.0.1", 5099)
# Requests handled back to back before other callbacks (SIP datagrams, timers) get a turn.
REQUESTS_PER_TURN = 64
# Bytes asked of the socket per read.
READ_CHUNK = 64 * 1024

OPS = ("auth", "subscribe", "fetch", "unsubscribe", "dump", "stats", "shutdown")


@dataclass(frozen=True, slots=True)
class ControlLimits:
    """Per-server bounds of the control protocol (docs/limits.md explains each)."""

    # Longest request line (bytes, newline excluded). Longer: error reply, disconnect.
    max_line: int = 64 * 1024
    # Reply and event bytes waiting for one client (our outbox plus the transport's buffer,
    # beyond the kernel's socket buffers); a line that would pass it disconnects the client.
    # A single line larger than the bound still goes out when nothing else waits.
    max_outbox_bytes: int = 1024 * 1024
    # Lines waiting in our outbox (bounds the per-line overhead of many small lines).
    max_outbox_lines: int = 1000
    # Requests are not read while more than this share of either outbox bound waits: a
    # client that pipelines thousands of requests is slowed down by TCP, not disconnected.
    read_pause_share: float = 0.5
    # Live connections; at the bound a newcomer evicts the least useful one.
    max_connections: int = 64
    # Live subscriptions made on one connection (next to the agent's max_subscriptions).
    max_subscriptions_per_connection: int = 10_000
    # Seconds from the first byte of a request line to its newline.
    line_timeout: float = 10.0
    # Seconds a connection may stay without a request while it holds no subscription.
    idle_timeout: float = 300.0
    # Seconds to send a valid `auth` request when a token is configured.
    auth_timeout: float = 10.0

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            if not getattr(self, name) > 0:
                raise ValueError(f"ControlLimits.{name} must be > 0")


class RequestError(ValueError):
    """A request that cannot be served; its text goes into the error reply."""


class _Connection:
    def __init__(self, server: ControlServer, number: int,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.limits = server.limits
        self.destination = f"control-{number}"
        self.reader = reader
        self.writer = writer
        self.handles: set[int] = set()
        self.outbox: deque[bytes] = deque()
        self.outbox_bytes = 0
        self.wakeup = asyncio.Event()
        self.drained = asyncio.Event()
        self.closed = False
        # Set by a request whose reply must be the last one (a wrong token): "counter:why".
        self.hang_up: str | None = None
        self.authenticated = server.token is None
        self.admin = False
        now = asyncio.get_running_loop().time()
        self.opened_at = now
        self.last_request_at = now
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        # The transport's own buffer counts against max_outbox_bytes; keep its high-water
        # mark below the read-pause threshold so that a drain always ends a pause.
        limits = self.limits
        pause_at = int(min(limits.max_outbox_bytes * limits.read_pause_share, 128 * 1024))
        writer.transport.set_write_buffer_limits(high=max(pause_at // 2, 1))

    # ------------------------------------------------------------------ output
    def waiting_bytes(self) -> int:
        """Bytes queued for this client: our outbox and the transport's write buffer."""
        return self.outbox_bytes + self.writer.transport.get_write_buffer_size()

    def push(self, obj: dict[str, Any]) -> None:
        if self.closed:
            return
        line = json.dumps(obj, default=str, separators=(",", ":")).encode() + b"\n"
        limits = self.limits
        waiting = self.waiting_bytes()
        if waiting and waiting + len(line) > limits.max_outbox_bytes:
            self.drop("not_reading", f"client is not reading: {waiting} bytes waiting, "
                                     f"{len(line)} more would pass {limits.max_outbox_bytes}")
            return
        if len(self.outbox) >= limits.max_outbox_lines:
            self.drop("not_reading",
                      f"client is not reading: {limits.max_outbox_lines} lines waiting")
            return
        self.outbox.append(line)
        self.outbox_bytes += len(line)
        self.wakeup.set()

    def backlogged(self) -> bool:
        share = self.limits.read_pause_share
        return (self.waiting_bytes() > self.limits.max_outbox_bytes * share
                or len(self.outbox) > self.limits.max_outbox_lines * share)

    def on_status(self, message: StatusMessage) -> None:
        self.push({"event": "status", **message.to_json()})
        if message.status in ("terminated", "rejected") and \
                not self.server.runtime.agent.has_subscription(message.handle):
            self.handles.discard(message.handle)

    def drop(self, counter: str, reason: str, *, tell: bool = False) -> None:
        """Close at once (count, log). With `tell`, the reason goes out as a last error line
        after what the transport already holds (2 s at most), instead of a reset."""
        if not self.closed:
            self.server.count(counter)
            log.warning("control %s (%s): disconnecting: %s", self.destination, self.peer, reason)
            self.closed = True
            transport = self.writer.transport
            if tell:
                transport.write(json.dumps({"ok": False, "error": reason}).encode() + b"\n")
                transport.close()
                asyncio.get_running_loop().call_later(2.0, transport.abort)
            else:
                transport.abort()
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
                    line = self.outbox.popleft()
                    self.outbox_bytes -= len(line)
                    self.writer.write(line)
                await self.writer.drain()
                self.drained.set()
        except (ConnectionError, OSError):
            self.closed = True
            self.drained.set()

    # ------------------------------------------------------------------ input
    def deadline(self, partial_since: float | None) -> tuple[float, str | None]:
        """When this connection must have made progress, and the reason it is dropped then
        (None: no deadline applies now; look again at the time returned)."""
        limits = self.limits
        now = asyncio.get_running_loop().time()
        candidates: list[tuple[float, str | None]] = [(now + limits.idle_timeout, None)]
        if partial_since is not None:
            candidates.append((partial_since + limits.line_timeout,
                               f"line_timeout:request line not completed within "
                               f"{limits.line_timeout:g} s"))
        if not self.authenticated:
            candidates.append((self.opened_at + limits.auth_timeout,
                               f"auth_timeout:not authenticated within "
                               f"{limits.auth_timeout:g} s"))
        if not self.handles:
            candidates.append((self.last_request_at + limits.idle_timeout,
                               f"idle:no request for {limits.idle_timeout:g} s and no "
                               f"subscription"))
        return min(candidates, key=lambda c: c[0])

    async def read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        buffer = bytearray()
        partial_since: float | None = None  # when the unfinished line's first byte came
        handled = 0
        while not self.closed:
            newline = buffer.find(b"\n")
            if newline < 0 and len(buffer) <= self.limits.max_line:
                at, reason = self.deadline(partial_since if buffer else None)
                try:
                    async with asyncio.timeout_at(at):
                        chunk = await self.reader.read(READ_CHUNK)
                except TimeoutError:
                    if reason is not None:
                        await self.expire(reason)
                        return
                    continue
                except (ConnectionError, OSError):
                    return
                if not chunk:
                    if buffer.strip():
                        self.handle_line(bytes(buffer))
                    return
                if not buffer:
                    partial_since = loop.time()
                buffer += chunk
                continue
            if newline < 0 or newline > self.limits.max_line:
                self.push({"ok": False,
                           "error": f"line too long (max {self.limits.max_line} bytes)"})
                self.server.count("line_too_long")
                await self.flush_then_close()
                return
            line = bytes(buffer[:newline])
            del buffer[:newline + 1]
            if buffer:
                partial_since = loop.time()
            # Backpressure: while the client is slow to read our replies, read no requests
            # (for idle_timeout at most: a client that reads nothing for that long is gone).
            while self.backlogged() and not self.closed:
                self.drained.clear()
                try:
                    async with asyncio.timeout(self.limits.idle_timeout):
                        await self.drained.wait()
                except TimeoutError:
                    self.drop("not_reading", f"client read no reply for "
                                             f"{self.limits.idle_timeout:g} s")
                    return
            handled += 1
            if handled % REQUESTS_PER_TURN == 0:
                await asyncio.sleep(0)  # fairness: let datagrams and timers run
            if line.strip() and not self.closed:
                self.last_request_at = loop.time()
                self.handle_line(line)
                if self.hang_up is not None:  # its reply already said why
                    await self.expire(self.hang_up, tell=False)
                    return

    async def expire(self, reason: str, *, tell: bool = True) -> None:
        """End the connection for `reason` ("counter:text"): count, log, tell the client (an
        error line without id), close after what is queued."""
        counter, _, text = reason.partition(":")
        self.server.count(counter)
        log.warning("control %s (%s): disconnecting: %s", self.destination, self.peer, text)
        if tell:
            self.push({"ok": False, "error": text})
        await self.flush_then_close()

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
    """Serve the control protocol for one `UdpRuntime`. With `token`, every connection must
    authenticate first (and is then admin)."""

    def __init__(self, runtime: UdpRuntime, *,
                 on_shutdown: Callable[[], None] | None = None,
                 token: str | None = None,
                 limits: ControlLimits = ControlLimits()) -> None:
        if token is not None and not token:
            raise ValueError("an empty control token")
        self.runtime = runtime
        self.on_shutdown = on_shutdown
        self.token = token
        self.limits = limits
        self.connections: dict[str, _Connection] = {}
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._numbers = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.address: tuple[str, int] = ("", 0)

    def count(self, name: str) -> None:
        self.counters[name] += 1

    async def start(self, host: str = DEFAULT_CONTROL[0], port: int = DEFAULT_CONTROL[1]) -> None:
        """Listen (port 0: any free port). Raises OSError when the port is taken."""
        self._server = await asyncio.start_server(self._serve, host, port)
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
        self.count("accepted")
        if len(self.connections) >= self.limits.max_connections:
            self._evict()
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

    def _evict(self) -> None:
        """Make room for a newcomer: drop the least useful connection, which is the first
        of: not authenticated, holding no subscription, longest without a request. Refusing
        the newcomer instead would let a few idle or slow connections lock everyone out
        (also of `shutdown`); a client evicted while it holds subscriptions is one that
        made no request for the longest time while every slot was busy."""
        victim = min(self.connections.values(),
                     key=lambda c: (c.authenticated, bool(c.handles), c.last_request_at))
        victim.drop("evicted", f"evicted: {self.limits.max_connections} control connections "
                               "live and this one was the least recently used", tell=True)
        self._forget(victim)

    def _forget(self, connection: _Connection) -> None:
        """A closed connection's subscriptions end with it (nobody could read them)."""
        if self.connections.pop(connection.destination, None) is None:
            return
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
        if op == "auth":
            return self._auth(connection, request)
        if not connection.authenticated:
            if op in OPS:
                raise RequestError('authentication required: send {"op":"auth","token":...} '
                                   "first")
        elif op == "subscribe":
            return self._subscribe(connection, request)
        elif op == "fetch":
            return self._subscribe(connection, request, fetch=True)
        elif op == "unsubscribe":
            given = request.get("handle")
            if isinstance(given, bool) or not isinstance(given, int):
                raise RequestError("'handle' must be an integer")
            handle = given
            if handle not in connection.handles:
                raise RequestError(f"unknown handle {handle} (not subscribed on this connection)")
            connection.handles.discard(handle)
            self.runtime.unsubscribe(handle)
            return {"ok": True}
        elif op == "dump":
            every = request.get("all", False)
            if not isinstance(every, bool):
                raise RequestError("'all' must be true or false")
            if every and not connection.admin:
                raise RequestError("'all' needs an admin connection (authenticated with the "
                                   "control token)")
            subscriptions = self.runtime.agent.dump()
            if not every:
                subscriptions = [s for s in subscriptions if s["handle"] in connection.handles]
            return {"ok": True, "now": self.runtime.loop.time(), "subscriptions": subscriptions}
        elif op == "stats":
            stats = self.runtime.stats()
            stats["control_connections"] = len(self.connections)
            stats["control"] = dict(self.counters)
            return {"ok": True, "now": self.runtime.loop.time(), "stats": stats}
        elif op == "shutdown":
            log.info("control %s asked for shutdown", connection.destination)
            if self.on_shutdown is not None:
                asyncio.get_running_loop().call_soon(self.on_shutdown)
            return {"ok": True}
        if not isinstance(op, str):
            raise RequestError("missing 'op' (one of: " + ", ".join(OPS) + ")")
        raise RequestError(f"unknown op {op!r} (one of: " + ", ".join(OPS) + ")")

    def _auth(self, connection: _Connection, request: dict[str, Any]) -> dict[str, Any]:
        given = request.get("token")
        if not isinstance(given, str):
            raise RequestError("'token' must be a string")
        if self.token is None:
            raise RequestError("no control token is configured on this agent")
        if not hmac.compare_digest(given.encode("utf-8", "surrogatepass"),
                                   self.token.encode("utf-8", "surrogatepass")):
            connection.hang_up = "auth_failures:wrong control token"
            raise RequestError("wrong control token")
        connection.authenticated = connection.admin = True
        return {"ok": True, "admin": True}

    def _subscribe(self, connection: _Connection, request: dict[str, Any], *,
                   fetch: bool = False) -> dict[str, Any]:
        record = _text(request, "record")
        subscriber = _text(request, "subscriber")
        package = request.get("package", "presence")
        if not isinstance(package, str):
            raise RequestError("'package' must be a string")
        cap = self.limits.max_subscriptions_per_connection
        if len(connection.handles) >= cap:
            self.count("subscribe_refused")
            raise RequestError(f"max_subscriptions_per_connection ({cap}) reached")
        try:
            if fetch:  # one status message, then the handle is gone (rfc6665)
                handle = self.runtime.fetch(record, subscriber, connection.destination,
                                           package)
            else:
                handle = self.runtime.subscribe(record, subscriber, connection.destination,
                                                package)
        except ValueError as exc:
            self.count("subscribe_refused")
            raise RequestError(str(exc)) from None
        connection.handles.add(handle)
        return {"ok": True, "handle": handle}


COUNTERS = ("accepted", "evicted", "not_reading", "line_too_long", "line_timeout", "idle",
            "auth_timeout", "auth_failures", "subscribe_refused")


def _text(request: dict[str, Any], name: str) -> str:
    value = request.get(name)
    if not isinstance(value, str) or not value.strip():
        raise RequestError(f"{name!r} must be a non-empty string")
    return value
