"""RFC 4662 resource lists: the RLMI document, list NOTIFY bodies and the subscriber's
per-list state.

Rules of this file:

* :func:`parse_rlmi` reads ``application/rlmi+xml`` through ``reference.xmlsafe`` (the PIDF
  hardening) and checks what RFC 4662 §5's schema requires: ``list`` with ``uri``,
  ``version`` (unsigned) and ``fullState`` (xs:boolean); ``resource`` with ``uri``;
  ``instance`` with ``id`` and ``state`` (``active|pending|terminated``), optional
  ``reason`` and ``cid``. Every failure is an :class:`RlmiError`.
* :func:`parse_list_body` reads a whole list NOTIFY body: ``multipart/related``
  (``reference.multipart``) whose root is the RLMI document; each instance's ``cid`` names
  the part that carries that instance's state (a PIDF, parsed with ``reference.pidf``).
  **Decision (RFC 4662 is silent):** a ``cid`` that names no part makes the whole body
  unacceptable (``RlmiError``, the agent answers 400 and keeps its state and version), because
  accepting it would advance the version with a resource whose state is unknown; the
  notifier's next NOTIFY is then a version gap and the refresh that follows brings full state.
  A part nobody references is ignored. A part that is itself a list (``multipart/related``,
  a nested list) is not expanded: the resource reports its raw body and content type.
* :class:`ListState` is the subscriber's copy of one list subscription, with RFC 4662 §4.1's
  version rules as ``reference.reginfo.RegState`` applies them: not above the last version →
  ``stale`` (ignored); partial (``fullState="false"``) that skips a version, or before any
  full state → ``gap`` (still applied and its version taken, RFC 4662 §5.6.2; the agent
  refreshes to get full state); full state replaces
  the list and reports the resources whose state differs (a resource it no longer names
  is reported ``terminated``, reason ``removed-from-list``); partial state replaces the
  resources it names. Every resource whose state changed is one :class:`ResourceChange`,
  in document order.
* Imports only the other body parsers (``xmlsafe``, ``multipart``, ``pidf``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from lxml import etree

from reference.multipart import (
    MultipartError,
    MultipartLimits,
    Part,
    build_multipart,
    parse_multipart,
)
from reference.pidf import PidfError, PresenceDocument, parse_pidf
from reference.xmlsafe import XmlLimits, parse_xml

__all__ = [
    "CONTENT_TYPE",
    "RLMI_NS",
    "Instance",
    "ListApplyResult",
    "ListNotification",
    "ListState",
    "Resource",
    "ResourceChange",
    "RlmiDocument",
    "RlmiError",
    "build_list_body",
    "build_rlmi",
    "parse_list_body",
    "parse_rlmi",
]

RLMI_NS = "urn:ietf:params:xml:ns:rlmi"
CONTENT_TYPE = "application/rlmi+xml"
PIDF_TYPE = "application/pidf+xml"
_NS = f"{{{RLMI_NS}}}"
INSTANCE_STATES = ("active", "pending", "terminated")
_MAX_DIGITS = 10  # xs:unsignedInt


class RlmiError(ValueError):
    """The body is not an acceptable RLMI document or list body; the text says why."""


# Limits of one RLMI document: 262,144 bytes, depth 32, 20,000 elements (a list of a few
# thousand resources). An ``XmlLimits`` value, not a subclass (see ``reginfo.ReginfoLimits``).
DEFAULT_LIMITS = XmlLimits(max_bytes=262144, max_depth=32, max_elements=20000)


@dataclass(frozen=True, slots=True)
class Instance:
    """One ``<instance>``: a subscription of the list server to the resource."""

    id: str
    state: str
    reason: str | None = None
    cid: str | None = None


@dataclass(frozen=True, slots=True)
class Resource:
    uri: str
    names: tuple[str, ...] = ()
    instances: tuple[Instance, ...] = ()


@dataclass(frozen=True, slots=True)
class RlmiDocument:
    uri: str
    version: int
    full_state: bool
    names: tuple[str, ...] = ()
    resources: tuple[Resource, ...] = ()


def parse_rlmi(data: object, *, limits: XmlLimits = DEFAULT_LIMITS) -> RlmiDocument:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise RlmiError(f"RLMI body must be bytes, got {type(data).__name__}")
    root = parse_xml(bytes(data), limits, RlmiError, "RLMI")
    if root.tag != _NS + "list":
        raise RlmiError(f"root element must be {_NS}list, got {root.tag}")
    uri = _required(root, "uri")
    version_text = _required(root, "version")
    if not version_text.isascii() or not version_text.isdigit() or \
            len(version_text) > _MAX_DIGITS or int(version_text) > 0xFFFFFFFF:
        raise RlmiError(f"bad list version: {version_text!r}")
    full_text = _required(root, "fullState")
    if full_text not in ("true", "false", "1", "0"):
        raise RlmiError(f"bad list fullState: {full_text!r}")
    names = tuple((n.text or "") for n in root.iterchildren(_NS + "name"))
    resources: list[Resource] = []
    seen: set[str] = set()
    for element in root.iterchildren(_NS + "resource"):
        resource = _resource(element)
        if resource.uri in seen:
            raise RlmiError(f"resource listed twice: {resource.uri}")
        seen.add(resource.uri)
        resources.append(resource)
    return RlmiDocument(uri, int(version_text), full_text in ("true", "1"), names,
                        tuple(resources))


def _resource(element: etree._Element) -> Resource:
    uri = _required(element, "uri")
    names = tuple((n.text or "") for n in element.iterchildren(_NS + "name"))
    instances: list[Instance] = []
    for child in element.iterchildren(_NS + "instance"):
        state = _required(child, "state")
        if state not in INSTANCE_STATES:
            raise RlmiError(f"bad instance state {state!r} in resource {uri}")
        cid = child.get("cid")
        instances.append(Instance(_required(child, "id"), state, child.get("reason"),
                                  cid.strip() if cid is not None else None))
    return Resource(uri, names, tuple(instances))


def _required(element: etree._Element, name: str) -> str:
    value = element.get(name)
    if value is None or not value.strip():
        local = str(element.tag).rpartition("}")[2]
        raise RlmiError(f"{local} has no {name} attribute")
    return value.strip()


# --------------------------------------------------------------------------- list bodies


@dataclass(frozen=True, slots=True)
class ListNotification:
    """A parsed list NOTIFY body: the RLMI and the state part of each referenced cid."""

    rlmi: RlmiDocument
    parts: Mapping[str, Part]
    documents: Mapping[str, PresenceDocument]


def parse_list_body(
    body: bytes, params: Mapping[str, str | None], *, lenient: bool = False,
    limits: MultipartLimits | None = None,
) -> ListNotification:
    """Parse a ``multipart/related`` list body (Content-Type parameters ``params``)."""
    try:
        related = (parse_multipart(body, params) if limits is None
                   else parse_multipart(body, params, limits=limits))
    except MultipartError as exc:
        raise RlmiError(str(exc)) from exc
    if related.root.content_type != CONTENT_TYPE:
        raise RlmiError(f"root part is {related.root.content_type}, not {CONTENT_TYPE}")
    rlmi = parse_rlmi(related.root.body)
    by_cid = related.by_cid()
    parts: dict[str, Part] = {}
    documents: dict[str, PresenceDocument] = {}
    for resource in rlmi.resources:
        for instance in resource.instances:
            if instance.cid is None:
                continue
            part = by_cid.get(instance.cid)
            if part is None:
                raise RlmiError(
                    f"instance {instance.id} of {resource.uri} names cid <{instance.cid}>, "
                    "which no body part has")
            parts[instance.cid] = part
            if part.content_type == PIDF_TYPE:
                try:
                    documents[instance.cid] = parse_pidf(part.body, lenient=lenient)
                except PidfError as exc:
                    raise RlmiError(f"part <{instance.cid}> of {resource.uri}: {exc}") from exc
    return ListNotification(rlmi, parts, documents)


# --------------------------------------------------------------------------- subscriber state


@dataclass(frozen=True, slots=True)
class ResourceChange:
    """The new state of one resource of the list, for one status message.

    ``state``: the instance state (``active|pending|terminated``; ``pending`` also when the
    list server has no instance yet); ``reason`` from a terminated instance (or
    ``removed-from-list``); ``document``/``body``/``content_type`` from the instance's part.
    """

    list_uri: str
    uri: str
    name: str | None
    state: str
    reason: str | None = None
    instance: str | None = None
    document: PresenceDocument | None = None
    body: bytes = b""
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class ListApplyResult:
    outcome: str  # applied | stale | gap (see the module rules)
    version: int
    changed: tuple[ResourceChange, ...] = ()

    @property
    def needs_full_state(self) -> bool:
        return self.outcome == "gap"


class ListState:
    """The subscriber's copy of one list subscription: version and per-resource state."""

    __slots__ = ("resources", "version")

    def __init__(self) -> None:
        self.version: int | None = None
        self.resources: dict[str, ResourceChange] = {}

    def reset(self) -> None:
        self.version = None
        self.resources = {}

    def apply(self, notification: ListNotification) -> ListApplyResult:
        rlmi = notification.rlmi
        last = self.version
        if last is not None and rlmi.version <= last:
            return ListApplyResult("stale", rlmi.version)
        # RFC 4662 §5.6.2: a partial notification past lost ones is still processed (and
        # its version taken); the refresh the agent makes for `gap` brings full state.
        gap = not rlmi.full_state and (last is None or rlmi.version != last + 1)
        self.version = rlmi.version
        changed: list[ResourceChange] = []
        before = self.resources
        if rlmi.full_state:
            named = {r.uri for r in rlmi.resources}
            for uri, old in before.items():
                if uri not in named:
                    changed.append(ResourceChange(rlmi.uri, uri, old.name, "terminated",
                                                  "removed-from-list"))
            self.resources = {}
        for resource in rlmi.resources:
            change = _change(rlmi.uri, resource, notification)
            if before.get(resource.uri) != change:
                changed.append(change)
            if change.state == "terminated":
                self.resources.pop(resource.uri, None)
            else:
                self.resources[resource.uri] = change
        return ListApplyResult("gap" if gap else "applied", rlmi.version, tuple(changed))


def _change(list_uri: str, resource: Resource, notification: ListNotification) -> ResourceChange:
    name = resource.names[0] if resource.names else None
    if not resource.instances:
        return ResourceChange(list_uri, resource.uri, name, "pending")
    # Several instances (forked subscriptions): the first active one speaks for the resource,
    # else the first one.
    instance = next((i for i in resource.instances if i.state == "active"),
                    resource.instances[0])
    part = notification.parts.get(instance.cid) if instance.cid is not None else None
    return ResourceChange(
        list_uri, resource.uri, name, instance.state, instance.reason, instance.id,
        notification.documents.get(instance.cid) if instance.cid is not None else None,
        part.body if part is not None else b"",
        part.content_type if part is not None else None,
    )


# --------------------------------------------------------------------------- building


def build_rlmi(uri: str, version: int, full_state: bool, resources: Iterable[Resource],
               names: Iterable[str] = ()) -> bytes:
    if version < 0:
        raise ValueError(f"version must be >= 0: {version}")
    nsmap: dict[str | None, str] = {None: RLMI_NS}
    root = etree.Element(_NS + "list", nsmap=nsmap)  # type: ignore[arg-type]
    root.set("uri", uri)
    root.set("version", str(version))
    root.set("fullState", "true" if full_state else "false")
    for name in names:
        etree.SubElement(root, _NS + "name").text = name
    for resource in resources:
        element = etree.SubElement(root, _NS + "resource")
        element.set("uri", resource.uri)
        for name in resource.names:
            etree.SubElement(element, _NS + "name").text = name
        for instance in resource.instances:
            if instance.state not in INSTANCE_STATES:
                raise ValueError(f"bad instance state: {instance.state!r}")
            child = etree.SubElement(element, _NS + "instance")
            child.set("id", instance.id)
            child.set("state", instance.state)
            if instance.reason is not None:
                child.set("reason", instance.reason)
            if instance.cid is not None:
                child.set("cid", instance.cid)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def build_list_body(
    uri: str, version: int, full_state: bool, resources: Iterable[Resource],
    documents: Mapping[str, bytes], *, boundary: str = "rlmi-boundary",
) -> tuple[bytes, str]:
    """A list NOTIFY body and its Content-Type: the RLMI root (Content-ID ``rlmi@list``)
    and one PIDF part per entry of ``documents`` (cid -> PIDF bytes)."""
    rlmi = build_rlmi(uri, version, full_state, list(resources))
    root_cid = "rlmi@list"
    parts = [Part(CONTENT_TYPE, rlmi, root_cid)]
    parts.extend(Part(PIDF_TYPE, body, cid) for cid, body in documents.items())
    content_type = (f'multipart/related;type="{CONTENT_TYPE}";start="<{root_cid}>";'
                    f'boundary="{boundary}"')
    return build_multipart(parts, boundary), content_type
