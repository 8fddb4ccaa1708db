"""RFC 3261 non-INVITE transactions over UDP, and over TCP with `reliable=True` (sans-IO).

Two state machines, `ClientTransaction` (§17.1.2) and `ServerTransaction` (§17.2.2), plus the
matching keys of §17.1.3 and §17.2.3. Nothing here reads a clock or touches a socket: every
input carries `now` and every output is an effect the caller (the TU / runtime) carries out.
The inputs every request meets (`ClientTransaction.begin` and `complete`,
`ServerTransaction.answer` and `timer_j_fired`) also come without effect objects, for a
caller that carries them out at once: they return the deadlines of the timers to arm, and
the effect-list methods (`start`, `receive_response`, `send_response_bytes`,
`timer_fired`) are built on them, so each rule is written once.

Timer names are the RFC letters ("E", "F", "K" for the client, "J" for the server); a caller
that hosts many transactions scopes them by the transaction key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reference.sip.headers import Via
from reference.sip.message import Request, Response

MAGIC_COOKIE = "z9hG4bK"

# Default ports per transport, used to compare sent-by values that omit the port (§18.1.2):
# "host" and "host:5060" denote the same UDP sent-by.
_DEFAULT_PORT = {"UDP": 5060, "TCP": 5060, "SCTP": 5060, "TLS": 5061, "TLS-SCTP": 5061}


# --------------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True)
class Transmit:
    """Hand these bytes to the transport (same destination as the original request)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Start (or restart) the transaction's one-shot timer `name` firing at `at`."""

    name: str
    at: float


@dataclass(frozen=True, slots=True)
class ClearTimer:
    """Cancel the transaction's timer `name` if it is running."""

    name: str


@dataclass(frozen=True, slots=True)
class PassUp:
    """Give this response to the TU (client transactions only)."""

    response: Response


@dataclass(frozen=True, slots=True)
class TimedOut:
    """Timer F fired: the TU treats the request as answered by a 408 (§8.1.3.1)."""


@dataclass(frozen=True, slots=True)
class Terminated:
    """The transaction is over; the caller may forget it."""


TxEffect = Transmit | SetTimer | ClearTimer | PassUp | TimedOut | Terminated

# The effects without a variable part, built once: effects are immutable values, and a
# SUBSCRIBE's transaction clears two timers and ends (a NOTIFY's ends) on every request.
_CLEAR_E, _CLEAR_F = ClearTimer("E"), ClearTimer("F")
_TIMED_OUT, _TERMINATED = TimedOut(), Terminated()


@dataclass(frozen=True, slots=True)
class TimerSettings:
    """SIP timer base values in seconds (§17.1.2.2, table 4 of RFC 3261).

    `timeout` overrides Timer F (the RFC value is 64*T1 = 32 s; SER's tm uses its own
    final-response timer, 30 s by default).
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timeout: float | None = None

    def __post_init__(self) -> None:
        if self.t1 <= 0 or self.t2 < self.t1 or self.t4 < 0:
            raise ValueError(f"bad timer settings: t1={self.t1} t2={self.t2} t4={self.t4}")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"bad transaction timeout: {self.timeout}")

    @property
    def timer_f(self) -> float:
        return 64 * self.t1 if self.timeout is None else self.timeout

    @property
    def timer_j(self) -> float:
        return 64 * self.t1


# --------------------------------------------------------------------------- keys

ClientState = Literal["trying", "proceeding", "completed", "terminated"]
ServerState = Literal["trying", "proceeding", "completed", "terminated"]


def normalize_sent_by(transport: str, host: str, port: int | None) -> str:
    """Canonical 'host:port' for sent-by comparison: host case folded, default port filled."""
    if port is None:
        port = _DEFAULT_PORT.get(transport.upper(), 5060)
    return f"{host.lower()}:{port}"


def _top_via_parts(top: Via | None) -> tuple[str | None, str] | None:
    """(branch, normalized sent-by) of a top Via, or None when there is no Via."""
    if top is None:
        return None
    return top.branch, normalize_sent_by(top.transport, top.host, top.port)


def client_key(message: Request | Response) -> tuple[str, str] | None:
    """§17.1.3 key: (top Via branch, CSeq method); None if the message has no branch.

    For a request this is the key of the transaction it creates; for a response, the key of
    the transaction it may belong to. The sent-by and single-Via checks are separate
    (`response_matches`) because they decide drop-or-not, not which transaction.
    """
    parts = _top_via_parts(message.top_via)
    if parts is None or not parts[0]:
        return None
    method = message.method if isinstance(message, Request) else message.cseq.method
    return parts[0], method


def server_key(request: Request) -> tuple[str, ...]:
    """§17.2.3 key of the server transaction a request belongs to.

    With the magic cookie: (branch, sent-by, method) where ACK counts as INVITE. Without it,
    the RFC 2543 fallback: Request-URI, To tag, From tag, Call-ID, CSeq and the top Via.
    For NOTIFY that fallback is enough: a retransmission is a byte copy of the request, so
    the textual values compare equal, and a new NOTIFY always carries a new CSeq number.
    The first element says which rule built the key so the two kinds never collide.
    """
    return server_key_via(request, request.top_via)


def server_key_via(request: Request, top: Via | None) -> tuple[str, ...]:
    """``server_key`` for a caller that already read the request's top Via, ``top``."""
    method = "INVITE" if request.method == "ACK" else request.method
    if top is not None:
        branch = top.params.get("branch")  # (top.branch; the sent-by as _top_via_parts has it)
        if branch and branch.startswith(MAGIC_COOKIE):
            return ("rfc3261", branch, normalize_sent_by(top.transport, top.host, top.port),
                    method)
    cseq = request.cseq
    top_via = request.headers.get_all("Via")
    return (
        "rfc2543",
        request.uri,
        request.to.tag or "",
        request.from_.tag or "",
        request.call_id,
        str(cseq.number),
        "INVITE" if cseq.method == "ACK" else cseq.method,
        top_via[0].strip() if top_via else "",
    )


# --------------------------------------------------------------------------- client


class ClientTransaction:
    """Non-INVITE client transaction (§17.1.2, figure 6).

    A caller that wrote the request's bytes itself (a simulator building messages from a
    template) may pass ``data`` (exactly ``request.to_bytes()``) and the ``branch`` and
    normalized ``sent_by`` of its top Via, which saves re-serialising and re-parsing them.
    ``reliable=True`` (TCP): Timer E is never armed (no retransmission, §17.1.2.2) and Timer K
    is zero (the transaction ends with its final response); Timer F still bounds the wait.
    """

    __slots__ = ("_data", "_deadline_f", "_interval", "_key", "_sent_by", "reliable",
                 "request", "settings", "state")  # fmt: skip

    def __init__(
        self,
        request: Request,
        settings: TimerSettings,
        *,
        data: bytes | None = None,
        branch: str | None = None,
        sent_by: str | None = None,
        reliable: bool = False,
    ) -> None:
        if branch and sent_by is not None:
            key: tuple[str, str] | None = (branch, request.method)
        else:
            key = client_key(request)
            parts = _top_via_parts(request.top_via)
            if key is None or parts is None:
                raise ValueError("request needs a top Via with a branch to start a transaction")
            sent_by = parts[1]
        assert key is not None
        self.request = request
        self.settings = settings
        self.reliable = reliable
        self.state: ClientState = "trying"
        self._key = key
        self._sent_by = sent_by
        self._data = request.to_bytes() if data is None else data
        self._interval = settings.t1  # next Timer E interval while Trying
        self._deadline_f = 0.0

    @property
    def key(self) -> tuple[str, str]:
        return self._key

    @property
    def sent_by(self) -> str:
        """Normalized 'host:port' of the Via we sent; responses must carry it back."""
        return self._sent_by

    @property
    def data(self) -> bytes:
        """The request's bytes: what every Transmit of this transaction carries."""
        return self._data

    def start(self, now: float) -> list[TxEffect]:
        """Send the request the first time and arm Timers E and F."""
        timer_e, timer_f = self.begin(now)
        if timer_e is None:
            return [Transmit(self._data), SetTimer("F", timer_f)]
        return [Transmit(self._data), SetTimer("E", timer_e), SetTimer("F", timer_f)]

    def begin(self, now: float) -> tuple[float | None, float]:
        """``start`` without its effect objects, for a TU that carries them out at once
        (the UA: one per SUBSCRIBE sent): the caller transmits ``data`` and arms Timer E
        (None: not on a reliable transport) and Timer F at the deadlines returned."""
        self._deadline_f = now + self.settings.timer_f
        return None if self.reliable else now + self._interval, self._deadline_f

    def receive_response(self, response: Response, now: float, *,
                         matched: bool = False) -> list[TxEffect]:
        """Apply a response; non-matching responses are ignored (§17.1.3, §18.1.2). A
        caller that found `response_matches` true already passes `matched` (not checked
        twice)."""
        if not matched and not response_matches(self, response):
            return []
        if self.state in ("completed", "terminated"):
            return []  # Timer K absorbs retransmitted responses: nothing goes up twice
        if response.status < 200:
            self.state = "proceeding"
            return [PassUp(response)]
        timer_k = self.complete(now)
        if timer_k is None:
            return [_CLEAR_E, _CLEAR_F, PassUp(response), _TERMINATED]
        return [_CLEAR_E, _CLEAR_F, PassUp(response), SetTimer("K", timer_k)]

    def complete(self, now: float) -> float | None:
        """``receive_response`` of a final response that matched, in Trying or Proceeding,
        without its effect objects: for a TU that carries them out at once (the UA: one
        per SUBSCRIBE answered). The caller clears Timers E and F, passes the response
        up, then arms Timer K at the deadline returned, or (None: a reliable transport,
        Timer K = 0) forgets the transaction, which is Terminated."""
        if self.state not in ("trying", "proceeding"):
            raise ValueError(f"a {self.state} client transaction takes no final response")
        if self.reliable or self.settings.t4 == 0:  # reliable transport: Timer K = 0
            self.state = "terminated"
            return None
        self.state = "completed"
        return now + self.settings.t4

    def timer_fired(self, name: str, now: float) -> list[TxEffect]:
        """Handle Timer E (retransmit), F (time out) or K (end of Completed)."""
        if name == "E" and self.state in ("trying", "proceeding"):
            # Never retransmit at or after the Timer F deadline, whatever order a runtime
            # fires two timers due at the same instant in.
            if now >= self._deadline_f:
                return self._time_out()
            if self.state == "trying":
                self._interval = min(2 * self._interval, self.settings.t2)
                next_at = now + self._interval
            else:
                next_at = now + self.settings.t2  # Proceeding: every T2
            return [Transmit(self._data), SetTimer("E", next_at)]
        if name == "F" and self.state in ("trying", "proceeding"):
            return self._time_out()
        if name == "K" and self.state == "completed":
            self.state = "terminated"
            return [_TERMINATED]
        return []  # a stale timer (already cleared or from an earlier state)

    def _time_out(self) -> list[TxEffect]:
        self.state = "terminated"
        return [_CLEAR_E, _CLEAR_F, _TIMED_OUT, _TERMINATED]


def response_matches(tx: ClientTransaction, response: Response) -> bool:
    """True when `response` belongs to `tx`: branch + CSeq method (§17.1.3), our own sent-by
    in the top Via (§18.1.2, SUB-124) and exactly one Via (§8.1.3.3, SUB-125)."""
    vias = response.vias
    if len(vias) != 1:
        return False
    top = vias[0]
    # client_key(response) != tx.key, from the Via in hand (and its sent-by normalized once)
    if not top.branch or (top.branch, response.cseq.method) != tx.key:
        return False
    return normalize_sent_by(top.transport, top.host, top.port) == tx.sent_by


# --------------------------------------------------------------------------- server


class ServerTransaction:
    """Non-INVITE server transaction (§17.2.2, figure 8).

    `reliable=True` makes Timer J zero (the transaction ends with its final response).
    """

    __slots__ = ("_key", "_last_response", "reliable", "request", "settings", "state")

    def __init__(
        self,
        request: Request,
        settings: TimerSettings,
        *,
        reliable: bool = False,
        key: tuple[str, ...] | None = None,
    ) -> None:
        # The request is dropped once a final response is sent: a completed transaction
        # only needs that response's bytes, and a busy UAS keeps tens of thousands of
        # completed NOTIFY transactions alive for Timer J (32 s).
        self.request: Request | None = request
        self.settings = settings
        self.reliable = reliable
        self.state: ServerState = "trying"
        # `key` lets a caller that already computed server_key(request) pass it in.
        self._key = server_key(request) if key is None else key
        self._last_response: bytes | None = None

    @property
    def key(self) -> tuple[str, ...]:
        return self._key

    @property
    def last_response(self) -> bytes | None:
        return self._last_response

    def receive_request(self, retransmission: Request, now: float) -> list[TxEffect]:
        """A retransmission of the request: absorbed in Trying, answered again with the last
        response, unchanged, in Proceeding and Completed."""
        if self.state in ("proceeding", "completed") and self._last_response is not None:
            return [Transmit(self._last_response)]
        return []

    def send_response(self, response: Response, now: float) -> list[TxEffect]:
        """The TU answers. Once Completed, further responses are discarded (§17.2.2)."""
        if self.state not in ("trying", "proceeding"):
            return []
        return self.send_response_bytes(response.to_bytes(), response.status, now)

    def send_response_bytes(self, data: bytes, status: int, now: float) -> list[TxEffect]:
        """``send_response`` of a response given as its bytes and status code (a TU that
        writes its responses straight to bytes: see message.response_bytes)."""
        if self.state not in ("trying", "proceeding"):
            return []
        timer_j = self.answer(data, status, now)
        if timer_j is not None:
            return [Transmit(data), SetTimer("J", timer_j)]
        # No Timer J: a provisional response, or a final one on a reliable transport.
        return [Transmit(data)] if status < 200 else [Transmit(data), _TERMINATED]

    def answer(self, data: bytes, status: int, now: float) -> float | None:
        """``send_response_bytes`` in Trying or Proceeding, without its effect objects: for
        a TU that carries them out at once (the UA answers every NOTIFY so, and building
        a Transmit and a SetTimer to read them back costs more than the rest of the
        transaction). The caller transmits ``data``; when a Timer J deadline is returned
        it arms Timer J for it, else the response was provisional (Proceeding) or the
        transport reliable (Terminated)."""
        if self.state not in ("trying", "proceeding"):
            raise ValueError(f"a {self.state} server transaction takes no response")
        self._last_response = data
        if status < 200:
            self.state = "proceeding"
            return None
        self.request = None
        if self.reliable:
            self.state = "terminated"
            return None
        self.state = "completed"
        return now + self.settings.timer_j

    def timer_fired(self, name: str, now: float) -> list[TxEffect]:
        return [_TERMINATED] if name == "J" and self.timer_j_fired(now) else []

    def timer_j_fired(self, now: float) -> bool:
        """``timer_fired("J", now)`` without the effect list: True when Timer J ended the
        transaction (Terminated), False for a stale Timer J."""
        if self.state == "completed":
            self.state = "terminated"
            return True
        return False
