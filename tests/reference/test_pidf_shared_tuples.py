"""The tuples a PIDF walk hands out again (reference/pidf.py, `_Reader._tuple`): a tuple read
from the same values as one read before is that one; every document still equals, in value
and in repr, the one a fresh walk gives; at most SHARED_TUPLES are kept."""

from __future__ import annotations

import contextlib
import re

import pytest

from reference import pidf
from reference.pidf import DEFAULT_LIMITS, SHARED_TUPLES, PidfError

PIDF = 'xmlns="urn:ietf:params:xml:ns:pidf"'


def _body(entity: str, tuple_xml: str) -> bytes:
    return f'<presence {PIDF} entity="{entity}">{tuple_xml}</presence>'.encode()


TUPLES = [
    '<tuple id="t1"><status><basic>open</basic></status></tuple>',
    '<tuple id="t1"><status><basic>closed</basic></status><note>version 3</note></tuple>',
    '<tuple id="t1"><status><basic>open</basic></status><note xml:lang="en">away</note>'
    '<note>two</note></tuple>',
    '<tuple id="t2"><status><basic>open</basic></status>'
    '<contact priority="0.5">sip:a@b</contact></tuple>',
    '<tuple id="t2"><status><basic>open</basic></status>'
    '<contact priority="0.50">sip:a@b</contact></tuple>',
    '<tuple id="t2"><status><basic>open</basic></status>'
    '<contact priority="0">sip:a@b</contact></tuple>',
    '<tuple id="t2"><status><basic>open</basic></status>'
    '<contact priority="-0">sip:a@b</contact></tuple>',
    '<tuple id="t2"><status><basic>open</basic></status>'
    '<contact priority="junk">sip:a@b</contact></tuple>',
    '<tuple id="t3"><status><basic>OPEN</basic><x:e xmlns:x="urn:x">1</x:e></status>'
    '<timestamp> 2026-12-07T06:00:00Z </timestamp><y:f xmlns:y="urn:y"/></tuple>',
    '<tuple id="t3"><status><basic>maybe</basic></status><timestamp>a</timestamp>'
    '<timestamp>b</timestamp></tuple>',
    '<tuple><status/></tuple>',
    '<tuple id="t4"><status><basic>open</basic></status><contact>sip:a@b</contact>'
    '<contact>sip:c@d</contact></tuple>',
]


def _fresh(body: bytes, lenient: bool) -> pidf.PresenceDocument:
    pidf._SHARED_TUPLES.clear()
    return pidf._parse(body, lenient, DEFAULT_LIMITS)


@pytest.mark.parametrize("lenient", [False, True])
@pytest.mark.parametrize("tuple_xml", TUPLES)
def test_a_walk_with_shared_tuples_equals_a_fresh_walk(lenient: bool, tuple_xml: str) -> None:
    for entity in ("sip:p1@lab.test", "sip:p2@lab.test"):
        body = _body(entity, tuple_xml)
        try:
            expected = _fresh(body, lenient)
        except PidfError as exc:
            with pytest.raises(PidfError, match=re.escape(str(exc))):
                pidf._parse(body, lenient, DEFAULT_LIMITS)
            return
        # Warm: every tuple of every shape read before, in both profiles.
        for other in TUPLES:
            for profile in (False, True):
                with contextlib.suppress(PidfError):
                    pidf._parse(_body(entity, other), profile, DEFAULT_LIMITS)
        got = pidf._parse(body, lenient, DEFAULT_LIMITS)
        assert got == expected and repr(got) == repr(expected)
    # The same tuple under two presentities is one object.
    first, second = (pidf._parse(_body(entity, tuple_xml), lenient, DEFAULT_LIMITS)
                     for entity in ("sip:p1@lab.test", "sip:p2@lab.test"))
    assert first.tuples[0] is second.tuples[0]


def test_negative_zero_priority_is_not_taken_for_zero() -> None:
    pidf._SHARED_TUPLES.clear()
    zero = pidf._parse(_body("sip:p@l", TUPLES[5]), True, DEFAULT_LIMITS)
    minus = pidf._parse(_body("sip:p@l", TUPLES[6]), True, DEFAULT_LIMITS)
    assert repr(zero.tuples[0].priority) == "0.0"
    assert repr(minus.tuples[0].priority) == "-0.0"


def test_the_profiles_share_nothing() -> None:
    pidf._SHARED_TUPLES.clear()
    body = _body("sip:p@l", TUPLES[8])
    strict = pidf._parse(body, False, DEFAULT_LIMITS)
    lenient = pidf._parse(body, True, DEFAULT_LIMITS)
    assert strict.tuples[0].basic is None and lenient.tuples[0].basic == "open"


def test_the_shared_tuples_are_bounded() -> None:
    pidf._SHARED_TUPLES.clear()
    for n in range(SHARED_TUPLES * 2 + 10):
        tuple_xml = f'<tuple id="t{n}"><status><basic>open</basic></status></tuple>'
        document = pidf._parse(_body("sip:p@l", tuple_xml), False, DEFAULT_LIMITS)
        assert document.tuples[0].id == f"t{n}"
        assert len(pidf._SHARED_TUPLES) <= SHARED_TUPLES
