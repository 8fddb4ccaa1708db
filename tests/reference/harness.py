"""A small driver for the sans-IO agent: virtual clock, one wake-up, and a notifier peer.

The harness drives the agent as every runtime does, through the shared `EffectPump`, adding
only its virtual clock and a recording wire: the one wake-up the pump arms is kept in
`armed_at` and `advance` wakes the agent there; `Send` is recorded with its timestamp and
parsed with `reference.sip`, `Deliver` is recorded. The "peer" answers with real messages:
responses built by `make_response` from the agent's own request, NOTIFYs written by hand.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reference import Agent, AgentConfig, EffectPump, TimerKey, TimerKind
from reference.effects import Address, Deliver, Effect, Send, TraceEvent
from reference.ids import SeededIds
from reference.pidf import build_pidf
from reference.qsa import StatusMessage
from reference.sip import Request, Response, make_response, parse_message

PEER: tuple[str, int] = ("127.0.0.1", 5070)
RECORD = "sip:bob@lab.test"
SUBSCRIBER = "sip:alice@lab.test"
QUEUE = "q1"


@dataclass
class Sent:
    at: float
    data: bytes
    destination: tuple[str, int]
    message: Request | Response
    transport: str = "udp"


@dataclass
class Harness:
    """Drive one agent through virtual time."""

    config: AgentConfig
    agent: Agent = field(init=False)
    pump: EffectPump = field(init=False)
    now: float = 0.0
    armed_at: float | None = None  # the one wake-up the pump asked for
    sent: list[Sent] = field(default_factory=list)
    delivered: list[StatusMessage] = field(default_factory=list)
    log: list[Effect] = field(default_factory=list)
    _notify_cseq: int = 100
    _branches: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    # Called after every input to the agent (with the clock at that input's time).
    after_input: list[Callable[[], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.agent = Agent(self.config, ids=SeededIds(self.config.seed))
        self.pump = EffectPump(self.agent, self)

    @classmethod
    def make(cls, profile: str = "ser", **params: Any) -> Harness:
        return cls(AgentConfig.from_mapping({"profile": profile, **params}))

    # ------------------------------------------------------------------ the wire
    def send(self, data: bytes, destination: Address, error_answer: bool) -> None:
        self.log.append(Send(data, destination, error_answer))
        self.sent.append(Sent(self.now, data, destination, parse_message(data)))

    def send_stream(self, data: bytes, destination: Address, transport: str) -> None:
        self.log.append(Send(data, destination, False, transport))
        self.sent.append(Sent(self.now, data, destination, parse_message(data), transport))

    def deliver(self, destination: str, message: StatusMessage) -> None:
        assert destination == QUEUE
        self.log.append(Deliver(destination, message))
        self.delivered.append(message)

    def trace(self, event: TraceEvent) -> None:
        self.log.append(event)

    def arm(self, at: float | None) -> None:
        self.armed_at = at

    @property
    def timers(self) -> dict[TimerKey, float]:
        """Every timer armed in the core, with its deadline."""
        return self.agent.timer_deadlines()

    # ------------------------------------------------------------------ effects
    def absorb(self) -> None:
        self.pump.pump()
        for hook in self.after_input:
            hook()

    def advance(self, until: float) -> None:
        """Wake the agent at every armed wake-up at or before `until`, then set the clock."""
        while self.armed_at is not None and self.armed_at <= until:
            at = self.armed_at
            assert at >= self.now - 1e-9, f"wake-up in the past: {at} < {self.now}"
            assert at == self.agent.next_deadline(), "the pump armed a stale wake-up"
            self.now = max(self.now, at)
            self.armed_at = None
            self.pump.wake(self.now)
            for hook in self.after_input:
                hook()
        self.now = max(self.now, until)

    def advance_by(self, delta: float) -> None:
        self.advance(self.now + delta)

    # ------------------------------------------------------------------ QSA inputs
    def subscribe(self, record: str = RECORD, subscriber: str = SUBSCRIBER,
                  package: str = "presence") -> int:
        handle = self.agent.subscribe(record, subscriber, QUEUE, package, now=self.now)
        self.absorb()
        return handle

    def unsubscribe(self, handle: int) -> None:
        self.agent.unsubscribe(handle, now=self.now)
        self.absorb()

    def close(self) -> None:
        self.agent.close(now=self.now)
        self.absorb()

    # ------------------------------------------------------------------ what was sent
    def requests(self, method: str = "SUBSCRIBE") -> list[Sent]:
        """First transmission of each request (retransmissions share a branch)."""
        seen: set[str] = set()
        out = []
        for s in self.sent:
            msg = s.message
            if isinstance(msg, Request) and msg.method == method:
                branch = msg.vias[0].branch or ""
                if branch not in seen:
                    seen.add(branch)
                    out.append(s)
        return out

    def subscribes(self) -> list[Request]:
        out = []
        for s in self.requests():
            assert isinstance(s.message, Request)
            out.append(s.message)
        return out

    def last_subscribe(self) -> Request:
        subs = self.subscribes()
        assert subs, "no SUBSCRIBE sent"
        return subs[-1]

    def responses(self) -> list[Response]:
        return [s.message for s in self.sent if isinstance(s.message, Response)]

    def last_response(self) -> Response:
        responses = self.responses()
        assert responses, "no response sent"
        return responses[-1]

    def state(self, handle: int = 1) -> str | None:
        for row in self.agent.dump():
            if row["handle"] == handle:
                return str(row["state"])
        return None

    def row(self, handle: int = 1) -> dict[str, Any]:
        for row in self.agent.dump():
            if row["handle"] == handle:
                return row
        raise KeyError(handle)

    # ------------------------------------------------------------------ the peer
    def feed(self, data: bytes, source: tuple[str, int] = PEER, transport: str = "udp") -> None:
        self.agent.datagram_received(data, source, now=self.now, transport=transport)
        self.absorb()

    def respond(self, request: Request | None = None, status: int = 200, *,
                to_tag: str | None = "srv1", headers: list[tuple[str, str]] | None = None,
                expires: int | None = 600) -> Response:
        """Answer `request` (default: the last SUBSCRIBE) with a real response."""
        request = request or self.last_subscribe()
        hdrs = list(headers or [])
        if 200 <= status < 300:
            if expires is not None:
                hdrs.append(("Expires", str(expires)))
            if not any(name.lower() == "contact" for name, _ in hdrs):
                hdrs.append(("Contact", f"<sip:{PEER[0]}:{PEER[1]}>"))
        response = make_response(request, status, to_tag=to_tag if status > 100 else None,
                                 headers=hdrs)
        self.feed(response.to_bytes())
        return response

    def notify_bytes(self, request: Request | None = None, *, state: str = "active;expires=600",
                     body: bytes | None = None, content_type: str | None = "application/pidf+xml",
                     from_tag: str = "srv1", cseq: int | None = None,
                     event: str | None = "presence", call_id: str | None = None,
                     to_tag: str | None = None, extra: list[tuple[str, str]] | None = None,
                     branch: str | None = None, basic: str = "open") -> bytes:
        """A NOTIFY in the dialog of `request` (default: the last SUBSCRIBE)."""
        request = request or self.last_subscribe()
        if body is None:
            body = build_pidf(request.uri, basic=basic)
        if cseq is None:
            self._notify_cseq += 1
            cseq = self._notify_cseq
        if branch is None:
            branch = f"z9hG4bKpeer{next(self._branches)}"
        our_tag = to_tag if to_tag is not None else request.from_.tag
        lines = [
            f"NOTIFY sip:{self.config.local_address} SIP/2.0",
            f"Via: SIP/2.0/UDP {PEER[0]}:{PEER[1]};branch={branch}",
            "Max-Forwards: 70",
            f"From: <{request.to.uri}>;tag={from_tag}",
            f"To: <{request.from_.uri}>;tag={our_tag}",
            f"Call-ID: {call_id or request.call_id}",
            f"CSeq: {cseq} NOTIFY",
            f"Contact: <sip:{PEER[0]}:{PEER[1]}>",
        ]
        if event is not None:
            lines.append(f"Event: {event}")
        if state:
            lines.append(f"Subscription-State: {state}")
        if body and content_type:
            lines.append(f"Content-Type: {content_type}")
        for name, value in extra or []:
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def notify(self, request: Request | None = None, **kwargs: Any) -> Response:
        """Send a NOTIFY and return the agent's (last) answer to it."""
        before = len(self.sent)
        self.feed(self.notify_bytes(request, **kwargs))
        answers = [s.message for s in self.sent[before:] if isinstance(s.message, Response)]
        assert answers, "NOTIFY not answered"
        return answers[-1]

    # ------------------------------------------------------------------ invariants
    def live_sub_timer(self, handle: int) -> bool:
        return sub_timer(handle) in self.timers

    def confirmed(self, expires: int = 600, notify: bool = True) -> int:
        """Subscribe, answer 200 (Expires), and optionally send an active NOTIFY."""
        handle = self.subscribe()
        self.advance_by(0.1)
        self.respond(expires=expires)
        if notify:
            self.notify(state=f"active;expires={expires}")
        return handle


def sub_timer(handle: int) -> TimerKey:
    """The key of a subscription's state-machine timer."""
    return TimerKey(TimerKind.SUBSCRIPTION, handle)


def timer_n(handle: int) -> TimerKey:
    """The key of a subscription's Timer N."""
    return TimerKey(TimerKind.TIMER_N, handle)
