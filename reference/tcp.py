"""asyncio TCP transport for the runtime (RFC 3261 §18 over a stream).

Rules of this file:

* An adapter: it moves whole SIP messages between sockets and two callbacks and decides no
  SIP behaviour. ``on_message(data, peer)`` gets each message framed by Content-Length
  (``reference.sip.stream``, the same ``ParseLimits`` as a datagram); ``on_lost(peer)`` is
  called once when a connection to ``peer`` ends for any reason (closed by the peer, reset,
  idle, broken framing, write buffer over its bound, a failed connect), so the runtime can
  fail the transactions that were using it (``Agent.transport_lost``).
* Connections are keyed by the peer's address ``(ip, port)``, whichever side opened them:
  a request that came in on a connection is answered on it (its source address is the key,
  RFC 3261 §18.2.2), and :meth:`TcpTransport.send` reuses a live connection to the
  destination before opening a new one (RFC 3261 §18.1.1). Bytes sent while the connect
  runs wait on the connection (bounded like its write buffer).
* Every bound is in :class:`TcpLimits` and ``docs/limits.md``: connections, idle seconds,
  bytes buffered per connection (reading: one unfinished message; writing: the write buffer).
* Destinations are IP literals; the runtime resolves names before it sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

from reference.effects import Address
from reference.sip.errors import SipParseError
from reference.sip.limits import DEFAULT_LIMITS, ParseLimits
from reference.sip.stream import StreamFramer

__all__ = ["TcpCounters", "TcpLimits", "TcpTransport"]

log = logging.getLogger("reference.tcp")

MessageCallback = Callable[[bytes, Address], None]
LostCallback = Callable[[Address], None]


@dataclass(frozen=True)
class TcpLimits:
    """Bounds of the TCP transport (counts, seconds, bytes).

    * ``max_connections`` (1,024): open connections, both directions. An incoming one beyond
      it is closed at once; a send that would need one more fails (``on_lost``).
    * ``idle_timeout`` (300 s): a connection with no byte in either direction for this long
      is closed (swept every quarter of it).
    * ``max_write_buffer`` (1,048,576 bytes): bytes queued for one connection (before and
      after the connect); beyond it the connection is closed (``on_lost``): its peer is not
      reading.
    * ``connect_timeout`` (10 s): an outgoing connect that takes longer fails.
    * reading is bounded by the framer: one unfinished message of at most
      ``ParseLimits.max_message_bytes`` (65,535 bytes) per connection.
    """

    max_connections: int = 1024
    idle_timeout: float = 300.0
    max_write_buffer: int = 1048576
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.max_write_buffer < 1:
            raise ValueError("TcpLimits counts must be >= 1")
        if not self.idle_timeout > 0 or not self.connect_timeout > 0:
            raise ValueError("TcpLimits times must be > 0")


@dataclass
class TcpCounters:
    accepted: int = 0
    connected: int = 0
    refused: int = 0  # incoming beyond max_connections
    connect_failures: int = 0
    closed_idle: int = 0
    framing_errors: int = 0
    write_overflows: int = 0
    messages_in: int = 0
    messages_out: int = 0
    pings: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class _Connection(asyncio.Protocol):
    """One TCP connection: framing in, buffering out, and its bookkeeping."""

    def __init__(self, owner: TcpTransport, peer: Address | None) -> None:
        self.owner = owner
        self.peer = peer
        self.transport: asyncio.Transport | None = None
        self.framer = StreamFramer(owner.parse_limits)
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.last_activity = owner.loop.time()
        self.lost = False

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's TCP transport is not an asyncio.Transport subclass, but is one in kind.)
        self.transport = cast(asyncio.Transport, transport)
        self.last_activity = self.owner.loop.time()
        if self.peer is None:  # incoming
            peername = self.transport.get_extra_info("peername")
            self.peer = (str(peername[0]), int(peername[1]))
            if not self.owner._adopt(self):
                self.transport.abort()
                return
        for data in self.pending:
            self.transport.write(data)
        self.pending = []
        self.pending_bytes = 0

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.owner.loop.time()
        owner = self.owner
        try:
            messages = self.framer.feed(data)
        except SipParseError as exc:
            owner.counters.framing_errors += 1
            log.info("closing TCP connection from %s: %s", self.peer, exc)
            self.close()
            return
        if self.framer.pings:
            owner.counters.pings += self.framer.pings
            self.framer.pings = 0
            if self.transport is not None:
                self.transport.write(b"\r\n")  # RFC 5626 §4.4.1 pong
        assert self.peer is not None
        for message in messages:
            owner.counters.messages_in += 1
            owner.on_message(message, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._forget(self)

    # -- ours
    def write(self, data: bytes) -> None:
        self.last_activity = self.owner.loop.time()
        limit = self.owner.limits.max_write_buffer
        if self.transport is None:
            if self.pending_bytes + len(data) > limit:
                self.owner.counters.write_overflows += 1
                self.close()
                return
            self.pending.append(data)
            self.pending_bytes += len(data)
            return
        if self.transport.get_write_buffer_size() + len(data) > limit:
            self.owner.counters.write_overflows += 1
            self.close()
            return
        self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()  # connection_lost follows and forgets us
        else:
            self.owner._forget(self)


class TcpTransport:
    """Listening socket, connection table and sends for one runtime (see the module rules)."""

    def __init__(self, on_message: MessageCallback, on_lost: LostCallback, *,
                 limits: TcpLimits | None = None,
                 parse_limits: ParseLimits = DEFAULT_LIMITS) -> None:
        self.loop = asyncio.get_running_loop()
        self.on_message = on_message
        self.on_lost = on_lost
        self.limits = limits or TcpLimits()
        self.parse_limits = parse_limits
        self.counters = TcpCounters()
        self.connections: dict[Address, _Connection] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False
        self.local_address: Address | None = None

    async def listen(self, host: str = "127.0.0.1", port: int = 0) -> Address:
        """Accept connections on ``host:port`` (0: any free port); the bound address."""
        self._server = await self.loop.create_server(
            lambda: _Connection(self, None), host, port)
        sockname = self._server.sockets[0].getsockname()
        self.local_address = (str(sockname[0]), int(sockname[1]))
        self._arm_sweep()
        return self.local_address

    def send(self, data: bytes, destination: Address) -> None:
        """Write one message to ``destination`` on its connection, opening one if needed."""
        if self._closed:
            return
        self.counters.messages_out += 1
        connection = self.connections.get(destination)
        if connection is None:
            if len(self.connections) >= self.limits.max_connections:
                self.counters.connect_failures += 1
                self.loop.call_soon(self.on_lost, destination)
                return
            connection = _Connection(self, destination)
            self.connections[destination] = connection
            self._spawn(self._connect(connection, destination))
            self._arm_sweep()
        connection.write(data)

    def has_connection(self, destination: Address) -> bool:
        return destination in self.connections

    async def _connect(self, connection: _Connection, destination: Address) -> None:
        try:
            await asyncio.wait_for(self.loop.create_connection(
                lambda: connection, destination[0], destination[1]),
                self.limits.connect_timeout)
            self.counters.connected += 1
        except (TimeoutError, OSError) as exc:
            self.counters.connect_failures += 1
            log.info("TCP connect to %s failed: %s", destination, exc)
            connection.close()

    def _adopt(self, connection: _Connection) -> bool:
        assert connection.peer is not None
        if self._closed or len(self.connections) >= self.limits.max_connections:
            self.counters.refused += 1
            connection.lost = True
            return False
        old = self.connections.get(connection.peer)
        if old is not None:
            old.close()
        self.connections[connection.peer] = connection
        self.counters.accepted += 1
        return True

    def _forget(self, connection: _Connection) -> None:
        if connection.lost:
            return
        connection.lost = True
        peer = connection.peer
        if peer is not None and self.connections.get(peer) is connection:
            del self.connections[peer]
            self.on_lost(peer)

    def _arm_sweep(self) -> None:
        if self._sweep is None and not self._closed:
            self._sweep = self.loop.call_later(self.limits.idle_timeout / 4, self._sweep_idle)

    def _sweep_idle(self) -> None:
        self._sweep = None
        cutoff = self.loop.time() - self.limits.idle_timeout
        for connection in list(self.connections.values()):
            if connection.last_activity <= cutoff:
                self.counters.closed_idle += 1
                connection.close()
        if self.connections or self._server is not None:
            self._arm_sweep()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """Stop listening and close every connection (no ``on_lost`` any more)."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections.values()):
            connection.lost = True
            if connection.transport is not None:
                connection.transport.abort()
        self.connections.clear()
        for task in self._tasks:
            task.cancel()

    async def wait_closed(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
