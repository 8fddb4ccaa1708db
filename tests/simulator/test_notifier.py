"""Notifier model: RFC 6665 answers, NOTIFY transactions, rejections, overload, outages."""

from __future__ import annotations

import itertools
import math
from typing import Any

import simpy
from hypothesis import given
from hypothesis import strategies as st

from reference.sip import Request, Response, make_response, parse_message
from simulator.network import Latency, LinkSpec, Network
from simulator.notifier import Notifier, epoch_start_bound
from simulator.workload import NotifierSpec, RejectRule

UA = ("10.0.0.1", 5060)


class Peer:
    """A scripted subscriber: records what it receives, answers NOTIFY unless told not to."""

    def __init__(self, spec: NotifierSpec, answer_notify: bool = True) -> None:
        self.env = simpy.Environment()
        self.net = Network(self.env, 1, LinkSpec(latency=Latency("constant", value=0.01)))
        self.got: list[tuple[float, Request | Response]] = []
        self.answer_notify = answer_notify
        self.net.add_node("ua", UA, self._receive)
        self.notifier = Notifier(self.env, self.net, "ps", ("10.0.0.2", 5060), spec, 1)
        self._branch = 0

    def _receive(self, data: bytes, source: tuple[str, int]) -> None:
        message = parse_message(data)
        self.got.append((self.env.now, message))
        if isinstance(message, Request) and self.answer_notify:
            self.net.send("ua", source, make_response(message, 200).to_bytes())

    def subscribe(self, expires: int | None = 3600, to_tag: str | None = None, cseq: int = 1,
                  call_id: str = "c1", record: str = "sip:bob@lab.test") -> None:  # fmt: skip
        self._branch += 1
        to = f"<{record}>" + (f";tag={to_tag}" if to_tag else "")
        lines = [
            f"SUBSCRIBE {record} SIP/2.0",
            f"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{self._branch}",
            "Max-Forwards: 70",
            "From: <sip:alice@b2b.test>;tag=ft",
            f"To: {to}",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} SUBSCRIBE",
            "Contact: <sip:alice@10.0.0.1:5060>",
            "Event: presence",
        ]
        if expires is not None:
            lines.append(f"Expires: {expires}")
        data = ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()
        self.net.send("ua", ("lab.test", 5060), data)

    def run(self, until: float) -> None:
        self.env.run(until=until)

    def responses(self) -> list[Response]:
        return [m for _, m in self.got if isinstance(m, Response)]

    def notifies(self) -> list[Request]:
        return [m for _, m in self.got if isinstance(m, Request)]


def test_grants_min_of_requested_and_max_and_notifies_with_remaining() -> None:
    peer = Peer(NotifierSpec(max_expires=600))
    peer.subscribe(3600)
    peer.run(100)
    (ok,) = peer.responses()
    assert ok.status == 200 and ok.expires == 600 and ok.to.tag
    (notify,) = peer.notifies()
    assert notify.headers.get("Subscription-State") == "active;expires=600"
    assert notify.from_.tag == ok.to.tag and notify.to.tag == "ft"
    assert notify.content_type is not None and notify.content_type.mime == "application/pidf+xml"
    assert b"<presence" in notify.body
    peer.notifier.change_presence("sip:bob@lab.test")
    peer.run(200)
    second = peer.notifies()[1]
    assert second.cseq.number == notify.cseq.number + 1
    assert second.headers.get("Subscription-State") == "active;expires=500"


def test_423_below_min_expires_and_unknown_dialog_481() -> None:
    peer = Peer(NotifierSpec(min_expires=60))
    peer.subscribe(30)
    peer.subscribe(3600, to_tag="nosuch", call_id="c2", cseq=2)
    peer.run(10)
    statuses = sorted((r.status, r.min_expires) for r in peer.responses())
    assert statuses == [(423, 60), (481, None)]


def test_refresh_then_unsubscribe_gets_terminated_timeout() -> None:
    peer = Peer(NotifierSpec())
    peer.subscribe(3600)
    peer.run(10)
    tag = peer.responses()[0].to.tag
    peer.subscribe(3600, to_tag=tag, cseq=2)
    peer.run(20)
    peer.subscribe(0, to_tag=tag, cseq=3)
    peer.run(30)
    assert [r.status for r in peer.responses()] == [200, 200, 200]
    states = [n.headers.get("Subscription-State") for n in peer.notifies()]
    assert states[-1] == "terminated;reason=timeout"
    assert states[:2] == ["active;expires=3600", "active;expires=3600"]
    assert peer.notifier.dialog_count == 0


def test_a_refresh_with_our_tag_but_another_call_id_gets_481() -> None:
    # Dialogs are keyed by the notifier's own To tag; the Call-ID must match it as well.
    peer = Peer(NotifierSpec())
    peer.subscribe(3600)
    peer.run(10)
    tag = peer.responses()[0].to.tag
    peer.subscribe(3600, to_tag=tag, cseq=2, call_id="other")
    peer.run(20)
    assert [r.status for r in peer.responses()] == [200, 481]
    assert peer.notifier.dialog_count == 1
    peer.subscribe(3600, to_tag=tag, cseq=2)
    peer.run(30)
    assert [r.status for r in peer.responses()] == [200, 481, 200]


def test_expiry_sends_terminated_timeout() -> None:
    peer = Peer(NotifierSpec(max_expires=120))
    peer.subscribe(120)
    peer.run(200)
    states = [n.headers.get("Subscription-State") for n in peer.notifies()]
    assert states == ["active;expires=120", "terminated;reason=timeout"]
    assert 120 <= peer.got[-1][0] < 121


def test_unanswered_notify_is_retransmitted_then_dialog_dropped() -> None:
    peer = Peer(NotifierSpec(), answer_notify=False)
    peer.subscribe(3600)
    peer.run(100)
    times = [t for t, m in peer.got if isinstance(m, Request)]
    # Timer E doubles from T1 = 0.5 s up to T2 = 4 s until Timer F (32 s).
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(times)]
    assert gaps[:4] == [0.5, 1.0, 2.0, 4.0]
    assert all(g == 4.0 for g in gaps[4:])
    assert times[-1] < 32.1
    assert peer.notifier.dialog_count == 0  # RFC 6665: a timed-out NOTIFY ends it


def test_rejection_rule_with_retry_after() -> None:
    rule = RejectRule(code=403, record="sip:bob@*", retry_after=99)
    peer = Peer(NotifierSpec(reject=(rule,)))
    peer.subscribe(3600)
    peer.subscribe(3600, call_id="c2", record="sip:carol@lab.test")
    peer.run(10)
    assert sorted((r.status, r.retry_after) for r in peer.responses()) == [(200, None),
                                                                          (403, 99)]  # fmt: skip


def test_overload_answers_503_with_retry_after() -> None:
    peer = Peer(NotifierSpec(service_time=1.0, queue_limit=2, overload_retry_after=17))
    for i in range(6):
        peer.subscribe(3600, call_id=f"c{i}")
    peer.run(20)
    statuses = [(r.status, r.retry_after) for r in peer.responses()]
    assert statuses.count((503, 17)) == 3
    assert sum(1 for s, _ in statuses if s == 200) == 3


def test_outage_silent_then_state_lost_or_kept() -> None:
    for state_lost, expected in ((True, 481), (False, 200)):
        peer = Peer(NotifierSpec())
        peer.subscribe(3600)
        peer.run(10)
        tag = peer.responses()[0].to.tag
        peer.notifier.go_down()
        peer.subscribe(3600, to_tag=tag, cseq=2)
        peer.run(20)
        assert len(peer.responses()) == 1  # silent while down
        peer.notifier.come_up(state_lost)
        peer.subscribe(3600, to_tag=tag, cseq=3)
        peer.run(30)
        assert peer.responses()[-1].status == expected


def test_terminate_on_demand_with_reason() -> None:
    peer = Peer(NotifierSpec())
    peer.subscribe(3600)
    peer.run(10)
    assert peer.notifier.terminate("deactivated", retry_after=5) == 1
    peer.run(20)
    last: Any = peer.notifies()[-1]
    assert last.headers.get("Subscription-State") == "terminated;reason=deactivated;retry-after=5"


# -- the model's own SIP handling (sipscan fast path, full-parser path, NOTIFY transactions) --


class RawPeer(Peer):
    """A Peer whose answers to NOTIFY are scripted: a list of status codes per NOTIFY."""

    def __init__(self, spec: NotifierSpec, answers: list[int], via_host: str | None = None,
                 duplicate_after: float | None = None) -> None:  # fmt: skip
        super().__init__(spec, answer_notify=False)
        self.answers = answers
        self.via_host = via_host
        self.duplicate_after = duplicate_after
        self.net._nodes["ua"].receiver = self._answer

    def _answer(self, data: bytes, source: tuple[str, int]) -> None:
        message = parse_message(data)
        self.got.append((self.env.now, message))
        if not isinstance(message, Request):
            return
        for status in self.answers:
            response = make_response(message, status)
            if self.via_host is not None:
                top = f"SIP/2.0/UDP {self.via_host};branch={message.top_via.branch}"  # type: ignore[union-attr]
                response = make_response(message, status, top_via=top)
            self.net.send("ua", source, response.to_bytes())
            if self.duplicate_after is not None:
                self._send_later(self.duplicate_after, response.to_bytes(), source)

    def _send_later(self, delay: float, raw: bytes, destination: tuple[str, int]) -> None:
        def send(_event: object) -> None:
            self.net.send("ua", destination, raw)

        self.env.timeout(delay).callbacks.append(send)


def _raw_subscribe(branch: str = "z9hG4bKraw", from_value: str = "<sip:alice@b2b.test>;tag=ft",
                   cseq: str = "1 SUBSCRIBE") -> bytes:  # fmt: skip
    return (
        "SUBSCRIBE sip:bob@lab.test SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.1:5060;branch={branch}\r\nMax-Forwards: 70\r\n"
        f"From: {from_value}\r\nTo: <sip:bob@lab.test>\r\nCall-ID: raw1\r\nCSeq: {cseq}\r\n"
        "Contact: <sip:alice@10.0.0.1:5060>\r\nEvent: presence\r\nExpires: 600\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def test_a_retransmitted_subscribe_gets_the_same_answer_bytes() -> None:
    peer = Peer(NotifierSpec())
    raw: list[bytes] = []
    peer.net._nodes["ua"].receiver = lambda data, _src: raw.append(data)
    data = _raw_subscribe()
    peer.net.send("ua", ("lab.test", 5060), data)
    peer.run(1)
    peer.net.send("ua", ("lab.test", 5060), data)  # a byte copy, as a client retransmits
    peer.run(2)
    answers = [d for d in raw if d.startswith(b"SIP/2.0")]
    assert len(answers) == 2 and answers[0] == answers[1]
    assert peer.notifier.counters["subscribe_retransmissions"] == 1
    assert peer.notifier.dialog_count == 1


def test_other_shapes_take_the_full_parser_and_bad_values_are_rejected() -> None:
    peer = Peer(NotifierSpec())
    display = _raw_subscribe(from_value='"Alice" <sip:a@b.test>;tag=1')
    peer.net.send("ua", ("lab.test", 5060), display)
    peer.net.send("ua", ("lab.test", 5060), _raw_subscribe("z9hG4bK2", cseq="x SUBSCRIBE"))
    peer.net.send("ua", ("lab.test", 5060), _raw_subscribe("z9hG4bK3", from_value="<nourl>;tag=1"))
    peer.net.send("ua", ("lab.test", 5060), b"NOTIFY sip:x@y SIP/2.0\r\n\r\n")
    peer.net.send("ua", ("lab.test", 5060), b"garbage")
    peer.run(0.4)
    statuses = sorted(r.status for r in peer.responses())
    assert statuses == [200, 400]  # display name: served; bad From URI: 400
    counters = peer.notifier.counters
    assert counters["bad_request"] == 1  # bad CSeq: no transaction key, no answer
    assert counters["unexpected_request"] == 1 and counters["unparsable"] == 1


def test_timer_k_absorbs_a_repeated_answer_then_it_is_stray() -> None:
    peer = RawPeer(NotifierSpec(), [200], duplicate_after=1.0)
    peer.subscribe(3600)
    peer.run(3)
    assert "stray_responses" not in peer.notifier.counters  # within T4 = 5 s: absorbed
    peer.duplicate_after = 8.0
    peer.notifier.change_presence("sip:bob@lab.test")
    peer.run(20)
    assert peer.notifier.counters["stray_responses"] == 1  # after Timer K
    assert peer.notifier.pending_transactions == 0


def test_provisional_answer_moves_retransmissions_to_t2() -> None:
    peer = RawPeer(NotifierSpec(), [180])
    peer.subscribe(3600)
    peer.run(40)
    times = [t for t, m in peer.got if isinstance(m, Request)]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(times)]
    # The Timer E set while Trying fires at T1; in Proceeding it is reset to T2 each time.
    assert gaps[0] == 0.5 and len(gaps) > 3 and all(g == 4.0 for g in gaps[1:])
    assert times[-1] < 32.1 and peer.notifier.counters["notify_timeouts"] == 1
    assert peer.notifier.dialog_count == 0


def test_answers_naming_another_sent_by_are_not_ours() -> None:
    peer = RawPeer(NotifierSpec(), [200], via_host="10.9.9.9:5060")
    peer.subscribe(3600)
    peer.run(40)
    assert len(peer.notifies()) > 5  # retransmitted until Timer F: the 200s did not match
    assert peer.notifier.counters["notify_timeouts"] == 1


def test_answered_notifies_leave_no_simpy_events_behind() -> None:
    peer = Peer(NotifierSpec())
    peer.subscribe(3600)
    peer.run(1)

    def change(_event: object) -> None:
        peer.notifier.change_presence("sip:bob@lab.test")

    for i in range(50):
        peer.env.timeout(i * 0.01).callbacks.append(change)
    peer.run(10)
    assert len(peer.notifies()) == 51
    assert peer.notifier.pending_transactions == 0
    # Left queued: at most the expiry wakeup and one transaction-timer wakeup.
    assert len(peer.env._queue) <= 2


@given(st.floats(1e-3, 1e3), st.floats(0.0, 1e7))
def test_timer_k_generations_never_move_late(length: float, now: float) -> None:
    # The notifier divides only once `now` reaches the bound: every time below the bound
    # must still be in the epoch it computed (float division is monotone in `now`, so the
    # last float below the bound is the one to check).
    epoch = int(now // length)
    bound = epoch_start_bound(epoch + 1, length)
    below = math.nextafter(bound, -math.inf)
    if below >= now:
        assert int(below // length) == epoch
