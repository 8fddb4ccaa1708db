"""asyncio runtime: one UDP socket (and, with `transports: udp,tcp`, a TCP listener on the
same port, `reference.tcp`) driving the sans-IO `Agent`.

The runtime adds its clock (`now = loop.time()`, monotonic) and its wire to the shared
`EffectPump` (docs/architecture.md): datagrams go into the core, and the effects it emits come
out as `sendto` calls (those caused by one batch of received datagrams leave together at its
end), per-destination `MessageQueue`s with listener callbacks, and an optional JSON-lines
trace file; the core's timers cost one `loop.call_at`, armed for `Agent.next_deadline()`.
Nothing here decides SIP behaviour or reads the bytes the core built.

Everything is bounded: the resolver cache, the datagrams waiting for a name to resolve, the
queues (by the agent's `queue_bound`), the send backlog, the rate of error answers (a token
bucket, so a flood cannot use the agent as a reflector), and the shutdown wait
(`wait_for_term_notify` plus a small grace period). docs/limits.md lists them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import json
import logging
import math
import signal
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from reference.agent import Agent
from reference.config import AgentConfig
from reference.credentials import CredentialStore
from reference.effects import Address, TraceEvent
from reference.ids import OsRandomIds
from reference.pump import EffectPump
from reference.qsa import MessageQueue, StatusMessage
from reference.tcp import TcpLimits, TcpTransport

log = logging.getLogger("reference.udp")

# Seconds a resolved (or failed) host name stays cached.
RESOLVE_TTL = 300.0
NEGATIVE_TTL = 30.0
# Host names cached at most; the oldest entry goes first.
RESOLVE_CACHE_SIZE = 1024
# Datagrams held per host name while its lookup runs; beyond it they are dropped (counted).
MAX_PENDING_PER_HOST = 64
# Datagrams read per socket wakeup before other callbacks get a turn.
MAX_READ_BATCH = 64
MAX_DATAGRAM = 65535
# Datagrams waiting for the kernel send buffer to drain; beyond it they are dropped (counted).
MAX_SEND_BACKLOG = 4096
# Destinations remembered as gone (remove_listener(discard=True)); the oldest is forgotten.
MAX_DISCARDED = 10000
# Extra seconds a graceful shutdown waits beyond `wait_for_term_notify`.
SHUTDOWN_GRACE = 1.0
# Error answers (400, 416, 481, 505) sent per second at most, and the burst allowed above it.
# Beyond it they are dropped (counted in `answers_rate_limited`): a flood of NOTIFYs for
# unknown dialogs (or of garbage with a spoofed source) must not make this agent a reflector.
# A dropped answer costs a real notifier nothing: it retransmits and gets the answer later,
# or its NOTIFY times out, which ends the dialog just as a 481 would (RFC 6665 §4.2.2).
ERROR_ANSWER_RATE = 1000.0
ERROR_ANSWER_BURST = 2000
# Kernel receive buffer asked for (the kernel caps it at net.core.rmem_max): room for bursts
# while the agent is busy; what still overflows is dropped by the kernel, not by us.
RECEIVE_BUFFER = 4 * 1024 * 1024
# Port pairs tried by `open` with port 0 and TCP on: the free UDP port the OS picks may be
# taken on TCP; eight collisions in a row would mean the ephemeral range is nearly full.
PORT_PAIR_ATTEMPTS = 8
# Datagrams read before the answers they caused are sent (see `_read_ready`): enough that
# one peer wakeup serves several answers, few enough that the peer gets work back before
# the agent runs dry (a whole 64-datagram batch measured no better, 4 measured worse).
SEND_BATCH = 8
# Timers fired per loop wakeup at most, so a callback that keeps arming due timers cannot
# starve the socket.
MAX_TIMER_BATCH = 1024
# Seconds to wait again when the loop wakes the agent before its deadline (uvloop's
# millisecond clock does; see `_on_wakeup`): one tick of that clock.
EARLY_WAKE_RETRY = 0.001
# Host strings remembered as "IP literal or not" (they come off the wire: bounded).
LITERAL_CACHE_SIZE = 4096

StatusListener = Callable[[StatusMessage], None]


@dataclass
class RuntimeCounters:
    """What the runtime itself saw (the agent has its own `counters`)."""

    datagrams_received: int = 0
    datagrams_sent: int = 0
    send_errors: int = 0
    resolve_failures: int = 0
    pending_dropped: int = 0
    socket_errors: int = 0
    timers_fired: int = 0
    statuses_delivered: int = 0
    statuses_discarded: int = 0
    trace_records: int = 0
    answers_rate_limited: int = 0

    def as_dict(self) -> dict[str, int]:
        # asdict, not __dict__: a compiled (mypyc) instance has none.
        return asdict(self)


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; `take` spends one if there is one."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated = now

    def take(self, now: float) -> bool:
        elapsed = now - self.updated
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class _Resolved:
    address: Address | None  # None: the lookup failed
    until: float


@dataclass
class _Pending:
    # (message, port, transport) waiting for the host name's lookup.
    datagrams: list[tuple[bytes, int, str]] = field(default_factory=list)


class UdpRuntime:
    """Drive one `Agent` from one UDP socket. Create with `await UdpRuntime.open(...)`."""

    def __init__(self, agent: Agent, sock: socket.socket,
                 *, trace_path: str | Path | None = None,
                 error_answer_rate: float = ERROR_ANSWER_RATE,
                 error_answer_burst: int = ERROR_ANSWER_BURST) -> None:
        self.agent = agent
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self._answer_bucket = TokenBucket(error_answer_rate, error_answer_burst,
                                          self.loop.time())
        self._backlog: deque[tuple[bytes, Address]] = deque()
        # While a read batch runs, the datagrams it produces wait here and go out together
        # at its end (see `_read_ready`).
        self._outbox: list[tuple[bytes, Address]] | None = None
        self.counters = RuntimeCounters()
        self.queues: dict[str, MessageQueue] = {}
        self._listeners: dict[str, StatusListener] = {}
        self._discarded: dict[str, None] = {}  # insertion-ordered set, bounded
        # One loop timer (`_wakeup`) for the agent's next deadline.
        self._wakeup: asyncio.TimerHandle | None = None
        self._wakeup_at = math.inf
        # Called with (now, the agent's next deadline) at each wake-up, before the core's
        # timers fire (tests and tools watch the wake-ups through it; nothing patches the
        # agent).
        self.wake_observer: Callable[[float, float | None], None] | None = None
        self._pump = EffectPump(agent, _RuntimeWire(self))
        # Destinations that got a status during the current `_apply` (reused, not rebuilt).
        self._touched: list[str] = []
        self._resolved: dict[str, _Resolved] = {}
        self._pending: dict[str, _Pending] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._trace: IO[str] | None = (
            open(trace_path, "a", encoding="utf-8") if trace_path else None)  # noqa: SIM115
        self._closing = False
        self._signals: list[int] = []  # installed by install_signal_handlers, removed by close
        self._idle = asyncio.Event()
        self._closed = asyncio.Event()
        # The same fact as `_closed`, as a plain flag for the per-datagram paths (an Event's
        # is_set is a Python call).
        self._is_closed = False
        # AF_INET gives (host, port) already; AF_INET6 adds flow info and scope id.
        self._two_part_addresses = sock.family == socket.AF_INET
        sockname = sock.getsockname()
        self.local_address: Address = (str(sockname[0]), int(sockname[1]))
        # The TCP side (transports: udp,tcp), started by `open` on the same port.
        self.tcp: TcpTransport | None = None
        self.loop.add_reader(sock.fileno(), self._read_ready)

    # ------------------------------------------------------------------ creation
    @classmethod
    async def open(cls, config: AgentConfig, host: str = "127.0.0.1", port: int = 5060, *,
                   advertise_bound_address: bool = True,
                   trace_path: str | Path | None = None,
                   error_answer_rate: float = ERROR_ANSWER_RATE,
                   error_answer_burst: int = ERROR_ANSWER_BURST,
                   tcp_limits: TcpLimits | None = None,
                   credentials: CredentialStore | None = None) -> UdpRuntime:
        """Bind `host:port` (port 0: any free port) and build the agent; with
        `config.transports` "udp,tcp" listen on TCP at the same address too (`tcp_limits`).

        With `advertise_bound_address` the agent's `local_address` (Via, Contact) becomes the
        bound address; a wildcard bind advertises 127.0.0.1 (set `local_address` explicitly
        to be reachable from elsewhere). Raises OSError when the port is taken.
        `error_answer_rate`/`error_answer_burst` bound the error answers (see above).
        """
        attempts = PORT_PAIR_ATTEMPTS if port == 0 else 1
        for attempt in range(1, attempts + 1):
            try:
                return await cls._open_once(
                    config, host, port, advertise_bound_address=advertise_bound_address,
                    trace_path=trace_path, error_answer_rate=error_answer_rate,
                    error_answer_burst=error_answer_burst, tcp_limits=tcp_limits,
                    credentials=credentials)
            except OSError as exc:
                # Port 0 with TCP: the free UDP port the OS picked may be taken on TCP (an
                # outgoing connection's local port, say); another free port pair is tried.
                if exc.errno != errno.EADDRINUSE or attempt == attempts:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    @classmethod
    async def _open_once(cls, config: AgentConfig, host: str, port: int, *,
                         advertise_bound_address: bool, trace_path: str | Path | None,
                         error_answer_rate: float, error_answer_burst: int,
                         tcp_limits: TcpLimits | None,
                         credentials: CredentialStore | None) -> UdpRuntime:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        if not infos:  # pragma: no cover - getaddrinfo raises instead
            raise OSError(f"cannot resolve {host}")
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            sock.bind(sockaddr)
        except BaseException:
            sock.close()
            raise
        sock_host, sock_port = sock.getsockname()[:2]
        if advertise_bound_address:
            shown = str(sock_host)
            if shown in ("0.0.0.0", "::"):
                log.warning("listening on a wildcard address; Contact advertises 127.0.0.1 "
                            "(set local_address to be reachable from elsewhere)")
                shown = "127.0.0.1"
            if ":" in shown:
                shown = f"[{shown}]"
            config = config.replace(local_address=f"{shown}:{sock_port}")
        try:
            # A real network: identifiers from the OS CSPRNG, never from the seed.
            agent = Agent(config, ids=OsRandomIds(), credentials=credentials)
            runtime = cls(agent, sock, trace_path=trace_path,
                          error_answer_rate=error_answer_rate,
                          error_answer_burst=error_answer_burst)
        except BaseException:
            sock.close()
            raise
        if agent.tcp_enabled:
            try:
                await runtime.start_tcp(str(sock_host), int(sock_port), tcp_limits)
            except BaseException:
                runtime.close()
                raise
        return runtime

    async def start_tcp(self, host: str, port: int, limits: TcpLimits | None = None) -> None:
        """Listen on TCP `host:port` (RFC 3261 §18: a UA that sends over TCP receives on
        it too); messages and lost connections go into the agent."""
        self.tcp = TcpTransport(self._stream_message, self._stream_lost, limits=limits)
        await self.tcp.listen(host, port)

    # ------------------------------------------------------------------ QSA side
    def subscribe(self, record: str, subscriber: str, destination: str,
                  package: str = "presence", subscriber_data: Any = None) -> int:
        """QSA subscribe (raises ValueError like `Agent.subscribe`)."""
        handle = self.agent.subscribe(record, subscriber, destination, package,
                                      subscriber_data, now=self.loop.time())
        self._apply()
        return handle

    def fetch(self, record: str, subscriber: str, destination: str,
              package: str = "presence", subscriber_data: Any = None) -> int:
        """QSA fetch (raises ValueError like `Agent.fetch`)."""
        handle = self.agent.fetch(record, subscriber, destination, package,
                                  subscriber_data, now=self.loop.time())
        self._apply()
        return handle

    def unsubscribe(self, handle: int) -> None:
        self.agent.unsubscribe(handle, now=self.loop.time())
        self._apply()

    def add_listener(self, destination: str, listener: StatusListener) -> None:
        """Call `listener` for every status message delivered to `destination` (queued
        messages first). One listener per destination."""
        self._listeners[destination] = listener
        self._flush(destination)

    def remove_listener(self, destination: str, *, discard: bool = False) -> None:
        """Stop calling the destination's listener. With `discard` its queue goes too and
        later messages to it are dropped (counted): for a consumer that is gone for good,
        such as a closed control connection whose subscriptions are being ended."""
        self._listeners.pop(destination, None)
        if discard:
            self.queues.pop(destination, None)
            if len(self._discarded) >= MAX_DISCARDED:
                self._discarded.pop(next(iter(self._discarded)))
            self._discarded[destination] = None

    def queue(self, destination: str) -> MessageQueue:
        queue = self.queues.get(destination)
        if queue is None:
            queue = self.queues[destination] = MessageQueue(bound=self.agent.config.queue_bound)
        return queue

    def stats(self) -> dict[str, Any]:
        """Agent counters grouped for people: by method, by status, errors, queues."""
        stats = self.agent.stats()
        counters = stats.pop("counters")
        return {
            **stats,
            "queue_depth": {name: len(q) for name, q in self.queues.items()},
            "queue_depth_total": sum(len(q) for q in self.queues.values()),
            "answers_rate_limited": self.counters.answers_rate_limited,
            "runtime": self.counters.as_dict(),
            **({} if self.tcp is None else {"tcp": self.tcp.counters.as_dict()}),
            "counters": counters,
        }

    # ------------------------------------------------------------------ shutdown
    async def shutdown(self) -> None:
        """Graceful: `agent.close`, then run until idle or `wait_for_term_notify` (+1 s)."""
        if not self._closing:
            self._closing = True
            self.agent.close(now=self.loop.time())
            self._apply()
            limit = self.agent.config.wait_for_term_notify + SHUTDOWN_GRACE
            if not self.agent.is_idle:
                try:
                    await asyncio.wait_for(self._idle.wait(), timeout=limit)
                except TimeoutError:
                    log.warning("shutdown: %d subscription(s) still live after %.1f s",
                                self.agent.subscription_count, limit)
            self.close()
        await self._closed.wait()

    def close(self) -> None:
        """Immediate: cancel timers and lookups, close the socket and the trace file."""
        if self._outbox:  # closed from inside a read batch: its answers still go out first
            outbox, self._outbox = self._outbox, None
            self._send_batch(outbox)
            outbox.clear()
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None
        # Give SIGINT/SIGTERM back (SIGINT raises KeyboardInterrupt again): a runtime closed
        # inside a longer-lived process must not leave its handlers on the loop.
        for signum in self._signals:
            self.loop.remove_signal_handler(signum)
        self._signals.clear()
        for task in list(self._tasks):
            task.cancel()
        if self.tcp is not None:
            self.tcp.close()
        if not self._is_closed:
            self.loop.remove_reader(self.sock.fileno())
            if self._backlog:
                self.loop.remove_writer(self.sock.fileno())
                self._backlog.clear()
            self.sock.close()
        if self._trace is not None:
            self._trace.close()
            self._trace = None
        self._is_closed = True
        self._closed.set()

    @property
    def closed(self) -> bool:
        return self._is_closed

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM start a graceful shutdown (a second signal closes at once)."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.loop.add_signal_handler(signum, self._on_signal, signum)
            self._signals.append(signum)

    def _on_signal(self, signum: int) -> None:
        if self._closing:
            log.warning("second %s: closing now", signal.Signals(signum).name)
            self.close()
            return
        log.info("%s: shutting down gracefully", signal.Signals(signum).name)
        self._spawn(self.shutdown())

    # ------------------------------------------------------------------ inputs
    def _read_ready(self) -> None:
        # Several datagrams per wakeup (bounded, so timers and the control socket still run).
        # Their answers are sent together, every SEND_BATCH datagrams and at the end: a
        # `sendto` that wakes a sleeping peer costs several times one to a peer already
        # awake (measured ~13 us more here), so one wakeup serves several answers. The delay
        # is bounded by SEND_BATCH datagrams' work (under a millisecond), far below any SIP
        # timer; the order is kept.
        if self._is_closed:
            return
        outbox: list[tuple[bytes, Address]] = []
        self._outbox = outbox
        try:
            self._read_batch(outbox)
        finally:
            self._outbox = None
            if outbox:
                self._send_batch(outbox)

    def _flush_outbox(self, outbox: list[tuple[bytes, Address]]) -> None:
        self._outbox = None
        self._send_batch(outbox)
        outbox.clear()
        self._outbox = outbox

    def _read_batch(self, outbox: list[tuple[bytes, Address]]) -> None:
        # This runs once per datagram: the calls it makes are bound once per batch.
        recvfrom = self.sock.recvfrom
        datagram_received = self.agent.datagram_received
        pump = self._pump.pump
        clock = self.loop.time
        counters = self.counters
        two_part = self._two_part_addresses
        for count in range(1, MAX_READ_BATCH + 1):
            try:
                data, addr = recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # ICMP errors (port unreachable) surface here on Linux: the transaction
                # layer retransmits or times out, so this is only counted.
                counters.socket_errors += 1
                log.debug("socket error: %s", exc)
                return
            counters.datagrams_received += 1
            datagram_received(data, addr if two_part else (addr[0], addr[1]), now=clock())
            pump()  # `_apply`, inlined
            if self._touched or self._closing:
                self._after_effects()
            if self._is_closed:  # a listener closed the runtime
                return
            if count % SEND_BATCH == 0 and outbox:
                self._flush_outbox(outbox)

    def _on_wakeup(self) -> None:
        # The earliest deadline came up: the core fires what is due (at most
        # MAX_TIMER_BATCH; the rest re-arms the wake-up at once) and the pump re-arms.
        if self._is_closed:
            self._wakeup, self._wakeup_at = None, math.inf
            return
        now = self.loop.time()
        if now < self._wakeup_at:
            # Early: uvloop keeps its clock and timers in whole milliseconds, so a deadline
            # between two ticks comes up to a tick early. Wait a tick, not wake the core.
            self._wakeup = self.loop.call_later(EARLY_WAKE_RETRY, self._on_wakeup)
            return
        self._wakeup, self._wakeup_at = None, math.inf
        if self.wake_observer is not None:
            self.wake_observer(now, self.agent.next_deadline())
        self.counters.timers_fired += self._pump.wake(now, MAX_TIMER_BATCH)
        self._after_effects()

    def _arm(self, at: float | None) -> None:
        # An armed wake-up at or before `at` is kept: waking early fires nothing.
        if at is None or at >= self._wakeup_at or self._is_closed:
            return
        if self._wakeup is not None:
            self._wakeup.cancel()
        self._wakeup_at = at
        self._wakeup = self.loop.call_at(at, self._on_wakeup)

    # ------------------------------------------------------------------ effects
    def _apply(self) -> None:
        self._pump.pump()
        if self._touched or self._closing:
            self._after_effects()

    def _after_effects(self) -> None:
        touched = self._touched
        if touched:
            for destination in touched:
                self._flush(destination)
            touched.clear()
        if self._closing and self.agent.is_idle:
            self._idle.set()

    def _stream_message(self, data: bytes, peer: Address) -> None:
        self.agent.datagram_received(data, peer, now=self.loop.time(), transport="tcp")
        self._apply()

    def _stream_lost(self, peer: Address) -> None:
        if self.closed:
            return
        self.agent.transport_lost(peer, now=self.loop.time())
        self._apply()

    def _send_stream_effect(self, data: bytes, destination: Address, transport: str) -> None:
        self._send(data, destination, transport)

    def _send_effect(self, data: bytes, destination: Address, error_answer: bool) -> None:
        if error_answer and not self._answer_bucket.take(self.loop.time()):
            self.counters.answers_rate_limited += 1
            return
        outbox = self._outbox
        if outbox is not None and not self._is_closed:
            # Inside a read batch (an answer, the common case): an IP literal goes
            # straight into the outbox, as `_send` -> `_transmit` -> `_sendto` would put it.
            literal = _ip_literal(destination[0])
            if literal is not None:
                outbox.append((data, (literal, destination[1])))
                return
        self._send(data, destination)

    def _deliver_effect(self, destination: str, message: StatusMessage) -> None:
        if destination in self._discarded:
            self.counters.statuses_discarded += 1
            return
        queue = self.queues.get(destination)
        (self.queue(destination) if queue is None else queue).put(message)
        self.counters.statuses_delivered += 1
        if destination not in self._touched:
            self._touched.append(destination)

    def _flush(self, destination: str) -> None:
        listener = self._listeners.get(destination)
        queue = self.queues.get(destination)
        if listener is None or queue is None:
            return
        while (message := queue.pop()) is not None:
            try:
                listener(message)
            except Exception:  # a broken consumer must not stop the agent
                log.exception("status listener for %s failed", destination)

    def _write_trace(self, event: TraceEvent) -> None:
        if self._trace is None:
            return
        record: dict[str, Any] = {"time": round(event.time, 6), "kind": event.kind}
        for name, value in event.fields.items():
            record[name if name not in record else f"field_{name}"] = value
        self._trace.write(json.dumps(record, default=str, separators=(",", ":")) + "\n")
        self._trace.flush()
        self.counters.trace_records += 1

    # ------------------------------------------------------------------ sending
    def _send(self, data: bytes, destination: Address, transport: str = "udp") -> None:
        if self.closed:
            return
        host, port = destination
        literal = _ip_literal(host)
        if literal is not None:
            self._transmit(data, (literal, port), transport)
            return
        now = self.loop.time()
        cached = self._resolved.get(host)
        if cached is not None and cached.until > now:
            if cached.address is None:
                self.counters.resolve_failures += 1
                log.warning("dropping datagram to %s:%d: host name does not resolve", host, port)
                if transport != "udp":
                    self._stream_lost((host, port))
            else:
                self._transmit(data, (cached.address[0], port), transport)
            return
        pending = self._pending.get(host)
        if pending is not None:
            if len(pending.datagrams) >= MAX_PENDING_PER_HOST:
                self.counters.pending_dropped += 1
                log.warning("dropping datagram to %s: too many waiting for its lookup", host)
            else:
                pending.datagrams.append((data, port, transport))
            return
        self._pending[host] = _Pending([(data, port, transport)])
        self._spawn(self._resolve(host))

    def _transmit(self, data: bytes, address: Address, transport: str) -> None:
        if transport == "udp":
            self._sendto(data, address)
        elif self.tcp is not None:
            self.tcp.send(data, address)
        else:  # pragma: no cover - the agent sends over TCP only when the runtime runs it
            self.counters.send_errors += 1

    async def _resolve(self, host: str) -> None:
        address: Address | None = None
        try:
            infos = await self.loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM,
                                                family=self.sock.family)
            if infos:
                address = (str(infos[0][4][0]), 0)
        except OSError as exc:
            log.warning("cannot resolve %s: %s", host, exc)
        now = self.loop.time()
        if len(self._resolved) >= RESOLVE_CACHE_SIZE:
            self._resolved.pop(next(iter(self._resolved)))
        ttl = RESOLVE_TTL if address is not None else NEGATIVE_TTL
        self._resolved[host] = _Resolved(address, now + ttl)
        pending = self._pending.pop(host, _Pending())
        for data, port, transport in pending.datagrams:
            if address is None:
                self.counters.resolve_failures += 1
            else:
                self._transmit(data, (address[0], port), transport)

    def _sendto(self, data: bytes, address: Address) -> None:
        if self._outbox is not None:
            self._outbox.append((data, address))
            return
        if self._is_closed:
            return
        if self._backlog:  # keep the order behind what is already waiting
            self._queue_send(data, address)
            return
        try:
            self.sock.sendto(data, address)
            self.counters.datagrams_sent += 1
        except (BlockingIOError, InterruptedError):
            self._queue_send(data, address)
            self.loop.add_writer(self.sock.fileno(), self._write_ready)
        except OSError as exc:
            self.counters.send_errors += 1
            log.warning("sendto %s:%d failed: %s", address[0], address[1], exc)

    def _send_batch(self, outbox: list[tuple[bytes, Address]]) -> None:
        # `_sendto` for each datagram of a read batch (`_outbox` is None here), with its
        # common case (no backlog, the kernel takes it) in one loop.
        if self._backlog or self._is_closed:
            for data, address in outbox:
                self._sendto(data, address)
            return
        sendto = self.sock.sendto
        counters = self.counters
        for index, (data, address) in enumerate(outbox):
            try:
                sendto(data, address)
            except (BlockingIOError, InterruptedError):
                # The kernel buffer is full: this one and the rest wait, in order.
                for waiting in outbox[index:]:
                    self._queue_send(*waiting)
                self.loop.add_writer(self.sock.fileno(), self._write_ready)
                return
            except OSError as exc:
                counters.send_errors += 1
                log.warning("sendto %s:%d failed: %s", address[0], address[1], exc)
            else:
                counters.datagrams_sent += 1

    def _queue_send(self, data: bytes, address: Address) -> None:
        if len(self._backlog) >= MAX_SEND_BACKLOG:
            self.counters.send_errors += 1
            log.warning("send buffer full: dropping a datagram to %s:%d", *address)
            return
        self._backlog.append((data, address))

    def _write_ready(self) -> None:
        while self._backlog:
            data, address = self._backlog[0]
            try:
                self.sock.sendto(data, address)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.counters.send_errors += 1
                log.warning("sendto %s:%d failed: %s", address[0], address[1], exc)
            else:
                self.counters.datagrams_sent += 1
            self._backlog.popleft()
        self.loop.remove_writer(self.sock.fileno())

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _RuntimeWire:
    """The runtime's side of the shared effect pump (reference.pump.Wire)."""

    __slots__ = ("arm", "deliver", "send", "send_stream", "trace")

    def __init__(self, runtime: UdpRuntime) -> None:
        self.send = runtime._send_effect
        self.send_stream = runtime._send_stream_effect
        self.deliver = runtime._deliver_effect
        self.trace = runtime._write_trace
        self.arm = runtime._arm


@functools.lru_cache(maxsize=LITERAL_CACHE_SIZE)
def _ip_literal(host: str) -> str | None:
    """`host` without IPv6 brackets if it is an IP address, else None (a name to resolve).
    Cached: the same few peers come back on every datagram, and parsing costs microseconds."""
    literal = host.strip("[]")
    try:
        ipaddress.ip_address(literal)
    except ValueError:
        return None
    return literal
