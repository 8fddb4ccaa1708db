"""The per-subscription state machine as explicit tables, one per profile.

States are SER's nine (`presence_b2b.md` §3.1) plus `terminated` (rfc6665 only: the notifier
ended the subscription for good, nothing more is sent until the internal subscriber
unsubscribes). Events are what the agent classified an input as (the agent's classification
consults `policy.py`'s response classes, e.g. whether a 404 to a refresh is `R_TERMINATING` or
a 503 is `R_FAIL`; this module imports neither). A row lists the actions the agent runs, in
order, and the next state. Conditions of SER's C code ("3xx with or without
Contact") are split into separate events so that every row is unconditional.

`python -m reference.subscription` prints the tables as Mermaid state diagrams
(docs/behaviour.md embeds them; regenerate with `python -m reference.subscription --write`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path


class State(Enum):
    UNCONFIRMED = 0
    UNCONFIRMED_DESTROY = 1
    CONFIRMED = 2
    WAITING = 3
    RESUBSCRIPTION = 4
    RESUBSCRIPTION_DESTROY = 5
    WAITING_FOR_TERMINATION = 6
    PREDESTROYED = 7
    DESTROYED = 8
    TERMINATED = 9  # rfc6665 only
    FETCHING = 10  # rfc6665 only: a fetch (Expires 0) waits for its one NOTIFY (SUB-052)

    # Every input hashes its (state, event) row key and tests the state against
    # AWAITING_RESPONSE: members are singletons compared by identity, so hash them by
    # identity in C instead of Enum's Python-level hash of the name (as TimerKind does).
    __hash__ = object.__hash__


# States in which the subscription waits for the answer to a SUBSCRIBE it sent.
AWAITING_RESPONSE = frozenset({
    State.UNCONFIRMED, State.UNCONFIRMED_DESTROY, State.RESUBSCRIPTION,
    State.RESUBSCRIPTION_DESTROY, State.PREDESTROYED, State.FETCHING,
})


class Event(Enum):
    NOTIFY = "notify"                      # a matched NOTIFY that is not terminating
    NOTIFY_TERMINATED = "notify_terminated"  # ser: Subscription-State exactly `terminated`
    NOTIFY_TERMINATED_NOW = "notify_terminated_now"      # rfc6665: resubscribe at once
    NOTIFY_TERMINATED_LATER = "notify_terminated_later"  # rfc6665: resubscribe after a delay
    NOTIFY_TERMINATED_FINAL = "notify_terminated_final"  # rfc6665: never resubscribe
    R1XX = "1xx"
    R2XX = "2xx"
    R204 = "204"                           # rfc6665: 2xx saying no NOTIFY follows (RFC 5839)
    R3XX = "3xx"                           # a redirect with a Contact still to try
    R3XX_NO_CONTACT = "3xx_no_contact"     # no (untried) Contact, or redirect limit reached
    R4XX = "4xx"                           # ser: any final >= 400, incl. transaction timeout
    R423 = "423"                           # rfc6665: Interval Too Brief with Min-Expires
    R481 = "481"                           # rfc6665: 481 to a refresh
    R_TERMINATING = "refresh_terminating"  # rfc6665: RFC 6665 §4.1.2.2 list, to a refresh
    R_FAIL = "failure"                     # rfc6665: any other failure (incl. timeout)
    # rfc6665: a 401/407 the agent answers with credentials, or a 420 whose Unsupported
    # tags it can drop: the same request again, CSeq + 1 (AUTH-001, SUB-130)
    R_RESEND = "resend"
    # rfc6665: the initial SUBSCRIBE timed out, but a NOTIFY already created the dialog: the
    # 2xx was lost, the subscription exists (B7 fixed, RFC 6665 §4.1.2.4).
    R_TIMEOUT_DIALOG_UP = "timeout_dialog_up"
    DESTROY = "destroy"                    # internal unsubscribe
    TICK = "tick"                          # the subscription's timer fired
    TIMER_N = "timer_n"                    # rfc6665: 2xx but no NOTIFY within 64*T1
    EXPIRED = "expired"                    # rfc6665: the granted duration ran out

    __hash__ = object.__hash__  # (see State)


class Action(Enum):
    STOP = "stop the subscription timer"
    CONFIRM = "confirm the dialog from the 2xx"
    UPDATE_FROM_2XX = "refresh the remote target from the 2xx"
    UPDATE_FROM_NOTIFY = "update the dialog from the NOTIFY"
    NOTIFY_SEEN = "stop Timer N; apply NOTIFY expires; reset failures"
    REPLY_200 = "answer the NOTIFY 200"
    REPLY_481 = "answer the NOTIFY 481"
    REPLY_500 = "answer the NOTIFY 500"
    DELIVER = "deliver a status message"
    REPORT_FAILURE = "deliver a terminated/rejected status message"
    REPORT_END = "deliver a terminated/rejected status message, no retry follows"
    RESEND = "resend the SUBSCRIBE in flight, CSeq + 1 (credentials, fewer option tags)"
    STOP_TIMER_N = "stop Timer N: no NOTIFY follows (RFC 5839 204)"
    SEND_INITIAL = "send a new initial SUBSCRIBE (new dialog) to the record"
    SEND_REDIRECT = "send a new initial SUBSCRIBE to the next redirect Contact"
    SEND_MIN_EXPIRES = "resend the SUBSCRIBE with Expires = Min-Expires"
    SEND_REFRESH = "send an in-dialog refresh SUBSCRIBE"
    SEND_UNSUBSCRIBE = "send an in-dialog SUBSCRIBE with Expires: 0"
    START_REFRESH = "start the REFRESH timer"
    START_REFRESH_RETRY = "keep the subscription, retry the refresh before expiry"
    START_RETRY = "start the RETRY timer (new dialog later)"
    START_RESUBSCRIBE_WAIT = "start the RETRY timer for the terminated reason"
    START_TERMWAIT = "start the TERMWAIT timer"
    ABANDON_TX = "abandon the outstanding SUBSCRIBE transaction"
    DROP_DIALOG = "drop the dialog"
    FREE = "forget the subscription"
    LOG_STALE = "log a stale response"
    LOG_NO_TERM_NOTIFY = "log: no terminating NOTIFY"

    __hash__ = object.__hash__  # (see State)


@dataclass(frozen=True)
class Row:
    actions: tuple[Action, ...]
    next: State


Table = dict[tuple[State, Event], Row]

S = State
E = Event
A = Action

_R = (E.R1XX, E.R2XX, E.R3XX, E.R3XX_NO_CONTACT)
SER_EVENTS = (E.NOTIFY, E.NOTIFY_TERMINATED, *_R, E.R4XX, E.DESTROY, E.TICK)
RFC_EVENTS = (E.NOTIFY, E.NOTIFY_TERMINATED_NOW, E.NOTIFY_TERMINATED_LATER,
              E.NOTIFY_TERMINATED_FINAL, *_R, E.R204, E.R423, E.R481, E.R_TERMINATING,
              E.R_FAIL, E.R_TIMEOUT_DIALOG_UP, E.R_RESEND, E.DESTROY, E.TICK, E.TIMER_N,
              E.EXPIRED)
RFC_FAILURES = (E.R423, E.R481, E.R_TERMINATING, E.R_FAIL, E.R_TIMEOUT_DIALOG_UP)


class DuplicateRow(ValueError):
    """A table builder wrote a second row for the same (state, event)."""


def _rows(table: Table, state: State, events: tuple[Event, ...], actions: tuple[Action, ...],
          next_state: State) -> None:
    """Add one row per event. A key is written once: a later row never silently replaces an
    earlier one (the table would no longer read top to bottom)."""
    for event in events:
        if (state, event) in table:
            raise DuplicateRow(f"two rows for ({state.name}, {event.name})")
        table[(state, event)] = Row(actions, next_state)


# ------------------------------------------------------------------------------ ser
# Spec §3.5 row by row. "Send failure" rows of the C code are unreachable here: the record
# URI is validated at subscribe time and a sans-IO send cannot fail locally.
def _ser_table() -> Table:
    t: Table = {}
    notify = (E.NOTIFY, E.NOTIFY_TERMINATED)
    responses = (*_R, E.R4XX)
    deliver = (A.UPDATE_FROM_NOTIFY, A.REPLY_200, A.DELIVER)
    give_up = (A.STOP, A.DROP_DIALOG, A.FREE)
    retry = (A.STOP, A.DROP_DIALOG, A.START_RETRY)
    # 0 unconfirmed
    _rows(t, S.UNCONFIRMED, notify, deliver, S.UNCONFIRMED)
    _rows(t, S.UNCONFIRMED, (E.R1XX,), (), S.UNCONFIRMED)
    _rows(t, S.UNCONFIRMED, (E.R2XX,), (A.STOP, A.CONFIRM, A.START_REFRESH), S.CONFIRMED)
    _rows(t, S.UNCONFIRMED, (E.R3XX,), (A.STOP, A.DROP_DIALOG, A.SEND_REDIRECT), S.UNCONFIRMED)
    _rows(t, S.UNCONFIRMED, (E.R3XX_NO_CONTACT, E.R4XX, E.TICK), retry, S.WAITING)
    _rows(t, S.UNCONFIRMED, (E.DESTROY,), (), S.UNCONFIRMED_DESTROY)
    # 1 unconfirmed_destroy
    _rows(t, S.UNCONFIRMED_DESTROY, notify, (A.UPDATE_FROM_NOTIFY, A.REPLY_200),
          S.UNCONFIRMED_DESTROY)
    _rows(t, S.UNCONFIRMED_DESTROY, (E.R1XX, E.DESTROY), (), S.UNCONFIRMED_DESTROY)
    _rows(t, S.UNCONFIRMED_DESTROY, (E.R2XX,), (A.STOP, A.CONFIRM, A.SEND_UNSUBSCRIBE),
          S.PREDESTROYED)
    _rows(t, S.UNCONFIRMED_DESTROY, (E.R3XX, E.R3XX_NO_CONTACT, E.R4XX, E.TICK), give_up,
          S.DESTROYED)
    # 2 confirmed: a terminated NOTIFY is only reported (defect B2, reproduced)
    _rows(t, S.CONFIRMED, notify, deliver, S.CONFIRMED)
    _rows(t, S.CONFIRMED, responses, (A.LOG_STALE,), S.CONFIRMED)
    _rows(t, S.CONFIRMED, (E.DESTROY,), (A.STOP, A.SEND_UNSUBSCRIBE), S.PREDESTROYED)
    _rows(t, S.CONFIRMED, (E.TICK,), (A.SEND_REFRESH,), S.RESUBSCRIPTION)
    # 4 resubscription
    _rows(t, S.RESUBSCRIPTION, notify, deliver, S.RESUBSCRIPTION)
    _rows(t, S.RESUBSCRIPTION, (E.R1XX,), (), S.RESUBSCRIPTION)
    _rows(t, S.RESUBSCRIPTION, (E.R2XX,), (A.STOP, A.UPDATE_FROM_2XX, A.START_REFRESH),
          S.CONFIRMED)
    _rows(t, S.RESUBSCRIPTION, (E.R3XX,), (A.STOP, A.DROP_DIALOG, A.SEND_REDIRECT),
          S.UNCONFIRMED)
    _rows(t, S.RESUBSCRIPTION, (E.R3XX_NO_CONTACT, E.R4XX, E.TICK), retry, S.WAITING)
    _rows(t, S.RESUBSCRIPTION, (E.DESTROY,), (), S.RESUBSCRIPTION_DESTROY)
    # 5 resubscription_destroy: the 2xx does not update the dialog (as SER)
    _rows(t, S.RESUBSCRIPTION_DESTROY, notify, (A.UPDATE_FROM_NOTIFY, A.REPLY_200),
          S.RESUBSCRIPTION_DESTROY)
    _rows(t, S.RESUBSCRIPTION_DESTROY, (E.R1XX, E.DESTROY), (), S.RESUBSCRIPTION_DESTROY)
    _rows(t, S.RESUBSCRIPTION_DESTROY, (E.R2XX,), (A.STOP, A.SEND_UNSUBSCRIBE), S.PREDESTROYED)
    _rows(t, S.RESUBSCRIPTION_DESTROY, (E.R3XX, E.R3XX_NO_CONTACT, E.R4XX, E.TICK), give_up,
          S.DESTROYED)
    # 3 waiting: no dialog exists, so a NOTIFY normally never gets here (the agent answers 481)
    _rows(t, S.WAITING, responses, (A.LOG_STALE,), S.WAITING)
    _rows(t, S.WAITING, notify, (A.REPLY_500,), S.WAITING)
    _rows(t, S.WAITING, (E.DESTROY,), (A.STOP, A.FREE), S.DESTROYED)
    _rows(t, S.WAITING, (E.TICK,), (A.SEND_INITIAL,), S.UNCONFIRMED)
    # 7 predestroyed
    _rows(t, S.PREDESTROYED, (E.NOTIFY,), (A.UPDATE_FROM_NOTIFY, A.REPLY_200), S.PREDESTROYED)
    _rows(t, S.PREDESTROYED, (E.NOTIFY_TERMINATED,),
          (A.UPDATE_FROM_NOTIFY, A.REPLY_200, A.ABANDON_TX, A.DROP_DIALOG, A.STOP, A.FREE),
          S.DESTROYED)
    _rows(t, S.PREDESTROYED, (E.R1XX, E.DESTROY), (), S.PREDESTROYED)
    _rows(t, S.PREDESTROYED, (E.R2XX,), (A.STOP, A.START_TERMWAIT), S.WAITING_FOR_TERMINATION)
    _rows(t, S.PREDESTROYED, (E.R3XX, E.R3XX_NO_CONTACT, E.R4XX, E.TICK), give_up, S.DESTROYED)
    # 6 waiting_for_termination: the dialog is not updated any more
    _rows(t, S.WAITING_FOR_TERMINATION, (E.NOTIFY,), (A.REPLY_200,), S.WAITING_FOR_TERMINATION)
    _rows(t, S.WAITING_FOR_TERMINATION, (E.NOTIFY_TERMINATED,),
          (A.REPLY_200, A.DROP_DIALOG, A.STOP, A.FREE), S.DESTROYED)
    _rows(t, S.WAITING_FOR_TERMINATION, (E.TICK,),
          (A.LOG_NO_TERM_NOTIFY, A.DROP_DIALOG, A.FREE), S.DESTROYED)
    _rows(t, S.WAITING_FOR_TERMINATION, responses, (A.LOG_STALE,), S.WAITING_FOR_TERMINATION)
    _rows(t, S.WAITING_FOR_TERMINATION, (E.DESTROY,), (), S.WAITING_FOR_TERMINATION)
    # 8 destroyed: the agent forgets the object on FREE, so these rows document SER only
    _rows(t, S.DESTROYED, notify, (A.REPLY_481,), S.DESTROYED)
    _rows(t, S.DESTROYED, (*_R, E.R4XX, E.DESTROY, E.TICK), (), S.DESTROYED)
    return t


# --------------------------------------------------------------------------- rfc6665
def _rfc_table() -> Table:
    t: Table = {}
    deliver = (A.UPDATE_FROM_NOTIFY, A.REPLY_200, A.DELIVER, A.NOTIFY_SEEN)
    # Where no SUBSCRIBE answer is awaited, every response is stale (R204 rows for the other
    # states are derived from their R2XX rows at the end).
    responses = (*_R, E.R204, *RFC_FAILURES, E.R_RESEND)
    fail = (A.STOP, A.DROP_DIALOG, A.REPORT_FAILURE, A.START_RETRY)
    give_up = (A.STOP, A.DROP_DIALOG, A.FREE)
    ended = (A.REPLY_200, A.DELIVER, A.ABANDON_TX, A.STOP, A.DROP_DIALOG)
    quiet_end = (A.REPLY_200, A.ABANDON_TX, A.STOP, A.DROP_DIALOG, A.FREE)
    terminated_events = (E.NOTIFY_TERMINATED_NOW, E.NOTIFY_TERMINATED_LATER,
                         E.NOTIFY_TERMINATED_FINAL)

    def in_service(state: State) -> None:
        """NOTIFY handling shared by the states in which the subscription is wanted."""
        _rows(t, state, (E.NOTIFY,), deliver, state)
        _rows(t, state, (E.NOTIFY_TERMINATED_NOW,), (*ended, A.SEND_INITIAL), S.UNCONFIRMED)
        _rows(t, state, (E.NOTIFY_TERMINATED_LATER,), (*ended, A.START_RESUBSCRIBE_WAIT),
              S.WAITING)
        _rows(t, state, (E.NOTIFY_TERMINATED_FINAL,), ended, S.TERMINATED)

    # 0 unconfirmed: an early NOTIFY creates the dialog (SUB-010)
    in_service(S.UNCONFIRMED)
    _rows(t, S.UNCONFIRMED, (E.R1XX, E.TIMER_N, E.EXPIRED), (), S.UNCONFIRMED)
    _rows(t, S.UNCONFIRMED, (E.R2XX,), (A.STOP, A.CONFIRM, A.START_REFRESH), S.CONFIRMED)
    _rows(t, S.UNCONFIRMED, (E.R3XX,), (A.STOP, A.DROP_DIALOG, A.SEND_REDIRECT), S.UNCONFIRMED)
    _rows(t, S.UNCONFIRMED, (E.R423,), (A.STOP, A.SEND_MIN_EXPIRES), S.UNCONFIRMED)
    _rows(t, S.UNCONFIRMED, (E.R3XX_NO_CONTACT, E.R481, E.R_TERMINATING, E.R_FAIL, E.TICK), fail,
          S.WAITING)
    _rows(t, S.UNCONFIRMED, (E.R_TIMEOUT_DIALOG_UP,), (A.STOP, A.START_REFRESH), S.CONFIRMED)
    _rows(t, S.UNCONFIRMED, (E.DESTROY,), (), S.UNCONFIRMED_DESTROY)
    # 1 unconfirmed_destroy
    _rows(t, S.UNCONFIRMED_DESTROY, (E.NOTIFY,), (A.UPDATE_FROM_NOTIFY, A.REPLY_200),
          S.UNCONFIRMED_DESTROY)
    _rows(t, S.UNCONFIRMED_DESTROY, terminated_events, quiet_end, S.DESTROYED)
    _rows(t, S.UNCONFIRMED_DESTROY, (E.R1XX, E.DESTROY, E.TIMER_N, E.EXPIRED), (),
          S.UNCONFIRMED_DESTROY)
    _rows(t, S.UNCONFIRMED_DESTROY, (E.R2XX,), (A.STOP, A.CONFIRM, A.SEND_UNSUBSCRIBE),
          S.PREDESTROYED)
    _rows(t, S.UNCONFIRMED_DESTROY,
          (E.R3XX, E.R3XX_NO_CONTACT, E.R423, E.R481, E.R_TERMINATING, E.R_FAIL, E.TICK),
          give_up, S.DESTROYED)
    # The lost-2xx dialog exists on the notifier's side: end it properly.
    _rows(t, S.UNCONFIRMED_DESTROY, (E.R_TIMEOUT_DIALOG_UP,), (A.STOP, A.SEND_UNSUBSCRIBE),
          S.PREDESTROYED)
    # 2 confirmed
    in_service(S.CONFIRMED)
    _rows(t, S.CONFIRMED, responses, (A.LOG_STALE,), S.CONFIRMED)
    _rows(t, S.CONFIRMED, (E.TICK,), (A.SEND_REFRESH,), S.RESUBSCRIPTION)
    _rows(t, S.CONFIRMED, (E.TIMER_N, E.EXPIRED), fail, S.WAITING)
    _rows(t, S.CONFIRMED, (E.DESTROY,), (A.STOP, A.SEND_UNSUBSCRIBE), S.PREDESTROYED)
    # 4 resubscription
    in_service(S.RESUBSCRIPTION)
    _rows(t, S.RESUBSCRIPTION, (E.R1XX, E.TIMER_N), (), S.RESUBSCRIPTION)
    _rows(t, S.RESUBSCRIPTION, (E.R2XX,), (A.STOP, A.UPDATE_FROM_2XX, A.START_REFRESH),
          S.CONFIRMED)
    _rows(t, S.RESUBSCRIPTION, (E.R3XX,), (A.STOP, A.DROP_DIALOG, A.SEND_REDIRECT),
          S.UNCONFIRMED)
    _rows(t, S.RESUBSCRIPTION, (E.R423,), (A.STOP, A.SEND_MIN_EXPIRES), S.RESUBSCRIPTION)
    _rows(t, S.RESUBSCRIPTION, (E.R481,),
          (A.STOP, A.DROP_DIALOG, A.REPORT_FAILURE, A.SEND_INITIAL), S.UNCONFIRMED)
    _rows(t, S.RESUBSCRIPTION, (E.R_TERMINATING, E.R3XX_NO_CONTACT, E.EXPIRED), fail, S.WAITING)
    # Other failures keep the subscription until its known expiry (SUB-016).
    _rows(t, S.RESUBSCRIPTION, (E.R_FAIL, E.R_TIMEOUT_DIALOG_UP, E.TICK),
          (A.STOP, A.START_REFRESH_RETRY), S.CONFIRMED)
    _rows(t, S.RESUBSCRIPTION, (E.DESTROY,), (), S.RESUBSCRIPTION_DESTROY)
    # 5 resubscription_destroy
    _rows(t, S.RESUBSCRIPTION_DESTROY, (E.NOTIFY,), (A.UPDATE_FROM_NOTIFY, A.REPLY_200),
          S.RESUBSCRIPTION_DESTROY)
    _rows(t, S.RESUBSCRIPTION_DESTROY, terminated_events, quiet_end, S.DESTROYED)
    _rows(t, S.RESUBSCRIPTION_DESTROY, (E.R1XX, E.DESTROY, E.TIMER_N, E.EXPIRED), (),
          S.RESUBSCRIPTION_DESTROY)
    _rows(t, S.RESUBSCRIPTION_DESTROY, (E.R2XX,), (A.STOP, A.SEND_UNSUBSCRIBE), S.PREDESTROYED)
    _rows(t, S.RESUBSCRIPTION_DESTROY,
          (E.R3XX, E.R3XX_NO_CONTACT, E.R481, E.R_TERMINATING, E.R_TIMEOUT_DIALOG_UP, E.TICK),
          give_up, S.DESTROYED)
    # A refresh that failed without ending the subscription (SUB-016) leaves it valid on the
    # notifier: end it with Expires: 0 instead of forgetting it (as ser does).
    _rows(t, S.RESUBSCRIPTION_DESTROY, (E.R_FAIL, E.R423), (A.STOP, A.SEND_UNSUBSCRIBE),
          S.PREDESTROYED)
    # 3 waiting and 9 terminated: no dialog, so NOTIFYs never reach these rows (481 first)
    for state in (S.WAITING, S.TERMINATED):
        _rows(t, state, responses, (A.LOG_STALE,), state)
        _rows(t, state, (E.NOTIFY, *terminated_events), (A.REPLY_481,), state)
        _rows(t, state, (E.TIMER_N, E.EXPIRED), (), state)
        _rows(t, state, (E.DESTROY,), (A.STOP, A.FREE), S.DESTROYED)
    _rows(t, S.WAITING, (E.TICK,), (A.SEND_INITIAL,), S.UNCONFIRMED)
    _rows(t, S.TERMINATED, (E.TICK,), (), S.TERMINATED)
    # 7 predestroyed
    _rows(t, S.PREDESTROYED, (E.NOTIFY,), (A.UPDATE_FROM_NOTIFY, A.REPLY_200), S.PREDESTROYED)
    _rows(t, S.PREDESTROYED, terminated_events, quiet_end, S.DESTROYED)
    _rows(t, S.PREDESTROYED, (E.R1XX, E.DESTROY, E.TIMER_N, E.EXPIRED), (), S.PREDESTROYED)
    _rows(t, S.PREDESTROYED, (E.R2XX,), (A.STOP, A.START_TERMWAIT), S.WAITING_FOR_TERMINATION)
    _rows(t, S.PREDESTROYED, (E.R3XX, E.R3XX_NO_CONTACT, *RFC_FAILURES, E.TICK), give_up,
          S.DESTROYED)
    # 6 waiting_for_termination
    _rows(t, S.WAITING_FOR_TERMINATION, (E.NOTIFY,), (A.REPLY_200,), S.WAITING_FOR_TERMINATION)
    _rows(t, S.WAITING_FOR_TERMINATION, terminated_events,
          (A.REPLY_200, A.STOP, A.DROP_DIALOG, A.FREE), S.DESTROYED)
    _rows(t, S.WAITING_FOR_TERMINATION, (E.TICK,),
          (A.LOG_NO_TERM_NOTIFY, A.DROP_DIALOG, A.FREE), S.DESTROYED)
    _rows(t, S.WAITING_FOR_TERMINATION, responses, (A.LOG_STALE,), S.WAITING_FOR_TERMINATION)
    _rows(t, S.WAITING_FOR_TERMINATION, (E.DESTROY, E.TIMER_N, E.EXPIRED), (),
          S.WAITING_FOR_TERMINATION)
    # 10 fetching (issue 18): one SUBSCRIBE with Expires 0, one status message, the end.
    _rows(t, S.FETCHING, (E.NOTIFY,), deliver, S.FETCHING)
    _rows(t, S.FETCHING, terminated_events,
          (A.REPLY_200, A.DELIVER, A.ABANDON_TX, A.STOP, A.DROP_DIALOG, A.FREE), S.DESTROYED)
    _rows(t, S.FETCHING, (E.R1XX, E.TIMER_N, E.EXPIRED), (), S.FETCHING)
    # The NOTIFY may still be on its way: wait for it as for a terminating NOTIFY.
    _rows(t, S.FETCHING, (E.R2XX,), (A.STOP, A.CONFIRM, A.START_TERMWAIT), S.FETCHING)
    _rows(t, S.FETCHING, (E.R3XX,), (A.STOP, A.DROP_DIALOG, A.SEND_REDIRECT), S.FETCHING)
    _rows(t, S.FETCHING, (E.R3XX_NO_CONTACT, *RFC_FAILURES, E.TICK),
          (A.STOP, A.DROP_DIALOG, A.REPORT_END, A.FREE), S.DESTROYED)
    _rows(t, S.FETCHING, (E.DESTROY,), (A.STOP, A.DROP_DIALOG, A.FREE), S.DESTROYED)
    # 401/407 answered, 420 tags dropped: the request in flight again, same state.
    for state in (S.UNCONFIRMED, S.UNCONFIRMED_DESTROY, S.RESUBSCRIPTION,
                  S.RESUBSCRIPTION_DESTROY, S.PREDESTROYED, S.FETCHING):
        _rows(t, state, (E.R_RESEND,), (A.STOP, A.RESEND), state)
    # 8 destroyed: as in ser, documentation only (the agent forgets the object on FREE); the
    # rows keep the table total over (state, event).
    _rows(t, S.DESTROYED, (E.NOTIFY, *terminated_events), (A.REPLY_481,), S.DESTROYED)
    _rows(t, S.DESTROYED, (*responses, E.DESTROY, E.TICK, E.TIMER_N, E.EXPIRED), (),
          S.DESTROYED)
    # RFC 5839: a 204 is a 2xx after which no NOTIFY comes, so Timer N stops as well.
    for (state, event), row in list(t.items()):
        if event is E.R2XX and (state, E.R204) not in t:
            _rows(t, state, (E.R204,), (*row.actions, A.STOP_TIMER_N), row.next)
    return t


SER_TABLE: Table = _ser_table()
RFC6665_TABLE: Table = _rfc_table()
TABLES: dict[str, Table] = {"ser": SER_TABLE, "rfc6665": RFC6665_TABLE}
EVENTS: dict[str, tuple[Event, ...]] = {"ser": SER_EVENTS, "rfc6665": RFC_EVENTS}
STATES: dict[str, tuple[State, ...]] = {
    "ser": tuple(s for s in State if s not in (S.TERMINATED, S.FETCHING)),
    "rfc6665": tuple(State),
}


def mermaid(profile: str) -> str:
    """A Mermaid state diagram of a profile's table (self-loops without actions omitted)."""
    lines = ["stateDiagram-v2"]
    edges: dict[tuple[State, State], list[str]] = {}
    for (state, event), row in TABLES[profile].items():
        if row.next is state and not row.actions:
            continue
        if state is S.DESTROYED:
            continue
        edges.setdefault((state, row.next), []).append(event.value)
    for (src, dst), events in edges.items():
        label = ", ".join(events)
        lines.append(f"    {src.name.lower()} --> {dst.name.lower()}: {label}")
    return "\n".join(lines) + "\n"


def table_markdown(profile: str) -> str:
    """The table as Markdown rows: state | event | actions | next (| test, for ser)."""
    ser = profile == "ser"
    out = ["| state | event | actions | next |" + (" test |" if ser else ""),
           "|---|---|---|---|" + ("---|" if ser else "")]
    for (state, event), row in TABLES[profile].items():
        actions = "; ".join(a.name.lower() for a in row.actions) or "none"
        line = (f"| {state.value} `{state.name.lower()}` | `{event.value}` | {actions} | "
                f"{row.next.value} `{row.next.name.lower()}` |")
        if ser:
            line += f" `[{state.name.lower()}-{event.value}]` |"
        out.append(line)
    return "\n".join(out) + "\n"


GENERATED_BEGIN = "<!-- generated by `python -m reference.subscription --write`: begin -->"
GENERATED_END = "<!-- generated: end -->"


def generated_section() -> str:
    parts = [GENERATED_BEGIN]
    for profile in ("ser", "rfc6665"):
        parts.append(f"\n### `{profile}` state diagram\n\n```mermaid\n{mermaid(profile)}```\n")
        parts.append(f"\n### `{profile}` transition table\n\n{table_markdown(profile)}")
    parts.append(GENERATED_END)
    return "\n".join(parts)


def write_docs(path: Path) -> bool:
    """Replace the generated section of docs/behaviour.md; True if the file changed."""
    text = path.read_text(encoding="utf-8")
    start = text.index(GENERATED_BEGIN)
    end = text.index(GENERATED_END) + len(GENERATED_END)
    new = text[:start] + generated_section() + text[end:]
    if new != text:
        path.write_text(new, encoding="utf-8")
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--write"]:
        target = Path(args[1]) if len(args) > 1 else Path("docs/behaviour.md")
        changed = write_docs(target)
        print(f"{target}: {'updated' if changed else 'up to date'}")
        return 0
    print(generated_section())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
