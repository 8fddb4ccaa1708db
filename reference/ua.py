"""The UA layer: RFC 3261 plumbing under the presence logic, which it knows nothing of.

Rules of this file:
* It owns the transaction maps: client transactions by branch (the requests its TU sent),
  completed server transactions by key (their answers, absorbed retransmissions). Its
  timers live in the core's one `DeadlineQueue`, with typed keys: a client transaction's
  Timers E and F each, but Timer J (completed server transactions) and Timer K (completed
  client transactions) only as deadline heaps under one `HOUSEKEEPING_TIMER`, armed
  `HOUSEKEEPING_SLACK` after the earliest of them, which ends every transaction due by then
  in one batch: one wake-up per second of answered traffic instead of one per transaction.
  The cost: a completed transaction may live up to `HOUSEKEEPING_SLACK` longer than its
  timer says, absorbing a late retransmission (or answer) it would otherwise have passed
  on as new; Timers J and K only bound how long retransmissions are waited for.
* It parses every datagram; a request that frames but carries a bad header gets 400 naming
  the problem; responses are matched to a client transaction or counted as unmatched.
* Where a response goes is RFC 3261 §18.2.2 with RFC 3581 (`received`, `rport`); a request
  that came over a stream transport is answered on its connection (the source address,
  `Send.transport`), and its server transaction is reliable (Timer J = 0).
* Transports (RFC 3261 §18): a client transaction over TCP never retransmits (no Timer E)
  and ends with its final response (Timer K = 0); `transport_lost(peer)` fails every client
  transaction sent over TCP to that peer as a timeout does (the TU sees a 408).
* It answers statelessly (RFC 3261 §8.2.7: they change nothing, so a retransmission gets the
  same answer again and a stranger's flood holds no server transaction) what no TU sees:
  ACK (nothing), a Request-URI that is not SIP (416), CANCEL (200 or 481), OPTIONS (200), a
  method it does not accept (405) or know (501); a request that frames but is bad gets 400
  (505 for another SIP version). Requests of the accepted method (NOTIFY) and the outcome
  of client transactions go up to the TU through `UaUser`.
* Error answers (400, 416, 481, 505) are marked on their `Send` effects (and on
  retransmissions of them) so a runtime can rate-limit them without reading the bytes.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from reference.effects import Address, Effect, Send
from reference.sip import (
    Headers,
    Request,
    Response,
    SipParseError,
    make_response,
    parse_message,
    reason_phrase,
)
from reference.sip.headers import KNOWN_METHODS, Via
from reference.sip.message import REASON_PHRASES, response_bytes
from reference.sip.transaction import (
    ClearTimer,
    ClientTransaction,
    PassUp,
    ServerTransaction,
    SetTimer,
    Terminated,
    TimedOut,
    TimerSettings,
    Transmit,
    TxEffect,
    response_matches,
    server_key,
    server_key_via,
)
from reference.timers import DeadlineQueue, TimerKey, TimerKind

ACCEPTED_METHOD = "NOTIFY"
ALLOWED = "NOTIFY, OPTIONS, CANCEL, ACK"
# The one timer key of Timers J and K of every transaction (see UserAgent._housekeeping).
HOUSEKEEPING_TIMER = TimerKey(TimerKind.SERVER_TX)
# The kind of a client transaction's timer keys, bound once (a member read off its class goes
# through EnumType.__getattr__ in CPython 3.11): a SUBSCRIBE arms and clears two of them.
CLIENT_TX = TimerKind.CLIENT_TX
# How long after the earliest Timer J/K deadline the housekeeping timer fires: the deadlines
# that fall due within this span are collected by one wake-up.
HOUSEKEEPING_SLACK = 1.0
# Answers a flood of bad or unknown-dialog requests causes (see Send.error_answer).
ERROR_ANSWERS = frozenset({400, 416, 481, 505})

# The counter names of the usual requests and responses, written once (the others are
# written when counted).
_RX_REQUEST_COUNTERS = {method: f"rx.request.{method}" for method in KNOWN_METHODS}
_RX_RESPONSE_COUNTERS = {status: f"rx.response.{status}" for status in REASON_PHRASES}
_TX_RESPONSE_COUNTERS = {status: f"tx.response.{status}" for status in REASON_PHRASES}


class UaUser(Protocol):
    """What the UA hands up to the transaction user (the presence logic)."""

    def pass_up(self, owner: int, branch: str, response: Response | None,
                now: float) -> None:
        """A response of a client transaction `owner` started (None: it timed out)."""

    def request_received(self, request: Request, source: Address, destination: Address,
                         now: float) -> None:
        """A new request of the accepted method; `destination` is where answers go."""


@dataclass(slots=True)
class ClientEntry:
    tx: ClientTransaction
    owner: int  # the TU's handle of the request's owner
    destination: Address  # where the request (and its retransmissions) go
    # The running timers by name, with their keys (cancelled by the key they were armed with).
    timers: dict[str, TimerKey] = field(default_factory=dict)
    transport: str = "udp"


@dataclass(slots=True)
class ServerEntry:
    tx: ServerTransaction
    destination: Address
    error_answer: bool  # its response is a 400 or 481 (see Send.error_answer)
    transport: str = "udp"


class UserAgent:
    """Transactions, Timers J and K, response routing and stateless answers for one agent."""

    def __init__(self, user: UaUser, settings: TimerSettings, timers: DeadlineQueue,
                 effects: list[Effect], count: Callable[[str, int], None],
                 trace: Callable[..., None], tracing: bool) -> None:
        self.user = user
        self.settings = settings
        self.timers = timers
        self.effects = effects  # the agent's effect list (appended to, never replaced)
        self.count = count
        self.trace = trace  # trace(kind, **fields); a no-op when traces are off
        self.tracing = tracing  # hot-path traces are skipped outright when off
        self.clients: dict[str, ClientEntry] = {}  # branch -> transaction
        self.servers: dict[tuple[str, ...], ServerEntry] = {}
        # Completed server transactions by Timer J deadline and completed client
        # transactions by Timer K deadline, under the one housekeeping timer, instead of one
        # timer per answered NOTIFY (at 10,000 NOTIFY/s, 320,000 would be pending through
        # the 32 s of Timer J) and one per answered SUBSCRIBE.
        self.server_deadlines: list[tuple[float, tuple[str, ...]]] = []
        self.client_deadlines: list[tuple[float, str]] = []
        self.housekeeping_at: float | None = None  # when HOUSEKEEPING_TIMER is armed
        self._last_server_key: tuple[Request, tuple[str, ...]] | None = None
        # The transport of the message being handled (answers go back on it).
        self._transport = "udp"

    # ------------------------------------------------------------------ inputs
    def datagram_received(self, data: bytes, source: Address, now: float,
                          transport: str = "udp") -> None:
        """One message: a datagram, or a message a stream framer cut out ("tcp")."""
        self._last_server_key = None
        self._transport = transport
        self.count("rx.datagrams" if transport == "udp" else f"rx.{transport}_messages", 1)
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self.count("rx.parse_errors", 1)
            self.trace("parse_error", error=str(exc), source=f"{source[0]}:{source[1]}")
            if isinstance(exc.message, Request):
                self.reply_malformed(exc.message, source, str(exc), exc.status)
            return
        try:
            if isinstance(message, Response):
                self._response_received(message, now)
            else:
                self._request_received(message, source, now)
        except SipParseError as exc:
            # A header value the early checks did not touch turned out bad.
            self.count("rx.parse_errors", 1)
            self.trace("parse_error", error=str(exc), source=f"{source[0]}:{source[1]}")
            if isinstance(message, Request):
                self.reply_malformed(message, source, str(exc))

    def timer_fired(self, key: TimerKey, now: float) -> None:
        if key.kind is CLIENT_TX:
            entry = self.clients.get(key.branch)
            if entry is not None:
                entry.timers.pop(key.name, None)
                self._client_effects(entry, key.branch, entry.tx.timer_fired(key.name, now),
                                     now)
        else:
            self._housekeeping(now)

    # ------------------------------------------------------------------ client side
    def start_client(self, request: Request, branch: str, owner: int, destination: Address,
                     now: float, transport: str = "udp", sent_by: str | None = None) -> None:
        """Send `request` in a new client transaction owned by `owner`. A caller that knows
        the normalized sent-by of the request's top Via (`normalize_sent_by`; its branch
        is `branch`) passes it: the transaction then does not parse the Via back."""
        tx = ClientTransaction(request, self.settings, branch=branch, sent_by=sent_by,
                               reliable=transport != "udp")
        entry = ClientEntry(tx, owner, destination, transport=transport)
        self.clients[branch] = entry
        # The effects of tx.start, carried out without building them (ClientTransaction.begin).
        timer_e, timer_f = tx.begin(now)
        self._send(tx.data, destination, False, transport)
        if timer_e is not None:
            self._arm_client_timer(entry, branch, "E", timer_e)
        self._arm_client_timer(entry, branch, "F", timer_f)
        # The first send is not a retransmission: the counter is listed, at 0 until one.
        self.count("tx.retransmissions", 0)

    def abandon_client(self, branch: str) -> None:
        """Forget a client transaction: its timers stop, a late answer is unmatched."""
        entry = self.clients.pop(branch, None)
        if entry is not None:
            for name in sorted(entry.timers):
                self.timers.cancel(entry.timers[name])

    def _response_received(self, response: Response, now: float) -> None:
        status = response.status
        self.count(_RX_RESPONSE_COUNTERS.get(status) or f"rx.response.{status}", 1)
        top = response.top_via
        branch = top.branch if top is not None else None
        entry = self.clients.get(branch or "")
        if entry is None or not response_matches(entry.tx, response):
            self.count("rx.unmatched_responses", 1)
            self.trace("unmatched_response", status=response.status,
                       call_id=response.headers.get("Call-ID"))
            return
        assert branch is not None
        tx = entry.tx
        if status < 200 or tx.state not in ("trying", "proceeding"):
            self._client_effects(entry, branch,
                                 tx.receive_response(response, now, matched=True), now)
            return
        # A final answer: receive_response's effects, carried out without building them
        # (ClientTransaction.complete), in their order.
        timer_k = tx.complete(now)
        for name in ("E", "F"):
            key = entry.timers.pop(name, None)
            if key is not None:
                self.timers.cancel(key)
        self.user.pass_up(entry.owner, branch, response, now)
        if timer_k is None:
            self.clients.pop(branch, None)
        else:  # the transaction is completed: housekeeping ends it
            heapq.heappush(self.client_deadlines, (timer_k, branch))
            self._arm_housekeeping(timer_k)

    def _client_effects(self, entry: ClientEntry, branch: str, effects: list[TxEffect],
                        now: float) -> None:
        for effect in effects:
            # Exact-type dispatch: the effects are final dataclasses (one or more for every
            # SUBSCRIBE sent and answered).
            if type(effect) is Transmit:
                self.count("tx.retransmissions", 1)
                self._send(effect.data, entry.destination, transport=entry.transport)
            elif type(effect) is SetTimer:
                if effect.name == "K":  # the transaction is completed: housekeeping ends it
                    heapq.heappush(self.client_deadlines, (effect.at, branch))
                    self._arm_housekeeping(effect.at)
                    continue
                self._arm_client_timer(entry, branch, effect.name, effect.at)
            elif type(effect) is ClearTimer:
                key = entry.timers.pop(effect.name, None)
                if key is not None:
                    self.timers.cancel(key)
            elif type(effect) is PassUp:
                self.user.pass_up(entry.owner, branch, effect.response, now)
            elif type(effect) is TimedOut:
                self.count("tx.timeouts", 1)
                self.user.pass_up(entry.owner, branch, None, now)
            elif type(effect) is Terminated:
                self.clients.pop(branch, None)

    def _arm_client_timer(self, entry: ClientEntry, branch: str, name: str,
                          at: float) -> None:
        # (A positional TimerKey: no keyword matching per timer.)
        key = entry.timers[name] = TimerKey(CLIENT_TX, 0, branch, name)
        self.timers.arm(key, at)

    # ------------------------------------------------------------------ server side
    def _request_received(self, request: Request, source: Address, now: float) -> None:
        method = request.method
        self.count(_RX_REQUEST_COUNTERS.get(method) or f"rx.request.{method}", 1)
        try:
            top = request.top_via
        except SipParseError:
            top = None
        destination = self._destination(top, source)
        if destination is None:
            self.count("rx.unroutable_requests", 1)
            return
        # The top Via read once, for the destination and for the key (memo: see below).
        key = server_key_via(request, top)
        self._last_server_key = (request, key)
        existing = self.servers.get(key)
        if existing is not None:
            self.count("rx.retransmissions", 1)
            for effect in existing.tx.receive_request(request, now):
                if isinstance(effect, Transmit):
                    self._send(effect.data, existing.destination, existing.error_answer,
                               existing.transport)
            return
        if request.method == "ACK":
            return
        uri = request.uri
        if not uri.startswith(("sip:", "sips:")) \
                and uri.partition(":")[0].lower() not in ("sip", "sips"):
            # RFC 3261 §8.2.2.1, RFC 4475 §3.3.2: this UA is reached by SIP URIs only (the
            # Contact it sends). Stateless like the 481: a stranger's request holds nothing.
            self.respond(request, destination, 416, now, stateless=True)
            return
        # Requests other than NOTIFY change nothing, so they are answered statelessly (RFC
        # 3261 §8.2.7): a retransmission gets the same answer again, and a stranger's flood
        # of them holds no server transaction (Timer J) in memory.
        if request.method == "CANCEL":
            # SUBSCRIBE/NOTIFY cannot be cancelled (SUB-053): every NOTIFY is answered at
            # once, so a CANCEL finds the transaction completed; answer it and change nothing.
            self.respond(request, destination, 200 if self._cancel_matches(request) else 481,
                         now, stateless=True)
            return
        if request.method == "OPTIONS":
            self.respond(request, destination, 200, now, headers=[("Allow", ALLOWED)],
                         stateless=True)
            return
        if request.method != ACCEPTED_METHOD:
            # 405 for a method SIP defines but this UA does not accept, 501 for one it does
            # not know at all (RFC 3261 §8.2.1, SUB-156).
            status = 405 if request.method in KNOWN_METHODS else 501
            self.respond(request, destination, status, now, headers=[("Allow", ALLOWED)],
                         stateless=True)
            return
        self.user.request_received(request, source, destination, now)

    def _cancel_matches(self, cancel: Request) -> bool:
        for key in self.servers:
            if key[0] == "rfc3261" and len(key) > 1 and key[1] == (
                    cancel.vias[0].branch if cancel.vias else None):
                return True
        return False

    def respond(self, request: Request, destination: Address, status: int, now: float, *,
                reason: str | None = None, headers: list[tuple[str, str]] | None = None,
                stateless: bool = False) -> None:
        """Answer `request` (in a server transaction unless `stateless`)."""
        # Reaching here, the request's Via list parsed and is not empty (see
        # response_destination), so the top Via always exists.
        data = response_bytes(request, status, reason, headers=headers or (),
                              top_via=received_via(request, destination))
        self.count(_TX_RESPONSE_COUNTERS.get(status) or f"tx.response.{status}", 1)
        try:
            key = None if stateless else self._server_key(request)
        except SipParseError:
            key = None
        if self.tracing:
            self.trace("respond", status=status, call_id=request.headers.get("Call-ID"),
                       cseq=request.headers.get("CSeq"))
        error_answer = status in ERROR_ANSWERS
        transport = self._transport
        if key is None:
            self._send(data, destination, error_answer, transport)
            return
        server = ServerTransaction(request, self.settings, key=key,
                                   reliable=transport != "udp")
        # (A new transaction is in Trying: its effects are a Transmit of `data` and, on UDP,
        # Timer J; ServerTransaction.answer gives them without building them.)
        timer_j = server.answer(data, status, now)
        self._send(data, destination, error_answer, transport)
        if timer_j is not None:  # Timer J, the only server timer on UDP
            self.servers[key] = ServerEntry(server, destination, error_answer, transport)
            heapq.heappush(self.server_deadlines, (timer_j, key))
            self._arm_housekeeping(timer_j)

    def reply_malformed(self, request: Request, source: Address, error: str,
                        status: int = 400) -> None:
        """Answer a request that framed but is bad: 400 (505 for another SIP version) naming
        the problem, built from the raw header text (nothing else may be trusted). The
        first value of each duplicated header is copied: the answer must still reach the
        Via's sender (RFC 3261 §18.2.2), whichever value the sender meant."""
        if request.method == "ACK":
            return
        destination = self.response_destination(request, source)
        if destination is None:
            self.count("rx.unroutable_requests", 1)
            return
        headers = Headers()
        vias = request.headers.get_all("Via")
        top = received_via(request, destination)
        for value in [vias[0] if top is None else top, *vias[1:]]:
            headers.add("Via", value)
        for name in ("From", "To", "Call-ID", "CSeq"):
            for value in request.headers.values(name)[:1]:
                headers.add(name, value)
        response = Response(status, _reason_text(status, error), headers)
        self.count(_TX_RESPONSE_COUNTERS.get(status) or f"tx.response.{status}", 1)
        self._send(response.to_bytes(), destination, True, self._transport)

    def _arm_housekeeping(self, deadline: float) -> None:
        """A Timer J or K deadline was added: the housekeeping timer fires by its slack
        after it (kept when already armed earlier, as it mostly is: deadlines grow)."""
        at = deadline + HOUSEKEEPING_SLACK
        if self.housekeeping_at is None or at < self.housekeeping_at:
            self.housekeeping_at = at
            self.timers.arm(HOUSEKEEPING_TIMER, at)

    def _housekeeping(self, now: float) -> None:
        """The housekeeping timer fired: end every transaction whose Timer J or K deadline
        passed, then re-arm for the earliest one left."""
        self.housekeeping_at = None
        deadlines = self.server_deadlines
        while deadlines and deadlines[0][0] <= now:
            _, key = heapq.heappop(deadlines)
            server = self.servers.get(key)
            if server is not None and server.tx.timer_j_fired(now):
                del self.servers[key]
        completed = self.client_deadlines
        while completed and completed[0][0] <= now:
            _, branch = heapq.heappop(completed)
            entry = self.clients.get(branch)
            if entry is not None:  # an abandoned transaction is gone already
                self._client_effects(entry, branch, entry.tx.timer_fired("K", now), now)
        if deadlines:
            self._arm_housekeeping(deadlines[0][0])
        if completed:
            self._arm_housekeeping(completed[0][0])

    def _server_key(self, request: Request) -> tuple[str, ...]:
        """server_key of the request being handled, computed once per request."""
        last = self._last_server_key
        if last is not None and last[0] is request:
            return last[1]
        key = server_key(request)
        self._last_server_key = (request, key)
        return key

    def response_destination(self, request: Request, source: Address) -> Address | None:
        """RFC 3261 §18.2.2 + RFC 3581: where a response to `request` goes (over a stream
        transport: back on the connection it came on, whose peer is `source`)."""
        try:
            top = request.top_via
        except SipParseError:
            return None
        return self._destination(top, source)

    def _destination(self, top: Via | None, source: Address) -> Address | None:
        """``response_destination`` of a request whose top Via is ``top`` (None when it
        has none or its Via list does not parse)."""
        if top is None:
            return None
        if top.has_rport or self._transport != "udp":
            return source
        return source[0], top.port if top.port is not None else 5060

    def transport_lost(self, peer: Address, now: float) -> int:
        """A stream connection to `peer` ended: each client transaction on it gets a 503
        generated here (RFC 3261 §8.1.3.1: a fatal transport error, such as a failed TCP
        connection, MUST be treated as a 503), so the subscription's failure and retry
        rules follow. Returns how many failed."""
        lost = [(branch, entry) for branch, entry in self.clients.items()
                if entry.transport != "udp" and entry.destination == peer
                and entry.tx.state in ("trying", "proceeding")]
        for branch, entry in lost:
            self.count("tx.transport_lost", 1)
            self.abandon_client(branch)
            self.user.pass_up(entry.owner, branch,
                              make_response(entry.tx.request, 503, "Transport Error"), now)
        return len(lost)

    def _send(self, data: bytes, destination: Address, error_answer: bool = False,
              transport: str = "udp") -> None:
        self.effects.append(Send(data, destination, error_answer, transport))

    @property
    def transaction_count(self) -> int:
        return len(self.clients) + len(self.servers)


def received_via(request: Request, destination: Address) -> str | None:
    """The response's top Via with `received` added (and a bare `rport` filled) per
    SUB-144, or None when the request's top Via needs no change."""
    top = request.top_via
    assert top is not None
    if top.host == destination[0] and top.params.get("rport", "") is not None:
        return None  # (the usual request: what the steps below find, in one test)
    changed = top
    if top.host != destination[0]:
        changed = changed.with_param("received", destination[0])
    if top.has_rport and top.rport is None:
        changed = changed.with_param("rport", str(destination[1]))
    if changed is top:
        return None
    return str(changed)


def _reason_text(status: int, error: str) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in error)[:120]
    return f"{reason_phrase(status)} ({text})"
