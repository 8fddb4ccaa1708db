"""The UA's housekeeping timer (reference/ua.py): Timers J and K are deadline heaps under one
core timer, fired `HOUSEKEEPING_SLACK` after the earliest deadline, collecting every
transaction due by then in one batch; no transaction outlives its timer by more than the
slack, and none ends before it."""

from __future__ import annotations

from reference.timers import TimerKind
from reference.ua import HOUSEKEEPING_SLACK, HOUSEKEEPING_TIMER
from tests.reference.harness import Harness

TIMER_J = 32.0  # 64 * T1 with the default T1 = 0.5 s
TIMER_K = 5.0  # T4


def test_answered_notifies_share_one_timer_and_end_in_one_batch() -> None:
    h = Harness.make("rfc6665")
    h.confirmed(notify=False)
    h.advance(10.0)  # the SUBSCRIBE's transaction is over (Timer K)
    assert not h.agent.ua.clients and HOUSEKEEPING_TIMER not in h.timers
    h.notify()
    for _ in range(3):
        h.advance_by(0.2)
        h.notify()
    assert len(h.agent.ua.servers) == 4
    assert [k for k in h.timers if k.kind is TimerKind.SERVER_TX] == [HOUSEKEEPING_TIMER]
    first = 10.0 + TIMER_J
    assert h.timers[HOUSEKEEPING_TIMER] == first + HOUSEKEEPING_SLACK
    h.advance(first + HOUSEKEEPING_SLACK - 0.01)
    assert len(h.agent.ua.servers) == 4  # none ends before the wake-up
    h.advance(first + HOUSEKEEPING_SLACK)
    assert not h.agent.ua.servers  # all four were due within the slack: one batch
    assert HOUSEKEEPING_TIMER not in h.timers and not h.agent.ua.server_deadlines


def test_a_later_deadline_gets_its_own_wake_up() -> None:
    h = Harness.make("rfc6665")
    h.confirmed(notify=False)
    h.advance(10.0)
    h.notify()
    h.advance_by(3.0)
    h.notify()  # due 3 s after the first: beyond the first one's slack
    first = 10.0 + TIMER_J
    h.advance(first + HOUSEKEEPING_SLACK)
    assert len(h.agent.ua.servers) == 1
    assert h.timers[HOUSEKEEPING_TIMER] == first + 3.0 + HOUSEKEEPING_SLACK
    h.advance(first + 3.0 + HOUSEKEEPING_SLACK)
    assert not h.agent.ua.servers and HOUSEKEEPING_TIMER not in h.timers


def test_a_completed_subscribe_ends_by_housekeeping_not_its_own_timer_k() -> None:
    h = Harness.make("rfc6665")
    h.subscribe()
    h.advance_by(0.1)
    h.respond()
    [(deadline, branch)] = h.agent.ua.client_deadlines
    assert deadline == 0.1 + TIMER_K and h.agent.ua.clients[branch].tx.state == "completed"
    assert not [k for k in h.timers if k.kind is TimerKind.CLIENT_TX]  # E, F cleared; no K
    h.advance(deadline + HOUSEKEEPING_SLACK - 0.01)
    assert branch in h.agent.ua.clients
    h.advance(deadline + HOUSEKEEPING_SLACK)
    assert branch not in h.agent.ua.clients and not h.agent.ua.client_deadlines
    assert HOUSEKEEPING_TIMER not in h.timers


def test_a_retransmitted_answer_within_the_slack_is_absorbed() -> None:
    h = Harness.make("rfc6665")
    h.subscribe()
    h.advance_by(0.1)
    answer = h.respond()
    h.advance(0.1 + TIMER_K + HOUSEKEEPING_SLACK / 2)
    h.feed(answer.to_bytes())
    assert "rx.unmatched_responses" not in h.agent.counters
    h.advance(0.1 + TIMER_K + HOUSEKEEPING_SLACK)
    h.feed(answer.to_bytes())
    assert h.agent.counters["rx.unmatched_responses"] == 1


def test_an_abandoned_transaction_leaves_nothing_behind() -> None:
    h = Harness.make("rfc6665")
    handle = h.subscribe()
    h.advance_by(0.1)
    h.respond()
    branch = h.agent.ua.client_deadlines[0][1]
    h.agent.ua.abandon_client(branch)
    h.unsubscribe(handle)
    h.advance_by(TIMER_J + TIMER_K + 2 * HOUSEKEEPING_SLACK)
    assert branch not in h.agent.ua.clients and not h.agent.ua.client_deadlines
