"""SIP URI and name-addr parsing, round trips, §19.1.4 comparison, address()."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from reference.sip import NameAddr, SipParseError, SipUri, parse_name_addr, parse_uri
from reference.sip.uri import _USUAL_NAME_ADDR, _parse_name_addr, parse_name_addr_uncached


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


def _outcome(parse: Callable[[str, str], NameAddr], text: str) -> object:
    """What ``parse`` gives for ``text``: its NameAddr (fields and params as a dict), or the
    error's type and text."""
    try:
        named = parse(text, "From")
    except SipParseError as exc:
        return type(exc), str(exc)
    return named.display_name, named.uri, dict(named.params)


# Pieces of the usual From/To value and of near misses: bad characters for each part, '@',
# ':' and '>' where they do not belong, ports past 65535 or of six digits, non-ASCII digits,
# a tag with no value or in capitals, a second parameter, a display name, whitespace.
_HEADS = ["<sip:", "<sips:", "<SIP:", "<tel:", " <sip:", '"B" <sip:', "sip:", "<sip"]
_USERS = ["", "alice@", "p4385@", "a.b-c_d!~*'()&=+$,@", "a%41@", "a;b@", "a?b@", "a b@", "@",
          "a@b@", "é@", "a:b@"]
_HOSTS = ["", "lab.test", "10.2.0.1", "h_x-y", "[::1]", "h;lr", "ḧ", "h?x", "h/"]
_PORTS = ["", ":", ":0", ":5060", ":65535", ":65536", ":99999", ":123456", ":١٢", ":5060a",
          ":1:2", ":000080"]
_CLOSES = [">", "", ">>", " >"]
_TAILS = ["", ";tag=0cffa81ddd8d", ";tag=", ";TAG=x", ";tag=a;tag=b", ";tag=x;lr",
          ";tag=a`'~%.!*_+-", ";tag=a b", ";tag=a=b", ";tag=é", ";tag", "; tag=x", ";tag=x ",
          " ;tag=x", "junk", ">", ";tag=x;", ";tag=a\"b", ";tag=<x>", ";t=x"]


def test_usual_name_addr_match_is_the_general_parse() -> None:
    """The match of the usual From or To value gives what the general parse gives (same
    value, same error) for every combination of usual and near-miss pieces."""
    matched = 0
    for pieces in itertools.product(["<sip:"], _USERS, _HOSTS, _PORTS, _CLOSES, _TAILS):
        text = "".join(pieces)
        matched += _USUAL_NAME_ADDR.fullmatch(text) is not None
        assert _outcome(parse_name_addr_uncached, text) == _outcome(_parse_name_addr, text)
    assert matched > 100  # (the match is tried, not only the general parse)
    for head, user, host in itertools.product(_HEADS, _USERS, _HOSTS):
        text = f"{head}{user}{host}>;tag=1"
        assert _outcome(parse_name_addr_uncached, text) == _outcome(_parse_name_addr, text)


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet="<>sipSIP:@ab.1;tag=x\"% \t", max_size=40))
def test_usual_name_addr_match_is_the_general_parse_on_any_text(text: str) -> None:
    assert _outcome(parse_name_addr_uncached, text) == _outcome(_parse_name_addr, text)


@pytest.mark.parametrize(
    "text",
    ["<sip:p4385@lab.test>;tag=0cffa81ddd8d", "<sip:w901@b2b.test>", "<sip:lab.test:5060>",
     "<sip:a@b:65535>;tag=x"],
)
def test_usual_name_addr_is_matched(text: str) -> None:
    """The usual values take the match (and give the general parse's value)."""
    assert _USUAL_NAME_ADDR.fullmatch(text) is not None
    assert _outcome(parse_name_addr_uncached, text) == _outcome(_parse_name_addr, text)
