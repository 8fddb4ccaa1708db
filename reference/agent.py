"""The presence B2BUA engine: routes inputs to subscriptions, runs the table, emits effects.

Rules of this file:
* QSA inputs (`subscribe`, `unsubscribe`, `close`) and what the UA layer (`reference.ua`)
  hands up (`pass_up`: a SUBSCRIBE's outcome; `request_received`: a new NOTIFY) are
  classified into one table `Event` each; the subscription's row of the profile's table
  (`reference.subscription`) names the actions, run in order by the functions of
  `ACTIONS` (bottom of this file, with the rules no row shows).
* Every timer is in the core's one deadline queue (`reference.timers`); a driver calls
  `next_deadline()` / `handle_timers(now)` (through `reference.pump`).
* Profile differences are table rows, `policy` arithmetic or named `policy.Rules`; this
  file never asks which profile runs.
* Sans-IO: every input carries `now`; outputs are effects collected for `drain_effects()`.
Policy randomness (jitter, delays) comes from one `random.Random` seeded from the
configuration; tags, Call-IDs and branches come from the injected `IdSource` (`reference.ids`:
the OS CSPRNG unless a deterministic source is passed, as the simulator and tests do).
See docs/architecture.md for the contract and docs/behaviour.md for the two profiles.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from reference import policy
from reference.config import AgentConfig, ConfigError
from reference.effects import Address, Deliver, Effect, TraceEvent
from reference.ids import (
    BRANCH_BYTES,
    BRANCH_COOKIE,
    CALL_ID_BYTES,
    TAG_BYTES,
    IdSource,
    OsRandomIds,
)
from reference.packages import PACKAGES, Package, lookup
from reference.pidf import PidfError, PresenceDocument, parse_pidf
from reference.qsa import StatusMessage
from reference.reginfo import ApplyResult, ReginfoError, Registration, RegState, parse_reginfo
from reference.rlmi import ListApplyResult, ListState, ResourceChange, RlmiError, parse_list_body
from reference.sip import (
    Headers,
    Request,
    Response,
    SipParseError,
    check_mandatory,
    parse_name_addr,
    parse_uri,
)
from reference.sip.dialog import Dialog, DialogError, route_set_of
from reference.sip.transaction import TimerSettings
from reference.subscribe_input import check_subscribe_uris
from reference.subscription import TABLES, Action, Event, Row, State, Table
from reference.timers import DeadlineQueue, TimerKey, TimerKind
from reference.ua import UserAgent

_T = TypeVar("_T")
PIDF_TYPE = "application/pidf+xml"
P_HINT = "trying new subscription after 3xx"
# States in which the subscription waits for the answer to a SUBSCRIBE it sent.
AWAITING_RESPONSE = frozenset({
    State.UNCONFIRMED, State.UNCONFIRMED_DESTROY, State.RESUBSCRIPTION,
    State.RESUBSCRIPTION_DESTROY, State.PREDESTROYED,
})
# ser: the most characters SER's Expires parser accepts (parse_expires.c, spec §2.1).
SER_EXPIRES_CHARS = 10
# rfc6665: a failing refresh is retried while more than this much of the grant is left;
# below it the next tick is the expiry itself.
MIN_TIME_LEFT = 2.0


@dataclass(slots=True)
class Subscription:
    """Everything the agent keeps about one internal subscription."""

    handle: int
    record: str
    subscriber: str
    destination: str
    package: str
    subscriber_data: Any
    state: State = State.WAITING
    dialog: Dialog | None = None
    tx_branch: str | None = None      # the SUBSCRIBE transaction whose answer is awaited
    timer_kind: str | None = None     # DELAY, FAILOVER, REFRESH, RETRY, TERMWAIT
    timer_at: float | None = None
    expires_at: float | None = None   # granted expiry of the current dialog
    requested_expires: int = 3600
    failures: int = 0                 # consecutive failures (back-off exponent)
    # rfc6665: when the current dialog's initial SUBSCRIBE went out, and how many
    # subscriptions in a row the notifier ended before stable_subscription_time (the
    # re-subscribe storm guard, policy.restart_delay).
    started_at: float = 0.0
    quick_restarts: int = 0
    # Tuples, not lists: almost every subscription never follows a redirect, and an empty
    # tuple is a shared constant where an empty list costs 56 bytes each (x 100,000).
    redirects_seen: tuple[str, ...] = ()
    min_expires_retried: bool = False
    awaiting_notify: bool = False     # rfc6665 Timer N running
    got_2xx: bool = False
    # The body of the last NOTIFY whose PIDF parsed (rfc6665), re-parsed for an empty
    # NOTIFY (SUB-077): the bytes cost a third of the parsed document, kept per subscription.
    last_pidf: bytes | None = None
    unsubscribed: bool = False        # no status messages any more
    destroy_deadline: float | None = None
    # The package's row (reference.packages) and, for `reg` / `presence-list`, the
    # subscriber's copy of the notifier's versioned state (reset with every new dialog).
    pkg: Package = PACKAGES["presence"]
    body_state: RegState | ListState | None = None


@dataclass(slots=True)
class Ctx:
    """What one input carries into the actions of its row."""

    now: float
    event: Event
    response: Response | None = None
    code: int | None = None           # final status (408 for a timeout)
    reason: str | None = None
    notify: Request | None = None
    notify_source: Address | None = None
    reply_status: int = 200
    reply_reason: str | None = None
    status: str | None = None         # QSA status of a NOTIFY
    document: PresenceDocument | None = None
    granted: int | None = None
    retry_after: int | None = None
    delay: float | None = None        # rfc6665 resubscribe delay of a terminated NOTIFY
    redirect_to: str | None = None
    error: str | None = None
    # reg / presence-list: what applying the NOTIFY's document did (None for presence).
    applied: ApplyResult | ListApplyResult | None = None
    accept: tuple[str, ...] | None = None  # the Accept of a 415 answer


class Agent:
    """The sans-IO presence B2BUA (QSA notifier for `presence`, `reg`, `presence-list`).

    Collaborators, each injectable (the conformance suite's self-test builds broken
    subscribers from them): `ids` (the identifier source, `reference.ids`), `table` (the
    profile's transition table), `actions` (what each action of a row does, `ACTIONS`
    below) and `timing` (the delay arithmetic, `policy.Timing`).
    """

    def __init__(self, config: AgentConfig, *, ids: IdSource | None = None,
                 table: Table | None = None, actions: ActionTable | None = None,
                 timing: policy.Timing | None = None) -> None:
        self.config = config
        self.table = TABLES[config.profile] if table is None else table
        self.actions: ActionTable = ACTIONS if actions is None else actions
        self.timing = policy.DEFAULT_TIMING if timing is None else timing
        self.rules = policy.RULES[config.profile]
        # Policy draws only (jitter, delays): seeded, so a run's timing replays.
        self.rng = random.Random(config.seed)
        # Identifiers: unguessable by default; the simulator and tests pass a SeededIds.
        self.ids: IdSource = ids if ids is not None else OsRandomIds()
        self.timer_settings = TimerSettings(
            t1=config.t1, t2=config.t2, t4=config.t4,
            timeout=config.effective_transaction_timeout)
        self.extra_headers = _parse_extra_headers(config.additional_presence_headers)
        self.preloaded_route = [str(r) for r in _parse_route(config.presence_route)]
        self.outbound_proxy: Address | None = None
        if config.presence_outbound_proxy:
            try:
                self.outbound_proxy = parse_uri(config.presence_outbound_proxy).address()
            except SipParseError as exc:
                raise ConfigError(f"presence_outbound_proxy: {exc}") from exc
        self.subscriptions: dict[int, Subscription] = {}
        self.counters: dict[str, int] = {}
        self.closing = False
        self._effects: list[Effect] = []
        # Every timer of the core: subscription timers, Timer N, client transaction timers
        # and the shared Timer J (docs/architecture.md, "Timers").
        self._timers = DeadlineQueue()
        # Trace calls on hot paths are skipped outright when traces are off (trace=0), so
        # their fields are not even computed.
        self.tracing = bool(config.trace)
        self.ua = UserAgent(self, self.timer_settings, self._timers, self._effects,
                            self._count, self._ua_trace, self.tracing)
        self.tcp_enabled = "tcp" in config.transports.split(",")
        self._udp_contact = f"<sip:{config.local_address}>"
        self._next_handle = 1
        # Call-ID -> handle. Our Call-IDs carry 128 random bits, so the Call-ID alone names
        # the dialog here; the tags are checked by Dialog.matches_notify.
        self._by_dialog: dict[str, int] = {}
        self._now = 0.0
        self._bound: dict[int, tuple[Row, tuple[ActionFunction, ...]]] = {}

    # ================================================================ inputs (QSA)
    def subscribe(self, record: str, subscriber: str, destination: str,
                  package: str = "presence", subscriber_data: Any = None, *,
                  now: float) -> int:
        """QSA subscribe: returns a handle; the first SUBSCRIBE goes out at once or after the
        `max_subscribe_delay` draw. Raises ValueError for an unusable record or package
        (`BadSubscribeInput` for the URIs), before anything is registered."""
        self._now = now
        handle = self._next_handle
        self._next_handle += 1
        self._count("qsa.subscribe")
        if not self.config.handle_presence_subscriptions:
            return handle  # SER: accepted and ignored
        pkg = lookup(package, self.config.profile)  # UnknownPackage (a ValueError)
        record = check_subscribe_uris(
            record, subscriber,
            routable_pres=bool(self.preloaded_route) or self.outbound_proxy is not None)
        if len(self.subscriptions) >= self.config.max_subscriptions:
            raise ValueError(f"max_subscriptions ({self.config.max_subscriptions}) reached")
        if self.closing:
            raise ValueError("agent is shutting down")
        sub = Subscription(handle, record, subscriber, destination, package, subscriber_data,
                           requested_expires=self.config.default_expiration, pkg=pkg)
        self.subscriptions[handle] = sub
        if self.config.max_subscribe_delay > 0:
            delay = self.rng.randint(1, self.config.max_subscribe_delay)
            self._start_timer(sub, "DELAY", now + delay)
            self._trace("state", sub, state=sub.state.name.lower(), event="create")
        else:
            self._send_initial(sub, Ctx(now, Event.TICK))
            self._set_state(sub, State.UNCONFIRMED, "create")
        return handle

    def unsubscribe(self, handle: int, *, now: float) -> None:
        """QSA unsubscribe. Unknown handles are ignored (counted), as in SER."""
        self._now = now
        sub = self.subscriptions.get(handle)
        self._count("qsa.unsubscribe")
        if sub is None:
            self._count("qsa.unsubscribe_unknown")
            return
        sub.unsubscribed = True
        if self.rules.bounded_unsubscribe and sub.destroy_deadline is None:
            sub.destroy_deadline = (now + self.config.failover_timeout
                                    + self.config.wait_for_term_notify)
        self._run(sub, Ctx(now, Event.DESTROY))

    def close(self, *, now: float) -> None:
        """Graceful shutdown. rfc6665: unsubscribe every live subscription (`is_idle` tells
        when all are done). ser: SER sends nothing (B13): subscriptions are forgotten."""
        self._now = now
        self.closing = True
        for handle in sorted(self.subscriptions):
            sub = self.subscriptions.get(handle)
            if sub is None:
                continue
            if self.rules.close_forgets:
                self._free(sub)
            elif not sub.unsubscribed:
                self.unsubscribe(handle, now=now)

    @property
    def is_idle(self) -> bool:
        return not self.subscriptions

    # ================================================================ inputs (network, time)
    def datagram_received(self, data: bytes, source: Address, *, now: float,
                          transport: str = "udp") -> None:
        """One received message: a UDP datagram, or (`transport="tcp"`) a message the
        runtime's stream framer cut out of the connection to `source`."""
        self._now = now
        self.ua.datagram_received(data, source, now, transport)

    def transport_lost(self, peer: Address, *, now: float) -> None:
        """The runtime's stream connection to `peer` ended: every SUBSCRIBE transaction
        sent on it fails like a timeout (408; the subscription's retry rules follow)."""
        self._now = now
        if self.ua.transport_lost(peer, now):
            self._count("transport.lost")

    def next_deadline(self) -> float | None:
        """When `handle_timers` has work next (None: no timer is armed). A driver arms one
        wake-up for it after every call into the agent."""
        return self._timers.next_deadline()

    def handle_timers(self, now: float, limit: int | None = None) -> int:
        """Fire every timer due at `now` (at most `limit` of them, so a driver can bound
        one wake-up's work): by deadline, equal deadlines in the order they were armed,
        including timers that firing arms at or before `now`. Returns how many fired."""
        self._now = now
        timers = self._timers
        fired = 0
        while (limit is None or fired < limit) and (key := timers.pop_due(now)) is not None:
            fired += 1
            self._timer_fired(key, now)
        return fired

    def _timer_fired(self, key: TimerKey, now: float) -> None:
        kind = key.kind
        if kind is TimerKind.SUBSCRIPTION:
            sub = self.subscriptions.get(key.handle)
            if sub is None or sub.timer_kind is None:
                return
            sub.timer_kind = None
            sub.timer_at = None
            self._tick(sub, now)
        elif kind is TimerKind.TIMER_N:
            sub = self.subscriptions.get(key.handle)
            if sub is not None and sub.awaiting_notify:
                sub.awaiting_notify = False
                if sub.got_2xx:
                    self._count("timer_n.fired")
                    self._run(sub, Ctx(now, Event.TIMER_N, code=408, reason="timer-n"))
        else:
            self.ua.timer_fired(key, now)

    def drain_effects(self) -> list[Effect]:
        # The list object stays (the UA layer appends to it too): copy, then clear.
        effects = self._effects[:]
        self._effects.clear()
        return effects

    # ================================================================ introspection
    def dump(self) -> list[dict[str, Any]]:
        """Per subscription: what SER's `presence_b2b.trace` RPC should have printed."""
        out = []
        for handle in sorted(self.subscriptions):
            sub = self.subscriptions[handle]
            out.append({
                "handle": handle,
                "record": sub.record,
                "subscriber": sub.subscriber,
                "state": sub.state.name.lower(),
                "state_number": sub.state.value,
                "call_id": sub.dialog.call_id if sub.dialog else None,
                "timer": sub.timer_kind,
                "timer_at": sub.timer_at,
                "expires_at": sub.expires_at,
                "failures": sub.failures,
                "unsubscribed": sub.unsubscribed,
            })
        return out

    def live_timer_count(self) -> int:
        """Subscription timers plus Timer N timers currently armed (for leak checks)."""
        return (sum(1 for s in self.subscriptions.values() if s.timer_kind is not None)
                + sum(1 for s in self.subscriptions.values() if s.awaiting_notify))

    @property
    def armed_timers(self) -> int:
        """Every timer in the core's deadline queue (transaction timers included)."""
        return len(self._timers)

    def timer_deadlines(self) -> dict[TimerKey, float]:
        """Every armed timer of the core with its deadline."""
        return self._timers.deadlines()

    def has_subscription(self, handle: int) -> bool:
        """Whether the agent still holds this handle (a terminated one until it is freed)."""
        return handle in self.subscriptions

    @property
    def subscription_count(self) -> int:
        return len(self.subscriptions)

    def stats(self) -> dict[str, Any]:
        """The counters grouped for people (by method, by status) plus the raw ones; the
        grouping of the dotted counter names lives here, next to the names."""
        counters = dict(self.counters)
        tx_responses = _counter_group(counters, "tx.response.")
        return {
            "subscriptions": len(self.subscriptions),
            "rx_requests_by_method": _counter_group(counters, "rx.request."),
            "rx_responses_by_status": _counter_group(counters, "rx.response."),
            "tx_responses_by_status": tx_responses,
            "tx_subscribe": counters.get("tx.SUBSCRIBE", 0),
            "parse_errors": counters.get("rx.parse_errors", 0),
            "sent_481": tx_responses.get("481", 0),
            "live_timers": len(self._timers),
            "counters": counters,
        }

    @property
    def transaction_count(self) -> int:
        return self.ua.transaction_count

    @property
    def dialog_count(self) -> int:
        return len(self._by_dialog)

    # ================================================================ the table
    def _run(self, sub: Subscription, ctx: Ctx) -> None:
        row: Row | None = self.table.get((sub.state, ctx.event))
        if row is None:  # pragma: no cover - the tables are total (tested)
            raise AssertionError(f"no row for {sub.state} / {ctx.event}")
        before = sub.state
        for function in self._row_functions(row):
            function(self, sub, ctx)
        if sub.handle in self.subscriptions or row.next is State.DESTROYED:
            self._set_state(sub, row.next, ctx.event, before)
        if sub.state not in AWAITING_RESPONSE and sub.tx_branch is not None:
            self._abandon_tx(sub)

    def _row_functions(self, row: Row) -> tuple[ActionFunction, ...]:
        """The functions of a row's actions (from `self.actions`), looked up once per row.
        Keyed by id(row), checked against the row itself: the table outlives the agent."""
        entry = self._bound.get(id(row))
        if entry is None or entry[0] is not row:
            entry = (row, tuple(self.actions[action] for action in row.actions))
            self._bound[id(row)] = entry
        return entry[1]

    def _set_state(self, sub: Subscription, state: State, event: str | Event,
                   before: State | None = None) -> None:
        sub.state = state
        if not self.tracing:
            return
        # (An Event's .value is read only here: enum attribute access is slow on hot paths.)
        self._trace("state", sub, state=state.name.lower(),
                    event=event.value if isinstance(event, Event) else event,
                    before=before.name.lower() if before else None)

    def _tick(self, sub: Subscription, now: float) -> None:
        event = Event.TICK
        code: int | None = None
        # rfc6665: only a grant that has really run out is EXPIRED; a short grant (a few
        # seconds) must still be refreshed, not torn down at its refresh point.
        if self.rules.expiry_event and (
                (sub.state is State.CONFIRMED and sub.expires_at is not None
                 and now >= sub.expires_at)
                or (sub.state is State.RESUBSCRIPTION and self._expired(sub, now))):
            event = Event.EXPIRED
        if sub.state in AWAITING_RESPONSE:
            code = 408  # FAILOVER guard: as if the request timed out
        self._run(sub, Ctx(now, event, code=code, reason="timeout" if code else "expired"
                           if event is Event.EXPIRED else None))

    def _expired(self, sub: Subscription, now: float) -> bool:
        return sub.expires_at is None or now >= sub.expires_at

    # ================================================================ from the UA layer
    def pass_up(self, handle: int, branch: str, response: Response | None,
                now: float) -> None:
        """A response (or a timeout when None) of a SUBSCRIBE transaction reaches the TU."""
        sub = self.subscriptions.get(handle)
        if sub is None or sub.tx_branch != branch:
            self._count("rx.stale_responses")
            return
        status = 408 if response is None else response.status
        if status >= 200:
            sub.tx_branch = None
        ctx = Ctx(now, Event.R1XX, response=response, code=status,
                  reason="timeout" if response is None else str(status))
        ctx.event = self._classify_response(sub, ctx)
        self._run(sub, ctx)

    def _classify_response(self, sub: Subscription, ctx: Ctx) -> Event:
        status = policy.effective_code(ctx.code or 408)
        response = ctx.response
        if response is not None:
            ctx.retry_after = _safe(lambda: response.retry_after)
        if status < 200:
            return Event.R1XX
        if status < 300:
            assert response is not None
            if not response.to.tag and sub.state in (State.UNCONFIRMED,
                                                      State.UNCONFIRMED_DESTROY):
                ctx.reason = "2xx without To tag"  # SUB-134: cannot form a dialog
                return Event.R_FAIL if self.rules.fine_failures else Event.R4XX
            ctx.granted = self._granted(sub, response)
            return Event.R2XX
        if status < 400:
            target = self._next_redirect(sub, response)
            if target is None:
                return Event.R3XX_NO_CONTACT
            ctx.redirect_to = target
            return Event.R3XX
        if not self.rules.fine_failures:
            return Event.R4XX
        if status == 408 and sub.state in (State.UNCONFIRMED, State.UNCONFIRMED_DESTROY) \
                and sub.dialog is not None and sub.dialog.state == "confirmed":
            # A NOTIFY created the dialog, so the SUBSCRIBE did arrive; only its 2xx was lost.
            left = None if sub.expires_at is None else int(sub.expires_at - ctx.now)
            ctx.granted = sub.requested_expires if left is None else max(left, 0)
            return Event.R_TIMEOUT_DIALOG_UP
        refresh = sub.state in (State.RESUBSCRIPTION, State.RESUBSCRIPTION_DESTROY)
        if status == 423 and not sub.min_expires_retried and response is not None:
            min_expires = _safe(lambda: response.min_expires)
            if min_expires is not None and min_expires > 0:
                ctx.granted = min_expires
                return Event.R423
        if refresh and status == 481:
            # The subscription is gone: replaced at once, unless the storm guard delays it
            # (then it ends like the other terminating codes and waits ctx.delay).
            ctx.delay = self._restart_delay(sub, 0.0, ctx.now)
            return Event.R481 if ctx.delay <= 0 else Event.R_TERMINATING
        if refresh and status in policy.REFRESH_TERMINATING:
            return Event.R_TERMINATING
        if refresh and sub.state is State.RESUBSCRIPTION and self._expired(sub, ctx.now):
            return Event.EXPIRED
        return Event.R_FAIL

    def _restart_delay(self, sub: Subscription, requested: float, now: float) -> float:
        delay, sub.quick_restarts = self.timing.restart_delay(
            self.config, requested, now - sub.started_at, sub.quick_restarts, self.rng)
        if delay > requested:
            self._count("restarts.delayed")
        return delay

    def _granted(self, sub: Subscription, response: Response) -> int:
        expires = _safe(lambda: response.expires)
        if expires is None:
            # ser: absent or unparsable -> 0 (spec §2.1, A3); rfc6665: the requested value.
            return 0 if self.rules.missing_expires_is_zero else sub.requested_expires
        if self.rules.long_expires_invalid and \
                len(response.headers.get("Expires") or "") > SER_EXPIRES_CHARS:
            # SER's parser marks a value of more than 10 characters invalid, leading zeros
            # included (spec §2.1 quirk): invalid -> 0 (A3), not the clamped 2**32-1.
            return 0
        return expires

    def _next_redirect(self, sub: Subscription, response: Response | None) -> str | None:
        if response is None:
            return None
        contacts = [c for c in (_safe(lambda: response.contacts) or []) if c.uri]
        if self.rules.first_contact_redirect:
            # SER: the first Contact, q ignored, no loop limit (B6).
            return contacts[0].uri if contacts else None
        # rfc6665: q order (stable), untried URIs only, at most max_redirects per attempt.
        ordered = sorted(contacts, key=lambda c: -(c.q if c.q is not None else 1.0))
        # The record itself starts the chain: a Contact pointing back to it is a loop too.
        seen = {sub.record, *sub.redirects_seen}
        fresh = [c.uri for c in ordered if c.uri and c.uri not in seen]
        if len(sub.redirects_seen) >= self.config.max_redirects or not fresh:
            return None
        return fresh[0]

    def request_received(self, notify: Request, source: Address, destination: Address,
                         now: float) -> None:
        """A NOTIFY that is not a retransmission (the UA layer answers those)."""
        rfc = self.rules.notify_checks
        # A structurally broken request gets 400 in both profiles: SER's core parser and
        # sanity checks reject it before the module sees it (issue 8: 400 naming the problem).
        try:
            check_mandatory(notify)
            if rfc and notify.max_forwards is None:
                raise SipParseError("missing header: Max-Forwards")
        except SipParseError as exc:
            self._count("rx.parse_errors")
            self.ua.reply_malformed(notify, source, str(exc))
            return
        sub = self._find_subscription(notify)
        if sub is None:
            self._count("rx.notify_unknown_dialog")
            # Answered statelessly: a retransmission finds no dialog either and gets the same
            # 481, so a server transaction (32 s of Timer J) would only cost memory in a flood.
            self.ua.respond(notify, destination, 481,
                          now, reason="Subscription does not exist" if rfc
                          else "Unable to handle notification", stateless=True)
            return
        ctx = Ctx(now, Event.NOTIFY, notify=notify, notify_source=destination)
        if rfc and not self._check_notify(sub, notify, ctx):
            self.ua.respond(notify, destination, ctx.reply_status, now, reason=ctx.reply_reason,
                          headers=_reply_headers(ctx.reply_status, ctx.error, ctx.accept))
            return
        if rfc:
            self._classify_notify_rfc(sub, notify, ctx)
        else:
            self._classify_notify_ser(notify, ctx)
        self._run(sub, ctx)

    def _find_subscription(self, notify: Request) -> Subscription | None:
        to_tag = notify.to.tag
        if not to_tag:
            return None
        handle = self._by_dialog.get(notify.call_id)
        if handle is None:
            return None
        sub = self.subscriptions.get(handle)
        if sub is None or sub.dialog is None or not sub.dialog.matches_notify(notify):
            return None  # e.g. a second fork once the dialog exists (SUB-080): 481
        return sub

    def _check_notify(self, sub: Subscription, notify: Request, ctx: Ctx) -> bool:
        """rfc6665 NOTIFY checks 3-6 (rfc6665_profile.md); False = answer ctx.reply_status."""
        event = notify.event
        # Package names compare byte by byte (RFC 6665 §8.2.1): `Presence` is another package.
        if event is None or event.package != sub.pkg.event or event.id is not None:
            ctx.reply_status, ctx.reply_reason = 489, "Bad Event"
            return False
        state = notify.subscription_state
        if state is None:
            ctx.reply_status, ctx.reply_reason = 400, "Missing Subscription-State"
            return False
        dialog = sub.dialog
        assert dialog is not None
        if dialog.remote_tag is not None and dialog.remote_cseq is not None \
                and notify.cseq.number < dialog.remote_cseq:
            ctx.reply_status, ctx.reply_reason = 500, "CSeq out of order"
            return False
        headers = notify.headers
        # Both are absent from almost every NOTIFY: one index probe each before splitting.
        if "Require" in headers:
            # RFC 4662 §4: a list NOTIFY requires `eventlist`, which our SUBSCRIBE supports.
            supported = sub.pkg.supported
            require = [tag for tag in headers.get_all("Require") if tag not in supported]
            if require:
                ctx.reply_status, ctx.reply_reason = 420, "Bad Extension"
                ctx.error = ", ".join(require)
                return False
        if "Content-Encoding" in headers:
            encoding = [e.strip().lower() for e in headers.get_all("Content-Encoding")]
            if any(e and e != "identity" for e in encoding):
                ctx.reply_status, ctx.reply_reason = 415, "Unsupported Media Type"
                return False
        content_type = notify.content_type
        if notify.body and (content_type is None
                            or content_type.mime not in sub.pkg.body_types):
            ctx.reply_status, ctx.reply_reason = 415, "Unsupported Media Type"
            ctx.accept = sub.pkg.body_types
            return False
        return True

    def _classify_notify_rfc(self, sub: Subscription, notify: Request, ctx: Ctx) -> None:
        state = notify.subscription_state
        assert state is not None
        ctx.status = policy.rfc_status(state.value)
        if sub.body_state is not None:
            if notify.body:
                self._apply_versioned(sub, notify, ctx)
        elif notify.body:
            try:
                ctx.document = parse_pidf(notify.body)
            except PidfError as exc:
                self._count("rx.bad_pidf")
                ctx.reply_status, ctx.reply_reason = 400, "Bad PIDF document"
                ctx.error = str(exc)
        elif ctx.status in ("active", "pending") and sub.last_pidf is not None:
            # An empty NOTIFY keeps the current document (SUB-077); it parsed before, so the
            # same bytes parse again to an equal document.
            ctx.document = parse_pidf(sub.last_pidf)
        if ctx.status == "terminated":
            reaction = policy.reason_reaction(state.reason)
            ctx.reason = state.reason or "terminated"
            ctx.retry_after = state.retry_after
            ctx.delay = self.timing.resubscribe_delay(reaction, state.retry_after,
                                                      sub.failures + 1, self.config, self.rng)
            if ctx.delay is not None:
                ctx.delay = self._restart_delay(sub, ctx.delay, ctx.now)
            if reaction.status == "rejected":
                ctx.status = "rejected"
            if ctx.delay is None:
                ctx.event = Event.NOTIFY_TERMINATED_FINAL
            elif ctx.delay <= 0:
                ctx.event = Event.NOTIFY_TERMINATED_NOW
            else:
                ctx.event = Event.NOTIFY_TERMINATED_LATER
        else:
            ctx.granted = state.expires

    def _apply_versioned(self, sub: Subscription, notify: Request, ctx: Ctx) -> None:
        """reg / presence-list: parse the body and apply it to the subscription's versioned
        state (RFC 3680 §5.2, RFC 4662 §4.1). A body that does not parse gets 400 and a
        status message naming the error (as a bad PIDF does); the state and its version
        stay as they were."""
        body_state = sub.body_state
        try:
            if isinstance(body_state, RegState):
                ctx.applied = body_state.apply(parse_reginfo(notify.body))
            else:
                assert body_state is not None
                content_type = notify.content_type
                params = content_type.params if content_type is not None else {}
                if content_type is not None and content_type.mime == PIDF_TYPE:
                    # RFC 4662 §5: a list server may answer with the plain package's body
                    # (the URI was not a list): reported as a one-resource update.
                    ctx.document = parse_pidf(notify.body)
                    return
                ctx.applied = body_state.apply(parse_list_body(notify.body, params))
        except (ReginfoError, RlmiError, PidfError) as exc:
            self._count(f"rx.bad_{sub.pkg.name}_body")
            ctx.reply_status, ctx.reply_reason = 400, "Bad Request"
            ctx.error = str(exc)
            return
        outcome = ctx.applied.outcome
        self._count(f"{sub.pkg.name}.{outcome}")
        if ctx.applied.needs_full_state:
            self._trace("version_gap", sub, version=ctx.applied.version)

    def _classify_notify_ser(self, notify: Request, ctx: Ctx) -> None:
        raw = notify.headers.get("Subscription-State")
        ctx.status = policy.ser_status(raw)
        if notify.body:
            try:
                ctx.document = parse_pidf(notify.body, lenient=True)
            except PidfError as exc:
                # SER answers 200 and drops the notification (B11).
                ctx.error = str(exc)
        if policy.ser_is_terminating(raw):
            ctx.event = Event.NOTIFY_TERMINATED

    # ================================================================ actions
    def _do_stop(self, sub: Subscription, ctx: Ctx) -> None:
        self._stop_timer(sub)

    def _do_confirm(self, sub: Subscription, ctx: Ctx) -> None:
        assert sub.dialog is not None and ctx.response is not None
        try:
            sub.dialog.confirm(ctx.response, keep_preloaded_route=self.rules.keep_preloaded_route
                               and bool(self.preloaded_route))
        except DialogError as exc:
            # A 2xx from another fork after an early NOTIFY made the dialog: keep ours.
            self._trace("dialog_error", sub, error=str(exc))
        sub.got_2xx = True

    def _do_update_from_2xx(self, sub: Subscription, ctx: Ctx) -> None:
        assert sub.dialog is not None and ctx.response is not None
        sub.dialog.refresh_target(ctx.response)
        sub.got_2xx = True

    def _do_update_from_notify(self, sub: Subscription, ctx: Ctx) -> None:
        dialog, notify = sub.dialog, ctx.notify
        assert dialog is not None and notify is not None
        if dialog.state == "early":
            if self.rules.notify_creates_dialog:
                dialog.confirm_from_notify(notify)  # SUB-010: the NOTIFY creates the dialog
            return  # SER: the unconfirmed dialog learns nothing from a NOTIFY
        if not self.rules.notify_route_set:
            number = notify.cseq.number
            if dialog.remote_cseq is None or number > dialog.remote_cseq:
                dialog.remote_cseq = number
        else:
            if dialog.remote_cseq is None:
                # SUB-049 (RFC 6665 §4.4.1): the first NOTIFY creates the dialog usage, so
                # its Record-Route (in order: we are its UAS) is the route set, not the 2xx's.
                dialog.route_set = route_set_of(notify.record_routes)
            dialog.check_remote_cseq(notify.cseq.number)
        dialog.refresh_target(notify)

    def _do_notify_seen(self, sub: Subscription, ctx: Ctx) -> None:
        if sub.awaiting_notify:
            sub.awaiting_notify = False
            self._timers.cancel(TimerKey(TimerKind.TIMER_N, sub.handle))
        if ctx.status in ("active", "pending"):
            sub.failures = 0
        if ctx.document is not None and self.rules.keep_last_pidf and ctx.notify is not None \
                and ctx.notify.body:
            # Kept for an empty NOTIFY (SUB-077, rfc6665 only): ser never reads it back.
            sub.last_pidf = ctx.notify.body
        if ctx.granted is not None and ctx.status in ("active", "pending"):
            # SUB-028/029: the NOTIFY's expires is authoritative.
            sub.expires_at = ctx.now + ctx.granted
            if sub.state is State.CONFIRMED:
                self._start_timer(sub, "REFRESH",
                                  ctx.now + self.timing.refresh_delay(self.config, ctx.granted))
        if ctx.applied is not None and ctx.applied.needs_full_state \
                and ctx.status in ("active", "pending") and sub.state is State.CONFIRMED:
            # RFC 3680 §5.2 / RFC 4662 §4.1: a lost update; a refresh now makes the notifier
            # send full state (the refresh is the REFRESH tick, brought forward).
            self._count(f"{sub.pkg.name}.refresh_for_full_state")
            self._start_timer(sub, "REFRESH", ctx.now)

    def _do_reply_200(self, sub: Subscription, ctx: Ctx) -> None:
        assert ctx.notify is not None and ctx.notify_source is not None
        self.ua.respond(ctx.notify, ctx.notify_source, ctx.reply_status, ctx.now,
                      reason=ctx.reply_reason)

    def _do_reply_481(self, sub: Subscription, ctx: Ctx) -> None:
        assert ctx.notify is not None and ctx.notify_source is not None
        self.ua.respond(ctx.notify, ctx.notify_source, 481, ctx.now)

    def _do_reply_500(self, sub: Subscription, ctx: Ctx) -> None:
        assert ctx.notify is not None and ctx.notify_source is not None
        self.ua.respond(ctx.notify, ctx.notify_source, 500, ctx.now, reason="Internal error")

    def _do_deliver(self, sub: Subscription, ctx: Ctx) -> None:
        notify = ctx.notify
        assert notify is not None and ctx.status is not None
        if self.rules.drop_bad_pidf and ctx.error is not None:
            self._count("qsa.dropped_bad_pidf")
            return
        content_type = notify.headers.get("Content-Type")
        retry_at = None
        if ctx.delay is not None and ctx.status in ("terminated", "rejected"):
            retry_at = ctx.now + ctx.delay
        reason = ctx.reason
        if ctx.error is not None:
            reason = (f"bad-pidf: {ctx.error}" if sub.body_state is None
                      else f"bad-{sub.pkg.name}: {ctx.error}")
        applied = ctx.applied
        if applied is not None:
            if applied.outcome == "applied":  # (stale or a gap: nothing new to report)
                self._deliver_changes(sub, ctx, applied, retry_at, reason)
            if ctx.status in ("active", "pending"):
                return  # else the subscription ends: its own status message follows
        self._deliver(sub, StatusMessage(
            handle=sub.handle, record=sub.record, subscriber=sub.subscriber,
            package=sub.package, status=ctx.status, document=ctx.document, body=notify.body,
            content_type=content_type, reason=reason, retry_at=retry_at,
            subscriber_data=sub.subscriber_data, at=ctx.now))

    def _deliver_changes(self, sub: Subscription, ctx: Ctx,
                         applied: ApplyResult | ListApplyResult, retry_at: float | None,
                         reason: str | None) -> None:
        """reg: one status message per registration the NOTIFY changed; presence-list: one
        per changed resource (its instance state is the message's status, a terminated
        instance's reason its reason). A NOTIFY that ends the subscription adds the
        subscription's own status message after them (`_do_deliver`)."""
        assert ctx.status is not None and ctx.notify is not None
        for change in applied.changed:
            if isinstance(change, Registration):
                message = StatusMessage(
                    handle=sub.handle, record=sub.record, subscriber=sub.subscriber,
                    package=sub.package, status=ctx.status, body=ctx.notify.body,
                    content_type=ctx.notify.headers.get("Content-Type"), reason=reason,
                    retry_at=retry_at, subscriber_data=sub.subscriber_data, at=ctx.now,
                    registration=change)
            else:
                assert isinstance(change, ResourceChange)
                message = StatusMessage(
                    handle=sub.handle, record=sub.record, subscriber=sub.subscriber,
                    package=sub.package, status=change.state, document=change.document,
                    body=change.body, content_type=change.content_type,
                    reason=change.reason, subscriber_data=sub.subscriber_data, at=ctx.now,
                    list_uri=change.list_uri, resource=change.uri)
            self._deliver(sub, message)

    def _do_report_failure(self, sub: Subscription, ctx: Ctx) -> None:
        code = ctx.code
        permanent = code is not None and policy.effective_code(code) in policy.PERMANENT \
            and ctx.event is not Event.R_TERMINATING
        status = "rejected" if permanent else "terminated"
        delay = self._retry_delay(sub, ctx)
        self._deliver(sub, StatusMessage(
            handle=sub.handle, record=sub.record, subscriber=sub.subscriber,
            package=sub.package, status=status, reason=ctx.reason,
            retry_at=ctx.now + delay, subscriber_data=sub.subscriber_data, at=ctx.now))

    def _retry_delay(self, sub: Subscription, ctx: Ctx) -> float:
        """The delay before the next attempt after a failure; drawn once per input."""
        if ctx.delay is None:
            if ctx.event is Event.R481:
                ctx.delay = 0.0
            elif (self.rules.permanent_waits_max_retry and ctx.code is not None
                  and policy.effective_code(ctx.code) in policy.PERMANENT):
                ctx.delay = float(self.config.max_retry_time)
            else:
                ctx.delay = self.timing.backoff_delay(self.config, sub.failures + 1, self.rng,
                                                 ctx.retry_after)
        return ctx.delay

    def _do_send_initial(self, sub: Subscription, ctx: Ctx) -> None:
        self._send_initial(sub, ctx)

    def _do_send_redirect(self, sub: Subscription, ctx: Ctx) -> None:
        assert ctx.redirect_to is not None
        sub.redirects_seen = (*sub.redirects_seen, ctx.redirect_to)
        self._count("redirects")
        self._new_dialog_request(sub, ctx.redirect_to, ctx.now, redirected=True)

    def _do_send_min_expires(self, sub: Subscription, ctx: Ctx) -> None:
        assert ctx.granted is not None and sub.dialog is not None
        sub.min_expires_retried = True
        sub.requested_expires = max(sub.requested_expires, ctx.granted)
        self._send_in_dialog(sub, sub.requested_expires, ctx.now)

    def _do_send_refresh(self, sub: Subscription, ctx: Ctx) -> None:
        sub.min_expires_retried = False
        self._send_in_dialog(sub, sub.requested_expires, ctx.now)

    def _do_send_unsubscribe(self, sub: Subscription, ctx: Ctx) -> None:
        self._send_in_dialog(sub, 0, ctx.now)

    def _do_start_refresh(self, sub: Subscription, ctx: Ctx) -> None:
        granted = ctx.granted if ctx.granted is not None else 0
        sub.expires_at = ctx.now + granted
        self._start_timer(sub, "REFRESH", ctx.now + self.timing.refresh_delay(self.config, granted))

    def _do_start_refresh_retry(self, sub: Subscription, ctx: Ctx) -> None:
        # SUB-016: the subscription is still valid until its known expiry; try again before.
        assert sub.expires_at is not None
        sub.failures += 1
        backoff = self.timing.backoff_delay(self.config, sub.failures, self.rng, ctx.retry_after)
        left = sub.expires_at - ctx.now
        # A Retry-After is a floor (SUB-131) even against "half the time left": when it
        # reaches past the expiry, the refresh is not retried and the grant runs out.
        floor = float(ctx.retry_after) if ctx.retry_after is not None else 0.0
        if left <= MIN_TIME_LEFT or floor >= left:
            # No time for another try: the next tick is the expiry (-> EXPIRED).
            self._start_timer(sub, "REFRESH", sub.expires_at)
        else:
            self._start_timer(sub, "REFRESH", ctx.now + max(min(backoff, left / 2), floor))

    def _do_start_retry(self, sub: Subscription, ctx: Ctx) -> None:
        delay = self._retry_delay(sub, ctx)
        sub.failures += 1
        self._count("retries")
        self._start_timer(sub, "RETRY", ctx.now + delay)

    def _do_start_resubscribe_wait(self, sub: Subscription, ctx: Ctx) -> None:
        assert ctx.delay is not None
        sub.failures += 1
        self._start_timer(sub, "RETRY", ctx.now + ctx.delay)

    def _do_start_termwait(self, sub: Subscription, ctx: Ctx) -> None:
        at = ctx.now + self.config.wait_for_term_notify
        if sub.destroy_deadline is not None:
            # rfc6665: an unsubscribe ends within failover_timeout + wait_for_term_notify,
            # even when the 2xx to the initial SUBSCRIBE came late (found by the stateful test).
            at = min(at, sub.destroy_deadline)
        self._start_timer(sub, "TERMWAIT", at)

    def _do_abandon_tx(self, sub: Subscription, ctx: Ctx) -> None:
        self._abandon_tx(sub)

    def _do_drop_dialog(self, sub: Subscription, ctx: Ctx) -> None:
        self._drop_dialog(sub)

    def _do_free(self, sub: Subscription, ctx: Ctx) -> None:
        self._free(sub)

    def _do_log_stale(self, sub: Subscription, ctx: Ctx) -> None:
        self._count("rx.stale_responses")

    def _do_log_no_term_notify(self, sub: Subscription, ctx: Ctx) -> None:
        self._count("termwait_expired")
        self._trace("warning", sub, text="destroying dialog with timer (no term NOTIFY)")

    # ================================================================ helpers: sending
    def _send_initial(self, sub: Subscription, ctx: Ctx) -> None:
        sub.redirects_seen = ()
        self._new_dialog_request(sub, sub.record, ctx.now, redirected=False)

    def _new_dialog_request(self, sub: Subscription, target: str, now: float, *,
                            redirected: bool) -> None:
        self._drop_dialog(sub)
        sub.min_expires_retried = False
        sub.expires_at = None
        sub.started_at = now
        # A new dialog starts a new version sequence (RFC 3680 §5.2, RFC 4662 §4.1).
        if sub.pkg.name == "reg":
            sub.body_state = RegState()
        elif sub.pkg.list:
            sub.body_state = ListState()
        local_tag = self.ids.hex(TAG_BYTES)
        call_id = f"{self.ids.hex(CALL_ID_BYTES)}@{self.config.local_host}"
        ser = self.rules.verbatim_uris
        # ser: QSA strings verbatim, and after a redirect To = the Contact (B6).
        # Interned: a watcher's many subscriptions share one copy of these strings.
        remote_uri = sys.intern((target if redirected else sub.record) if ser
                                else f"<{sub.record}>")
        local_uri = sys.intern(sub.subscriber if ser else f"<{sub.subscriber}>")
        sub.dialog = Dialog.new_uac(call_id=call_id, local_uri=local_uri, local_tag=local_tag,
                                    remote_uri=remote_uri, remote_target=target,
                                    preloaded_route=self.preloaded_route)
        self._by_dialog[call_id] = sub.handle
        extra = [("P-Hint", P_HINT)] if redirected and ser else []
        self._send_subscribe(sub, sub.requested_expires, now, extra, out_of_dialog=True)
        self._count("subscribe.initial")

    def _send_in_dialog(self, sub: Subscription, expires: int, now: float) -> None:
        self._send_subscribe(sub, expires, now, [], out_of_dialog=sub.dialog is not None
                             and sub.dialog.state == "early")

    def _send_subscribe(self, sub: Subscription, expires: int, now: float,
                        extra: list[tuple[str, str]], *, out_of_dialog: bool) -> None:
        dialog = sub.dialog
        assert dialog is not None
        if sub.tx_branch is not None:
            self._abandon_tx(sub)
        branch = BRANCH_COOKIE + self.ids.hex(BRANCH_BYTES)
        pkg = sub.pkg
        headers: list[tuple[str, str]] = [("Event", pkg.event)]
        if pkg.accept_always or self.rules.accept_header:
            headers.append(("Accept", ", ".join(pkg.accept)))
        if pkg.supported:
            headers.append(("Supported", ", ".join(pkg.supported)))
        headers.extend(self.extra_headers)
        headers.append(("Expires", str(expires)))
        headers.extend(extra)
        transport = self._transport_for(dialog) if self.tcp_enabled else "udp"
        request, next_hop = dialog.build_request(
            "SUBSCRIBE", branch=branch, sent_by=self.config.local_address,
            contact=self._contact(transport), headers=headers, transport=transport.upper())
        if transport == "udp" and self.tcp_enabled and \
                len(request.to_bytes()) > self.config.udp_max_bytes:
            # RFC 3261 §18.1.1: too large for UDP; same request, Via and Contact say TCP.
            transport = "tcp"
            request.headers.set("Via", request.headers.get_all("Via")[0].replace(
                "SIP/2.0/UDP ", "SIP/2.0/TCP ", 1))
            request.headers.set("Contact", self._contact(transport))
            self._count("tx.oversize_to_tcp")
        if out_of_dialog and self.outbound_proxy is not None:
            destination = self.outbound_proxy
        else:
            destination = parse_uri(next_hop).address()
        sub.tx_branch = branch
        self._count("tx.SUBSCRIBE")
        if self.tracing:
            self._trace("send", sub, first_line=request.start_line(), call_id=dialog.call_id,
                        cseq=dialog.local_cseq, expires=expires)
        self.ua.start_client(request, branch, sub.handle, destination, now, transport)
        guard = now + self.config.failover_timeout
        if sub.destroy_deadline is not None:
            guard = min(guard, sub.destroy_deadline)
        self._start_timer(sub, "FAILOVER", guard)
        if self.rules.timer_n and expires > 0:
            sub.got_2xx = False
            sub.awaiting_notify = True
            self._timers.arm(TimerKey(TimerKind.TIMER_N, sub.handle),
                             now + 64 * self.config.t1)

    def _transport_for(self, dialog: Dialog) -> str:
        """RFC 3261 §18.1.1 / §18.2.1: the next hop URI's `transport` parameter decides
        (asked only when this agent runs TCP; otherwise UDP, as before issue 17)."""
        try:
            wanted = parse_uri(dialog.next_hop()).params.get("transport")
        except SipParseError:
            return "udp"
        return "tcp" if wanted is not None and wanted.lower() == "tcp" else "udp"

    def _contact(self, transport: str) -> str:
        # RFC 3261 §8.1.1.8 / §18: the Contact of a request sent over TCP asks for TCP.
        if transport == "tcp":
            return f"<sip:{self.config.local_address};transport=tcp>"
        return self._udp_contact

    def _abandon_tx(self, sub: Subscription) -> None:
        branch = sub.tx_branch
        sub.tx_branch = None
        if branch is None:
            return
        self.ua.abandon_client(branch)
        self._count("tx.abandoned")

    # ================================================================ helpers: state
    def _start_timer(self, sub: Subscription, kind: str, at: float) -> None:
        sub.timer_kind = kind
        sub.timer_at = at
        self._timers.arm(TimerKey(TimerKind.SUBSCRIPTION, sub.handle), at)

    def _stop_timer(self, sub: Subscription) -> None:
        if sub.timer_kind is not None:
            sub.timer_kind = None
            sub.timer_at = None
            self._timers.cancel(TimerKey(TimerKind.SUBSCRIPTION, sub.handle))

    def _drop_dialog(self, sub: Subscription) -> None:
        if sub.dialog is not None:
            self._by_dialog.pop(sub.dialog.call_id, None)
            sub.dialog = None
        sub.expires_at = None

    def _free(self, sub: Subscription) -> None:
        self._stop_timer(sub)
        if sub.awaiting_notify:
            sub.awaiting_notify = False
            self._timers.cancel(TimerKey(TimerKind.TIMER_N, sub.handle))
        self._abandon_tx(sub)
        self._drop_dialog(sub)
        self.subscriptions.pop(sub.handle, None)
        self._count("subscriptions.freed")
        self._trace("state", sub, state="destroyed", event="free")

    def _deliver(self, sub: Subscription, message: StatusMessage) -> None:
        if sub.unsubscribed:
            return  # nothing is delivered after the internal subscriber left
        self._count("qsa.delivered")
        self._effects.append(Deliver(sub.destination, message))
        if self.tracing:
            self._trace("deliver", sub, status=message.status, reason=message.reason)

    def _count(self, name: str, amount: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + amount

    def _ua_trace(self, kind: str, **fields: Any) -> None:
        self._trace(kind, None, **fields)

    def _trace(self, kind: str, sub: Subscription | None, **fields: Any) -> None:
        if not self.tracing:
            return
        if sub is not None:
            fields = {"handle": sub.handle, **fields}
        self._effects.append(TraceEvent(self._now, kind, fields))


# ==================================================================== the action table
ActionFunction = Callable[[Agent, Subscription, Ctx], None]
ActionTable = Mapping[Action, ActionFunction]

# What each action of a row does. A row runs its actions in the order it lists them, then
# sets the next state. The rules no row shows, all in `Agent`:
# * after the row, a subscription whose state no longer awaits a SUBSCRIBE answer has its
#   outstanding SUBSCRIBE transaction abandoned (`_run`; its late answer is "stale");
# * a subscription timer that fires is TICK, except that rfc6665 turns it into EXPIRED when
#   the grant really ran out, and a TICK in a state awaiting an answer carries 408 (the
#   FAILOVER guard) (`_tick`);
# * Timer N becomes TIMER_N only once a 2xx arrived; before, the failover timer covers it
#   (`_timer_fired`);
# * REPLY_200 answers with the status the classification left in `ctx.reply_status` (400 for
#   a bad PIDF in rfc6665, with a status message that names the error);
# * the delay after a failure is drawn once per input (`_retry_delay` keeps it in
#   `ctx.delay`): REPORT_FAILURE's `retry_at` and START_RETRY's timer agree whatever
#   their order in the row.
ACTIONS: ActionTable = {
    Action.STOP: Agent._do_stop,
    Action.CONFIRM: Agent._do_confirm,
    Action.UPDATE_FROM_2XX: Agent._do_update_from_2xx,
    Action.UPDATE_FROM_NOTIFY: Agent._do_update_from_notify,
    Action.NOTIFY_SEEN: Agent._do_notify_seen,
    Action.REPLY_200: Agent._do_reply_200,
    Action.REPLY_481: Agent._do_reply_481,
    Action.REPLY_500: Agent._do_reply_500,
    Action.DELIVER: Agent._do_deliver,
    Action.REPORT_FAILURE: Agent._do_report_failure,
    Action.SEND_INITIAL: Agent._do_send_initial,
    Action.SEND_REDIRECT: Agent._do_send_redirect,
    Action.SEND_MIN_EXPIRES: Agent._do_send_min_expires,
    Action.SEND_REFRESH: Agent._do_send_refresh,
    Action.SEND_UNSUBSCRIBE: Agent._do_send_unsubscribe,
    Action.START_REFRESH: Agent._do_start_refresh,
    Action.START_REFRESH_RETRY: Agent._do_start_refresh_retry,
    Action.START_RETRY: Agent._do_start_retry,
    Action.START_RESUBSCRIBE_WAIT: Agent._do_start_resubscribe_wait,
    Action.START_TERMWAIT: Agent._do_start_termwait,
    Action.ABANDON_TX: Agent._do_abandon_tx,
    Action.DROP_DIALOG: Agent._do_drop_dialog,
    Action.FREE: Agent._do_free,
    Action.LOG_STALE: Agent._do_log_stale,
    Action.LOG_NO_TERM_NOTIFY: Agent._do_log_no_term_notify,
}


# ==================================================================== module helpers
def _counter_group(counters: dict[str, int], prefix: str) -> dict[str, int]:
    return {name[len(prefix):]: value for name, value in sorted(counters.items())
            if name.startswith(prefix)}


def _safe(read: Callable[[], _T]) -> _T | None:
    """Read a typed header; a bad value counts as absent (the caller decides the default)."""
    try:
        return read()
    except SipParseError:
        return None


def _parse_extra_headers(text: str) -> list[tuple[str, str]]:
    """`additional_presence_headers` as complete header lines (spec A7: CRLF normalised)."""
    out: list[tuple[str, str]] = []
    for line in text.replace("\\r\\n", "\n").replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or " " in name.strip():
            raise ConfigError(f"additional_presence_headers: not a header line: {line!r}")
        out.append((name.strip(), value.strip()))
    return out


def _parse_route(text: str) -> list[str]:
    if not text.strip():
        return []
    routes: list[str] = []
    try:
        for part in Headers([("Route", text)]).get_all("Route"):
            routes.append(str(parse_name_addr(part)))
    except SipParseError as exc:
        raise ConfigError(f"presence_route: {exc}") from exc
    return routes


def _reply_headers(status: int, error: str | None = None,
                   accept: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
    if status == 420 and error:
        return [("Unsupported", error)]  # SUB-147: name the option tags we do not support
    if status == 415:
        return [("Accept", ", ".join(accept or (PIDF_TYPE,))), ("Accept-Encoding", "identity")]
    return []
