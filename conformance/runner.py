"""Plays a scenario against a target session and produces a verdict.

The runner is written against `Session` (see `conformance.targets`): the same step
interpreter drives the virtual-time `sim` target and the real-time `udp` target. Requests
from the subscriber are queued; `expect` takes the oldest one. Retransmissions of a request
already seen are absorbed (and re-answered when a reply was sent), never "unexpected".
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from conformance import expr
from conformance.peer import (
    UDP_MAX_BYTES,
    Captured,
    Peer,
    PeerDialog,
    SentNotify,
    notify_body,
    request_key,
)
from conformance.scenario import ASSERTIONS, Scenario, Step
from reference.packages import served
from reference.sip import Headers, Response, SipParseError, parse_message

PASS, FAIL, NA, ERROR, XFAIL = "pass", "fail", "n/a", "error", "xfail"
# A run (or step) that met every requirement it tested but not every reference choice.
DIFFERS = "differs"
# A step never evaluated: the run stopped before it, or it needed what an earlier
# reference difference left out (a request that never came).
NOT_TESTED = "not-tested"
DEFAULT_WINDOW = (0.0, 2.0)
STATUS_STEPS = ("expect_status", "expect_no_status")
# After a violation the run listens this long more, so the ladder shows what came next.
GRACE = 2.0
# An RFC window with no upper bound (`rfc_within: [lo, null]`, e.g. "not before
# Retry-After") is observed this long beyond the reference window on other builds.
OPEN_WINDOW = 35.0


@dataclass(frozen=True)
class Datagram:
    data: bytes
    at: float
    destination: str = ""
    source: str = ""      # host:port it came from (where replies go), "" when one-to-one
    # A request a harness service answered before the scenario saw it (the registrar's
    # 200 to a REGISTER): shown in the ladder, never queued for `expect`.
    answered: bytes = b""
    # "tcp": a message the peer's stream framer cut out of connection `connection` (the
    # session's label for it, "c1", "c2", ...); "udp": a datagram.
    transport: str = "udp"
    connection: str = ""


@dataclass(frozen=True)
class Status:
    fields: dict[str, Any]  # status, basic, reason, retry_at, at (agent clock)
    at: float


Incoming = Datagram | Status


class Session(Protocol):
    """One running subscriber under test, as the runner sees it."""

    capabilities: frozenset[str]
    peer_hostport: str

    def now(self) -> float: ...
    def subscribe(self, record: str, subscriber: str, package: str = "presence") -> Any: ...
    def unsubscribe(self, handle: Any) -> None: ...
    def send(self, data: bytes, to: str = "") -> None: ...
    def poll(self, deadline: float) -> Incoming | None: ...
    def fault(self, spec: dict[str, Any]) -> None: ...
    def tolerance(self, seconds: float) -> float: ...
    def close(self) -> None: ...


@runtime_checkable
class StreamSession(Session, Protocol):
    """A session whose target offers `tcp`: the peer also speaks SIP over TCP (RFC 3261
    §18), reliable and ordered, framed by Content-Length."""

    def send_stream(self, data: bytes, to: str = "", connection: str = "") -> str:
        """Send one message on `connection` (a label from a `Datagram`), else on the peer's
        open connection to `to` (host:port), else on a new one; returns the label used."""

    def disconnect(self, connection: str = "") -> list[str]:
        """Close `connection` (every open one when ""); returns the labels closed."""


class Target(Protocol):
    name: str
    capabilities: frozenset[str]

    def open(self, scenario: Scenario, profile: str) -> Session: ...


@dataclass
class StepResult:
    index: int
    action: str
    id: str | None
    verdict: str
    at: float | None = None
    detail: str = ""
    tests: tuple[str, ...] = ()            # requirement IDs (and/or "reference")
    differences: list[str] = field(default_factory=list)   # reference choices not met


@dataclass
class ScenarioResult:
    scenario: str
    path: str
    profile: str
    target: str
    verdict: str
    covers: tuple[str, ...]
    wall: float = 0.0
    steps: list[StepResult] = field(default_factory=list)
    failure: str | None = None
    transcript: list[str] = field(default_factory=list)
    xfail_reason: str | None = None
    ladder: list[dict[str, Any]] = field(default_factory=list)   # every SIP message
    capabilities: tuple[str, ...] = ()


class StepFailure(Exception):
    """An expectation not met. `reference`: what was missed is a choice of the reference
    profile (a `differs` observation on another build), not a requirement."""

    def __init__(self, message: str, *, expected: str = "", observed: str = "",
                 excerpt: str = "", reference: bool = False,
                 tests: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.expected = expected
        self.observed = observed
        self.excerpt = excerpt
        self.reference = reference
        self.tests = tests   # what the failure is evidence against, if not the step's tests

    def render(self) -> str:
        parts = [str(self)]
        if self.expected:
            parts.append(f"  expected: {self.expected}")
        if self.observed:
            parts.append(f"  observed: {self.observed}")
        if self.excerpt:
            parts.append("  message:\n" + _indent(self.excerpt, "    | "))
        return "\n".join(parts)


class Inconclusive(StepFailure):
    """The step cannot be played (it refers to a request that never came): the rest of the
    run is not tested."""


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.rstrip().splitlines())


def _excerpt(data: bytes, at: float | None = None, limit: int = 14) -> str:
    lines = data.decode("utf-8", "replace").replace("\r\n", "\n").split("\n")
    head = [line for line in lines[:limit]]
    stamp = f"[t={at:.3f}] " if at is not None else ""
    return stamp + "\n".join(head)


class Run:
    """State of one scenario run (one profile, one target)."""

    def __init__(self, scenario: Scenario, profile: str, session: Session) -> None:
        self.scenario = scenario
        self.profile = profile
        self.session = session
        self.names = scenario.names_for(profile)
        self.peer = Peer(session.peer_hostport)
        self.requests: list[Captured] = []        # queued, not yet expected
        self.seen: dict[tuple[str, str, str], Captured] = {}
        self.captures: dict[str, Captured] = {}
        self.last_request: Captured | None = None
        self.last_subscribe_dialog: PeerDialog | None = None
        self.notifies: dict[str, SentNotify] = {}
        self.notifies_by_branch: dict[str, SentNotify] = {}
        self.last_notify: SentNotify | None = None
        self.statuses: list[Status] = []
        self.step_times: dict[str, float] = {"start": 0.0}
        self.prev_time = 0.0
        self.handles: dict[str, Any] = {}
        self.transcript: list[str] = []
        self.ladder: list[dict[str, Any]] = []
        self.stray_responses: list[Response] = []
        # Copies of requests already seen (absorbed), with their arrival times.
        self.retransmissions: list[tuple[Captured, float]] = []
        # Scenario `transport: tcp`: the peer sends a request over TCP when the target's
        # URI says transport=tcp or it is larger than UDP_MAX_BYTES (RFC 3261 §18.1.1).
        self.tcp = scenario.transport == "tcp"
        self.last_source = ""                  # where the last request came from
        # Another build than the reference: reference choices are observations.
        self.reference_target = bool(getattr(session, "reference", True))
        declared = getattr(session, "declared_names", None) or {}
        if not self.reference_target:
            self.names.update(declared)
        # Declaration `grant: scenario`: the peer grants the scenario's numbers as written.
        self.grants_asked = bool(getattr(session, "grants_asked", True))
        self.differences: list[str] = []       # of the step being played
        self.current: Step | None = None

    # ------------------------------------------------------------------ helpers
    def t(self, value: Any, anchor: float | None = None) -> float:
        if anchor is None:
            return expr.evaluate(value, self.names)
        return expr.evaluate(value, {**self.names, "remaining": self.remaining(anchor)})

    def remaining(self, anchor: float) -> float:
        """Seconds from `anchor` to the expiry of the last grant in the current dialog."""
        dialog = self.last_subscribe_dialog
        if dialog is None or dialog.expires_at is None:
            return float("inf")
        return dialog.expires_at - anchor

    def reference_failure(self) -> bool:
        """Whether a failure of the step being played is a reference difference."""
        return self.current is not None and self.current.reference_only

    def differ(self, failure: StepFailure) -> None:
        """A reference choice not met: exact on the reference, an observation elsewhere."""
        failure.reference = True
        if self.reference_target:
            raise failure
        self.differences.append(failure.render())
        self.log(f"differs: {failure}")

    def log(self, text: str) -> None:
        self.transcript.append(f"[t={self.session.now():9.3f}] {text}")

    def subst(self, text: str) -> str:
        """`{peer}` is the peer's host:port (it differs per target)."""
        return text.replace("{peer}", self.peer.hostport)

    def window(self, args: dict[str, Any], default: tuple[float, float] = DEFAULT_WINDOW
               ) -> tuple[float, float, float]:
        """(anchor, absolute earliest, absolute latest) with the target's tolerance."""
        anchor_name = args.get("after")
        anchor = self.step_times[anchor_name] if anchor_name else self.prev_time
        raw = args.get("within")
        lo, hi = (self.t(raw[0], anchor), self.t(raw[1], anchor)) if raw else default
        tol = self.session
        return anchor, anchor + lo - tol.tolerance(abs(lo)), anchor + hi + tol.tolerance(abs(hi))

    def rfc_tests(self, args: dict[str, Any]) -> tuple[str, ...]:
        """What an RFC-window failure is evidence against: `rfc_tests`, with SUB-003 (the
        grant of the 2xx) read as SUB-028/029 when a NOTIFY's `expires` moved the expiry."""
        named = tuple(map(str, args.get("rfc_tests") or ()))
        dialog = self.last_subscribe_dialog
        if dialog is not None and dialog.expiry_from and "SUB-003" in named:
            named = tuple(dict.fromkeys(dialog.expiry_from if t == "SUB-003" else t
                                        for t in named))
        return named

    def rfc_window(self, args: dict[str, Any], anchor: float
                   ) -> tuple[float, float | None] | None:
        """The requirement's window (absolute, with tolerance; None = no upper bound) when
        `within` is the reference's own instant, else None."""
        raw = args.get("rfc_within")
        if raw is None:
            return None
        tol = self.session.tolerance
        lo = self.t(raw[0], anchor)
        earliest = anchor + lo - tol(abs(lo))
        if raw[1] is None:
            return earliest, None
        hi = self.t(raw[1], anchor)
        return earliest, (anchor + hi + tol(abs(hi)) if hi != float("inf") else None)

    def send(self, data: bytes, what: str, to: str = "", transport: str = "udp",
             connection: str = "") -> str:
        """`to`: host:port (replies: where the request came from; NOTIFYs: the dialog's
        Contact); "" = the target's own address. Over "tcp": on `connection` when given
        (a reply goes on the connection its request came on), else on the peer's connection
        to `to` (opened if none). Returns the connection label ("" for udp)."""
        first = data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
        if transport == "udp":
            self.log(f"peer -> {what}: {first}" + (f" (to {to})" if to else ""))
            self.rung("peer", data, what + (f" to {to}" if to else ""))
            self.session.send(data, to)
            return ""
        if not isinstance(self.session, StreamSession):
            raise StepFailure(f"the target has no {transport} transport")
        label = self.session.send_stream(data, to, connection)
        where = f" to {to}" if to else ""
        self.log(f"peer -> {what}: {first} ({transport} {label}{where})")
        self.rung("peer", data, f"{what}{where} over {transport} {label}",
                  transport=transport, connection=label)
        return label

    def notify_address(self, dialog: PeerDialog | None) -> str:
        """Where a NOTIFY goes: the dialog's Contact (an IP literal and port), else where
        its SUBSCRIBE came from, else where the last request came from."""
        if dialog is not None and dialog.address:
            return dialog.address
        return self.last_source

    def rung(self, sender: str, data: bytes, note: str = "", at: float | None = None,
             transport: str = "udp", connection: str = "") -> None:
        """One message of the SIP ladder (whole text, CRLF shown as newlines); a message
        over a stream also names its transport and connection."""
        entry: dict[str, Any] = {
            "t": round(self.session.now() if at is None else at, 6), "from": sender,
            "note": note, "message": data.decode("utf-8", "replace").replace("\r\n", "\n")}
        if transport != "udp":
            entry.update(transport=transport, connection=connection)
        self.ladder.append(entry)

    # ------------------------------------------------------------------ input
    def pump(self, deadline: float) -> bool:
        """Take one input (or reach the deadline: False)."""
        item = self.session.poll(deadline)
        if item is None:
            return False
        if isinstance(item, Status):
            self.statuses.append(item)
            self.log(f"status {item.fields.get('status')} reason={item.fields.get('reason')} "
                     f"basic={item.fields.get('basic')} retry_at={item.fields.get('retry_at')}")
            return True
        over = f" over {item.transport} {item.connection}" if item.transport != "udp" else ""
        self.rung("subscriber", item.data, f"to {item.destination}{over}", item.at,
                  item.transport, item.connection)
        if item.answered:
            first = item.data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
            self.log(f"agent -> {first} (answered by the registrar)")
            self.rung("peer", item.answered, "registrar", item.at)
            return True
        try:
            message = parse_message(item.data)
        except SipParseError as exc:
            self.log(f"agent -> unparsable datagram ({exc})")
            raise StepFailure("the subscriber sent a datagram that does not parse",
                              observed=str(exc), excerpt=_excerpt(item.data, item.at)) from None
        first = item.data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
        if isinstance(message, Response):
            self.log(f"agent -> {first}")
            branch = ""
            with contextlib.suppress(SipParseError):
                branch = (message.vias[0].branch or "") if message.vias else ""
            sent = self.notifies_by_branch.get(branch)
            if sent is not None:
                sent.responses.append(message)
                sent.destinations.append(item.destination)
                sent.arrivals.append((item.transport, item.connection,
                                      _content_length(item.data)))
            else:
                self.stray_responses.append(message)
            return True
        key = request_key(message)
        old = self.seen.get(key)
        if old is not None:
            self.log(f"agent -> {first} (retransmission absorbed{over})")
            self.retransmissions.append((old, item.at))
            if old.reply is not None:
                self.send(old.reply, "re-sent reply", item.source, item.transport,
                          item.connection)
            return True
        self.log(f"agent -> {first} (to {item.destination}{over})")
        captured = Captured(None, message, item.data, item.at, item.destination, key, "",
                            source=item.source, transport=item.transport,
                            connection=item.connection)
        if item.source:
            self.last_source = item.source
        self.seen[key] = captured
        self.requests.append(captured)
        return True

    # ------------------------------------------------------------------ steps
    def run_step(self, step: Step) -> float:
        handler: Callable[[Step, Any], float] = getattr(self, "step_" + step.action)
        self.current = step
        self.differences = []
        try:
            at = handler(step, step.args)
        except StepFailure as exc:
            if step.reference_only:
                exc.reference = True
            raise
        self.mark(step, at)
        return at

    def mark(self, step: Step, at: float) -> None:
        """`at` is the step's time: later windows are anchored on it."""
        if step.id is not None:
            self.step_times[step.id] = at
        self.prev_time = at

    def skip_status_step(self, step: Step) -> float:
        """A status step on a target without status messages: not applicable, but it keeps
        its wait and its anchor (the steps after it are timed as with the reference)."""
        args = step.args if isinstance(step.args, dict) else {}
        if step.action == "expect_no_status":
            deadline = self.session.now() + self.t(args.get("duration", 0))
            at = deadline
        elif "within" in args:
            anchor, _earliest, latest = self.window(args)
            hi = self.t(args["within"][1], anchor)
            deadline, at = latest, anchor + hi
        else:
            # Right away on the reference: the status comes with the message that caused it.
            deadline = at = self.prev_time
        while self.pump(deadline):
            pass
        self.mark(step, at)
        return at

    def listen(self, seconds: float) -> None:
        """Take what arrives for a while (the grace period after a violation)."""
        deadline = self.session.now() + seconds
        while self.pump(deadline):
            pass

    def step_subscribe(self, step: Step, args: dict[str, Any]) -> float:
        record = self.subst(args.get("record", self.scenario.record))
        subscriber = self.subst(args.get("subscriber", self.scenario.subscriber))
        name = args.get("handle", "main")
        package = str(args.get("package", "presence"))
        fetch = getattr(self.session, "fetch", None)
        if "fetch" in self.scenario.requires and fetch is not None:
            # A scenario that requires `fetch` asks for one (docs/conformance.md); a session
            # without a `fetch` method declared the feature for its subscribe trigger.
            self.log(f"internal fetch {record} by {subscriber}")
            self.handles[name] = fetch(record, subscriber)
            return self.session.now()
        self.log(f"internal subscribe {record} by {subscriber}"
                 + ("" if package == "presence" else f" (package {package})"))
        self.handles[name] = (self.session.subscribe(record, subscriber) if package == "presence"
                              else self.session.subscribe(record, subscriber, package))
        return self.session.now()

    def step_unsubscribe(self, step: Step, args: dict[str, Any]) -> float:
        name = args.get("handle", "main")
        if name not in self.handles:
            raise StepFailure(f"no subscription named {name!r} to unsubscribe")
        self.log(f"internal unsubscribe {name}")
        self.session.unsubscribe(self.handles[name])
        return self.session.now()

    def step_wait(self, step: Step, args: Any) -> float:
        deadline = self.session.now() + self.t(args)
        while self.pump(deadline):
            pass
        return self.session.now()

    def step_disconnect(self, step: Step, args: dict[str, Any]) -> float:
        """Close a stream connection: the one the request (or NOTIFY) of step `of` went
        over, else every open one. The subscriber sees its connection lost."""
        if not isinstance(self.session, StreamSession):
            raise StepFailure("the target has no stream connections to close")
        label = ""
        ref = args.get("of")
        if ref is not None:
            item = self.captures.get(ref) or self.notifies.get(ref)
            if item is None or not item.connection:
                raise Inconclusive(f"disconnect: step {ref!r} used no connection")
            label = item.connection
        closed = self.session.disconnect(label)
        self.log(f"peer closes connection(s) {', '.join(closed) or '(none open)'}")
        return self.session.now()

    def step_fault(self, step: Step, args: dict[str, Any]) -> float:
        spec = dict(args)
        for key in ("duration", "delay"):
            if key in spec:
                spec[key] = self.t(spec[key])
        self.log(f"fault {spec}")
        self.session.fault(spec)
        return self.session.now()

    def step_expect(self, step: Step, args: dict[str, Any]) -> float:
        anchor, earliest, latest = self.window(args)
        rfc = None if self.reference_target else self.rfc_window(args, anchor)
        method = args.get("method", "a request")
        wait_until = latest
        if rfc is not None:
            wait_until = max(latest, rfc[1] if rfc[1] is not None else latest + OPEN_WINDOW)
        where = (f"[{earliest:.3f}, {latest:.3f}] (anchor t={anchor:.3f})")
        while not self.requests:
            if not self.pump(wait_until) and self.session.now() >= wait_until:
                # Without an upper RFC bound, absence is no violation: the reference would
                # have sent it, the requirement only says "not before".
                open_ended = rfc is not None and rfc[1] is None
                raise StepFailure(
                    f"no {method} from the subscriber",
                    expected=f"{method} in {where}" + (
                        f"; RFC window from t={rfc[0]:.3f}"
                        + (f" to t={rfc[1]:.3f}" if rfc[1] is not None else "")
                        if rfc is not None else ""),
                    observed=f"nothing new by t={self.session.now():.3f}",
                    reference=open_ended or self.reference_failure(),
                    tests=self.rfc_tests(args) if rfc else ())
        captured = self.requests.pop(0)
        request = captured.request
        excerpt = _excerpt(captured.data, captured.at)
        kind = self.reference_failure()
        if args.get("method") is not None and request.method != args["method"]:
            raise StepFailure("unexpected request method", expected=args["method"],
                              observed=request.method, excerpt=excerpt, reference=kind)
        timing = self.timing_problem(request.method, captured.at, anchor, earliest, latest,
                                     excerpt=excerpt)
        if timing is not None:
            if rfc is None:
                timing.reference = kind
                raise timing
            rfc_problem = self.timing_problem(
                request.method, captured.at, anchor, rfc[0],
                rfc[1] if rfc[1] is not None else float("inf"), what="RFC window",
                excerpt=excerpt)
            if rfc_problem is not None:
                rfc_problem.tests = self.rfc_tests(args)
                raise rfc_problem
            self.differ(timing)
        captured.step_id = step.id
        if request.method == "SUBSCRIBE":
            dialog = self.peer.dialog_for(request, captured.source)
            dialog.transport = captured.transport
            captured.peer_tag = dialog.peer_tag
            self.last_subscribe_dialog = dialog
        if step.id is not None:
            self.captures[step.id] = captured
        self.last_request = captured
        fields = self.request_fields(captured)
        # `match_tests` / `uri_tests`: what one matcher decides, when not all of `tests`.
        match_tests = args.get("match_tests") or {}
        checks = [("Request-URI", args["uri"], fields["request_uri"],
                   args.get("uri_tests"))] if "uri" in args else []
        checks += [(name, matcher, self.field(captured, name, fields), match_tests.get(name))
                   for name, matcher in (args.get("match") or {}).items()]
        if "body" in args:
            checks.append(("body", args["body"], fields["body"], match_tests.get("body")))
        for name, matcher, value, decides in checks:
            try:
                self.check(name, matcher, value, excerpt)
            except StepFailure as exc:
                exc.reference = exc.reference or kind
                exc.tests = tuple(map(str, decides or ()))
                raise
        for name, matcher in (args.get("reference_match") or {}).items():
            try:
                self.check(name, matcher, self.field(captured, name, fields), excerpt)
            except StepFailure as exc:
                self.differ(exc)
        return captured.at

    def field(self, captured: Captured, name: str, fields: dict[str, Any]) -> Any:
        """A request field; `cseq_after:STEP` is `ok` when the request is in another dialog
        than STEP's request or its CSeq is greater (RFC 3261 §12.2.1.1), else what it is."""
        kind, _, ref = name.partition(":")
        if kind == "cseq_after" and ref:
            earlier = self.captures.get(ref)
            if earlier is None:
                raise Inconclusive(f"{name}: step {ref!r} captured no request")
            if fields["call_id"] != earlier.request.call_id:
                return "ok"
            before = self.request_fields(earlier)["cseq"]
            now = fields["cseq"]
            if now is not None and before is not None and now > before:
                return "ok"
            return f"CSeq {now} after CSeq {before} in the same dialog"
        return header_field(captured.request.headers, name, fields)

    def timing_problem(self, method: str, at: float, anchor: float, earliest: float,
                       latest: float, what: str = "window", excerpt: str = ""
                       ) -> StepFailure | None:
        shown = f"+{at - anchor:.3f} s after the anchor t={anchor:.3f}"
        if at < earliest:
            return StepFailure(
                f"{method} too early ({what})",
                expected=f"at t in [{earliest:.3f}, {latest:.3f}]",
                observed=f"t={at:.3f} ({shown})", excerpt=excerpt)
        if at > latest:
            return StepFailure(f"{method} too late ({what})",
                               expected=f"at t <= {latest:.3f}",
                               observed=f"t={at:.3f} ({shown})", excerpt=excerpt)
        return None

    def request_fields(self, captured: Captured) -> dict[str, Any]:
        request = captured.request
        fields: dict[str, Any] = {
            "method": request.method, "request_uri": request.uri,
            "call_id": request.headers.get("Call-ID"), "destination": captured.destination,
            "body": request.body.decode("utf-8", "replace"), "branch": captured.key[0],
            "peer_tag": captured.peer_tag, "at": captured.at, "size": len(captured.data),
            # A body must declare its type: "none" without a body, else its Content-Type
            # (absent when a body comes without one).
            "body_type": request.headers.get("Content-Type") if request.body else "none",
            # How it came: "udp", or "tcp" with the label of its connection.
            "transport": captured.transport, "connection": captured.connection,
            # The Content-Length header as written (the parsed message drops it).
            "content_length": _content_length(captured.data),
        }
        for name, read in (("from_tag", lambda: request.from_.tag),
                           ("to_tag", lambda: request.to.tag),
                           ("cseq", lambda: request.cseq.number),
                           ("expires", lambda: request.expires),
                           ("to_uri", lambda: request.to.uri),
                           ("from_uri", lambda: request.from_.uri)):
            try:
                fields[name] = read()
            except SipParseError:
                fields[name] = None
        return fields

    def lookup(self, ref: str) -> Any:
        """`step.field`: a field of the request a step captured, or of the (last) response
        to the NOTIFY a step sent."""
        step_id, _, name = ref.partition(".")
        captured = self.captures.get(step_id)
        if captured is not None:
            fields = self.request_fields(captured)
            return header_field(captured.request.headers, name, fields)
        sent = self.notifies.get(step_id)
        if sent is not None and sent.responses:
            return self.response_field(sent, sent.responses[-1], name)
        raise Inconclusive(f"reference {ref!r}: step {step_id!r} captured no request "
                           "and got no response")

    def response_field(self, sent: SentNotify, response: Response, name: str) -> Any:
        """Fields of a response to a NOTIFY: `reason`, `status`, `body`, `destination`
        (where it was sent), `count` (responses received so far for that NOTIFY),
        `to_tag`, else a header (`count:Name`, `all:Name` as for requests)."""
        fields: dict[str, Any] = {
            "reason": response.reason, "status": response.status,
            "body": response.body.decode("utf-8", "replace"),
            "destination": sent.destinations[-1] if sent.destinations else None,
            "count": len(sent.responses),
            "copied_headers": copied_headers(sent.data, response),
            # How the (last) answer came: "udp" or "tcp"; `connection` is `same` when it
            # came on the connection the NOTIFY was sent on, else that connection's label.
            "transport": sent.arrivals[-1][0] if sent.arrivals else None,
            "connection": _same_connection(sent),
            "content_length": sent.arrivals[-1][2] if sent.arrivals else None,
        }
        try:
            fields["to_tag"] = response.to.tag
        except SipParseError:
            fields["to_tag"] = None
        return header_field(response.headers, name, fields)

    def check(self, name: str, matcher: Any, value: Any, excerpt: str) -> None:
        problem = self.match(matcher, value)
        if problem is not None:
            raise StepFailure(f"{name} does not match", expected=problem,
                              observed="(absent)" if value is None else repr(value),
                              excerpt=excerpt)

    def match(self, matcher: Any, value: Any) -> str | None:
        """None if `value` satisfies `matcher`, else the expectation as text."""
        if not isinstance(matcher, dict):
            matcher = {"equals": matcher}
        matcher = {k: self.subst(v) if isinstance(v, str) and k in ("equals", "regex",
                                                                   "contains") else v
                   for k, v in matcher.items()}
        for kind, want in matcher.items():
            if kind == "offset":
                continue
            if kind == "any_of":  # alternatives: satisfied when one of them is
                problems = [self.match(option, value) for option in want]
                if all(problems):
                    return " or ".join(f"({p})" for p in problems)
                continue
            if kind == "present" and bool(want) != (value is not None):
                return "present" if want else "absent"
            if kind == "absent" and bool(want) != (value is None):
                return "absent" if want else "present"
            if kind == "equals" and not _equal(value, want):
                return f"== {want!r}"
            if kind == "regex" and (value is None or re.search(want, str(value)) is None):
                return f"matches /{want}/"
            if kind == "contains" and (value is None or str(want) not in str(value)):
                return f"contains {want!r}"
            if kind in ("eq", "ne", "lt", "le", "gt", "ge"):
                bound = self.t(want)
                number = _number(value)
                ops = {"eq": number == bound, "ne": number != bound,
                       "lt": number is not None and number < bound,
                       "le": number is not None and number <= bound,
                       "gt": number is not None and number > bound,
                       "ge": number is not None and number >= bound}
                if number is None or not ops[kind]:
                    return f"{kind} {bound:g}"
            if kind in ("same_as", "different_from"):
                other = self.lookup(want)
                offset = matcher.get("offset")
                base = _number(other)
                if offset is not None and base is not None:
                    other = base + offset
                same = _equal(value, other)
                if kind == "same_as" and not same:
                    return f"same as {want}{f' + {offset}' if offset else ''} ({other!r})"
                if kind == "different_from" and same:
                    return f"different from {want} ({other!r})"
        return None

    def target_request(self, args: dict[str, Any]) -> Captured:
        ref = args.get("to")
        captured = self.captures.get(ref) if ref else self.last_request
        if captured is None:
            raise Inconclusive("no expected request to answer"
                               + (f" (step {ref!r} captured none)" if ref else ""))
        return captured

    def step_reply(self, step: Step, args: dict[str, Any]) -> float:
        captured = self.target_request(args)
        status = int(args["status"])
        headers: list[tuple[str, str]] = []
        for key, name in (("expires", "Expires"), ("min_expires", "Min-Expires"),
                          ("retry_after", "Retry-After")):
            if key in args:
                value = self.t(args[key])
                if key == "expires" and 200 <= status < 300:
                    value = self.grant(captured, value)
                headers.append((name, str(round(value))))
        contact = args.get("contact", "auto")
        if contact == "auto":
            contact = self.peer.contact(captured.transport) if 200 <= status < 300 else None
        if contact:
            headers.append(("Contact", self.subst(contact)))
        if "record_route" in args:
            headers.append(("Record-Route", self.subst(args["record_route"])))
        for name, value in (args.get("headers") or {}).items():
            headers.append((name, self.subst(str(value))))
        to_tag: str | bool | None = True
        if "to_tag" in args:
            to_tag = args["to_tag"]
        top_via = None
        if "top_via" in args:  # forge the top Via ({via} = the request's own top Via)
            original = captured.request.headers.get("Via") or ""
            vias = captured.request.vias
            sent_by = f"{vias[0].host}:{vias[0].port}" if vias and vias[0].port else (
                vias[0].host if vias else "")
            top_via = (self.subst(str(args["top_via"])).replace("{via}", original)
                       .replace("{branch}", captured.key[0]).replace("{sent_by}", sent_by))
        data = self.peer.reply(captured, status, args.get("reason"), headers, to_tag, top_via)
        self.send(data, "reply", captured.source, captured.transport, captured.connection)
        if 200 <= status < 300 and "expires" in args and captured.request.method == "SUBSCRIBE":
            dialog = self.peer.dialog_for(captured.request)
            dialog.expires_at = self.session.now() + self.grant(captured, self.t(args["expires"]))
            dialog.expiry_from = ""
        return self.session.now()

    def grant(self, captured: Captured, expires: float) -> float:
        """The Expires the peer grants. Another build asked for its own duration: where the
        scenario grants the reference's request (`default_expiration`), the peer grants what
        was asked instead (a scenario that grants less says another number), unless the
        target declares `grant: scenario`."""
        if self.reference_target or not self.grants_asked or \
                expires != self.names["default_expiration"]:
            return expires
        try:
            asked = captured.request.expires
        except SipParseError:
            return expires
        return float(asked) if asked is not None and asked > 0 else expires

    def step_accept(self, step: Step, args: dict[str, Any]) -> float:
        """2xx with Expires, then (default) an active NOTIFY carrying the same expires and
        an open PIDF body, and its 200 OK expected: the usual way to set a dialog up."""
        captured = self.target_request(args)
        expires = self.grant(captured, self.t(args["expires"]) if "expires" in args
                             else self.names["default_expiration"])
        seconds = str(round(expires))
        data = self.peer.reply(captured, int(args.get("status", 200)), None,
                               [("Expires", seconds),
                                ("Contact", self.peer.contact(captured.transport))])
        self.send(data, "reply", captured.source, captured.transport, captured.connection)
        at = self.session.now()
        if captured.request.method == "SUBSCRIBE":
            dialog = self.peer.dialog_for(captured.request)
            dialog.expires_at, dialog.expiry_from = at + expires, ""
        if args.get("notify", True):
            dialog = self.peer.dialog_for(captured.request)
            sent = self.send_notify(step, dialog, {
                "state": "active", "expires": expires, "body": args.get("body", "open")})
            self.wait_response(sent, [200], {}, (0.0, 2.0))
        return at

    def send_notify(self, step: Step, dialog: PeerDialog | None, args: dict[str, Any]
                    ) -> SentNotify:
        if "raw" in args:
            text = str(args["raw"])
            if "{last_branch}" in text:  # e.g. a CANCEL for the last NOTIFY
                if self.last_notify is None:
                    raise StepFailure("notify: {last_branch} but no NOTIFY was sent yet")
                text = text.replace("{last_branch}", self.last_notify.branch)
            data, branch = self.peer.raw(text, dialog)
            branch = _top_branch(data) or branch  # the branch actually written
        else:
            if dialog is None:
                raise Inconclusive("notify: no dialog yet (expect a SUBSCRIBE first)")
            state = args.get("state", "active")
            for key, name in (("expires", "expires"), ("reason", "reason"),
                              ("retry_after", "retry-after")):
                if key in args:
                    value = args[key]
                    if key != "reason":
                        value = str(round(self.t(value)))
                    state += f";{name}={value}"
            kind = state.split(";")[0]
            if "expires" in args and kind in ("active", "pending") and \
                    not args.get("call_id"):
                expiry = self.session.now() + self.t(args["expires"])
                if dialog.expires_at is None or abs(expiry - dialog.expires_at) > 0.5:
                    dialog.expiry_from = "SUB-028" if kind == "active" else "SUB-029"
                dialog.expires_at = expiry
            body, body_type = notify_body(self.subst_tree(args.get("body")),
                                          dialog.record_uri, self.scenario.path.parent)
            data, branch = self.peer.notify(
                dialog, state=state, body=body,
                content_type=args.get("content_type", body_type),
                event=args.get("event", "presence"),
                headers=[(k, self.subst(str(v))) for k, v in (args.get("headers") or {}).items()],
                remove=list(args.get("remove") or []), cseq=args.get("cseq"),
                call_id=args.get("call_id"), from_tag=args.get("from_tag"),
                to_tag=args.get("to_tag"))
        transport = self.notify_transport(dialog, data, args.get("transport"))
        data = self.peer.via_transport(data, transport)
        sent = SentNotify(step.id, branch, self.session.now(), data,
                          to=self.notify_address(dialog), transport=transport)
        self.notifies_by_branch[branch] = sent
        if step.id is not None:
            self.notifies[step.id] = sent
        self.last_notify = sent
        sent.connection = self.send(data, "NOTIFY", sent.to, transport)
        return sent

    def notify_transport(self, dialog: PeerDialog | None, data: bytes,
                         named: Any) -> str:
        """The transport of a NOTIFY: the step's `transport`, else (scenario `transport:
        tcp`) TCP when the subscriber's Contact says transport=tcp or the message is
        larger than UDP_MAX_BYTES (RFC 3261 §18.1.1), else UDP."""
        if named is not None:
            return str(named)
        if not self.tcp:
            return "udp"
        target = dialog.remote_target.lower() if dialog is not None else ""
        if ";transport=tcp" in target or len(data) > UDP_MAX_BYTES:
            return "tcp"
        return "udp"

    def subst_tree(self, value: Any) -> Any:
        """`{peer}` filled in every string of a body mapping (list and resource URIs)."""
        if isinstance(value, str):
            return self.subst(value)
        if isinstance(value, list):
            return [self.subst_tree(v) for v in value]
        if isinstance(value, dict):
            return {k: self.subst_tree(v) for k, v in value.items()}
        return value

    def step_notify(self, step: Step, args: dict[str, Any]) -> float:
        if "retransmit" in args:
            return self.retransmit_notify(step, str(args["retransmit"]))
        dialog = self.last_subscribe_dialog
        ref = args.get("dialog")
        if ref is not None:
            captured = self.captures.get(ref)
            if captured is None:
                raise Inconclusive(f"notify: step {ref!r} captured no request")
            dialog = self.peer.dialog_for(captured.request)
        self.send_notify(step, dialog, args)
        return self.session.now()

    def retransmit_notify(self, step: Step, ref: str) -> float:
        """Send the exact bytes of an earlier NOTIFY again (same branch: a retransmission).
        Responses from now on are collected for this step."""
        original = self.notifies.get(ref)
        if original is None:
            raise StepFailure(f"notify: step {ref!r} sent no NOTIFY to retransmit")
        sent = SentNotify(step.id, original.branch, self.session.now(), original.data,
                          to=original.to, transport=original.transport)
        self.notifies_by_branch[original.branch] = sent
        if step.id is not None:
            self.notifies[step.id] = sent
        self.last_notify = sent
        sent.connection = self.send(original.data, "NOTIFY (retransmission)", sent.to,
                                    original.transport, original.connection)
        return self.session.now()

    def sent_notify(self, args: dict[str, Any]) -> SentNotify:
        ref = args.get("to")
        sent = self.notifies.get(ref) if ref else self.last_notify
        if sent is None:
            raise Inconclusive("no NOTIFY was sent" + (f" by step {ref!r}" if ref else ""))
        return sent

    def wait_response(self, sent: SentNotify, statuses: list[int], match: dict[str, Any],
                      window: tuple[float, float],
                      match_tests: dict[str, Any] | None = None) -> Response:
        latest = sent.at + window[1] + self.session.tolerance(window[1])
        while not sent.responses:
            if not self.pump(latest) and self.session.now() >= latest:
                raise StepFailure("no response to the NOTIFY",
                                  expected=f"{'/'.join(map(str, statuses))} by t={latest:.3f}",
                                  observed="nothing", excerpt=_excerpt(sent.data, sent.at))
        response = sent.responses[-1]
        excerpt = _excerpt(response.to_bytes(), self.session.now())
        if response.status not in statuses:
            raise StepFailure("wrong response to the NOTIFY",
                              expected="/".join(map(str, statuses)),
                              observed=f"{response.status} {response.reason}", excerpt=excerpt)
        for name, matcher in match.items():
            try:
                self.check(name, matcher, self.response_field(sent, response, name), excerpt)
            except StepFailure as exc:
                # Only the requirement this matcher tests (lint asks for it when the step
                # tests several); none named: every requirement of the step.
                exc.tests = tuple(map(str, (match_tests or {}).get(name) or ()))
                raise
        return response

    def step_expect_response(self, step: Step, args: dict[str, Any]) -> float:
        sent = self.sent_notify(args)
        statuses = args["status"] if isinstance(args["status"], list) else [args["status"]]
        raw = args.get("within")
        window = (self.t(raw[0]), self.t(raw[1])) if raw else DEFAULT_WINDOW
        self.wait_response(sent, [int(s) for s in statuses], args.get("match") or {}, window,
                           args.get("match_tests"))
        return self.session.now()

    def step_expect_no_response(self, step: Step, args: dict[str, Any]) -> float:
        sent = self.sent_notify(args)
        duration = self.t(args.get("duration", 1))
        deadline = self.session.now() + duration
        while self.pump(deadline):
            pass
        if sent.responses:
            response = sent.responses[0]
            raise StepFailure("the NOTIFY was answered", expected="no response",
                              observed=f"{response.status} {response.reason}",
                              excerpt=_excerpt(response.to_bytes()))
        return self.session.now()

    def step_expect_status(self, step: Step, args: dict[str, Any]) -> float:
        _anchor, earliest, latest = self.window(args)
        while not self.statuses:
            if not self.pump(latest) and self.session.now() >= latest:
                raise StepFailure(
                    "no status message", expected=f"status {args['status']} in "
                    f"[{earliest:.3f}, {latest:.3f}]",
                    observed=f"nothing by t={self.session.now():.3f}")
        status = self.statuses.pop(0)
        fields = status.fields
        shown = ", ".join(f"{k}={fields.get(k)!r}" for k in ("status", "basic", "reason",
                                                              "retry_at", "at"))
        excerpt = f"[t={status.at:.3f}] {shown}"
        if "handle" in args:
            # Which internal subscription it is for (shared dialogs: one message each).
            want = self.handles.get(str(args["handle"]))
            if want is None or fields.get("handle") != want:
                raise StepFailure("status for another subscription",
                                  expected=f"handle {args['handle']} ({want!r})",
                                  observed=repr(fields.get("handle")), excerpt=excerpt)
        if fields.get("status") != args["status"]:
            raise StepFailure("wrong status", expected=args["status"],
                              observed=str(fields.get("status")), excerpt=excerpt)
        if status.at < earliest:
            raise StepFailure("status too early", expected=f"t >= {earliest:.3f}",
                              observed=f"t={status.at:.3f}", excerpt=excerpt)
        # `match_tests`: the requirement each further check tests (lint asks for it when
        # the step tests several); the status value itself is the step's own check.
        decides = args.get("match_tests") or {}
        # presence-list: `list_uri` and `resource` name the list and the resource.
        for name in ("basic", "reason", "list_uri", "resource", "registration"):
            if name not in args:
                continue
            try:
                if name == "basic" and fields.get("basic") != args["basic"]:
                    raise StepFailure("wrong basic status", expected=repr(args["basic"]),
                                      observed=repr(fields.get("basic")), excerpt=excerpt)
                if name == "basic":
                    continue
                if name == "registration":
                    _check_registration(args[name], fields.get(name), excerpt)
                else:
                    self.check(name, args[name], fields.get(name), excerpt)
            except StepFailure as exc:
                exc.tests = tuple(map(str, decides.get(name) or ()))
                raise
        if "retry_in" in args:
            retry_at = fields.get("retry_at")
            window = args["retry_in"]
            if window is None:
                if retry_at is not None:
                    raise StepFailure("retry_at should be absent", expected="no retry",
                                      observed=f"retry_at={retry_at}", excerpt=excerpt)
            else:
                lo, hi = self.t(window[0]), self.t(window[1])
                tol = self.session.tolerance
                delta = None if retry_at is None else float(retry_at) - float(fields["at"])
                if delta is None or not lo - tol(lo) <= delta <= hi + tol(hi):
                    raise StepFailure("retry_at outside the window",
                                      expected=f"retry in [{lo:g}, {hi:g}] s",
                                      observed="none" if delta is None else f"{delta:.3f} s",
                                      excerpt=excerpt)
        return status.at

    def step_expect_no_status(self, step: Step, args: dict[str, Any]) -> float:
        duration = self.t(args.get("duration", 0))
        now = self.session.now()
        quiet_until = now + duration - self.session.tolerance(duration)
        while self.pump(quiet_until):
            pass
        if self.statuses:
            status = self.statuses[0]
            raise StepFailure("unexpected status message", expected="none",
                              observed=f"{status.fields.get('status')} at t={status.at:.3f}",
                              excerpt=str(status.fields))
        while self.pump(now + duration):
            pass
        return self.session.now()

    def step_expect_nothing(self, step: Step, args: dict[str, Any]) -> float:
        """No new request for `duration`; with `retransmissions: true` no copy of an
        earlier request either (over a reliable transport nothing is retransmitted)."""
        duration = self.t(args["duration"])
        now = self.session.now()
        quiet_until = now + duration - self.session.tolerance(duration)
        copies = len(self.retransmissions)
        strict = bool(args.get("retransmissions"))
        while not self.requests and self.pump(quiet_until):
            if strict and len(self.retransmissions) > copies:
                original, at = self.retransmissions[copies]
                raise StepFailure(
                    f"{original.request.method} retransmitted",
                    expected=f"no copy of an earlier request until t={quiet_until:.3f}",
                    observed=f"a copy at t={at:.3f} of the request of t={original.at:.3f}"
                    f" ({original.transport})", excerpt=_excerpt(original.data, at))
        if self.requests:
            captured = self.requests[0]
            raise StepFailure(
                f"unexpected {captured.request.method}",
                expected=f"no request until t={quiet_until:.3f}",
                observed=f"{captured.request.method} at t={captured.at:.3f}",
                excerpt=_excerpt(captured.data, captured.at))
        while self.pump(now + duration):
            pass
        return self.session.now()


def _same_connection(sent: SentNotify) -> str | None:
    """`same` when the last answer to a NOTIFY came on the connection it was sent on, else
    that connection's label ("" over UDP); None before any answer."""
    if not sent.arrivals:
        return None
    transport, connection, _length = sent.arrivals[-1]
    if transport == sent.transport and connection == sent.connection and connection:
        return "same"
    return connection


_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*$",
                             re.IGNORECASE | re.MULTILINE)


def _content_length(data: bytes) -> int | None:
    """The Content-Length (or `l`) header of a message's header block, as written."""
    found = _CONTENT_LENGTH.search(data.split(b"\r\n\r\n", 1)[0])
    return int(found.group(1)) if found else None


def _top_branch(data: bytes) -> str | None:
    try:
        message = parse_message(data)
        return message.vias[0].branch if message.vias else None
    except SipParseError:
        return None


_RECEIVED = re.compile(r";\s*received=[^;,]*", re.IGNORECASE)
_RPORT_VALUE = re.compile(r";\s*rport=\d+", re.IGNORECASE)


def _unfilled(via: str) -> str:
    """A top Via as the client wrote it: without `received`, `rport=N` back to `rport`."""
    return _RPORT_VALUE.sub(";rport", _RECEIVED.sub("", via))


def copied_headers(request_data: bytes, response: Response) -> str:
    """`ok` when the response copies From, Call-ID, CSeq and every Via (in order) of the
    request, and its To equals the request's To (whose tag it keeps); else what differs.
    The top Via may gain `received` / `rport=N` (RFC 3261 §18.2.1, RFC 3581)."""
    try:
        request = parse_message(request_data)
    except SipParseError as exc:
        return f"request does not parse: {exc}"
    differ = []
    for name in ("From", "Call-ID", "CSeq", "To"):
        if request.headers.values(name) != response.headers.values(name):
            differ.append(name)
    sent = request.headers.get_all("Via")
    got = response.headers.get_all("Via")
    got = [_unfilled(v) for v in got[:1]] + got[1:]
    sent = [_unfilled(v) for v in sent[:1]] + sent[1:]
    if [v.replace(" ", "") for v in sent] != [v.replace(" ", "") for v in got]:
        differ.append("Via")
    return "ok" if not differ else "differs: " + ", ".join(differ)


def header_field(headers: Headers, name: str, fields: dict[str, Any]) -> Any:
    """A matcher field: a named field, `count:Name` (how many values of header Name, comma
    lists split), `all:Name` (every value joined by ", "), else header Name's first value."""
    if name in fields:
        return fields[name]
    kind, _, header = name.partition(":")
    if header and kind == "count":
        return len(headers.get_all(header))
    if header and kind == "all":
        values = headers.get_all(header)
        return ", ".join(values) if values else None
    return headers.get(name)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _equal(a: Any, b: Any) -> bool:
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        return na == nb
    return str(a) == str(b) if a is not None and b is not None else a is b


def step_tests(scenario: Scenario, step: Step) -> tuple[str, ...]:
    """What a step tests: its `tests`; an untagged assertion (a scenario outside the
    library, which `lint` refuses) falls back on its own or the scenario's `covers`."""
    return step.tests or step.covers or scenario.covers


def capabilities_for(target: Target, profile: str) -> set[str]:
    """What a target offers in one profile: its `capabilities`, plus what its optional
    `features_for(profile)` adds (the reference's features differ between profiles)."""
    offered = set(target.capabilities)
    features_for = getattr(target, "features_for", None)
    if features_for is not None:
        offered |= set(features_for(profile))
    return offered


def run_scenario(scenario: Scenario, profile: str, target: Target, *,
                 lenient_status: bool = False) -> ScenarioResult:
    """Run one scenario in one profile; never raises for a scenario problem.

    Against the reference every expectation is exact. Against another build (a session
    whose `reference` is false) an unmet `reference` expectation is a `differs`
    observation and the run goes on, anchored on what the target did; only a requirement
    failure fails the run (the steps after it are `not-tested`, the ladder keeps the next
    GRACE seconds).

    `lenient_status`: status steps still run (so they consume status messages and let time
    pass as usual) but a failing one is recorded as n/a and the run goes on: the verdict
    then rests on the SIP steps alone (used to judge another agent's wire behaviour)."""
    result = ScenarioResult(scenario.name, str(scenario.path), profile, target.name, PASS,
                            scenario.all_covers,
                            capabilities=tuple(sorted(target.capabilities)))
    steps = [s for s in scenario.steps if s.applies_to(profile)]
    offered = capabilities_for(target, profile)
    result.capabilities = tuple(sorted(offered))
    missing = set(scenario.requires) - offered
    if any(s.action == "fault" for s in steps) and "faults" not in offered:
        missing.add("faults")
    if any(s.action == "unsubscribe" for s in steps) and "unsubscribe" not in offered:
        missing.add("unsubscribe")
    packages = {str(s.args.get("package", "presence")) for s in steps
                if s.action == "subscribe" and isinstance(s.args, dict)}
    agent_profile = str(scenario.agent_params_for(profile)["profile"])
    unserved = sorted(packages - set(served(agent_profile)))
    if unserved:  # (e.g. reg judged with an agent in the ser profile, which has presence only)
        missing.add(f"package {', '.join(unserved)} (not served by the {agent_profile} "
                    "profile)")
    needs_tcp = scenario.transport == "tcp" or any(s.action == "disconnect" for s in steps)
    if needs_tcp and "tcp" not in offered:
        missing.add("tcp")
    elif needs_tcp and agent_profile == "ser":
        # The runtime can run TCP in ser too (SER's tm did), but the tcp/ family states
        # rfc6665's failure reporting: SER's differs, so it is not judged there.
        missing.add("tcp (the tcp/ family is judged in the rfc6665 profile only)")
    handles = {str((s.args or {}).get("handle", "main")) for s in steps
               if s.action == "subscribe" and isinstance(s.args, dict)} or {"main"}
    capacity = getattr(target, "max_subscriptions", None)
    if capacity is not None and len(handles) > capacity:
        missing.add(f"{len(handles)} subscriptions at once (the target declares "
                    f"{capacity})")
    if profile not in scenario.profiles or missing:
        result.verdict = NA
        in_profile = f" in profile {profile}" if hasattr(target, "features_for") else ""
        result.failure = (f"target {target.name!r} lacks {', '.join(sorted(missing))}"
                          f"{in_profile}" if missing
                          else f"scenario does not apply to profile {profile}")
        # As in a played run, only assertion steps test something (a stimulus step would
        # otherwise lend the scenario's `covers` to the not-applicable tally).
        result.steps = [StepResult(s.index, s.action, s.id, NA,
                                   tests=step_tests(scenario, s) if s.action in ASSERTIONS
                                   else ()) for s in steps]
        return result
    started = time.perf_counter()
    session: Session | None = None
    run: Run | None = None
    stopped = False
    try:
        session = target.open(scenario, profile)
        run = Run(scenario, profile, session)
        for step in steps:
            tests = step_tests(scenario, step) if step.action in ASSERTIONS else ()
            if stopped:
                result.steps.append(StepResult(step.index, step.action, step.id, NOT_TESTED,
                                               tests=tests))
                continue
            if step.action in STATUS_STEPS and "status" not in session.capabilities:
                at = run.skip_status_step(step)
                result.steps.append(StepResult(step.index, step.action, step.id, NA, at,
                                               "the target reports no status", tests))
                continue
            try:
                at = run.run_step(step)
            except Inconclusive as exc:
                if run.reference_target:
                    raise _Broken(step, exc) from None
                result.steps.append(StepResult(step.index, step.action, step.id, NOT_TESTED,
                                               session.now(), exc.render(), tests))
                stopped = True
                continue
            except StepFailure as exc:
                now = session.now()
                if lenient_status and step.action in STATUS_STEPS:
                    result.steps.append(StepResult(step.index, step.action, step.id, NA,
                                                   now, exc.render(), tests))
                    run.mark(step, now)
                    continue
                if exc.reference and not run.reference_target:
                    result.steps.append(StepResult(
                        step.index, step.action, step.id, DIFFERS, now, exc.render(), tests,
                        [*run.differences, exc.render()]))
                    run.mark(step, now)
                    if result.verdict == PASS:
                        result.verdict = DIFFERS
                    continue
                result.steps.append(StepResult(step.index, step.action, step.id, FAIL,
                                               now, exc.render(), exc.tests or tests,
                                               run.differences))
                result.verdict = FAIL
                result.failure = f"{step.label}: {exc.render()}"
                stopped = True
                run.listen(GRACE)
                continue
            verdict = DIFFERS if run.differences else PASS
            if verdict == DIFFERS and result.verdict == PASS:
                result.verdict = DIFFERS
            result.steps.append(StepResult(step.index, step.action, step.id, verdict, at,
                                           "", tests, run.differences))
        if result.verdict in (PASS, DIFFERS) and run.requests and not stopped:
            leftover = run.requests[0]
            text = (f"end of scenario: unexpected {leftover.request.method} at "
                    f"t={leftover.at:.3f}\n  message:\n"
                    + _indent(_excerpt(leftover.data, leftover.at), "    | "))
            tests = tuple(rid for rid in scenario.covers if rid.startswith("SUB-"))
            # On another build a request after the last expectation is an observation: the
            # scenario tested what it meant to before it (an explicit `expect_nothing`
            # decides a "do not re-subscribe" requirement).
            if not run.reference_target:
                result.steps.append(StepResult(len(scenario.steps), "end", None, DIFFERS,
                                               leftover.at, text, ("reference",), [text]))
                result.verdict = DIFFERS
            else:
                result.steps.append(StepResult(len(scenario.steps), "end", None, FAIL,
                                               leftover.at, text, tests or ("reference",)))
                result.verdict = FAIL
                result.failure = text
    except _Broken as exc:
        result.verdict = FAIL
        result.failure = f"{exc.step.label}: {exc.failure.render()}"
        result.steps.append(StepResult(exc.step.index, exc.step.action, exc.step.id, FAIL,
                                       None, exc.failure.render(),
                                       step_tests(scenario, exc.step)))
    except Exception as exc:  # a harness or target problem, not a verdict on the subscriber
        result.verdict = ERROR
        result.failure = f"{type(exc).__name__}: {exc}"
    finally:
        if session is not None:
            try:
                session.close()
            except Exception as exc:  # pragma: no cover - best effort
                if result.verdict in (PASS, DIFFERS):
                    result.verdict = ERROR
                    result.failure = f"closing the target: {exc}"
    if run is not None:
        result.transcript = run.transcript
        result.ladder = run.ladder
    result.wall = time.perf_counter() - started
    if scenario.is_xfail(profile):
        result.xfail_reason = scenario.xfail_reason
        if result.verdict == FAIL:
            result.verdict = XFAIL
    return result


RunT = TypeVar("RunT")


def map_runs(one: Callable[[RunT], ScenarioResult], runs: Sequence[RunT],
             jobs: int) -> list[ScenarioResult]:
    """`one` over `runs` in input order, on `jobs` threads (real-time runs are independent).
    An interrupt (Ctrl-C, or SIGTERM turned into an exception by the CLI) cancels the runs
    not yet started and waits for the running ones: each closes its session, which stops
    the process it launched, so nothing is left behind."""
    if jobs == 1:
        return [one(run) for run in runs]
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        return list(pool.map(one, runs))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _Broken(Exception):
    """A step of a reference run referred to something missing: the scenario fails."""

    def __init__(self, step: Step, failure: StepFailure) -> None:
        super().__init__(str(failure))
        self.step = step
        self.failure = failure


__all__ = [
    "DIFFERS",
    "ERROR",
    "FAIL",
    "NA",
    "NOT_TESTED",
    "PASS",
    "XFAIL",
    "Datagram",
    "Incoming",
    "Inconclusive",
    "ScenarioResult",
    "Session",
    "Status",
    "StepResult",
    "Target",
    "run_scenario",
]


def _check_registration(expected: dict[str, Any] | None, observed: Any, excerpt: str) -> None:
    """`expect_status.registration`: the message's registration (package reg) has the given
    keys; `contacts`, when given, are the contacts in order, each with the given keys."""
    if expected is None:
        if observed is not None:
            raise StepFailure("registration should be absent", expected="none",
                              observed=str(observed), excerpt=excerpt)
        return
    if not isinstance(observed, dict):
        raise StepFailure("no registration in the status message", expected=str(expected),
                          observed="none", excerpt=excerpt)
    for key, value in expected.items():
        if key == "contacts":
            contacts = observed.get("contacts") or []
            if len(contacts) != len(value):
                raise StepFailure("wrong number of contacts", expected=str(value),
                                  observed=str(contacts), excerpt=excerpt)
            for want, got in zip(value, contacts, strict=True):
                wrong = {k: got.get(k) for k, v in want.items() if got.get(k) != v}
                if wrong:
                    raise StepFailure("wrong contact", expected=str(want), observed=str(got),
                                      excerpt=excerpt)
        elif observed.get(key) != value:
            raise StepFailure(f"wrong registration {key}", expected=repr(value),
                              observed=repr(observed.get(key)), excerpt=excerpt)
