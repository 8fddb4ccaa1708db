"""Tests for reference.pidf: RFC 3863 rules (SUB-090..102), SER leniency, hardening."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference.pidf import (
    Note,
    Person,
    PidfError,
    PidfLimits,
    PresenceDocument,
    PresenceTuple,
    build_pidf,
    parse_pidf,
)

PIDF = "urn:ietf:params:xml:ns:pidf"
DM = "urn:ietf:params:xml:ns:pidf:data-model"
RPID = "urn:ietf:params:xml:ns:pidf:rpid"


def doc(inner: str, *, entity: str = 'entity="pres:alice@example.com"', ns: str = "") -> bytes:
    """A default-namespace PIDF document around ``inner``."""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>'
        f'<presence xmlns="{PIDF}" {ns} {entity}>{inner}</presence>'
    ).encode()


def one_tuple(status: str = "<basic>open</basic>", extra: str = "") -> bytes:
    return doc(f'<tuple id="t1"><status>{status}</status>{extra}</tuple>')


def assert_fast(started: float, limit: float = 1.0) -> None:
    assert time.perf_counter() - started < limit


# ------------------------------------------------------------------ SUB-091 namespaces

TWO_TUPLES_DEFAULT = doc(
    '<tuple id="a"><status><basic>open</basic></status>'
    '<contact priority="0.8">sip:alice@10.0.0.1</contact><note xml:lang="en">hi</note></tuple>'
    '<tuple id="b"><status><basic>closed</basic></status></tuple><note>top</note>'
)
TWO_TUPLES_PREFIXED = (
    f'<p:presence xmlns:p="{PIDF}" entity="pres:alice@example.com">'
    '<p:tuple id="a"><p:status><p:basic>open</p:basic></p:status>'
    '<p:contact priority="0.8">sip:alice@10.0.0.1</p:contact>'
    '<p:note xml:lang="en">hi</p:note></p:tuple>'
    '<p:tuple id="b"><p:status><p:basic>closed</p:basic></p:status></p:tuple>'
    "<p:note>top</p:note></p:presence>"
).encode()
TWO_TUPLES_MIXED = (
    f'<x:presence xmlns:x="{PIDF}" entity="pres:alice@example.com">'
    f'<tuple xmlns="{PIDF}" id="a"><status><y:basic xmlns:y="{PIDF}">open</y:basic></status>'
    '<contact priority="0.8">sip:alice@10.0.0.1</contact><note xml:lang="en">hi</note></tuple>'
    '<x:tuple id="b"><x:status><x:basic>closed</x:basic></x:status></x:tuple>'
    "<x:note>top</x:note></x:presence>"
).encode()


@pytest.mark.parametrize("lenient", [False, True])
def test_sub091_prefix_variants_give_identical_documents(lenient: bool) -> None:
    parsed = [
        parse_pidf(body, lenient=lenient)
        for body in (TWO_TUPLES_DEFAULT, TWO_TUPLES_PREFIXED, TWO_TUPLES_MIXED)
    ]
    assert parsed[0] == parsed[1] == parsed[2]
    first = parsed[0]
    assert [t.id for t in first.tuples] == ["a", "b"]
    assert first.tuples[0].contact == "sip:alice@10.0.0.1"
    assert first.tuples[0].priority == 0.8
    assert first.tuples[0].notes == (Note("hi", "en"),)
    assert first.notes == (Note("top", None),)


def test_sub091_wrong_namespace_root_rejected_in_both_profiles() -> None:
    cpim = b'<presence xmlns="urn:ietf:params:xml:ns:cpim-pidf" entity="x"/>'
    for lenient in (False, True):
        with pytest.raises(PidfError, match="root element"):
            parse_pidf(cpim, lenient=lenient)
    with pytest.raises(PidfError, match="root element"):
        parse_pidf(f'<tuple xmlns="{PIDF}" id="x"/>'.encode())


def test_no_namespace_root_only_in_lenient_profile() -> None:
    body = (
        b'<presence entity="x"><tuple id="t"><status><basic>open</basic></status></tuple>'
        b"</presence>"
    )
    with pytest.raises(PidfError, match="root element"):
        parse_pidf(body)
    parsed = parse_pidf(body, lenient=True)
    assert parsed.entity == "x"
    assert parsed.tuples[0].basic == "open"


# ------------------------------------------------------------------ SUB-092 entity


def test_sub092_missing_entity_rejected_in_strict_profile() -> None:
    with pytest.raises(PidfError, match="entity"):
        parse_pidf(doc("", entity=""))
    with pytest.raises(PidfError, match="entity"):
        parse_pidf(doc("", entity='entity="  "'))


def test_sub092_missing_entity_allowed_in_lenient_profile() -> None:
    assert parse_pidf(doc("", entity=""), lenient=True).entity == ""


# ------------------------------------------------------------------ SUB-093 zero tuples


def test_sub093_zero_tuples_is_legal_and_basic_is_none() -> None:
    parsed = parse_pidf(doc("<note>nobody home</note>"))
    assert parsed.tuples == ()
    assert parsed.basic is None
    assert parsed.notes == (Note("nobody home"),)


# ------------------------------------------------------------------ SUB-094 tuple id, status


@pytest.mark.parametrize("lenient", [False, True])
def test_sub094_tuple_without_status_rejects_whole_document(lenient: bool) -> None:
    body = doc(
        '<tuple id="ok"><status><basic>open</basic></status></tuple>'
        '<tuple id="bad"><contact>sip:x@y</contact></tuple>'
    )
    with pytest.raises(PidfError, match="'bad' has no status"):
        parse_pidf(body, lenient=lenient)


def test_sub094_tuple_without_id_strict_rejects_lenient_accepts() -> None:
    body = doc("<tuple><status><basic>open</basic></status></tuple>")
    with pytest.raises(PidfError, match="no id"):
        parse_pidf(body)
    assert parse_pidf(body, lenient=True).tuples[0].id == ""


def test_sub094_duplicate_tuple_ids_strict_rejects_lenient_accepts() -> None:
    status = "<status><basic>open</basic></status>"
    body = doc(f'<tuple id="d">{status}</tuple><tuple id="d">{status}</tuple>')
    with pytest.raises(PidfError, match="duplicate tuple id: 'd'"):
        parse_pidf(body)
    assert len(parse_pidf(body, lenient=True).tuples) == 2


def test_sub094_two_status_elements_strict_rejects_lenient_uses_first() -> None:
    body = doc(
        '<tuple id="t"><status><basic>open</basic></status>'
        "<status><basic>closed</basic></status></tuple>"
    )
    with pytest.raises(PidfError, match="2 status"):
        parse_pidf(body)
    assert parse_pidf(body, lenient=True).tuples[0].basic == "open"


# ------------------------------------------------------------------ SUB-095/096 basic


def test_sub095_missing_basic_is_none_strict_and_closed_lenient() -> None:
    body = one_tuple('<x:foo xmlns:x="urn:example:x">bar</x:foo>')
    strict = parse_pidf(body)
    assert strict.tuples[0].basic is None
    # Serialised with every namespace declaration in scope (QNames in content keep working).
    (extension,) = strict.tuples[0].extensions
    assert extension.startswith("<x:foo ") and extension.endswith(">bar</x:foo>")
    assert 'xmlns:x="urn:example:x"' in extension
    assert strict.basic is None  # no tuple with a valid basic: unknown, not closed
    assert parse_pidf(body, lenient=True).tuples[0].basic == "closed"


@pytest.mark.parametrize(
    ("value", "strict", "lenient"),
    [
        ("open", "open", "open"),
        ("closed", "closed", "closed"),
        (" open\n", "open", "open"),
        ("OPEN", None, "open"),
        ("Open", None, "open"),
        ("busy", None, "closed"),
        ("", None, "closed"),
    ],
)
def test_sub096_basic_values(value: str, strict: str | None, lenient: str) -> None:
    body = one_tuple(f"<basic>{value}</basic>")
    assert parse_pidf(body).tuples[0].basic == strict
    assert parse_pidf(body, lenient=True).tuples[0].basic == lenient


def test_sub096_two_basic_elements_rejected_in_strict_profile() -> None:
    with pytest.raises(PidfError, match="2 basic"):
        parse_pidf(one_tuple("<basic>open</basic><basic>closed</basic>"))


def test_aggregate_basic_is_open_when_any_tuple_is_open() -> None:
    def tuples(*values: str) -> PresenceDocument:
        return PresenceDocument(
            entity="e",
            tuples=tuple(PresenceTuple(id=str(i), basic=v) for i, v in enumerate(values)),
        )

    assert tuples("closed", "open").basic == "open"
    assert tuples("closed", "closed").basic == "closed"
    assert PresenceDocument(entity="e", tuples=(PresenceTuple(id="x"),)).basic is None
    assert tuples("closed").basic == "closed"
    assert PresenceDocument(entity="e").basic is None


# ------------------------------------------------------------------ SUB-097 contact priority


@pytest.mark.parametrize(
    ("raw", "expected"), [("0", 0.0), ("1", 1.0), ("0.5", 0.5), ("0.125", 0.125), ("1.000", 1.0)]
)
def test_sub097_valid_priorities(raw: str, expected: float) -> None:
    body = one_tuple(extra=f'<contact priority="{raw}">sip:a@b</contact>')
    assert parse_pidf(body).tuples[0].priority == expected


@pytest.mark.parametrize("raw", ["1.5", "0.1234", "-0.1", "abc", "", "1.001", "nan"])
def test_sub097_invalid_priority_rejected_in_strict_profile(raw: str) -> None:
    body = one_tuple(extra=f'<contact priority="{raw}">sip:a@b</contact>')
    with pytest.raises(PidfError, match="bad contact priority"):
        parse_pidf(body)


@pytest.mark.parametrize(("raw", "expected"), [("abc", None), ("1.5", 1.5), ("nan", None)])
def test_sub097_lenient_priority_is_a_plain_number(raw: str, expected: float | None) -> None:
    body = one_tuple(extra=f'<contact priority="{raw}">sip:a@b</contact>')
    assert parse_pidf(body, lenient=True).tuples[0].priority == expected


def test_sub097_two_contacts_strict_rejects_lenient_uses_first() -> None:
    body = one_tuple(extra="<contact>sip:1@x</contact><contact>sip:2@x</contact>")
    with pytest.raises(PidfError, match="2 contact"):
        parse_pidf(body)
    assert parse_pidf(body, lenient=True).tuples[0].contact == "sip:1@x"


# ------------------------------------------------------------------ SUB-098/099 notes, timestamp


def test_sub098_repeated_notes_keep_xml_lang() -> None:
    body = one_tuple(
        extra='<note xml:lang="en">Gone</note><note xml:lang="fr">Parti</note><note>x</note>'
    )
    assert parse_pidf(body).tuples[0].notes == (
        Note("Gone", "en"),
        Note("Parti", "fr"),
        Note("x", None),
    )


def test_sub099_timestamp_kept_strict_ignored_lenient() -> None:
    body = one_tuple(extra="<timestamp> 2005-05-30T22:00:29.123+02:00 </timestamp>")
    assert parse_pidf(body).tuples[0].timestamp == "2005-05-30T22:00:29.123+02:00"
    assert parse_pidf(body, lenient=True).tuples[0].timestamp is None


# ------------------------------------------------------------------ SUB-100/101 extensions


def test_sub100_unknown_extensions_kept_and_basic_still_applied() -> None:
    body = doc(
        '<tuple id="t"><status><basic>open</basic><im:im>busy</im:im></status>'
        "<ex:location>home</ex:location></tuple><ex:top/>",
        ns='xmlns:im="urn:ietf:params:xml:ns:pidf:im" xmlns:ex="urn:example:ex"',
    )
    parsed = parse_pidf(body)
    assert parsed.basic == "open"
    extensions = parsed.tuples[0].extensions
    assert len(extensions) == 2
    assert extensions[0].startswith("<im:im") and ">busy</im:im>" in extensions[0]
    assert extensions[1].startswith("<ex:location") and ">home</ex:location>" in extensions[1]
    assert len(parsed.extensions) == 1 and parsed.extensions[0].startswith("<ex:top")


@pytest.mark.parametrize(
    "attribute", ['p:mustUnderstand="true"', 'p:mustUnderstand="1"', 'mustUnderstand=" true "']
)
def test_sub101_must_understand_unknown_element_rejected(attribute: str) -> None:
    body = one_tuple(
        f'<basic>open</basic><ex:geo xmlns:ex="urn:example:ex" xmlns:p="{PIDF}" {attribute}/>'
    )
    with pytest.raises(PidfError, match=r"element \{urn:example:ex\}geo must be understood"):
        parse_pidf(body)
    # SER never looked at mustUnderstand.
    assert parse_pidf(body, lenient=True).tuples[0].basic == "open"


def test_sub101_must_understand_false_or_on_known_element_is_fine() -> None:
    body = one_tuple(
        '<basic>open</basic><ex:geo xmlns:ex="urn:example:ex" mustUnderstand="false"/>',
        extra='<note mustUnderstand="true">known</note>',
    )
    assert parse_pidf(body).tuples[0].basic == "open"


def test_sub101_must_understand_nested_and_invalid_value() -> None:
    nested = doc('<ex:a xmlns:ex="urn:example:ex"><ex:b mustUnderstand="1"/></ex:a>')
    with pytest.raises(PidfError, match="must be understood"):
        parse_pidf(nested)
    bad = doc('<ex:a xmlns:ex="urn:example:ex" mustUnderstand="yes"/>')
    with pytest.raises(PidfError, match="bad mustUnderstand value"):
        parse_pidf(bad)


# ------------------------------------------------------------------ SUB-102 encodings


def test_sub102_utf8_non_ascii_note_intact() -> None:
    body = one_tuple(extra="<note>Café — 東京 ✓</note>")
    assert parse_pidf(body).tuples[0].notes[0].text == "Café — 東京 ✓"


@pytest.mark.parametrize("encoding", ["ISO-8859-1", "UTF-16"])
def test_sub102_declared_encodings(encoding: str) -> None:
    text = (
        f'<?xml version="1.0" encoding="{encoding}"?>'
        f'<presence xmlns="{PIDF}" entity="pres:é@x"><tuple id="t"><status>'
        "<basic>open</basic></status><note>déjà vu</note></tuple></presence>"
    )
    parsed = parse_pidf(text.encode(encoding.lower()))
    assert parsed.entity == "pres:é@x"
    assert parsed.tuples[0].notes[0].text == "déjà vu"


def test_sub102_unknown_declared_encoding_is_pidf_error() -> None:
    with pytest.raises(PidfError, match="not well-formed"):
        parse_pidf(b'<?xml version="1.0" encoding="klingon-8"?><presence/>')


# ------------------------------------------------------------------ RPID persons


RPID_DOC = doc(
    '<tuple id="t"><status><basic>open</basic></status></tuple>'
    '<dm:person id="p1"><rp:activities><rp:on-the-phone/><rp:meeting/>'
    "<rp:other>gardening</rp:other><rp:note>n</rp:note></rp:activities>"
    '<dm:note xml:lang="en">busy</dm:note><rp:mood><rp:happy/></rp:mood></dm:person>'
    '<dm:device id="d1"><dm:deviceID>urn:x</dm:deviceID></dm:device>',
    ns=f'xmlns:dm="{DM}" xmlns:rp="{RPID}"',
)


@pytest.mark.parametrize("lenient", [False, True])
def test_rpid_person_activities_and_notes(lenient: bool) -> None:
    parsed = parse_pidf(RPID_DOC, lenient=lenient)
    assert parsed.persons == (
        Person(
            id="p1",
            activities=("on-the-phone", "meeting", "gardening"),
            notes=(Note("busy", "en"),),
        ),
    )
    assert len(parsed.extensions) == 1 and "deviceID" in parsed.extensions[0]
    assert parsed.basic == "open"


# ------------------------------------------------------------------ to_json


def test_to_json_is_json_safe_and_has_the_contract_keys() -> None:
    parsed = parse_pidf(RPID_DOC)
    data = parsed.to_json()
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {"entity", "basic", "tuples", "notes", "persons"}
    assert data["basic"] == "open"
    tuples = data["tuples"]
    assert isinstance(tuples, list)
    assert set(tuples[0]) == {"id", "basic", "contact", "priority", "notes", "timestamp"}
    full = parse_pidf(TWO_TUPLES_DEFAULT).to_json()
    assert full["tuples"] == [
        {
            "id": "a",
            "basic": "open",
            "contact": "sip:alice@10.0.0.1",
            "priority": 0.8,
            "notes": [{"text": "hi", "lang": "en"}],
            "timestamp": None,
        },
        {
            "id": "b",
            "basic": "closed",
            "contact": None,
            "priority": None,
            "notes": [],
            "timestamp": None,
        },
    ]
    assert full["notes"] == [{"text": "top", "lang": None}]


# ------------------------------------------------------------------ hostile inputs

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE presence [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
        for i in range(1, 10)
    )
    + f']><presence xmlns="{PIDF}" entity="x"><note>&lol9;</note></presence>'.encode()
)
XXE_FILE = (
    b'<?xml version="1.0"?><!DOCTYPE presence [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    + f'<presence xmlns="{PIDF}" entity="x"><note>&xxe;</note></presence>'.encode()
)
EXTERNAL_DTD = (
    b'<?xml version="1.0"?><!DOCTYPE presence SYSTEM "http://198.51.100.1/pidf.dtd">'
    + f'<presence xmlns="{PIDF}" entity="x"/>'.encode()
)


@pytest.mark.parametrize(
    "body",
    [BILLION_LAUGHS, XXE_FILE, EXTERNAL_DTD, XXE_FILE.decode().encode("utf-16")],
    ids=["billion-laughs", "xxe-file", "external-dtd", "xxe-utf16"],
)
@pytest.mark.parametrize("lenient", [False, True])
def test_doctype_rejected_quickly(body: bytes, lenient: bool) -> None:
    started = time.perf_counter()
    with pytest.raises(PidfError, match="DOCTYPE not allowed"):
        parse_pidf(body, lenient=lenient)
    assert_fast(started)


def test_undeclared_entity_reference_is_pidf_error() -> None:
    with pytest.raises(PidfError, match="not well-formed"):
        parse_pidf(one_tuple(extra="<note>&xxe;</note>"))


def test_ten_megabyte_body_rejected_by_size_first() -> None:
    body = one_tuple(extra="<note>" + "a" * 10_000_000 + "</note>")
    started = time.perf_counter()
    with pytest.raises(PidfError, match="too large"):
        parse_pidf(body)
    assert_fast(started, 0.2)


def test_depth_ten_thousand_rejected_quickly() -> None:
    body = doc("<x>" * 10_000 + "</x>" * 10_000)
    started = time.perf_counter()
    with pytest.raises(PidfError, match="nesting deeper than 32"):
        parse_pidf(body, limits=PidfLimits(max_bytes=1_000_000))
    assert_fast(started)
    with pytest.raises(PidfError):
        parse_pidf(body)  # default limits: rejected too (size or depth)


def test_hundred_thousand_elements_rejected_quickly() -> None:
    body = doc("<note>x</note>" * 100_000)
    started = time.perf_counter()
    with pytest.raises(PidfError, match="more than 2000 elements"):
        parse_pidf(body, limits=PidfLimits(max_bytes=10_000_000))
    assert_fast(started)
    with pytest.raises(PidfError, match="too large"):
        parse_pidf(body)


def test_limits_are_inclusive_bounds() -> None:
    body = one_tuple()  # presence/tuple/status/basic: depth 4, 4 elements
    assert parse_pidf(body, limits=PidfLimits(max_bytes=len(body), max_depth=4, max_elements=4))
    with pytest.raises(PidfError, match="nesting"):
        parse_pidf(body, limits=PidfLimits(max_depth=3))
    with pytest.raises(PidfError, match="elements"):
        parse_pidf(body, limits=PidfLimits(max_elements=3))
    with pytest.raises(PidfError, match="too large"):
        parse_pidf(body, limits=PidfLimits(max_bytes=len(body) - 1))


def test_pidf_limits_validate_values() -> None:
    with pytest.raises(ValueError, match="max_depth"):
        PidfLimits(max_depth=0)


@pytest.mark.parametrize(
    "body",
    [b"", b"   ", b"\x00\xff\xfe", b"<presence", b"not xml", b"<a></b>", b"\xef\xbb\xbf"],
)
def test_garbage_is_pidf_error(body: bytes) -> None:
    with pytest.raises(PidfError):
        parse_pidf(body)


def test_non_bytes_input_is_pidf_error() -> None:
    with pytest.raises(PidfError, match="must be bytes"):
        parse_pidf("<presence/>")  # type: ignore[arg-type]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=400), lenient=st.booleans())
def test_arbitrary_bytes_give_document_or_pidf_error(data: bytes, lenient: bool) -> None:
    try:
        result = parse_pidf(data, lenient=lenient)
    except PidfError:
        return
    assert isinstance(result, PresenceDocument)


@settings(max_examples=300)
@given(
    cut=st.integers(min_value=0, max_value=len(RPID_DOC)),
    insert=st.binary(max_size=8),
    lenient=st.booleans(),
)
def test_mutated_documents_give_document_or_pidf_error(
    cut: int, insert: bytes, lenient: bool
) -> None:
    data = RPID_DOC[:cut] + insert + RPID_DOC[cut + len(insert) :]
    try:
        result = parse_pidf(data, lenient=lenient)
    except PidfError:
        return
    json.dumps(result.to_json())


# ------------------------------------------------------------------ build


def test_build_convenience_form() -> None:
    body = build_pidf("pres:bob@example.com", basic="open", contact="sip:bob@10.0.0.2", note="hé")
    assert body.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    parsed = parse_pidf(body)
    assert parsed == PresenceDocument(
        entity="pres:bob@example.com",
        tuples=(
            PresenceTuple(id="t1", basic="open", contact="sip:bob@10.0.0.2", notes=(Note("hé"),)),
        ),
    )
    assert parse_pidf(build_pidf("pres:x@y")).tuples == ()


def test_build_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="either tuples"):
        build_pidf("e", [PresenceTuple(id="a")], basic="open")
    with pytest.raises(ValueError, match="basic must be"):
        build_pidf("e", basic="busy")
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        build_pidf("e", [PresenceTuple(id="a", contact="sip:a@b", priority=1.5)])
    with pytest.raises(ValueError, match="without contact"):
        build_pidf("e", [PresenceTuple(id="a", priority=0.5)])
    with pytest.raises(ValueError, match="bad extension"):
        build_pidf("e", [PresenceTuple(id="a", extensions=("<unclosed>",))])


def test_build_keeps_extensions_through_a_round_trip() -> None:
    parsed = parse_pidf(RPID_DOC)
    again = parse_pidf(
        build_pidf(parsed.entity, parsed.tuples, notes=parsed.notes, persons=parsed.persons)
    )
    assert again.persons == parsed.persons
    ext = PresenceTuple(id="x", basic="open", extensions=('<e:a xmlns:e="urn:e">1</e:a>',))
    first = parse_pidf(build_pidf("e", [ext]))
    (extension,) = first.tuples[0].extensions
    assert extension.startswith("<e:a ") and extension.endswith(">1</e:a>")
    # The builder's in-scope namespaces get added once; after that the cycle is stable.
    assert parse_pidf(build_pidf("e", first.tuples)) == first


xml_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
    max_size=20,
)
token = st.from_regex(r"[A-Za-z][A-Za-z0-9.-]{0,10}", fullmatch=True)
notes_strategy = st.lists(
    st.builds(Note, text=xml_text, lang=st.none() | st.sampled_from(["en", "fr", "de-CH"])),
    max_size=3,
).map(tuple)
tuple_strategy = st.builds(
    PresenceTuple,
    id=token,
    basic=st.sampled_from([None, "open", "closed"]),
    contact=st.none() | token.map(lambda t: f"sip:{t}@example.com"),
    priority=st.none(),
    notes=notes_strategy,
    timestamp=st.none() | st.just("2026-11-26T14:00:00Z"),
    extensions=st.just(()),
)


@st.composite
def tuples_with_priority(draw: st.DrawFn) -> list[PresenceTuple]:
    drawn = draw(st.lists(tuple_strategy, max_size=4, unique_by=lambda t: t.id))
    result = []
    for item in drawn:
        if item.contact is not None and draw(st.booleans()):
            priority = draw(st.integers(0, 1000)) / 1000
            item = dataclasses.replace(item, priority=priority)
        result.append(item)
    return result


person_strategy = st.builds(
    Person,
    id=st.none() | token,
    activities=st.lists(token | st.just("gone fishing"), max_size=3).map(tuple),
    notes=notes_strategy,
)


@settings(max_examples=150)
@given(
    entity=token.map(lambda t: f"pres:{t}@example.com"),
    tuples=tuples_with_priority(),
    notes=notes_strategy,
    persons=st.lists(person_strategy, max_size=2).map(tuple),
)
def test_build_parse_round_trip(
    entity: str, tuples: list[PresenceTuple], notes: tuple[Note, ...], persons: tuple[Person, ...]
) -> None:
    body = build_pidf(entity, tuples, notes=notes, persons=persons)
    parsed = parse_pidf(body)
    assert parsed == PresenceDocument(
        entity=entity, tuples=tuple(tuples), notes=notes, persons=persons
    )
    lenient = parse_pidf(body, lenient=True)
    assert [t.basic for t in lenient.tuples] == [t.basic or "closed" for t in tuples]
