"""A simulated datagram network on SimPy: nodes, lossy links, partitions.

Datagrams carry the real SIP bytes. Every random draw comes from a ``random.Random`` derived
from the run seed and the link's endpoints and purpose (see ``simulator.rng``), so a run is
reproducible and adding a node does not change the draws on other links.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from simulator.rng import stream

Address = tuple[str, int]
Receiver = Callable[[bytes, Address], None]

LATENCY_KINDS = ("constant", "uniform", "lognormal")


@dataclass(frozen=True)
class Latency:
    """One-way delay distribution, in seconds.

    ``constant`` uses ``value``; ``uniform`` draws from [low, high]; ``lognormal`` has median
    ``median`` and shape ``sigma`` (the standard deviation of the underlying normal).
    """

    kind: str = "constant"
    value: float = 0.01
    low: float = 0.0
    high: float = 0.0
    median: float = 0.01
    sigma: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in LATENCY_KINDS:
            raise ValueError(f"latency kind must be one of {LATENCY_KINDS}, not {self.kind!r}")

    def draw(self, rng: random.Random) -> float:
        if self.kind == "constant":
            return self.value
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        return rng.lognormvariate(math.log(self.median), self.sigma)


@dataclass(frozen=True)
class LinkSpec:
    """Behaviour of the directed links between two nodes."""

    latency: Latency = field(default_factory=Latency)
    loss: float = 0.0  # probability a datagram is dropped
    duplication: float = 0.0  # probability a delivered datagram arrives twice
    reorder: float = 0.0  # probability a datagram is held back by reorder_delay
    reorder_delay: float = 0.05


@dataclass(frozen=True)
class Partition:
    """No datagram crosses between the two node groups during [start, end)."""

    side_a: frozenset[str]
    side_b: frozenset[str]
    start: float
    end: float

    def cuts(self, source: str, destination: str, now: float) -> bool:
        if not self.start <= now < self.end:
            return False
        return (source in self.side_a and destination in self.side_b) or (
            source in self.side_b and destination in self.side_a
        )


class Datagram(NamedTuple):
    """What a tap sees for each send: the fate is decided when the datagram leaves.
    (A named tuple: one is made per datagram, and a frozen dataclass costs 4x more.)"""

    time: float
    source_node: str
    destination_node: str
    source: Address
    destination: Address
    data: bytes
    fate: str  # "delivered" | "lost" | "partitioned" | "duplicated"
    transport: str = "udp"  # "tcp": a message on a connection (simulator.streams)
    connection: int = 0  # the connection's id for "tcp"


Tap = Callable[[Datagram], None]
# A tap that needs only (time, bytes, fate): the run's metrics, called for every datagram
# without a Datagram record being made for it.
Meter = Callable[[float, bytes, str], None]


class _Node:
    __slots__ = ("address", "name", "receiver")

    def __init__(self, name: str, address: Address, receiver: Receiver) -> None:
        self.name = name
        self.address = address
        self.receiver = receiver


class _Link:
    """One direction between two nodes, with one random stream per purpose."""

    __slots__ = ("constant_delay", "dup_rng", "latency_rng", "loss_rng", "lossy", "reorder_rng",
                 "spec")  # fmt: skip

    def __init__(self, seed: int, source: str, destination: str, spec: LinkSpec) -> None:
        self.spec = spec
        # Whether a datagram may draw another fate than "delivered" on it (partitions aside).
        self.lossy = spec.loss > 0.0 or spec.duplication > 0.0
        # The delay of every datagram when it draws nothing (constant latency, no reorder):
        # no draw call per datagram on the usual links.
        self.constant_delay: float | None = None
        if spec.latency.kind == "constant" and spec.reorder <= 0.0:
            self.constant_delay = spec.latency.value
        self.latency_rng = stream(seed, "link", source, destination, "latency")
        self.loss_rng = stream(seed, "link", source, destination, "loss")
        self.dup_rng = stream(seed, "link", source, destination, "duplication")
        self.reorder_rng = stream(seed, "link", source, destination, "reorder")


class UnknownDestination(LookupError):
    """The destination address resolves to no node."""


class Network:
    """Nodes addressed by (host, port); host names resolve through a name table."""

    def __init__(self, env: Any, seed: int, default_link: LinkSpec | None = None) -> None:
        self.env = env
        self.seed = seed
        self.default_link = default_link or LinkSpec()
        self._nodes: dict[str, _Node] = {}
        self._by_address: dict[Address, _Node] = {}
        self._names: dict[str, str] = {}  # host name -> node name
        self._link_specs: dict[tuple[str, str], LinkSpec] = {}
        self._links: dict[tuple[str, str], _Link] = {}
        # (source node, destination address) -> (source, destination, link): one lookup per
        # send instead of resolve + two node lookups + link lookup. Topology changes clear it.
        self._routes: dict[tuple[str, Address], tuple[_Node, _Node, _Link]] = {}
        self._partitions: list[Partition] = []
        self._taps: list[Tap] = []
        self._meter: Meter | None = None
        # Every arrival's SimPy callbacks: one shared tuple (SimPy takes an event's callbacks
        # and never changes them), not a bound method and a tuple per datagram.
        self._arrival_callbacks: tuple[Callable[[_Arrival], None], ...] = (self._arrive,)
        # Arrivals already processed, made ready for the next sends: filling in a spare one
        # costs half what making one does (an allocation, a call and a deallocation per
        # datagram). Never more than the most datagrams that were in flight at once.
        self._spare: list[_Arrival] = []
        # Datagram counts (``counters``): the two bumped on every datagram as plain ints.
        self._sent = 0
        self._delivered = 0
        self._rare: dict[str, int] = {"lost": 0, "duplicated": 0, "partitioned": 0, "unroutable": 0}

    @property
    def counters(self) -> dict[str, int]:
        """Datagrams sent, delivered, lost, duplicated, partitioned and unroutable (a copy)."""
        return {"sent": self._sent, "delivered": self._delivered, **self._rare}

    # -- topology ---------------------------------------------------------------------------

    def add_node(
        self, name: str, address: Address, receiver: Receiver, aliases: Iterable[str] = ()
    ) -> None:
        if name in self._nodes:
            raise ValueError(f"duplicate node name {name!r}")
        if address in self._by_address:
            raise ValueError(f"duplicate node address {address!r}")
        node = _Node(name, address, receiver)
        self._routes.clear()
        self._nodes[name] = node
        self._by_address[address] = node
        self._names.setdefault(address[0], name)
        for alias in aliases:
            self._names[alias] = name

    def set_link(self, a: str, b: str, spec: LinkSpec) -> None:
        """Set the spec of both directions between ``a`` and ``b``."""
        for key in ((a, b), (b, a)):
            self._link_specs[key] = spec
            self._links.pop(key, None)
        self._routes.clear()

    def add_partition(self, partition: Partition) -> None:
        self._partitions.append(partition)

    def add_tap(self, tap: Tap) -> None:
        self._taps.append(tap)

    def set_meter(self, meter: Meter) -> None:
        """The one tap of a run that reads only (time, bytes, fate) of each datagram, called
        before the others; unlike them it costs no Datagram record per send."""
        self._meter = meter

    def tap(self, record: Datagram) -> None:
        """Show one record to the meter and every tap (the stream layer's messages)."""
        if self._meter is not None:
            self._meter(record.time, record.data, record.fate)
        for tap in self._taps:
            tap(record)

    @property
    def partitions(self) -> tuple[Partition, ...]:
        return tuple(self._partitions)

    def node_address(self, name: str) -> Address:
        return self._nodes[name].address

    def link_spec(self, source: str, destination: str) -> LinkSpec:
        """The spec of the directed link (the default unless ``set_link`` gave one)."""
        return self._link_specs.get((source, destination), self.default_link)

    def resolve(self, address: Address) -> str:
        """The node name for an address: exact (host, port) first, then the host name."""
        node = self._by_address.get(address)
        if node is not None:
            return node.name
        name = self._names.get(address[0])
        if name is None:
            raise UnknownDestination(f"no node for {address[0]}:{address[1]}")
        return name

    # -- traffic ----------------------------------------------------------------------------

    def _link(self, source: str, destination: str) -> _Link:
        key = (source, destination)
        link = self._links.get(key)
        if link is None:
            spec = self._link_specs.get(key, self.default_link)
            link = _Link(self.seed, source, destination, spec)
            self._links[key] = link
        return link

    def _route(self, source_node: str, destination: Address) -> tuple[_Node, _Node, _Link]:
        route = self._routes.get((source_node, destination))
        if route is None:
            dest_name = self.resolve(destination)  # UnknownDestination propagates
            link = self._link(source_node, dest_name)
            route = (self._nodes[source_node], self._nodes[dest_name], link)
            self._routes[(source_node, destination)] = route
        return route

    def send(self, source_node: str, destination: Address, data: bytes) -> None:
        """Send a datagram from a node; it arrives after the link's latency, or never."""
        now: float = self.env.now
        self._sent += 1
        route = self._routes.get((source_node, destination))
        if route is None:
            try:
                route = self._route(source_node, destination)
            except UnknownDestination:
                self._rare["unroutable"] += 1
                return
        src, dst, link = route
        fate = "delivered"
        if self._partitions or link.lossy:
            fate = self._fate(source_node, dst.name, link, now)
        if self._meter is not None:
            self._meter(now, data, fate)
        if self._taps:
            record = Datagram(now, source_node, dst.name, src.address, dst.address, data, fate)
            for tap in self._taps:
                tap(record)
        if fate == "delivered":  # the usual case, inlined
            delay = link.constant_delay
            if delay is None:
                spec = link.spec
                delay = spec.latency.draw(link.latency_rng)
                if spec.reorder > 0.0 and link.reorder_rng.random() < spec.reorder:
                    delay += spec.reorder_delay
            spare = self._spare
            if spare:
                arrival = spare.pop()
                arrival.callbacks = self._arrival_callbacks  # (processing set it to None)
                arrival.node = dst
                arrival.data = data
                arrival.source = src.address
            else:
                arrival = _Arrival(self._arrival_callbacks, dst, data, src.address)
            self.env.schedule(arrival, NORMAL_PRIORITY, delay)
            return
        if fate in ("lost", "partitioned"):
            self._rare[fate] += 1
            return
        self._rare["duplicated"] += 1
        spec = link.spec
        for _ in range(2):
            delay = spec.latency.draw(link.latency_rng)
            if spec.reorder > 0.0 and link.reorder_rng.random() < spec.reorder:
                delay += spec.reorder_delay
            self._deliver_later(dst, data, src.address, delay)

    def _fate(self, source_node: str, destination_node: str, link: _Link, now: float) -> str:
        """The fate of a datagram on a lossy link or while partitions exist (a method of its
        own: the generator's closure would cost every send three cells)."""
        if any(p.cuts(source_node, destination_node, now) for p in self._partitions):
            return "partitioned"
        spec = link.spec
        if spec.loss > 0.0 and link.loss_rng.random() < spec.loss:
            return "lost"
        if spec.duplication > 0.0 and link.dup_rng.random() < spec.duplication:
            return "duplicated"
        return "delivered"

    def _deliver_later(self, dst: _Node, data: bytes, source: Address, delay: float) -> None:
        arrival = _Arrival(self._arrival_callbacks, dst, data, source)
        self.env.schedule(arrival, NORMAL_PRIORITY, delay)

    def _arrive(self, arrival: _Arrival) -> None:
        self._delivered += 1
        arrival.node.receiver(arrival.data, arrival.source)
        # Processed (SimPy holds no reference to it any more): a spare for the next send.
        self._spare.append(arrival)


NORMAL_PRIORITY = 1  # simpy.events.NORMAL, as env.timeout() uses: same event ordering


class _Arrival:
    """A datagram in flight as a minimal SimPy-schedulable event (what Environment.step
    reads: ``callbacks`` and ``_ok``), cheaper than a Timeout plus a closure."""

    __slots__ = ("callbacks", "data", "node", "source")
    _ok = True

    def __init__(
        self,
        callbacks: tuple[Callable[[_Arrival], None], ...],
        node: _Node,
        data: bytes,
        source: Address,
    ) -> None:
        self.callbacks: tuple[Callable[[_Arrival], None], ...] | None = callbacks
        self.node = node
        self.data = data
        self.source = source
