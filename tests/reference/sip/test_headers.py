"""Typed header values: one block per header type, good and bad values."""

from __future__ import annotations

import pytest

from reference.sip import (
    ContentType,
    CSeq,
    EventHeader,
    SipParseError,
    SubscriptionState,
    Via,
    parse_call_id,
    parse_contact,
    parse_content_type,
    parse_cseq,
    parse_event,
    parse_expires,
    parse_max_forwards,
    parse_media_range,
    parse_retry_after,
    parse_subscription_state,
    parse_via,
)


def test_via() -> None:
    via = parse_via("SIP/2.0/udp 192.0.2.1:5062;branch=z9hG4bK1;received=10.0.0.1;rport=7;x")
    assert (via.transport, via.host, via.port, via.branch) == ("UDP", "192.0.2.1", 5062,
                                                               "z9hG4bK1")  # fmt: skip
    assert via.received == "10.0.0.1" and via.rport == 7 and via.params["x"] is None
    assert str(via) == "SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK1;received=10.0.0.1;rport=7;x"
    bare = parse_via("SIP / 2.0 / TCP\t[2001:db8::1] ;rport;ttl=3;maddr=239.1.1.1")
    assert bare.has_rport and bare.rport is None
    assert bare.port is None and bare.host == "[2001:db8::1]"
    assert bare.ttl == 3 and bare.maddr == "239.1.1.1"
    assert parse_via("SIP/2.0/UDP h").rport is None
    assert not parse_via("SIP/2.0/UDP h").has_rport and via.has_rport
    assert parse_via(str(bare)) == bare
    assert bare.with_param("received", "1.2.3.4").received == "1.2.3.4"
    assert Via("UDP", "h", 5060, {"branch": "b"}).sent_by == ("h", 5060)


@pytest.mark.parametrize(
    "value",
    ["", "SIP/2.0/UDP", "SIP/2.0 h", "SIP/2.0/UDP h:x", "SIP/2.0/UDP h;rport=abc",
     "SIP/2.0/UDP h;ttl=300", "SIP/2.0/UDP h;received", "SIP/2.0/UDP h;received=a b",
     "SIP/2.0/UDP h;branch", "SIP/2.0/UDP h;rport=99999", "SIP/2.0/UDP h junk"],
)  # fmt: skip
def test_bad_via(value: str) -> None:
    with pytest.raises(SipParseError, match="bad Via"):
        parse_via(value)


def test_cseq_and_call_id_and_numbers() -> None:
    assert parse_cseq(" 4294967295   SUBSCRIBE ") == CSeq(2**32 - 1, "SUBSCRIBE")
    assert str(CSeq(1, "NOTIFY")) == "1 NOTIFY"
    for bad in ("abc", "1", "1 2 3", "-1 NOTIFY", "4294967296 NOTIFY", "1 NOT/IFY", "9" * 5000):
        with pytest.raises(SipParseError, match="bad CSeq"):
            parse_cseq(bad)
    assert parse_call_id("a84b4c76e66710@pc33.atlanta.com") == "a84b4c76e66710@pc33.atlanta.com"
    for bad in ("", "a b", "a\x00b"):
        with pytest.raises(SipParseError, match="bad Call-ID"):
            parse_call_id(bad)
    assert parse_max_forwards("0") == 0 and parse_max_forwards("255") == 255
    for bad in ("256", "-1", "x", "", "1" * 50):
        with pytest.raises(SipParseError, match="bad Max-Forwards"):
            parse_max_forwards(bad)
    assert parse_expires("3600") == 3600
    assert parse_expires("9" * 5000) == 2**32 - 1  # clamped, and no int() on huge strings
    # delta-seconds = 1*DIGIT: leading zeros do not change the value, however many.
    assert parse_expires("000000000000600") == 600
    assert parse_expires("0" * 5000 + "7") == 7
    assert parse_expires("0" * 20) == 0
    assert parse_expires("0" * 5 + "4294967296") == 2**32 - 1
    with pytest.raises(SipParseError, match="bad Min-Expires: '1h'"):
        parse_expires("1h", "Min-Expires")


def test_retry_after() -> None:
    assert parse_retry_after("120") == 120
    assert parse_retry_after("18000;duration=3600") == 18000
    assert parse_retry_after("120 (I'm in a (nested) meeting) ;duration=60") == 120
    for bad in ("", "soon", "120 (unterminated", "120 junk", "(x) 5", "120 " + "(" * 40 + ")" * 40):
        with pytest.raises(SipParseError, match="bad Retry-After"):
            parse_retry_after(bad)


def test_contact() -> None:
    star = parse_contact(" * ")
    assert star.is_star and star.uri is None and str(star) == "*" and star.q is None
    contact = parse_contact('"Bob" <sip:bob@h>;q=0.7;expires=60;+sip.instance="<urn:x>"')
    assert contact.uri == "sip:bob@h" and contact.q == 0.7 and contact.expires == 60
    assert contact.params["+sip.instance"] == '"<urn:x>"'
    assert parse_contact("sip:bob@h;q=1.000").q == 1.0
    assert parse_contact("<sip:bob@h>").expires is None
    for bad in ("<sip:bob@h>;q=2", "<sip:bob@h>;q=0.1234", "<sip:bob@h>;q=x",
                "<sip:bob@h>;expires=soon", "<sip:bob@h>;expires", "<bob>"):  # fmt: skip
        with pytest.raises(SipParseError, match="bad Contact"):
            parse_contact(bad)


def test_event() -> None:
    event = parse_event("presence;id=123;Foo=bar")
    assert event == EventHeader("presence", {"id": "123", "foo": "bar"})
    assert event.id == "123" and str(event) == "presence;id=123;foo=bar"
    assert parse_event("presence.winfo").package == "presence.winfo"
    assert parse_event("presence").id is None
    for bad in ("", ";id=1", "pres ence", ".presence", "presence;id=", "presence;id"):
        with pytest.raises(SipParseError, match="bad Event"):
            parse_event(bad)


def test_subscription_state() -> None:
    state = parse_subscription_state("Terminated;Reason=timeout;retry-after=30;x-y=1")
    assert state.value == "Terminated" and state.state == "terminated"
    assert state.reason == "timeout" and state.retry_after == 30 and state.expires is None
    assert state.params == {"x-y": "1"}
    assert parse_subscription_state(str(state)) == state
    assert parse_subscription_state("active;expires=60").expires == 60
    assert SubscriptionState("pending").state == "pending"
    for bad in ("", "active;expires=x", "active;expires", 'terminated;reason="a b"', "a b"):
        with pytest.raises(SipParseError, match="bad Subscription-State"):
            parse_subscription_state(bad)


def test_content_type_and_accept() -> None:
    ctype = parse_content_type("Application/PIDF+XML ; charset=UTF-8")
    assert ctype == ContentType("Application", "PIDF+XML", {"charset": "UTF-8"})
    assert ctype.mime == "application/pidf+xml"
    assert parse_content_type(str(ctype)) == ctype
    for bad in ("", "text", "text/", "*/*", "text/plain;", 'text/plain;charset="x'):
        with pytest.raises(SipParseError, match="bad Content-Type"):
            parse_content_type(bad)
    assert parse_media_range(" */*;q=0.1 ") == "*/*;q=0.1"
    with pytest.raises(SipParseError, match="bad Accept"):
        parse_media_range("pidf")


@pytest.mark.parametrize("state", ["active", "pending", "Active", "terminated", "x-y.z", "",
                                   " active", "act ive", "a;b", "active;reason=x"])
@pytest.mark.parametrize("param", [";expires=", ";EXPIRES=", ";expires", ";expires= ",
                                   ";x=1;expires="])
@pytest.mark.parametrize("seconds", ["0", "60", "3600", "0060", "4294967295", "4294967296",
                                     "9999999999", "99999999999", "", "1a", "\u0661\u0662",
                                     "60;reason=timeout", "60 ", "60;x", "60;expires=5"])
def test_usual_subscription_state_is_the_general_parse(state: str, param: str,
                                                       seconds: str) -> None:
    # The direct read of "state;expires=N" gives what the general parse gives, and the
    # same error otherwise.
    from reference.sip.headers import _parse_subscription_state
    value = state + param + seconds
    try:
        expected = _parse_subscription_state(value)
    except SipParseError as exc:
        with pytest.raises(SipParseError) as got:
            parse_subscription_state(value)
        assert str(got.value) == str(exc)
        return
    got_value = parse_subscription_state(value)
    assert got_value == expected
    assert dict(got_value.params) == dict(expected.params)
