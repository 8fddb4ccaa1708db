"""Hypothesis properties: serialise/parse round trips and total robustness on any input."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference.sip import (
    Headers,
    NameAddr,
    Request,
    Response,
    SipParseError,
    canonical_name,
    check_mandatory,
    make_response,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
)
from reference.sip.message import Message

CORPUS = Path(__file__).parent / "corpus"
SEEDS = [p.read_bytes() for p in sorted(CORPUS.glob("*.sip")) if p.stat().st_size < 4000]
TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

tokens = st.text(TOKEN_ALPHABET, min_size=1, max_size=12)
lower_tokens = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=10)
header_names = st.one_of(
    st.sampled_from(["Via", "From", "To", "Call-ID", "CSeq", "Contact", "Event", "v", "i",
                     "Subscription-State", "Accept", "Expires", "Content-Type"]),
    tokens,
).filter(lambda n: canonical_name(n) != "Content-Length")  # fmt: skip
# Any single-line text; surrounding SP/HT are not significant in SIP so they are stripped.
header_values = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), max_size=40
).map(lambda v: v.strip(" \t"))
SINGLE_VALUE = {"call-id", "cseq", "from", "to", "max-forwards"}


def _no_repeated_single_value(items: list[tuple[str, str]]) -> bool:
    """The parser refuses a single-value header twice (RFC 4475 §3.3.8), so a message that
    round-trips has each at most once."""
    keys = [canonical_name(name).lower() for name, _ in items]
    single = [key for key in keys if key in SINGLE_VALUE]
    return len(single) == len(set(single))


header_lists = st.lists(st.tuples(header_names, header_values), max_size=12).filter(
    _no_repeated_single_value)
bodies = st.binary(max_size=200)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    headers = Headers(draw(header_lists))
    body = draw(bodies)
    if draw(st.booleans()):
        scheme = draw(st.sampled_from(["sip", "sips", "tel", "pres"]))
        # A SIP Request-URI must parse (a host here); other schemes are only URI-shaped.
        uri = scheme + ":" + draw(lower_tokens if scheme.startswith("sip") else tokens)
        return Request(draw(tokens), uri, headers, body)
    reason = draw(st.text(st.characters(blacklist_categories=["Cs"],
                                        blacklist_characters="\r\n"), max_size=20))  # fmt: skip
    return Response(draw(st.integers(100, 699)), reason, headers, body)


@SETTINGS
@given(messages())
def test_serialise_then_parse_is_identity(message: Message) -> None:
    assert parse_message(message.to_bytes()) == message


def _touch_everything(message: Message) -> None:
    """Read every accessor; each may only raise SipParseError."""
    for name in ("vias", "from_", "to", "call_id", "cseq", "contacts", "routes",
                 "record_routes", "expires", "min_expires", "retry_after", "event",
                 "subscription_state", "content_type", "max_forwards", "accept"):  # fmt: skip
        try:
            getattr(message, name)
        except SipParseError as exc:
            assert exc.message is message
    with contextlib.suppress(SipParseError):
        check_mandatory(message)
    if isinstance(message, Request):
        with contextlib.suppress(SipParseError):
            make_response(message, 400, to_tag="x")
    for name, _ in message.headers.items():
        with contextlib.suppress(SipParseError):  # e.g. an unterminated quote in a list
            message.headers.get_all(name)
    message.to_bytes()


def _parse_and_touch(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SipParseError as exc:
        if exc.message is not None:
            assert isinstance(exc.message, Request | Response)
            _touch_everything(exc.message)
        return
    _touch_everything(message)


@SETTINGS
@given(st.binary(max_size=600))
def test_arbitrary_bytes_only_raise_sip_parse_error(data: bytes) -> None:
    _parse_and_touch(data)


# Delimiters the parsers care about: splicing them in reaches the tricky branches quickly.
SPLICES = [b",", b";", b"<", b">", b'"', b"\\", b":", b"@", b"%", b"[", b"]", b"\r\n",
           b"\r\n ", b"(", b"=", b" ", b"?", b"\xff", b"/", b"*"]  # fmt: skip


@st.composite
def mutated_seeds(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["replace", "insert", "delete", "splice"]))
        if action == "splice":
            chunk = draw(st.sampled_from(SPLICES))
        else:
            chunk = draw(st.binary(min_size=1, max_size=4))
        if action == "delete":
            del data[pos : pos + len(chunk)]
        elif action == "replace":
            data[pos : pos + len(chunk)] = chunk
        else:
            data[pos:pos] = chunk
    return bytes(data)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_seeds())
def test_mutated_messages_only_raise_sip_parse_error(data: bytes) -> None:
    _parse_and_touch(data)


hosts = st.one_of(
    st.lists(lower_tokens.filter(lambda t: "." not in t), min_size=1, max_size=3).map(".".join),
    st.sampled_from(["192.0.2.1", "[2001:db8::1]", "[::1]"]),
)
escaped_user = st.text("abcXYZ019-_.!~*'()&=+$,;?/", min_size=1, max_size=10).map(
    lambda u: u + "%41"
)  # fmt: skip
uri_params = st.dictionaries(lower_tokens, st.one_of(st.none(), lower_tokens), max_size=3)


@st.composite
def sip_uri_texts(draw: st.DrawFn) -> str:
    out = draw(st.sampled_from(["sip:", "sips:"]))
    if draw(st.booleans()):
        out += draw(st.one_of(lower_tokens, escaped_user))
        if draw(st.booleans()):
            out += ":" + draw(lower_tokens)
        out += "@"
    out += draw(hosts)
    if draw(st.booleans()):
        out += f":{draw(st.integers(1, 65535))}"
    for name, value in draw(uri_params).items():
        out += f";{name}" if value is None else f";{name}={value}"
    headers = draw(st.dictionaries(lower_tokens, lower_tokens, max_size=2))
    if headers:
        out += "?" + "&".join(f"{k}={v}" for k, v in headers.items())
    return out


@SETTINGS
@given(sip_uri_texts())
def test_uri_text_round_trip_and_self_equivalence(text: str) -> None:
    uri = parse_uri(text)
    assert str(uri) == text
    # Host and parameter values compare case-insensitively; a different port never matches.
    shouted = replace(
        uri,
        host=uri.host.upper(),
        params={k: v if v is None else v.upper() for k, v in uri.params.items()},
    )
    assert uri.equivalent(shouted) and shouted.equivalent(uri)
    assert not uri.equivalent(replace(uri, port=(uri.port or 5060) % 65535 + 1))
    assert uri.equivalent(uri)


@SETTINGS
@given(
    st.one_of(st.none(), st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=15)),
    sip_uri_texts(),
    st.dictionaries(lower_tokens, st.one_of(st.none(), tokens), max_size=3),
)
def test_name_addr_round_trip(display: str | None, uri: str, params: dict[str, str | None]) -> None:
    name_addr = NameAddr(display, uri, params)
    assert parse_name_addr(str(name_addr)) == name_addr


@SETTINGS
@given(
    st.sampled_from(["UDP", "TCP", "TLS"]),
    hosts,
    st.one_of(st.none(), st.integers(1, 65535)),
    st.dictionaries(lower_tokens, st.one_of(st.none(), lower_tokens), max_size=3),
)
def test_via_round_trip(
    transport: str, host: str, port: int | None, params: dict[str, str | None]
) -> None:
    params = {k: v for k, v in params.items() if k not in ("rport", "ttl", "received", "maddr",
                                                            "branch")}  # fmt: skip
    text = f"SIP/2.0/{transport} {host}" + ("" if port is None else f":{port}")
    text += "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())
    via = parse_via(text)
    assert str(via) == text and parse_via(str(via)) == via
