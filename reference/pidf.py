"""PIDF (RFC 3863) presence documents: a hardened parser and a builder.

Two parsing profiles share one walk over the XML tree:

* strict (``lenient=False``, the ``rfc6665`` profile) follows RFC 3863 and the
  requirements SUB-090..SUB-102;
* lenient (``lenient=True``, the ``ser`` profile) reproduces what SER's
  ``lib/presence/pidf.c`` accepts (presence_b2b.md section 4.5).

Hardening (both profiles) is ``reference.xmlsafe``'s, shared with reginfo and RLMI: the
size limit checked before any parsing, no DOCTYPE (so no entity expansion, external entities
or DTDs), lxml with entities, DTD loading and network off, depth and element-count limits.
Every failure is a :class:`PidfError`; no other exception escapes for any ``bytes`` input.

Profile differences (strict / lenient):

==========================  =================================  ========================
rule                        strict                             lenient (SER)
==========================  =================================  ========================
root element                {pidf}presence                     presence, pidf or no ns
``entity`` missing/blank    PidfError (SUB-092)                '' (blank kept)
tuple ``id`` missing        PidfError                          ''
duplicate tuple ids         PidfError (SUB-094)                kept
tuple without ``<status>``  PidfError (SUB-094)                PidfError (as SER)
several status/contact/     PidfError                          first one used
basic in one tuple
``<basic>`` value           'open'/'closed' exactly (after     'open' if it equals open
                            trimming), else None (SUB-096)     ignoring case, else
                                                               'closed'
``<basic>`` missing         None (SUB-095)                     'closed'
contact ``priority``        0..1, <= 3 decimals, else          any finite float, else
                            PidfError (SUB-097)                None
``<timestamp>``             kept as trimmed text (SUB-099)     None (SER ignores it)
``mustUnderstand``          true/1 on an element we do not     not checked
                            model -> PidfError (SUB-101)
==========================  =================================  ========================

``mustUnderstand`` is read from the PIDF-namespace attribute (RFC 3863 schema) and,
for interoperability, from an unqualified attribute too; a value that is not an
``xs:boolean`` is an error in strict mode.

RPID: ``<dm:person>`` (urn:ietf:params:xml:ns:pidf:data-model) with
``<rpid:activities>`` (urn:ietf:params:xml:ns:pidf:rpid) is modelled as
:class:`Person`; every other element we do not model is kept as serialised XML in an
``extensions`` tuple.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from lxml import etree

from reference.xmlsafe import XmlLimits, parse_xml

__all__ = [
    "DM_NS",
    "PIDF_NS",
    "RPID_NS",
    "Note",
    "Person",
    "PidfError",
    "PidfLimits",
    "PresenceDocument",
    "PresenceTuple",
    "build_pidf",
    "parse_pidf",
]

PIDF_NS = "urn:ietf:params:xml:ns:pidf"
DM_NS = "urn:ietf:params:xml:ns:pidf:data-model"
RPID_NS = "urn:ietf:params:xml:ns:pidf:rpid"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_PIDF_MUST_UNDERSTAND = f"{{{PIDF_NS}}}mustUnderstand"

# RFC 3863 qvalue: "0" to "1" with up to three decimals.
_PRIORITY_RE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")
# xs:boolean lexical forms.
_XS_TRUE = frozenset({"true", "1"})
_XS_FALSE = frozenset({"false", "0"})
# An XML NCName restricted to ASCII: activity names we may write as element names.
_ACTIVITY_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
class PidfError(ValueError):
    """The body is not an acceptable PIDF document; the text says why."""


@dataclass(frozen=True)
class PidfLimits(XmlLimits):
    """Resource limits applied before and during parsing (``reference.xmlsafe``).

    * ``max_bytes`` (default 65536): longest accepted body, checked before parsing.
    * ``max_depth`` (default 32): deepest element nesting; the root is depth 1.
    * ``max_elements`` (default 2000): most elements in one document.
    """


DEFAULT_LIMITS = PidfLimits()


@dataclass(frozen=True, slots=True)
class Note:
    """A ``<note>``: free text and its ``xml:lang`` (None when not given)."""

    text: str
    lang: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"text": self.text, "lang": self.lang}


@dataclass(frozen=True, slots=True)
class PresenceTuple:
    """One ``<tuple>``.

    ``basic`` is 'open', 'closed' or None (strict: absent or not a valid value;
    lenient never gives None). ``extensions`` holds unknown child elements of the
    tuple and of its ``<status>``, serialised, in document order.
    """

    id: str
    basic: str | None = None
    contact: str | None = None
    priority: float | None = None
    notes: tuple[Note, ...] = ()
    timestamp: str | None = None
    extensions: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "basic": self.basic,
            "contact": self.contact,
            "priority": self.priority,
            "notes": [n.to_json() for n in self.notes],
            "timestamp": self.timestamp,
        }


@dataclass(frozen=True, slots=True)
class Person:
    """An RPID ``<dm:person>``: its id, activity names and ``<dm:note>`` notes."""

    id: str | None = None
    activities: tuple[str, ...] = ()
    notes: tuple[Note, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "activities": list(self.activities),
            "notes": [n.to_json() for n in self.notes],
        }


@dataclass(frozen=True, slots=True)
class PresenceDocument:
    """A parsed ``<presence>`` document."""

    entity: str
    tuples: tuple[PresenceTuple, ...] = ()
    notes: tuple[Note, ...] = ()
    persons: tuple[Person, ...] = ()
    extensions: tuple[str, ...] = ()

    @property
    def basic(self) -> str | None:
        """'open' if any tuple is open, else 'closed' if any tuple is closed, else None (no
        tuple, or no tuple with a valid <basic>: unknown, SUB-095/096)."""
        values = {t.basic for t in self.tuples}
        if "open" in values:
            return "open"
        return "closed" if "closed" in values else None

    def to_json(self) -> dict[str, object]:
        return {
            "entity": self.entity,
            "basic": self.basic,
            "tuples": [t.to_json() for t in self.tuples],
            "notes": [n.to_json() for n in self.notes],
            "persons": [p.to_json() for p in self.persons],
        }


# --------------------------------------------------------------------------- parsing


# (A tuple built once: `bytes | bytearray | memoryview` would build a union on every call.)
_BYTES_TYPES = (bytes, bytearray, memoryview)


def parse_pidf(
    data: object, *, lenient: bool = False, limits: PidfLimits = DEFAULT_LIMITS
) -> PresenceDocument:
    """Parse a PIDF body (bytes, bytearray or memoryview); raise :class:`PidfError` when it
    is not acceptable, a value of another type included.

    ``lenient=False`` is the RFC profile, ``lenient=True`` the SER profile (see the
    module docstring and docs for the differences). (``data`` is typed ``object`` so that
    the compiled build reaches the check below too instead of raising TypeError first.)
    """
    if not isinstance(data, _BYTES_TYPES):
        raise PidfError(f"PIDF body must be bytes, got {type(data).__name__}")
    body = bytes(data)
    if limits is DEFAULT_LIMITS and len(body) <= CACHED_BODY_BYTES:
        return _parse_cached(body, lenient)
    return _parse(body, lenient, limits)


# Parses with the default limits of bodies up to CACHED_BODY_BYTES are remembered (the last
# CACHED_BODIES, least recently used out; failures are not kept): the same document recurs
# (a presentity's state sent to each of its watchers, and again on each refresh), and a
# result is a frozen tree of immutable values, so a hit hands out what the parse would give.
# Bounded in memory: at most CACHED_BODIES x CACHED_BODY_BYTES of keys plus their results.
CACHED_BODIES = 256
CACHED_BODY_BYTES = 4096


def _parse(body: bytes, lenient: bool, limits: PidfLimits) -> PresenceDocument:
    root = parse_xml(body, limits, PidfError, "PIDF")
    return _READERS[lenient].document(root)


@functools.lru_cache(maxsize=CACHED_BODIES)
def _parse_cached(body: bytes, lenient: bool) -> PresenceDocument:
    return _parse(body, lenient, DEFAULT_LIMITS)


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _namespace(tag: str) -> str | None:
    return tag[1:].partition("}")[0] if tag.startswith("{") else None


def _serialise(element: etree._Element) -> str:
    return etree.tostring(element, encoding="unicode", with_tail=False)


def _text(element: etree._Element) -> str:
    if not len(element):
        # No child nodes (elements, entities...): the text is all there is.
        return element.text or ""
    return "".join(str(part) for part in element.itertext())


# "{namespace}local" tag -> local name of the PIDF elements the reader looks for, built
# once. The lenient (SER) profile also takes the bare local names: SER matches by local name,
# so a namespace-less document is accepted there.
_PIDF_PREFIX = f"{{{PIDF_NS}}}"
_PIDF_ELEMENTS = _PIDF_PREFIX + "*"  # lxml's tag filter for every element of the namespace
_PIDF_LOCALS = ("presence", "tuple", "note", "status", "contact", "timestamp", "basic")
_STRICT_NAMES: dict[object, str] = {_PIDF_PREFIX + local: local for local in _PIDF_LOCALS}
_LENIENT_NAMES: dict[object, str] = {**_STRICT_NAMES, **{local: local for local in _PIDF_LOCALS}}
_DM_PERSON = f"{{{DM_NS}}}person"


class _Reader:
    """One walk over a parsed tree, with the profile's rules.

    Each element's tag is looked up once in the profile's name table (`kind`: the PIDF local
    name, or None for anything else) instead of being compared per candidate name.
    """

    def __init__(self, lenient: bool) -> None:
        self.lenient = lenient
        self._names = _LENIENT_NAMES if lenient else _STRICT_NAMES

    # -- document

    def document(self, root: etree._Element) -> PresenceDocument:
        names = self._names
        if names.get(root.tag) != "presence":
            expected = f"{{{PIDF_NS}}}presence"
            raise PidfError(f"root element must be {expected}, got {root.tag}")
        if self.lenient:
            return self._walk(root)[0]
        # The mustUnderstand check comes first, as if made before the walk: the walk tells
        # whether it read every element and all are PIDF elements (the usual document),
        # when the check has nothing to find; otherwise, or when the walk failed (it raises
        # nothing but PidfError), it runs, and its error wins.
        try:
            document, whole = self._walk(root)
        except PidfError as exc:
            failure: PidfError | None = exc
        else:
            failure = None
        if failure is not None or not whole:
            self._check_must_understand(root, len(list(root.iter(etree.Element))))
        if failure is not None:
            raise failure
        return document

    def _walk(self, root: etree._Element) -> tuple[PresenceDocument, bool]:
        """The document under `root` (a presence element), and whether the walk read every
        element under it and found each a PIDF element by the strict profile's names (an
        element read for its text has no child then)."""
        names = self._names
        whole = True
        entity = root.get("entity")
        if entity is None or (not self.lenient and not entity.strip()):
            if not self.lenient:
                raise PidfError("presence element has no entity attribute")
            entity = ""
        tuples: list[PresenceTuple] = []
        notes: list[Note] = []
        persons: list[Person] = []
        extensions: list[str] = []
        # (Comments and PIs are removed by the parser; the filter guards against any other
        # node kind.)
        for child in root.iterchildren(etree.Element):
            tag = child.tag
            kind = names.get(tag)
            if kind == "tuple":
                presence_tuple, tuple_whole = self._tuple(child)
                tuples.append(presence_tuple)
                whole = whole and tuple_whole
            elif kind == "note":
                notes.append(_note(child))
                if len(child):
                    whole = False
            elif tag == _DM_PERSON:
                persons.append(_person(child))
                whole = False
            else:
                extensions.append(_serialise(child))
                whole = False
        if not self.lenient and len(tuples) > 1:
            ids = [t.id for t in tuples]
            duplicates = sorted({i for i in ids if ids.count(i) > 1})
            if duplicates:
                raise PidfError(f"duplicate tuple id: {duplicates[0]!r}")
        # (Positional arguments, here and for the other parts: a keyword call costs more.)
        return PresenceDocument(
            entity, tuple(tuples), tuple(notes), tuple(persons), tuple(extensions)
        ), whole

    def _check_must_understand(self, root: etree._Element, elements: int) -> None:
        # Every PIDF-namespace element is understood: when all `elements` are (the usual
        # document), there is nothing to check. lxml counts them with its C tag filter.
        if elements == len(list(root.iter(_PIDF_ELEMENTS))):
            return
        for element in root.iter():
            tag = element.tag
            if not isinstance(tag, str) or tag.startswith(_PIDF_PREFIX) or _understood(element):
                continue  # (every PIDF-namespace element is understood: fast check first)
            flag = element.get(_PIDF_MUST_UNDERSTAND)
            if flag is None:
                flag = element.get("mustUnderstand")
            if flag is None:
                continue
            value = flag.strip()
            if value in _XS_TRUE:
                raise PidfError(f"element {tag} must be understood")
            if value not in _XS_FALSE:
                raise PidfError(f"bad mustUnderstand value on {tag}: {flag!r}")

    # -- tuple

    def _tuple(self, element: etree._Element) -> tuple[PresenceTuple, bool]:
        """The tuple, and whether the walk read every element under it and found each a PIDF
        element (`_walk`)."""
        tuple_id = element.get("id")
        if tuple_id is None:
            if not self.lenient:
                raise PidfError("tuple has no id attribute")
            tuple_id = ""
        names = self._names
        # One pass to classify; the checks below run before any child is read, as before.
        children = [(names.get(c.tag), c) for c in element.iterchildren(etree.Element)]
        statuses = 0
        contacts = 0
        whole = True
        first_status: etree._Element | None = None
        first_contact: etree._Element | None = None
        for kind, child in children:
            if kind == "status":
                statuses += 1
                if first_status is None:
                    first_status = child
            elif kind == "contact":
                contacts += 1
                if first_contact is None:
                    first_contact = child
        if first_status is None:
            # Both profiles: SER fails the whole document too.
            raise PidfError(f"tuple {tuple_id!r} has no status element")
        if statuses > 1 and not self.lenient:
            raise PidfError(f"tuple {tuple_id!r} has {statuses} status elements")
        if contacts > 1 and not self.lenient:
            raise PidfError(f"tuple {tuple_id!r} has {contacts} contact elements")

        basic: str | None = None
        contact: str | None = None
        raw_priority: str | None = None
        priority: float | None = None
        notes: list[tuple[str, str | None]] = []  # (text, xml:lang) of each <note>
        timestamp: str | None = None
        extensions: list[str] = []
        for kind, child in children:
            if kind == "status":
                if child is first_status:
                    basic, status_whole = self._status(child, tuple_id, extensions)
                    whole = whole and status_whole
                else:  # lenient: later <status> elements are ignored
                    whole = False
            elif kind == "contact":
                if child is first_contact:
                    contact = _text(child).strip()
                    raw_priority = child.get("priority")
                    priority = self._priority(raw_priority, tuple_id)
                # lenient: later <contact> elements are ignored
                if len(child):
                    whole = False
            elif kind == "note":
                notes.append((_text(child), child.get(_XML_LANG)))
                if len(child):
                    whole = False
            elif kind == "timestamp":
                if not self.lenient and timestamp is None:
                    timestamp = _text(child).strip()
                if len(child):
                    whole = False
            else:
                extensions.append(_serialise(child))
        if self.lenient and basic is None:
            basic = "closed"
        # The tuple is a function of these values (the priority of its text, which keeps
        # -0.0 apart from 0.0) and the profile, so an equal tuple read before is handed out
        # again: building the frozen objects is a third of a tuple's walk, and the same
        # tuple recurs across presentities (only the entity tells them apart).
        key = (self.lenient, tuple_id, basic, contact, raw_priority, tuple(notes), timestamp,
               tuple(extensions))
        shared = _SHARED_TUPLES.get(key)
        if shared is None:
            shared = PresenceTuple(
                tuple_id, basic, contact, priority,
                tuple([Note(text, lang) for text, lang in notes]), timestamp, key[7],
            )
            if len(_SHARED_TUPLES) >= SHARED_TUPLES:
                _SHARED_TUPLES.clear()  # the bound (docs/limits.md): start over
            _SHARED_TUPLES[key] = shared
        return shared, whole and not extensions

    def _status(self, element: etree._Element, tuple_id: str,
                extensions: list[str]) -> tuple[str | None, bool]:
        """The status's basic value, and whether its only child is one <basic> without
        children (or it has none): then the walk read every element under it."""
        names = self._names
        basics: list[etree._Element] = []
        whole = True
        for child in element.iterchildren(etree.Element):
            if names.get(child.tag) == "basic":
                basics.append(child)
            else:
                extensions.append(_serialise(child))
                whole = False
        if not basics:
            return None, whole
        if len(basics) > 1 and not self.lenient:
            raise PidfError(f"tuple {tuple_id!r} has {len(basics)} basic elements")
        first = basics[0]
        value = _text(first).strip()
        whole = whole and len(basics) == 1 and not len(first)
        if self.lenient:
            return "open" if value.lower() == "open" else "closed", whole
        # SUB-096: only 'open' and 'closed' are valid; anything else is unknown.
        return value if value in ("open", "closed") else None, whole

    def _priority(self, raw: str | None, tuple_id: str) -> float | None:
        """A contact's priority from its `priority` attribute (None: absent)."""
        if raw is None:
            return None
        value = raw.strip()
        if self.lenient:
            # SER converts with a C double conversion; garbage becomes "no priority".
            try:
                number = float(value)
            except ValueError:
                return None
            return number if math.isfinite(number) else None
        if not _PRIORITY_RE.fullmatch(value):
            raise PidfError(f"bad contact priority in tuple {tuple_id!r}: {raw!r}")
        return float(value)


# Tuples read, by what they were read from (`_Reader._tuple`): at most SHARED_TUPLES, then
# forgotten all at once (docs/limits.md).
SHARED_TUPLES = 256
_SHARED_TUPLES: dict[
    tuple[bool, str, str | None, str | None, str | None, tuple[tuple[str, str | None], ...],
          str | None, tuple[str, ...]],
    PresenceTuple,
] = {}


# The two readers (strict, lenient), indexed by `lenient`: a reader keeps no state of a
# document, so one of each serves every parse.
_READERS = (_Reader(False), _Reader(True))


def _understood(element: etree._Element) -> bool:
    """Elements whose meaning we model (the rest are extensions)."""
    namespace = _namespace(str(element.tag))
    if namespace == PIDF_NS:
        return True
    if element.tag in (f"{{{DM_NS}}}person", f"{{{DM_NS}}}note", f"{{{RPID_NS}}}activities"):
        return True
    parent = element.getparent()
    # Activity tokens are the children of <rpid:activities>.
    return parent is not None and parent.tag == f"{{{RPID_NS}}}activities"


def _note(element: etree._Element) -> Note:
    return Note(_text(element), element.get(_XML_LANG))


def _person(element: etree._Element) -> Person:
    activities: list[str] = []
    notes: list[Note] = []
    for child in element:
        if child.tag == f"{{{RPID_NS}}}activities":
            for activity in child:
                if not isinstance(activity.tag, str) or _local(activity.tag) == "note":
                    continue
                name = _local(activity.tag)
                if name == "other":
                    # <rpid:other>text</rpid:other> carries a free-form activity.
                    name = _text(activity).strip() or "other"
                activities.append(name)
        elif child.tag in (f"{{{DM_NS}}}note", f"{{{PIDF_NS}}}note"):
            notes.append(_note(child))
    return Person(id=element.get("id"), activities=tuple(activities), notes=tuple(notes))


# --------------------------------------------------------------------------- building

_BASIC_VALUES = ("open", "closed")


def build_pidf(
    entity: str,
    tuples: Iterable[PresenceTuple] | None = None,
    *,
    basic: str | None = None,
    contact: str | None = None,
    note: str | None = None,
    notes: Iterable[Note] = (),
    persons: Iterable[Person] = (),
) -> bytes:
    """Serialise a PIDF document (UTF-8, with an XML declaration).

    Convenience form: ``build_pidf(entity, basic="open", contact=..., note=...)``
    makes one tuple with id ``t1``. Full form: pass ``tuples``. Mixing both forms, a
    ``basic`` other than open/closed/None, a priority outside 0..1, or text that XML
    cannot carry raises ``ValueError``. Tuple extensions must be well-formed XML
    fragments; they are written inside the tuple after its standard children (the
    model does not record whether one came from ``<status>``), so a PIDF-namespace
    fragment such as a ``<note>`` found inside ``<status>`` reads back as a tuple note.
    """
    convenience = basic is not None or contact is not None or note is not None
    if tuples is not None and convenience:
        raise ValueError("give either tuples or basic/contact/note, not both")
    if tuples is None:
        tuple_list = (
            [
                PresenceTuple(
                    id="t1",
                    basic=basic,
                    contact=contact,
                    notes=(Note(note),) if note is not None else (),
                )
            ]
            if convenience
            else []
        )
    else:
        tuple_list = list(tuples)
    person_list = list(persons)
    nsmap: dict[str | None, str] = {None: PIDF_NS}
    if person_list:
        nsmap.update({"dm": DM_NS, "rpid": RPID_NS})
    # lxml accepts None as the default-namespace key; lxml-stubs does not say so.
    root = etree.Element(f"{{{PIDF_NS}}}presence", nsmap=nsmap)  # type: ignore[arg-type]
    root.set("entity", entity)
    for presence_tuple in tuple_list:
        _build_tuple(root, presence_tuple)
    for presence_note in notes:
        _build_note(root, f"{{{PIDF_NS}}}note", presence_note)
    for person in person_list:
        _build_person(root, person)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _build_note(parent: etree._Element, tag: str, note: Note) -> None:
    element = etree.SubElement(parent, tag)
    element.text = note.text
    if note.lang is not None:
        element.set(_XML_LANG, note.lang)


def _build_tuple(root: etree._Element, presence_tuple: PresenceTuple) -> None:
    if presence_tuple.basic is not None and presence_tuple.basic not in _BASIC_VALUES:
        raise ValueError(f"basic must be 'open', 'closed' or None: {presence_tuple.basic!r}")
    element = etree.SubElement(root, f"{{{PIDF_NS}}}tuple")
    element.set("id", presence_tuple.id)
    status = etree.SubElement(element, f"{{{PIDF_NS}}}status")
    if presence_tuple.basic is not None:
        etree.SubElement(status, f"{{{PIDF_NS}}}basic").text = presence_tuple.basic
    if presence_tuple.priority is not None and presence_tuple.contact is None:
        raise ValueError(f"tuple {presence_tuple.id!r}: priority given without contact")
    if presence_tuple.contact is not None:
        contact = etree.SubElement(element, f"{{{PIDF_NS}}}contact")
        contact.text = presence_tuple.contact
        if presence_tuple.priority is not None:
            contact.set("priority", _format_priority(presence_tuple.priority))
    for tuple_note in presence_tuple.notes:
        _build_note(element, f"{{{PIDF_NS}}}note", tuple_note)
    if presence_tuple.timestamp is not None:
        etree.SubElement(element, f"{{{PIDF_NS}}}timestamp").text = presence_tuple.timestamp
    for fragment in presence_tuple.extensions:
        element.append(_parse_fragment(fragment))


def _format_priority(priority: float) -> str:
    if not (0.0 <= priority <= 1.0):
        raise ValueError(f"contact priority must be within 0..1: {priority!r}")
    text = f"{priority:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def _parse_fragment(fragment: str) -> etree._Element:
    # Same hardened path as documents: extensions may have come off the wire.
    body = fragment.encode("utf-8", "surrogatepass")
    try:
        return parse_xml(body, DEFAULT_LIMITS, PidfError, "PIDF")
    except PidfError as exc:
        raise ValueError(f"bad extension fragment: {exc}") from exc


def _build_person(root: etree._Element, person: Person) -> None:
    element = etree.SubElement(root, f"{{{DM_NS}}}person")
    if person.id is not None:
        element.set("id", person.id)
    if person.activities:
        activities = etree.SubElement(element, f"{{{RPID_NS}}}activities")
        for name in person.activities:
            if _ACTIVITY_NAME_RE.fullmatch(name) and name != "note":
                etree.SubElement(activities, f"{{{RPID_NS}}}{name}")
            else:
                etree.SubElement(activities, f"{{{RPID_NS}}}other").text = name
    for person_note in person.notes:
        _build_note(element, f"{{{DM_NS}}}note", person_note)
