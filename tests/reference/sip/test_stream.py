"""Content-Length framing on a stream (RFC 3261 §18.3): split and joined messages, pings,
and the faults that break a stream."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.sip import SipParseError, parse_message
from reference.sip.limits import ParseLimits
from reference.sip.stream import StreamFramer


def message(body: bytes = b"", *, length: str | None = None, name: str = "Content-Length") -> \
        bytes:
    head = (b"NOTIFY sip:a@127.0.0.1;transport=tcp SIP/2.0\r\n"
            b"Via: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bK1\r\n"
            b"From: <sip:b@h>;tag=1\r\nTo: <sip:a@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 NOTIFY\r\n")
    value = str(len(body)) if length is None else length
    return head + f"{name}: {value}\r\n\r\n".encode() + body


def test_messages_split_anywhere_and_joined_are_framed_exactly() -> None:
    stream = message(b"<presence/>") + b"\r\n\r\n" + message(b"x" * 300, name="l") + message()
    for cut in range(0, len(stream), 37):
        framer = StreamFramer()
        out = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
        assert out == [message(b"<presence/>"), message(b"x" * 300, name="l"), message()]
        assert framer.pings == 1 and framer.buffered == 0
    assert parse_message(out[1]).body == b"x" * 300


@pytest.mark.parametrize(("data", "reason"), [
    (message(length=None).replace(b"Content-Length: 0\r\n", b""), "missing header: Content-Length"),
    (message(length="abc"), "bad Content-Length: 'abc'"),
    (message(length="99999999999"), "bad Content-Length"),
    (message(length="70000"), "message too large: "),
    (message(length="0").replace(b"\r\n\r\n", b"\r\nl: 5\r\n\r\n"), "two different values"),
])
def test_unframeable_streams_break_for_good(data: bytes, reason: str) -> None:
    framer = StreamFramer()
    with pytest.raises(SipParseError, match=reason):
        framer.feed(data)
    with pytest.raises(SipParseError, match=reason):
        framer.feed(message())  # nothing after the fault can be trusted


def test_an_endless_header_section_is_cut_at_the_message_limit() -> None:
    framer = StreamFramer(ParseLimits(max_message_bytes=1000))
    framer.feed(b"NOTIFY sip:a@h SIP/2.0\r\n" + b"X: y\r\n" * 100)
    assert framer.buffered <= 1000
    with pytest.raises(SipParseError, match="no end of headers within 1000 bytes"):
        framer.feed(b"X: y\r\n" * 100)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=6))
def test_arbitrary_chunks_give_messages_or_a_parse_error_only(chunks: list[bytes]) -> None:
    framer = StreamFramer(ParseLimits(max_message_bytes=2000))
    for chunk in chunks:
        try:
            framer.feed(chunk)
        except SipParseError:
            return
        assert framer.buffered <= 2000
