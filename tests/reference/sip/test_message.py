"""Framing, Headers, serialisation, make_response, check_mandatory and the corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from reference.sip import (
    Headers,
    ParseLimits,
    Request,
    Response,
    SipParseError,
    check_mandatory,
    make_response,
    parse_message,
)

CORPUS = Path(__file__).parent / "corpus"
EXPECTATIONS: dict[str, dict[str, Any]] = yaml.safe_load((CORPUS / "expectations.yaml").read_text())

NOTIFY = (
    b"NOTIFY sip:w@192.0.2.10 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.20;branch=z9hG4bK1, SIP/2.0/UDP 192.0.2.30;branch=z9hG4bK2\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.40;branch=z9hG4bK3\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:bob@example.com>;tag=f1\r\n"
    b"To: <sip:w@example.com>\r\n"
    b"Call-ID: c1@x\r\n"
    b"CSeq: 3 NOTIFY\r\n"
    b"Content-Length: 5\r\n\r\nhello"
)


def _corpus_ids() -> list[str]:
    return sorted(EXPECTATIONS)


def test_corpus_is_complete() -> None:
    files = {p.name for p in CORPUS.glob("*.sip")}
    assert files == set(EXPECTATIONS)
    assert len(files) >= 20


@pytest.mark.parametrize("name", _corpus_ids())
def test_corpus(name: str) -> None:
    expected = EXPECTATIONS[name]
    data = (CORPUS / name).read_bytes()
    if expected["outcome"] == "parse_error":
        with pytest.raises(SipParseError) as info:
            parse_message(data)
        assert expected["error"] in str(info.value)
        assert (info.value.message is not None) == expected["message_attached"]
        assert info.value.status == expected.get("status", 400)
        return
    message = parse_message(data)
    if "body_length" in expected:
        assert len(message.body) == expected["body_length"]
    if expected["outcome"] == "check_error":
        with pytest.raises(SipParseError) as info:
            check_mandatory(message)
        assert expected["error"] in str(info.value)
        assert info.value.message is message
    else:
        check_mandatory(message)
        # Canonical re-serialisation parses back to an equal message.
        assert parse_message(message.to_bytes()) == message


def test_compact_forms_expand_to_canonical_names() -> None:
    message = parse_message((CORPUS / "02_compact_forms.sip").read_bytes())
    names = [name for name, _ in message.headers.items()]
    assert names[:8] == ["Via", "Max-Forwards", "From", "To", "Call-ID", "CSeq", "Event",
                         "Allow-Events"]  # fmt: skip
    assert message.headers.get("o") == "presence"
    assert message.headers.get_all("Allow-Events") == ["presence", "dialog"]
    assert message.headers.get("Supported") == "eventlist"
    assert message.contacts[0].uri == "sip:bob@192.0.2.20"


def test_folded_lines_are_unfolded() -> None:
    message = parse_message((CORPUS / "04_line_folding.sip").read_bytes())
    assert [v.host for v in message.vias] == ["192.0.2.20", "192.0.2.30"]
    assert message.from_.tag == "9fx"
    assert message.cseq.number == 7 and message.cseq.method == "NOTIFY"


def test_odd_whitespace_values() -> None:
    message = parse_message((CORPUS / "03_odd_case_and_whitespace.sip").read_bytes())
    via = message.vias[0]
    assert (via.host, via.port, via.branch) == ("192.0.2.20", 5060, "z9hG4bKodd")
    assert message.from_.display_name == 'Bob "the" Builder'
    assert message.from_.tag == "9fx"
    state = message.subscription_state
    assert state is not None and state.value == "ACTIVE" and state.state == "active"
    assert state.expires == 60


def test_content_length_rules() -> None:
    message = parse_message(NOTIFY + b"trailing")
    assert message.body == b"hello"
    assert "Content-Length" not in message.headers  # framing data, recomputed on output
    no_length = NOTIFY.replace(b"Content-Length: 5\r\n", b"")
    assert parse_message(no_length + b"XY").body == b"helloXY"
    # The same value twice is still two values of a single-value header (RFC 4475 §3.3.9).
    same_twice = NOTIFY.replace(b"Content-Length: 5\r\n", b"l: 5\r\nContent-Length: 5\r\n")
    with pytest.raises(SipParseError, match="duplicate header: Content-Length") as info:
        parse_message(same_twice)
    assert info.value.message is not None and info.value.status == 400
    with pytest.raises(SipParseError, match="bad Content-Length: 6 exceeds") as info:
        parse_message(NOTIFY.replace(b"Content-Length: 5", b"Content-Length: 6"))
    assert isinstance(info.value.message, Request) and info.value.message.body == b"hello"
    with pytest.raises(SipParseError, match="bad Content-Length: '9999"):
        parse_message(NOTIFY.replace(b"Content-Length: 5", b"Content-Length: " + b"9" * 4400))


def test_to_bytes_is_canonical_with_one_content_length_last() -> None:
    message = parse_message(NOTIFY)
    message.headers.add("Content-Length", "999")  # ignored: the body decides
    out = message.to_bytes()
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"NOTIFY sip:w@192.0.2.10 SIP/2.0"
    assert lines[-1] == b"Content-Length: 5"
    assert sum(1 for line in lines if line.lower().startswith(b"content-length")) == 1
    assert body == b"hello"
    response = Response(404, "Not Here", Headers([("Call-ID", "x")]))
    assert response.to_bytes() == b"SIP/2.0 404 Not Here\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n"


def test_headers_multimap() -> None:
    headers = Headers([("v", "a"), ("X-Foo", "1"), ("via", "b, c"), ("x-foo", "2")])
    assert headers.items() == [("Via", "a"), ("X-Foo", "1"), ("Via", "b, c"), ("x-foo", "2")]
    assert headers.get("VIA") == "a"
    assert headers.get_all("Via") == ["a", "b", "c"]
    assert headers.get_all("X-FOO") == ["1", "2"]
    assert "x-foo" in headers and "Route" not in headers and len(headers) == 4
    headers.set("Via", "z")
    assert headers.items()[0] == ("Via", "z") and headers.values("Via") == ["z"]
    headers.remove("X-Foo")
    assert headers.items() == [("Via", "z")]
    assert headers == Headers([("Via", "z")]) and headers != Headers([("Via", "y")])
    with pytest.raises(ValueError):
        headers.add("X", "a\r\nInjected: 1")
    with pytest.raises(ValueError):
        headers.add("Bad Name", "a")


def test_list_splitting_respects_quotes_and_angles() -> None:
    headers = Headers(
        [
            ("Contact", '"Doe, J" <sip:a@x;p=1,2>;q=0.5, <sip:b@y>'),
            ("WWW-Authenticate", 'Digest realm="a, b", nonce="n"'),
            ("Accept", "application/pidf+xml, */*;q=0.1"),
        ]
    )
    assert headers.get_all("Contact") == ['"Doe, J" <sip:a@x;p=1,2>;q=0.5', "<sip:b@y>"]
    assert headers.get_all("WWW-Authenticate") == ['Digest realm="a, b", nonce="n"']
    assert headers.get_all("Accept") == ["application/pidf+xml", "*/*;q=0.1"]


def test_cache_is_invalidated_on_mutation() -> None:
    message = parse_message(NOTIFY)
    assert message.cseq.number == 3
    message.headers.set("CSeq", "4 NOTIFY")
    assert message.cseq.number == 4
    message.headers.remove("Via")
    assert message.vias == []


def test_mandatory_headers_raise_missing_and_optional_return_none() -> None:
    message = parse_message(NOTIFY.replace(b"Call-ID: c1@x\r\n", b""))
    with pytest.raises(SipParseError, match="missing header: Call-ID") as info:
        message.call_id  # noqa: B018
    assert info.value.message is message
    assert message.expires is None and message.event is None and message.contacts == []
    assert message.accept == [] and message.routes == [] and message.retry_after is None


def test_accessor_errors_name_header_and_value() -> None:
    message = parse_message(NOTIFY.replace(b"CSeq: 3 NOTIFY", b"CSeq: abc"))
    with pytest.raises(SipParseError, match=r"bad CSeq: 'abc'") as info:
        message.cseq  # noqa: B018
    assert info.value.message is message


def test_response_parse_and_reason_with_spaces() -> None:
    message = parse_message(b"SIP/2.0 481 Call/Transaction Does Not Exist\r\n\r\n")
    assert isinstance(message, Response)
    assert (message.status, message.reason) == (481, "Call/Transaction Does Not Exist")
    assert parse_message(b"SIP/2.0 200\r\n\r\n") == Response(200, "", Headers())


def test_equality() -> None:
    assert parse_message(NOTIFY) == parse_message(NOTIFY)
    other = parse_message(NOTIFY.replace(b"hello", b"hellO"))
    assert parse_message(NOTIFY) != other
    request: object = Request("NOTIFY", "sip:a@b", Headers())
    assert request != Response(200, "OK", Headers())


def test_limits_are_configurable() -> None:
    small = ParseLimits(max_message_bytes=100)
    with pytest.raises(SipParseError, match="message too large"):
        parse_message(NOTIFY, small)
    with pytest.raises(SipParseError, match="too many headers"):
        parse_message(NOTIFY, ParseLimits(max_headers=3))
    with pytest.raises(SipParseError, match="start line too long"):
        parse_message(NOTIFY, ParseLimits(max_start_line=10))
    folded = NOTIFY.replace(b"Call-ID: c1@x", b"Call-ID: c1@x" + b"\r\n x" * 50)
    with pytest.raises(SipParseError, match="header line too long"):
        parse_message(folded, ParseLimits(max_header_line=60))


def test_non_utf8_start_line_has_no_message() -> None:
    with pytest.raises(SipParseError, match="non-UTF-8 start line") as info:
        parse_message(b"NOTIFY sip:\xff@x SIP/2.0\r\n\r\n")
    assert info.value.message is None


def test_bare_cr_is_rejected() -> None:
    with pytest.raises(SipParseError, match="bare CR"):
        parse_message(NOTIFY.replace(b"c1@x", b"c1\r@x"))


def test_make_response_copies_fields() -> None:
    request = parse_message(NOTIFY)
    assert isinstance(request, Request)
    response = make_response(request, 200, to_tag="t9", headers=[("Contact", "<sip:w@h>")])
    assert response.reason == "OK"
    assert response.headers.values("Via") == request.headers.values("Via")
    assert [v.branch for v in response.vias] == ["z9hG4bK1", "z9hG4bK2", "z9hG4bK3"]
    assert response.to.tag == "t9" and response.from_ == request.from_
    assert response.call_id == "c1@x" and response.cseq == request.cseq
    assert response.headers.items()[-1] == ("Contact", "<sip:w@h>")
    assert response.body == b""
    echoed = parse_message(
        response.to_bytes().replace(b"SIP/2.0 200 OK", b"NOTIFY sip:x@y SIP/2.0")
    )
    assert isinstance(echoed, Request)
    again = make_response(echoed, 481, to_tag="other")
    assert again.to.tag == "t9"  # existing tag kept
    assert again.reason == "Call/Transaction Does Not Exist"
    assert make_response(request, 499).reason == "Client Error"
    with pytest.raises(ValueError):
        make_response(request, 700)


def test_check_mandatory_needs_max_forwards_only_in_requests() -> None:
    request = parse_message(NOTIFY.replace(b"Max-Forwards: 70\r\n", b""))
    with pytest.raises(SipParseError, match="missing header: Max-Forwards"):
        check_mandatory(request)
    assert isinstance(request, Request)
    check_mandatory(make_response(request, 200))


def test_make_response_top_via_keeps_other_values_on_the_same_line() -> None:
    """Replacing the top Via (a UAS adding `received`) must not drop the Vias that share its
    header line (RFC 3261 §8.2.6.2: all Via values are copied, in order)."""
    request = parse_message(
        b"NOTIFY sip:a@b SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP p1:5060;branch=z9hG4bK1, SIP/2.0/UDP p2:5060;branch=z9hG4bK2\r\n"
        b"Via: SIP/2.0/UDP p3;branch=z9hG4bK3\r\n"
        b"From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 1 NOTIFY\r\n\r\n")
    assert isinstance(request, Request)
    response = make_response(request, 200,
                             top_via="SIP/2.0/UDP p1:5060;branch=z9hG4bK1;received=10.0.0.1")
    vias = response.headers.get_all("Via")
    assert vias == ["SIP/2.0/UDP p1:5060;branch=z9hG4bK1;received=10.0.0.1",
                    "SIP/2.0/UDP p2:5060;branch=z9hG4bK2", "SIP/2.0/UDP p3;branch=z9hG4bK3"]


def _dialog_notify(branch: str, cseq: str) -> bytes:
    return (
        "NOTIFY sip:w@192.0.2.10 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.20;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:bob@example.com>;tag=f1\r\n"
        "To: <sip:w@example.com>;tag=t1\r\n"
        "Call-ID: kept-section@x\r\n"
        f"CSeq: {cseq}\r\n"
        "Event: presence\r\n"
        "Content-Length: 5\r\n\r\nhello"
    ).encode()


def _outcome(data: bytes) -> object:
    """The parse's error, or each accessor's value or error, and the message written back."""
    try:
        message = parse_message(data)
    except SipParseError as exc:
        return ("error", str(exc))
    values: list[str] = []
    for read in (lambda: message.vias, lambda: message.cseq, lambda: message.from_,
                 lambda: message.to, lambda: message.call_id, lambda: message.event):
        try:
            values.append(repr(read()))
        except SipParseError as exc:
            values.append(f"error: {exc}")
    return values, message.headers.get("cseq"), message.to_bytes()


def test_a_dialogs_kept_section_parses_as_a_fresh_parse(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The kept-section cache (reference.sip.message._SECTIONS): once a dialog's header
    section (Via and CSeq values cut out) has been seen twice it is kept, and later messages
    take their lines from it with their own Via and CSeq put in. Every such message must
    give what a parse with empty caches gives, including a bad value in a cut-out place."""
    from reference.sip import message as message_module

    monkeypatch.setattr(message_module, "_SECTIONS_PROBE", 1)  # every section is probed
    message_module._SECTIONS.clear()
    message_module._SECTIONS_SEEN.clear()
    parse_message(_dialog_notify("z9hG4bKa1", "1 NOTIFY"))
    parse_message(_dialog_notify("z9hG4bKa2", "2 NOTIFY"))
    assert len(message_module._SECTIONS) == 1  # kept on its second sighting
    cases = [
        _dialog_notify("z9hG4bKa3", "3 NOTIFY"),
        _dialog_notify("z9hG4bK-b.4;rport", "4 NOTIFY"),  # another Via shape, same key
        _dialog_notify("z9hG4bKa5", "5  NOTIFY"),  # not the usual CSeq form
        _dialog_notify("z9hG4bKa6", "x NOTIFY"),  # a bad CSeq (an accessor error)
        _dialog_notify("z9hG4bK\ra7", "7 NOTIFY"),  # a bare CR in the cut-out Via
        _dialog_notify("z9hG4bKa8", "8 NOT\nIFY"),  # a bare LF in the cut-out CSeq
    ]
    for data in cases:
        kept = _outcome(data)
        assert message_module._SECTIONS  # (the kept section is still there)
        message_module._SECTIONS.clear()
        message_module._SECTIONS_SEEN.clear()
        assert kept == _outcome(data), data
        # Keep the section again for the next case.
        parse_message(_dialog_notify("z9hG4bKa1", "1 NOTIFY"))
        parse_message(_dialog_notify("z9hG4bKa2", "2 NOTIFY"))


def test_a_dialogs_sections_are_kept_after_a_few_probes() -> None:
    """While no section is kept, only one in _SECTIONS_PROBE is cut and looked for among the
    seen: a dialog that sends many messages still has its section kept within a few probes,
    and every message parses as before."""
    from reference.sip import message as message_module

    message_module._SECTIONS.clear()
    message_module._SECTIONS_SEEN.clear()
    sent = 0
    while not message_module._SECTIONS:
        assert sent <= 2 * message_module._SECTIONS_PROBE
        data = _dialog_notify(f"z9hG4bKp{sent}", f"{sent + 1} NOTIFY")
        assert parse_message(data).cseq.number == sent + 1
        sent += 1
    data = _dialog_notify("z9hG4bKlast", "99 NOTIFY")
    kept = _outcome(data)
    message_module._SECTIONS.clear()
    message_module._SECTIONS_SEEN.clear()
    assert kept == _outcome(data)
