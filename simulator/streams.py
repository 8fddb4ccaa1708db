"""Stream (TCP) connections on the simulated network: the modelling rule of issue 17.

Rules of this file:

* One connection per pair of nodes (an agent and a notifier), opened by whichever end sends
  first and used by both ends in both directions (RFC 3261 §18: responses go back on the
  connection the request came on, and a notifier reuses a subscriber's connection).
* A connection is reliable and ordered: a message on it is never lost, duplicated or
  reordered, and nothing on it is retransmitted (the agent core runs no Timer E over TCP,
  the notifier model none either). Its delay is the link's latency model (a stream of its
  own: UDP draws are unchanged), and a message never arrives before the one sent before it
  in the same direction. Opening costs one round trip (SYN, SYN-ACK): the first message
  leaves after two latency draws.
* A partition does not break a connection: a message sent while the pair is partitioned
  waits until the partition ends and then takes the link's latency (TCP retransmits until
  the path is back; the SIP transaction timers above may give up before that).
* ``drop(node)`` (the workload fault ``connection_loss``) ends every live connection of a
  node at once. Messages in flight on it never arrive (counted ``lost_in_flight``); both
  ends are told (``on_lost(peer, connection)``), so the agent fails the transactions sent on
  it as a 503 (RFC 3261 §8.1.3.1); the next message between the pair opens a new connection.
* A node that registered no stream receiver (an agent running ``transports: udp``) refuses
  connections: ``send`` returns 0 and the sender decides (RFC 3261 §18.1.1: a request that
  went to TCP only for its size is sent over UDP instead).
* Left out, on purpose: congestion window, slow start, Nagle, segment sizes, head-of-line
  blocking beyond the ordering of whole messages, connection limits and idle timeouts,
  FIN/RST exchanges. Taps see every message once, with fate ``delivered`` when it leaves.
* Draws come from streams named after the link and ``stream`` (``simulator.rng``), so
  adding TCP traffic to a run does not change any datagram's fate or latency.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simulator.metrics import classify
from simulator.network import NORMAL_PRIORITY, Address, Datagram, Network
from simulator.rng import stream

StreamReceiver = Callable[[bytes, Address], None]
LostHandler = Callable[[Address, int], None]
EPHEMERAL_BASE = 40000  # the opener's port in captures: EPHEMERAL_BASE + id mod 20000


class _Endpoint:
    __slots__ = ("address", "name", "on_lost", "receiver")

    def __init__(self, name: str, address: Address, receiver: StreamReceiver,
                 on_lost: LostHandler) -> None:  # fmt: skip
        self.name = name
        self.address = address
        self.receiver = receiver
        self.on_lost = on_lost


class Connection:
    """One live connection between two nodes."""

    __slots__ = ("alive", "ends", "ident", "last_arrival", "opener", "ports")

    def __init__(self, ident: int, opener: str, other: str, now: float) -> None:
        self.ident = ident
        self.opener = opener
        self.ends = (opener, other)
        self.alive = True
        # Per direction (source node): when the last message sent that way arrives.
        self.last_arrival: dict[str, float] = {opener: now, other: now}
        self.ports = EPHEMERAL_BASE + ident % 20000  # the opener's port, for captures


class _StreamArrival:
    """A message in flight on a connection, scheduled straight into SimPy's queue."""

    __slots__ = ("callbacks", "connection", "data", "endpoint", "source")
    _ok = True

    def __init__(self, arrive: Callable[[_StreamArrival], None], connection: Connection,
                 endpoint: _Endpoint, data: bytes, source: Address) -> None:  # fmt: skip
        self.callbacks: tuple[Callable[[_StreamArrival], None], ...] | None = (arrive,)
        self.connection = connection
        self.endpoint = endpoint
        self.data = data
        self.source = source


class StreamLayer:
    """The connections of one simulated network (see the module rules)."""

    def __init__(self, network: Network) -> None:
        self.network = network
        self.env: Any = network.env
        self._endpoints: dict[str, _Endpoint] = {}
        self._connections: dict[tuple[str, str], Connection] = {}
        self._latency: dict[tuple[str, str], Any] = {}
        self._next_id = 0
        self.counters: dict[str, int] = {
            "messages": 0,
            "bytes": 0,
            "delivered": 0,
            "connections_opened": 0,
            "connections_lost": 0,
            "lost_in_flight": 0,
            "refused": 0,
        }
        self.by_type: dict[str, int] = {}  # messages by method or "CODE METHOD"

    def listen(self, name: str, receiver: StreamReceiver, on_lost: LostHandler) -> None:
        """Node ``name`` (already on the network) accepts connections."""
        address = self.network.node_address(name)
        self._endpoints[name] = _Endpoint(name, address, receiver, on_lost)

    def accepts(self, destination: Address) -> bool:
        try:
            return self.network.resolve(destination) in self._endpoints
        except LookupError:
            return False

    def send(self, source_node: str, destination: Address, data: bytes) -> int:
        """Send one message from ``source_node``; returns the connection's id, or 0 when the
        destination refuses connections (or resolves to no node)."""
        try:
            dest_name = self.network.resolve(destination)
        except LookupError:
            self.counters["refused"] += 1
            return 0
        dst = self._endpoints.get(dest_name)
        src = self._endpoints.get(source_node)
        if dst is None or src is None:
            self.counters["refused"] += 1
            return 0
        now: float = self.env.now
        key = (source_node, dest_name) if source_node < dest_name else (dest_name, source_node)
        connection = self._connections.get(key)
        depart = now
        if connection is None:
            self._next_id += 1
            connection = Connection(self._next_id, source_node, dest_name, now)
            self._connections[key] = connection
            self.counters["connections_opened"] += 1
            # SYN out, SYN-ACK back: the data leaves one round trip later.
            depart = now + self._draw(source_node, dest_name) + self._draw(dest_name, source_node)
        arrival = depart + self._draw(source_node, dest_name)
        for partition in self.network.partitions:
            if partition.cuts(source_node, dest_name, now):
                arrival = max(arrival, partition.end + self._draw(source_node, dest_name))
        arrival = max(arrival, connection.last_arrival[source_node])
        connection.last_arrival[source_node] = arrival
        self.counters["messages"] += 1
        self.counters["bytes"] += len(data)
        label = classify(data)[1]
        self.by_type[label] = self.by_type.get(label, 0) + 1
        source_address = src.address
        destination_address = dst.address
        if connection.opener == source_node:
            source_address = (source_address[0], connection.ports)
        else:
            destination_address = (destination_address[0], connection.ports)
        self.network.tap(Datagram(now, source_node, dest_name, source_address,
                                  destination_address, data, "delivered", "tcp",
                                  connection.ident))  # fmt: skip
        event = _StreamArrival(self._arrive, connection, dst, data, src.address)
        self.env.schedule(event, NORMAL_PRIORITY, arrival - now)
        return connection.ident

    def _draw(self, source: str, destination: str) -> float:
        key = (source, destination)
        entry = self._latency.get(key)
        if entry is None:
            spec = self.network.link_spec(source, destination)
            rng = stream(self.network.seed, "link", source, destination, "stream")
            entry = self._latency[key] = (spec.latency, rng)
        latency, rng = entry
        value: float = latency.draw(rng)
        return value

    def _arrive(self, arrival: _StreamArrival) -> None:
        if not arrival.connection.alive:
            self.counters["lost_in_flight"] += 1
            return
        self.counters["delivered"] += 1
        arrival.endpoint.receiver(arrival.data, arrival.source)

    def drop(self, node: str) -> int:
        """The fault ``connection_loss``: end every live connection of ``node``; returns
        how many ended."""
        lost = [key for key in self._connections if node in key]
        for key in lost:
            connection = self._connections.pop(key)
            connection.alive = False
            self.counters["connections_lost"] += 1
            a, b = connection.ends
            for end, peer in ((a, b), (b, a)):
                endpoint = self._endpoints.get(end)
                other = self._endpoints.get(peer)
                if endpoint is not None and other is not None:
                    endpoint.on_lost(other.address, connection.ident)
        return len(lost)

    @property
    def live_connections(self) -> int:
        return len(self._connections)
