"""The core's state: every subscription, and the primitives the actions are made of.

Rules of this file:
* `Core` owns the mutable state of one agent: the subscriptions by handle, the dialog
  index (our Call-ID -> handle), the counters, the effect list, the one deadline queue
  (`reference.timers`) and the UA layer (`reference.ua`) its SUBSCRIBEs go through.
* Its collaborators are injected and never change after construction: the profile
  (`policy.Profile`: config, named rules, delay arithmetic), the transition table, the
  action table (`actions.ACTIONS`), the classifier (`classify.CLASSIFIERS`), the
  identifier source (`reference.ids`) and the seeded policy random generator.
* The primitives (send a SUBSCRIBE, arm the subscription timer, drop the dialog, free,
  deliver, count, trace) decide nothing: which to run and when is the table's row (run by
  `actions.run`); what an input means is the classifier's.
* Sans-IO: no clock is read; `now` is the time of the input being handled (set by the
  facade, `Agent`), used for trace records.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reference import policy
from reference.classify import PIDF_TYPE, AnyFacts, Classifier
from reference.config import AgentConfig, ConfigError
from reference.credentials import CredentialStore
from reference.digest import DigestSession
from reference.effects import Address, Deliver, Effect, TraceEvent
from reference.ids import BRANCH_BYTES, BRANCH_COOKIE, CALL_ID_BYTES, TAG_BYTES, IdSource
from reference.packages import PACKAGES, Package
from reference.pidf import parse_pidf
from reference.qsa import StatusMessage
from reference.reginfo import RegState
from reference.rlmi import ListState
from reference.sharing import Member, SharingIndex, copies
from reference.sip import Headers, Request, SipParseError, parse_name_addr, parse_uri
from reference.sip.dialog import Dialog
from reference.sip.headers import parse_via
from reference.sip.transaction import TimerSettings, normalize_sent_by
from reference.sip.uri import plain_sip_address
from reference.subscription import Action, Event, Row, State, Table
from reference.timers import DeadlineQueue, timer_n_key
from reference.ua import UaUser, UserAgent

P_HINT = "trying new subscription after 3xx"


@dataclass(slots=True)
class Extras:
    """The fields of a `Subscription` that almost every subscription leaves at their
    defaults: made on the first write of another value (`Subscription.extras`), so the
    common subscription does without 15 slots (a subscription is 200 bytes, not 320)."""

    failures: int = 0
    quick_restarts: int = 0
    redirects_seen: tuple[str, ...] = ()
    min_expires_retried: bool = False
    unsubscribed: bool = False
    destroy_deadline: float | None = None
    body_state: RegState | ListState | None = None
    fetch: bool = False
    auth: DigestSession | None = None
    option_tags: tuple[str, ...] = ()
    tags_dropped: bool = False
    etag: str | None = None
    members: list[Member] | None = None
    last_status: str | None = None
    last_reason: str | None = None


@dataclass(slots=True)
class Subscription:
    """Everything the agent keeps about one internal subscription. The rarely set fields
    live in `extras` (made on the first write of a value other than the default; a write
    of the default before that is a no-op), read and written through properties."""

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
    # rfc6665: when the current dialog's initial SUBSCRIBE went out (with quick_restarts,
    # the re-subscribe storm guard, policy.restart_delay).
    started_at: float = 0.0
    awaiting_notify: bool = False     # rfc6665 Timer N running
    got_2xx: bool = False
    # The body of the last NOTIFY whose PIDF parsed (rfc6665), re-parsed for an empty
    # NOTIFY (SUB-077): the bytes cost a third of the parsed document, kept per subscription.
    last_pidf: bytes | None = None
    # The package's row (reference.packages).
    pkg: Package = PACKAGES["presence"]
    # Issue 18 (rfc6665 rules). The SUBSCRIBE in flight, for a resend:
    tx_expires: int = 0
    tx_out_of_dialog: bool = False
    extras: Extras | None = None

    def _extras(self) -> Extras:
        extras = self.extras
        if extras is None:
            extras = self.extras = Extras()
        return extras

    # Consecutive failures (the back-off exponent).
    @property
    def failures(self) -> int:
        return 0 if self.extras is None else self.extras.failures

    @failures.setter
    def failures(self, value: int) -> None:
        if value or self.extras is not None:
            self._extras().failures = value

    # rfc6665: how many subscriptions in a row the notifier ended before
    # stable_subscription_time (policy.restart_delay).
    @property
    def quick_restarts(self) -> int:
        return 0 if self.extras is None else self.extras.quick_restarts

    @quick_restarts.setter
    def quick_restarts(self, value: int) -> None:
        if value or self.extras is not None:
            self._extras().quick_restarts = value

    # The redirect targets tried for the current initial SUBSCRIBE.
    @property
    def redirects_seen(self) -> tuple[str, ...]:
        return () if self.extras is None else self.extras.redirects_seen

    @redirects_seen.setter
    def redirects_seen(self, value: tuple[str, ...]) -> None:
        if value or self.extras is not None:
            self._extras().redirects_seen = value

    @property
    def min_expires_retried(self) -> bool:
        return False if self.extras is None else self.extras.min_expires_retried

    @min_expires_retried.setter
    def min_expires_retried(self, value: bool) -> None:
        if value or self.extras is not None:
            self._extras().min_expires_retried = value

    # No status messages any more (the internal subscriber left).
    @property
    def unsubscribed(self) -> bool:
        return False if self.extras is None else self.extras.unsubscribed

    @unsubscribed.setter
    def unsubscribed(self, value: bool) -> None:
        if value or self.extras is not None:
            self._extras().unsubscribed = value

    @property
    def destroy_deadline(self) -> float | None:
        return None if self.extras is None else self.extras.destroy_deadline

    @destroy_deadline.setter
    def destroy_deadline(self, value: float | None) -> None:
        if value is not None or self.extras is not None:
            self._extras().destroy_deadline = value

    # For `reg` / `presence-list`: the subscriber's copy of the notifier's versioned state
    # (reset with every new dialog).
    @property
    def body_state(self) -> RegState | ListState | None:
        return None if self.extras is None else self.extras.body_state

    @body_state.setter
    def body_state(self, value: RegState | ListState | None) -> None:
        if value is not None or self.extras is not None:
            self._extras().body_state = value

    # A one-shot fetch (state FETCHING).
    @property
    def fetch(self) -> bool:
        return False if self.extras is None else self.extras.fetch

    @fetch.setter
    def fetch(self, value: bool) -> None:
        if value or self.extras is not None:
            self._extras().fetch = value

    # Challenges answered, cached per realm.
    @property
    def auth(self) -> DigestSession | None:
        return None if self.extras is None else self.extras.auth

    @auth.setter
    def auth(self, value: DigestSession | None) -> None:
        if value is not None or self.extras is not None:
            self._extras().auth = value

    # Sent in Require; a 420 may drop some, once (tags_dropped).
    @property
    def option_tags(self) -> tuple[str, ...]:
        return () if self.extras is None else self.extras.option_tags

    @option_tags.setter
    def option_tags(self, value: tuple[str, ...]) -> None:
        if value or self.extras is not None:
            self._extras().option_tags = value

    @property
    def tags_dropped(self) -> bool:
        return False if self.extras is None else self.extras.tags_dropped

    @tags_dropped.setter
    def tags_dropped(self, value: bool) -> None:
        if value or self.extras is not None:
            self._extras().tags_dropped = value

    # SIP-ETag of the last NOTIFY (RFC 5839).
    @property
    def etag(self) -> str | None:
        return None if self.extras is None else self.extras.etag

    @etag.setter
    def etag(self, value: str | None) -> None:
        if value is not None or self.extras is not None:
            self._extras().etag = value

    # share_subscriptions: every internal subscription served by this dialog, made when a
    # second one joins (None: only its own); the last status and reason delivered, for a
    # member that joins later (the document comes back from last_pidf). Two references,
    # not the last StatusMessage: a kept message and its document cost ~800 bytes each.
    @property
    def members(self) -> list[Member] | None:
        return None if self.extras is None else self.extras.members

    @members.setter
    def members(self, value: list[Member] | None) -> None:
        if value is not None or self.extras is not None:
            self._extras().members = value

    @property
    def last_status(self) -> str | None:
        return None if self.extras is None else self.extras.last_status

    @last_status.setter
    def last_status(self, value: str | None) -> None:
        if value is not None or self.extras is not None:
            self._extras().last_status = value

    @property
    def last_reason(self) -> str | None:
        return None if self.extras is None else self.extras.last_reason

    @last_reason.setter
    def last_reason(self, value: str | None) -> None:
        if value is not None or self.extras is not None:
            self._extras().last_reason = value


class Core:
    """One agent's subscriptions, collaborators and primitives."""

    def __init__(self, config: AgentConfig, user: UaUser, *, ids: IdSource, table: Table,
                 actions: ActionTable, classifier: Classifier, timing: policy.Timing,
                 credentials: CredentialStore | None = None) -> None:
        self.config = config
        # Digest credentials per subscriber and realm (reference.credentials); never traced.
        self.credentials = credentials if credentials is not None else CredentialStore()
        self.profile = policy.Profile(config, policy.RULES[config.profile], timing,
                                      self.credentials)
        self.rules = self.profile.rules
        self.timing = timing
        self.table = table
        self.actions = actions
        self.classifier = classifier
        # Policy draws only (jitter, delays): seeded, so a run's timing replays.
        self.rng = random.Random(config.seed)
        # Identifiers: unguessable by default; the simulator and tests pass a SeededIds.
        self.ids = ids
        self.extra_headers = _parse_extra_headers(config.additional_presence_headers)
        self.preloaded_route = [str(r) for r in _parse_route(config.presence_route)]
        self.outbound_proxy: Address | None = None
        if config.presence_outbound_proxy:
            try:
                self.outbound_proxy = parse_uri(config.presence_outbound_proxy).address()
            except SipParseError as exc:
                raise ConfigError(f"presence_outbound_proxy: {exc}") from exc
        self.subscriptions: dict[int, Subscription] = {}
        # share_subscriptions: which subscription serves a (record, subscriber, package).
        self.sharing = SharingIndex()
        self.sharing_on = bool(config.share_subscriptions) and self.rules.share_subscriptions
        self.counters: dict[str, int] = {}
        self.effects: list[Effect] = []
        # Every timer of the core: subscription timers, Timer N, client transaction timers
        # and the shared Timer J (docs/architecture.md, "Timers").
        self.timers = DeadlineQueue()
        # Trace calls on hot paths are skipped outright when traces are off (trace=0), so
        # their fields are not even computed.
        self.tracing = bool(config.trace)
        self.tcp_enabled = "tcp" in config.transports.split(",")
        self.udp_contact = f"<sip:{config.local_address}>"
        self._sent_by: dict[str, str] = {}  # transport -> sent-by (see sent_by)
        self.now = 0.0
        settings = TimerSettings(t1=config.t1, t2=config.t2, t4=config.t4,
                                 timeout=config.effective_transaction_timeout)
        self.ua = UserAgent(user, settings, self.timers, self.effects, self.count,
                            self.ua_trace, self.tracing)
        # Call-ID -> handle. Our Call-IDs carry 128 random bits, so the Call-ID alone names
        # the dialog here; the tags are checked by Dialog.matches_notify.
        self.by_dialog: dict[str, int] = {}
        # id(row) -> (row, its action functions, whether it needs the retry delay);
        # checked against the row itself: the table outlives the agent.
        self.bound: dict[int, tuple[Row, tuple[ActionFunction, ...], bool]] = {}

    # ------------------------------------------------------------------ lookups
    def find(self, notify: Request) -> Subscription | None:
        """The subscription whose dialog a NOTIFY belongs to."""
        to_tag = notify.to.tag
        if not to_tag:
            return None
        call_id = notify.call_id
        handle = self.by_dialog.get(call_id)
        if handle is None:
            return None
        sub = self.subscriptions.get(handle)
        if sub is None or sub.dialog is None or \
                not sub.dialog.matches_ids(call_id, to_tag, notify):
            return None  # e.g. a second fork once the dialog exists (SUB-080): 481
        return sub

    # ------------------------------------------------------------------ sending
    def send_initial(self, sub: Subscription, now: float) -> None:
        sub.redirects_seen = ()
        self.new_dialog_request(sub, sub.record, now, redirected=False)

    def set_credentials(self, store: CredentialStore) -> None:
        self.credentials = store
        self.profile = dataclasses.replace(self.profile, credentials=store)

    def new_dialog_request(self, sub: Subscription, target: str, now: float, *,
                           redirected: bool) -> None:
        self.drop_dialog(sub)
        if sub.auth is not None:
            sub.auth.forget()  # a new dialog may reach another server: nothing pre-emptive
        if not redirected and self.rules.resolve_pres_uri and target.startswith("pres:"):
            # SUB-081: pres:user@host is sent to sip:user@host; To keeps the pres: URI.
            target = "sip:" + target[len("pres:"):]
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
        verbatim = self.rules.verbatim_uris
        # ser: QSA strings verbatim, and after a redirect To = the Contact (B6).
        # Interned: a watcher's many subscriptions share one copy of these strings.
        remote_uri = sys.intern((target if redirected else sub.record) if verbatim
                                else f"<{sub.record}>")
        local_uri = sys.intern(sub.subscriber if verbatim else f"<{sub.subscriber}>")
        sub.dialog = Dialog.new_uac(call_id=call_id, local_uri=local_uri, local_tag=local_tag,
                                    remote_uri=remote_uri, remote_target=target,
                                    preloaded_route=self.preloaded_route)
        self.by_dialog[sub.dialog.call_id] = sub.handle  # the dialog's (interned) copy
        extra = [("P-Hint", P_HINT)] if redirected and verbatim else []
        self.send_subscribe(sub, sub.requested_expires, now, extra, out_of_dialog=True)
        self.count("subscribe.initial")

    def send_in_dialog(self, sub: Subscription, expires: int, now: float) -> None:
        self.send_subscribe(sub, expires, now, [], out_of_dialog=sub.dialog is not None
                            and sub.dialog.state == "early")

    def send_subscribe(self, sub: Subscription, expires: int, now: float,
                       extra: list[tuple[str, str]], *, out_of_dialog: bool) -> None:
        dialog = sub.dialog
        assert dialog is not None
        if sub.tx_branch is not None:
            self.abandon_tx(sub)
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
        if sub.option_tags:
            headers.append(("Require", ", ".join(sub.option_tags)))
        if sub.etag is not None and not out_of_dialog and expires > 0:
            headers.append(("Suppress-If-Match", sub.etag))  # RFC 5839 §3.2
        transport = self.transport_for(dialog) if self.tcp_enabled else "udp"
        request, next_hop = dialog.build_request(
            "SUBSCRIBE", branch=branch, sent_by=self.config.local_address,
            contact=self.contact(transport), headers=headers, transport=transport.upper())
        if sub.auth is not None and sub.auth.cached:
            # Cached per realm, answered pre-emptively, nc growing (AUTH-008); the values
            # are never traced (the trace below carries the first line only).
            for name, value in sub.auth.headers_for(self.credentials, self.ids,
                                                    method="SUBSCRIBE", uri=request.uri):
                request.headers.add(name, value)
        if transport == "udp" and self.tcp_enabled and \
                len(request.to_bytes()) > self.config.udp_max_bytes:
            # RFC 3261 §18.1.1: too large for UDP; same request, Via and Contact say TCP.
            transport = "tcp"
            request.headers.set("Via", request.headers.get_all("Via")[0].replace(
                "SIP/2.0/UDP ", "SIP/2.0/TCP ", 1))
            request.headers.set("Contact", self.contact(transport))
            self.count("tx.oversize_to_tcp")
        sub.tx_expires, sub.tx_out_of_dialog = expires, out_of_dialog
        if out_of_dialog and self.outbound_proxy is not None:
            destination = self.outbound_proxy
        else:
            destination = _address_of(next_hop)
        sub.tx_branch = branch
        self.count("tx.SUBSCRIBE")
        if self.tracing:
            self.trace("send", sub, first_line=request.start_line(), call_id=dialog.call_id,
                       cseq=dialog.local_cseq, expires=expires)
        self.ua.start_client(request, branch, sub.handle, destination, now, transport,
                             sent_by=self.sent_by(transport))
        guard = now + self.config.failover_timeout
        if sub.destroy_deadline is not None:
            guard = min(guard, sub.destroy_deadline)
        self.start_timer(sub, "FAILOVER", guard)
        if self.rules.timer_n and expires > 0:
            sub.got_2xx = False
            sub.awaiting_notify = True
            self.timers.arm(timer_n_key(sub.handle), now + 64 * self.config.t1)

    def sent_by(self, transport: str) -> str:
        """The normalized sent-by of the top Via of our SUBSCRIBEs over `transport` (the
        Via `Dialog.build_request` writes: `local_address`, whatever the branch), parsed
        once per transport instead of out of every request (`UserAgent.start_client`)."""
        sent_by = self._sent_by.get(transport)
        if sent_by is None:
            via = parse_via(f"SIP/2.0/{transport.upper()} {self.config.local_address}"
                            f";branch={BRANCH_COOKIE};rport")
            sent_by = self._sent_by[transport] = normalize_sent_by(via.transport, via.host,
                                                                   via.port)
        return sent_by

    def transport_for(self, dialog: Dialog) -> str:
        """RFC 3261 §18.1.1 / §18.2.1: the next hop URI's `transport` parameter decides
        (asked only when this agent runs TCP; otherwise UDP, as before issue 17)."""
        try:
            wanted = parse_uri(dialog.next_hop()).params.get("transport")
        except SipParseError:
            return "udp"
        return "tcp" if wanted is not None and wanted.lower() == "tcp" else "udp"

    def contact(self, transport: str) -> str:
        # RFC 3261 §8.1.1.8 / §18: the Contact of a request sent over TCP asks for TCP.
        if transport == "tcp":
            return f"<sip:{self.config.local_address};transport=tcp>"
        return self.udp_contact

    def abandon_tx(self, sub: Subscription) -> None:
        branch = sub.tx_branch
        sub.tx_branch = None
        if branch is None:
            return
        self.ua.abandon_client(branch)
        self.count("tx.abandoned")

    # ------------------------------------------------------------------ state
    def start_timer(self, sub: Subscription, kind: str, at: float) -> None:
        sub.timer_kind = kind
        sub.timer_at = at
        self.timers.arm(sub.handle, at)  # the timer's key (reference.timers.Key)

    def stop_timer(self, sub: Subscription) -> None:
        if sub.timer_kind is not None:
            sub.timer_kind = None
            sub.timer_at = None
            self.timers.cancel(sub.handle)

    def stop_timer_n(self, sub: Subscription) -> None:
        if sub.awaiting_notify:
            sub.awaiting_notify = False
            self.timers.cancel(timer_n_key(sub.handle))

    def drop_dialog(self, sub: Subscription) -> None:
        if sub.dialog is not None:
            self.by_dialog.pop(sub.dialog.call_id, None)
            sub.dialog = None
        sub.expires_at = None

    def free(self, sub: Subscription) -> None:
        if self.sharing_on:
            self.sharing.withdraw((sub.record, sub.subscriber, sub.package), sub.handle)
            for member in sub.members or ():
                self.sharing.leave(member.handle)
        self.stop_timer(sub)
        self.stop_timer_n(sub)
        self.abandon_tx(sub)
        self.drop_dialog(sub)
        self.subscriptions.pop(sub.handle, None)
        self.count("subscriptions.freed")
        self.trace("state", sub, state="destroyed", event="free")

    def set_state(self, sub: Subscription, state: State, event: str | Event,
                  before: State | None = None) -> None:
        sub.state = state
        if not self.tracing:
            return
        # (An Event's .value is read only here: enum attribute access is slow on hot paths.)
        self.trace("state", sub, state=state.name.lower(),
                   event=event.value if isinstance(event, Event) else event,
                   before=before.name.lower() if before else None)

    # ------------------------------------------------------------------ outputs
    def deliver(self, sub: Subscription, message: StatusMessage) -> None:
        # `unsubscribed` and `members` read from the extras directly: almost every
        # subscription has none, and this runs for every NOTIFY.
        extras = sub.extras
        if extras is not None and extras.unsubscribed:
            return  # nothing is delivered after the internal subscriber left
        if self.sharing_on:
            sub.last_status, sub.last_reason = message.status, message.reason
        if extras is not None and extras.members is not None:
            # Shared dialog: every member, each with its own handle and data.
            for destination, copy in copies(message, extras.members):
                self.count("qsa.delivered")
                self.effects.append(Deliver(destination, copy))
        else:
            self.count("qsa.delivered")
            self.effects.append(Deliver(sub.destination, message))
        if self.tracing:
            self.trace("deliver", sub, status=message.status, reason=message.reason)

    def current_state(self, sub: Subscription, handle: int,
                      subscriber_data: Any) -> StatusMessage:
        """The last status message of a shared subscription, rebuilt for a joiner: the
        status and reason delivered last, the document of the last PIDF (re-parsed: it
        parsed before), the retry time of a pending retry."""
        status = sub.last_status
        assert status is not None
        body = sub.last_pidf if status in ("active", "pending") and sub.last_pidf else b""
        return StatusMessage(
            handle=handle, record=sub.record, subscriber=sub.subscriber, package=sub.package,
            status=status, document=parse_pidf(body) if body else None, body=body,
            content_type=PIDF_TYPE if body else None, reason=sub.last_reason,
            retry_at=sub.timer_at if sub.timer_kind == "RETRY" else None,
            subscriber_data=subscriber_data, at=self.now)

    def count(self, name: str, amount: int = 1) -> None:
        counters = self.counters  # (one attribute load: several counts per input)
        counters[name] = counters.get(name, 0) + amount

    def ua_trace(self, kind: str, **fields: Any) -> None:
        self.trace(kind, None, **fields)

    def trace(self, kind: str, sub: Subscription | None, **fields: Any) -> None:
        if not self.tracing:
            return
        if sub is not None:
            fields = {"handle": sub.handle, **fields}
        self.effects.append(TraceEvent(self.now, kind, fields))


# What an action of a row is: a function of the core, the subscription, the input's facts
# and the delay drawn for the input (`actions.run`, rule 2; None when none was drawn).
ActionFunction = Callable[[Core, Subscription, AnyFacts, float | None], None]
ActionTable = Mapping[Action, ActionFunction]


@functools.lru_cache(maxsize=256)
def _address_of(uri: str) -> Address:
    """Where a request to the next-hop `uri` goes. Cached (bounded; a bad URI raises, and
    is not kept): the same few next hops, the notifiers' Contacts, recur on every SUBSCRIBE
    of their dialogs. A plain URI, the usual Contact, is not parsed to learn its address."""
    address = plain_sip_address(uri)
    return address if address is not None else parse_uri(uri).address()


# ==================================================================== configuration helpers
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
