"""SIP message framing, Request/Response with typed accessors, and serialisation.

The header multi-map (``Headers``) and the typed header parsers live in ``headers.py``.

Decisions (where RFC 3261 leaves room or the brief was silent):
* Header section encoding: UTF-8 (RFC 3261 §7.3.1). Bytes that are not UTF-8 raise
  ``non-UTF-8 header 'Name'`` with ``err.message`` set (values decoded with U+FFFD) so a UAS
  can still answer 400; a non-UTF-8 start line raises with ``err.message = None``.
* Line ends: CRLF, and bare LF is tolerated; a bare CR in the header section is an error.
  CRLFs before the start line are skipped (§7.5 keep-alives). A header section that is not
  ended by an empty line is an error (``incomplete message``).
* Content-Length is framing data: it is removed from ``headers`` on parse and always
  recomputed by ``to_bytes``. Differing values, non-digits, a negative value, or a value
  larger than the bytes received (UDP, §18.3) raise ``bad Content-Length: ...`` with
  ``err.message`` set (body = the bytes received) so that the UAS can answer 400. Bytes
  beyond Content-Length are ignored; without Content-Length the body is the rest of the
  datagram.
* A single-value header (Call-ID, CSeq, From, To, Max-Forwards, Content-Length) that
  appears twice, under either spelling (``i``/``f``/``t``/``l``), raises ``duplicate
  header: Name`` with ``err.message`` set (RFC 4475 §3.3.8/§3.3.9: answer 400), even
  when both values are equal: which one the sender meant cannot be known.
* A request line that frames but is wrong (extra whitespace, a Request-URI that is not
  a URI or a SIP URI that does not parse or carries headers, a version other than 2.0)
  raises with ``err.message`` set and ``err.status`` 400, or 505 for ``SIP/x.y``.
* Typed accessors are lazy and their values immutable. The values that recur in a dialog
  (From, To, Contact, Event, Subscription-State, Content-Type, Accept, Expires) come from
  their parsers' caches, keyed by the value's text, and a Via from its shape's (all but the
  branch); the others (the Via list, CSeq...) and the To and Call-ID read (read several
  times per message) are kept in the ``Headers`` object (cleared on mutation). One Via
  line of a known shape and one CSeq line of the usual form ("1 NOTIFY") are parsed with
  the header section already (every reader reads them, and their lines are at hand
  there); a value that is not of those forms waits for its accessor.
  ``from_``, ``to``, ``call_id`` and ``cseq`` are mandatory: absent, they raise
  ``missing header: X``; the optional ones return None or []. Every accessor error carries
  the message in ``err.message``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from reference.sip.errors import SipParseError
from reference.sip.grammar import TOKEN_CHARS
from reference.sip.headers import (
    EXPIRES_VALUES,
    FIELD_SPELLINGS,
    MAX_FORWARDS_VALUES,
    ContactValue,
    ContentType,
    CSeq,
    EventHeader,
    FieldEntry,
    Headers,
    ParsedHeaders,
    SubscriptionState,
    Via,
    field_spelling,
    known_via,
    parse_call_id,
    parse_contact,
    parse_content_type,
    parse_cseq,
    parse_event,
    parse_expires,
    parse_from,
    parse_max_forwards,
    parse_media_range,
    parse_named,
    parse_retry_after,
    parse_subscription_state,
    parse_to,
    parse_via,
    split_list,
    usual_cseq,
)
from reference.sip.limits import DEFAULT_LIMITS, MAX_NUMBER_DIGITS, ParseLimits
from reference.sip.uri import NameAddr, check_absolute_uri

T = TypeVar("T")
_MANDATORY = ("To", "From", "Call-ID", "CSeq", "Via")
# Headers whose grammar allows one value, checked for duplicates by the parser
# (Content-Length, framing data, has its own check).
_SINGLE_VALUE_KEYS = tuple(
    (name, name.lower()) for name in ("Call-ID", "CSeq", "From", "To", "Max-Forwards"))
# (name, lookup key) of the mandatory headers; requests also need the last one.
_MANDATORY_KEYS = tuple((name, name.lower()) for name in (*_MANDATORY, "Max-Forwards"))
# Their keys together, for a request and for a response (no Max-Forwards): one subset test
# when all are there.
_REQUEST_MANDATORY = frozenset(key for _, key in _MANDATORY_KEYS)
_RESPONSE_MANDATORY = frozenset(key for _, key in _MANDATORY_KEYS[:-1])


def _parse_vias(values: list[str]) -> list[Via]:
    return [parse_via(v) for v in values]


def _parse_contacts(values: list[str]) -> list[ContactValue]:
    return [parse_contact(v) for v in values]


def _parse_routes(values: list[str]) -> list[NameAddr]:
    return [parse_named(v, "Route") for v in values]


def _parse_record_routes(values: list[str]) -> list[NameAddr]:
    return [parse_named(v, "Record-Route") for v in values]


def _parse_accept(values: list[str]) -> list[str]:
    return [parse_media_range(v) for v in values]


def _parse_min_expires(value: str) -> int:
    return parse_expires(value, "Min-Expires")


# The lookup key of each list header read by an accessor.
_LIST_KEYS = {name: name.lower() for name in ("Via", "Contact", "Route", "Record-Route",
                                               "Accept")}


class _Accessors:
    """Typed, cached header accessors shared by Request and Response.

    Each accessor parses its header on first use and keeps the typed value in the Headers'
    cache (cleared on mutation), under the header's lookup key (``vias``, ``contacts``...
    for the list accessors). A parse error is raised again on every access, with
    ``err.message`` set to this message. The values are immutable (named tuples with
    read-only params), the lists are copies: no caller can change what another reads.

    The read path of each accessor is written out (a cache hit is one dict lookup); the
    first read goes to ``_typed`` or ``_list``."""

    __slots__ = ()
    headers: Headers

    def _typed(self, key: str, name: str, parse: Callable[[str], T], mandatory: bool) -> T | None:
        """Parse the first value of header ``key`` and cache it; None when absent, or
        ``missing header: Name`` when ``mandatory``."""
        headers = self.headers
        values = (headers._index or headers._lookup()).get(key)
        if values is None:
            if mandatory:
                raise SipParseError(f"missing header: {name}", self)
            return None
        try:
            value = parse(values[0])
        except SipParseError as exc:
            raise SipParseError(str(exc), self) from None
        headers._cache[key] = value
        return value

    def _list(self, key: str, name: str, parse: Callable[[list[str]], list[T]]) -> list[T]:
        """The cached typed list of every comma element of list header ``name`` (what
        ``Headers.get_all`` gives; callers must not mutate it)."""
        headers = self.headers
        cache = headers._cache
        if key in cache:
            return cache[key]  # type: ignore[return-value]
        values = (headers._index or headers._lookup()).get(_LIST_KEYS[name])
        try:
            if values is None:
                elements = []
            elif len(values) == 1 and "," not in values[0] and '"' not in values[0]:
                element = values[0].strip(" \t")  # one element, as get_all gives it
                elements = [element] if element else []
            else:
                elements = headers.get_all(name)
            value = parse(elements)
        except SipParseError as exc:
            raise SipParseError(str(exc), self) from None
        cache[key] = value
        return value

    def _vias(self) -> list[Via]:
        """Parse and cache every Via value (the one-line, one-value case without get_all)."""
        headers = self.headers
        values = (headers._index or headers._lookup()).get("via")
        if values is not None and len(values) == 1:
            via = known_via(values[0])  # a value of a known shape is one element
            if via is not None:
                vias = [via]
                headers._cache["vias"] = vias
                return vias
        if values is not None and len(values) == 1 and "," not in values[0] \
                and '"' not in values[0]:
            element = values[0].strip(" \t")  # one element, as get_all gives it
            try:
                vias = [parse_via(element)] if element else []
            except SipParseError as exc:
                raise self._bad(exc) from None
            headers._cache["vias"] = vias
            return vias
        return self._list("vias", "Via", _parse_vias)

    @property
    def vias(self) -> list[Via]:
        cached: list[Via] | None = self.headers._cache.get("vias")  # type: ignore[assignment]
        return list(cached if cached is not None else self._vias())

    @property
    def top_via(self) -> Via | None:
        """The first Via value (None when there is none); same errors as ``vias``."""
        vias: list[Via] | None = self.headers._cache.get("vias")  # type: ignore[assignment]
        if vias is None:
            vias = self._vias()
        return vias[0] if vias else None

    def _bad(self, exc: SipParseError) -> SipParseError:
        """``exc`` again, carrying this message."""
        return SipParseError(str(exc), self)

    # From, To, Contact, Event, Subscription-State and Content-Type values recur, and their
    # parsers cache them by text: these accessors go to that cache (To after its first read:
    # see below).

    @property
    def from_(self) -> NameAddr:
        headers = self.headers
        values = (headers._index or headers._lookup()).get("from")
        if values is None:
            raise SipParseError("missing header: From", self)
        try:
            return parse_from(values[0])
        except SipParseError as exc:
            raise self._bad(exc) from None

    # To and Call-ID are read several times per message (transaction, dialog and check):
    # they are kept in the typed cache too (with the Via list and CSeq, at most five values,
    # which a message's cache holds without growing).

    @property
    def to(self) -> NameAddr:
        headers = self.headers
        cached: NameAddr | None = headers._cache.get("to")  # type: ignore[assignment]
        if cached is not None:
            return cached
        values = (headers._index or headers._lookup()).get("to")
        if values is None:
            raise SipParseError("missing header: To", self)
        try:
            to = parse_to(values[0])
        except SipParseError as exc:
            raise self._bad(exc) from None
        headers._cache["to"] = to
        return to

    @property
    def call_id(self) -> str:
        headers = self.headers
        cached: str | None = headers._cache.get("call-id")  # type: ignore[assignment]
        if cached is not None:
            return cached
        values = (headers._index or headers._lookup()).get("call-id")
        if values is None:
            raise SipParseError("missing header: Call-ID", self)
        value = values[0]
        if not value or not value.isprintable() or " " in value:
            try:
                parse_call_id(value)  # (raises)
            except SipParseError as exc:
                raise self._bad(exc) from None
        headers._cache["call-id"] = value
        return value

    @property
    def cseq(self) -> CSeq:
        headers = self.headers
        cached = headers._cache.get("cseq")
        if cached is not None:
            return cached  # type: ignore[return-value]
        values = (headers._index or headers._lookup()).get("cseq")
        if values is None:
            raise SipParseError("missing header: CSeq", self)
        try:
            cseq = parse_cseq(values[0])
        except SipParseError as exc:
            raise self._bad(exc) from None
        headers._cache["cseq"] = cseq
        return cseq

    @property
    def contacts(self) -> list[ContactValue]:
        headers = self.headers
        values = (headers._index or headers._lookup()).get("contact")
        if values is None:
            return []
        value = values[0]
        if len(values) == 1 and "," not in value and '"' not in value:
            element = value.strip(" \t")  # one element, as get_all gives it
            if not element:
                return []
            try:
                return [parse_contact(element)]
            except SipParseError as exc:
                raise self._bad(exc) from None
        return list(self._list("contacts", "Contact", _parse_contacts))

    @property
    def routes(self) -> list[NameAddr]:
        return list(self._list("routes", "Route", _parse_routes))

    @property
    def record_routes(self) -> list[NameAddr]:
        return list(self._list("record-routes", "Record-Route", _parse_record_routes))

    # The optional ones: no parser returns None, so None in the cache means "not read yet"
    # (an absent header is looked up again: one dict lookup).

    @property
    def expires(self) -> int | None:
        headers = self.headers
        values = (headers._index or headers._lookup()).get("expires")
        if values is None:
            return None
        number = EXPIRES_VALUES.get(values[0])  # the usual "3600": parse_expires' cache
        if number is not None:
            return number
        try:
            return parse_expires(values[0])
        except SipParseError as exc:
            raise self._bad(exc) from None

    @property
    def min_expires(self) -> int | None:
        cached = self.headers._cache.get("min-expires")
        return cached if cached is not None else self._typed(  # type: ignore[return-value]
            "min-expires", "Min-Expires", _parse_min_expires, False)

    @property
    def retry_after(self) -> int | None:
        cached = self.headers._cache.get("retry-after")
        return cached if cached is not None else self._typed(  # type: ignore[return-value]
            "retry-after", "Retry-After", parse_retry_after, False)

    @property
    def event(self) -> EventHeader | None:
        headers = self.headers
        values = (headers._index or headers._lookup()).get("event")
        if values is None:
            return None
        try:
            return parse_event(values[0])
        except SipParseError as exc:
            raise self._bad(exc) from None

    @property
    def subscription_state(self) -> SubscriptionState | None:
        headers = self.headers
        values = (headers._index or headers._lookup()).get("subscription-state")
        if values is None:
            return None
        try:
            return parse_subscription_state(values[0])
        except SipParseError as exc:
            raise self._bad(exc) from None

    @property
    def content_type(self) -> ContentType | None:
        headers = self.headers
        values = (headers._index or headers._lookup()).get("content-type")
        if values is None:
            return None
        try:
            return parse_content_type(values[0])
        except SipParseError as exc:
            raise self._bad(exc) from None

    @property
    def max_forwards(self) -> int | None:
        headers = self.headers
        values = (headers._index or headers._lookup()).get("max-forwards")
        if values is None:
            return None
        number = MAX_FORWARDS_VALUES.get(values[0])  # the usual "70"
        if number is not None:
            return number
        try:
            return parse_max_forwards(values[0])
        except SipParseError as exc:
            raise self._bad(exc) from None

    @property
    def accept(self) -> list[str]:
        headers = self.headers
        values = (headers._index or headers._lookup()).get("accept")
        if values is None:
            return []
        value = values[0]
        if len(values) == 1 and "," not in value and '"' not in value:
            element = value.strip(" \t")  # one element, as get_all gives it
            if not element:
                return []
            try:
                return [parse_media_range(element)]  # (cached by text)
            except SipParseError as exc:
                raise self._bad(exc) from None
        return list(self._list("accept", "Accept", _parse_accept))


def _header_text(headers: Headers) -> str:
    """The header lines written for ``headers`` (Content-Length apart: see _message_bytes),
    joined by CRLF: the builder's (``Headers._text``) when it wrote them."""
    text = headers._text
    if text is None:
        text = "\r\n".join([f"{name}: {value}" for key, name, value in headers._items
                             if key != "content-length"])
    return text


def _message_bytes(start_line: str, text: str, body: bytes) -> bytes:
    """The wire form of a message: ``start_line``, the header lines ``text`` (Content-Length
    not among them: it is written last, from the body), an empty line, ``body``."""
    if text:
        head = f"{start_line}\r\n{text}\r\nContent-Length: {len(body)}\r\n\r\n"
    else:
        head = f"{start_line}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode("utf-8") + body


@dataclass(slots=True)
class Request(_Accessors):
    method: str
    uri: str  # Request-URI as written
    headers: Headers
    body: bytes = b""

    def start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"

    def to_bytes(self) -> bytes:
        return _message_bytes(f"{self.method} {self.uri} SIP/2.0", _header_text(self.headers),
                              self.body)


@dataclass(slots=True)
class Response(_Accessors):
    status: int
    reason: str
    headers: Headers
    body: bytes = b""

    def start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def to_bytes(self) -> bytes:
        return _message_bytes(f"SIP/2.0 {self.status} {self.reason}",
                              _header_text(self.headers), self.body)


Message = Request | Response

# ---------------------------------------------------------------- parsing


_CR_LF = b"\r\n"


def _find_head_end(data: bytes, start: int) -> tuple[int, int]:
    """(end of header section, start of body); -1s when there is no empty line."""
    crlf = data.find(b"\n\r\n", start)
    # A bare-LF end counts only before the CRLF one: no need to scan the body for it.
    lf = data.find(b"\n\n", start, crlf + 1 if crlf >= 0 else len(data))
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, crlf + 3
    if lf >= 0:
        return lf, lf + 2
    return -1, -1


# Start lines recur (every NOTIFY to this agent carries the same request line), so a short
# one without a problem is kept as _start_line returns it: at most _GOOD_START_LINES_MAX lines
# of at most _CACHED_START_LINE_CHARS characters, emptied when full. A line with a problem is
# parsed again each time (its error is built afresh: ``message`` is set per message).
_CACHED_START_LINE_CHARS = 256
_StartLine = tuple[str, str, int, SipParseError | None]
_GOOD_START_LINES: dict[str, _StartLine] = {}
# What the usual path gives (parse_message): the start line, its cached parse or None, the
# header lines, their index entries, and the index when it was made with them.
_Usual = tuple[str, _StartLine | None, list[str], list[FieldEntry],
               dict[str, Sequence[str]] | None]
# A kept section (_SECTIONS): start line, its parse, header lines, entries, index (Content-
# Length included), and where the Via and CSeq lines are among the lines.
_Section = tuple[str, _StartLine, list[str], list[FieldEntry], dict[str, Sequence[str]],
                 int, int]
_GOOD_START_LINES_MAX = 1024


def _start_line(line: str) -> _StartLine:
    good = _GOOD_START_LINES.get(line)
    if good is not None:
        return good
    parsed = _parse_start_line(line)
    if parsed[3] is None and len(line) <= _CACHED_START_LINE_CHARS:
        if len(_GOOD_START_LINES) >= _GOOD_START_LINES_MAX:
            _GOOD_START_LINES.clear()
        _GOOD_START_LINES[line] = parsed
    return parsed


def _parse_start_line(line: str) -> _StartLine:
    """(method, Request-URI, 0, problem) for a request line, ("", reason, status, None) for
    a status line. A request line that frames (a method token first, ``SIP/...`` last) but is
    not exactly ``Method SP Request-URI SP SIP/2.0`` with a valid Request-URI comes back
    with its problem, raised once the header section framed so that a UAS can answer it
    (RFC 4475 §3.1.2.7-3.1.2.11: 400; §3.1.2.16: 505). Anything else is not answerable."""
    if line[:4].upper() == "SIP/":
        version, _, rest = line.partition(" ")
        if version.upper() != "SIP/2.0":
            raise SipParseError(f"bad status line: version {version[:20]!r}")
        code, _, reason = rest.partition(" ")
        if len(code) != 3 or not code.isascii() or not code.isdigit() or code[0] in "07899":
            raise SipParseError(f"bad status line: status code {code[:20]!r}")
        return "", reason, int(code), None
    parts = line.split(" ")
    if len(parts) == 3:
        method, uri, version = parts
    else:
        words = line.split()
        if len(words) < 3:
            raise SipParseError(f"bad request line: {line[:80]!r}")
        method, uri, version = words[0], " ".join(words[1:-1]), words[-1]
    if not method or not set(method) <= TOKEN_CHARS:
        raise SipParseError(f"bad request line: method {method[:20]!r}")
    if version[:4].upper() != "SIP/":
        raise SipParseError(f"bad request line: version {version[:20]!r}")
    if len(parts) != 3:
        return method, uri, 0, SipParseError(
            f"bad request line: extra whitespace in {line[:80]!r}")
    if version.upper() != "SIP/2.0":
        major, dot, minor = version[4:].partition(".")
        if dot and major.isascii() and major.isdigit() and minor.isascii() and minor.isdigit():
            return method, uri, 0, SipParseError(
                f"unsupported SIP version {version[:20]!r}", status=505)
        return method, uri, 0, SipParseError(f"bad request line: version {version[:20]!r}")
    return method, uri, 0, _request_uri_problem(uri)


def _request_uri_problem(uri: str) -> SipParseError | None:
    """Why ``uri`` cannot be a Request-URI: not an absolute URI, a SIP URI that does not
    parse, or a SIP URI with headers (RFC 3261 §19.1.1 Table 1 forbids them there)."""
    try:
        check_absolute_uri(uri, "Request-URI")
    except SipParseError as exc:
        return exc
    if "?" in uri and uri.partition(":")[0].lower() in ("sip", "sips"):
        return SipParseError(f"bad Request-URI: URI headers are not allowed in {uri[:80]!r}")
    return None


def _parse_content_length(values: Sequence[str]) -> int:
    lengths: set[int] = set()
    for value in values:
        if not value.isascii() or not value.isdigit() or len(value) > MAX_NUMBER_DIGITS:
            raise SipParseError(f"bad Content-Length: {value[:40]!r}")
        lengths.add(int(value))
    if len(lengths) > 1:
        raise SipParseError(f"bad Content-Length: conflicting values {sorted(lengths)}")
    return lengths.pop()


def _duplicate_problem(
    index: dict[str, Sequence[str]], lengths: Sequence[str]
) -> SipParseError | None:
    """A header that may appear once (RFC 3261 §7.3.1: not a comma list) appearing twice,
    compact forms included (RFC 4475 §3.3.8, §3.3.9); Content-Length values that differ
    are left to ``_parse_content_length``, which names them. ``index`` is the message's
    header index, ``lengths`` its Content-Length values."""
    for name, key in _SINGLE_VALUE_KEYS:
        values = index.get(key)
        if values is not None and len(values) > 1:
            return SipParseError(f"duplicate header: {name}")
    if len(lengths) > 1 and len(set(lengths)) == 1:
        return SipParseError("duplicate header: Content-Length")
    return None


def _non_utf8_error(head: bytes, exc: UnicodeDecodeError) -> str:
    line_no = head.count(b"\n", 0, exc.start)
    line_start = head.rfind(b"\n", 0, exc.start) + 1
    if line_no == 0:
        return "start line"
    colon = head.find(b":", line_start, exc.start)
    name = head[line_start : colon if colon >= 0 else exc.start]
    return f"header {name.decode('latin-1').strip()[:40]!r}"


def _unfold(lines: list[str], limits: ParseLimits) -> list[str]:
    """Join folded header lines into fields (a line starting with SP/HT continues the
    previous one), enforcing the line-length and header-count limits in line order."""
    fields: list[list[str]] = []
    for line in lines:
        if len(line) > limits.max_header_line:
            raise SipParseError(f"header line too long: limit {limits.max_header_line}")
        if line[:1] in (" ", "\t"):
            if not fields:
                raise SipParseError("bad header section: continuation before the first header")
            fields[-1].append(line.strip(" \t"))
            continue
        if len(fields) >= limits.max_headers:
            raise SipParseError(f"too many headers: limit {limits.max_headers}")
        fields.append([line])
    return [parts[0] if len(parts) == 1 else " ".join(parts) for parts in fields]


# Field lines recur (``Max-Forwards: 70``, ``Event: presence``, a dialog's From, To and
# Call-ID), so a valid line's index entry is kept: at most _FIELDS_MAX entries, each at most
# ``max_header_line`` characters of line text; when full it is emptied and refills with the
# lines that recur. Only lines that split without error are kept (a cached split is the
# split of the same text, so a hit changes nothing but the time).
_FIELDS: dict[str, FieldEntry] = {}
_FIELDS_MAX = 4096


# Lines of these headers never recur (a new branch and CSeq number per message): caching them
# would only push out the lines that do.
_UNIQUE_KEYS = frozenset(("via", "cseq"))


def _split_field(line: str) -> FieldEntry:
    """The index entry (lookup key, (value,)) of one unfolded header line."""
    written, colon, value = line.partition(":")
    spelling = (FIELD_SPELLINGS.get(written) or field_spelling(written)) if colon else None
    if spelling is None:
        raise SipParseError(f"bad header line: {line[:80]!r}")
    key = spelling[0]
    entry = (key, (value.strip(" \t"),))
    if key not in _UNIQUE_KEYS:
        if len(_FIELDS) >= _FIELDS_MAX:
            _FIELDS.clear()
        _FIELDS[line] = entry
    return entry


def _general_head(data: bytes) -> tuple[str, list[str], bytes, SipParseError | None]:
    """(header section text, its lines with the start line first, body bytes, the non-UTF-8
    problem to raise once framed) of any datagram: CRLFs before the start line skipped, a
    bare-LF line end tolerated. Raises what cannot be framed or answered."""
    start = 0
    if not data or data[0] in _CR_LF:
        start = len(data) - len(data.lstrip(b"\r\n"))
        if start == len(data):
            raise SipParseError("empty message")
    head_end, body_start = _find_head_end(data, start)
    if head_end < 0:
        raise SipParseError("incomplete message: no empty line after the header section")
    head = data[start:head_end]
    if head.endswith(b"\r"):
        head = head[:-1]
    non_utf8: SipParseError | None = None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = _non_utf8_error(head, exc)
        if where == "start line":
            raise SipParseError("non-UTF-8 start line") from None
        text = head.decode("utf-8", "replace")
        non_utf8 = SipParseError(f"non-UTF-8 {where}")
    if "\r" not in text:
        lines = text.split("\n")
    else:
        lines = text.split("\r\n")
        if not text.count("\r") == text.count("\n") == len(lines) - 1:
            # Not CRLF line ends only (then every CR and LF is a split point): a bare LF is
            # tolerated, a bare CR is not.
            text = text.replace("\r\n", "\n")
            if "\r" in text:
                raise SipParseError("bad header section: bare CR")
            lines = text.split("\n")
    return text, lines, data[body_start:], non_utf8


def _usual_section(text: str, limits: ParseLimits,
                   typed: dict[str, object]) -> _Usual | None:
    """(start line, its cached parse or None, header lines, their index entries, None) of
    the usual section (see parse_message), with the typed values of its Via and CSeq lines
    put in ``typed``; None for anything else (a folded or bad line, a bare CR or LF, a limit
    reached), which the general path frames, unfolds, checks and names the error of."""
    lines = text.split("\r\n")
    start_line = lines[0]
    del lines[0]  # the header lines now (cheaper than a copy of the rest)
    # A line found in a cache (a good start line, a header line in _FIELDS) holds no CR or
    # LF: only the others are looked at, each below (cheaper than counting every CR and LF
    # of the section).
    good = _GOOD_START_LINES.get(start_line)
    if len(lines) > limits.max_headers or (
            len(text) > limits.max_header_line
            and max(map(len, lines), default=0) > limits.max_header_line) or (
            good is None and not text.count("\r") == text.count("\n") == len(lines)):
        return None
    # Every line taken as one field: a folded line (starting with SP or HT) never splits (no
    # header name starts with whitespace, and only lines that split are cached), so a folded
    # section takes the general path. (Cheaper than looking for CRLF SP in the text first.)
    found: list[FieldEntry | None] = list(map(_FIELDS.get, lines))
    try:
        # (One pass over the entries: on a busy agent a dialog's From, To and Call-ID lines
        # miss the cache as well as Via and CSeq, and a search per miss costs more.)
        for at, hit in enumerate(found):
            if hit is not None:
                continue
            line = lines[at]
            if "\r" in line or "\n" in line:
                return None  # a bare CR or LF
            written, colon, value = line.partition(":")
            spelling = FIELD_SPELLINGS.get(written)
            if spelling is None or not colon:
                found[at] = _split_field(line)  # (a name not seen yet, or a bad line)
                continue
            # What _split_field gives, inline (a few lines of each message miss the cache:
            # Via and CSeq always, a dialog's From, To and Call-ID on a busy agent).
            key = spelling[0]
            value = value.strip(" \t")
            entry = found[at] = (key, (value,))
            if key == "via":
                # The typed values of the Via and CSeq lines (not cached) when they are of
                # the usual shape: every reader reads both.
                via = known_via(value)
                if via is not None:
                    typed["vias"] = [via]
            elif key == "cseq":
                cseq = usual_cseq(value)
                if cseq is not None:
                    typed["cseq"] = cseq
            else:
                if len(_FIELDS) >= _FIELDS_MAX:
                    _FIELDS.clear()
                _FIELDS[line] = entry
    except SipParseError:
        return None
    return start_line, good, lines, found, None  # type: ignore[return-value]  # (no None left)


# A dialog's messages differ in their header section only in the Via value (a new branch)
# and the CSeq value (a new number), written on lines "Via: ..." and then "CSeq: ...". So the
# section with those two values cut out (the key) is looked up: a hit is a section that the
# usual path parsed to a message before, and this one's lines and index entries are its own
# with the two values put in. (The values cut out are checked for a CR or LF: with none,
# every line end of this section is where it was in the kept one, and so is every line; the
# cuts fall in the same places, each being the first match after the last.) Kept: sections
# parsed on the usual path to a message with no name twice, when their key was seen before
# (the hashes of at most _SECTIONS_MAX keys seen are kept, emptied when full: a busy agent
# whose dialogs' sections do not recur soon pays no copies); at most _SECTIONS_MAX of at
# most _SECTION_CHARS characters each, with their lines and entries (so a few times that in
# memory); emptied when full, then refilled by the sections that recur.
# While none is kept, only one section in _SECTIONS_PROBE is cut (its key looked for among
# the seen): an agent whose dialogs' sections do not recur soon (many dialogs, each sending
# a few NOTIFYs an hour) then pays for few cuts, and the messages of a dialog that sends
# many are still seen recurring within a few probes (then every section is looked up).
_SECTIONS: dict[str, _Section] = {}
_SECTIONS_SEEN: set[int] = set()
_SECTIONS_MAX = 512
_SECTION_CHARS = 2048
_SECTIONS_PROBE = 16
_sections_unprobed = 0  # usual sections not cut since the last probe


def _section_cut(text: str) -> tuple[str, int, int, int, int] | None:
    """(key, a, b, c, d) of a header section: ``text[a:b]`` is what follows the first
    "CRLF Via: " to the end of its line, ``text[c:d]`` what follows the first "CRLF CSeq: "
    after that, and the key is the text without both; None for another section."""
    if len(text) > _SECTION_CHARS:
        return None
    a = text.find("\r\nVia: ")
    if a < 0:
        return None
    a += 7
    b = text.find("\r\n", a)
    if b < 0:
        return None
    c = text.find("\r\nCSeq: ", b)
    if c < 0:
        return None
    c += 8
    d = text.find("\r\n", c)
    if d < 0:
        d = len(text)
    return text[:a] + text[b:c] + text[d:], a, b, c, d


def _kept_section(text: str, cut: tuple[str, int, int, int, int], section: _Section,
                  limits: ParseLimits, typed: dict[str, object]) -> _Usual | None:
    """What ``_usual_section`` gives for ``text``, from the kept ``section`` of its ``cut``
    (with the index, Content-Length included); None when the values cut out hold a CR or LF
    or a limit is reached (then the usual path decides)."""
    _, a, b, c, d = cut
    via_value = text[a:b]
    cseq_value = text[c:d]
    start_line, good, lines, entries, index, at_via, at_cseq = section
    if "\r" in via_value or "\n" in via_value or "\r" in cseq_value or "\n" in cseq_value \
            or len(lines) > limits.max_headers or len(text) > limits.max_header_line:
        return None
    lines = lines.copy()
    lines[at_via] = text[a - 5 : b]
    lines[at_cseq] = text[c - 6 : d]
    via_value = via_value.strip(" \t")
    cseq_value = cseq_value.strip(" \t")
    entries = entries.copy()
    entries[at_via] = ("via", (via_value,))
    entries[at_cseq] = ("cseq", (cseq_value,))
    index = index.copy()
    index["via"] = (via_value,)
    index["cseq"] = (cseq_value,)
    via = known_via(via_value)
    if via is not None:
        typed["vias"] = [via]
    cseq = usual_cseq(cseq_value)
    if cseq is not None:
        typed["cseq"] = cseq
    return start_line, good, lines, entries, index


def _keep_section(text: str, cut: tuple[str, int, int, int, int], start_line: str,
                  parsed: _StartLine, lines: list[str], entries: list[FieldEntry]) -> None:
    """Keep the section ``text`` that the usual path parsed to a message with no name twice
    (``parsed``: its start line's parse, ``lines`` and ``entries``: its header lines'), if
    its key was seen before."""
    key, a, b, c, d = cut
    seen = hash(key)  # (computed already: the key was looked up)
    if seen not in _SECTIONS_SEEN:
        if len(_SECTIONS_SEEN) >= _SECTIONS_MAX:
            _SECTIONS_SEEN.clear()
        _SECTIONS_SEEN.add(seen)
        return
    if len(_SECTIONS) >= _SECTIONS_MAX:
        _SECTIONS.clear()
    _SECTIONS[key] = (start_line, parsed, lines.copy(), entries.copy(), dict(entries),
                      lines.index(text[a - 5 : b]), lines.index(text[c - 6 : d]))


def parse_message(data: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> Request | Response:
    """Frame and parse one SIP message (a whole UDP datagram)."""
    global _sections_unprobed
    if len(data) > limits.max_message_bytes:
        raise SipParseError(
            f"message too large: {len(data)} bytes (limit {limits.max_message_bytes})"
        )
    data = bytes(data)
    # The usual message: the start line first, the first CRLF CRLF ends the header section,
    # the section is UTF-8 and every line end in it is a CRLF (no line holds a bare CR or
    # LF). Then no bare-LF end can come first, and _general_head would frame it the same way.
    # Its header lines are indexed by _kept_section or _usual_section (each line's index
    # entry (lookup key, (value,)); the index is what ``Headers._lookup`` would build,
    # Content-Length apart); anything else takes the general path.
    head, blank, rest = data.partition(b"\r\n\r\n")
    usual: _Usual | None = None
    cut: tuple[str, int, int, int, int] | None = None
    section: _Section | None = None
    typed: dict[str, object] = {}  # the typed values parsed with the section
    if blank and head and head[0] not in _CR_LF:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            pass  # framed and reported by _general_head
        else:
            if _SECTIONS:
                cut = _section_cut(text)
                if cut is not None:
                    section = _SECTIONS.get(cut[0])
                    if section is not None:
                        usual = _kept_section(text, cut, section, limits, typed)
            elif _sections_unprobed >= _SECTIONS_PROBE - 1:
                _sections_unprobed = 0
                cut = _section_cut(text)
            else:
                _sections_unprobed += 1
            if usual is None:
                usual = _usual_section(text, limits, typed)
    non_utf8: SipParseError | None = None
    index: dict[str, Sequence[str]] | None
    if usual is not None:
        start_line, good, lines, entries, index = usual
    else:
        typed.clear()  # (what the usual path parsed is not this framing's)
        text, lines, rest, non_utf8 = _general_head(data)
        start_line = lines[0]
        del lines[0]
        good = None
    if len(start_line) > limits.max_start_line:
        raise SipParseError(f"start line too long: limit {limits.max_start_line}")
    parsed = good or _start_line(start_line)
    method, uri_or_reason, status, deferred = parsed
    # (A start line problem takes precedence: a 505 says more than any 400.)

    if usual is not None:
        if index is None:
            index = dict(entries)
        repeated = len(index) != len(entries)  # some name twice: index every value below
    else:
        lines = _unfold(lines, limits)
        max_line = limits.max_header_line  # an unfolded field may exceed it
        entries = []
        for line in lines:  # the limit first, then the split, line by line
            if len(line) > max_line:
                raise SipParseError(f"header line too long: limit {max_line}")
            entries.append(_FIELDS.get(line) or _split_field(line))
        repeated = True
    if repeated:
        typed.clear()
        lists: dict[str, list[str]] = {}
        for key, (value,) in entries:
            values = lists.get(key)
            if values is None:
                lists[key] = [value]
            else:
                values.append(value)
        index = dict(lists)
    assert index is not None
    lengths: Sequence[str] = index.pop("content-length", ())
    headers = ParsedHeaders(lines, entries, index, typed)

    message: Request | Response
    if method:
        message = Request(method, uri_or_reason, headers, rest)
    else:
        message = Response(status, uri_or_reason, headers, rest)
    if deferred is None and (non_utf8 is not None or repeated):
        deferred = non_utf8 or _duplicate_problem(index, lengths)
    if deferred is not None:
        deferred.message = message
        raise deferred
    if lengths:
        written = lengths[0]
        if len(lengths) == 1 and written.isdigit() and written.isascii() \
                and len(written) <= MAX_NUMBER_DIGITS:
            length = int(written)  # the usual one value (what _parse_content_length gives)
        else:
            try:
                length = _parse_content_length(lengths)
            except SipParseError as exc:
                exc.message = message
                raise
        if length > len(rest):
            raise SipParseError(
                f"bad Content-Length: {length} exceeds the {len(rest)} body bytes received",
                message,
            )
        message.body = rest[:length]
    if cut is not None and section is None and usual is not None and not repeated:
        _keep_section(text, cut, start_line, parsed, lines, entries)
    return message


# ---------------------------------------------------------------- helpers for a UAS


REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service", 400: "Bad Request", 401: "Unauthorized",
    402: "Payment Required", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 407: "Proxy Authentication Required", 408: "Request Timeout",
    410: "Gone", 412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    493: "Undecipherable", 500: "Server Internal Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}  # fmt: skip
_CLASS_REASONS = {1: "Provisional", 2: "Success", 3: "Redirection", 4: "Client Error",
                  5: "Server Error", 6: "Global Failure"}  # fmt: skip



def reason_phrase(status: int) -> str:
    """The reason phrase written for ``status``: its RFC name, else its class's name."""
    return REASON_PHRASES.get(status) or _CLASS_REASONS[status // 100]

# Headers a response copies from its request (§8.2.6.2), with their lookup keys.
_RESPONSE_COPIED = tuple(
    (name, name.lower()) for name in ("Via", "From", "To", "Call-ID", "CSeq")
)
_RESPONSE_COPIED_KEYS = tuple(key for _, key in _RESPONSE_COPIED)


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    top_via: str | None = None,
) -> Response:
    """Build a response per RFC 3261 §8.2.6: Via values (in order), From, To, Call-ID and
    CSeq are copied as written; ``to_tag`` is added to To only when To has no tag yet.
    ``top_via``, when given, replaces the first Via value (a UAS adding ``received``).
    Raises SipParseError if the request's To cannot be parsed (only read when to_tag)."""
    reason = _response_reason(status, reason)
    if top_via is not None and ("\r" in top_via or "\n" in top_via):
        raise ValueError("top Via value contains CR or LF")
    out = Headers()
    append = out._append_trusted
    index = request.headers._lookup()
    for name, key in _RESPONSE_COPIED:
        values = index.get(key)
        if values is None:
            continue
        if top_via is None and (to_tag is None or key != "to"):
            for value in values:  # (every field of an answer to a NOTIFY: copied as is)
                append(name, value)
            continue
        for value in values:
            if top_via is not None:
                # Only the first Via value changes; others on the same line stay (name is
                # "Via" here: it is the first header copied).
                rest = split_list(value, "Via")[1:]
                value, top_via = ", ".join([top_via, *rest]), None
            elif name == "To" and to_tag is not None and request.to.tag is None:
                value = f"{value};tag={to_tag}"
            append(name, value)
    for name, value in headers:
        out.add(name, value)
    return Response(status, reason, out)


def _response_reason(status: int, reason: str | None) -> str:
    """The reason phrase of a response built with ``status`` and ``reason`` (None: the
    usual one); ValueError for a status out of range."""
    if not 100 <= status <= 699:
        raise ValueError(f"status code out of range: {status}")
    return reason_phrase(status) if reason is None else reason


def response_bytes(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    headers: Sequence[tuple[str, str]] = (),
    top_via: str | None = None,
) -> bytes:
    """``make_response(request, status, reason, headers=headers, top_via=top_via).to_bytes()``
    (the same bytes and errors) for a UAS that only sends its response. A response that
    only copies the request's fields (every answer to a NOTIFY) is written from them
    without building the Response and its Headers."""
    if top_via is not None or headers:
        return make_response(request, status, reason, headers=headers,
                             top_via=top_via).to_bytes()
    reason = _response_reason(status, reason)
    request_headers = request.headers
    index = request_headers._index or request_headers._lookup()
    try:
        # The usual request: one value of each copied field, written in one step.
        (via,), (from_,), (to,), (call_id,), (cseq,) = map(  # type: ignore[misc]
            index.get, _RESPONSE_COPIED_KEYS)
    except (TypeError, ValueError):  # (a field absent: None; or repeated)
        return make_response(request, status, reason).to_bytes()
    return (f"SIP/2.0 {status} {reason}\r\nVia: {via}\r\nFrom: {from_}\r\nTo: {to}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n").encode()


def check_mandatory(message: Request | Response) -> None:
    """Raise SipParseError if a mandatory header (§8.1.1: To, From, Call-ID, CSeq, Via, and
    Max-Forwards in requests) is missing or unparsable, or the CSeq method differs from the
    request method. ``err.message`` is the message."""
    is_request = isinstance(message, Request)
    headers = message.headers
    index = headers._index or headers._lookup()
    if not index.keys() >= (_REQUEST_MANDATORY if is_request else _RESPONSE_MANDATORY):
        for name, key in _MANDATORY_KEYS if is_request else _MANDATORY_KEYS[:-1]:
            if key not in index:
                raise SipParseError(f"missing header: {name}", message)
    # What the accessors to, from_ and call_id check, in their order and with their errors
    # (inline: one lookup of each value, no accessor call), and what they keep.
    cache = headers._cache
    try:
        to = parse_to(index["to"][0])
        parse_from(index["from"][0])
        call_id = index["call-id"][0]
        if not call_id or not call_id.isprintable() or " " in call_id:
            parse_call_id(call_id)  # (raises)
    except SipParseError as exc:
        raise SipParseError(str(exc), message) from None
    cache["to"] = to
    cache["call-id"] = call_id
    # (The CSeq and the Via list were parsed with the section, usually.)
    cseq: CSeq = cache.get("cseq") or message.cseq  # type: ignore[assignment]
    if not cache.get("vias") and message.top_via is None:
        raise SipParseError("missing header: Via", message)
    if is_request:
        assert isinstance(message, Request)
        if index["max-forwards"][0] not in MAX_FORWARDS_VALUES:
            message.max_forwards  # noqa: B018 - the accessor parses and validates it
        if cseq.method != message.method:
            raise SipParseError(
                f"bad CSeq: method {cseq.method!r} differs from request method {message.method!r}",
                message,
            )
