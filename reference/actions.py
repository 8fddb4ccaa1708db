"""The actions of the transition tables, and the one dispatcher that runs a row.

Rules of this file (every ordering rule the tables do not show, numbered):
1. `run` looks up the row of (the subscription's state, the classified event) in the
   injected table and runs its actions in the order the row lists them, each through the
   injected action table (`ACTIONS` below: action -> function).
2. The delay of an input is drawn once, after the row is found and before any action runs,
   so every action of the row shares it:
   a. an input that allows a restart (`Facts.restart`: a terminated NOTIFY whose reason
      allows a new subscription, a 481 to a refresh) draws the reason's delay
      (`Timing.resubscribe_delay`), then the storm guard's (`Timing.restart_delay`,
      which updates the quick-restart count; counted as `restarts.delayed` when it waits
      longer than the reason asked);
   b. otherwise a row that reports a failure or starts a retry (`RETRY_DELAY_ACTIONS`)
      draws the retry delay: `max_retry_time` after a permanent failure (a permanent code,
      or `Facts.rejected`: e.g. credentials refused, issue 18) where the rule
      `permanent_waits_max_retry` says so, else the back-off for `failures + 1`;
   c. otherwise nothing is drawn (delay None).
   No other draw happens between classification and the actions, so the seeded stream
   is consumed in the same order whatever the row.
3. After the actions the subscription takes the row's next state (and traces it), unless
   an action freed it and the row does not end in DESTROYED.
4. After the row, a subscription whose state no longer awaits a SUBSCRIBE answer has its
   outstanding SUBSCRIBE transaction abandoned (its late answer is then stale).
5. REPLY_200 answers with `NotifyFacts.answer` when the classifier left one (400 for a bad
   PIDF in rfc6665), else 200.
6. Nothing is delivered to an internal subscriber that unsubscribed (`Core.deliver`); with
   share_subscriptions every member of the dialog gets the message (`Core.deliver`).
7. RESEND first adopts what the classifier decided (the challenges to answer, the option
   tags left), then sends the request in flight again (CSeq + 1).
8. A NOTIFY carrying a versioned body (reg, presence-list: `NotifyFacts.versioned`) has it
   applied to the subscription's copy of the notifier's state once, before the row's
   actions (after the delay draw, which it does not touch); what that did is the facts'
   `applied` for every action of the row: DELIVER reports the changes (one status message
   per registration / per resource; a stale document reports nothing, one past a version
   gap is reported like any other; a NOTIFY that ends the subscription adds its own
   message), NOTIFY_SEEN brings the refresh forward on a gap (RFC 3680 §5.2 / RFC 4662
   §5.6.2: a refresh makes the notifier send full state).
"""

from __future__ import annotations

from reference import policy
from reference.classify import AnyFacts, NotifyFacts, ResponseFacts
from reference.core import ActionFunction, ActionTable, Core, Subscription
from reference.digest import DigestSession
from reference.qsa import StatusMessage
from reference.reginfo import ApplyResult, Registration, RegState
from reference.rlmi import ListApplyResult, ListNotification, ResourceChange
from reference.sip.dialog import DialogError, route_set_of
from reference.subscription import AWAITING_RESPONSE, Action, Event, Row, State

# rfc6665: a failing refresh is retried while more than this much of the grant is left;
# below it the next tick is the expiry itself.
MIN_TIME_LEFT = 2.0
# Rows with one of these draw the retry delay (rule 2b).
RETRY_DELAY_ACTIONS = frozenset({Action.REPORT_FAILURE, Action.START_RETRY})
# Read on every NOTIFY, bound once: a member read off its class goes through the hook of
# EnumType.__getattr__ (CPython 3.11), ~10x a global's cost.
CONFIRMED = State.CONFIRMED


# ==================================================================== the dispatcher
def run(core: Core, sub: Subscription, event: Event, facts: AnyFacts) -> None:
    """Run the row of (sub.state, event) with the input's facts (rules 1-4)."""
    row: Row | None = core.table.get((sub.state, event))
    if row is None:  # pragma: no cover - the tables are total (tested)
        raise AssertionError(f"no row for {sub.state} / {event}")
    entry = core.bound.get(id(row))
    if entry is None or entry[0] is not row:
        entry = _bind(core, row)
    _, functions, needs_retry_delay = entry
    # (Most inputs, a NOTIFY among them, draw nothing (rule 2c): no call for them.)
    delay = _draw_delay(core, sub, facts, needs_retry_delay) \
        if needs_retry_delay or facts.restart is not None else None
    if isinstance(facts, NotifyFacts) and facts.versioned is not None:
        facts = _apply_versioned(core, sub, facts)  # rule 8
    before = sub.state
    for function in functions:
        function(core, sub, facts, delay)
    if sub.handle in core.subscriptions or row.next is State.DESTROYED:
        if core.tracing:
            core.set_state(sub, row.next, event, before)
        else:  # what set_state does without traces, one call less on every input
            sub.state = row.next
    if sub.state not in AWAITING_RESPONSE and sub.tx_branch is not None:
        core.abandon_tx(sub)


def _bind(core: Core, row: Row) -> tuple[Row, tuple[ActionFunction, ...], bool]:
    """The functions of a row's actions (from `core.actions`), looked up once per row:
    kept in `core.bound` (`run` reads it there first, saving this call on every input)."""
    entry = (row, tuple(core.actions[action] for action in row.actions),
             not RETRY_DELAY_ACTIONS.isdisjoint(row.actions))
    core.bound[id(row)] = entry
    return entry


def _draw_delay(core: Core, sub: Subscription, facts: AnyFacts,
                needs_retry_delay: bool) -> float | None:
    """Rule 2: the one delay of this input."""
    config, timing, rng = core.config, core.timing, core.rng
    restart = facts.restart
    if restart is not None:
        requested = timing.resubscribe_delay(restart, facts.retry_after, sub.failures + 1,
                                             config, rng)
        assert requested is not None  # the classifier sets no restart for "never"
        delay, sub.quick_restarts = timing.restart_delay(
            config, requested, facts.now - sub.started_at, sub.quick_restarts, rng)
        if delay > requested:
            core.count("restarts.delayed")
        return delay
    if not needs_retry_delay:
        return None
    code = facts.code
    if core.rules.permanent_waits_max_retry and (facts.rejected or (
            code is not None and policy.effective_code(code) in policy.PERMANENT)):
        return float(config.max_retry_time)
    return timing.backoff_delay(config, sub.failures + 1, rng, facts.retry_after)


def _apply_versioned(core: Core, sub: Subscription, facts: NotifyFacts) -> NotifyFacts:
    """Rule 8: apply the versioned body to the subscription's state (once per input)."""
    state, body = sub.body_state, facts.versioned
    applied: ApplyResult | ListApplyResult
    if isinstance(state, RegState) and not isinstance(body, ListNotification):
        assert body is not None
        applied = state.apply(body)
    elif state is not None and isinstance(body, ListNotification) \
            and not isinstance(state, RegState):
        applied = state.apply(body)
    else:  # pragma: no cover - the package's body types rule this out (415)
        return facts
    core.count(f"{sub.pkg.name}.{applied.outcome}")
    if applied.needs_full_state:
        core.trace("version_gap", sub, version=applied.version)
    return facts._replace(applied=applied)


# ==================================================================== dialog and NOTIFY
def stop(core: Core, sub: Subscription, facts: AnyFacts, delay: float | None) -> None:
    core.stop_timer(sub)


def confirm(core: Core, sub: Subscription, facts: AnyFacts, delay: float | None) -> None:
    assert sub.dialog is not None and isinstance(facts, ResponseFacts) \
        and facts.response is not None
    try:
        sub.dialog.confirm(facts.response, keep_preloaded_route=core.rules.keep_preloaded_route
                           and bool(core.preloaded_route))
    except DialogError as exc:
        # A 2xx from another fork after an early NOTIFY made the dialog: keep ours.
        core.trace("dialog_error", sub, error=str(exc))
    sub.got_2xx = True


def update_from_2xx(core: Core, sub: Subscription, facts: AnyFacts, delay: float | None) -> None:
    assert sub.dialog is not None and isinstance(facts, ResponseFacts) \
        and facts.response is not None
    sub.dialog.refresh_target(facts.response)
    sub.got_2xx = True


def update_from_notify(core: Core, sub: Subscription, facts: AnyFacts,
                       delay: float | None) -> None:
    dialog = sub.dialog
    assert dialog is not None and isinstance(facts, NotifyFacts) and facts.notify is not None
    notify = facts.notify
    if dialog.state == "early":
        if core.rules.notify_creates_dialog:
            dialog.confirm_from_notify(notify)  # SUB-010: the NOTIFY creates the dialog
        return  # SER: the unconfirmed dialog learns nothing from a NOTIFY
    if not core.rules.notify_route_set:
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


def notify_seen(core: Core, sub: Subscription, facts: AnyFacts, delay: float | None) -> None:
    assert isinstance(facts, NotifyFacts)
    # (The two checks below are the callees' own, made here: most NOTIFYs find no Timer N
    # running and no failures to reset, and this runs for every one.)
    if sub.awaiting_notify:
        core.stop_timer_n(sub)
    live = facts.status in ("active", "pending")
    if live and sub.extras is not None:  # without extras, failures is 0 already
        sub.failures = 0
    notify = facts.notify
    if core.rules.conditional_notify and notify is not None and "SIP-ETag" in notify.headers:
        # RFC 5839: the entity-tag of this state, offered back on the next refresh.
        sub.etag = notify.headers.get("SIP-ETag")
    if facts.document is not None and core.rules.keep_last_pidf and notify is not None \
            and notify.body:
        # Kept for an empty NOTIFY (SUB-077, rfc6665 only): ser never reads it back.
        sub.last_pidf = notify.body
    granted = facts.granted
    if granted is not None and live:
        # SUB-028/029: the NOTIFY's expires is authoritative.
        sub.expires_at = facts.now + granted
        if sub.state is CONFIRMED:
            core.start_timer(sub, "REFRESH",
                             facts.now + core.timing.refresh_delay(core.config, granted))
    applied = facts.applied
    if applied is not None and applied.needs_full_state and live \
            and sub.state is CONFIRMED:
        # Rule 8: a lost update; the refresh (the REFRESH tick brought forward) makes the
        # notifier send full state.
        core.count(f"{sub.pkg.name}.refresh_for_full_state")
        core.start_timer(sub, "REFRESH", facts.now)


def _answer(core: Core, facts: AnyFacts, status: int, reason: str | None) -> None:
    assert isinstance(facts, NotifyFacts) and facts.notify is not None \
        and facts.source is not None
    core.ua.respond(facts.notify, facts.source, status, facts.now, reason=reason)


def reply_200(core: Core, sub: Subscription, facts: AnyFacts, delay: float | None) -> None:
    assert isinstance(facts, NotifyFacts) and facts.notify is not None \
        and facts.source is not None
    answer = facts.answer  # rule 5
    # (The UA is called here, not through _answer: one layer less on every NOTIFY.)
    if answer is None:
        core.ua.respond(facts.notify, facts.source, 200, facts.now)
    else:
        core.ua.respond(facts.notify, facts.source, answer.status, facts.now,
                        reason=answer.reason)


def reply_481(core: Core, sub: Subscription, facts: AnyFacts, delay: float | None) -> None:
    _answer(core, facts, 481, None)


def reply_500(core: Core, sub: Subscription, facts: AnyFacts, delay: float | None) -> None:
    _answer(core, facts, 500, "Internal error")


# ==================================================================== status messages
def deliver(core: Core, sub: Subscription, facts: AnyFacts, delay: float | None) -> None:
    assert isinstance(facts, NotifyFacts) and facts.notify is not None
    notify = facts.notify
    if core.rules.drop_bad_pidf and facts.error is not None:
        core.count("qsa.dropped_bad_pidf")
        return
    status = facts.status
    retry_at = None
    if delay is not None and status in ("terminated", "rejected"):
        retry_at = facts.now + delay
    if facts.error is None:
        reason = facts.reason
    else:
        reason = (f"bad-pidf: {facts.error}" if sub.body_state is None
                  else f"bad-{sub.pkg.name}: {facts.error}")
    applied = facts.applied
    if applied is not None:
        if applied.outcome != "stale":  # (applied, or applied past a gap)
            _deliver_changes(core, sub, facts, applied, retry_at, reason)
        if status in ("active", "pending"):
            return  # else the subscription ends: its own status message follows
    # (Positional, the fields in their order from handle to at: this runs for every NOTIFY,
    # and matching twelve keywords costs a sixth of building the message.)
    core.deliver(sub, StatusMessage(
        sub.handle, sub.record, sub.subscriber, sub.package, status, facts.document,
        notify.body, notify.headers.get("Content-Type"), reason, retry_at,
        sub.subscriber_data, facts.now))


def _deliver_changes(core: Core, sub: Subscription, facts: NotifyFacts,
                     applied: ApplyResult | ListApplyResult, retry_at: float | None,
                     reason: str | None) -> None:
    """reg: one status message per registration the NOTIFY carried (full state: all of
    them); presence-list: one per resource whose state changed (its instance state is the
    message's status, a terminated instance's reason its reason)."""
    notify = facts.notify
    assert notify is not None
    for change in applied.changed:
        if isinstance(change, Registration):
            message = StatusMessage(
                handle=sub.handle, record=sub.record, subscriber=sub.subscriber,
                package=sub.package, status=facts.status, body=notify.body,
                content_type=notify.headers.get("Content-Type"), reason=reason,
                retry_at=retry_at, subscriber_data=sub.subscriber_data, at=facts.now,
                registration=change)
        else:
            assert isinstance(change, ResourceChange)
            message = StatusMessage(
                handle=sub.handle, record=sub.record, subscriber=sub.subscriber,
                package=sub.package, status=change.state, document=change.document,
                body=change.body, content_type=change.content_type, reason=change.reason,
                subscriber_data=sub.subscriber_data, at=facts.now,
                list_uri=change.list_uri, resource=change.uri)
        core.deliver(sub, message)


def report_failure(core: Core, sub: Subscription, facts: AnyFacts, delay: float | None) -> None:
    assert delay is not None  # rule 2
    core.deliver(sub, StatusMessage(
        handle=sub.handle, record=sub.record, subscriber=sub.subscriber,
        package=sub.package, status="rejected" if facts.rejected else "terminated",
        reason=facts.reason, retry_at=facts.now + delay,
        subscriber_data=sub.subscriber_data, at=facts.now))


def report_end(core: Core, sub: Subscription, facts: AnyFacts, delay: float | None) -> None:
    """A fetch failed: one terminated/rejected message, no retry_at (none follows)."""
    core.deliver(sub, StatusMessage(
        handle=sub.handle, record=sub.record, subscriber=sub.subscriber,
        package=sub.package, status="rejected" if facts.rejected else "terminated",
        reason=facts.reason, subscriber_data=sub.subscriber_data, at=facts.now))


# ==================================================================== sending
def send_initial(core: Core, sub: Subscription, facts: AnyFacts, delay: float | None) -> None:
    core.send_initial(sub, facts.now)


def send_redirect(core: Core, sub: Subscription, facts: AnyFacts, delay: float | None) -> None:
    assert isinstance(facts, ResponseFacts) and facts.redirect_to is not None
    sub.redirects_seen = (*sub.redirects_seen, facts.redirect_to)
    core.count("redirects")
    core.new_dialog_request(sub, facts.redirect_to, facts.now, redirected=True)


def send_min_expires(core: Core, sub: Subscription, facts: AnyFacts,
                     delay: float | None) -> None:
    assert facts.granted is not None and sub.dialog is not None
    sub.min_expires_retried = True
    sub.requested_expires = max(sub.requested_expires, facts.granted)
    core.send_in_dialog(sub, sub.requested_expires, facts.now)


def send_refresh(core: Core, sub: Subscription, facts: AnyFacts, delay: float | None) -> None:
    sub.min_expires_retried = False
    core.send_in_dialog(sub, sub.requested_expires, facts.now)


def send_unsubscribe(core: Core, sub: Subscription, facts: AnyFacts,
                     delay: float | None) -> None:
    core.send_in_dialog(sub, 0, facts.now)


def resend(core: Core, sub: Subscription, facts: AnyFacts, delay: float | None) -> None:
    """Rule 7: adopt the challenges (401/407) or the option tags left (420), then the
    SUBSCRIBE in flight again, CSeq + 1 (AUTH-001, SUB-130)."""
    assert isinstance(facts, ResponseFacts)
    if facts.challenges:
        if sub.auth is None:
            sub.auth = DigestSession(sub.subscriber)
        sub.auth.adopt(facts.challenges)
        core.count("auth.answered")
    if facts.option_tags is not None:
        sub.option_tags, sub.tags_dropped = facts.option_tags, True
        core.count("option_tags.dropped")
    core.count("subscribe.resent")
    core.send_subscribe(sub, sub.tx_expires, facts.now, [],
                        out_of_dialog=sub.tx_out_of_dialog)


def stop_timer_n(core: Core, sub: Subscription, facts: AnyFacts, delay: float | None) -> None:
    core.stop_timer_n(sub)  # RFC 5839: a 204 says no NOTIFY follows


# ==================================================================== timers
def start_refresh(core: Core, sub: Subscription, facts: AnyFacts, delay: float | None) -> None:
    granted = facts.granted if facts.granted is not None else 0
    sub.expires_at = facts.now + granted
    core.start_timer(sub, "REFRESH",
                     facts.now + core.timing.refresh_delay(core.config, granted))


def start_refresh_retry(core: Core, sub: Subscription, facts: AnyFacts,
                        delay: float | None) -> None:
    # SUB-016: the subscription is still valid until its known expiry; try again before.
    assert sub.expires_at is not None
    now = facts.now
    sub.failures += 1
    backoff = core.timing.backoff_delay(core.config, sub.failures, core.rng, facts.retry_after)
    left = sub.expires_at - now
    # A Retry-After is a floor (SUB-131) even against "half the time left": when it
    # reaches past the expiry, the refresh is not retried and the grant runs out.
    floor = float(facts.retry_after) if facts.retry_after is not None else 0.0
    if left <= MIN_TIME_LEFT or floor >= left:
        # No time for another try: the next tick is the expiry (-> EXPIRED).
        core.start_timer(sub, "REFRESH", sub.expires_at)
    else:
        core.start_timer(sub, "REFRESH", now + max(min(backoff, left / 2), floor))


def start_retry(core: Core, sub: Subscription, facts: AnyFacts, delay: float | None) -> None:
    assert delay is not None  # rule 2
    sub.failures += 1
    core.count("retries")
    core.start_timer(sub, "RETRY", facts.now + delay)


def start_resubscribe_wait(core: Core, sub: Subscription, facts: AnyFacts,
                           delay: float | None) -> None:
    assert delay is not None  # rule 2a
    sub.failures += 1
    core.start_timer(sub, "RETRY", facts.now + delay)


def start_termwait(core: Core, sub: Subscription, facts: AnyFacts, delay: float | None) -> None:
    at = facts.now + core.config.wait_for_term_notify
    if sub.destroy_deadline is not None:
        # rfc6665: an unsubscribe ends within failover_timeout + wait_for_term_notify,
        # even when the 2xx to the initial SUBSCRIBE came late (found by the stateful test).
        at = min(at, sub.destroy_deadline)
    core.start_timer(sub, "TERMWAIT", at)


# ==================================================================== ending
def abandon_tx(core: Core, sub: Subscription, facts: AnyFacts, delay: float | None) -> None:
    core.abandon_tx(sub)


def drop_dialog(core: Core, sub: Subscription, facts: AnyFacts, delay: float | None) -> None:
    core.drop_dialog(sub)


def free(core: Core, sub: Subscription, facts: AnyFacts, delay: float | None) -> None:
    core.free(sub)


def log_stale(core: Core, sub: Subscription, facts: AnyFacts, delay: float | None) -> None:
    core.count("rx.stale_responses")


def log_no_term_notify(core: Core, sub: Subscription, facts: AnyFacts,
                       delay: float | None) -> None:
    core.count("termwait_expired")
    core.trace("warning", sub, text="destroying dialog with timer (no term NOTIFY)")


# ==================================================================== the action table
ACTIONS: ActionTable = {
    Action.STOP: stop,
    Action.CONFIRM: confirm,
    Action.UPDATE_FROM_2XX: update_from_2xx,
    Action.UPDATE_FROM_NOTIFY: update_from_notify,
    Action.NOTIFY_SEEN: notify_seen,
    Action.REPLY_200: reply_200,
    Action.REPLY_481: reply_481,
    Action.REPLY_500: reply_500,
    Action.DELIVER: deliver,
    Action.REPORT_FAILURE: report_failure,
    Action.REPORT_END: report_end,
    Action.RESEND: resend,
    Action.STOP_TIMER_N: stop_timer_n,
    Action.SEND_INITIAL: send_initial,
    Action.SEND_REDIRECT: send_redirect,
    Action.SEND_MIN_EXPIRES: send_min_expires,
    Action.SEND_REFRESH: send_refresh,
    Action.SEND_UNSUBSCRIBE: send_unsubscribe,
    Action.START_REFRESH: start_refresh,
    Action.START_REFRESH_RETRY: start_refresh_retry,
    Action.START_RETRY: start_retry,
    Action.START_RESUBSCRIBE_WAIT: start_resubscribe_wait,
    Action.START_TERMWAIT: start_termwait,
    Action.ABANDON_TX: abandon_tx,
    Action.DROP_DIALOG: drop_dialog,
    Action.FREE: free,
    Action.LOG_STALE: log_stale,
    Action.LOG_NO_TERM_NOTIFY: log_no_term_notify,
}
