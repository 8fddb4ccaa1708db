"""`ser` profile: one test per row of presence_b2b.md §3.5 (state x event).

Each test drives a real agent into the state through real messages, applies the event as a
real input (a response built with make_response, a hand-written NOTIFY, an internal
unsubscribe, or the subscription timer coming due), and checks what can be observed: the
SUBSCRIBE sent (if any), the answer to the NOTIFY, status messages, the subscription timer,
and the state in `dump()`. The expectations below are written from the spec text, not derived
from `SER_TABLE`; a last test checks that the table and this list cover the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from reference.sip import Request
from reference.subscription import SER_EVENTS, SER_TABLE, State

from .harness import Harness, sub_timer

REDIRECT = "sip:bob@c.lab.test:5080"
GONE = "gone"


@dataclass(frozen=True)
class Expect:
    next: str                 # state name in dump(), or GONE
    send: str | None = None   # initial | redirect | refresh | unsubscribe
    reply: int | None = None  # answer to the NOTIFY
    deliver: bool = False
    timer: str | None = None  # subscription timer kind afterwards (None = none)
    delay: float | None = None  # timer due this long after the event (None = not checked)


N, NT = "notify", "notify_terminated"
R1, R2, R3, R3N, R4 = "1xx", "2xx", "3xx", "3xx_no_contact", "4xx"
D, T = "destroy", "tick"
RESPONSES = (R1, R2, R3, R3N, R4)

UNC, UND, CONF, WAIT = "unconfirmed", "unconfirmed_destroy", "confirmed", "waiting"
RESUB, RESD, WFT, PRED = ("resubscription", "resubscription_destroy",
                          "waiting_for_termination", "predestroyed")


def _same(next_state: str, timer: str, events: tuple[str, ...], **kw: object
          ) -> dict[str, Expect]:
    return {e: Expect(next_state, timer=timer, **kw) for e in events}  # type: ignore[arg-type]


EXPECTED: dict[str, dict[str, Expect]] = {
    UNC: {
        N: Expect(UNC, reply=200, deliver=True, timer="FAILOVER"),
        NT: Expect(UNC, reply=200, deliver=True, timer="FAILOVER"),
        R1: Expect(UNC, timer="FAILOVER"),
        R2: Expect(CONF, timer="REFRESH", delay=570),
        R3: Expect(UNC, send="redirect", timer="FAILOVER", delay=60),
        R3N: Expect(WAIT, timer="RETRY", delay=120),
        R4: Expect(WAIT, timer="RETRY", delay=120),
        D: Expect(UND, timer="FAILOVER"),
        T: Expect(WAIT, timer="RETRY", delay=120),
    },
    UND: {
        N: Expect(UND, reply=200, timer="FAILOVER"),
        NT: Expect(UND, reply=200, timer="FAILOVER"),
        R1: Expect(UND, timer="FAILOVER"),
        D: Expect(UND, timer="FAILOVER"),
        R2: Expect(PRED, send="unsubscribe", timer="FAILOVER", delay=60),
        **_same(GONE, "", (R3, R3N, R4, T)),
    },
    CONF: {
        N: Expect(CONF, reply=200, deliver=True, timer="REFRESH"),
        # B2: a terminated NOTIFY is only reported; the refresh timer keeps running.
        NT: Expect(CONF, reply=200, deliver=True, timer="REFRESH"),
        **_same(CONF, "REFRESH", RESPONSES),
        D: Expect(PRED, send="unsubscribe", timer="FAILOVER", delay=60),
        T: Expect(RESUB, send="refresh", timer="FAILOVER", delay=60),
    },
    RESUB: {
        N: Expect(RESUB, reply=200, deliver=True, timer="FAILOVER"),
        NT: Expect(RESUB, reply=200, deliver=True, timer="FAILOVER"),
        R1: Expect(RESUB, timer="FAILOVER"),
        R2: Expect(CONF, timer="REFRESH", delay=570),
        R3: Expect(UNC, send="redirect", timer="FAILOVER", delay=60),
        R3N: Expect(WAIT, timer="RETRY", delay=120),
        R4: Expect(WAIT, timer="RETRY", delay=120),
        T: Expect(WAIT, timer="RETRY", delay=120),
        D: Expect(RESD, timer="FAILOVER"),
    },
    RESD: {
        N: Expect(RESD, reply=200, timer="FAILOVER"),
        NT: Expect(RESD, reply=200, timer="FAILOVER"),
        R1: Expect(RESD, timer="FAILOVER"),
        D: Expect(RESD, timer="FAILOVER"),
        R2: Expect(PRED, send="unsubscribe", timer="FAILOVER", delay=60),
        **_same(GONE, "", (R3, R3N, R4, T)),
    },
    WAIT: {
        **_same(WAIT, "RETRY", RESPONSES),
        # Spec A6: no dialog exists, so the NOTIFY is unknown and answered 481 (script).
        N: Expect(WAIT, reply=481, timer="RETRY"),
        NT: Expect(WAIT, reply=481, timer="RETRY"),
        D: Expect(GONE),
        T: Expect(UNC, send="initial", timer="FAILOVER", delay=60),
    },
    PRED: {
        N: Expect(PRED, reply=200, timer="FAILOVER"),
        NT: Expect(GONE, reply=200),
        R1: Expect(PRED, timer="FAILOVER"),
        D: Expect(PRED, timer="FAILOVER"),
        R2: Expect(WFT, timer="TERMWAIT", delay=30),
        **_same(GONE, "", (R3, R3N, R4, T)),
    },
    WFT: {
        N: Expect(WFT, reply=200, timer="TERMWAIT"),
        NT: Expect(GONE, reply=200),
        T: Expect(GONE),
        **_same(WFT, "TERMWAIT", RESPONSES),
        D: Expect(WFT, timer="TERMWAIT"),
    },
    # 8 destroyed: the object is gone; a NOTIFY in its dialog gets the script's 481.
    "destroyed": {
        **_same(GONE, "", (N, NT), reply=481),
        **_same(GONE, "", (*RESPONSES, D, T)),
    },
}


# ------------------------------------------------------------------ reaching each state
def _h() -> Harness:
    # A transaction timeout beyond FAILOVER, so the FAILOVER tick itself is reachable.
    return Harness.make("ser", transaction_timeout=90)


def _fire_sub_timer(h: Harness, handle: int = 1) -> None:
    h.advance(h.timers[sub_timer(handle)])


def reach(state: str) -> Harness:
    h = _h()
    h.subscribe()
    h.advance_by(1)
    if state == UNC:
        return h
    if state == UND:
        h.unsubscribe(1)
        return h
    if state == WAIT:
        h.respond(status=404)
        return h
    h.respond(expires=600)
    h.notify(state="active;expires=600")
    if state == CONF:
        return h
    if state in (RESUB, RESD):
        _fire_sub_timer(h)
        if state == RESD:
            h.unsubscribe(1)
        return h
    h.unsubscribe(1)
    if state == PRED:
        return h
    h.respond()
    if state == WFT:
        return h
    assert state == "destroyed"
    h.notify(state="terminated;reason=timeout")
    return h


# ------------------------------------------------------------------ applying each event
def outstanding(h: Harness) -> Request:
    return h.last_subscribe()


def apply(h: Harness, event: str) -> None:
    if event == N:
        h.feed(h.notify_bytes(state="active;expires=600"))
    elif event == NT:
        h.feed(h.notify_bytes(state="terminated;reason=rejected"))
    elif event == R1:
        h.respond(status=180)
    elif event == R2:
        h.respond(status=200, expires=600)
    elif event == R3:
        h.respond(status=302, headers=[("Contact", f"<{REDIRECT}>")])
    elif event == R3N:
        h.respond(status=302)
    elif event == R4:
        h.respond(status=486)
    elif event == D:
        h.unsubscribe(1)
    elif event == T:
        if sub_timer(1) in h.timers:
            _fire_sub_timer(h)
        else:
            # A freed object has no timer left to tick: waking the agent changes nothing.
            h.agent.handle_timers(h.now)
            h.absorb()
    else:  # pragma: no cover
        raise AssertionError(event)


CASES = [(state, event) for state, events in EXPECTED.items() for event in events]


@pytest.mark.parametrize(("state", "event"), CASES, ids=[f"{s}-{e}" for s, e in CASES])
def test_ser_transition(state: str, event: str) -> None:
    expect = EXPECTED[state][event]
    h = reach(state)
    assert h.state() == (None if state == "destroyed" else state)
    before_subs = h.subscribes()
    before_sent = len(h.sent)
    before_delivered = len(h.delivered)
    h.advance_by(0.5)
    t_event = h.now
    if event == T and sub_timer(1) in h.timers:
        t_event = h.timers[sub_timer(1)]
    apply(h, event)

    # --- state
    assert h.state() == (None if expect.next == GONE else expect.next)

    # --- SUBSCRIBE sent because of the event
    new_subs = [s.message for s in h.requests()[len(before_subs):]]
    if expect.send is None:
        assert new_subs == []
    else:
        assert len(new_subs) == 1
        sub = new_subs[0]
        assert isinstance(sub, Request)
        check_send(expect.send, sub, before_subs)

    # --- answer to the NOTIFY
    answers = [s.message.status for s in h.sent[before_sent:]
               if not isinstance(s.message, Request)]
    assert answers == ([] if expect.reply is None else [expect.reply])

    # --- status messages (never any in ser except for a delivered NOTIFY)
    new = h.delivered[before_delivered:]
    assert len(new) == (1 if expect.deliver else 0)
    if expect.deliver:
        assert new[0].status == ("terminated" if event == NT else "active")

    # --- the subscription timer
    if expect.next == GONE:
        assert sub_timer(1) not in h.timers
        assert 1 not in h.agent.subscriptions
    else:
        row = h.row()
        assert row["timer"] == expect.timer
        assert sub_timer(1) in h.timers
        if expect.delay is not None:
            assert h.timers[sub_timer(1)] == pytest.approx(t_event + expect.delay)


def check_send(kind: str, sub: Request, before: list[Request]) -> None:
    previous = before[-1]
    if kind in ("initial", "redirect"):
        assert sub.to.tag is None
        assert sub.cseq.number == 1
        assert sub.call_id not in {r.call_id for r in before}
        assert sub.from_.tag not in {r.from_.tag for r in before}
        assert sub.expires == 3600
        if kind == "redirect":
            assert sub.uri == REDIRECT
            assert sub.to.uri == REDIRECT  # B6: To replaced by the Contact
            assert sub.headers.get("P-Hint") == "trying new subscription after 3xx"
        else:
            assert sub.uri == "sip:bob@lab.test"
            assert sub.headers.get("P-Hint") is None
    else:
        assert sub.call_id == previous.call_id
        assert sub.to.tag == "srv1"
        assert sub.cseq.number == previous.cseq.number + 1
        assert sub.expires == (3600 if kind == "refresh" else 0)


def test_expectations_cover_the_ser_table() -> None:
    """Every (state, event) row of SER_TABLE has a test above, and nothing more."""
    names = {s.name.lower(): s for s in State}
    tested = {(names[s], e) for s, events in EXPECTED.items() for e in events}
    table_rows = {(s, e.value) for (s, e) in SER_TABLE}
    assert tested == table_rows
    assert {e.value for e in SER_EVENTS} == {N, NT, *RESPONSES, D, T}
    # The table is total over the profile's states and events.
    for state in State:
        if state in (State.TERMINATED, State.FETCHING):  # rfc6665-only states
            continue
        for event in SER_EVENTS:
            assert (state, event) in SER_TABLE



