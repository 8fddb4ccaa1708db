"""SIP URI and name-addr parsing, round trips, §19.1.4 comparison, address()."""

from __future__ import annotations

import pytest

from reference.sip import NameAddr, SipParseError, SipUri, parse_name_addr, parse_uri


@pytest.mark.parametrize(
    "text",
    [
        "sip:example.com",
        "sips:alice@example.com:5061",
        "sip:alice:secret@192.0.2.1;transport=tcp",
        "sip:+1-212-555-1212:1234@gateway.com;user=phone",
        "sip:alice;day=tuesday@example.com",
        "sip:%61lice@example.com;lr;maddr=239.255.255.1;ttl=15",
        "sip:[2001:db8::10]:5070;lr",
        "sip:bob@example.com?subject=project%20x&priority=urgent",
    ],
)
def test_round_trip(text: str) -> None:
    assert str(parse_uri(text)) == text


def test_components() -> None:
    uri = parse_uri("SIPS:al%20ice:pw@[::1]:5070;Transport=TCP;lr?h=v")
    assert uri == SipUri("sips", "al%20ice", "pw", "[::1]", 5070, {"transport": "TCP", "lr": None},
                         {"h": "v"})  # fmt: skip
    assert uri.address() == ("::1", 5070)
    assert parse_uri("sips:h").address() == ("h", 5061)
    assert parse_uri("sip:h;maddr=192.0.2.5").address() == ("192.0.2.5", 5060)


@pytest.mark.parametrize(
    "text",
    [
        "tel:+123",
        "sip:",
        "sip:@host",
        "sip:a@",
        "sip:a@host:70000",
        "sip:a@host:",
        "sip:a@[::1",
        "sip:a@[zz]",
        "sip:a b@host",
        "sip:a@ho st",
        "sip:a@host;=x",
        "sip:a@host;lr;lr",
        "sip:a%2@host",
        "sip:a@host?noval",
        "no-colon",
    ],
)
def test_bad_uris(text: str) -> None:
    with pytest.raises(SipParseError, match="bad URI"):
        parse_uri(text)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;newparam=5"),
        ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
         "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
        ("sip:a@[2001:db8::1]", "sip:a@[2001:DB8:0::1]"),
    ],
)  # fmt: skip
def test_equivalent(a: str, b: str) -> None:
    assert parse_uri(a).equivalent(parse_uri(b))
    assert parse_uri(b).equivalent(parse_uri(a))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com", "sips:bob@biloxi.com"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:a:x@h", "sip:a:y@h"),
        ("sip:h", "sip:u@h"),
    ],
)
def test_not_equivalent(a: str, b: str) -> None:
    assert not parse_uri(a).equivalent(parse_uri(b))
    assert not parse_uri(b).equivalent(parse_uri(a))


def test_name_addr_forms() -> None:
    quoted = parse_name_addr('"Bob \\"B\\"" <sip:b@x;p=1>;tag=9;Foo')
    assert quoted == NameAddr('Bob "B"', "sip:b@x;p=1", {"tag": "9", "foo": None})
    assert quoted.tag == "9"
    assert parse_name_addr(str(quoted)) == quoted
    spec = parse_name_addr("sip:b@x;tag=9")
    assert spec == NameAddr(None, "sip:b@x", {"tag": "9"})
    assert str(spec) == "<sip:b@x>;tag=9"
    tokens = parse_name_addr("Bob   Smith<sip:b@x>")
    assert tokens.display_name == "Bob Smith" and tokens.params == {}
    assert parse_name_addr('"" <sip:b@x>').display_name == ""
    assert parse_name_addr("<sip:b@x>").with_param("tag", "1").tag == "1"
    assert parse_name_addr("<sip:b@x:5070>").sip_uri().port == 5070


def test_non_sip_uris_are_opaque_in_name_addr() -> None:
    pres = parse_name_addr('"P" <pres:bob@example.com>;x=1')
    assert pres.uri == "pres:bob@example.com" and pres.params == {"x": "1"}
    assert parse_name_addr("tel:+1-201-555-0123;tag=z").uri == "tel:+1-201-555-0123"
    with pytest.raises(SipParseError):
        pres.sip_uri()


@pytest.mark.parametrize(
    "text",
    [
        "",
        '"Bob <sip:b@x>',
        '"Bob" sip:b@x',
        "<sip:b@x",
        "<sip:b@x>junk",
        "<sip:b@>;tag=1",
        "<nocolon>",
        "<sip:b@x>;tag=1;tag=2",
        'Bo"b <sip:b@x>',
        "<sip:b@x>;tag=",
    ],
)
def test_bad_name_addr(text: str) -> None:
    with pytest.raises(SipParseError, match="bad name-addr"):
        parse_name_addr(text)
