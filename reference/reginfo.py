"""RFC 3680 registration information (``application/reginfo+xml``): parser, builder and the
subscriber's version/state bookkeeping.

Rules of this file:

* Parsing goes through ``reference.xmlsafe`` (the PIDF hardening: no DTD or entities, size,
  depth and element-count limits). Every failure is a :class:`ReginfoError` naming the
  fault; no other exception escapes for any input.
* The parser checks what RFC 3680 §5.4's schema requires of the elements the subscriber
  reads (``reginfo`` ``version``/``state``; ``registration`` ``aor``/``id``/``state``;
  ``contact`` ``id``/``state``/``event`` and one ``uri``; the enumerations; the unsigned
  numbers) and ignores elements and attributes of other namespaces (the schema's
  extension points).
* :class:`RegState` is the subscriber's copy of the registration state of one subscription
  (RFC 3680 §5.2 semantics, decided in ``docs/behaviour.md`` "reg"): a document whose
  version is below the last one, or a partial one whose version is not above it, is ignored
  (``stale``). **Interop decision:** a *full* document that repeats the last version is
  applied (``ApplyResult.repeated``), because Kamailio 5.6's presence_reginfo sends
  ``version="0"`` in every NOTIFY; a full document replaces everything, and the dialog's CSeq
  check already refuses an older NOTIFY, so nothing older can overwrite newer state; a partial
  document whose version skips a number, or any partial document before the first full one, is
  still applied and its version taken (RFC 3680 §5.2), and asks for full state (``gap``: the
  agent refreshes the subscription, which makes the notifier send full state, RFC 6665
  §4.2.2); a full document replaces
  the whole state; a partial one replaces the registrations it names, contact by contact id (a
  full document that no longer names a registration reports it ``terminated`` without
  contacts). Terminated contacts are reported once in the document that terminates them and
  then forgotten; a terminated registration forgets its contacts.
* :func:`build_reginfo` writes schema-valid documents for the notifier side (simulator,
  conformance peer, tests); ``tests/reference/data/reginfo.xsd`` is the RFC 3680 schema the
  tests validate it against.
* Imports only ``reference.xmlsafe``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from lxml import etree

from reference.xmlsafe import XmlLimits, parse_xml

__all__ = [
    "CONTACT_EVENTS",
    "CONTENT_TYPE",
    "REGINFO_NS",
    "ApplyResult",
    "RegContact",
    "RegState",
    "ReginfoDocument",
    "ReginfoError",
    "ReginfoLimits",
    "Registration",
    "build_reginfo",
    "parse_reginfo",
]

REGINFO_NS = "urn:ietf:params:xml:ns:reginfo"
CONTENT_TYPE = "application/reginfo+xml"
_NS = f"{{{REGINFO_NS}}}"

DOCUMENT_STATES = ("full", "partial")
REGISTRATION_STATES = ("init", "active", "terminated")
CONTACT_STATES = ("active", "terminated")
# RFC 3680 §5.4 (the schema's enumeration): what happened to the contact.
CONTACT_EVENTS = ("registered", "created", "refreshed", "shortened", "expired", "deactivated",
                  "probation", "unregistered", "rejected")
# xs:unsignedLong / xs:nonNegativeInteger: digits only, and short enough to be sane.
_MAX_DIGITS = 20


class ReginfoError(ValueError):
    """The body is not an acceptable reginfo document; the text says why."""


# Limits of one reginfo body (``reference.xmlsafe``): 65,536 bytes, depth 32, 2,000 elements
# (an AOR with a few hundred contacts still fits). The name is an alias, not a subclass: an
# interpreted subclass of the compiled ``XmlLimits`` would not load in the mypyc build.
ReginfoLimits = XmlLimits
DEFAULT_LIMITS = XmlLimits()


@dataclass(frozen=True, slots=True)
class RegContact:
    """One ``<contact>`` of a registration (RFC 3680 §5.4)."""

    id: str
    state: str
    event: str
    uri: str
    expires: int | None = None
    duration_registered: int | None = None
    retry_after: int | None = None
    q: str | None = None
    callid: str | None = None
    cseq: int | None = None
    display_name: str | None = None
    unknown_params: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "state": self.state, "event": self.event, "uri": self.uri,
                "expires": self.expires, "q": self.q,
                "duration_registered": self.duration_registered,
                "display_name": self.display_name}


@dataclass(frozen=True, slots=True)
class Registration:
    """One ``<registration>``: an address-of-record and its contacts."""

    aor: str
    id: str
    state: str
    contacts: tuple[RegContact, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"aor": self.aor, "id": self.id, "state": self.state,
                "contacts": [c.to_json() for c in self.contacts]}


@dataclass(frozen=True, slots=True)
class ReginfoDocument:
    """A parsed ``<reginfo>``."""

    version: int
    state: str
    registrations: tuple[Registration, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"version": self.version, "state": self.state,
                "registrations": [r.to_json() for r in self.registrations]}


# --------------------------------------------------------------------------- parsing


def parse_reginfo(data: object, *, limits: XmlLimits = DEFAULT_LIMITS) -> ReginfoDocument:
    """Parse a reginfo body; raise :class:`ReginfoError` when it is not acceptable."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ReginfoError(f"reginfo body must be bytes, got {type(data).__name__}")
    root = parse_xml(bytes(data), limits, ReginfoError, "reginfo")
    if root.tag != _NS + "reginfo":
        raise ReginfoError(f"root element must be {_NS}reginfo, got {root.tag}")
    version = _unsigned(root, "version", required=True)
    assert version is not None
    state = _enum(root, "state", DOCUMENT_STATES)
    registrations: list[Registration] = []
    seen: set[str] = set()
    for child in root.iterchildren(etree.Element):
        if child.tag == _NS + "registration":
            registration = _registration(child)
            if registration.id in seen:
                raise ReginfoError(f"duplicate registration id: {registration.id!r}")
            seen.add(registration.id)
            registrations.append(registration)
        elif isinstance(child.tag, str) and child.tag.startswith(_NS):
            raise ReginfoError(f"unexpected element in reginfo: {child.tag}")
    return ReginfoDocument(version, state, tuple(registrations))


def _registration(element: etree._Element) -> Registration:
    aor = _required(element, "aor")
    reg_id = _required(element, "id")
    state = _enum(element, "state", REGISTRATION_STATES)
    contacts: list[RegContact] = []
    seen: set[str] = set()
    for child in element.iterchildren(etree.Element):
        if child.tag == _NS + "contact":
            contact = _contact(child)
            if contact.id in seen:
                raise ReginfoError(f"duplicate contact id {contact.id!r} in {aor}")
            seen.add(contact.id)
            contacts.append(contact)
        elif isinstance(child.tag, str) and child.tag.startswith(_NS):
            raise ReginfoError(f"unexpected element in registration: {child.tag}")
    return Registration(aor, reg_id, state, tuple(contacts))


def _contact(element: etree._Element) -> RegContact:
    contact_id = _required(element, "id")
    state = _enum(element, "state", CONTACT_STATES)
    event = _enum(element, "event", CONTACT_EVENTS)
    uris = [c for c in element.iterchildren(_NS + "uri")]
    if len(uris) != 1:
        raise ReginfoError(f"contact {contact_id!r} must have exactly one uri, has {len(uris)}")
    uri = (uris[0].text or "").strip()
    if not uri:
        raise ReginfoError(f"contact {contact_id!r} has an empty uri")
    names = [c for c in element.iterchildren(_NS + "display-name")]
    if len(names) > 1:
        raise ReginfoError(f"contact {contact_id!r} has several display-names")
    params: list[tuple[str, str]] = []
    for param in element.iterchildren(_NS + "unknown-param"):
        name = param.get("name")
        if name is None:
            raise ReginfoError(f"unknown-param without name in contact {contact_id!r}")
        params.append((name, param.text or ""))
    return RegContact(
        id=contact_id, state=state, event=event, uri=uri,
        expires=_unsigned(element, "expires"),
        duration_registered=_unsigned(element, "duration-registered"),
        retry_after=_unsigned(element, "retry-after"),
        q=element.get("q"),
        callid=element.get("callid"),
        cseq=_unsigned(element, "cseq"),
        display_name=(names[0].text or "") if names else None,
        unknown_params=tuple(params),
    )


def _required(element: etree._Element, name: str) -> str:
    value = element.get(name)
    if value is None or not value.strip():
        raise ReginfoError(f"{_local(element)} has no {name} attribute")
    return value.strip()


def _enum(element: etree._Element, name: str, allowed: tuple[str, ...]) -> str:
    value = _required(element, name)
    if value not in allowed:
        raise ReginfoError(f"bad {_local(element)} {name}: {value!r} (expected one of "
                           f"{', '.join(allowed)})")
    return value


def _unsigned(element: etree._Element, name: str, *, required: bool = False) -> int | None:
    raw = element.get(name)
    if raw is None:
        if required:
            raise ReginfoError(f"{_local(element)} has no {name} attribute")
        return None
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or len(text) > _MAX_DIGITS:
        raise ReginfoError(f"bad {_local(element)} {name}: {raw!r}")
    return int(text)


def _local(element: etree._Element) -> str:
    return str(element.tag).rpartition("}")[2]


# --------------------------------------------------------------------------- subscriber state


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What :meth:`RegState.apply` did with a document.

    ``outcome``: ``applied`` (the state changed to the document's), ``stale`` (version not
    above the last: ignored), ``gap`` (partial state after lost documents: applied as well,
    full state needed). ``changed``: the registrations the document touched, as they now are
    (terminated contacts included once), for the status messages.
    """

    outcome: str
    version: int
    changed: tuple[Registration, ...] = ()
    # A full document with the same version as the last one (see the module rules).
    repeated: bool = False

    @property
    def needs_full_state(self) -> bool:
        return self.outcome == "gap"


class RegState:
    """The subscriber's view of one ``reg`` subscription (see the module rules)."""

    __slots__ = ("registrations", "version")

    def __init__(self) -> None:
        self.version: int | None = None
        self.registrations: dict[str, Registration] = {}

    def reset(self) -> None:
        """Forget everything: a new dialog starts a new version sequence (the version counts
        per subscription, RFC 3680 §5.2)."""
        self.version = None
        self.registrations = {}

    def apply(self, document: ReginfoDocument) -> ApplyResult:
        last = self.version
        if last is not None and (document.version < last or (
                document.version == last and document.state != "full")):
            return ApplyResult("stale", document.version)
        # RFC 3680 §5.2: a partial document past lost ones is still processed (and its
        # version taken); the refresh the agent makes for `gap` brings full state.
        gap = document.state == "partial" and (last is None or document.version != last + 1)
        self.version = document.version
        changed: list[Registration] = []
        if document.state == "full":
            # Registrations the full state no longer names are gone: reported terminated.
            named = {r.aor for r in document.registrations}
            changed.extend(replace(r, state="terminated", contacts=())
                           for aor, r in self.registrations.items() if aor not in named)
            self.registrations = {}
        for registration in document.registrations:
            merged = self._merge(registration, full=document.state == "full")
            changed.append(merged)
        return ApplyResult("gap" if gap else "applied", document.version, tuple(changed),
                           repeated=document.version == last)

    def _merge(self, registration: Registration, *, full: bool) -> Registration:
        key = registration.aor
        previous = self.registrations.get(key)
        contacts: dict[str, RegContact] = {}
        if previous is not None and not full:
            contacts = {c.id: c for c in previous.contacts}
        for contact in registration.contacts:
            contacts[contact.id] = contact
        reported = replace(registration, contacts=tuple(contacts.values()))
        if registration.state == "terminated":
            self.registrations.pop(key, None)
        else:
            kept = tuple(c for c in contacts.values() if c.state == "active")
            self.registrations[key] = replace(registration, contacts=kept)
        return reported


# --------------------------------------------------------------------------- building


def build_reginfo(version: int, state: str, registrations: Iterable[Registration] = ()) -> bytes:
    """Serialise a reginfo document (UTF-8, XML declaration). ``ValueError`` for a value the
    schema does not allow (state, event, negative numbers, empty uri)."""
    if version < 0:
        raise ValueError(f"version must be >= 0: {version}")
    if state not in DOCUMENT_STATES:
        raise ValueError(f"state must be full or partial: {state!r}")
    nsmap: dict[str | None, str] = {None: REGINFO_NS}
    root = etree.Element(_NS + "reginfo", nsmap=nsmap)  # type: ignore[arg-type]
    root.set("version", str(version))
    root.set("state", state)
    for registration in registrations:
        if registration.state not in REGISTRATION_STATES:
            raise ValueError(f"bad registration state: {registration.state!r}")
        element = etree.SubElement(root, _NS + "registration")
        element.set("aor", registration.aor)
        element.set("id", registration.id)
        element.set("state", registration.state)
        for contact in registration.contacts:
            _build_contact(element, contact)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _build_contact(parent: etree._Element, contact: RegContact) -> None:
    if contact.state not in CONTACT_STATES:
        raise ValueError(f"bad contact state: {contact.state!r}")
    if contact.event not in CONTACT_EVENTS:
        raise ValueError(f"bad contact event: {contact.event!r}")
    if not contact.uri:
        raise ValueError(f"contact {contact.id!r} needs a uri")
    element = etree.SubElement(parent, _NS + "contact")
    element.set("id", contact.id)
    element.set("state", contact.state)
    element.set("event", contact.event)
    for name, number in (("duration-registered", contact.duration_registered),
                         ("expires", contact.expires), ("retry-after", contact.retry_after),
                         ("cseq", contact.cseq)):
        if number is not None:
            if number < 0:
                raise ValueError(f"contact {name} must be >= 0: {number}")
            element.set(name, str(number))
    if contact.q is not None:
        element.set("q", contact.q)
    if contact.callid is not None:
        element.set("callid", contact.callid)
    etree.SubElement(element, _NS + "uri").text = contact.uri
    if contact.display_name is not None:
        etree.SubElement(element, _NS + "display-name").text = contact.display_name
    for name, value in contact.unknown_params:
        param = etree.SubElement(element, _NS + "unknown-param")
        param.set("name", name)
        param.text = value
