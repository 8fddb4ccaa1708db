"""RFC 3680 reginfo: the hardened parser, the schema-valid builder and the subscriber's
version/full/partial bookkeeping (RegState)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from reference.reginfo import (
    CONTACT_EVENTS,
    RegContact,
    ReginfoError,
    ReginfoLimits,
    Registration,
    RegState,
    build_reginfo,
    parse_reginfo,
)

SCHEMA = etree.XMLSchema(etree.parse(str(Path(__file__).parent / "data" / "reginfo.xsd")))
AOR = "sip:alice@lab.test"


def contact(cid: str = "c1", state: str = "active", event: str = "registered",
            expires: int | None = 3600, uri: str = "sip:alice@10.0.0.1:5060") -> RegContact:
    return RegContact(id=cid, state=state, event=event, uri=uri, expires=expires, q="0.8")


def registration(*contacts: RegContact, aor: str = AOR, state: str = "active") -> Registration:
    return Registration(aor=aor, id="r-" + aor, state=state, contacts=contacts)


def doc(version: int, state: str, *registrations: Registration) -> bytes:
    return build_reginfo(version, state, registrations)


def test_builder_output_is_schema_valid_and_reads_back() -> None:
    full = RegContact(id="c9", state="terminated", event="expired", uri="sip:a@h",
                      expires=0, duration_registered=7322, retry_after=30, q="0.5",
                      callid="abc@h", cseq=7, display_name="Alice",
                      unknown_params=(("+sip.instance", "<urn:uuid:1>"),))
    body = doc(4, "partial", registration(contact(), full),
               registration(aor="sip:bob@lab.test", state="init"))
    SCHEMA.assertValid(etree.fromstring(body))
    parsed = parse_reginfo(body)
    assert parsed.version == 4 and parsed.state == "partial"
    assert parsed.registrations[0].contacts == (contact(), full)
    assert parsed.registrations[1].state == "init"


@pytest.mark.parametrize("event", CONTACT_EVENTS)
def test_every_contact_event_is_schema_valid(event: str) -> None:
    SCHEMA.assertValid(etree.fromstring(doc(0, "full", registration(contact(event=event)))))


@pytest.mark.parametrize(("body", "message"), [
    (b"<reginfo version='0' state='full'/>", "root element must be"),
    (b"<reginfo xmlns='urn:ietf:params:xml:ns:reginfo' state='full'/>", "no version"),
    (b"<reginfo xmlns='urn:ietf:params:xml:ns:reginfo' version='-1' state='full'/>",
     "bad reginfo version"),
    (b"<reginfo xmlns='urn:ietf:params:xml:ns:reginfo' version='1' state='half'/>",
     "bad reginfo state"),
    (b"<reginfo xmlns='urn:ietf:params:xml:ns:reginfo' version='1' state='full'>"
     b"<registration aor='sip:a@h' id='r' state='active'><contact id='c' state='active' "
     b"event='born'><uri>sip:a@h</uri></contact></registration></reginfo>", "bad contact event"),
    (b"<reginfo xmlns='urn:ietf:params:xml:ns:reginfo' version='1' state='full'>"
     b"<registration aor='sip:a@h' id='r' state='active'><contact id='c' state='active' "
     b"event='created'/></registration></reginfo>", "exactly one uri"),
    (b"<reginfo xmlns='urn:ietf:params:xml:ns:reginfo' version='1' state='full'>"
     b"<registration id='r' state='active'/></reginfo>", "no aor"),
    (b"<reginfo xmlns='urn:ietf:params:xml:ns:reginfo' version='1' state='full'>"
     b"<registration aor='sip:a@h' id='r' state='active'><contact id='c' state='active' "
     b"event='created' expires='1e3'><uri>sip:a@h</uri></contact></registration></reginfo>",
     "bad contact expires"),
    (b"<!DOCTYPE r [<!ENTITY x 'y'>]><reginfo/>", "DOCTYPE not allowed in reginfo"),
    (b"<reginfo", "reginfo is not well-formed"),
    ("<reginfo/>", "must be bytes"),
])
def test_bad_documents_are_refused_with_the_reason(body: object, message: str) -> None:
    with pytest.raises(ReginfoError, match=message):
        parse_reginfo(body)


def test_limits_apply_before_and_during_parsing() -> None:
    body = doc(0, "full", registration(*(contact(f"c{i}") for i in range(30))))
    with pytest.raises(ReginfoError, match="too large"):
        parse_reginfo(body, limits=ReginfoLimits(max_bytes=100))
    with pytest.raises(ReginfoError, match="more than 50 elements"):
        parse_reginfo(body, limits=ReginfoLimits(max_elements=50))
    deep = b"<reginfo xmlns='urn:ietf:params:xml:ns:reginfo' version='0' state='full'>" + \
        b"<x:a xmlns:x='urn:x'>" * 40 + b"</x:a>" * 40 + b"</reginfo>"
    with pytest.raises(ReginfoError, match="nesting deeper than 32"):
        parse_reginfo(deep)


def test_foreign_extensions_are_ignored() -> None:
    body = (b"<reginfo xmlns='urn:ietf:params:xml:ns:reginfo' xmlns:x='urn:x' version='2' "
            b"state='full' x:flag='1'><registration aor='sip:a@h' id='r' state='active'>"
            b"<x:extra/></registration><x:other/></reginfo>")
    assert parse_reginfo(body).registrations[0].contacts == ()


# ---------------------------------------------------------------- RegState (RFC 3680 versions)


def apply(state: RegState, body: bytes) -> str:
    return state.apply(parse_reginfo(body)).outcome


def test_full_then_partial_merges_contacts_by_id() -> None:
    state = RegState()
    assert apply(state, doc(0, "full", registration(contact("c1")))) == "applied"
    result = state.apply(parse_reginfo(doc(1, "partial", registration(contact("c2")))))
    assert result.outcome == "applied"
    assert [c.id for c in result.changed[0].contacts] == ["c1", "c2"]
    assert [c.id for c in state.registrations[AOR].contacts] == ["c1", "c2"]


def test_terminated_contact_is_reported_once_then_forgotten() -> None:
    state = RegState()
    apply(state, doc(0, "full", registration(contact("c1"), contact("c2"))))
    gone = contact("c1", state="terminated", event="expired", expires=0)
    result = state.apply(parse_reginfo(doc(1, "partial", registration(gone))))
    assert gone in result.changed[0].contacts
    assert [c.id for c in state.registrations[AOR].contacts] == ["c2"]


def test_old_version_is_ignored_and_changes_nothing() -> None:
    state = RegState()
    apply(state, doc(5, "full", registration(contact("c1"))))
    assert apply(state, doc(5, "partial", registration(contact("c2")))) == "stale"
    assert apply(state, doc(3, "full")) == "stale"
    assert state.version == 5 and list(state.registrations) == [AOR]


def test_full_state_repeating_the_version_is_applied_as_kamailio_sends_it() -> None:
    state = RegState()
    apply(state, doc(0, "full", registration(contact("c1"))))
    result = state.apply(parse_reginfo(doc(0, "full", registration(contact("c2")))))
    assert (result.outcome, result.repeated) == ("applied", True)
    assert [c.id for c in state.registrations[AOR].contacts] == ["c2"]


def test_a_gap_is_applied_asks_for_full_state_and_full_state_recovers() -> None:
    state = RegState()
    apply(state, doc(1, "full", registration(contact("c1"))))
    result = state.apply(parse_reginfo(doc(3, "partial", registration(contact("c2")))))
    # RFC 3680 §5.2 (REG-008): processed, the version jumps; and full state is wanted.
    assert result.needs_full_state and state.version == 3
    assert [c.id for c in state.registrations[AOR].contacts] == ["c1", "c2"]
    assert [[c.id for c in r.contacts] for r in result.changed] == [["c1", "c2"]]
    assert apply(state, doc(4, "partial", registration(contact("c4")))) == "applied"
    # A full document may skip versions: it carries everything.
    assert apply(state, doc(7, "full", registration(contact("c3")))) == "applied"
    assert [c.id for c in state.registrations[AOR].contacts] == ["c3"]


def test_partial_before_any_full_state_is_a_gap_and_applied() -> None:
    state = RegState()
    assert apply(state, doc(0, "partial", registration(contact()))) == "gap"
    assert state.version == 0 and AOR in state.registrations


def test_full_state_reports_registrations_it_dropped_as_terminated() -> None:
    state = RegState()
    apply(state, doc(0, "full", registration(contact()),
                     registration(contact(), aor="sip:bob@lab.test")))
    result = state.apply(parse_reginfo(doc(1, "full", registration(contact()))))
    assert [(r.aor, r.state, r.contacts) for r in result.changed] == [
        ("sip:bob@lab.test", "terminated", ()), (AOR, "active", (contact(),))]
    assert list(state.registrations) == [AOR]


def test_reset_starts_a_new_version_sequence() -> None:
    state = RegState()
    apply(state, doc(9, "full"))
    state.reset()
    assert apply(state, doc(0, "full")) == "applied"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_no_input_escapes_as_anything_but_reginfo_error(data: bytes) -> None:
    with contextlib.suppress(ReginfoError):
        parse_reginfo(b"<reginfo xmlns='urn:ietf:params:xml:ns:reginfo' " + data)
