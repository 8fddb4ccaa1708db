"""rfc6665 re-subscribe storm guard (issue 13 §2, docs/behaviour.md "Re-subscribe back-off").

A notifier that accepts every SUBSCRIBE and ends it at once with a reason asking for an
immediate retry gets one immediate new subscription, then one per failure back-off
(`policy.restart_delay`); a subscription that lived `stable_subscription_time` clears the
count. `ser` never re-subscribes on a terminated NOTIFY (B2), so it has no such loop.
"""

from __future__ import annotations

import itertools
import random

import pytest

from reference import AgentConfig, policy

from .harness import Harness, sub_timer

IMMEDIATE = ["deactivated", "timeout", "probation;retry-after=0", "giveup", "x-new;retry-after=0"]


def rfc(**params: object) -> Harness:
    return Harness.make("rfc6665", **params)


def accept_and_end(h: Harness, reason: str) -> None:
    """Play the hostile notifier once: 200, active NOTIFY, terminated NOTIFY."""
    h.respond(expires=600)
    assert h.notify(state="active;expires=600").status == 200
    assert h.notify(state=f"terminated;reason={reason}").status == 200


def next_attempt(h: Harness) -> None:
    """When the agent is waiting to re-subscribe, let the clock run to that SUBSCRIBE."""
    if h.state() == "waiting":
        h.advance(h.timers[sub_timer(1)])


def new_dialog_times(h: Harness) -> list[float]:
    return [s.at for s in h.requests() if s.message.to.tag is None]


@pytest.mark.parametrize("reason", IMMEDIATE)
def test_one_immediate_restart_then_failure_backoff(reason: str) -> None:
    h = rfc(seed=11)
    h.subscribe()
    for _ in range(6):
        accept_and_end(h, reason)
        next_attempt(h)
    times = new_dialog_times(h)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] == 0.0  # RFC 6665 §4.1.3: the first retry is immediate
    # then the failure back-off of rank 1, 2, 3...: [0.8 b, b], b = 120 * 2**(n-1)
    for n, gap in enumerate(gaps[1:], start=1):
        ceiling = min(120 * 2 ** (n - 1), 3600)
        assert 0.8 * ceiling <= gap <= ceiling, (n, gap)
    assert h.agent.counters["restarts.delayed"] == len(gaps) - 1
    # the delay is reported with the status (retry_at)
    last = h.delivered[-1]
    assert last.status == "terminated" and last.retry_at is not None
    assert last.retry_at == pytest.approx(times[-1])


def test_a_stable_subscription_clears_the_count() -> None:
    h = rfc(seed=2, stable_subscription_time=60)
    h.subscribe()
    accept_and_end(h, "deactivated")            # lived 0 s: immediate (first)
    accept_and_end(h, "deactivated")            # lived 0 s again: back-off
    assert len(new_dialog_times(h)) == 2
    next_attempt(h)
    assert len(new_dialog_times(h)) == 3
    h.respond(expires=600)
    h.notify(state="active;expires=600")
    h.advance(h.now + 60.0)                     # now it has lived 60 s
    h.notify(state="terminated;reason=deactivated")
    assert len(new_dialog_times(h)) == 4 and new_dialog_times(h)[-1] == h.now
    h.respond(expires=600)
    h.notify(state="terminated;reason=deactivated")  # quick again: back-off from rank 1
    assert len(new_dialog_times(h)) == 4
    assert 0.8 * 120 <= h.timers[sub_timer(1)] - h.now <= 120


def test_retry_after_stays_a_floor_and_first_one_is_honoured_exactly() -> None:
    h = rfc(seed=4, on_error_retry_time=10)
    h.subscribe()
    accept_and_end(h, "probation;retry-after=30")
    assert h.timers[sub_timer(1)] - h.now == 30.0
    next_attempt(h)
    accept_and_end(h, "probation;retry-after=30")   # back-off (8-10 s) is below the floor
    assert h.timers[sub_timer(1)] - h.now == 30.0
    next_attempt(h)
    accept_and_end(h, "probation;retry-after=1")    # back-off rank 2: 16-20 s
    assert 16.0 <= h.timers[sub_timer(1)] - h.now <= 20.0


def test_481_to_every_refresh_of_short_grants_backs_off() -> None:
    """A notifier that grants 1 s and answers every refresh 481 (RFC 6665 §4.1.2.2: a new
    subscription at once) gets one immediate new dialog, then back-off."""
    h = rfc(seed=9)
    h.subscribe()
    for _ in range(4):
        h.respond(expires=1)
        h.notify(state="active;expires=1")
        h.advance(h.timers[sub_timer(1)])         # the refresh at half the grant
        h.respond(status=481)
        next_attempt(h)
    times = new_dialog_times(h)
    assert times[1] - times[0] == pytest.approx(0.5)  # refresh at 0.5 s, 481, new dialog at once
    assert times[2] - times[1] >= 0.8 * 120
    assert times[3] - times[2] >= 0.8 * 240
    assert h.delivered[-1].reason == "481"


def test_notify_storm_is_bounded_in_virtual_time() -> None:
    """Against the hostile notifier for an hour of virtual time: with the defaults
    (on_error_retry_time 120, max_retry_time 3600) at most 2 + 6 new subscriptions."""
    h = rfc(seed=1)
    h.subscribe()
    while h.now < 3600.0:
        accept_and_end(h, "deactivated")
        next_attempt(h)
    # 0, 0, ~120, ~240, ~480, ~960, ~1920 (3600 cap not reached within the hour)
    assert len(new_dialog_times(h)) <= 8


def test_ser_has_no_loop_to_guard() -> None:
    """ser reports a terminated NOTIFY and keeps refreshing the dialog (B2): no new SUBSCRIBE."""
    h = Harness.make("ser")
    h.subscribe()
    h.respond(expires=600)
    for _ in range(5):
        assert h.notify(state="terminated;reason=deactivated").status == 200
    assert len(h.subscribes()) == 1
    assert "restarts.delayed" not in h.agent.counters


@pytest.mark.parametrize(("lived", "count", "expected_count"), [
    (0.0, 0, 1), (59.9, 0, 1), (60.0, 5, 1), (10.0, 1, 2), (10.0, 3, 4),
])
def test_policy_restart_delay(lived: float, count: int, expected_count: int) -> None:
    config = AgentConfig(profile="rfc6665", stable_subscription_time=60)
    delay, new_count = policy.restart_delay(config, 0.0, lived, count, random.Random(0))
    assert new_count == expected_count
    if expected_count == 1:
        assert delay == 0.0
    else:
        ceiling = 120 * 2 ** (count - 1)
        assert 0.8 * ceiling <= delay <= ceiling
