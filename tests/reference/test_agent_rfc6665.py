"""`rfc6665` profile: one test (or a small group) per rule of rfc6665_profile.md.

Test names carry the SUB-nnn ids of subscriber_requirements.md they cover.
"""

from __future__ import annotations

import pytest

from reference import policy
from reference.pidf import build_pidf, parse_pidf
from reference.sip import Request, Response, make_response

from .harness import PEER, RECORD, SUBSCRIBER, Harness, sub_timer, timer_n


def rfc(**params: object) -> Harness:
    return Harness.make("rfc6665", **params)


def active(h: Harness, expires: int = 600, at: float | None = None) -> None:
    """Subscribe, 200 with `expires`, active NOTIFY."""
    h.subscribe()
    if at is not None:
        h.advance(at)
    h.respond(expires=expires)
    assert h.notify(state=f"active;expires={expires}").status == 200


def sub_count(h: Harness) -> int:
    return len(h.subscribes())


# ============================================================== timing
@pytest.mark.parametrize(("granted", "refresh_after"), [
    (3600, 3570), (600, 570), (60, 30), (45, 30), (30, 15), (20, 10), (3, 1.5), (1, 0.5),
])
def test_sub003_refresh_before_expiry(granted: int, refresh_after: float) -> None:
    """SUB-003/013: R = max(E - delta, min); R >= E -> E/2 (floored at 1 s)."""
    h = rfc()
    h.subscribe()
    h.advance(1.0)
    h.respond(expires=granted)
    h.notify(state="active")  # no expires: the 2xx governs
    h.advance(1.0 + refresh_after - 0.01)
    assert sub_count(h) == 1
    h.advance(1.0 + refresh_after)
    assert sub_count(h) == 2
    refresh = h.last_subscribe()
    assert refresh.to.tag == "srv1" and refresh.cseq.number == 2
    assert h.requests()[-1].at < 1.0 + granted


def test_sub072_2xx_without_expires_uses_requested() -> None:
    h = rfc()
    h.subscribe()
    h.respond(expires=None)
    h.notify(state="active")
    assert h.row()["expires_at"] == pytest.approx(3600)
    assert h.row()["timer_at"] == pytest.approx(3570)


@pytest.mark.parametrize("state", ["active", "pending"])
def test_sub028_029_notify_expires_reschedules(state: str) -> None:
    h = rfc()
    h.subscribe()
    h.respond(expires=3600)
    h.advance(10.0)
    h.notify(state=f"{state};expires=40")
    assert h.row()["expires_at"] == pytest.approx(50.0)
    h.advance(39.99)
    assert sub_count(h) == 1
    h.advance(40.0)  # R(40) = max(10, 30) = 30
    assert sub_count(h) == 2


def test_sub030_reason_on_active_changes_nothing() -> None:
    h = rfc()
    active(h, 600)
    h.notify(state="active;reason=rejected;retry-after=999")
    assert h.state() == "confirmed"
    h.advance(570.0)
    assert sub_count(h) == 2


# ============================================================== responses to SUBSCRIBE
def test_sub057_423_resends_with_min_expires_once() -> None:
    h = rfc()
    h.subscribe()
    first = h.last_subscribe()
    h.respond(status=423, headers=[("Min-Expires", "7200")])
    assert sub_count(h) == 2
    second = h.last_subscribe()
    assert second.expires == 7200
    assert h.requests()[-1].at == 0.0  # at once
    assert second.call_id == first.call_id and second.cseq.number == first.cseq.number + 1
    # A second 423 in the same attempt is a failure (no loop).
    h.respond(status=423, headers=[("Min-Expires", "9000")])
    assert sub_count(h) == 2
    assert h.state() == "waiting"
    # The learned Min-Expires is kept for later requests of this subscription.
    h.advance(h.row()["timer_at"])
    assert h.last_subscribe().expires == 7200


def test_sub057_423_to_refresh_resends_in_dialog() -> None:
    h = rfc()
    active(h, 60)
    h.advance(30.0)
    refresh = h.last_subscribe()
    h.respond(refresh, status=423, headers=[("Min-Expires", "7200")])
    again = h.last_subscribe()
    assert again.expires == 7200 and again.to.tag == "srv1"
    assert again.cseq.number == refresh.cseq.number + 1
    h.respond(again, expires=7200)
    assert h.state() == "confirmed"


REFRESH_TERMINATING = [404, 405, 410, 416, 480, 482, 483, 484, 485, 489, 501, 604]


@pytest.mark.parametrize("code", REFRESH_TERMINATING)
def test_sub014_refresh_failure_codes_terminate(code: int) -> None:
    """SUB-014/015: the listed codes end the subscription; a new one is a new dialog."""
    assert code in policy.REFRESH_TERMINATING
    h = rfc()
    active(h, 60)
    old = h.last_subscribe()
    h.advance(30.0)
    h.respond(status=code)
    assert h.state() == "waiting"
    msg = h.delivered[-1]
    assert msg.status == "terminated" and msg.reason == str(code)
    assert msg.retry_at is not None and msg.retry_at > h.now
    # NOTIFY in the old dialog is unknown now.
    assert h.notify(old, state="active").status == 481
    h.advance(msg.retry_at)
    new = h.last_subscribe()
    assert new.to.tag is None and new.call_id != old.call_id and new.cseq.number == 1
    assert h.requests()[-1].at == pytest.approx(msg.retry_at)


def test_sub014_015_refresh_481_resubscribes_at_once() -> None:
    h = rfc()
    active(h, 60)
    old = h.last_subscribe()
    h.advance(30.0)
    h.respond(status=481)
    assert sub_count(h) == 3
    new = h.last_subscribe()
    assert h.requests()[-1].at == 30.0
    assert new.to.tag is None and new.call_id != old.call_id and new.from_.tag != old.from_.tag
    assert h.delivered[-1].status == "terminated" and h.delivered[-1].reason == "481"
    assert h.delivered[-1].retry_at == pytest.approx(30.0)


@pytest.mark.parametrize("code", [500, 503, 408, 486])
def test_sub016_other_refresh_failure_keeps_subscription(code: int) -> None:
    h = rfc()
    active(h, 600)
    old = h.last_subscribe()
    h.advance(570.0)
    h.respond(status=code)
    assert h.state() == "confirmed"
    assert h.notify(old, state="active").status == 200  # still valid
    # The refresh is retried before the known expiry (600).
    h.advance(599.0)
    assert sub_count(h) >= 3
    assert all(s.at < 600 for s in h.requests())
    assert not any(m.status == "terminated" for m in h.delivered)


def test_sub016_refresh_failures_until_expiry_then_terminated() -> None:
    h = rfc()
    active(h, 600)
    h.advance(570.0)
    while h.now < 700 and h.state() in ("confirmed", "resubscription"):
        if h.state() == "resubscription":
            h.respond(status=500)
        else:
            h.advance(h.row()["timer_at"])
    assert h.state() == "waiting"
    assert h.delivered[-1].status == "terminated"
    assert h.now <= 600.0 + 1e-6
    assert all(s.at <= 600 for s in h.requests())


def test_sub016_refresh_timeout_keeps_subscription() -> None:
    """A refresh with no answer at all (Timer F, 408) keeps the subscription too."""
    h = rfc(resubscribe_delta=100)
    active(h, 600)
    h.advance(500.0)
    assert h.state() == "resubscription"
    h.advance(532.0)
    assert h.state() == "confirmed"
    assert not any(m.status == "terminated" for m in h.delivered)
    assert 532.0 < h.row()["timer_at"] <= 566.0


def test_sub011_timer_n_initial() -> None:
    h = rfc()
    h.subscribe()
    h.respond(expires=600)
    old = h.last_subscribe()
    h.advance(31.9)
    assert h.state() == "confirmed"
    h.advance(32.0)  # 64*T1
    assert h.state() == "waiting"
    assert h.delivered[-1].status == "terminated"
    assert h.notify(old, state="active").status == 481


def test_sub011_notify_stops_timer_n() -> None:
    h = rfc()
    active(h, 600)
    h.advance(100.0)
    assert h.state() == "confirmed" and timer_n(1) not in h.timers


def test_sub017_timer_n_refresh() -> None:
    h = rfc()
    active(h, 60)
    h.advance(30.0)
    h.respond(expires=600)  # refresh 200, no NOTIFY follows
    h.advance(61.9)
    assert h.state() == "confirmed"
    h.advance(62.0)
    assert h.state() == "waiting"


def test_backoff_doubles_with_seeded_jitter_and_cap() -> None:
    h = rfc(max_retry_time=1000, seed=7)
    h.subscribe()
    delays = []
    for _ in range(6):
        h.respond(status=500)
        at = h.row()["timer_at"]
        delays.append(at - h.now)
        h.advance(at)
    ceilings = [120, 240, 480, 960, 1000, 1000]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert 0.8 * ceiling <= delay <= ceiling
    # Seeded: the same seed draws the same delays; another seed others.
    again = rfc(max_retry_time=1000, seed=7)
    again.subscribe()
    again.respond(status=500)
    assert again.row()["timer_at"] == pytest.approx(delays[0])
    other = rfc(max_retry_time=1000, seed=8)
    other.subscribe()
    other.respond(status=500)
    assert other.row()["timer_at"] != pytest.approx(delays[0])


def test_sub131_retry_after_floor() -> None:
    h = rfc()
    h.subscribe()
    h.respond(status=503, headers=[("Retry-After", "1000")])
    assert h.row()["timer_at"] >= 1000
    assert h.delivered[-1].retry_at == pytest.approx(h.row()["timer_at"])
    assert h.delivered[-1].reason == "503"


def test_backoff_resets_after_active_notify() -> None:
    h = rfc(seed=1)
    h.subscribe()
    h.respond(status=500)
    h.advance(h.row()["timer_at"])
    h.respond(status=500)
    assert h.row()["failures"] == 2
    h.advance(h.row()["timer_at"])
    h.respond()
    h.notify(state="active")
    assert h.row()["failures"] == 0


@pytest.mark.parametrize("code", sorted(policy.PERMANENT))
def test_sub008_permanent_failure_rejected(code: int) -> None:
    h = rfc(max_retry_time=3600)
    h.subscribe()
    h.advance(5.0)
    h.respond(status=code)
    msg = h.delivered[-1]
    assert msg.status == "rejected" and msg.reason == str(code)
    assert msg.retry_at == pytest.approx(3605.0)
    assert h.row()["timer_at"] == pytest.approx(3605.0)


def test_sub126_unknown_code_as_x00() -> None:
    h = rfc()
    h.subscribe()
    h.respond(status=499)  # -> 400: an ordinary failure, not permanent
    assert h.delivered[-1].status == "terminated"
    h2 = rfc()
    h2.subscribe()
    h2.respond(status=699)  # -> 600 (not in PERMANENT): terminated
    assert h2.delivered[-1].status == "terminated"


# ============================================================== terminated reasons
@pytest.mark.parametrize(("reason", "retry_after", "next_after", "status"), [
    ("deactivated", None, 0.0, "terminated"),      # SUB-035
    ("deactivated", 60, 0.0, "terminated"),        # SUB-036
    ("timeout", 60, 0.0, "terminated"),            # SUB-039
    ("probation", 30, 30.0, "terminated"),         # SUB-037
    ("giveup", 25, 25.0, "terminated"),            # SUB-040
    ("giveup", None, 0.0, "terminated"),           # SUB-040
    ("x-new", 15, 15.0, "terminated"),             # SUB-060/034
    ("rejected", None, None, "rejected"),          # SUB-038
    ("rejected", 10, None, "rejected"),
    ("noresource", None, None, "terminated"),      # SUB-041
    ("invariant", None, None, "terminated"),       # SUB-042
])
def test_sub031_terminated_reasons(reason: str, retry_after: int | None,
                                   next_after: float | None, status: str) -> None:
    h = rfc(seed=3)
    active(h, 600)
    h.advance(10.0)
    old = h.last_subscribe()
    state = f"terminated;reason={reason}"
    if retry_after is not None:
        state += f";retry-after={retry_after}"
    assert h.notify(state=state).status == 200
    msg = h.delivered[-1]
    assert msg.status == status and msg.reason == reason
    # the dialog is over (SUB-031/051)
    assert h.notify(old, state="active").status == 481
    if next_after is None:
        assert msg.retry_at is None
        assert h.state() == "terminated"
        h.advance(10_000.0)
        assert sub_count(h) == 1
        assert sub_timer(1) not in h.timers
    else:
        assert msg.retry_at == pytest.approx(10.0 + next_after)
        h.advance(10.0 + next_after - 0.01) if next_after else None
        assert sub_count(h) == (2 if next_after == 0 else 1)
        h.advance(10.0 + next_after)
        assert sub_count(h) == 2
        new = h.last_subscribe()
        assert new.to.tag is None and new.call_id != old.call_id


@pytest.mark.parametrize("reason", [None, "x-unknown", "probation"])
def test_sub033_terminated_without_retry_after_backs_off(reason: str | None) -> None:
    h = rfc(seed=5)
    active(h, 600)
    state = "terminated" + (f";reason={reason}" if reason else "")
    h.notify(state=state)
    msg = h.delivered[-1]
    assert msg.reason == (reason or "terminated")
    assert msg.retry_at is not None and 0.8 * 120 <= msg.retry_at - h.now <= 120


def test_sub032_expires_on_terminated_ignored() -> None:
    h = rfc()
    active(h, 600)
    h.notify(state="terminated;reason=noresource;expires=3600")
    assert h.state() == "terminated"
    h.advance(5000.0)
    assert sub_count(h) == 1


def test_sub048_first_notify_terminated() -> None:
    h = rfc()
    h.subscribe()
    h.respond()
    h.notify(state="terminated;reason=noresource")
    assert h.state() == "terminated"
    assert h.notify(state="active").status == 481
    h.advance(4000.0)
    assert sub_count(h) == 1


# ============================================================== NOTIFY matching
def test_sub010_early_notify_creates_dialog() -> None:
    h = rfc()
    h.subscribe()
    sub = h.last_subscribe()
    answer = h.notify(from_tag="srvA", extra=[("Record-Route", "<sip:p1.lab.test;lr>")])
    assert answer.status == 200
    assert h.delivered[-1].status == "active"
    h.respond(to_tag="srvA")
    assert h.state() == "confirmed"
    h.advance(570.0)
    refresh = h.last_subscribe()
    assert refresh.call_id == sub.call_id and refresh.to.tag == "srvA"
    # SUB-049: the route set comes from the NOTIFY's Record-Route.
    assert refresh.headers.get("Route") == "<sip:p1.lab.test;lr>"
    assert h.sent[-1].destination == ("p1.lab.test", 5060)


def test_sub080_second_fork_gets_481() -> None:
    h = rfc()
    h.subscribe()
    assert h.notify(from_tag="srvA").status == 200
    assert h.notify(from_tag="srvB").status == 481
    h.respond(to_tag="srvA")
    assert h.notify(from_tag="srvB").status == 481
    assert h.notify(from_tag="srvA").status == 200
    assert len(h.delivered) == 2


def test_sub022_unknown_dialog_481() -> None:
    h = rfc()
    active(h)
    assert h.notify(call_id="other@x").status == 481
    assert h.notify(to_tag="nottag").status == 481


# ============================================================== NOTIFY checks
def test_sub023_024_025_event_checks() -> None:
    h = rfc()
    active(h)
    assert h.notify(event=None).status == 489
    assert h.notify(event="dialog").status == 489
    assert h.notify(event="presence;id=7").status == 489
    assert h.notify(event="presence;foo=1").status == 200


@pytest.mark.parametrize("event", ["Presence", "PRESENCE", "presencE;foo=1"])
def test_sub024_event_package_compared_byte_by_byte(event: str) -> None:
    # RFC 6665 §8.2.1: package names are compared byte by byte (case-sensitive), so
    # `Presence` is not the package subscribed to.
    h = rfc()
    active(h)
    delivered = len(h.delivered)
    answer = h.notify(event=event, basic="closed")
    assert (answer.status, answer.reason) == (489, "Bad Event")
    assert len(h.delivered) == delivered
    assert h.notify(event="presence").status == 200


def test_sub027_missing_subscription_state_400() -> None:
    h = rfc()
    active(h)
    n = len(h.delivered)
    assert h.notify(state="").status == 400
    assert len(h.delivered) == n


def test_sub150_cseq_order_500() -> None:
    h = rfc()
    active(h)
    assert h.notify(cseq=500, basic="closed").status == 200
    n = len(h.delivered)
    assert h.notify(cseq=499, basic="open").status == 500
    assert len(h.delivered) == n
    # Equal is not lower (RFC 3261 §12.2.2): a copy arriving after Timer J is a new request.
    assert h.notify(cseq=500, basic="open").status == 200
    assert len(h.delivered) == n + 1
    assert h.notify(cseq=501).status == 200


def test_sub148_unsupported_content_type_415_with_accept() -> None:
    h = rfc()
    active(h)
    answer = h.notify(content_type="text/plain", body=b"hello")
    assert answer.status == 415
    assert "application/pidf+xml" in (answer.headers.get("Accept") or "")
    answer = h.notify(extra=[("Content-Encoding", "x-zip")])
    assert answer.status == 415
    assert answer.headers.get("Accept-Encoding") is not None


def test_sub147_require_420() -> None:
    h = rfc()
    active(h)
    answer = h.notify(extra=[("Require", "x-foo")])
    assert answer.status == 420
    assert answer.headers.get("Unsupported") == "x-foo"


@pytest.mark.parametrize(("method", "status"), [("FOO", 501), ("INVITE", 405), ("MESSAGE", 405)])
def test_sub156_other_methods_405_or_501_with_allow(method: str, status: int) -> None:
    h = rfc()
    data = (f"{method} sip:127.0.0.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {PEER[0]}:{PEER[1]};branch=z9hG4bKfoo1\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c1\r\n"
            f"CSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n").encode()
    h.feed(data)
    answer = h.last_response()
    assert answer.status == status and "NOTIFY" in (answer.headers.get("Allow") or "")


def test_sub155_missing_mandatory_header_400() -> None:
    h = rfc()
    active(h)
    data = h.notify_bytes().replace(b"Max-Forwards: 70\r\n", b"")
    h.feed(data)
    assert h.last_response().status == 400


def test_bad_pidf_400_and_status_with_error() -> None:
    h = rfc()
    active(h)
    doc = h.delivered[-1].document
    answer = h.notify(body=b"<presence xmlns='urn:ietf:params:xml:ns:pidf'", state="active")
    assert answer.status == 400 and answer.reason == "Bad PIDF document"
    msg = h.delivered[-1]
    assert msg.status == "active" and msg.document is None
    assert msg.reason is not None and msg.reason.startswith("bad-pidf")
    assert doc is not None


def test_sub077_empty_notify_keeps_document() -> None:
    h = rfc()
    active(h)
    doc = h.delivered[-1].document
    assert doc is not None
    assert h.notify(body=b"", state="active").status == 200
    assert h.delivered[-1].document == doc


def test_sub077_empty_notify_after_bad_pidf_keeps_last_good_document() -> None:
    h = rfc()
    active(h)
    doc = h.delivered[-1].document
    assert h.notify(body=b"<presence", state="active").status == 400
    assert h.notify(body=b"", state="active").status == 200
    assert doc is not None and h.delivered[-1].document == doc


def test_sub077_empty_first_notify_has_no_document() -> None:
    h = rfc()
    h.subscribe()
    h.respond(expires=600)
    assert h.notify(body=b"", state="active").status == 200
    assert h.delivered[-1].status == "active" and h.delivered[-1].document is None


def test_sub140_141_retransmitted_notify_absorbed() -> None:
    h = rfc()
    active(h)
    data = h.notify_bytes(branch="z9hG4bKsame", state="active")
    h.feed(data)
    first = h.sent[-1].data
    n = len(h.delivered)
    h.feed(data)
    assert h.sent[-1].data == first
    assert len(h.delivered) == n


def test_sub144_received_param() -> None:
    h = rfc()
    active(h)
    h.feed(h.notify_bytes(), source=("192.0.2.9", 5070))
    answer = h.last_response()
    assert "received=192.0.2.9" in (answer.headers.get("Via") or "")
    assert h.sent[-1].destination == ("192.0.2.9", 5070)


# ============================================================== unsubscribe / shutdown
def test_sub019_unsubscribe_confirmed() -> None:
    h = rfc()
    active(h)
    n = len(h.delivered)
    h.unsubscribe(1)
    unsub = h.last_subscribe()
    assert unsub.expires == 0 and unsub.to.tag == "srv1"
    h.respond(unsub)
    assert h.notify(state="active").status == 200  # SUB-021
    assert h.notify(state="terminated;reason=timeout").status == 200
    assert h.agent.is_idle
    assert len(h.delivered) == n
    assert h.notify(state="active").status == 481


@pytest.mark.parametrize("code", [404, 481, 500, 503])
def test_unsubscribe_error_ends_at_once_never_resurrects(code: int) -> None:
    h = rfc()
    active(h)
    n = len(h.delivered)
    h.unsubscribe(1)
    h.respond(status=code)
    assert h.agent.is_idle
    h.advance(10_000.0)
    assert sub_count(h) == 2
    assert len(h.delivered) == n


def test_unsubscribe_during_refresh_481_never_resurrects() -> None:
    h = rfc()
    active(h, 60)
    h.advance(30.0)
    refresh = h.last_subscribe()
    h.unsubscribe(1)
    h.respond(refresh, status=481)
    assert h.agent.is_idle
    h.advance(5000.0)
    assert sub_count(h) == 2


def test_unsubscribe_while_initial_outstanding() -> None:
    h = rfc()
    h.subscribe()
    h.unsubscribe(1)
    assert h.notify(state="active").status == 200  # early NOTIFY still answered
    h.respond()
    unsub = h.last_subscribe()
    assert unsub.expires == 0
    h.respond(unsub)
    h.notify(state="terminated")
    assert h.agent.is_idle
    assert h.delivered == []


def test_unsubscribe_while_initial_outstanding_then_failure_forgets() -> None:
    h = rfc()
    h.subscribe()
    h.unsubscribe(1)
    h.respond(status=500)
    assert h.agent.is_idle and sub_count(h) == 1
    assert h.delivered == []


def test_unsubscribe_while_waiting_forgets() -> None:
    h = rfc()
    h.subscribe()
    h.respond(status=500)
    n = len(h.delivered)
    h.unsubscribe(1)
    assert h.agent.is_idle
    h.advance(10_000.0)
    assert sub_count(h) == 1 and len(h.delivered) == n


def test_unsubscribe_after_final_termination() -> None:
    h = rfc()
    active(h)
    h.notify(state="terminated;reason=noresource")
    h.unsubscribe(1)
    assert h.agent.is_idle and sub_count(h) == 1


def test_unsubscribe_waits_at_most_wait_for_term_notify() -> None:
    h = rfc()
    active(h)
    h.advance(100.0)
    h.unsubscribe(1)
    h.respond()
    h.advance(129.99)
    assert not h.agent.is_idle
    h.advance(130.0)
    assert h.agent.is_idle


def test_close_unsubscribes_all() -> None:
    h = rfc()
    for _ in range(3):
        h.subscribe()
    for req in h.subscribes():
        h.respond(req)
    h.advance(1.0)
    h.close()
    unsubs = [r for r in h.subscribes() if r.expires == 0]
    assert len(unsubs) == 3
    for req in unsubs:
        h.respond(req)
    h.advance(1.0 + 30.0)
    assert h.agent.is_idle
    with pytest.raises(ValueError):
        h.agent.subscribe(RECORD, "sip:x@y", "q1", now=h.now)


def test_close_is_bounded_when_peer_is_silent() -> None:
    h = rfc()
    h.subscribe()
    h.respond()
    h.close()
    h.advance(h.now + h.config.failover_timeout + h.config.wait_for_term_notify)
    assert h.agent.is_idle


# ============================================================== messages sent
def test_sub_messages_accept_and_content_length() -> None:
    h = rfc(additional_presence_headers="X-One: 1\r\nX-Two: two\r\n")
    h.subscribe()
    sub = h.last_subscribe()
    raw = h.sent[-1].data.decode()
    assert raw.count("Content-Length:") == 1 and "Content-Length: 0\r\n" in raw
    assert sub.headers.get("Accept") == "application/pidf+xml"
    assert sub.headers.get("X-One") == "1" and sub.headers.get("X-Two") == "two"
    assert sub.max_forwards == 70 and len(sub.contacts) == 1
    assert sub.to.tag is None and sub.uri == RECORD
    h.respond()
    h.notify()
    h.advance(570.0)
    refresh = h.last_subscribe()
    assert refresh.headers.get("X-Two") == "two" and refresh.headers.get("Accept")
    h.unsubscribe(1)
    assert h.last_subscribe().headers.get("X-One") == "1"


def test_additional_headers_literal_backslash_crlf() -> None:
    h = rfc(additional_presence_headers="X-A: a\\r\\nX-B: b")
    h.subscribe()
    sub = h.last_subscribe()
    assert sub.headers.get("X-A") == "a" and sub.headers.get("X-B") == "b"


def test_presence_route_and_outbound_proxy() -> None:
    h = rfc(presence_route="<sip:route1.lab.test;lr>",
            presence_outbound_proxy="sip:outbound.lab.test:5099")
    h.subscribe()
    sub = h.last_subscribe()
    assert sub.headers.get("Route") == "<sip:route1.lab.test;lr>"
    assert h.sent[-1].destination == ("outbound.lab.test", 5099)
    # rfc6665: the preloaded route does not stick; the dialog's route set is the first
    # NOTIFY's Record-Route (SUB-049).
    h.respond()
    h.notify(extra=[("Record-Route", "<sip:rr.lab.test;lr>")])
    h.advance(570.0)
    refresh = h.last_subscribe()
    assert refresh.headers.get_all("Route") == ["<sip:rr.lab.test;lr>"]
    assert h.sent[-1].destination == ("rr.lab.test", 5060)


def test_ser_presence_route_sticks() -> None:
    h = Harness.make("ser", presence_route="<sip:route1.lab.test;lr>")
    h.subscribe()
    h.respond(headers=[("Record-Route", "<sip:rr.lab.test;lr>")])
    h.advance(570.0)
    assert h.last_subscribe().headers.get_all("Route") == ["<sip:route1.lab.test;lr>"]


def test_ser_presence_route_sticks_reversed() -> None:
    # Spec §4.4: SER's tm keeps the preloaded route set on the 2xx, reversed like a
    # Record-Route; the initial SUBSCRIBE uses it in order.
    h = Harness.make("ser", presence_route="<sip:p1.lab.test;lr>, <sip:p2.lab.test;lr>")
    h.subscribe()
    assert h.last_subscribe().headers.get_all("Route") == [
        "<sip:p1.lab.test;lr>", "<sip:p2.lab.test;lr>"]
    assert h.sent[-1].destination == ("p1.lab.test", 5060)
    h.respond(headers=[("Record-Route", "<sip:rr.lab.test;lr>")])
    h.advance(570.0)
    assert h.last_subscribe().cseq.number == 2
    assert h.last_subscribe().headers.get_all("Route") == [
        "<sip:p2.lab.test;lr>", "<sip:p1.lab.test;lr>"]
    assert h.sent[-1].destination == ("p2.lab.test", 5060)


@pytest.mark.parametrize("raw", ["000000000000600", "0000000600", "600"])
def test_expires_leading_zeros_are_the_same_value(raw: str) -> None:
    # rfc6665: delta-seconds is 1*DIGIT, so leading zeros do not change the value (they
    # were read as 2**32-1 once the text was over 10 characters).
    h = rfc(resubscribe_delta=30)
    h.subscribe()
    h.respond(expires=None, headers=[("Expires", raw)])
    h.notify(state=f"active;expires={raw}")
    h.advance(569.9)
    assert len(h.subscribes()) == 1
    h.advance(600.0)
    assert len(h.subscribes()) == 2


def test_presence_route_on_every_new_dialog() -> None:
    h = rfc(presence_route="<sip:route1.lab.test;lr>")
    h.subscribe()
    h.respond(status=500)
    h.advance(h.row()["timer_at"])
    assert h.last_subscribe().headers.get("Route") == "<sip:route1.lab.test;lr>"
    assert h.last_subscribe().cseq.number == 1


# ============================================================== redirects
def test_sub128_redirect_q_order() -> None:
    h = rfc()
    h.subscribe()
    h.respond(status=302, headers=[("Contact", "<sip:b@low.lab.test>;q=0.1"),
                                   ("Contact", "<sip:b@high.lab.test>;q=0.9")])
    sub = h.last_subscribe()
    assert sub.uri == "sip:b@high.lab.test"
    assert sub.to.uri == RECORD  # To stays the record in rfc6665
    assert sub.headers.get("P-Hint") is None


def test_redirect_limit_five() -> None:
    h = rfc()
    h.subscribe()
    for i in range(5):
        h.respond(status=302, headers=[("Contact", f"<sip:b@r{i}.lab.test>")])
        assert sub_count(h) == i + 2
    h.respond(status=302, headers=[("Contact", "<sip:b@r9.lab.test>")])
    assert sub_count(h) == 6
    assert h.state() == "waiting"
    assert h.delivered[-1].status == "terminated"


def test_redirect_loop_ends_as_failure() -> None:
    h = rfc()
    h.subscribe()
    h.respond(status=302, headers=[("Contact", "<sip:b@loop.lab.test>")])
    h.respond(status=302, headers=[("Contact", "<sip:b@loop.lab.test>")])
    assert sub_count(h) == 2
    assert h.state() == "waiting"


def test_redirect_from_refresh_is_new_initial() -> None:
    h = rfc()
    active(h, 60)
    h.advance(30.0)
    h.respond(status=301, headers=[("Contact", "<sip:b@moved.lab.test>")])
    new = h.last_subscribe()
    assert new.uri == "sip:b@moved.lab.test" and new.to.tag is None and new.cseq.number == 1


# ============================================================== stale responses
def test_stale_response_of_abandoned_transaction_dropped() -> None:
    h = rfc()
    h.subscribe()
    h.respond(status=500)
    first = h.subscribes()[0]
    h.advance(h.row()["timer_at"])
    second = h.last_subscribe()
    # a late duplicate 200 to the first (abandoned) transaction
    late: Response = h.respond(first, status=200)
    assert late.status == 200
    assert h.state() == "unconfirmed"
    h.respond(second)
    assert h.state() == "confirmed"


def test_response_with_two_vias_ignored() -> None:
    h = rfc()
    h.subscribe()
    req: Request = h.last_subscribe()
    resp = make_response(req, 200, to_tag="x", headers=[("Expires", "600")])
    extra_via = b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx\r\n"
    raw = resp.to_bytes().replace(b"Via: ", extra_via + b"Via: ", 1)
    h.feed(raw)
    assert h.state() == "unconfirmed"


def test_unsubscribe_bound_holds_when_initial_2xx_is_late() -> None:
    """Unsubscribe at t=0 while the initial SUBSCRIBE is outstanding; its 2xx comes just
    before Timer F, so does the 2xx to the unsubscribe: TERMWAIT must not run past
    failover_timeout + wait_for_term_notify (bug fixed: it ended at 92 s)."""
    h = rfc()
    h.subscribe()
    h.unsubscribe(1)
    h.advance(31.0)
    h.respond()
    h.advance(62.0)
    h.respond()
    assert h.row()["timer"] == "TERMWAIT" and h.row()["timer_at"] <= 90.0
    h.advance(90.0)
    assert h.agent.is_idle


def test_redirect_back_to_the_record_is_a_loop() -> None:
    """A 3xx whose only Contact is the record itself ends the chain at once (bug fixed:
    the record was not counted as seen, so one pointless SUBSCRIBE went out first)."""
    h = rfc()
    h.subscribe()
    h.respond(status=302, headers=[("Contact", f"<{RECORD}>")])
    assert sub_count(h) == 1
    assert h.state() == "waiting"


def test_redirect_skips_seen_contact_and_takes_the_next() -> None:
    h = rfc()
    h.subscribe()
    h.respond(status=302, headers=[("Contact", "<sip:b@one.lab.test>")])
    h.respond(status=302, headers=[("Contact", "<sip:b@one.lab.test>;q=1.0"),
                                   ("Contact", "<sip:b@two.lab.test>;q=0.5")])
    assert h.last_subscribe().uri == "sip:b@two.lab.test"


def test_refresh_404_terminated_then_waits_like_initial_permanent() -> None:
    """Profile table: a refresh 404 ends the subscription (status `terminated`, SUB-014),
    'then as for the initial request': 404 is permanent, so the next try waits
    max_retry_time. A refresh 480 (not permanent) backs off normally."""
    h = rfc(max_retry_time=2000)
    active(h, 60)
    h.advance(30.0)
    h.respond(status=404)
    msg = h.delivered[-1]
    assert msg.status == "terminated" and msg.retry_at == pytest.approx(2030.0)
    h2 = rfc(max_retry_time=2000)
    active(h2, 60)
    h2.advance(30.0)
    h2.respond(status=480)
    retry_at = h2.delivered[-1].retry_at
    assert retry_at is not None and 30 + 96 <= retry_at <= 30 + 120


def test_zero_grant_does_not_spin() -> None:
    h = rfc()
    h.subscribe()
    h.respond(expires=0)
    h.advance(1000.0)
    assert sub_count(h) <= 5
    assert h.delivered[-1].status == "terminated"


def test_short_grant_keeps_being_refreshed() -> None:
    """A 4 s grant refreshes at 2 s, again and again (bug fixed: the tick within 2 s of
    expiry was taken for the expiry, so every short grant was torn down)."""
    h = rfc()
    active(h, 4)
    for _ in range(5):
        h.advance(h.row()["timer_at"])
        assert h.state() == "resubscription"
        h.respond(expires=4)
        h.notify(state="active;expires=4")
    assert sub_count(h) == 6
    assert not any(m.status == "terminated" for m in h.delivered)


def test_sub010_lost_2xx_after_early_notify_keeps_subscription() -> None:
    """B7 fixed: a NOTIFY created the dialog, then the SUBSCRIBE timed out (its 2xx was
    lost): the subscription exists, so it is kept and refreshed in that dialog."""
    h = rfc()
    h.subscribe()
    sub = h.last_subscribe()
    h.advance(1.0)
    assert h.notify(state="active;expires=600").status == 200
    h.advance(32.0)  # Timer F of the initial SUBSCRIBE
    assert h.state() == "confirmed"
    assert not any(m.status == "terminated" for m in h.delivered)
    assert h.notify(state="active;expires=600").status == 200
    h.advance(h.row()["timer_at"])
    refresh = h.last_subscribe()
    assert refresh.call_id == sub.call_id and refresh.to.tag == "srv1"
    assert h.requests()[-1].at < 33.0 + 600


def test_lost_2xx_after_early_notify_then_unsubscribe_ends_the_dialog() -> None:
    h = rfc()
    h.subscribe()
    h.notify(state="active;expires=600")
    h.unsubscribe(1)
    h.advance(32.0)
    unsub = h.last_subscribe()
    assert unsub.expires == 0 and unsub.to.tag == "srv1"
    h.respond(unsub)
    h.notify(state="terminated")
    assert h.agent.is_idle


def test_error_response_after_early_notify_is_still_a_failure() -> None:
    """Only a timeout means 'the 2xx was lost'; an explicit error ends the attempt."""
    h = rfc()
    h.subscribe()
    h.notify(state="active;expires=600")
    h.respond(status=500)
    assert h.state() == "waiting"


def test_sub131_retry_after_on_refresh_failure_is_a_floor() -> None:
    """503 + Retry-After to a refresh: the retry waits at least Retry-After even when half
    the time left is shorter (bug fixed: min(back-off, left/2) ignored it); when the
    Retry-After reaches past the expiry, the refresh is not retried before expiry."""
    h = rfc(resubscribe_delta=300)
    active(h, 600)
    h.advance(300.0)
    h.respond(status=503, headers=[("Retry-After", "200")])
    assert h.row()["timer_at"] == pytest.approx(500.0)  # left/2 = 150 < 200
    h2 = rfc()
    active(h2, 600)
    h2.advance(570.0)
    h2.respond(status=503, headers=[("Retry-After", "100")])
    assert h2.row()["timer_at"] == pytest.approx(600.0)  # the expiry
    h2.advance(600.0)
    assert h2.state() == "waiting" and sub_count(h2) == 2
    assert h2.delivered[-1].status == "terminated"


@pytest.mark.parametrize("code", [500, 503, 408])
def test_unsubscribe_during_failing_refresh_still_unsubscribes(code: int) -> None:
    """The refresh failed with a code that keeps the subscription valid (SUB-016), and the
    internal subscriber already left: send Expires: 0 rather than leave it on the notifier
    (rfc6665 decision; ser just forgets it)."""
    h = rfc()
    active(h, 600)
    h.advance(570.0)
    refresh = h.last_subscribe()
    h.unsubscribe(1)
    h.respond(refresh, status=code)
    unsub = h.last_subscribe()
    assert unsub.expires == 0 and unsub.cseq.number == refresh.cseq.number + 1
    h.respond(unsub)
    h.notify(state="terminated")
    assert h.agent.is_idle and len(h.delivered) == 1


def test_unsubscribe_during_refresh_that_ends_it_sends_nothing() -> None:
    h = rfc()
    active(h, 600)
    h.advance(570.0)
    h.unsubscribe(1)
    h.respond(status=404)
    assert h.agent.is_idle and sub_count(h) == 2


def test_sub049_route_set_from_first_notify_not_2xx() -> None:
    h = rfc()
    h.subscribe()
    h.respond(headers=[("Record-Route", "<sip:from2xx.lab.test;lr>")])
    h.notify(extra=[("Record-Route", "<sip:p2.lab.test;lr>"),
                    ("Record-Route", "<sip:p1.lab.test;lr>")])
    # a later NOTIFY does not change the route set
    h.notify(extra=[("Record-Route", "<sip:other.lab.test;lr>")])
    h.advance(570.0)
    refresh = h.last_subscribe()
    assert refresh.headers.get_all("Route") == ["<sip:p2.lab.test;lr>", "<sip:p1.lab.test;lr>"]
    assert h.sent[-1].destination == ("p2.lab.test", 5060)


def test_sub119_strict_router_in_route_set() -> None:
    h = rfc()
    h.subscribe()
    h.respond()
    h.notify(extra=[("Record-Route", "<sip:strict.lab.test>")])
    h.advance(570.0)
    refresh = h.last_subscribe()
    assert refresh.uri == "sip:strict.lab.test"
    assert refresh.headers.get_all("Route")[-1] == "<sip:127.0.0.1:5070>"


def test_notify_status_message_fields() -> None:
    """Every field of a NOTIFY's status message (actions.deliver builds it positionally)."""
    h = rfc()
    handle = h.subscribe()
    h.respond(expires=600)
    h.advance(5.0)
    body = build_pidf(RECORD, basic="closed")
    h.notify(state="active;expires=600", body=body)
    msg = h.delivered[-1]
    assert (msg.handle, msg.record, msg.subscriber, msg.package, msg.status) \
        == (handle, RECORD, SUBSCRIBER, "presence", "active")
    assert msg.document == parse_pidf(body) and msg.body == body
    assert (msg.content_type, msg.reason, msg.retry_at, msg.subscriber_data, msg.at) \
        == ("application/pidf+xml", None, None, None, 5.0)
    assert (msg.superseded, msg.list_uri, msg.resource, msg.registration) \
        == (0, None, None, None)
    h.advance(7.0)
    h.notify(state="terminated;reason=timeout", body=b"", content_type=None)
    ended = h.delivered[-1]
    assert (ended.status, ended.reason, ended.document, ended.body, ended.content_type) \
        == ("terminated", "timeout", None, b"", None)
    assert ended.retry_at is not None and ended.retry_at >= 7.0 and ended.at == 7.0
