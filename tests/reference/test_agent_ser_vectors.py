"""`ser` profile: the conformance vectors of presence_b2b.md §10 and §2.1 timer arithmetic."""

from __future__ import annotations

import pytest

from reference.effects import Deliver
from reference.timers import TimerKind

from .harness import RECORD, Harness, sub_timer

CPIM_BODY = (b'<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:cpim-pidf" '
             b'entity="pres:bob@lab.test"><tuple id="t"><status><basic>open</basic></status>'
             b'</tuple></presence>')


def ser(**params: object) -> Harness:
    return Harness.make("ser", **params)


def test_v1_initial_subscribe_content() -> None:
    h = ser()
    h.subscribe()
    assert len(h.sent) == 1 and h.sent[0].at == 0.0
    sub = h.last_subscribe()
    assert sub.uri == RECORD
    assert sub.headers.get("Event") == "presence"
    assert sub.expires == 3600
    assert sub.max_forwards == 70
    assert sub.cseq.number == 1 and sub.cseq.method == "SUBSCRIBE"
    assert sub.to.tag is None
    contacts = sub.contacts
    assert len(contacts) == 1 and contacts[0].uri == "sip:127.0.0.1:5060"  # no user part
    assert "Accept" not in sub.headers  # SER sends none (B10)
    raw = h.sent[0].data.decode()
    assert raw.count("Content-Length:") == 1  # B10 fixed: exactly one
    assert sub.to.uri == RECORD and sub.from_.uri == "sip:alice@lab.test"


def test_v2_refresh_after_3600_grant() -> None:
    h = ser()
    h.subscribe()
    h.respond(expires=3600)
    first = h.last_subscribe()
    h.advance(3569.9)
    assert len(h.subscribes()) == 1
    h.advance(3570.0)
    refresh = h.last_subscribe()
    assert len(h.subscribes()) == 2
    assert h.requests()[-1].at == pytest.approx(3570.0)
    assert refresh.call_id == first.call_id
    assert refresh.cseq.number == 2
    assert refresh.expires == 3600
    assert refresh.to.tag == "srv1"
    assert refresh.from_.tag == first.from_.tag


@pytest.mark.parametrize(("granted", "refresh_at"), [
    ("3600", 3570), ("600", 570), ("60", 30), ("45", 30), ("30", 30), ("20", 30), ("0", 30),
    (None, 30), ("7200", 7170), ("abc", 30), ("", 30),
    # SER's parser: more than 10 characters is invalid -> E = 0, leading zeros included;
    # up to 10 characters, leading zeros do not change the value.
    ("0000000600", 570), ("00000000600", 30), ("000000000000600", 30), ("99999999999", 30),
    ("4294967296", 2**32 - 1 - 30),
], ids=lambda v: repr(v))
def test_v3_refresh_arithmetic(granted: str | None, refresh_at: float) -> None:
    """§2.1: R(E) = max(E - 30, 30) from the 2xx; absent/invalid Expires -> E = 0 (A3)."""
    h = ser()
    h.subscribe()
    h.advance(2.0)
    headers = [] if granted is None else [("Expires", granted)]
    h.respond(expires=None, headers=headers)
    assert h.state() == "confirmed"
    h.advance(2.0 + refresh_at - 0.01)
    assert len(h.subscribes()) == 1
    h.advance(2.0 + refresh_at)
    assert len(h.subscribes()) == 2
    assert h.last_subscribe().expires == 3600  # always default_expiration


def test_v4_404_retries_new_dialog_after_120() -> None:
    h = ser()
    h.subscribe()
    h.advance(1.0)
    first = h.last_subscribe()
    h.respond(status=404)
    assert h.delivered == []
    assert h.state() == "waiting"
    h.advance(120.99)
    assert len(h.subscribes()) == 1
    h.advance(121.0)
    retry = h.last_subscribe()
    assert h.requests()[-1].at == pytest.approx(121.0)
    assert retry.call_id != first.call_id and retry.from_.tag != first.from_.tag
    assert retry.cseq.number == 1 and retry.to.tag is None
    assert h.delivered == []


def test_v5_silence_local_408_then_retry_every_150() -> None:
    h = ser()
    h.subscribe()
    h.advance(29.99)
    assert h.state() == "unconfirmed"
    h.advance(30.0)
    assert h.state() == "waiting"
    assert h.row()["timer_at"] == pytest.approx(150.0)
    h.advance(400.0)
    starts = [s.at for s in h.requests()]
    assert starts == pytest.approx([0.0, 150.0, 300.0])
    assert len({r.call_id for r in h.subscribes()}) == 3
    assert h.delivered == []


def test_v6_redirect_with_contact() -> None:
    h = ser()
    h.subscribe()
    h.respond(status=302, headers=[("Contact", "<sip:bob@c.lab.test:5090>;q=0.1"),
                                   ("Contact", "<sip:bob@d.lab.test>;q=0.9")])
    sub = h.last_subscribe()
    assert len(h.subscribes()) == 2
    assert sub.uri == "sip:bob@c.lab.test:5090"  # the first Contact, q ignored (B6)
    assert sub.to.uri == "sip:bob@c.lab.test:5090"
    assert sub.headers.get("P-Hint") == "trying new subscription after 3xx"
    assert sub.cseq.number == 1 and sub.to.tag is None
    assert h.sent[-1].destination == ("c.lab.test", 5090)
    # A later failure retries to the original record, not to the redirect target.
    h.respond(status=500)
    h.advance(h.now + 120)
    retry = h.last_subscribe()
    assert retry.uri == RECORD and retry.headers.get("P-Hint") is None


def test_v6_redirect_without_contact_retries_at_120() -> None:
    h = ser()
    h.subscribe()
    h.advance(3.0)
    h.respond(status=302)
    assert h.state() == "waiting"
    assert h.row()["timer_at"] == pytest.approx(123.0)


def test_ser_redirect_loop_has_no_limit() -> None:
    """B6 reproduced: a server that always redirects gets an endless immediate loop."""
    h = ser()
    h.subscribe()
    for _ in range(12):
        h.respond(status=302, headers=[("Contact", "<sip:bob@c.lab.test>")])
    assert len(h.subscribes()) == 13
    assert h.state() == "unconfirmed"


def test_v7_notify_active_and_empty_pending() -> None:
    h = ser()
    h.subscribe()
    h.respond()
    answer = h.notify(state="active;expires=600", basic="open")
    assert answer.status == 200
    (msg,) = h.delivered
    assert msg.status == "active" and msg.document is not None
    assert msg.document.to_json()  # parsed
    assert msg.handle == 1 and msg.record == RECORD
    answer = h.notify(state="pending", body=b"")
    assert answer.status == 200
    assert h.delivered[-1].status == "pending" and h.delivered[-1].document is None


@pytest.mark.parametrize(("raw", "status"), [
    ("active;expires=3600", "active"), ("terminated;reason=timeout", "terminated"),
    ("Active", "pending"), ("pending", "pending"), ("bogus", "pending"), (None, "pending"),
])
def test_ser_qsa_status_rule(raw: str | None, status: str) -> None:
    """§5.3: case-sensitive substring search; missing header -> pending (A8)."""
    h = ser()
    h.subscribe()
    h.respond()
    assert h.notify(state=raw or "").status == 200
    assert h.delivered[-1].status == status


def test_v8_non_pidf_body_answered_200_without_message() -> None:
    h = ser()
    h.subscribe()
    h.respond()
    answer = h.notify(body=CPIM_BODY, content_type="application/cpim-pidf+xml")
    assert answer.status == 200
    assert h.delivered == []
    # SER ignores Content-Type (B11): a text/plain label on a PIDF body is still delivered.
    h.notify(content_type="text/plain")
    assert len(h.delivered) == 1


def test_v9_unknown_dialog_gets_481() -> None:
    h = ser()
    h.subscribe()
    h.respond()
    answer = h.notify(call_id="nobody@elsewhere")
    assert answer.status == 481
    assert h.delivered == []


def test_v10_notify_before_2xx_then_2xx_confirms() -> None:
    h = ser()
    h.subscribe()
    assert h.notify(from_tag="srv1").status == 200
    assert len(h.delivered) == 1
    assert h.state() == "unconfirmed"
    # Forks are merged while unconfirmed (B7): another From tag is delivered too.
    assert h.notify(from_tag="fork2").status == 200
    assert len(h.delivered) == 2
    h.respond()
    assert h.state() == "confirmed"
    # After confirmation the other fork is unknown (481).
    assert h.notify(from_tag="fork2").status == 481


def test_v11_terminated_rejected_while_confirmed_is_only_reported() -> None:
    h = ser()
    h.subscribe()
    h.respond(expires=600)
    answer = h.notify(state="terminated;reason=rejected")
    assert answer.status == 200
    assert h.delivered[-1].status == "terminated"
    assert h.delivered[-1].reason is None and h.delivered[-1].retry_at is None
    assert len(h.subscribes()) == 1
    h.advance(570.0)
    assert len(h.subscribes()) == 2  # the refresh is still sent
    assert h.last_subscribe().to.tag == "srv1"


def test_v12_refresh_481_drops_dialog_and_retries_after_120() -> None:
    h = ser()
    h.subscribe()
    h.respond(expires=60)
    h.advance(30.0)
    refresh = h.last_subscribe()
    h.respond(refresh, status=481)
    assert h.state() == "waiting"
    assert len(h.subscribes()) == 2  # no unsubscribe
    h.advance(149.9)
    assert len(h.subscribes()) == 2
    h.advance(150.0)
    new = h.last_subscribe()
    assert new.to.tag is None and new.cseq.number == 1 and new.call_id != refresh.call_id
    assert h.delivered == []  # B1: nothing reported


def test_v13_unsubscribe_while_confirmed_terminating_notify() -> None:
    h = ser()
    h.subscribe()
    h.respond()
    h.notify()
    delivered = len(h.delivered)
    h.unsubscribe(1)
    unsub = h.last_subscribe()
    assert unsub.expires == 0 and unsub.cseq.number == 2
    h.respond(unsub)
    assert h.state() == "waiting_for_termination"
    assert h.notify(state="active").status == 200
    assert h.notify(state="terminated;reason=timeout").status == 200
    assert h.state() is None
    assert len(h.delivered) == delivered
    assert h.agent.is_idle


def test_v13_unsubscribe_2xx_without_notify_gives_up_after_30() -> None:
    h = ser()
    h.subscribe()
    h.respond()
    h.advance(10.0)
    h.unsubscribe(1)
    h.respond()
    h.advance(39.99)
    assert h.state() == "waiting_for_termination"
    h.advance(40.0)
    assert h.state() is None
    assert h.agent.counters.get("termwait_expired") == 1


def test_v13_unsubscribe_without_response_ends_at_transaction_timeout() -> None:
    h = ser()
    h.subscribe()
    h.respond()
    h.advance(10.0)
    h.unsubscribe(1)
    h.advance(39.99)
    assert h.state() == "predestroyed"
    h.advance(40.0)  # SER tm's 30 s final-response timer: local 408
    assert h.state() is None
    assert h.delivered == []


def test_v13_terminated_notify_before_the_2xx_of_the_unsubscribe() -> None:
    h = ser()
    h.subscribe()
    h.respond()
    h.unsubscribe(1)
    unsub = h.last_subscribe()
    assert h.notify(state="terminated").status == 200
    assert h.state() is None
    h.respond(unsub)  # late 2xx: accepted silently
    assert h.agent.is_idle
    assert len(h.subscribes()) == 2


def test_v13_not_exactly_terminated_does_not_end_the_unsubscribe() -> None:
    """§5.4: the first token must be exactly `terminated` (case-sensitive)."""
    h = ser()
    h.subscribe()
    h.respond()
    h.unsubscribe(1)
    h.respond()
    assert h.notify(state="Terminated").status == 200
    assert h.state() == "waiting_for_termination"


def test_v14_unsubscribe_while_initial_pending() -> None:
    h = ser()
    h.subscribe()
    h.unsubscribe(1)
    assert len(h.subscribes()) == 1
    h.respond()
    unsub = h.last_subscribe()
    assert len(h.subscribes()) == 2
    assert unsub.expires == 0 and unsub.cseq.number == 2 and unsub.to.tag == "srv1"
    assert h.state() == "predestroyed"


def test_v14_unsubscribe_while_initial_pending_then_failure() -> None:
    h = ser()
    h.subscribe()
    h.unsubscribe(1)
    h.respond(status=503)
    assert h.agent.is_idle
    assert len(h.subscribes()) == 1


def test_unsubscribe_while_waiting_sends_nothing() -> None:
    h = ser()
    h.subscribe()
    h.respond(status=404)
    h.unsubscribe(1)
    assert h.agent.is_idle and h.timers.get(sub_timer(1)) is None
    h.advance(1000.0)
    assert len(h.subscribes()) == 1


@pytest.mark.parametrize("seed", range(40))
def test_v15_max_subscribe_delay_draw(seed: int) -> None:
    h = ser(max_subscribe_delay=10, seed=seed)
    h.subscribe()
    assert h.sent == []
    assert h.state() == "waiting"
    h.advance(11.0)
    (first,) = h.requests()
    assert first.at in {float(n) for n in range(1, 11)}


def test_v15_delay_covers_the_whole_range() -> None:
    draws = set()
    for seed in range(200):
        h = ser(max_subscribe_delay=10, seed=seed)
        h.subscribe()
        draws.add(h.timers[sub_timer(1)])
    assert draws == {float(n) for n in range(1, 11)}


def test_v15_delay_only_for_the_first_attempt() -> None:
    h = ser(max_subscribe_delay=10, seed=3)
    h.subscribe()
    h.advance(11.0)
    t0 = h.requests()[0].at
    h.respond(status=404)
    assert h.row()["timer_at"] == pytest.approx(11.0 + 120)
    assert t0 <= 10


def test_failover_guard_and_stale_response_of_abandoned_transaction() -> None:
    """FAILOVER (60 s) fires when the transaction outlives it; a late 200 of the abandoned
    transaction is dropped (B9 fixed in both profiles)."""
    h = ser(transaction_timeout=90)
    h.subscribe()
    old = h.last_subscribe()
    h.advance(60.0)
    assert h.state() == "waiting"
    h.respond(old, status=200)
    assert h.state() == "waiting"
    assert h.agent.counters.get("rx.unmatched_responses", 0) \
        + h.agent.counters.get("rx.stale_responses", 0) >= 1
    h.advance(180.0)
    assert len(h.subscribes()) == 2 and h.last_subscribe().call_id != old.call_id


def test_ser_close_sends_nothing() -> None:
    """B13 reproduced: no unsubscribe on shutdown; the subscriptions are forgotten."""
    h = ser()
    h.subscribe()
    h.respond()
    h.close()
    assert h.agent.is_idle
    assert len(h.subscribes()) == 1
    assert not any(k.kind is TimerKind.SUBSCRIPTION for k in h.timers)


def test_handle_presence_subscriptions_zero_accepts_and_ignores() -> None:
    h = ser(handle_presence_subscriptions=0)
    handle = h.subscribe()
    assert handle == 1
    assert h.sent == [] and h.agent.is_idle


def test_ser_no_failure_reports_ever() -> None:
    h = ser()
    h.subscribe()
    for status in (404, 423, 489, 503, 603):
        h.respond(status=status)
        h.advance(h.now + 120)
    assert h.delivered == []
    assert not any(isinstance(e, Deliver) for e in h.log)


def test_ser_423_is_a_plain_failure_same_expires() -> None:
    h = ser()
    h.subscribe()
    h.respond(status=423, headers=[("Min-Expires", "7200")])
    assert h.state() == "waiting"
    h.advance(120.0)
    assert h.last_subscribe().expires == 3600


def test_ser_notify_is_not_checked() -> None:
    """B8 reproduced: no Event, CSeq-order or Content-Type checks in `ser`."""
    h = ser()
    h.subscribe()
    h.respond()
    assert h.notify(cseq=50).status == 200
    assert h.notify(cseq=40).status == 200  # lower CSeq: still 200 and delivered
    assert h.notify(event=None).status == 200
    assert h.notify(event="dialog").status == 200
    assert len(h.delivered) == 4


def test_ser_refresh_in_dialog_uses_notify_contact() -> None:
    """UPDATE-FROM-NOTIFY refreshes the remote target (§3.3)."""
    h = ser()
    h.subscribe()
    h.respond()
    data = h.notify_bytes().replace(b"Contact: <sip:127.0.0.1:5070>",
                                    b"Contact: <sip:127.0.0.1:5071>")
    h.feed(data)
    h.advance(570.0)
    assert h.last_subscribe().uri == "sip:127.0.0.1:5071"
    assert h.sent[-1].destination == ("127.0.0.1", 5071)
