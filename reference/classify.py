"""Classification: what one input means for one subscription, as a table event and facts.

Rules of this file:
1. Pure: every function is `(profile, state, view, message, now) -> (Event, facts)` (or a
   `Refusal`, or None). It reads the subscription through the read-only `View`, never
   changes it, never draws randomness, counts nothing and emits nothing. Facts are frozen.
2. An event that depends on a delay is decided by the draw-free predicates of `policy`
   (`resubscribe_when`, `restart_guarded`, through the injected `policy.Timing`); the
   delay itself is drawn by the action dispatcher (`actions.run`, rule 2) from
   `Facts.restart` / the row, once per input.
3. A subscription timer is TICK, except that a rule (`expiry_event`) turns it into EXPIRED
   when the grant has really run out; in a state awaiting a SUBSCRIBE answer it carries
   408 (the FAILOVER guard: as if the request timed out).
4. Timer N is TIMER_N only once a 2xx arrived; before, the failover timer covers it (None).
5. A NOTIFY is first checked for structure (`malformed`: 400 through the UA layer), then
   matched (`unknown_dialog`: 481), then checked against its subscription
   (`Classifier.notify_checks`, in order, the first refusal answers it and the table never
   sees it), then classified. A body that does not parse is answered with
   `NotifyFacts.answer` (rfc6665: 400 naming the error) by the row's REPLY_200.
6. Bodies are parsed by content type: `BODY_PARSERS` (PIDF, a `PresenceDocument`) and
   `VERSIONED_BODY_PARSERS` (reginfo, RFC 3680; multipart/related list bodies, RFC 4662:
   versioned state, applied to the subscription by `actions.run`, rule 8). Which types a
   subscription accepts is its package's (`reference.packages`); another type is 415.
7. Profile differences are the two `CLASSIFIERS`, named `policy.Rules` and `policy.Timing`;
   nothing here asks which profile runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol, TypeVar

from reference import policy
from reference.digest import Challenge, DigestSession
from reference.effects import Address
from reference.packages import MULTIPART_RELATED, REGINFO_TYPE, Package
from reference.pidf import PidfError, PresenceDocument, parse_pidf
from reference.reginfo import ApplyResult, ReginfoDocument, ReginfoError, parse_reginfo
from reference.resend import answer_challenge, drop_option_tags
from reference.rlmi import ListApplyResult, ListNotification, RlmiError, parse_list_body
from reference.sip import Request, Response, SipParseError, check_mandatory
from reference.sip.dialog import Dialog
from reference.subscription import AWAITING_RESPONSE, Event, State

_T = TypeVar("_T")
PIDF_TYPE = "application/pidf+xml"
# ser: the most characters SER's Expires parser accepts (parse_expires.c, spec §2.1).
SER_EXPIRES_CHARS = 10
UNCONFIRMED_STATES = (State.UNCONFIRMED, State.UNCONFIRMED_DESTROY)
REFRESH_STATES = (State.RESUBSCRIPTION, State.RESUBSCRIPTION_DESTROY)

Profile = policy.Profile
# The members read on every NOTIFY, response and tick, bound once: a member read off its class
# goes through the hook of EnumType.__getattr__ (CPython 3.11), ~10x a global's cost.
NOTIFY, TICK, EXPIRED, R2XX = Event.NOTIFY, Event.TICK, Event.EXPIRED, Event.R2XX
CONFIRMED, RESUBSCRIPTION = State.CONFIRMED, State.RESUBSCRIPTION


def _parse_pidf(body: bytes, lenient: bool) -> PresenceDocument:
    return parse_pidf(body, lenient=lenient)


# Content type -> parser of a NOTIFY body (lenient: SER's reading). An event package adds its
# own; a NOTIFY body of any other type is refused (415) where the checks apply.
BODY_PARSERS: dict[str, Callable[[bytes, bool], PresenceDocument]] = {
    PIDF_TYPE: _parse_pidf,
}

Versioned = ReginfoDocument | ListNotification


def _parse_reginfo(body: bytes, params: Mapping[str, str | None]) -> Versioned:
    return parse_reginfo(body)


def _parse_list(body: bytes, params: Mapping[str, str | None]) -> Versioned:
    return parse_list_body(body, params)


# Content type -> parser of a versioned NOTIFY body (the Content-Type's parameters give the
# multipart boundary); `ReginfoError` / `RlmiError` when it is not acceptable.
VERSIONED_BODY_PARSERS: dict[str, Callable[[bytes, Mapping[str, str | None]], Versioned]] = {
    REGINFO_TYPE: _parse_reginfo,
    MULTIPART_RELATED: _parse_list,
}


class View(Protocol):
    """What classification may read of a subscription (`core.Subscription` is one)."""

    @property
    def record(self) -> str: ...
    @property
    def package(self) -> str: ...
    @property
    def pkg(self) -> Package: ...
    @property
    def dialog(self) -> Dialog | None: ...
    @property
    def expires_at(self) -> float | None: ...
    @property
    def requested_expires(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def started_at(self) -> float: ...
    @property
    def quick_restarts(self) -> int: ...
    @property
    def redirects_seen(self) -> tuple[str, ...]: ...
    @property
    def min_expires_retried(self) -> bool: ...
    @property
    def got_2xx(self) -> bool: ...
    @property
    def last_pidf(self) -> bytes | None: ...
    # issue 18
    @property
    def subscriber(self) -> str: ...
    @property
    def fetch(self) -> bool: ...
    @property
    def auth(self) -> DigestSession | None: ...
    @property
    def option_tags(self) -> tuple[str, ...]: ...
    @property
    def tags_dropped(self) -> bool: ...


# ==================================================================== facts
# Named tuples: frozen, and built several times cheaper than frozen dataclasses (one per
# input); the three share their first seven fields.
class Facts(NamedTuple):
    """What an input carries into the actions of its row."""

    now: float
    code: int | None = None          # the failure's status (408: timeout, FAILOVER guard)
    reason: str | None = None
    granted: int | None = None       # seconds granted (2xx Expires, NOTIFY expires, 423)
    retry_after: int | None = None
    # Set when the notifier ended the subscription and allows a new one: the reason's
    # reaction the restart delay is drawn from (`actions.run`, rule 2).
    restart: policy.ReasonReaction | None = None
    # A permanent failure: its status message says `rejected` (not for a refresh that the
    # notifier ended, RFC 6665 §4.1.2.2).
    rejected: bool = False


class ResponseFacts(NamedTuple):
    """A SUBSCRIBE's outcome (response None: the transaction timed out)."""

    now: float
    code: int | None
    reason: str | None
    granted: int | None
    retry_after: int | None
    restart: policy.ReasonReaction | None
    rejected: bool
    response: Response | None = None
    redirect_to: str | None = None
    # R_RESEND (issue 18): the challenges to answer from now on, or the option tags to
    # send from now on (the RESEND action adopts them).
    challenges: tuple[Challenge, ...] = ()
    option_tags: tuple[str, ...] | None = None


class Refusal(NamedTuple):
    """An answer other than 200 to a NOTIFY, and the counter it counts."""

    status: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    error: str | None = None
    counter: str | None = None


class NotifyFacts(NamedTuple):
    """A NOTIFY of a subscription's dialog, checked."""

    now: float
    code: int | None
    reason: str | None
    granted: int | None
    retry_after: int | None
    restart: policy.ReasonReaction | None
    rejected: bool
    notify: Request | None = None
    source: Address | None = None    # where its answer goes
    status: str = "pending"          # QSA status
    document: PresenceDocument | None = None
    error: str | None = None         # why the body did not parse
    answer: Refusal | None = None    # the row's REPLY_200 answers this instead of 200
    # reg / presence-list: the parsed versioned body, and what applying it to the
    # subscription's state did (set by `actions.run`, rule 8; None before and for presence).
    versioned: Versioned | None = None
    applied: ApplyResult | ListApplyResult | None = None


AnyFacts = Facts | ResponseFacts | NotifyFacts
NotifyCheck = Callable[[View, Request], "Refusal | None"]


# ==================================================================== responses
def classify_response(profile: Profile, state: State, view: View, response: Response | None,
                      now: float) -> tuple[Event, ResponseFacts]:
    """A SUBSCRIBE's response (or timeout, None) for a subscription in `state`."""
    rules = profile.rules
    code = 408 if response is None else response.status
    reason = "timeout" if response is None else str(code)
    status = policy.effective_code(code)
    retry_after = None if response is None else _safe(lambda: response.retry_after)
    if status < 200:
        return Event.R1XX, ResponseFacts(now, code, reason, None, retry_after, None, False,
                                         response)
    if status < 300:
        assert response is not None
        if not response.to.tag and state in UNCONFIRMED_STATES:
            # SUB-134: a 2xx without To tag cannot form a dialog.
            return (Event.R_FAIL if rules.fine_failures else Event.R4XX,
                    ResponseFacts(now, code, "2xx without To tag", None, retry_after, None,
                                  False, response))
        # RFC 5839: a 204 says no NOTIFY follows (SUB-018).
        event = Event.R204 if code == 204 and rules.conditional_notify else R2XX
        return event, ResponseFacts(now, code, reason, _granted(profile, view, response),
                                    retry_after, None, False, response)
    if status < 400:
        target = _next_redirect(profile, view, response)
        event = Event.R3XX_NO_CONTACT if target is None else Event.R3XX
        return event, ResponseFacts(now, code, reason, None, retry_after, None, False,
                                    response, target)
    if response is not None and rules.fine_failures:
        resend = _resend(profile, state, view, response, now, retry_after)
        if resend is not None:
            return resend
        if code == 420 and view.option_tags and rules.drop_refused_option_tags:
            reason = drop_option_tags(response, view.option_tags, view.tags_dropped).reason \
                or reason
    event, granted, restart = _failure(profile, state, view, response, status, now)
    rejected = status in policy.PERMANENT and event is not Event.R_TERMINATING
    return event, ResponseFacts(now, code, reason, granted, retry_after, restart, rejected,
                                response)


def _resend(profile: Profile, state: State, view: View, response: Response, now: float,
            retry_after: int | None) -> tuple[Event, ResponseFacts] | None:
    """Issue 18: a 401/407 answered with credentials, or a 420 without the refused option
    tags, is R_RESEND; a challenge that cannot be answered is a failure that says why
    (rejected: the next attempt waits max_retry_time). None: neither applies."""
    rules, code = profile.rules, response.status
    if code in (401, 407) and rules.authenticate:
        store = profile.credentials
        decision = answer_challenge(
            response, view.auth, view.subscriber,
            lambda realm: store is not None and store.lookup(view.subscriber, realm)
            is not None)
        if decision.resend:
            return Event.R_RESEND, ResponseFacts(now, code, str(code), None, retry_after,
                                                 None, False, response,
                                                 challenges=decision.challenges)
        event = Event.R_TERMINATING if state in REFRESH_STATES else Event.R_FAIL
        return event, ResponseFacts(now, code, decision.reason, None, retry_after, None,
                                    True, response)
    if code == 420 and view.option_tags and rules.drop_refused_option_tags:
        decision = drop_option_tags(response, view.option_tags, view.tags_dropped)
        if decision.resend:
            return Event.R_RESEND, ResponseFacts(now, code, "420", None, retry_after, None,
                                                 False, response,
                                                 option_tags=decision.option_tags)
    return None


def _failure(profile: Profile, state: State, view: View, response: Response | None,
             status: int, now: float
             ) -> tuple[Event, int | None, policy.ReasonReaction | None]:
    """A final failure (>= 400, or a timeout): the event, a grant, a restart."""
    if not profile.rules.fine_failures:
        return Event.R4XX, None, None
    dialog = view.dialog
    if status == 408 and state in UNCONFIRMED_STATES and dialog is not None \
            and dialog.state == "confirmed":
        # A NOTIFY created the dialog, so the SUBSCRIBE did arrive; only its 2xx was lost.
        expires_at = view.expires_at
        left = None if expires_at is None else int(expires_at - now)
        return (Event.R_TIMEOUT_DIALOG_UP,
                view.requested_expires if left is None else max(left, 0), None)
    refresh = state in REFRESH_STATES
    if status == 423 and not view.min_expires_retried and response is not None:
        min_expires = _safe(lambda: response.min_expires)
        if min_expires is not None and min_expires > 0:
            return Event.R423, min_expires, None
    if refresh and status == 481:
        # The subscription is gone: replaced at once, unless the storm guard holds the
        # restart back (then it ends like the other terminating codes and waits).
        guarded = profile.timing.restart_guarded(profile.config, now - view.started_at,
                                                 view.quick_restarts)
        return (Event.R_TERMINATING if guarded else Event.R481, None,
                policy.RESTART_AT_ONCE)
    if refresh and status in policy.REFRESH_TERMINATING:
        return Event.R_TERMINATING, None, None
    if refresh and state is State.RESUBSCRIPTION and _expired(view, now):
        return Event.EXPIRED, None, None
    return Event.R_FAIL, None, None


def _granted(profile: Profile, view: View, response: Response) -> int:
    rules = profile.rules
    expires = _safe(lambda: response.expires)
    if expires is None:
        # ser: absent or unparsable -> 0 (spec §2.1, A3); rfc6665: the requested value.
        return 0 if rules.missing_expires_is_zero else view.requested_expires
    if rules.long_expires_invalid and \
            len(response.headers.get("Expires") or "") > SER_EXPIRES_CHARS:
        # SER's parser marks a value of more than 10 characters invalid, leading zeros
        # included (spec §2.1 quirk): invalid -> 0 (A3), not the clamped 2**32-1.
        return 0
    return expires


def _next_redirect(profile: Profile, view: View, response: Response | None) -> str | None:
    if response is None:
        return None
    contacts = [c for c in (_safe(lambda: response.contacts) or []) if c.uri]
    if profile.rules.first_contact_redirect:
        # SER: the first Contact, q ignored, no loop limit (B6).
        return contacts[0].uri if contacts else None
    # rfc6665: q order (stable), untried URIs only, at most max_redirects per attempt.
    ordered = sorted(contacts, key=lambda c: -(c.q if c.q is not None else 1.0))
    # The record itself starts the chain: a Contact pointing back to it is a loop too.
    seen = {view.record, *view.redirects_seen}
    fresh = [c.uri for c in ordered if c.uri and c.uri not in seen]
    if len(view.redirects_seen) >= profile.config.max_redirects or not fresh:
        return None
    return fresh[0]


def _expired(view: View, now: float) -> bool:
    expires_at = view.expires_at
    return expires_at is None or now >= expires_at


# ==================================================================== timers
def classify_tick(profile: Profile, state: State, view: View,
                  now: float) -> tuple[Event, Facts]:
    """The subscription's timer fired (rule 3)."""
    event = TICK
    # rfc6665: only a grant that has really run out is EXPIRED; a short grant (a few
    # seconds) must still be refreshed, not torn down at its refresh point.
    if profile.rules.expiry_event:
        expires_at = view.expires_at
        if (state is CONFIRMED and expires_at is not None and now >= expires_at) \
                or (state is RESUBSCRIPTION and _expired(view, now)):
            event = EXPIRED
    if state in AWAITING_RESPONSE:
        return event, Facts(now, 408, "timeout")
    return event, Facts(now, None, "expired" if event is EXPIRED else None)


def classify_timer_n(profile: Profile, state: State, view: View,
                     now: float) -> tuple[Event, Facts] | None:
    """Timer N fired (rule 4): None until a 2xx arrived."""
    if not view.got_2xx:
        return None
    return Event.TIMER_N, Facts(now, 408, "timer-n")


# ==================================================================== NOTIFY
def malformed(profile: Profile, notify: Request) -> str | None:
    """Why a NOTIFY is structurally broken (answered 400 in both profiles: SER's core parser
    and sanity checks reject it before the module sees it; issue 8), or None."""
    try:
        check_mandatory(notify)
        if profile.rules.notify_checks and notify.max_forwards is None:
            raise SipParseError("missing header: Max-Forwards")
    except SipParseError as exc:
        return str(exc)
    return None


def unknown_dialog(profile: Profile, notify: Request) -> Refusal:
    """The answer to a NOTIFY that matches no subscription."""
    return Refusal(481, "Subscription does not exist" if profile.rules.notify_checks
                   else "Unable to handle notification", counter="rx.notify_unknown_dialog")


def check_event(view: View, notify: Request) -> Refusal | None:
    event = notify.event
    # Package names compare byte by byte (RFC 6665 §8.2.1): `Presence` is another package.
    if event is None or event.package != view.pkg.event or event.id is not None:
        return Refusal(489, "Bad Event")
    return None


def check_subscription_state(view: View, notify: Request) -> Refusal | None:
    if notify.subscription_state is None:
        return Refusal(400, "Missing Subscription-State")
    return None


def check_cseq_order(view: View, notify: Request) -> Refusal | None:
    dialog = view.dialog
    assert dialog is not None
    if dialog.remote_tag is not None and dialog.remote_cseq is not None \
            and notify.cseq.number < dialog.remote_cseq:
        return Refusal(500, "CSeq out of order")
    return None


def check_require(view: View, notify: Request) -> Refusal | None:
    # Absent from almost every NOTIFY: one index probe before splitting.
    if "Require" in notify.headers:
        # RFC 4662 §4: a list NOTIFY requires `eventlist`, which our SUBSCRIBE supports.
        supported = view.pkg.supported
        values = [tag for tag in notify.headers.get_all("Require") if tag not in supported]
        if values:
            # SUB-147: name the option tags we do not support.
            require = ", ".join(values)
            return Refusal(420, "Bad Extension", (("Unsupported", require),) if require else ())
    return None


def check_body_type(view: View, notify: Request) -> Refusal | None:
    headers = notify.headers
    if "Content-Encoding" in headers:
        encoding = [e.strip().lower() for e in headers.get_all("Content-Encoding")]
        if any(e and e != "identity" for e in encoding):
            return UNSUPPORTED_MEDIA
    content_type = notify.content_type
    types = view.pkg.body_types
    if notify.body and (content_type is None or content_type.mime not in types):
        return UNSUPPORTED_MEDIA if types == _PIDF_ONLY else Refusal(
            415, "Unsupported Media Type",
            (("Accept", ", ".join(types)), ("Accept-Encoding", "identity")))
    return None


_PIDF_ONLY = (PIDF_TYPE,)
UNSUPPORTED_MEDIA = Refusal(415, "Unsupported Media Type", (
    ("Accept", ", ".join(BODY_PARSERS)), ("Accept-Encoding", "identity")))
# rfc6665 NOTIFY checks 3-6 (rfc6665_profile.md), in order.
RFC_NOTIFY_CHECKS: tuple[NotifyCheck, ...] = (
    check_event, check_subscription_state, check_cseq_order, check_require, check_body_type)


def classify_notify_rfc(profile: Profile, state: State, view: View, notify: Request,
                        source: Address, now: float) -> tuple[Event, NotifyFacts]:
    substate = notify.subscription_state
    assert substate is not None
    status = policy.rfc_status(substate.value)
    document = error = answer = versioned = None
    body = notify.body
    if body:
        content_type = notify.content_type  # a type the package does not read was refused
        mime = content_type.mime if content_type else PIDF_TYPE
        versioned_parser = VERSIONED_BODY_PARSERS.get(mime)
        if versioned_parser is not None:
            assert content_type is not None
            try:
                versioned = versioned_parser(body, content_type.params)
            except (ReginfoError, RlmiError) as exc:
                error = str(exc)
                answer = Refusal(400, "Bad Request", error=error,
                                 counter=f"rx.bad_{view.pkg.name}_body")
        else:
            parser = BODY_PARSERS.get(mime, _parse_pidf)
            try:
                document = parser(body, False)
            except PidfError as exc:
                error = str(exc)
                answer = Refusal(400, "Bad PIDF document", error=error, counter="rx.bad_pidf")
    elif status in ("active", "pending") and view.last_pidf is not None:
        # An empty NOTIFY keeps the current document (SUB-077); it parsed before, so the
        # same bytes parse again to an equal document.
        document = parse_pidf(view.last_pidf)
    if status != "terminated":
        return NOTIFY, NotifyFacts(now, None, None, substate.expires, None, None,
                                         False, notify, source, status, document, error,
                                         answer, versioned)
    if view.fetch:
        # A fetch ends with its NOTIFY whatever the reason: nothing follows (SUB-052).
        return Event.NOTIFY_TERMINATED_FINAL, NotifyFacts(
            now, None, substate.reason or "terminated", None, None, None, False, notify,
            source, status, document, error, answer, versioned)
    reaction = policy.reason_reaction(substate.reason)
    timing = profile.timing
    when = timing.resubscribe_when(reaction, substate.retry_after)
    if when == policy.NEVER:
        event = Event.NOTIFY_TERMINATED_FINAL
    elif when == policy.LATER or timing.restart_guarded(
            profile.config, now - view.started_at, view.quick_restarts):
        event = Event.NOTIFY_TERMINATED_LATER
    else:
        event = Event.NOTIFY_TERMINATED_NOW
    return event, NotifyFacts(
        now, None, substate.reason or "terminated", None, substate.retry_after,
        None if when == policy.NEVER else reaction, False, notify, source,
        "rejected" if reaction.status == "rejected" else status, document, error, answer,
        versioned)


def classify_notify_ser(profile: Profile, state: State, view: View, notify: Request,
                        source: Address, now: float) -> tuple[Event, NotifyFacts]:
    raw = notify.headers.get("Subscription-State")
    document = error = None
    if notify.body:
        try:
            # SER reads every body as PIDF, leniently.
            document = BODY_PARSERS[PIDF_TYPE](notify.body, True)
        except PidfError as exc:
            error = str(exc)  # SER answers 200 and drops the notification (B11)
    event = Event.NOTIFY_TERMINATED if policy.ser_is_terminating(raw) else NOTIFY
    return event, NotifyFacts(now, None, None, None, None, None, False, notify, source,
                              policy.ser_status(raw), document, error)


# ==================================================================== the classifier
@dataclass(frozen=True)
class Classifier:
    """The classification functions of a profile, one injectable collaborator
    (``Agent(config, classifier=dataclasses.replace(CLASSIFIERS[p], ...))``: the
    conformance self-test builds a broken subscriber this way)."""

    response: Callable[[Profile, State, View, Response | None, float],
                       tuple[Event, ResponseFacts]]
    notify: Callable[[Profile, State, View, Request, Address, float],
                     tuple[Event, NotifyFacts]]
    notify_checks: tuple[NotifyCheck, ...]
    tick: Callable[[Profile, State, View, float], tuple[Event, Facts]] = classify_tick
    timer_n: Callable[[Profile, State, View, float], tuple[Event, Facts] | None] = \
        classify_timer_n
    malformed: Callable[[Profile, Request], str | None] = malformed
    unknown_dialog: Callable[[Profile, Request], Refusal] = unknown_dialog

    def refusal(self, view: View, notify: Request) -> Refusal | None:
        """The first check that refuses the NOTIFY (rule 5), or None."""
        for check in self.notify_checks:
            refusal = check(view, notify)
            if refusal is not None:
                return refusal
        return None


CLASSIFIERS: dict[str, Classifier] = {
    "ser": Classifier(classify_response, classify_notify_ser, ()),
    "rfc6665": Classifier(classify_response, classify_notify_rfc, RFC_NOTIFY_CHECKS),
}


def _safe(read: Callable[[], _T]) -> _T | None:
    """Read a typed header; a bad value counts as absent (the caller decides the default)."""
    try:
        return read()
    except SipParseError:
        return None
