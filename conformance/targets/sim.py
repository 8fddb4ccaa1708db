"""`sim` target: the reference core in virtual time on a tiny SimPy network.

Two endpoints (agent, peer) joined by a zero-latency wire, so timing windows are exact.
Faults act on the wire: `drop` (the next `count` datagrams, or all during `duration`),
`delay` (add `delay` seconds during `duration`) and `partition` (drop both ways during
`duration`), each optionally limited to one direction and one SIP method.

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
    capabilities = frozenset({"status", "faults", "unsubscribe", "reg"})

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
        # The sim target's wire is datagrams only: its agents run transports=udp.
        raise ValueError(f"the sim target has no {transport} transport (transports=udp)")

    def deliver(self, destination: str, message: StatusMessage) -> None:
        document = message.document
        self.session.inbox.append(Status({
            "handle": message.handle, "status": message.status, "reason": message.reason,
            "retry_at": message.retry_at, "at": message.at,
            "basic": document.basic if document is not None else None,
            "registration": (message.registration.to_json()
                             if message.registration is not None else None),
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
