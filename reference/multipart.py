"""Hardened ``multipart/related`` bodies (RFC 2046 §5.1, RFC 2387) as RFC 4662 uses them.

Rules of this file:

* :func:`parse_multipart` takes the body and the parameters of its Content-Type and returns
  the parts, or raises :class:`MultipartError` naming the fault; no other exception escapes.
* Boundary rules (RFC 2046 §5.1.1): the ``boundary`` parameter is required, 1 to 70
  characters of the ``bchars`` set, not ending in a space. A delimiter counts only at the
  start of the body or after a line break; the closing delimiter (``--boundary--``) is
  required (a body that stops without it was truncated); preamble and epilogue are ignored.
* Limits, checked before the work they bound (``MultipartLimits``): total bytes, parts,
  bytes per part, header lines per part and bytes per header line.
* Each part's headers: ``Content-Type`` (required; kept as its lower-case ``type/subtype``),
  ``Content-ID`` (angle brackets stripped), ``Content-Transfer-Encoding`` (only the
  identity encodings ``7bit``, ``8bit``, ``binary`` are accepted: SIP is 8-bit clean, RFC
  3261 §7.4); other headers are kept. Two parts with one Content-ID are an error.
* The root part (RFC 2387 §3.2) is the one the ``start`` parameter names, else the first
  part; a ``start`` naming no part is an error; the ``type`` parameter, when given, must be
  the root's Content-Type.
* :func:`build_multipart` writes the same format (for the notifier side and tests).
* A leaf: imports nothing of the project.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "MultipartError",
    "MultipartLimits",
    "Part",
    "RelatedBody",
    "build_multipart",
    "parse_multipart",
]

# RFC 2046 §5.1.1 bchars (the last character may not be a space).
_BOUNDARY_RE = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_IDENTITY_ENCODINGS = frozenset({"7bit", "8bit", "binary"})


class MultipartError(ValueError):
    """The body is not an acceptable multipart/related body; the text says why."""


@dataclass(frozen=True)
class MultipartLimits:
    """Bounds (bytes and counts) of one multipart body.

    * ``max_bytes`` (default 262,144): the whole body, checked first. A TCP message may be
      larger than a datagram, but a list of 100 PIDF documents is well below this.
    * ``max_parts`` (default 256): parts, the root included.
    * ``max_part_bytes`` (default 65,536): one part's body (a PIDF's own limit).
    * ``max_part_headers`` (default 16) and ``max_header_line`` (default 1,024 bytes).
    """

    max_bytes: int = 262144
    max_parts: int = 256
    max_part_bytes: int = 65536
    max_part_headers: int = 16
    max_header_line: int = 1024

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_parts", "max_part_bytes", "max_part_headers",
                     "max_header_line"):
            if getattr(self, name) < 1:
                raise ValueError(f"MultipartLimits.{name} must be >= 1")


DEFAULT_LIMITS = MultipartLimits()


@dataclass(frozen=True, slots=True)
class Part:
    """One body part: its media type (lower case), Content-ID (no brackets), headers, body."""

    content_type: str
    body: bytes
    content_id: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class RelatedBody:
    """A parsed multipart/related body: the root part and every part (root included)."""

    root: Part
    parts: tuple[Part, ...]

    def by_cid(self) -> dict[str, Part]:
        return {p.content_id: p for p in self.parts if p.content_id is not None}


def parse_multipart(
    body: bytes, params: Mapping[str, str | None], *,
    limits: MultipartLimits = DEFAULT_LIMITS,
) -> RelatedBody:
    """Parse ``body`` with the Content-Type parameters ``params`` (names lower case)."""
    if len(body) > limits.max_bytes:
        raise MultipartError(f"multipart body too large: {len(body)} bytes > {limits.max_bytes}")
    boundary = _unquote(params.get("boundary"))
    if boundary is None:
        raise MultipartError("multipart Content-Type has no boundary parameter")
    if not _BOUNDARY_RE.fullmatch(boundary):
        raise MultipartError(f"bad multipart boundary: {boundary!r}")
    chunks = _split(body, boundary.encode("ascii"), limits)
    parts = tuple(_part(chunk, index, limits) for index, chunk in enumerate(chunks))
    seen: set[str] = set()
    for part in parts:
        if part.content_id is not None:
            if part.content_id in seen:
                raise MultipartError(f"two parts with Content-ID <{part.content_id}>")
            seen.add(part.content_id)
    start = _unquote(params.get("start"))
    if start is not None:
        cid = _strip_brackets(start)
        found = [p for p in parts if p.content_id == cid]
        if not found:
            raise MultipartError(f"start parameter names no part: {start!r}")
        root = found[0]
    else:
        root = parts[0]
    root_type = _unquote(params.get("type"))
    if root_type is not None and root_type.strip().lower() != root.content_type:
        raise MultipartError(
            f"root part is {root.content_type}, the type parameter says {root_type}")
    return RelatedBody(root, parts)


def _split(body: bytes, boundary: bytes, limits: MultipartLimits) -> list[bytes]:
    delimiter = b"--" + boundary
    # Delimiters count at the start of the body or after a line break (CRLF, or LF).
    positions: list[int] = []
    search = 0
    while True:
        found = body.find(delimiter, search)
        if found < 0:
            break
        if found == 0 or body[found - 1 : found] == b"\n":
            positions.append(found)
            if len(positions) > limits.max_parts + 1:
                raise MultipartError(f"multipart has more than {limits.max_parts} parts")
        search = found + len(delimiter)
    if not positions:
        raise MultipartError("multipart body has no boundary delimiter")
    chunks: list[bytes] = []
    closed = False
    for index, position in enumerate(positions):
        after = position + len(delimiter)
        if body[after : after + 2] == b"--":
            closed = True
            break
        line_end = body.find(b"\n", after)
        if line_end < 0 or body[after:line_end].rstrip(b"\r").strip(b" \t"):
            raise MultipartError("text after a boundary delimiter on its line")
        end = positions[index + 1] if index + 1 < len(positions) else len(body)
        chunk = body[line_end + 1 : end]
        # The line break before the next delimiter belongs to the delimiter.
        if chunk.endswith(b"\r\n"):
            chunk = chunk[:-2]
        elif chunk.endswith(b"\n"):
            chunk = chunk[:-1]
        chunks.append(chunk)
    if not closed:
        raise MultipartError("multipart body has no closing delimiter (truncated?)")
    if not chunks:
        raise MultipartError("multipart body has no parts")
    return chunks


def _part(chunk: bytes, index: int, limits: MultipartLimits) -> Part:
    head_end = chunk.find(b"\r\n\r\n")
    sep = 4
    lf_end = chunk.find(b"\n\n")
    if lf_end >= 0 and (head_end < 0 or lf_end < head_end):
        head_end, sep = lf_end, 2
    if chunk.startswith((b"\r\n", b"\n")):  # no headers at all
        raise MultipartError(f"part {index + 1} has no Content-Type")
    if head_end < 0:
        raise MultipartError(f"part {index + 1} has no blank line after its headers")
    content = chunk[head_end + sep :]
    if len(content) > limits.max_part_bytes:
        raise MultipartError(
            f"part {index + 1} too large: {len(content)} bytes > {limits.max_part_bytes}")
    try:
        head = chunk[:head_end].decode("utf-8")
    except UnicodeDecodeError:
        raise MultipartError(f"part {index + 1} has non-UTF-8 headers") from None
    lines = head.replace("\r\n", "\n").split("\n")
    if len(lines) > limits.max_part_headers:
        raise MultipartError(
            f"part {index + 1} has more than {limits.max_part_headers} header lines")
    headers: list[tuple[str, str]] = []
    for line in lines:
        if len(line) > limits.max_header_line:
            raise MultipartError(f"part {index + 1} header line too long")
        if line[:1] in (" ", "\t") and headers:  # folded continuation
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip())
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise MultipartError(f"part {index + 1} has a bad header line: {line[:60]!r}")
        headers.append((name.strip().lower(), value.strip()))
    values = dict(headers)
    raw_type = values.get("content-type")
    if raw_type is None:
        raise MultipartError(f"part {index + 1} has no Content-Type")
    media = raw_type.partition(";")[0].strip().lower()
    if media.count("/") != 1 or not all(media.split("/")):
        raise MultipartError(f"part {index + 1} has a bad Content-Type: {raw_type!r}")
    encoding = values.get("content-transfer-encoding")
    if encoding is not None and encoding.lower() not in _IDENTITY_ENCODINGS:
        raise MultipartError(f"part {index + 1}: Content-Transfer-Encoding {encoding!r} "
                             "not supported (only 7bit, 8bit, binary)")
    cid = values.get("content-id")
    return Part(media, content, _strip_brackets(cid) if cid is not None else None,
                tuple(headers))


def _unquote(value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def _strip_brackets(cid: str) -> str:
    cid = cid.strip()
    return cid[1:-1] if cid.startswith("<") and cid.endswith(">") else cid


def build_multipart(parts: Iterable[Part], boundary: str) -> bytes:
    """Serialise parts (the first is the root) between ``boundary`` delimiters, CRLF lines.

    ``ValueError`` if the boundary breaks RFC 2046's rules or occurs inside a part."""
    if not _BOUNDARY_RE.fullmatch(boundary):
        raise ValueError(f"bad multipart boundary: {boundary!r}")
    delimiter = b"--" + boundary.encode("ascii")
    out: list[bytes] = []
    for part in parts:
        if delimiter in part.body:
            raise ValueError(f"the boundary occurs inside part {part.content_id!r}")
        out.append(delimiter + b"\r\n")
        out.append(f"Content-Type: {part.content_type}\r\n".encode())
        if part.content_id is not None:
            out.append(f"Content-ID: <{part.content_id}>\r\n".encode())
        for name, value in part.headers:
            if name.lower() not in ("content-type", "content-id"):
                out.append(f"{name}: {value}\r\n".encode())
        out.append(b"\r\n" + part.body + b"\r\n")
    out.append(delimiter + b"--\r\n")
    return b"".join(out)
