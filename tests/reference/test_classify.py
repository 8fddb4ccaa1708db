"""The classifier (reference/classify.py): pure functions of (profile, state, view, message,
now) with frozen facts, injectable, and the dispatcher's delay rule (reference/actions.py)."""

from __future__ import annotations

import dataclasses

import hypothesis.strategies as st
import pytest
from hypothesis import assume, given, settings

from reference import Agent, AgentConfig, policy
from reference.actions import ACTIONS, RETRY_DELAY_ACTIONS
from reference.classify import (
    BODY_PARSERS,
    CLASSIFIERS,
    PIDF_TYPE,
    Facts,
    NotifyFacts,
    Refusal,
    check_cseq_order,
    classify_response,
    classify_tick,
    classify_timer_n,
)
from reference.core import Subscription
from reference.sip import Request, make_response, parse_message
from reference.subscription import AWAITING_RESPONSE, STATES, TABLES, Action, Event, State
from tests.reference.harness import Harness


def _profile(name: str, **params: object) -> policy.Profile:
    config = AgentConfig.from_mapping({"profile": name, **params})
    return policy.Profile(config, policy.RULES[name], policy.DEFAULT_TIMING)


def _confirmed(profile: str = "rfc6665") -> tuple[Harness, Subscription]:
    h = Harness.make(profile)
    h.confirmed()
    return h, h.agent.subscriptions[1]


def _snapshot(sub: Subscription) -> tuple[object, ...]:
    return dataclasses.astuple(sub)  # deep: the dialog's fields too


def test_facts_are_frozen() -> None:
    facts = Facts(1.0, 408, "timeout")
    with pytest.raises(AttributeError):
        facts.code = 500  # type: ignore[misc]


def test_the_profile_the_classifier_reads_holds_no_random_generator() -> None:
    """Rule 1: classification cannot draw; the seeded generator lives in the core."""
    # credentials (issue 18): a lookup the classifier asks "can this realm be answered";
    # no generator, and it is read, never changed.
    assert {f.name for f in dataclasses.fields(policy.Profile)} == {
        "config", "rules", "timing", "credentials"}


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([100, 180, 200, 202, 204, 300, 302, 400, 401, 403, 404, 407, 408,
                        420, 423, 481, 489, 499, 500, 503, 599, 600, 604, 699]),
       st.sampled_from(sorted(AWAITING_RESPONSE, key=lambda s: s.value)),
       st.sampled_from(["ser", "rfc6665"]), st.integers(0, 5), st.floats(0, 200))
def test_response_classification_is_pure(status: int, state: State, profile: str,
                                         quick_restarts: int, lived: float) -> None:
    assume(state in STATES[profile])  # FETCHING is an rfc6665 state
    h, sub = _confirmed(profile)
    sub.quick_restarts = quick_restarts
    sub.started_at = h.now - lived
    sub.option_tags = ("x-a",)  # a 420 may be resent (issue 18)
    response = make_response(h.last_subscribe(), status, to_tag="srv1",
                              headers=[("Min-Expires", "900"), ("Retry-After", "5"),
                                       ("Contact", "<sip:elsewhere@lab.test>"),
                                       ("WWW-Authenticate", 'Digest realm="r", nonce="n"'),
                                       ("Proxy-Authenticate", 'Digest realm="r", nonce="n"'),
                                       ("Unsupported", "x-a")])
    before = _snapshot(sub)
    rng_state = h.agent.rng.getstate()
    first = classify_response(_profile(profile), state, sub, response, h.now)
    assert classify_response(_profile(profile), state, sub, response, h.now) == first
    assert _snapshot(sub) == before and h.agent.rng.getstate() == rng_state
    assert (state, first[0]) in TABLES[profile]


def test_481_to_a_refresh_restarts_at_once_or_is_guarded_without_a_draw() -> None:
    h, sub = _confirmed()
    response = make_response(h.last_subscribe(), 481, to_tag="srv1")
    sub.started_at, sub.quick_restarts = h.now, 0
    event, facts = classify_response(_profile("rfc6665"), State.RESUBSCRIPTION, sub, response,
                                     h.now)
    assert event is Event.R481 and facts.restart is policy.RESTART_AT_ONCE
    sub.quick_restarts = 1  # a second quick restart: the storm guard holds it back
    event, facts = classify_response(_profile("rfc6665"), State.RESUBSCRIPTION, sub, response,
                                     h.now)
    assert event is Event.R_TERMINATING and facts.restart is policy.RESTART_AT_ONCE
    assert not facts.rejected


def test_a_permanent_failure_is_rejected_unless_it_ends_a_refresh() -> None:
    h, sub = _confirmed()
    response = make_response(h.last_subscribe(), 404, to_tag="srv1")
    profile = _profile("rfc6665")
    event, facts = classify_response(profile, State.UNCONFIRMED, sub, response, h.now)
    assert event is Event.R_FAIL and facts.rejected
    event, facts = classify_response(profile, State.RESUBSCRIPTION, sub, response, h.now)
    assert event is Event.R_TERMINATING and not facts.rejected


def test_tick_and_timer_n_rules() -> None:
    h, sub = _confirmed()
    profile = _profile("rfc6665")
    assert sub.expires_at is not None
    assert classify_tick(profile, State.CONFIRMED, sub, sub.expires_at - 1)[0] is Event.TICK
    event, facts = classify_tick(profile, State.CONFIRMED, sub, sub.expires_at)
    assert event is Event.EXPIRED and facts.reason == "expired"
    event, facts = classify_tick(profile, State.UNCONFIRMED, sub, h.now)
    assert event is Event.TICK and (facts.code, facts.reason) == (408, "timeout")
    # ser knows no EXPIRED: its refresh point is the tick.
    assert classify_tick(_profile("ser"), State.CONFIRMED, sub, sub.expires_at)[0] is Event.TICK
    sub.got_2xx = False
    assert classify_timer_n(profile, State.UNCONFIRMED, sub, h.now) is None
    sub.got_2xx = True
    assert classify_timer_n(profile, State.CONFIRMED, sub, h.now) == (
        Event.TIMER_N, Facts(h.now, 408, "timer-n"))


def _notify(h: Harness, **kwargs: object) -> Request:
    message = parse_message(h.notify_bytes(**kwargs))  # type: ignore[arg-type]
    assert isinstance(message, Request)
    return message


def test_a_bad_pidf_is_answered_by_the_row_in_rfc6665_and_dropped_in_ser() -> None:
    for profile in ("rfc6665", "ser"):
        h, sub = _confirmed(profile)
        notify = _notify(h, body=b"<presence")
        event, facts = CLASSIFIERS[profile].notify(_profile(profile), sub.state, sub, notify,
                                                   ("127.0.0.1", 5070), h.now)
        assert event is Event.NOTIFY and isinstance(facts, NotifyFacts)
        assert facts.error and facts.document is None
        if profile == "rfc6665":
            assert facts.answer == Refusal(400, "Bad PIDF document", error=facts.error,
                                           counter="rx.bad_pidf")
        else:
            assert facts.answer is None


def test_notify_checks_refuse_in_order_and_a_variant_drops_one() -> None:
    h, sub = _confirmed()
    assert sub.dialog is not None and sub.dialog.remote_cseq is not None
    old = _notify(h, cseq=sub.dialog.remote_cseq - 1, event="presence;id=7")
    rfc = CLASSIFIERS["rfc6665"]
    assert rfc.refusal(sub, old) == Refusal(489, "Bad Event")  # the Event check comes first
    old = _notify(h, cseq=sub.dialog.remote_cseq - 1)
    assert rfc.refusal(sub, old) == Refusal(500, "CSeq out of order")
    lenient = dataclasses.replace(rfc, notify_checks=tuple(
        c for c in rfc.notify_checks if c is not check_cseq_order))
    assert lenient.refusal(sub, old) is None
    assert CLASSIFIERS["ser"].refusal(sub, old) is None  # ser checks nothing of this


def test_a_body_type_without_a_parser_is_refused_with_the_parsers_types() -> None:
    h, sub = _confirmed()
    refusal = CLASSIFIERS["rfc6665"].refusal(sub, _notify(h, content_type="text/plain"))
    assert refusal is not None and refusal.status == 415
    assert ("Accept", ", ".join(BODY_PARSERS)) in refusal.headers
    assert list(BODY_PARSERS) == [PIDF_TYPE]


def test_unknown_dialog_answer_per_profile() -> None:
    h, _ = _confirmed()
    notify = _notify(h)
    assert CLASSIFIERS["rfc6665"].unknown_dialog(_profile("rfc6665"), notify).reason == \
        "Subscription does not exist"
    assert CLASSIFIERS["ser"].unknown_dialog(_profile("ser"), notify).reason == \
        "Unable to handle notification"


# ---------------------------------------------------------------- actions.run, rule 2
def test_rows_that_need_the_retry_delay_draw_no_other_delay_first() -> None:
    """Rule 2b draws before any action: no such row may hold an action that draws too."""
    for table in TABLES.values():
        for row in table.values():
            if RETRY_DELAY_ACTIONS & set(row.actions):
                assert Action.START_REFRESH_RETRY not in row.actions


def test_report_failure_and_retry_share_one_draw() -> None:
    h = Harness.make("rfc6665")
    h.subscribe()
    h.respond(status=503)
    message = h.delivered[-1]
    assert message.status == "terminated" and message.retry_at is not None
    assert h.agent.subscriptions[1].timer_at == message.retry_at


def test_the_delay_is_drawn_once_per_input() -> None:
    """Two actions that both use the delay see the same value, whatever their order."""
    seen: list[float | None] = []

    def spy(action: Action) -> object:
        def function(core: object, sub: object, facts: object, delay: float | None) -> None:
            seen.append(delay)
            ACTIONS[action](core, sub, facts, delay)  # type: ignore[arg-type]
        return function

    agent = Agent(AgentConfig(profile="rfc6665"), actions={
        **ACTIONS, **{a: spy(a) for a in RETRY_DELAY_ACTIONS}})  # type: ignore[dict-item]
    h = Harness(agent.config)
    h.agent = agent
    h.pump.agent = agent
    h.subscribe()
    h.respond(status=503)
    assert len(seen) == 2 and seen[0] == seen[1] and seen[0] is not None
