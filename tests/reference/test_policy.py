"""Pure policy functions: timing, back-off, response classes, terminated reasons, status."""

from __future__ import annotations

import dataclasses
import random

import hypothesis.strategies as st
import pytest
from hypothesis import given

from reference import AgentConfig, policy

SER = AgentConfig(profile="ser")
RFC = AgentConfig(profile="rfc6665")


@pytest.mark.parametrize(("granted", "ser", "rfc"), [
    (3600, 3570, 3570), (600, 570, 570), (60, 30, 30), (45, 30, 30), (30, 30, 15),
    (20, 30, 10), (0, 30, 0), (7200, 7170, 7170), (1, 30, 0.5),
])
def test_refresh_delay(granted: int, ser: float, rfc: float) -> None:
    assert policy.refresh_delay(SER, granted) == ser
    assert policy.refresh_delay(RFC, granted) == rfc


@given(st.integers(1, 10**6), st.integers(0, 1000), st.integers(1, 1000))
def test_rfc_refresh_always_before_expiry(granted: int, delta: int, minimum: int) -> None:
    cfg = AgentConfig(resubscribe_delta=delta, min_resubscribe_time=minimum)
    delay = policy.refresh_delay(cfg, granted)
    assert 0 < delay < granted
    # identical to ser whenever ser refreshes before expiry
    ser = policy.refresh_delay(AgentConfig(profile="ser", resubscribe_delta=delta,
                                           min_resubscribe_time=minimum), granted)
    if ser < granted:
        assert delay == ser


def test_ser_backoff_constant() -> None:
    rng = random.Random(1)
    assert {policy.backoff_delay(SER, n, rng, retry_after=999) for n in range(1, 9)} == {120.0}


@given(st.integers(1, 80), st.integers(0, 2**32), st.one_of(st.none(), st.integers(0, 10**5)))
def test_rfc_backoff_bounds(n: int, seed: int, retry_after: int | None) -> None:
    cfg = AgentConfig(max_retry_time=3600)
    delay = policy.backoff_delay(cfg, n, random.Random(seed), retry_after)
    ceiling = min(120 * 2 ** (n - 1), 3600)
    if retry_after is not None and retry_after > ceiling:
        assert delay == retry_after
    else:
        assert 0.8 * ceiling <= delay <= max(ceiling, retry_after or 0)
    again = policy.backoff_delay(cfg, n, random.Random(seed), retry_after)
    assert again == delay


def test_refresh_terminating_is_rfc6665_list() -> None:
    assert policy.REFRESH_TERMINATING | {481} == {404, 405, 410, 416, 480, 481, 482, 483, 484,
                                                   485, 489, 501, 604}
    assert {403, 404, 405, 410, 416, 489, 501, 603, 604, 606} == policy.PERMANENT


@pytest.mark.parametrize(("code", "effective"), [
    (200, 200), (499, 400), (599, 500), (699, 600), (183, 183), (150, 100), (423, 423),
])
def test_effective_code(code: int, effective: int) -> None:
    assert policy.effective_code(code) == effective


@pytest.mark.parametrize(("reason", "retry_after", "delay"), [
    ("deactivated", 50, 0.0), ("timeout", None, 0.0), ("probation", 30, 30.0),
    ("giveup", 25, 25.0), ("giveup", None, 0.0), ("rejected", 5, None),
    ("noresource", None, None), ("invariant", 9, None), ("x-new", 15, 15.0),
    (None, 7, 7.0), ("DEACTIVATED", None, 0.0),
])
def test_reason_table(reason: str | None, retry_after: int | None,
                      delay: float | None) -> None:
    reaction = policy.reason_reaction(reason)
    assert policy.resubscribe_delay(reaction, retry_after, 1, RFC, random.Random(0)) == delay
    assert reaction.status == ("rejected" if reason == "rejected" else "terminated")


@pytest.mark.parametrize("reason", ["probation", None, "x-new"])
def test_reason_without_retry_after_backs_off(reason: str | None) -> None:
    delay = policy.resubscribe_delay(policy.reason_reaction(reason), None, 2, RFC,
                                     random.Random(0))
    assert delay is not None and 192 <= delay <= 240


def test_every_rfc6665_reason_in_table() -> None:
    assert set(policy.REASON_TABLE) == {"deactivated", "probation", "rejected", "timeout",
                                        "giveup", "noresource", "invariant"}


@pytest.mark.parametrize(("raw", "status"), [
    (None, "pending"), ("active;expires=3600", "active"), ("terminated;reason=x", "terminated"),
    ("Active", "pending"), ("pending", "pending"), ("xyz", "pending"),
    ("active;reason=terminated", "terminated"),  # substring search, terminated first (§5.3)
])
def test_ser_status(raw: str | None, status: str) -> None:
    assert policy.ser_status(raw) == status


@pytest.mark.parametrize(("raw", "terminating"), [
    (None, False), ("terminated", True), (" terminated ;reason=timeout", True),
    ("Terminated", False), ("active;reason=terminated", False),
])
def test_ser_is_terminating(raw: str | None, terminating: bool) -> None:
    assert policy.ser_is_terminating(raw) is terminating


@pytest.mark.parametrize(("token", "status"), [
    ("active", "active"), ("PENDING", "pending"), ("Terminated", "terminated"),
    ("bogus", "pending"),
])
def test_rfc_status(token: str, status: str) -> None:
    assert policy.rfc_status(token) == status


def test_profile_rules_name_every_difference_and_the_agent_never_asks_the_profile() -> None:
    from pathlib import Path

    ser, rfc = policy.RULES["ser"], policy.RULES["rfc6665"]
    names = [f.name for f in dataclasses.fields(ser)]  # not vars(): compiled, no __dict__
    assert names and all(getattr(ser, name) != getattr(rfc, name) for name in names)
    assert ser.close_forgets and ser.drop_bad_pidf and not rfc.close_forgets
    root = Path(__file__).resolve().parents[2] / "reference"
    for module in ("agent.py", "ua.py", "classify.py", "actions.py", "core.py"):
        assert "is_ser" not in (root / module).read_text(), module


# ---------------------------------------------------------------- decisions vs draws
@given(st.sampled_from([*policy.REASON_TABLE.values(), policy.UNKNOWN_REASON,
                        policy.RESTART_AT_ONCE]),
       st.none() | st.integers(0, 10**6), st.integers(1, 40), st.integers(0, 2**32),
       st.integers(1, 10**4), st.integers(1, 10**5), st.sampled_from(["ser", "rfc6665"]))
def test_resubscribe_when_decides_what_resubscribe_delay_draws(
        reaction: policy.ReasonReaction, retry_after: int | None, failures: int, seed: int,
        retry_time: int, max_retry: int, profile: str) -> None:
    config = AgentConfig(profile=profile, on_error_retry_time=retry_time,
                         max_retry_time=max_retry)
    delay = policy.resubscribe_delay(reaction, retry_after, failures, config,
                                     random.Random(seed))
    when = policy.resubscribe_when(reaction, retry_after)
    assert when == (policy.NEVER if delay is None else policy.NOW if delay == 0
                    else policy.LATER)


@given(st.floats(0, 10**5), st.floats(0, 10**4), st.integers(0, 70), st.integers(0, 2**32),
       st.integers(1, 10**4), st.integers(1, 10**5), st.integers(1, 10**4))
def test_restart_guarded_decides_whether_restart_delay_holds_back(
        requested: float, lived: float, quick: int, seed: int, retry_time: int,
        max_retry: int, stable: int) -> None:
    config = AgentConfig(profile="rfc6665", on_error_retry_time=retry_time,
                         max_retry_time=max_retry, stable_subscription_time=stable)
    delay, count = policy.restart_delay(config, requested, lived, quick, random.Random(seed))
    guarded = policy.restart_guarded(config, lived, quick)
    assert delay >= requested
    assert count == (quick + 1 if guarded else 1)
    if guarded:
        assert delay > 0  # so a guarded restart at once is always a later one
    else:
        assert delay == requested
