"""UAC SUBSCRIBE dialog: request building, routing, confirmation, CSeq rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.sip.dialog import Dialog, DialogError
from reference.sip.errors import SipParseError
from reference.sip.headers import Headers
from reference.sip.message import Request, Response, parse_message

CONTACT = "<sip:b2b@10.0.0.1:5060>"


def new_dialog(preloaded_route: tuple[str, ...] = (), first_cseq: int = 1) -> Dialog:
    return Dialog.new_uac(
        call_id="cid-1@10.0.0.1",
        local_uri="<sip:alice@example.org>",
        local_tag="ltag",
        remote_uri="<sip:bob@example.org>",
        remote_target="sip:bob@example.org",
        preloaded_route=preloaded_route,
        first_cseq=first_cseq,
    )


def build(
    dialog: Dialog, method: str = "SUBSCRIBE", branch: str = "z9hG4bK1"
) -> tuple[Request, str]:
    request, next_hop = dialog.build_request(
        method,
        branch=branch,
        sent_by="10.0.0.1:5060",
        contact=CONTACT,
        headers=[("Event", "presence"), ("Expires", "3600")],
    )
    # Round-trip through the wire format: what the peer sees is what we check.
    parsed = parse_message(request.to_bytes())
    assert isinstance(parsed, Request)
    return parsed, next_hop


def response(
    status: int,
    *,
    to_tag: str | None = "rtag",
    contact: str | None = "<sip:bob@10.0.0.2:5070>",
    record_route: tuple[str, ...] = (),
) -> Response:
    to = "<sip:bob@example.org>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"SIP/2.0 {status} Reason",
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport=5060",
        *(f"Record-Route: {rr}" for rr in record_route),
        f"To: {to}",
        "From: <sip:alice@example.org>;tag=ltag",
        "Call-ID: cid-1@10.0.0.1",
        "CSeq: 1 SUBSCRIBE",
    ]
    if contact is not None:
        lines.append(f"Contact: {contact}")
    raw = "\r\n".join([*lines, "Expires: 3600", "Content-Length: 0", "", ""])
    msg = parse_message(raw.encode())
    assert isinstance(msg, Response)
    return msg


def notify(
    *,
    from_tag: str = "rtag",
    to_tag: str = "ltag",
    call_id: str = "cid-1@10.0.0.1",
    cseq: int = 7,
    contact: str | None = "<sip:bob@10.0.0.2:5070>",
    record_route: tuple[str, ...] = (),
) -> Request:
    lines = [
        "NOTIFY sip:b2b@10.0.0.1:5060 SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bKn",
        "Max-Forwards: 70",
        *(f"Record-Route: {rr}" for rr in record_route),
        f"To: <sip:alice@example.org>;tag={to_tag}",
        f"From: <sip:bob@example.org>;tag={from_tag}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} NOTIFY",
        "Event: presence",
        "Subscription-State: active;expires=3600",
    ]
    if contact is not None:
        lines.append(f"Contact: {contact}")
    raw = "\r\n".join([*lines, "Content-Length: 0", "", ""])
    msg = parse_message(raw.encode())
    assert isinstance(msg, Request)
    return msg


def header_names(request: Request) -> list[str]:
    return [name for name, _ in request.headers.items() if name != "Content-Length"]


# --------------------------------------------------------------------------- building


def test_initial_subscribe_fields_and_header_order() -> None:
    dialog = new_dialog()
    request, next_hop = build(dialog)
    assert request.method == "SUBSCRIBE"
    assert request.uri == "sip:bob@example.org"
    assert next_hop == "sip:bob@example.org"
    assert header_names(request) == [
        "Via",
        "Max-Forwards",
        "To",
        "From",
        "Call-ID",
        "CSeq",
        "Contact",
        "Event",
        "Expires",
    ]
    via = request.vias[0]
    assert via.branch == "z9hG4bK1"
    assert "rport" in via.params
    assert request.max_forwards == 70
    assert request.to.tag is None
    assert request.to.uri == "sip:bob@example.org"
    assert request.from_.tag == "ltag"
    assert request.call_id == "cid-1@10.0.0.1"
    assert (request.cseq.number, request.cseq.method) == (1, "SUBSCRIBE")
    assert [c.uri for c in request.contacts] == ["sip:b2b@10.0.0.1:5060"]
    assert request.routes == []


def test_cseq_strictly_plus_one_and_first_cseq() -> None:
    dialog = new_dialog(first_cseq=41)
    numbers = [build(dialog, m)[0].cseq.number for m in ("SUBSCRIBE", "SUBSCRIBE", "NOTIFY")]
    assert numbers == [41, 42, 43]
    assert dialog.local_cseq == 43


@settings(max_examples=50, deadline=None)
@given(
    first=st.integers(min_value=0, max_value=2**31 - 50),
    methods=st.lists(st.sampled_from(["SUBSCRIBE", "NOTIFY", "OPTIONS"]), min_size=1, max_size=12),
    confirm_at=st.integers(min_value=0, max_value=12),
)
def test_every_request_increments_cseq_by_one(
    first: int, methods: list[str], confirm_at: int
) -> None:
    dialog = new_dialog(first_cseq=first)
    seen = []
    for i, method in enumerate(methods):
        if i == confirm_at:
            dialog.confirm(response(200))  # confirming must not disturb the numbering
        request, _ = build(dialog, method, branch=f"z9hG4bK{i}")
        assert request.cseq.method == method
        seen.append(request.cseq.number)
    assert seen == list(range(first, first + len(methods)))


def test_bad_first_cseq_and_exhaustion() -> None:
    with pytest.raises(DialogError):
        new_dialog(first_cseq=2**31)
    dialog = new_dialog(first_cseq=2**31 - 1)
    assert build(dialog)[0].cseq.number == 2**31 - 1
    with pytest.raises(DialogError, match="exhausted"):
        build(dialog)


def test_preloaded_loose_route_on_initial_request() -> None:
    dialog = new_dialog(preloaded_route=("<sip:proxy.example;lr>",))
    request, next_hop = build(dialog)
    assert request.uri == "sip:bob@example.org"
    assert [str(r) for r in request.routes] == ["<sip:proxy.example;lr>"]
    assert next_hop == "sip:proxy.example;lr"


# --------------------------------------------------------------------------- confirm (2xx)


def test_confirm_reverses_record_route_and_takes_contact() -> None:
    dialog = new_dialog()
    build(dialog)
    dialog.confirm(response(200, record_route=("<sip:p2.example;lr>", "<sip:p1.example;lr>")))
    assert dialog.state == "confirmed"
    assert dialog.remote_tag == "rtag"
    assert dialog.remote_target == "sip:bob@10.0.0.2:5070"
    assert dialog.route_set == ("<sip:p1.example;lr>", "<sip:p2.example;lr>")
    refresh, next_hop = build(dialog, branch="z9hG4bK2")
    assert refresh.uri == "sip:bob@10.0.0.2:5070"
    assert refresh.to.tag == "rtag"
    assert refresh.from_.tag == "ltag"
    assert [str(r) for r in refresh.routes] == ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    assert next_hop == "sip:p1.example;lr"
    assert refresh.cseq.number == 2
    assert header_names(refresh).index("Route") == header_names(refresh).index("CSeq") + 1


def test_confirm_comma_separated_record_route() -> None:
    dialog = new_dialog()
    dialog.confirm(response(202, record_route=("<sip:p2;lr>, <sip:p1;lr>",)))
    assert dialog.route_set == ("<sip:p1;lr>", "<sip:p2;lr>")


def test_confirm_without_record_route_clears_preloaded_route() -> None:
    dialog = new_dialog(preloaded_route=("<sip:proxy;lr>",))
    dialog.confirm(response(200))
    assert dialog.route_set == ()
    request, next_hop = build(dialog)
    assert next_hop == request.uri == "sip:bob@10.0.0.2:5070"


def test_confirm_keep_preloaded_route_ser_quirk() -> None:
    dialog = new_dialog(preloaded_route=("<sip:proxy;lr>",))
    dialog.confirm(response(200, record_route=("<sip:other;lr>",)), keep_preloaded_route=True)
    assert dialog.route_set == ("<sip:proxy;lr>",)
    assert dialog.remote_target == "sip:bob@10.0.0.2:5070"


def test_confirm_keep_preloaded_route_reverses_it() -> None:
    # SER's tm keeps the preloaded route and reverses it like a Record-Route (spec §4.4).
    dialog = new_dialog(preloaded_route=("<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3;lr>"))
    assert dialog.route_set == ("<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3;lr>")
    dialog.confirm(response(200, record_route=("<sip:other;lr>",)), keep_preloaded_route=True)
    assert dialog.route_set == ("<sip:p3;lr>", "<sip:p2;lr>", "<sip:p1;lr>")
    _, next_hop = build(dialog)
    assert next_hop == "sip:p3;lr"


def test_2xx_without_to_tag_cannot_form_dialog() -> None:
    dialog = new_dialog()
    with pytest.raises(DialogError, match="To tag"):
        dialog.confirm(response(200, to_tag=None))
    assert dialog.state == "early"
    assert dialog.remote_tag is None


def test_non_2xx_does_not_confirm() -> None:
    with pytest.raises(DialogError):
        new_dialog().confirm(response(404))


def test_confirm_without_contact_keeps_target() -> None:
    dialog = new_dialog()
    dialog.confirm(response(200, contact=None))
    assert dialog.remote_target == "sip:bob@example.org"


# --------------------------------------------------------------------------- strict routing


def test_strict_router_first_in_route_set() -> None:
    dialog = new_dialog()
    # Record-Route as received (reversed by the UAC): p2 (loose), then p1 (strict).
    dialog.confirm(response(200, record_route=("<sip:p2.example;lr>", "<sip:p1.example>")))
    assert dialog.route_set == ("<sip:p1.example>", "<sip:p2.example;lr>")
    request, next_hop = build(dialog)
    assert request.uri == "sip:p1.example"
    assert [str(r) for r in request.routes] == [
        "<sip:p2.example;lr>",
        "<sip:bob@10.0.0.2:5070>",
    ]
    assert next_hop == "sip:p1.example"


def test_strict_router_uri_keeps_params_but_not_headers() -> None:
    dialog = new_dialog(preloaded_route=("<sip:p1.example:5080;transport=udp;method=X?h=v>",))
    request, next_hop = build(dialog)
    assert request.uri == "sip:p1.example:5080;transport=udp"
    assert next_hop == request.uri
    assert [str(r) for r in request.routes] == ["<sip:bob@example.org>"]


# --------------------------------------------------------------------------- early NOTIFY


def test_dialog_created_by_notify_keeps_record_route_order() -> None:
    dialog = new_dialog()
    build(dialog)
    early = notify(record_route=("<sip:p1.example;lr>", "<sip:p2.example;lr>"), cseq=7)
    assert dialog.matches_notify(early)
    dialog.confirm_from_notify(early)
    assert dialog.state == "confirmed"
    assert dialog.remote_tag == "rtag"
    assert dialog.remote_cseq == 7
    assert dialog.remote_target == "sip:bob@10.0.0.2:5070"
    assert dialog.route_set == ("<sip:p1.example;lr>", "<sip:p2.example;lr>")
    # The 2xx that follows (no Record-Route) changes nothing (SUB-049).
    dialog.confirm(response(200, contact="<sip:elsewhere@10.0.0.3>"))
    assert dialog.route_set == ("<sip:p1.example;lr>", "<sip:p2.example;lr>")
    assert dialog.remote_target == "sip:bob@10.0.0.2:5070"
    refresh, next_hop = build(dialog, branch="z9hG4bK2")
    assert next_hop == "sip:p1.example;lr"
    assert refresh.uri == "sip:bob@10.0.0.2:5070"
    assert refresh.to.tag == "rtag"


def test_2xx_from_another_fork_after_early_notify() -> None:
    dialog = new_dialog()
    dialog.confirm_from_notify(notify(from_tag="fork1"))
    with pytest.raises(DialogError, match="fork"):
        dialog.confirm(response(200, to_tag="fork2"))
    assert dialog.remote_tag == "fork1"


def test_notify_for_another_dialog_cannot_confirm() -> None:
    dialog = new_dialog()
    with pytest.raises(DialogError):
        dialog.confirm_from_notify(notify(call_id="other"))
    with pytest.raises(DialogError):
        dialog.confirm_from_notify(notify(to_tag="not-ours"))
    assert dialog.state == "early"
    dialog.confirm_from_notify(notify())
    with pytest.raises(DialogError, match="already"):
        dialog.confirm_from_notify(notify())


# --------------------------------------------------------------------------- in-dialog requests


def test_matches_notify() -> None:
    dialog = new_dialog()
    assert dialog.matches_notify(notify(from_tag="any"))  # remote tag not known yet
    assert not dialog.matches_notify(notify(call_id="x"))
    assert not dialog.matches_notify(notify(to_tag="x"))
    dialog.confirm(response(200))
    assert dialog.matches_notify(notify())
    assert not dialog.matches_notify(notify(from_tag="other-fork"))


def test_refresh_target_from_notify_contact() -> None:
    dialog = new_dialog()
    dialog.confirm(response(200, record_route=("<sip:p1;lr>",)))
    dialog.refresh_target(notify(contact="<sip:bob@10.0.0.9:5090>"))
    assert dialog.remote_target == "sip:bob@10.0.0.9:5090"
    assert dialog.route_set == ("<sip:p1;lr>",)  # never changed by a target refresh
    dialog.refresh_target(notify(contact=None))
    assert dialog.remote_target == "sip:bob@10.0.0.9:5090"
    dialog.refresh_target(response(200, contact="<sip:bob@10.0.0.8>"))
    assert build(dialog)[0].uri == "sip:bob@10.0.0.8"


def test_refresh_target_follows_every_contact_change_and_back() -> None:
    # The dialog skips parsing a Contact whose text it took the target from last time; a
    # change of text (and a change back) must still move the target each time.
    dialog = new_dialog()
    dialog.confirm(response(200))
    first, second = "<sip:bob@10.0.0.9:5090>", "<sip:bob@10.0.0.7>"
    for contact, target in ((first, "sip:bob@10.0.0.9:5090"), (first, "sip:bob@10.0.0.9:5090"),
                            (second, "sip:bob@10.0.0.7"), ("*", "sip:bob@10.0.0.7"),
                            (first, "sip:bob@10.0.0.9:5090")):
        dialog.refresh_target(notify(contact=contact))
        assert dialog.remote_target == target, contact
    # Two Contact lines: never the skip, the first entry is the target.
    two = parse_message(notify(contact=second).to_bytes().replace(
        b"Contact: <sip:bob@10.0.0.7>", f"Contact: {first}\r\nContact: {second}".encode()))
    assert isinstance(two, Request)
    dialog.refresh_target(two)
    assert dialog.remote_target == "sip:bob@10.0.0.9:5090"


def test_refresh_target_bad_contact_raises_even_after_a_good_one() -> None:
    dialog = new_dialog()
    dialog.confirm(response(200))
    dialog.refresh_target(notify(contact="<sip:bob@10.0.0.9>"))
    with pytest.raises(SipParseError):
        dialog.refresh_target(notify(contact="<sip:bob@10.0.0.9"))
    assert dialog.remote_target == "sip:bob@10.0.0.9"


def test_remote_cseq_ordering() -> None:
    dialog = new_dialog()
    assert dialog.remote_cseq is None
    assert dialog.check_remote_cseq(5)
    assert dialog.remote_cseq == 5
    assert not dialog.check_remote_cseq(4)  # lower: out of order -> 500
    assert dialog.check_remote_cseq(5)  # equal: a new request after Timer J (SUB-142)
    assert dialog.remote_cseq == 5
    assert dialog.check_remote_cseq(9)  # gaps are fine
    assert dialog.remote_cseq == 9


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**31 - 1), max_size=30))
def test_remote_cseq_rejects_exactly_lower_numbers(numbers: list[int]) -> None:
    dialog = new_dialog()
    best: int | None = None
    for n in numbers:
        expected = best is None or n >= best
        assert dialog.check_remote_cseq(n) is expected
        if expected:
            best = n
        assert dialog.remote_cseq == best


def _slow_build(dialog: Dialog, method: str, branch: str,
                headers: list[tuple[str, str]]) -> bytes:
    """What build_request's bytes were before it wrote its lines itself: every field added
    one by one, written by ``to_bytes`` from the fields."""
    request, _ = dialog.build_request(method, branch=branch, sent_by="10.0.0.1:5060",
                                      contact=CONTACT)
    slow = Headers()
    for name, value in request.headers.items():
        slow.add(name, value)
    for name, value in headers:
        slow.add(name, value)
    assert slow._text is None
    return Request(method, request.uri, slow).to_bytes()


@pytest.mark.parametrize("route", [(), ("<sip:p1@example.org;lr>", "<sip:p2@example.org;lr>"),
                                   ("<sip:strict@example.org>",)])
@pytest.mark.parametrize("headers", [
    [],
    [("Event", "presence"), ("Expires", "3600")],
    [("event", "presence"), ("Accept", "a/b, c/d"), ("X-New-Name-For-Test", "1")],
    [("Event", "presence"), ("Content-Length", "5"), ("Expires", "0")],
])
def test_built_lines_are_the_fields_lines(route: tuple[str, ...],
                                          headers: list[tuple[str, str]]) -> None:
    # The lines build_request writes with the fields (kept for to_bytes) are exactly the
    # ones to_bytes writes from the fields, whichever path extend_known took; a mutation
    # drops them.
    fast, slow = new_dialog(preloaded_route=route), new_dialog(preloaded_route=route)
    for _ in range(2):  # (the second time every name was added before)
        request, _ = fast.build_request("SUBSCRIBE", branch="z9hG4bKf", sent_by="10.0.0.1:5060",
                                        contact=CONTACT, headers=headers)
        assert request.to_bytes() == _slow_build(slow, "SUBSCRIBE", "z9hG4bKf", headers)
    request.headers.add("Expires", "60")
    assert request.headers._text is None
    assert request.to_bytes().endswith(b"Expires: 60\r\nContent-Length: 0\r\n\r\n")


@pytest.mark.parametrize(("field", "headers", "error"), [
    ("contact", [("Event", "presence")], "header value for 'Contact' contains CR or LF"),
    ("", [("Event", "pres\r\nX: y")], "header value for 'Event' contains CR or LF"),
    ("", [("Event", "presence"), ("Ev ent", "x")], "bad header name 'Ev ent'"),
    ("", [("Ev ent", "x\n")], "header value for 'Ev ent' contains CR or LF"),
])
def test_build_request_errors_as_add(field: str, headers: list[tuple[str, str]],
                                     error: str) -> None:
    contact = CONTACT + ("\r\nX: y" if field == "contact" else "")
    for _ in range(2):
        with pytest.raises(ValueError) as exc:
            new_dialog().build_request("SUBSCRIBE", branch="z9hG4bK1", sent_by="10.0.0.1:5060",
                                       contact=contact, headers=headers)
        assert str(exc.value) == error
