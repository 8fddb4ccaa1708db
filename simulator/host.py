"""Binds a ``reference.Agent`` to the simulated network.

The host only translates: datagrams and timer expiries become agent inputs (with
``now = env.now``); the agent's effects become datagrams, SimPy timers, deliveries and trace
records. Timers are ``LazyTimers``: one heap of deadlines per host with one SimPy wakeup
armed, no process and no SimPy event per timer (``simulator.timers`` has the measurements).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol

from reference import (
    Agent,
    AgentConfig,
    CancelTimer,
    Deliver,
    MessageQueue,
    Send,
    StartTimer,
    StatusMessage,
    TraceEvent,
)
from reference.ids import SeededIds
from simulator.network import Address, Network
from simulator.timers import LazyTimers
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
        self.trace = trace
        self.keep_queues = keep_queues
        self.queues: dict[str, MessageQueue] = {}
        self.deliveries = 0
        self._timers = LazyTimers(env, self._timer_fired)
        network.add_node(name, address, self._datagram_received, aliases=aliases)

    # -- inputs -----------------------------------------------------------------------------

    def subscribe(self, record: str, subscriber: str, destination: str) -> int:
        handle = self.agent.subscribe(record, subscriber, destination, now=self.env.now)
        self._drain()
        return handle

    def subscription_id(self, handle: int) -> int:
        """A run-wide id for one of this agent's handles (handles repeat across agents)."""
        return handle * MAX_AGENTS + self.index

    def unsubscribe(self, handle: int) -> None:
        self.agent.unsubscribe(handle, now=self.env.now)
        self._drain()

    def close(self) -> None:
        self.agent.close(now=self.env.now)
        self._drain()

    def _datagram_received(self, data: bytes, source: Address) -> None:
        self.agent.datagram_received(data, source, now=self.env.now)
        self._drain()

    def _timer_fired(self, key: Hashable) -> None:
        self.agent.timer_fired(key, now=self.env.now)
        self._drain()

    # -- effects ----------------------------------------------------------------------------

    def _drain(self) -> None:
        # Most frequent first: timers, datagrams, cancellations, deliveries, trace events.
        timers = self._timers
        for effect in self.agent.drain_effects():
            if isinstance(effect, StartTimer):
                timers.start(effect.key, effect.at)
            elif isinstance(effect, Send):
                self.network.send(self.name, effect.destination, effect.data)
            elif isinstance(effect, CancelTimer):
                timers.cancel(effect.key)
            elif isinstance(effect, Deliver):
                self._deliver(effect.destination, effect.message)
            elif isinstance(effect, TraceEvent) and self.trace is not None:
                self.trace.event(self.name, effect.time, effect.kind, effect.fields)

    def _deliver(self, destination: str, message: StatusMessage) -> None:
        self.deliveries += 1
        now = self.env.now
        if self.sink is not None:
            sid = self.subscription_id(message.handle)
            self.sink.delivered(sid, message.record, message.status, now)
        if self.trace is not None:
            self.trace.delivery(self.name, now, message)
        if self.keep_queues:
            queue = self.queues.get(destination)
            if queue is None:
                queue = self.queues[destination] = MessageQueue()
            queue.put(message)

    @property
    def pending_timers(self) -> int:
        return self._timers.pending()
