"""The presence B2BUA's facade: the QSA calls, the network and timer inputs, the queries.

Rules of this file:
* Every input carries `now`; it is classified (`reference.classify`, pure) into one table
  event with frozen facts, and the row of the subscription's state is run by
  `reference.actions.run` (every ordering rule is numbered there). This file decides
  nothing of presence itself: it routes.
* Every timer is in the core's one deadline queue (`reference.timers`); a driver calls
  `next_deadline()` / `handle_timers(now)` (through `reference.pump`).
* The collaborators are injected: the identifier source (`reference.ids`), the transition
  table (`reference.subscription`), the action table (`actions.ACTIONS`), the classifier
  (`classify.CLASSIFIERS`), the delay arithmetic (`policy.Timing`) and the UA layer's
  class (`reference.ua`). The conformance self-test builds its broken subscribers from
  them; nothing subclasses `Agent`.
* Profile differences are table rows, classifiers, `policy` arithmetic or named
  `policy.Rules`; this file never asks which profile runs.
* Sans-IO: outputs are effects collected for `drain_effects()`. Policy randomness comes
  from one `random.Random` seeded from the configuration; tags, Call-IDs and branches from
  the `IdSource` (the OS CSPRNG unless a deterministic source is passed).
See docs/architecture.md for the contract and docs/behaviour.md for the two profiles.
"""

from __future__ import annotations

import random
from typing import Any

from reference import actions, policy, queries, shared_dialogs
from reference.actions import ACTIONS
from reference.classify import CLASSIFIERS, Classifier, Facts
from reference.config import AgentConfig
from reference.core import ActionTable, Core, Subscription
from reference.credentials import CredentialStore
from reference.effects import Address, Effect
from reference.ids import IdSource, OsRandomIds
from reference.packages import lookup
from reference.sharing import Member, SharingKey
from reference.sip import Request, Response
from reference.subscribe_input import check_subscribe_uris
from reference.subscription import TABLES, Event, State, Table
from reference.timers import Key, TimerKey
from reference.ua import UserAgent

__all__ = ["ACTIONS", "Agent"]


class Agent:
    """The sans-IO presence B2BUA (QSA notifier for `presence`, `reg`, `presence-list`)."""

    def __init__(self, config: AgentConfig, *, ids: IdSource | None = None,
                 table: Table | None = None, actions: ActionTable | None = None,
                 timing: policy.Timing | None = None, classifier: Classifier | None = None,
                 credentials: CredentialStore | None = None) -> None:
        self.config = config
        self.core = Core(
            config, self, ids=OsRandomIds() if ids is None else ids,
            table=TABLES[config.profile] if table is None else table,
            actions=ACTIONS if actions is None else actions,
            classifier=CLASSIFIERS[config.profile] if classifier is None else classifier,
            timing=policy.DEFAULT_TIMING if timing is None else timing,
            credentials=credentials)
        self.closing = False
        self._next_handle = 1

    # ================================================================ inputs (QSA)
    def subscribe(self, record: str, subscriber: str, destination: str,
                  package: str = "presence", subscriber_data: Any = None, *,
                  now: float) -> int:
        """QSA subscribe: returns a handle; the first SUBSCRIBE goes out at once or after the
        `max_subscribe_delay` draw. Raises ValueError for an unusable record or package
        (`BadSubscribeInput` for the URIs), before anything is registered."""
        core = self.core
        core.now = now
        handle = self._next_handle
        self._next_handle += 1
        core.count("qsa.subscribe")
        config = self.config
        if not config.handle_presence_subscriptions:
            return handle  # SER: accepted and ignored
        pkg = lookup(package, config.profile)  # UnknownPackage (a ValueError)
        record = self._admit(record, subscriber)
        key: SharingKey = (record, subscriber, package)
        if core.sharing_on and shared_dialogs.join(core, key, handle, destination,
                                                   subscriber_data):
            return handle
        sub = Subscription(handle, record, subscriber, destination, package, subscriber_data,
                           requested_expires=config.default_expiration, pkg=pkg)
        sub.option_tags = config.option_tags
        core.subscriptions[handle] = sub
        if core.sharing_on:
            core.sharing.register(key, handle)
        if config.max_subscribe_delay > 0:
            delay = core.rng.randint(1, config.max_subscribe_delay)
            core.start_timer(sub, "DELAY", now + delay)
            core.trace("state", sub, state=sub.state.name.lower(), event="create")
        else:
            core.send_initial(sub, now)
            core.set_state(sub, State.UNCONFIRMED, "create")
        return handle

    def fetch(self, record: str, subscriber: str, destination: str,
              package: str = "presence", subscriber_data: Any = None, *, now: float) -> int:
        """QSA fetch (rfc6665, SUB-052): one SUBSCRIBE with Expires 0; the one NOTIFY becomes
        the one status message, then the handle is gone. Raises ValueError like `subscribe`,
        and in a profile without fetch (ser)."""
        core = self.core
        core.now = now
        if not core.rules.fetch:
            raise ValueError(f"fetch is not available in profile {self.config.profile}")
        if package != "presence":
            raise ValueError(f"package {package!r} is not served (only 'presence')")
        record = self._admit(record, subscriber)
        handle = self._next_handle
        self._next_handle += 1
        core.count("qsa.fetch")
        sub = Subscription(handle, record, subscriber, destination, package, subscriber_data,
                           requested_expires=0)
        sub.fetch, sub.option_tags = True, self.config.option_tags
        core.subscriptions[handle] = sub
        core.send_initial(sub, now)
        core.set_state(sub, State.FETCHING, "fetch")
        return handle

    def _admit(self, record: str, subscriber: str) -> str:
        """The checks before a new internal subscription registers anything: usable URIs
        (returns the record to use), room under `max_subscriptions`, not shutting down."""
        core = self.core
        record = check_subscribe_uris(
            record, subscriber,
            routable_pres=core.rules.resolve_pres_uri or bool(core.preloaded_route)
            or core.outbound_proxy is not None)
        if self.internal_subscription_count >= self.config.max_subscriptions:
            raise ValueError(f"max_subscriptions ({self.config.max_subscriptions}) reached")
        if self.closing:
            raise ValueError("agent is shutting down")
        return record

    def unsubscribe(self, handle: int, *, now: float) -> None:
        """QSA unsubscribe. Unknown handles are ignored (counted), as in SER. A member of a
        shared dialog only leaves it, unless it is the last one."""
        core = self.core
        core.now = now
        sub = shared_dialogs.subscription_of(self.core, handle)
        core.count("qsa.unsubscribe")
        if sub is None:
            core.count("qsa.unsubscribe_unknown")
            return
        if core.sharing_on and shared_dialogs.leave(core, sub, handle):
            return
        sub.unsubscribed = True
        if core.rules.bounded_unsubscribe and sub.destroy_deadline is None:
            sub.destroy_deadline = (now + self.config.failover_timeout
                                    + self.config.wait_for_term_notify)
        actions.run(core, sub, Event.DESTROY, Facts(now))

    def close(self, *, now: float) -> None:
        """Graceful shutdown. rfc6665: unsubscribe every live subscription (`is_idle` tells
        when all are done). ser: SER sends nothing (B13): subscriptions are forgotten."""
        core = self.core
        core.now = now
        self.closing = True
        for handle in sorted(core.subscriptions):
            sub = core.subscriptions.get(handle)
            if sub is None:
                continue
            if core.rules.close_forgets:
                core.free(sub)
            elif not sub.unsubscribed:
                # Every member of a shared dialog leaves; the last one ends it.
                for member in list(sub.members or ()) or [Member(handle, "", None)]:
                    self.unsubscribe(member.handle, now=now)

    # ================================================================ inputs (network, time)
    def datagram_received(self, data: bytes, source: Address, *, now: float,
                          transport: str = "udp") -> None:
        """One received message: a UDP datagram, or (`transport="tcp"`) a message the
        runtime's stream framer cut out of the connection to `source`."""
        self.core.now = now
        self.core.ua.datagram_received(data, source, now, transport)

    def transport_lost(self, peer: Address, *, now: float) -> None:
        """The runtime's stream connection to `peer` ended: every SUBSCRIBE transaction
        sent on it fails as a 503 (RFC 3261 §8.1.3.1; the subscription's retry rules
        follow)."""
        self.core.now = now
        if self.core.ua.transport_lost(peer, now):
            self.core.count("transport.lost")

    def next_deadline(self) -> float | None:
        """When `handle_timers` has work next (None: no timer is armed). A driver arms one
        wake-up for it after every call into the agent."""
        return self.core.timers.next_deadline()

    def handle_timers(self, now: float, limit: int | None = None) -> int:
        """Fire every timer due at `now` (at most `limit` of them, so a driver can bound
        one wake-up's work): by deadline, equal deadlines in the order they were armed,
        including timers that firing arms at or before `now`. Returns how many fired."""
        core = self.core
        core.now = now
        timers = core.timers
        fired = 0
        while (limit is None or fired < limit) and (key := timers.pop_due(now)) is not None:
            fired += 1
            self._timer_fired(key, now)
        return fired

    def _timer_fired(self, key: Key, now: float) -> None:
        core = self.core
        if not isinstance(key, int):
            core.ua.timer_fired(key, now)
        elif key >= 0:  # the subscription timer, keyed by the handle (reference.timers)
            sub = core.subscriptions.get(key)
            if sub is None or sub.timer_kind is None:
                return
            sub.timer_kind = None
            sub.timer_at = None
            event, facts = core.classifier.tick(core.profile, sub.state, sub, now)
            actions.run(core, sub, event, facts)
        else:  # Timer N, keyed by timer_n_key(handle)
            sub = core.subscriptions.get(~key)
            if sub is not None and sub.awaiting_notify:
                sub.awaiting_notify = False
                classified = core.classifier.timer_n(core.profile, sub.state, sub, now)
                if classified is not None:
                    core.count("timer_n.fired")
                    actions.run(core, sub, classified[0], classified[1])

    def drain_effects(self) -> list[Effect]:
        # The list object stays (the UA layer appends to it too): copy, then clear.
        effects = self.core.effects
        drained = effects[:]
        effects.clear()
        return drained

    # ================================================================ from the UA layer
    def pass_up(self, owner: int, branch: str, response: Response | None,
                now: float) -> None:
        """A response (or a timeout when None) of a SUBSCRIBE transaction reaches the TU."""
        core = self.core
        sub = core.subscriptions.get(owner)
        if sub is None or sub.tx_branch != branch:
            core.count("rx.stale_responses")
            return
        if response is None or response.status >= 200:
            sub.tx_branch = None
            if sub.auth is not None and (response is None or response.status not in (401, 407)):
                sub.auth.accepted()  # not challenged again: the round is over
        event, facts = core.classifier.response(core.profile, sub.state, sub, response, now)
        actions.run(core, sub, event, facts)

    def request_received(self, request: Request, source: Address, destination: Address,
                         now: float) -> None:
        """A NOTIFY that is not a retransmission (the UA layer answers those)."""
        core = self.core
        classifier, profile, ua = core.classifier, core.profile, core.ua
        error = classifier.malformed(profile, request)
        if error is not None:
            core.count("rx.parse_errors")
            ua.reply_malformed(request, source, error)
            return
        sub = core.find(request)
        refusal = classifier.unknown_dialog(profile, request) if sub is None \
            else classifier.refusal(sub, request)
        if refusal is not None:
            if refusal.counter is not None:
                core.count(refusal.counter)
            # An unknown dialog is answered statelessly: a retransmission finds no dialog
            # either and gets the same 481, so a server transaction (32 s of Timer J) would
            # only cost memory in a flood.
            ua.respond(request, destination, refusal.status, now, reason=refusal.reason,
                       headers=list(refusal.headers), stateless=sub is None)
            return
        assert sub is not None
        event, facts = classifier.notify(profile, sub.state, sub, request, destination, now)
        if facts.answer is not None and facts.answer.counter is not None:
            core.count(facts.answer.counter)
        actions.run(core, sub, event, facts)

    # ================================================================ queries
    @property
    def subscriptions(self) -> dict[int, Subscription]:
        return self.core.subscriptions

    @property
    def counters(self) -> dict[str, int]:
        return self.core.counters

    @property
    def rng(self) -> random.Random:
        """The seeded generator of policy draws (jitter, delays)."""
        return self.core.rng

    @property
    def ids(self) -> IdSource:
        """The identifier source (tags, Call-IDs, branches)."""
        return self.core.ids

    @property
    def ua(self) -> UserAgent:
        return self.core.ua

    @property
    def tcp_enabled(self) -> bool:
        """Whether this agent runs TCP (`transports: udp,tcp`): the runtime listens on it."""
        return self.core.tcp_enabled

    @property
    def credentials(self) -> CredentialStore:
        """Digest credentials per subscriber and realm (reference.credentials)."""
        return self.core.credentials

    @credentials.setter
    def credentials(self, store: CredentialStore) -> None:
        self.core.set_credentials(store)

    @property
    def is_idle(self) -> bool:
        return not self.core.subscriptions

    def dump(self) -> list[dict[str, Any]]:
        """Per subscription: what SER's `presence_b2b.trace` RPC should have printed."""
        return queries.dump(self.core)

    def live_timer_count(self) -> int:
        """Subscription timers plus Timer N timers currently armed (for leak checks)."""
        subs = self.core.subscriptions.values()
        return (sum(1 for s in subs if s.timer_kind is not None)
                + sum(1 for s in subs if s.awaiting_notify))

    @property
    def armed_timers(self) -> int:
        """Every timer in the core's deadline queue (transaction timers included)."""
        return len(self.core.timers)

    def timer_deadlines(self) -> dict[TimerKey, float]:
        """Every armed timer of the core with its deadline."""
        return self.core.timers.deadlines()

    def has_subscription(self, handle: int) -> bool:
        """Whether the agent still holds this handle (a terminated one until it is freed; a
        member of a shared dialog until it leaves)."""
        return shared_dialogs.subscription_of(self.core, handle) is not None

    @property
    def subscription_count(self) -> int:
        """Subscriptions the agent keeps a dialog (or a retry) for."""
        return len(self.core.subscriptions)

    @property
    def internal_subscription_count(self) -> int:
        """Internal subscriptions (QSA handles): shared dialogs count each member."""
        return len(self.core.subscriptions) + self.core.sharing.joined

    def stats(self) -> dict[str, Any]:
        """The counters grouped for people (by method, by status) plus the raw ones."""
        return queries.stats(self.core)

    @property
    def transaction_count(self) -> int:
        return self.core.ua.transaction_count

    @property
    def dialog_count(self) -> int:
        return len(self.core.by_dialog)

