"""Binds a ``reference.Agent`` to the simulated network.

The host adds only its clock (``env.now``) and its wire to the shared ``EffectPump``:
datagrams become agent inputs, the agent's effects become datagrams, deliveries and trace
records, and the core's timers cost one SimPy wake-up per host, armed for
``Agent.next_deadline()`` (no process and no SimPy event per timer).

When the run models TCP (``simulator.streams``), an agent running ``transports: udp,tcp``
accepts connections: messages from them reach the agent with ``transport="tcp"``, its
``send_stream`` effects go on them, and a lost connection is ``Agent.transport_lost`` for
every address the agent sent on it.

A benchmark may set ``AgentHost.clock`` (e.g. ``time.perf_counter``): every call into the
agent is then timed (``agent_seconds``, ``agent_calls``). Unset, no clock is read: a
simulation stays free of wall time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from reference import Agent, AgentConfig, EffectPump, MessageQueue, StatusMessage, TraceEvent
from reference.ids import SeededIds
from simulator.network import NORMAL_PRIORITY, Address, Network
from simulator.streams import StreamLayer
from simulator.timers import Wakeup
from simulator.trace import TraceWriter

MAX_AGENTS = 16  # subscription ids are handle * MAX_AGENTS + agent index


class DeliverySink(Protocol):
    def delivered(self, sid: int, record: str, status: str, now: float) -> None: ...


class AgentHost:
    """One agent node. Deliveries go to ``sink`` and, if ``keep_queues``, to MessageQueues."""

    def __init__(
        self,
        env: Any,
        network: Network,
        name: str,
        address: Address,
        config: AgentConfig,
        *,
        sink: DeliverySink | None = None,
        trace: TraceWriter | None = None,
        keep_queues: bool = False,
        aliases: tuple[str, ...] = (),
        index: int = 0,
        streams: StreamLayer | None = None,
    ) -> None:
        if not 0 <= index < MAX_AGENTS:
            raise ValueError(f"agent index must be in 0..{MAX_AGENTS - 1}")
        self.env = env
        self.network = network
        self.name = name
        self.index = index
        self.address = address
        # Seeded identifiers: a simulation replays byte-identically (never on a real network).
        self.agent = Agent(config, ids=SeededIds(config.seed))
        self.sink = sink
        self.trace_writer = trace
        self.keep_queues = keep_queues
        self.queues: dict[str, MessageQueue] = {}
        self.deliveries = 0
        # The one SimPy wake-up armed for the agent's next deadline, and its time. A
        # wake-up that was superseded fires into a no-op.
        self._wakeup: Wakeup | None = None
        self._wakeup_at = 0.0
        self._pump = EffectPump(self.agent, self)
        self.clock: Callable[[], float] | None = None
        self.agent_seconds = 0.0
        self.agent_calls = 0
        network.add_node(name, address, self._datagram_received, aliases=aliases)
        # Issue 17: the stream layer, when the run models TCP; the agent accepts connections
        # only when it runs TCP (transports udp,tcp). Addresses it sent on each connection,
        # for transport_lost; status messages of other packages than presence.
        self.streams = streams
        self._stream_destinations: dict[int, dict[Address, None]] = {}
        self.package_deliveries: dict[str, int] = {}
        if streams is not None and self.agent.tcp_enabled:
            streams.listen(name, self._stream_received, self._connection_lost)

    # -- inputs -----------------------------------------------------------------------------

    def subscribe(
        self, record: str, subscriber: str, destination: str, package: str = "presence"
    ) -> int:
        clock = self.clock
        started = 0.0 if clock is None else clock()
        handle = self.agent.subscribe(record, subscriber, destination, package, now=self.env.now)
        if clock is not None:
            self._timed(clock() - started)
        self._pump.pump()
        return handle

    def subscription_id(self, handle: int) -> int:
        """A run-wide id for one of this agent's handles (handles repeat across agents)."""
        return handle * MAX_AGENTS + self.index

    def unsubscribe(self, handle: int) -> None:
        clock = self.clock
        started = 0.0 if clock is None else clock()
        self.agent.unsubscribe(handle, now=self.env.now)
        if clock is not None:
            self._timed(clock() - started)
        self._pump.pump()

    def close(self) -> None:
        self.agent.close(now=self.env.now)
        self._pump.pump()

    def _datagram_received(self, data: bytes, source: Address) -> None:
        clock = self.clock
        if clock is None:
            self.agent.datagram_received(data, source, now=self.env.now)
        else:
            started = clock()
            self.agent.datagram_received(data, source, now=self.env.now)
            self._timed(clock() - started)
        self._pump.pump()

    def _stream_received(self, data: bytes, source: Address) -> None:
        """One message from a connection (simulator.streams)."""
        self.agent.datagram_received(data, source, now=self.env.now, transport="tcp")
        self._pump.pump()

    def _connection_lost(self, peer: Address, connection: int) -> None:
        """A connection ended: the transactions the agent sent on it fail (to every address
        it used for that peer, and the peer's own)."""
        addresses = self._stream_destinations.pop(connection, {})
        addresses.setdefault(peer, None)
        for address in addresses:
            self.agent.transport_lost(address, now=self.env.now)
        self._pump.pump()

    def _woken(self, wakeup: Wakeup) -> None:
        if wakeup is not self._wakeup:
            return  # superseded by an earlier one
        self._wakeup = None
        clock = self.clock
        if clock is None:
            self._pump.wake(self.env.now)
            return
        self._pump.disarm()  # what `wake` does first, with the agent's part timed
        started = clock()
        self.agent.handle_timers(self.env.now)
        self._timed(clock() - started)
        self._pump.pump()

    def _timed(self, seconds: float) -> None:
        self.agent_seconds += seconds
        self.agent_calls += 1

    # -- the wire (reference.pump.Wire) -----------------------------------------------------

    def arm(self, at: float | None) -> None:
        # A wake-up already armed at or before `at` is kept: waking early fires nothing
        # and re-arms, which costs less than a SimPy event per moved deadline.
        if at is None or (self._wakeup is not None and self._wakeup_at <= at):
            return
        wakeup = Wakeup(self._woken)
        self._wakeup = wakeup
        self._wakeup_at = at
        delay = at - self.env.now
        self.env.schedule(wakeup, NORMAL_PRIORITY, delay if delay > 0.0 else 0.0)

    def send(self, data: bytes, destination: Address, error_answer: bool) -> None:
        self.network.send(self.name, destination, data)

    def send_stream(self, data: bytes, destination: Address, transport: str) -> None:
        streams = self.streams
        if streams is None:
            # A run without the stream layer (Workload.uses_streams) is datagrams only.
            raise ValueError(f"this run models no {transport} transport (transports=udp)")
        connection = streams.send(self.name, destination, data)
        if connection:
            self._stream_destinations.setdefault(connection, {})[destination] = None
        # Refused (counted by the stream layer): the transaction ends by Timer F, which runs
        # over TCP too. (Every notifier of a run with the stream layer accepts connections.)

    def trace(self, event: TraceEvent) -> None:
        if self.trace_writer is not None:
            self.trace_writer.event(self.name, event.time, event.kind, event.fields)

    def deliver(self, destination: str, message: StatusMessage) -> None:
        self.deliveries += 1
        now = self.env.now
        if message.package != "presence":
            key = f"{message.package} {message.status}"
            self.package_deliveries[key] = self.package_deliveries.get(key, 0) + 1
        if self.sink is not None:
            sid = self.subscription_id(message.handle)
            self.sink.delivered(sid, message.record, message.status, now)
        if self.trace_writer is not None:
            self.trace_writer.delivery(self.name, now, message)
        if self.keep_queues:
            queue = self.queues.get(destination)
            if queue is None:
                queue = self.queues[destination] = MessageQueue()
            queue.put(message)

    @property
    def pending_timers(self) -> int:
        return self.agent.armed_timers
