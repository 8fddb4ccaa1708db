"""The speed-ups of the agent core keep behaviour: lookup index and caches follow mutation,
cached parsers hand out immutable values, and the new helper parameters do what they say."""

from __future__ import annotations

import pytest

from reference.sip import Headers, Request, SipParseError, make_response, parse_message
from reference.sip.headers import (
    _parse_via,
    lookup_key,
    parse_contact,
    parse_content_type,
    parse_event,
    parse_subscription_state,
    parse_via,
)
from reference.sip.transaction import ServerTransaction, TimerSettings, server_key
from reference.sip.uri import parse_name_addr
from reference.ua import received_via

NOTIFY = (
    b"NOTIFY sip:a@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1;rport\r\n"
    b"v: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK0\r\n"
    b"Max-Forwards: 70\r\nf: <sip:b@x>;tag=1\r\nTo: <sip:a@y>;tag=2\r\n"
    b"Call-ID: c1\r\nCSeq: 3 NOTIFY\r\nEvent: presence\r\n"
    b"Subscription-State: active;expires=60\r\nContent-Length: 0\r\n\r\n"
)


def _notify() -> Request:
    message = parse_message(NOTIFY)
    assert isinstance(message, Request)
    return message


def test_lookup_key_expands_compact_and_folds_case() -> None:
    assert lookup_key("v") == lookup_key("VIA") == "via"
    assert lookup_key("X-Custom") == "x-custom"


def test_index_follows_every_mutation() -> None:
    headers = Headers([("Via", "a"), ("X-A", "1")])
    assert headers.get("x-a") == "1" and "X-B" not in headers
    headers.add("X-B", "2")
    assert headers.get("X-B") == "2" and "x-b" in headers
    headers.set("X-A", "3")
    assert headers.values("X-A") == ["3"]
    headers.remove("X-A")
    assert headers.get("X-A") is None and headers.values("X-A") == []
    # values() hands out a copy: changing it does not change the headers
    headers.values("Via").append("b")
    assert headers.values("Via") == ["a"]


def test_top_via_is_first_via_and_vias_is_a_copy() -> None:
    message = _notify()
    assert message.top_via is not None and message.top_via.branch == "z9hG4bK1"
    vias = message.vias
    vias.clear()
    assert len(message.vias) == 2


def test_cached_parsers_give_immutable_values() -> None:
    """A cached value is shared by every caller, so nothing of it can be changed."""
    values = [
        parse_name_addr("<sip:b@x>;tag=1"), parse_event("presence;id=1"),
        parse_content_type("application/pidf+xml;charset=utf-8"),
        parse_subscription_state("terminated;reason=timeout;retry-after=5;x=1"),
        parse_contact("<sip:b@x>;expires=5"),
        parse_via("SIP/2.0/UDP h:5060;branch=z9hG4bK1;rport"),
    ]
    for value in values:
        with pytest.raises(TypeError):
            value.params["tag"] = "changed"  # type: ignore[index]
        with pytest.raises(AttributeError):
            value.params.clear()  # type: ignore[attr-defined]
        with pytest.raises(AttributeError):
            value.params = {}  # type: ignore[misc]
    assert parse_name_addr("<sip:b@x>;tag=1") is values[0]  # the cache hands out one value
    again = parse_subscription_state("terminated;reason=timeout;retry-after=5;x=1")
    assert (again.reason, again.retry_after, dict(again.params)) == ("timeout", 5, {"x": "1"})


def test_a_via_of_a_known_shape_is_the_via_of_its_full_parse() -> None:
    """parse_via reuses the rest of a Via whose branch alone changed: the result is the one
    the full parse gives (branch in place, other parameters as written)."""
    first = parse_via("SIP/2.0/UDP 10.0.0.9:5070;rport;branch=z9hG4bKa1;x=y")
    second = parse_via("SIP/2.0/UDP 10.0.0.9:5070;rport;branch=z9hG4bKb2;x=y")
    assert first.branch == "z9hG4bKa1" and second.branch == "z9hG4bKb2"
    assert list(second.params.items()) == [("rport", None), ("branch", "z9hG4bKb2"),
                                           ("x", "y")]
    assert second == _parse_via("SIP/2.0/UDP 10.0.0.9:5070;rport;branch=z9hG4bKb2;x=y")
    assert first.params["branch"] == "z9hG4bKa1"  # the earlier value did not change
    # A branch that is not plain, or a quote before ";branch=", takes the full parse.
    with pytest.raises(SipParseError):
        parse_via("SIP/2.0/UDP 10.0.0.9:5070;rport;branch=a=b;x=y")
    quoted = 'SIP/2.0/UDP h;x=";branch=q";branch=z9hG4bK1'
    assert parse_via(quoted).branch == "z9hG4bK1"
    assert parse_via(quoted.replace("z9hG4bK1", "z9hG4bK2")).params["x"] == '";branch=q"'


def test_make_response_top_via_replaces_only_first_via_line() -> None:
    response = make_response(_notify(), 200, top_via="SIP/2.0/UDP h;branch=z9hG4bK1;rport=9")
    assert response.headers.values("Via") == [
        "SIP/2.0/UDP h;branch=z9hG4bK1;rport=9", "SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK0"]
    plain = make_response(_notify(), 200)
    assert plain.headers.values("Via")[0] == "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1;rport"


def test_server_transaction_key_and_release_of_request() -> None:
    request = _notify()
    key = server_key(request)
    tx = ServerTransaction(request, TimerSettings(), key=key)
    assert tx.key == key and tx.request is request
    tx.send_response(make_response(request, 200), now=0.0)
    assert tx.request is None  # completed: only the response bytes are kept
    effects = tx.receive_request(request, now=1.0)
    assert [type(e).__name__ for e in effects] == ["Transmit"]


def test_single_is_the_value_of_exactly_one_field_line() -> None:
    headers = Headers([("Contact", "<sip:a@x>"), ("Via", "a"), ("v", "b")])
    assert headers.single("m") == "<sip:a@x>"  # compact form of Contact
    assert headers.single("Via") is None  # two lines
    assert headers.single("Route") is None  # none
    headers.add("Contact", "<sip:b@x>")
    assert headers.single("Contact") is None


@pytest.mark.parametrize("value", ["1 NOTIFY", "4294967295 NOTIFY", "429496729 SUBSCRIBE",
                                   "01 NOTIFY", "1 NOTIFY ", "1  NOTIFY", "1 notify",
                                   "x NOTIFY", "1 FOO", "\u0661 NOTIFY", ""])
def test_a_cached_usual_cseq_is_the_fresh_parse(value: str) -> None:
    """usual_cseq keeps the CSeq of each usual value seen: a second read (from the cache)
    gives what the first gave, and what parse_cseq gives."""
    from reference.sip.headers import _CSEQS, parse_cseq, usual_cseq

    _CSEQS.clear()
    first = usual_cseq(value)
    assert usual_cseq(value) == first
    assert (value in _CSEQS) == (first is not None)
    if first is not None:
        assert first == parse_cseq(value) and type(first.number) is int


@pytest.mark.parametrize("name", ["From", "f", "from", "X-Custom", "content-length"])
def test_headers_add_of_a_known_name_is_the_first_adds(name: str) -> None:
    """Headers.add keeps the spelling of each valid name added: a second add (from that
    cache) gives the field the first gave; invalid names are never kept."""
    from reference.sip.headers import _ADDED_NAMES

    _ADDED_NAMES.clear()
    first, second = Headers(), Headers()
    first.add(name, "v")
    second.add(name, "v")
    assert first.items() == second.items() and second.get(name) == "v"
    assert name in second and second.single(name) == "v" and "Other" not in second
    for bad in ("", "Bad Name", "Bad:Name"):
        with pytest.raises(ValueError, match="bad header name"):
            first.add(bad, "v")
        assert bad not in _ADDED_NAMES


def test_kept_to_and_call_id_follow_mutation() -> None:
    """To and Call-ID are kept in the typed cache once read (or checked by check_mandatory):
    a mutation of the headers drops them, a bad value is an error on every read."""
    from reference.sip import check_mandatory

    message = _notify()
    check_mandatory(message)
    assert message.to.tag == "2" and message.call_id == "c1"
    message.headers.set("To", "<sip:a@y>;tag=3")
    message.headers.set("Call-ID", "c2")
    assert message.to.tag == "3" and message.call_id == "c2"
    message.headers.set("Call-ID", "bad id")
    for _ in range(2):
        with pytest.raises(SipParseError, match="bad Call-ID") as info:
            message.call_id  # noqa: B018
        assert info.value.message is message


@pytest.mark.parametrize("via", [
    "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1", "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1;rport",
    "SIP/2.0/UDP 10.0.0.1;rport=5070;branch=z9hG4bK1", "SIP/2.0/UDP h.test;branch=z9hG4bK1;rport",
    "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;received=10.0.0.1;rport"])
@pytest.mark.parametrize("destination", [("10.0.0.1", 5070), ("10.0.0.2", 5999)])
def test_received_via_is_the_top_via_with_received_and_rport_filled(
        via: str, destination: tuple[str, int]) -> None:
    """received_via (its one-test shortcut for the usual request included) gives the top
    Via with ``received`` added when the host differs and a bare ``rport`` filled, or None
    when neither applies (RFC 3261 §18.2.1, RFC 3581 §4)."""
    request = parse_message(NOTIFY.replace(
        b"Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1;rport", b"Via: " + via.encode()))
    assert isinstance(request, Request)
    top = parse_via(via)
    expected = top
    if top.host != destination[0]:
        expected = expected.with_param("received", destination[0])
    if "rport" in top.params and top.params["rport"] is None:
        expected = expected.with_param("rport", str(destination[1]))
    assert received_via(request, destination) == (None if expected is top else str(expected))
