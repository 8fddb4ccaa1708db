"""`sim` target: the reference core in virtual time on a tiny SimPy network.

Two endpoints (agent, peer) joined by a zero-latency wire, so timing windows are exact.
Faults act on the wire: `drop` (the next `count` datagrams, or all during `duration`),
`delay` (add `delay` seconds during `duration`) and `partition` (drop both ways during
`duration`), each optionally limited to one direction and one SIP method.

Streams (capability `tcp`, a scenario with `transport: tcp`; the agent then runs
`transports: udp,tcp`): a deterministic in-memory model of TCP connections. Each connection
has a label (`c1`, `c2`, ... in the order opened) and an ephemeral port for the side that
opened it (the agent's from 40001, the peer's from 50001), so each side knows it by the
other's address, as the runtime's `reference.tcp` keys them. A message on a connection is
delivered whole, in order, at once (TCP is reliable: datagram faults do not apply).
Opening a connection to an address nobody listens on, or `disconnect` (the scenario's step),
reports the loss to the agent (`Agent.transport_lost`) from a zero-delay SimPy event, so
the verdict replays byte-identically from the seed.

The session drives the agent through the shared ``EffectPump``: it adds its clock (the SimPy
environment) and this wire, and arms one SimPy wake-up for the agent's next deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import simpy

from conformance.runner import Datagram, Incoming, Status
from conformance.scenario import LAB_PASSWORD, LAB_USERNAME, REFERENCE_FEATURES, Scenario
from reference import Agent, AgentConfig, EffectPump, StatusMessage, TraceEvent
from reference.credentials import ANY, CredentialStore
from reference.digest import Credentials
from reference.effects import Address
from reference.ids import IdSource, SeededIds

AGENT_ADDRESS = ("127.0.0.1", 5060)
PEER_ADDRESS = ("127.0.0.1", 5070)
EPSILON = 1e-6
# First ephemeral port of a connection each side opens (the stream model).
AGENT_EPHEMERAL = 40001
PEER_EPHEMERAL = 50001



# Every subscriber, every realm: the lab credentials of docs/conformance.md.
LAB_CREDENTIALS = CredentialStore({(ANY, ANY): Credentials(LAB_USERNAME, LAB_PASSWORD)})


class AgentFactory(Protocol):
    """Builds the agent under test (`Agent` itself, or one built with a deliberate defect in
    an injected collaborator)."""

    def __call__(self, config: AgentConfig, *, ids: IdSource | None = None) -> Agent: ...


@dataclass
class _Fault:
    kind: str
    direction: str
    start: float
    end: float
    count: int | None
    method: str | None
    delay: float

    def applies(self, direction: str, data: bytes, now: float) -> bool:
        if self.direction not in ("both", direction):
            return False
        if self.method is not None and _method(data) != self.method:
            return False
        if self.count is not None:
            return self.count > 0
        return self.start <= now < self.end


@dataclass
class _Stream:
    """One modelled TCP connection. `agent_key`: the address the agent knows it by (the
    peer's end); `peer_key`: the address the peer knows it by (the agent's end)."""

    label: str
    opener: str               # "agent" or "peer"
    agent_key: Address
    peer_key: Address
    open: bool = True


def _method(data: bytes) -> str:
    """The request's method, or for a response the method in its CSeq."""
    first = data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
    if not first.startswith("SIP/"):
        return first.split(" ", 1)[0]
    for line in data.split(b"\r\n"):
        if line.lower().startswith(b"cseq:"):
            return line.decode("utf-8", "replace").split()[-1]
    return ""


class SimSession:
    capabilities = frozenset({"status", "faults", "unsubscribe", "reg", "tcp"})

    def __init__(self, config: AgentConfig, factory: AgentFactory,
                 reference: bool = True) -> None:
        # False: judge the agent as another build (reference choices are observations).
        self.reference = reference
        self.env = simpy.Environment()
        self.peer_hostport = f"{PEER_ADDRESS[0]}:{PEER_ADDRESS[1]}"
        # Identifiers from the seed: a scenario's transcript replays byte-identically.
        self.agent = factory(config.replace(
            local_address=f"{AGENT_ADDRESS[0]}:{AGENT_ADDRESS[1]}"), ids=SeededIds(config.seed))
        self.agent.credentials = LAB_CREDENTIALS
        self.inbox: list[Incoming] = []
        self.faults: list[_Fault] = []
        self.streams: list[_Stream] = []
        # The one wake-up armed for the agent's next deadline: (generation, time). A
        # wake-up whose generation is not the current one was superseded.
        self.generation = 0
        self.wakeup_at: float | None = None
        self.pump = EffectPump(self.agent, _Wire(self))

    # -- runner interface
    def now(self) -> float:
        return float(self.env.now)

    def tolerance(self, seconds: float) -> float:
        return EPSILON

    def subscribe(self, record: str, subscriber: str, package: str = "presence") -> Any:
        handle = self.agent.subscribe(record, subscriber, "conformance", package,
                                      now=self.now())
        self.pump.pump()
        return handle

    def fetch(self, record: str, subscriber: str) -> Any:
        handle = self.agent.fetch(record, subscriber, "conformance", now=self.now())
        self.pump.pump()
        return handle

    def unsubscribe(self, handle: Any) -> None:
        self.agent.unsubscribe(int(handle), now=self.now())
        self.pump.pump()

    def send(self, data: bytes, to: str = "") -> None:
        # One agent on the wire: `to` can only name it.
        self._wire("to_agent", data, lambda: self._to_agent(data))

    def poll(self, deadline: float) -> Incoming | None:
        while not self.inbox:
            upcoming = self.env.peek()
            if upcoming > deadline + EPSILON:
                if deadline > self.env.now:
                    self.env.run(until=deadline)
                return None
            self.env.step()
        return self.inbox.pop(0)

    def send_stream(self, data: bytes, to: str = "", connection: str = "") -> str:
        """The peer sends on connection `connection`, else on its open connection to the
        agent's listening address, else on a new one (the agent listens on its address)."""
        stream = self._stream(connection) if connection else next(
            (s for s in self.streams if s.open and s.peer_key == AGENT_ADDRESS), None)
        if stream is None or not stream.open:
            if connection:
                raise RuntimeError(f"connection {connection} is closed")
            if to and to != f"{AGENT_ADDRESS[0]}:{AGENT_ADDRESS[1]}":
                raise RuntimeError(f"nobody listens on tcp {to}")
            stream = self._open("peer", ("127.0.0.1", PEER_EPHEMERAL + self._opened("peer")),
                                AGENT_ADDRESS)
        key = stream.agent_key
        self.agent.datagram_received(data, key, now=self.now(), transport="tcp")
        self.pump.pump()
        return stream.label

    def disconnect(self, connection: str = "") -> list[str]:
        """Close `connection` (every open one when ""): the agent learns of the loss."""
        closed = [s for s in self.streams if s.open and connection in ("", s.label)]
        for stream in closed:
            stream.open = False
            self._lost(stream.agent_key)
        return [s.label for s in closed]

    def _stream(self, label: str) -> _Stream | None:
        return next((s for s in self.streams if s.label == label), None)

    def _opened(self, side: str) -> int:
        """How many connections `side` opened so far (its next ephemeral port offset)."""
        return sum(1 for s in self.streams if s.opener == side)

    def _open(self, opener: str, agent_key: Address, peer_key: Address) -> _Stream:
        stream = _Stream(f"c{len(self.streams) + 1}", opener, agent_key, peer_key)
        self.streams.append(stream)
        return stream

    def _lost(self, agent_key: Address) -> None:
        """The agent learns that its connection to `agent_key` ended, from a zero-delay
        event (never from inside the pump that is moving its effects)."""
        def lost(_event: object) -> None:
            self.agent.transport_lost(agent_key, now=self.now())
            self.pump.pump()
        self.env.timeout(0).callbacks.append(lost)

    def fault(self, spec: dict[str, Any]) -> None:
        now = self.now()
        duration = float(spec.get("duration", float("inf")))
        self.faults.append(_Fault(spec["kind"], spec.get("direction", "both"), now,
                                  now + duration, spec.get("count"), spec.get("method"),
                                  float(spec.get("delay", 0.0))))

    def close(self) -> None:
        self.inbox.clear()

    # -- wire
    def _wire(self, direction: str, data: bytes, arrive: Callable[[], None]) -> None:
        delay = 0.0
        for fault in self.faults:
            if not fault.applies(direction, data, self.now()):
                continue
            if fault.kind in ("drop", "partition"):
                if fault.count is not None:
                    fault.count -= 1
                return
            delay += fault.delay
        if delay <= 0:
            arrive()
            return
        event = self.env.timeout(delay)
        event.callbacks.append(lambda _e: arrive())

    def _to_agent(self, data: bytes) -> None:
        self.agent.datagram_received(data, PEER_ADDRESS, now=self.now())
        self.pump.pump()


    def _arrival(self, data: bytes, destination: str) -> Callable[[], None]:
        def arrive() -> None:
            self.inbox.append(Datagram(data, self.now(), destination))
        return arrive


class _Wire:
    """The session's side of the shared effect pump (reference.pump.Wire)."""

    def __init__(self, session: SimSession) -> None:
        self.session = session

    def arm(self, at: float | None) -> None:
        # An armed wake-up at or before `at` is kept: waking early fires nothing.
        session = self.session
        if at is None or (session.wakeup_at is not None and session.wakeup_at <= at):
            return
        session.generation += 1
        token = session.generation
        session.wakeup_at = at

        def woken(_event: object) -> None:
            if token == session.generation:
                session.wakeup_at = None
                session.pump.wake(session.now())

        event = session.env.timeout(max(0.0, at - session.now()))
        event.callbacks.append(woken)

    def send(self, data: bytes, destination: Address, error_answer: bool) -> None:
        hostport = f"{destination[0]}:{destination[1]}"
        self.session._wire("from_agent", data, self.session._arrival(data, hostport))

    def send_stream(self, data: bytes, destination: Address, transport: str) -> None:
        """The agent sends on its open connection to `destination`, else opens one (only
        the peer's address listens: elsewhere the connect fails, reported as a loss)."""
        session = self.session
        stream = next((s for s in session.streams if s.open and s.agent_key == destination),
                      None)
        if stream is None:
            if destination != PEER_ADDRESS:
                session._lost(destination)
                return
            port = AGENT_EPHEMERAL + session._opened("agent")
            stream = session._open("agent", PEER_ADDRESS, ("127.0.0.1", port))
        hostport = f"{PEER_ADDRESS[0]}:{PEER_ADDRESS[1]}"
        source = f"{stream.peer_key[0]}:{stream.peer_key[1]}"
        session.inbox.append(Datagram(data, session.now(), hostport, source, b"", transport,
                                      stream.label))

    def deliver(self, destination: str, message: StatusMessage) -> None:
        document = message.document
        self.session.inbox.append(Status({
            "handle": message.handle, "status": message.status, "reason": message.reason,
            "retry_at": message.retry_at, "at": message.at,
            "basic": document.basic if document is not None else None,
            "registration": (message.registration.to_json()
                             if message.registration is not None else None),
            "list_uri": message.list_uri, "resource": message.resource,
        }, self.session.now()))

    def trace(self, event: TraceEvent) -> None:
        pass  # the runner records the wire and the status messages itself


class SimTarget:
    name = "sim"
    capabilities = SimSession.capabilities

    def __init__(self, agent_factory: AgentFactory = Agent, reference: bool = True) -> None:
        """`reference`: judge the agent as the reference (every expectation exact); False
        judges it as another build (reference choices are `differs` observations)."""
        self.agent_factory = agent_factory
        self.reference = reference

    def features_for(self, profile: str) -> frozenset[str]:
        """The reference's optional features in this profile (none in ser)."""
        return REFERENCE_FEATURES.get(profile, frozenset())

    def open(self, scenario: Scenario, profile: str) -> SimSession:
        return SimSession(scenario.agent_config_for(profile), self.agent_factory,
                          self.reference)
