"""The notifier's purpose-built scanners and templates agree with reference.sip.

Whatever the scanners accept must parse with ``parse_message`` to the same values, and the
bytes the notifier writes from templates must be the bytes ``make_response``,
``Request.to_bytes`` and ``build_pidf`` write.
"""

from __future__ import annotations

import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.pidf import build_pidf
from reference.sip import Request, Response, make_response, parse_message
from reference.sip.transaction import normalize_sent_by
from simulator.network import Latency, LinkSpec, Network
from simulator.notifier import Notifier
from simulator.sipscan import (
    ScannedSubscribe,
    _scan_subscribe_general,
    scan_response,
    scan_subscribe,
)
from simulator.workload import NotifierSpec

AGENT_SUBSCRIBE = (
    b"SUBSCRIBE sip:p2@lab.test SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.1.0.1:5060;branch=z9hG4bKff8a866284a06eaf;rport\r\n"
    b"Max-Forwards: 70\r\nTo: <sip:p2@lab.test>\r\n"
    b"From: <sip:w0@b2b.test>;tag=08c03adc0c5c4901\r\n"
    b"Call-ID: ab63241c7bf82d04fdb8e0f95d22d61b@10.1.0.1\r\nCSeq: 1 SUBSCRIBE\r\n"
    b"Contact: <sip:10.1.0.1:5060>\r\nEvent: presence\r\nAccept: application/pidf+xml\r\n"
    b"Expires: 3600\r\nContent-Length: 0\r\n\r\n"
)
AGENT_ANSWER = (
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.2.0.1:5060;branch=z9hG4bK6c4931731a37\r\n"
    b"From: <sip:p2@lab.test>;tag=8d6326acd212\r\nTo: <sip:w0@b2b.test>;tag=08c03adc\r\n"
    b"Call-ID: ab63241c@10.1.0.1\r\nCSeq: 1 NOTIFY\r\nContent-Length: 0\r\n\r\n"
)


def test_the_agents_messages_take_the_fast_path() -> None:
    scanned = scan_subscribe(AGENT_SUBSCRIBE)
    assert scanned is not None
    assert (scanned.to_uri, scanned.to_tag, scanned.from_uri) == (
        "sip:p2@lab.test", None, "sip:w0@b2b.test")  # fmt: skip
    assert (scanned.cseq, scanned.expires, scanned.package) == (1, 3600, "presence")
    assert scanned.contact_uri == "sip:10.1.0.1:5060"
    assert scanned.branch == "z9hG4bKff8a866284a06eaf" and scanned.sent_by == "10.1.0.1:5060"
    # The one-regex layout and the general line loop (taken with one more header) agree.
    assert scan_subscribe(AGENT_SUBSCRIBE.replace(b"\r\nTo", b"\r\nX-A: 1\r\nTo")) == scanned
    answer = scan_response(AGENT_ANSWER)
    assert answer is not None
    assert (answer.status, answer.method, answer.sent_by) == (200, "NOTIFY", "10.2.0.1:5060")
    # The one-regex layout and the general line loop (taken with one more header) agree.
    general = scan_response(AGENT_ANSWER.replace(b"\r\nFrom", b"\r\nX-A: 1\r\nFrom"))
    assert general == answer


# -- generated variations ---------------------------------------------------------------------

_names = {
    "via": ["Via", "v", "VIA", "Via "], "from": ["From", "f", "from"], "to": ["To", "t"],
    "call-id": ["Call-ID", "i", "call-id"], "cseq": ["CSeq", "cseq"],
    "contact": ["Contact", "m"], "event": ["Event", "o"], "expires": ["Expires", "expires"],
}  # fmt: skip


def _pick(draw: st.DrawFn, good: list[str], odd: list[str]) -> str:
    """Mostly a usual value, sometimes an odd one (so that both paths are exercised)."""
    return draw(st.sampled_from(good if draw(st.integers(0, 29)) < 28 else odd))


@st.composite
def _uri(draw: st.DrawFn) -> str:
    scheme = _pick(draw, ["sip:", "sips:"], ["tel:", "SIP:", "sip"])
    user = _pick(draw, ["", "w0@", "a.b+c@"], ["bad user@", "%41@", "@"])
    host = _pick(draw, ["lab.test", "10.1.0.1", "a-b.example"], ["-bad", "x..y", "h_u", ""])
    port = _pick(draw, ["", ":5060", ":65535"], [":70000", ":5x", ":"])
    return scheme + user + host + port


@st.composite
def _name_addr(draw: st.DrawFn) -> str:
    form = _pick(draw, ["<{}>{}"], ["{}{}", '"Bob" <{}>{}', "Bob <{}>{}", "<{} >{}"])
    params = _pick(draw, ["", ";tag=abc", ";tag=a.b~c", ";x;tag=9"],
                   [";tag=1;tag=2", ";Tag=Q", ';tag="q"', " ;tag=1", ";tag="])  # fmt: skip
    return form.format(draw(_uri()), params)


@st.composite
def _subscribe(draw: st.DrawFn) -> bytes:
    via = "SIP/2.0/UDP " + _pick(draw, ["10.1.0.1", "h.test"], ["-h", "a b"]) + _pick(
        draw, ["", ":5060"], [":99999", ":x"]) + _pick(
        draw, [";branch=z9hG4bK1", ";branch=z9hG4bK1;rport"],
        ["", ";branch=", ";branch=a;branch=b", ", SIP/2.0/UDP x;branch=2"])  # fmt: skip
    values = {
        "via": via,
        "from": draw(_name_addr()),
        "to": draw(_name_addr()),
        "call-id": _pick(draw, ["c1@h", "abc"], ["c 1", "", "a\x01b"]),
        "cseq": _pick(draw, ["1 SUBSCRIBE", "4294967295 SUBSCRIBE"],
                      ["4294967296 SUBSCRIBE", "2 NOTIFY", "x SUBSCRIBE", "7  SUBSCRIBE"]),
        "contact": draw(_name_addr()),
        "event": _pick(draw, ["presence", "a.b"], ["presence;id=1", "pre sence", "", ".a"]),
        "expires": _pick(draw, ["3600", "0"], ["", "12345678901", "-1", "1 2"]),
    }  # fmt: skip
    lines = [f"SUBSCRIBE {draw(_uri())} SIP/2.0"]
    for key, value in values.items():
        if key in ("contact", "event", "expires") and draw(st.integers(0, 4)) == 0:
            continue
        lines.append(f"{draw(st.sampled_from(_names[key]))}:{draw(st.sampled_from([' ', '']))}"
                     f"{value}")  # fmt: skip
        if draw(st.integers(0, 19)) == 19:
            lines.append(lines[-1])  # a repeated header
    extra = _pick(draw, ["", "Max-Forwards: 70"], ["X-Odd: 1", "Bad Name: 1", " folded", "x"])
    if extra:
        lines.insert(draw(st.integers(1, len(lines))), extra)
    body = _pick(draw, ["", "Content-Length: 0"], ["Content-Length: 3", "l: 0"])
    if body:
        lines.append(body)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


@st.composite
def _agent_layout(draw: st.DrawFn) -> bytes:
    """The agent's SUBSCRIBE layout (the one-regex path) with generated values."""
    via = "SIP/2.0/UDP " + _pick(draw, ["10.1.0.1", "h.test"], ["-h"]) + _pick(
        draw, ["", ":5060"], [":99999", ":65536"]) + _pick(
        draw, [";branch=z9hG4bK1", ";branch=z9hG4bK1;rport"],
        ["", ";branch=", ";branch=a;branch=b", ";rport;rport;branch=1"])  # fmt: skip
    cseq = _pick(draw, ["1", "4294967295"], ["4294967296", "x", "12345678901"])
    expires = _pick(draw, ["3600", "0"], ["", "1234567890", "-1"])
    event = _pick(draw, ["presence", "a.b"], ["presence;id=1", "", ".a"])
    call_id = _pick(draw, ["c1@h"], ["c 1", "", "a\x01b"])
    return (
        f"SUBSCRIBE {draw(_uri())} SIP/2.0\r\nVia: {via}\r\n"
        f"Max-Forwards: {_pick(draw, ['70'], ['7000', ''])}\r\n"
        f"To: {draw(_name_addr())}\r\nFrom: {draw(_name_addr())}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} SUBSCRIBE\r\nContact: {draw(_name_addr())}\r\nEvent: {event}\r\n"
        f"Accept: application/pidf+xml\r\nExpires: {expires}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


@settings(max_examples=300, deadline=None)
@given(_agent_layout())
def test_the_one_regex_path_reads_what_the_general_path_reads(data: bytes) -> None:
    general = _scan_subscribe_general(data)
    assert scan_subscribe(data) == general
    if general is not None:
        _same_as_the_parser(data, general)


@settings(max_examples=400, deadline=None)
@given(_subscribe())
def test_an_accepted_subscribe_parses_to_the_same_values(data: bytes) -> None:
    scanned = scan_subscribe(data)
    if scanned is not None:
        _same_as_the_parser(data, scanned)


def _same_as_the_parser(data: bytes, scanned: ScannedSubscribe) -> None:
    request = parse_message(data)
    assert isinstance(request, Request) and request.method == "SUBSCRIBE"
    top = request.top_via
    assert top is not None and top.branch == scanned.branch
    assert request.headers.get_all("Via") == scanned.vias
    assert request.from_.uri == scanned.from_uri and request.to.uri == scanned.to_uri
    assert request.to.tag == scanned.to_tag
    assert request.call_id == scanned.call_id
    assert request.cseq.number == scanned.cseq and request.cseq.method == "SUBSCRIBE"
    contacts = request.contacts
    assert (contacts[0].uri if contacts else None) == scanned.contact_uri
    event = request.event
    assert (event.package if event else None) == scanned.package
    assert request.expires == scanned.expires
    # The notifier's template answer is make_response's answer, byte for byte.
    for status, tag, extra in ((200, "t1", (("Expires", "60"), ("Contact", "<sip:x@y>"))),
                               (423, None, (("Min-Expires", "60"),)), (599, None, ())):  # fmt: skip
        expected = make_response(request, status, to_tag=tag, headers=extra).to_bytes()
        assert Notifier._render(scanned, status, tag, extra) == expected


@st.composite
def _response(draw: st.DrawFn) -> bytes:
    code = draw(st.sampled_from(["200 OK", "180 Ringing", "481 Nope", "099 X", "20 OK", "200"]))
    lines = [f"SIP/2.0 {code}"]
    vias = draw(st.sampled_from([
        ["SIP/2.0/UDP 10.2.0.1:5060;branch=z9hG4bK1"], ["SIP/2.0/UDP PS.test;branch=z9hG4bK1"],
        ["SIP/2.0/UDP 10.2.0.1:05060;branch=z9hG4bK1"], ["SIP/2.0/UDP h;branch=1", "SIP/2.0/UDP g"],
        ["SIP/2.0/UDP h;branch=1, SIP/2.0/UDP g"], ["SIP/2.0/TCP h;branch=1"], [],
        ["SIP/2.0/UDP a-b.c;branch=1"], ["SIP/2.0/UDP -a:5060;branch=1"],
        ["SIP/2.0/UDP a..b;branch=1"], ["SIP/2.0/UDP a-.b:99999;branch=1"]]))  # fmt: skip
    lines += [f"Via: {v}" for v in vias]
    lines += ["From: <sip:a@b>;tag=1", "To: <sip:c@d>;tag=2", "Call-ID: x"]
    lines.append("CSeq: " + draw(st.sampled_from(["1 NOTIFY", "2 SUBSCRIBE", "1", "x NOTIFY"])))
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


@settings(max_examples=200, deadline=None)
@given(_response())
def test_an_accepted_response_parses_to_the_same_values(data: bytes) -> None:
    scanned = scan_response(data)
    if scanned is None:
        return
    response = parse_message(data)
    assert isinstance(response, Response) and response.status == scanned.status
    (via,) = response.vias
    assert via.branch == scanned.branch
    assert normalize_sent_by(via.transport, via.host, via.port) == scanned.sent_by
    assert response.cseq.method == scanned.method


def test_the_one_regex_path_checks_hosts_and_parameters_as_the_general_path() -> None:
    variants = [
        (b"sip:p2@lab.test SIP", b"sip:p2@-lab.test SIP"),  # request URI host
        (b"UDP 10.1.0.1:5060", b"UDP 10.1.0.1.:5060"),  # Via host
        (b"To: <sip:p2@lab.test>", b"To: <sip:p2@lab..test>"),
        (b"From: <sip:w0@b2b.test>", b"From: <sip:w0@b2b-.test>"),
        (b"Contact: <sip:10.1.0.1:5060>", b"Contact: <sip:-10.1.0.1:5060>"),
        (b";tag=08c03adc0c5c4901", b";tag=08c03adc0c5c4901;tag=1"),  # From: a repeated name
        (b";tag=08c03adc0c5c4901", b";x;tag=08c03adc0c5c4901"),
        (b"<sip:10.1.0.1:5060>", b"<sip:10.1.0.1:5060>;x;x"),  # Contact
        (b"<sip:10.1.0.1:5060>", b"<sip:10.1.0.1:5060>;x;y"),
        (b"To: <sip:p2@lab.test>", b"To: <sip:p2@lab.test>;tag=a;tag=b"),
        (b"To: <sip:p2@lab.test>", b"To: <sip:p2@lab.test>;tag=a;x"),
        (b";rport", b";rport;rport"),
    ]
    for old, new in variants:
        data = AGENT_SUBSCRIBE.replace(old, new)
        assert data != AGENT_SUBSCRIBE
        assert scan_subscribe(data) == _scan_subscribe_general(data), new
        assert scan_subscribe(data) == _scan_subscribe_general(data), new  # hosts remembered


def test_a_response_via_host_is_checked_before_its_sent_by_is_remembered() -> None:
    # The plain response's expression takes any run of host characters; a run that is no
    # host name is left to the general reading (which rejects it), now and next time.
    for host in (b"-a", b"a-", b"a..b", b".a", b"a.", b"a-.b"):
        bad = AGENT_ANSWER.replace(b"10.2.0.1:5060", host + b":5060")
        assert scan_response(bad) is None
        assert scan_response(bad) is None
    scanned = scan_response(AGENT_ANSWER.replace(b"10.2.0.1", b"PS-1.Lab.test"))
    assert scanned is not None and scanned.sent_by == "ps-1.lab.test:5060"


def test_not_of_the_simple_shape_is_left_to_the_full_parser() -> None:
    folded = AGENT_SUBSCRIBE.replace(b"Event: presence", b"Event:\r\n presence")
    display = AGENT_SUBSCRIBE.replace(b"From: <", b'From: "W" <')
    body = AGENT_SUBSCRIBE.replace(b"Content-Length: 0\r\n\r\n", b"Content-Length: 2\r\n\r\nhi")
    for data in (folded, display, body, AGENT_SUBSCRIBE.replace(b"\r\n", b"\n")):
        assert scan_subscribe(data) is None
        assert isinstance(parse_message(data), Request)  # still valid SIP: full parser's job


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["sip:p1@lab.test", "sip:a&b@x", 'sip:"q"@x', "sip:é@x", "sip:<x>"]),
       st.integers(0, 10_000))  # fmt: skip
def test_pidf_template_is_build_pidf(record: str, version: int) -> None:
    env = simpy.Environment()
    net = Network(env, 1)
    notifier = Notifier(env, net, "ps", ("10.0.0.2", 5060), NotifierSpec(), 1)
    notifier._versions[record] = version
    basic = "closed" if version % 2 else "open"
    assert notifier._body(record) == build_pidf(record, basic=basic, note=f"version {version}")


def test_notify_bytes_are_canonical_sip() -> None:
    env = simpy.Environment()
    net = Network(env, 1, LinkSpec(latency=Latency("constant", value=0.01)))
    got: list[bytes] = []
    net.add_node("ua", ("10.1.0.1", 5060), lambda data, _src: got.append(data))
    Notifier(env, net, "ps", ("10.2.0.1", 5060), NotifierSpec(), 1)
    net.send("ua", ("lab.test", 5060), AGENT_SUBSCRIBE)
    env.run(until=0.4)  # before Timer E retransmits the unanswered NOTIFY
    ok, notify = (parse_message(d) for d in got)
    assert isinstance(ok, Response) and ok.status == 200
    assert isinstance(notify, Request) and notify.method == "NOTIFY"
    # Re-serialising the parsed NOTIFY gives the same bytes: the template is canonical.
    assert notify.to_bytes() == got[1] and ok.to_bytes() == got[0]
