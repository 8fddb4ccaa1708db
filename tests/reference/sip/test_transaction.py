"""RFC 3261 non-INVITE client/server transactions: timers, absorption, matching."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.sip.message import Request, Response, parse_message
from reference.sip.transaction import (
    ClearTimer,
    ClientTransaction,
    PassUp,
    ServerTransaction,
    SetTimer,
    Terminated,
    TimedOut,
    TimerSettings,
    Transmit,
    TxEffect,
    client_key,
    response_matches,
    server_key,
)

OUR_VIA = "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsub1;rport"


def make_request(
    method: str = "SUBSCRIBE",
    *,
    via: str = OUR_VIA,
    cseq: int = 1,
    uri: str = "sip:bob@example.org",
) -> Request:
    raw = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "Max-Forwards: 70\r\n"
        "To: <sip:bob@example.org>;tag=b1\r\n"
        "From: <sip:alice@example.org>;tag=a1\r\n"
        "Call-ID: call-1@10.0.0.1\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Contact: <sip:alice@10.0.0.1>\r\n"
        "Event: presence\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    msg = parse_message(raw.encode())
    assert isinstance(msg, Request)
    return msg


def make_response(
    status: int,
    *,
    vias: tuple[str, ...] = (OUR_VIA,),
    method: str = "SUBSCRIBE",
    reason: str = "Whatever",
) -> Response:
    via_lines = "".join(f"Via: {v}\r\n" for v in vias)
    raw = (
        f"SIP/2.0 {status} {reason}\r\n"
        f"{via_lines}"
        "To: <sip:bob@example.org>;tag=b1\r\n"
        "From: <sip:alice@example.org>;tag=a1\r\n"
        "Call-ID: call-1@10.0.0.1\r\n"
        f"CSeq: 1 {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    msg = parse_message(raw.encode())
    assert isinstance(msg, Response)
    return msg


@dataclass
class ClientDriver:
    """Simulated clock driving one client transaction: fires its timers in time order
    (ties by timer name, so E fires before F at the same instant) and delivers scripted
    responses (before timers due at the same instant)."""

    tx: ClientTransaction
    timers: dict[str, float] = field(default_factory=dict)
    sends: list[float] = field(default_factory=list)
    passed: list[tuple[float, Response]] = field(default_factory=list)
    timed_out: float | None = None
    terminated: float | None = None

    def apply(self, effects: list[TxEffect], now: float) -> None:
        for effect in effects:
            if isinstance(effect, Transmit):
                assert effect.data == self.tx.request.to_bytes()  # retransmission = same bytes
                self.sends.append(now)
            elif isinstance(effect, SetTimer):
                assert effect.at >= now
                self.timers[effect.name] = effect.at
            elif isinstance(effect, ClearTimer):
                self.timers.pop(effect.name, None)
            elif isinstance(effect, PassUp):
                self.passed.append((now, effect.response))
            elif isinstance(effect, TimedOut):
                self.timed_out = now
            else:
                assert isinstance(effect, Terminated)
                self.terminated = now

    def run(self, script: Sequence[tuple[float, Response]] = (), until: float = 1e3) -> None:
        self.apply(self.tx.start(0.0), 0.0)
        pending = sorted(script, key=lambda item: item[0])
        while self.terminated is None:
            timer = min(self.timers.items(), key=lambda kv: (kv[1], kv[0]), default=None)
            if pending and (timer is None or pending[0][0] <= timer[1]):
                at, response = pending.pop(0)
                if at > until:
                    break
                self.apply(self.tx.receive_response(response, at), at)
                continue
            if timer is None or timer[1] > until:
                break
            name, at = timer
            del self.timers[name]
            self.apply(self.tx.timer_fired(name, at), at)


def state_of(tx: ClientTransaction | ServerTransaction) -> str:
    """The state as a plain str (mypy would otherwise narrow it across assertions)."""
    return tx.state


def new_client(t: TimerSettings | None = None) -> ClientTransaction:
    return ClientTransaction(make_request(), t or TimerSettings())


# --------------------------------------------------------------------------- client timers


def test_default_retransmission_schedule_and_timeout() -> None:
    driver = ClientDriver(new_client())
    driver.run()
    expected = [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert driver.sends == pytest.approx(expected)
    assert driver.timed_out == pytest.approx(32.0)
    assert driver.terminated == pytest.approx(32.0)
    assert driver.passed == []
    assert driver.timers == {}
    assert driver.tx.state == "terminated"


def test_start_effects_exact() -> None:
    tx = new_client()
    effects = tx.start(100.0)
    assert effects == [
        Transmit(tx.request.to_bytes()),
        SetTimer("E", 100.5),
        SetTimer("F", 132.0),
    ]


def test_timeout_override_replaces_timer_f() -> None:
    driver = ClientDriver(new_client(TimerSettings(timeout=30.0)))
    driver.run()
    assert driver.sends[-1] == pytest.approx(27.5)
    assert driver.timed_out == pytest.approx(30.0)


@settings(max_examples=150, deadline=None)
@given(
    t1=st.floats(min_value=0.01, max_value=3.0),
    t2_factor=st.floats(min_value=1.0, max_value=80.0),
)
def test_retransmission_intervals_follow_min_t1_2k_t2(t1: float, t2_factor: float) -> None:
    t = TimerSettings(t1=t1, t2=t1 * t2_factor)
    driver = ClientDriver(new_client(t))
    driver.run()
    timer_f = 64 * t1
    intervals = [b - a for a, b in zip(driver.sends, driver.sends[1:], strict=False)]
    for k, interval in enumerate(intervals):
        assert interval == pytest.approx(min(t1 * 2**k, t.t2), rel=1e-9)
    assert driver.sends[-1] < timer_f
    # The retransmission that would come next is not before Timer F.
    next_interval = min(t1 * 2 ** len(intervals), t.t2)
    assert driver.sends[-1] + next_interval >= timer_f - 1e-9
    assert driver.timed_out == pytest.approx(timer_f)


def test_equal_t1_t2_never_sends_at_timer_f() -> None:
    # With T2 == T1, Timer E comes due exactly at 64*T1 together with Timer F; the driver fires
    # E first: the transaction must time out rather than send once more.
    driver = ClientDriver(new_client(TimerSettings(t1=0.5, t2=0.5)))
    driver.run()
    assert driver.sends[-1] == pytest.approx(31.5)
    assert len(driver.sends) == 64
    assert driver.timed_out == pytest.approx(32.0)


def test_provisional_switches_to_every_t2() -> None:
    trying = make_response(100, reason="Trying")
    driver = ClientDriver(new_client())
    driver.run([(0.7, trying)])
    # Timer E armed in Trying still fires at 1.5; from then on every T2 = 4 s.
    assert driver.sends[:5] == pytest.approx([0.0, 0.5, 1.5, 5.5, 9.5])
    intervals = [b - a for a, b in zip(driver.sends[2:], driver.sends[3:], strict=False)]
    assert all(i == pytest.approx(4.0) for i in intervals)
    assert driver.sends[-1] == pytest.approx(29.5)
    assert [r.status for _, r in driver.passed] == [100]
    assert driver.timed_out == pytest.approx(32.0)  # Timer F still applies in Proceeding


def test_provisional_before_first_retransmission() -> None:
    driver = ClientDriver(new_client())
    driver.run([(0.2, make_response(180, reason="Ringing"))])
    assert driver.sends[:4] == pytest.approx([0.0, 0.5, 4.5, 8.5])


def test_final_response_passes_up_once_and_timer_k_absorbs_duplicates() -> None:
    ok = make_response(200, reason="OK")
    driver = ClientDriver(new_client())
    driver.run([(1.0, ok), (2.0, ok), (5.9, ok)])
    assert driver.sends == pytest.approx([0.0, 0.5])
    assert [(at, r.status) for at, r in driver.passed] == [(1.0, 200)]
    assert driver.timed_out is None
    assert driver.terminated == pytest.approx(6.0)  # Timer K = T4 = 5 s after the 200


def test_final_response_effects_exact() -> None:
    tx = new_client()
    tx.start(0.0)
    ok = make_response(202, reason="Accepted")
    assert tx.receive_response(ok, 3.0) == [
        ClearTimer("E"),
        ClearTimer("F"),
        PassUp(ok),
        SetTimer("K", 8.0),
    ]
    assert tx.state == "completed"
    assert tx.receive_response(ok, 3.1) == []
    assert tx.timer_fired("E", 3.5) == []  # stale timer
    assert tx.timer_fired("F", 32.0) == []
    assert tx.timer_fired("K", 8.0) == [Terminated()]
    assert state_of(tx) == "terminated"
    assert tx.receive_response(ok, 9.0) == []


def test_final_after_provisional_and_error_codes() -> None:
    driver = ClientDriver(new_client())
    driver.run([(0.1, make_response(100)), (2.0, make_response(489, reason="Bad Event"))])
    assert [r.status for _, r in driver.passed] == [100, 489]
    assert driver.sends == pytest.approx([0.0, 0.5])
    assert driver.terminated == pytest.approx(7.0)


def test_zero_t4_terminates_with_final() -> None:
    tx = new_client(TimerSettings(t4=0.0))
    tx.start(0.0)
    effects = tx.receive_response(make_response(200), 1.0)
    assert effects[-1] == Terminated()
    assert tx.state == "terminated"


# --------------------------------------------------------------------------- client matching


def test_client_key_of_request_and_response() -> None:
    assert client_key(make_request()) == ("z9hG4bKsub1", "SUBSCRIBE")
    assert client_key(make_response(200)) == ("z9hG4bKsub1", "SUBSCRIBE")
    assert client_key(make_response(200, method="NOTIFY")) == ("z9hG4bKsub1", "NOTIFY")
    no_branch = make_response(200, vias=("SIP/2.0/UDP 10.0.0.1:5060",))
    assert client_key(no_branch) is None


@pytest.mark.parametrize(
    ("vias", "method", "matches"),
    [
        ((OUR_VIA,), "SUBSCRIBE", True),
        (
            ("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsub1;rport=5060;received=10.0.0.1",),
            "SUBSCRIBE",
            True,
        ),
        (("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKsub1",), "SUBSCRIBE", True),  # 5060 implied
        (("SIP/2.0/udp 10.0.0.1:5060;branch=z9hG4bKsub1",), "SUBSCRIBE", True),
        (("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKother",), "SUBSCRIBE", False),  # branch
        ((OUR_VIA,), "NOTIFY", False),  # CSeq method
        (("SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKsub1",), "SUBSCRIBE", False),  # host
        (("SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKsub1",), "SUBSCRIBE", False),  # port
        ((OUR_VIA, "SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKx"), "SUBSCRIBE", False),  # 2 Vias
    ],
)
def test_response_matching(vias: tuple[str, ...], method: str, matches: bool) -> None:
    tx = new_client()
    tx.start(0.0)
    response = make_response(200, vias=vias, method=method)
    assert response_matches(tx, response) is matches
    effects = tx.receive_response(response, 1.0)
    # A non-matching response is not applied: nothing passes up and retransmissions go on.
    assert (effects != []) is matches
    assert tx.state == ("completed" if matches else "trying")


def test_non_matching_response_keeps_retransmitting_then_real_one_accepted() -> None:
    altered = make_response(200, vias=("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKalt",))
    driver = ClientDriver(new_client())
    driver.run([(0.2, altered), (2.0, make_response(200))])
    assert driver.sends == pytest.approx([0.0, 0.5, 1.5])
    assert len(driver.passed) == 1


def test_client_transaction_needs_a_branch() -> None:
    with pytest.raises(ValueError, match="branch"):
        ClientTransaction(make_request(via="SIP/2.0/UDP 10.0.0.1:5060"), TimerSettings())


@pytest.mark.parametrize(
    "kwargs",
    [{"t1": 0.0}, {"t1": 1.0, "t2": 0.5}, {"t4": -1.0}, {"timeout": 0.0}],
)
def test_bad_timer_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="bad"):
        TimerSettings(**kwargs)


# --------------------------------------------------------------------------- server

PEER_VIA = "SIP/2.0/UDP 192.0.2.9:5070;branch=z9hG4bKn1"


def make_notify(via: str = PEER_VIA, cseq: int = 2) -> Request:
    return make_request("NOTIFY", via=via, cseq=cseq, uri="sip:alice@10.0.0.1")


def reply_to(request: Request, status: int, reason: str) -> Response:
    via_lines = "".join(f"Via: {v}\r\n" for v in request.headers.get_all("Via"))
    raw = (
        f"SIP/2.0 {status} {reason}\r\n{via_lines}"
        "To: <sip:bob@example.org>;tag=b1\r\n"
        "From: <sip:alice@example.org>;tag=a1\r\n"
        "Call-ID: call-1@10.0.0.1\r\n"
        f"CSeq: {request.cseq.number} {request.method}\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    msg = parse_message(raw.encode())
    assert isinstance(msg, Response)
    return msg


def test_server_absorbs_retransmission_in_trying() -> None:
    notify = make_notify()
    tx = ServerTransaction(notify, TimerSettings())
    assert tx.receive_request(notify, 0.1) == []
    assert tx.state == "trying"


def test_server_final_response_resent_unchanged_until_timer_j() -> None:
    notify = make_notify()
    tx = ServerTransaction(notify, TimerSettings())
    ok = reply_to(notify, 200, "OK")
    data = ok.to_bytes()
    assert tx.send_response(ok, 1.0) == [Transmit(data), SetTimer("J", 33.0)]
    assert tx.state == "completed"
    assert tx.receive_request(notify, 20.0) == [Transmit(data)]
    # A second final response from the TU is discarded in Completed.
    assert tx.send_response(reply_to(notify, 500, "Server Error"), 21.0) == []
    assert tx.receive_request(notify, 22.0) == [Transmit(data)]
    assert tx.timer_fired("J", 33.0) == [Terminated()]
    assert state_of(tx) == "terminated"
    assert tx.receive_request(notify, 40.0) == []


def test_server_provisional_then_final() -> None:
    notify = make_notify()
    tx = ServerTransaction(notify, TimerSettings(t1=0.1))
    trying = reply_to(notify, 100, "Trying")
    assert tx.send_response(trying, 0.0) == [Transmit(trying.to_bytes())]
    assert tx.state == "proceeding"
    assert tx.receive_request(notify, 0.5) == [Transmit(trying.to_bytes())]
    ok = reply_to(notify, 200, "OK")
    assert tx.send_response(ok, 1.0) == [Transmit(ok.to_bytes()), SetTimer("J", 7.4)]
    assert tx.receive_request(notify, 2.0) == [Transmit(ok.to_bytes())]
    assert tx.timer_fired("E", 3.0) == []  # not a server timer


def test_server_reliable_transport_terminates_at_once() -> None:
    notify = make_notify()
    tx = ServerTransaction(notify, TimerSettings(), reliable=True)
    ok = reply_to(notify, 200, "OK")
    assert tx.send_response(ok, 1.0) == [Transmit(ok.to_bytes()), Terminated()]
    assert tx.state == "terminated"


@pytest.mark.parametrize("reliable", [False, True])
def test_client_begin_is_start_without_effects(reliable: bool) -> None:
    """`begin` gives start's Timer E and F deadlines (E None on a reliable transport) and
    leaves the transaction as `start` does; `data` is what start transmits."""
    by_effects = ClientTransaction(make_request(), TimerSettings(), reliable=reliable)
    lean = ClientTransaction(make_request(), TimerSettings(), reliable=reliable)
    effects = by_effects.start(2.0)
    timer_e, timer_f = lean.begin(2.0)
    assert effects[0] == Transmit(lean.data)
    assert effects[1:] == [SetTimer("E", t) for t in [timer_e] if t is not None] \
        + [SetTimer("F", timer_f)]
    # The same state after: the same answers to the same timers.
    for name, at in [("E", 2.5), ("E", 3.5), ("F", 34.0)]:
        assert lean.timer_fired(name, at) == by_effects.timer_fired(name, at)


@pytest.mark.parametrize("provisional", [False, True])
@pytest.mark.parametrize(("reliable", "t4"), [(False, 5.0), (True, 5.0), (False, 0.0)])
def test_client_complete_is_final_receive_response_without_effects(
        provisional: bool, reliable: bool, t4: float) -> None:
    """`complete` leaves the transaction as a final `receive_response` does (from Trying, or
    Proceeding); its Timer K deadline is the SetTimer's, None where the effects end it."""
    by_effects, lean = (ClientTransaction(make_request(), TimerSettings(t4=t4),
                                          reliable=reliable) for _ in range(2))
    for tx in (by_effects, lean):
        tx.start(0.0)
        if provisional:
            tx.receive_response(make_response(status=180), 0.2)
    final = make_response(status=200)
    effects = by_effects.receive_response(final, 1.0)
    timer_k = lean.complete(1.0)
    assert effects[:3] == [ClearTimer("E"), ClearTimer("F"), PassUp(final)]
    assert effects[3:] == ([Terminated()] if timer_k is None else [SetTimer("K", timer_k)])
    assert state_of(lean) == state_of(by_effects)
    assert lean.timer_fired("K", 7.0) == by_effects.timer_fired("K", 7.0)
    with pytest.raises(ValueError, match="takes no final response"):
        lean.complete(8.0)


@pytest.mark.parametrize("status", [100, 180, 200, 481])
@pytest.mark.parametrize("reliable", [False, True])
def test_server_answer_is_send_response_bytes_without_effects(status: int,
                                                               reliable: bool) -> None:
    """`answer` changes the transaction as `send_response_bytes` does; its Timer J deadline
    is the SetTimer's, and the state tells a provisional answer from a reliable final one."""
    notify = make_notify()
    data = reply_to(notify, status, "Whatever").to_bytes()
    by_effects = ServerTransaction(notify, TimerSettings(), reliable=reliable)
    lean = ServerTransaction(notify, TimerSettings(), reliable=reliable)
    effects = by_effects.send_response_bytes(data, status, 1.0)
    timer_j = lean.answer(data, status, 1.0)
    assert effects[0] == Transmit(data)
    assert timer_j == (effects[1].at if isinstance(effects[-1], SetTimer) else None)
    assert (lean.state, lean.last_response, lean.request) \
        == (by_effects.state, by_effects.last_response, by_effects.request)
    assert lean.timer_j_fired(40.0) == (by_effects.timer_fired("J", 40.0) == [Terminated()])
    assert lean.state == by_effects.state
    assert lean.timer_j_fired(41.0) is False  # a stale Timer J


def test_server_answer_refused_once_completed() -> None:
    notify = make_notify()
    tx = ServerTransaction(notify, TimerSettings())
    tx.answer(b"first", 200, 0.0)
    with pytest.raises(ValueError, match="completed"):
        tx.answer(b"second", 200, 1.0)
    assert tx.last_response == b"first"


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=31.9), min_size=1, max_size=20))
def test_server_every_retransmission_gets_identical_final(times: list[float]) -> None:
    notify = make_notify()
    tx = ServerTransaction(notify, TimerSettings())
    ok = reply_to(notify, 200, "OK")
    tx.send_response(ok, 0.0)
    for at in sorted(times):
        assert tx.receive_request(notify, at) == [Transmit(ok.to_bytes())]


def test_server_key_with_magic_cookie() -> None:
    notify = make_notify()
    key = server_key(notify)
    assert key == ("rfc3261", "z9hG4bKn1", "192.0.2.9:5070", "NOTIFY")
    assert server_key(make_notify()) == key  # retransmission
    assert server_key(make_notify(via="SIP/2.0/UDP 192.0.2.9:5070;branch=z9hG4bKn2")) != key
    assert server_key(make_notify(via="SIP/2.0/UDP 192.0.2.8:5070;branch=z9hG4bKn1")) != key
    other_method = make_request("SUBSCRIBE", via=PEER_VIA)
    assert server_key(other_method) != key
    # ACK belongs to the INVITE transaction; host case and an implied port do not matter.
    invite = make_request("INVITE", via="SIP/2.0/UDP Host.Example;branch=z9hG4bKi")
    ack = make_request("ACK", via="SIP/2.0/UDP host.example:5060;branch=z9hG4bKi")
    assert server_key(invite) == server_key(ack)


def test_server_key_rfc2543_fallback() -> None:
    legacy_via = "SIP/2.0/UDP 192.0.2.9:5070;branch=1234"
    notify = make_notify(via=legacy_via)
    key = server_key(notify)
    assert key[0] == "rfc2543"
    assert server_key(make_notify(via=legacy_via)) == key  # byte copy = retransmission
    assert server_key(make_notify(via=legacy_via, cseq=3)) != key  # next NOTIFY
    no_branch = make_notify(via="SIP/2.0/UDP 192.0.2.9:5070")
    assert server_key(no_branch)[0] == "rfc2543"
    assert server_key(no_branch) != key
    # A transaction found by the fallback key behaves the same way.
    tx = ServerTransaction(notify, TimerSettings())
    assert tx.key == key
