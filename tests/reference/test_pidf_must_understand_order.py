"""The strict PIDF walk checks mustUnderstand only when the PIDF elements it read are not all
the elements, or when it failed (reference/pidf.py, `_Reader.document`): the outcome, error
text included, is the one of checking first and walking after."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from lxml import etree

from reference import pidf
from reference.pidf import DEFAULT_LIMITS, PidfError
from reference.xmlsafe import parse_xml

NS = 'xmlns="urn:ietf:params:xml:ns:pidf"'
X = 'xmlns:x="urn:x"'
P = 'xmlns:p="urn:ietf:params:xml:ns:pidf"'
STATUS = "<status><basic>open</basic></status>"

BODIES = [
    f'<presence {NS} entity="sip:a@b"><tuple id="t">{STATUS}</tuple></presence>',
    f'<presence {NS} entity="sip:a@b"><tuple id="t">{STATUS}<note>n</note>'
    "<contact priority='0.5'>sip:c@d</contact><timestamp>z</timestamp></tuple>"
    "<note>top</note></presence>",
    # Non-PIDF elements: understood or not, with and without mustUnderstand.
    f'<presence {NS} {X} entity="sip:a@b"><tuple id="t">{STATUS}<x:e/></tuple></presence>',
    f'<presence {NS} {X} {P} entity="sip:a@b"><tuple id="t">{STATUS}'
    '<x:e p:mustUnderstand="true"/></tuple></presence>',
    f'<presence {NS} {X} {P} entity="sip:a@b"><tuple id="t">{STATUS}'
    '<x:e p:mustUnderstand="false"/></tuple></presence>',
    f'<presence {NS} {X} entity="sip:a@b"><tuple id="t">{STATUS}'
    '<x:e mustUnderstand="maybe"/></tuple></presence>',
    f'<presence {NS} {X} {P} entity="sip:a@b"><x:top p:mustUnderstand="1"/></presence>',
    f'<presence {NS} {X} {P} entity="sip:a@b"><tuple id="t"><status><basic>open</basic>'
    '<x:s p:mustUnderstand="1"/></status></tuple></presence>',
    f'<presence {NS} {X} {P} entity="sip:a@b"><tuple id="t">{STATUS}'
    '<note>a<x:in p:mustUnderstand="1"/></note></tuple></presence>',
    f'<presence {NS} {X} {P} entity="sip:a@b"><tuple id="t">{STATUS}'
    '<contact>sip:c@d<x:in p:mustUnderstand="1"/></contact></tuple></presence>',
    # Walk errors, alone and together with a mustUnderstand error (which wins).
    f'<presence {NS} entity=""><tuple id="t">{STATUS}</tuple></presence>',
    f'<presence {NS} {X} {P} entity=""><x:e p:mustUnderstand="1"/></presence>',
    f'<presence {NS} entity="sip:a@b"><tuple>{STATUS}</tuple></presence>',
    f'<presence {NS} {X} {P} entity="sip:a@b"><tuple>{STATUS}</tuple>'
    '<x:e p:mustUnderstand="true"/></presence>',
    f'<presence {NS} entity="sip:a@b"><tuple id="t">{STATUS}</tuple>'
    f'<tuple id="t">{STATUS}</tuple></presence>',
    f'<presence {NS} {X} {P} entity="sip:a@b"><tuple id="t">{STATUS}</tuple>'
    f'<tuple id="t">{STATUS}<x:e p:mustUnderstand="1"/></tuple></presence>',
    f'<presence {NS} entity="sip:a@b"><tuple id="t"><status><basic>open</basic>'
    "<basic>closed</basic></status></tuple></presence>",
    f'<presence {NS} entity="sip:a@b"><tuple id="t">{STATUS}'
    "<contact priority='2'>sip:c@d</contact></tuple></presence>",
    f'<presence {NS} {X} {P} entity="sip:a@b"><tuple id="t">{STATUS}'
    "<contact priority='2'>sip:c@d</contact><x:e p:mustUnderstand='1'/></tuple></presence>",
    f'<presence {NS} entity="sip:a@b"><tuple id="t"/></presence>',
    # PIDF elements where the walk does not read them.
    f'<presence {NS} entity="sip:a@b"><tuple id="t"><status><basic>open</basic><note>s</note>'
    "</status><basic>x</basic></tuple></presence>",
    f'<presence {NS} {P} entity="sip:a@b"><tuple id="t">{STATUS}<note>a<p:b/></note>'
    "</tuple></presence>",
    '<presence xmlns="urn:other" entity="sip:a@b"/>',
    # Elements read for their text, with children.
    f'<presence {NS} {X} {P} entity="sip:a@b"><tuple id="t"><status><basic>open'
    '<x:in p:mustUnderstand="1"/></basic></status></tuple></presence>',
    f'<presence {NS} {X} {P} entity="sip:a@b"><tuple id="t">{STATUS}<timestamp>a'
    '<x:in p:mustUnderstand="1"/></timestamp></tuple></presence>',
    f'<presence {NS} {X} {P} entity="sip:a@b"><tuple id="t">{STATUS}<timestamp>a</timestamp>'
    '<timestamp>b<x:in p:mustUnderstand="1"/></timestamp></tuple></presence>',
    f'<presence {NS} {X} {P} entity="sip:a@b"><note>a<x:in p:mustUnderstand="1"/></note>'
    "</presence>",
    f'<presence {NS} {X} {P} entity="sip:a@b"><note>a<x:in p:mustUnderstand="0"/></note>'
    f'<tuple id="t">{STATUS}</tuple></presence>',
    f'<presence {NS} {P} entity="sip:a@b"><tuple id="t"><status><basic>open<p:b/></basic>'
    "</status></tuple></presence>",
]


def _check_first(root: etree._Element) -> pidf.PresenceDocument:
    reader = pidf._READERS[0]
    reader._check_must_understand(root, len(list(root.iter(etree.Element))))
    return reader._walk(root)[0]


def _outcome(read: Callable[[etree._Element], pidf.PresenceDocument],
             root: etree._Element) -> object:
    try:
        return read(root)
    except PidfError as exc:
        return ("PidfError", str(exc))


@pytest.mark.parametrize("body", BODIES)
def test_the_outcome_is_that_of_checking_first(body: str) -> None:
    root = parse_xml(body.encode(), DEFAULT_LIMITS, PidfError, "PIDF")
    if pidf._READERS[0]._names.get(root.tag) != "presence":
        with pytest.raises(PidfError, match="root element"):
            pidf._READERS[0].document(root)
        return
    pidf._SHARED_TUPLES.clear()
    expected = _outcome(_check_first, root)
    assert _outcome(pidf._READERS[0].document, root) == expected


def test_the_bodies_cover_both_outcomes() -> None:
    outcomes = [
        _outcome(pidf._READERS[0].document,
                 parse_xml(body.encode(), DEFAULT_LIMITS, PidfError, "PIDF"))
        for body in BODIES
    ]
    errors = [o for o in outcomes if isinstance(o, tuple)]
    assert any("must be understood" in e[1] for e in errors)
    assert any("mustUnderstand value" in e[1] for e in errors)
    assert any("entity" in e[1] for e in errors) and len(errors) < len(outcomes)
