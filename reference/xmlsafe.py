"""Hardened XML parsing shared by every XML body the agent reads (PIDF, reginfo, RLMI).

Rules of this module:

* Untrusted bytes only ever reach lxml through :func:`parse_xml`. The size limit is checked
  before any parsing; any ``<!DOCTYPE`` is rejected before lxml sees the bytes (that is what
  stops entity expansion, external entities and external DTDs); lxml itself runs with entity
  resolution, DTD loading and network access off, comments and processing instructions
  dropped.
* Depth and element-count limits: a body of at most ``ONE_SHOT_MAX_BYTES`` is parsed in one
  call of a shared parser and its tree measured afterwards (with DOCTYPE gone a few kilobytes
  cannot expand, so the tree is small whatever it holds); a larger body, or one that fails any
  check, goes through an incremental parser that checks the limits between small chunks, so an
  oversized tree stops early and every error message comes from that one path.
* Every failure raises the caller's error class (a ``ValueError`` subclass: ``PidfError``,
  ``ReginfoError``, ``RlmiError``) with a message that starts with the caller's label
  ("PIDF", "reginfo", "RLMI"); no other exception escapes for any ``bytes`` input.
* Imports nothing of the project (a leaf, like ``pidf`` was).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from lxml import etree

__all__ = [
    "ONE_SHOT_MAX_BYTES",
    "XmlLimits",
    "local_name",
    "parse_incremental",
    "parse_one_shot",
    "parse_xml",
    "reject_doctype",
]

# Bytes fed to the incremental parser at a time: limits are checked between chunks.
# Small enough that libxml2's own depth cap (256) is not reached inside one chunk,
# so our limits, with their clearer messages, fire first.
_FEED_CHUNK = 512
# Bodies up to this size take the one-shot parse. At 4 bytes per element (`<a/>`) that is at
# most 4096 elements to build and count before rejecting.
ONE_SHOT_MAX_BYTES = 16384


@dataclass(frozen=True)
class XmlLimits:
    """Resource limits applied before and during parsing (bytes and counts).

    * ``max_bytes``: longest accepted body, checked before parsing.
    * ``max_depth``: deepest element nesting; the root is depth 1.
    * ``max_elements``: most elements in one document.
    """

    max_bytes: int = 65536
    max_depth: int = 32
    max_elements: int = 2000

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_depth", "max_elements"):
            if getattr(self, name) < 1:
                raise ValueError(f"{type(self).__name__}.{name} must be >= 1")


# The hardening options of both parsers: no entities, no network, no DTD, no huge trees.
class _Hardening(TypedDict):
    resolve_entities: bool
    no_network: bool
    load_dtd: bool
    dtd_validation: bool
    huge_tree: bool
    remove_comments: bool
    remove_pis: bool
    remove_blank_text: bool


_HARDENING = _Hardening(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
    remove_blank_text=False,
)
# Reused for every one-shot parse: lxml parsers keep no document state between calls and
# serialise concurrent use from threads (the docs only call that less efficient).
_ONE_SHOT_PARSER = etree.XMLParser(**_HARDENING)


def parse_xml(
    body: bytes, limits: XmlLimits, error: type[ValueError], label: str
) -> etree._Element:
    """The root element of ``body``, or ``error(...)`` naming ``label`` and the fault."""
    if len(body) > limits.max_bytes:
        raise error(f"{label} body too large: {len(body)} bytes > {limits.max_bytes}")
    reject_doctype(body, error, label)
    if len(body) <= ONE_SHOT_MAX_BYTES:
        root = parse_one_shot(body, limits)
        if root is not None:
            return root
    return parse_incremental(body, limits, error, label)


def reject_doctype(body: bytes, error: type[ValueError], label: str) -> None:
    # Removing NUL bytes makes UTF-16/UTF-32 text look like ASCII for this check (a body
    # without any, the usual UTF-8 one, is searched as it is: no copy).
    # A literal "<!DOCTYPE" inside CDATA is rejected too; no real document has one.
    if b"\x00" in body:
        body = body.replace(b"\x00", b"")
    if b"<!DOCTYPE" in body:
        raise error(f"DOCTYPE not allowed in {label} (no DTDs or entity declarations)")


def parse_one_shot(body: bytes, limits: XmlLimits) -> etree._Element | None:
    """The tree if the body parses and is within the limits, else None (the caller then
    takes the incremental path, which finds the same fault and words its error)."""
    try:
        root = etree.fromstring(body, _ONE_SHOT_PARSER)
    except Exception:  # any failure: the incremental path reports it
        return None
    if root is None:  # pragma: no cover - lxml raises for an empty document
        return None
    count = len(list(root.iter()))
    if count > limits.max_elements:
        return None
    # Depth <= element count, so only a tree with more elements than the depth limit needs
    # the walk.
    if count > limits.max_depth and _deeper_than(root, limits.max_depth):
        return None
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        return None
    return root


def _deeper_than(root: etree._Element, max_depth: int) -> bool:
    depth = 0
    for event, _element in etree.iterwalk(root, events=("start", "end")):
        if event == "start":
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


def parse_incremental(
    body: bytes, limits: XmlLimits, error: type[ValueError], label: str
) -> etree._Element:
    parser = etree.XMLPullParser(events=("start", "end"), **_HARDENING)
    depth = 0
    count = 0
    try:
        for start in range(0, max(len(body), 1), _FEED_CHUNK):
            parser.feed(body[start : start + _FEED_CHUNK])
            for event, _element in parser.read_events():
                if event == "start":
                    depth += 1
                    count += 1
                    if depth > limits.max_depth:
                        raise error(f"{label} nesting deeper than {limits.max_depth}")
                    if count > limits.max_elements:
                        raise error(f"{label} has more than {limits.max_elements} elements")
                else:
                    depth -= 1
        root = parser.close()
    except error:
        raise
    except (etree.LxmlError, ValueError, LookupError, TypeError) as exc:
        raise error(f"{label} is not well-formed XML: {_first_line(exc)}") from exc
    # Second line of defence for encodings the byte scan cannot read (e.g. EBCDIC):
    # entities were not resolved and no DTD was loaded, so rejecting now is still safe.
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise error(f"DOCTYPE not allowed in {label} (no DTDs or entity declarations)")
    return root


def local_name(tag: object) -> str:
    """The local part of an lxml tag ("{ns}name" -> "name"); '' for a non-element node."""
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
