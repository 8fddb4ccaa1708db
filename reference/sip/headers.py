"""SIP headers: the ``Headers`` multi-map and the typed header values (RFC 3261 §20, RFC 6665
§8.2, RFC 3581) with their parsers.

Each ``parse_*`` function takes one header value (one comma element for list headers) and
returns an immutable value (a named tuple whose ``params`` are read-only) or a plain value; it
raises ``SipParseError`` whose text names the header and the value, e.g. ``bad CSeq: 'abc'``.
No regular expressions are used.

Why named tuples: a message's typed values are read on every NOTIFY, and a frozen dataclass
costs several times a tuple to build; being immutable, the values of the headers that repeat
in every message of a dialog (From, To, Contact, Event, Subscription-State, Content-Type) are
cached by their text and the same object is handed to every caller. They are built with
``tuple.__new__`` (no Python-level constructor call) and keep the dataclass repr.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Sequence
from types import MappingProxyType
from typing import NamedTuple

from reference.sip.errors import SipParseError
from reference.sip.grammar import (
    EMPTY_PARAMS,
    PLAIN_PARAM_STRING,
    TOKEN_CHARS,
    Params,
    format_params,
    freeze_params,
    parse_delta_seconds,
    parse_host,
    parse_params,
    parse_plain_params,
    split_host_port,
    split_outside,
    value_repr,
)
from reference.sip.limits import MAX_COMMENT_DEPTH, MAX_NUMBER_DIGITS
from reference.sip.uri import NameAddr, parse_name_addr_uncached

_new = tuple.__new__  # builds a named tuple without its Python-level __new__


def _bad(header: str, value: str, detail: str = "") -> SipParseError:
    shown = value if len(value) <= 200 else value[:200] + "..."
    return SipParseError(f"bad {header}: {shown!r}" + (f" ({detail})" if detail else ""))


# The token characters as one string: ``not text.strip(_TOKEN_STRING)`` is true exactly
# when every character of ``text`` is a token character (and is faster than a set).
_TOKEN_STRING = "".join(sorted(TOKEN_CHARS))


def _is_token(text: str) -> bool:
    return bool(text) and not text.strip(_TOKEN_STRING)


def _wrap(header: str, value: str, exc: SipParseError) -> SipParseError:
    """Re-label an error from a shared helper with the header name and full value."""
    return _bad(header, value, str(exc))


# ---------------------------------------------------------------- Via (RFC 3261 §20.42)


class Via(NamedTuple):
    """One Via value. ``params`` holds every parameter in order (branch, rport, ...)."""

    transport: str  # upper-cased: "UDP", "TCP", "TLS", ...
    host: str
    port: int | None = None
    params: Params = EMPTY_PARAMS
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def has_rport(self) -> bool:
        """An ``rport`` parameter is present, bare (a request asking for it, RFC 3581) or
        with the port filled in."""
        return "rport" in self.params

    @property
    def rport(self) -> int | None:
        """The port number of ``rport=N``; None when absent or bare (see ``has_rport``).
        (Not a bool for the bare form: bool is an int, and an ``int | bool`` value that a
        compiled build stores as an int would turn ``True`` into 1.)"""
        value = self.params.get("rport")
        return None if value is None else int(value)

    @property
    def ttl(self) -> int | None:
        value = self.params.get("ttl")
        return None if value is None else int(value)

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    def with_param(self, name: str, value: str | None) -> Via:
        """A copy with ``name`` set (added at the end, or replaced in place)."""
        return self._replace(params=freeze_params({**self.params, name.lower(): value}))

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"

    def __repr__(self) -> str:
        return value_repr(self, self._fields)


# The common Via written by every UA we meet: "SIP/2.0/UDP host[:port];name=value;...",
# no LWS, a plain host name or IPv4 address, plain parameters (grammar.parse_plain_params).
# ``_parse_via_simple`` reads exactly that shape and returns None for anything else, which
# then takes the general path below (the only one that reports errors), so both give the
# same Via for the same text.
_SIMPLE_VIA_PREFIX = "SIP/2.0/UDP "
_SIMPLE_HOST_STRING = "".join(sorted(set(_TOKEN_STRING) & set(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")))


def _parse_via_simple(value: str) -> Via | None:
    sent_by, semi, param_text = value[12:].partition(";")
    host, colon, port_text = sent_by.partition(":")
    if not host or host.strip(_SIMPLE_HOST_STRING):
        return None
    port: int | None = None
    if colon:
        if not port_text or len(port_text) > 5 or not port_text.isascii() \
                or not port_text.isdigit():
            return None
        port = int(port_text)
        if port > 65535:
            return None
    params: dict[str, str | None] = {}
    if semi:
        if param_text.strip(PLAIN_PARAM_STRING):
            return None
        plain = parse_plain_params(param_text)
        if plain is None:
            return None
        params = plain
    _check_via_params(value, params)
    return _new(Via, ("UDP", host, port, freeze_params(params), "SIP/2.0"))


# Every message has a new branch, but the rest of a Via value (protocol, sent-by, rport...)
# is what the same peer writes each time. So a value whose branch is plain (ASCII letters and
# digits) is looked up by its "shape": the text before ";branch=" (the key) and the text
# after the branch value (kept in the entry, with whether a ";" ends the branch, and
# compared). A hit is the Via of an earlier value that differed only in that branch, with
# this branch put in its place: the branch is a token, and a plain one changes nothing else
# of the parse. A shape is kept only when the ";branch=" found is a parameter (the Via it
# came from has this branch) and the value is one element as the header's list splits it
# (no comma, no quote, no surrounding whitespace: then neither has a value of the same shape,
# and ``known_via`` may read a whole header value). At most _VIA_SHAPES_MAX shapes of at most
# one header line each, one per key (the last seen); emptied when full, then refilled by the
# shapes that recur.
_ViaShape = tuple[str, str, str, str, int | None, dict[str, str | None], str]
_VIA_SHAPES: dict[str, _ViaShape] = {}
_VIA_SHAPES_MAX = 1024


def known_via(value: str) -> Via | None:
    """The Via that ``parse_via(value)`` gives, rebuilt from a known shape with this value's
    branch; None when the shape is not known (then parse it). A Via header value of a known
    shape is one element: ``[known_via(value)]`` is its Via list."""
    prefix, _, tail = value.partition(";branch=")
    known = _VIA_SHAPES.get(prefix)  # (no ";branch=": the tail and so the branch is empty)
    if known is None:
        return None
    shape_semi, shape_after, transport, host, port, shape_params, protocol = known
    branch, semi, after = tail.partition(";")
    if after != shape_after or semi != shape_semi or not branch.isalnum() \
            or not branch.isascii():
        return None
    params = shape_params.copy()
    params["branch"] = branch  # (in the place the branch had)
    return _new(Via, (transport, host, port, MappingProxyType(params), protocol))


def parse_via(value: str) -> Via:
    """Parse one Via value: ``SIP / 2.0 / UDP host[:port] *(;param)``."""
    via = known_via(value)
    if via is not None:
        return via
    via = _parse_via(value)
    at = value.find(";branch=")
    if at > 0:
        start = at + 8
        end = value.find(";", start)
        if end < 0:
            end = len(value)
        branch = value[start:end]
        if (branch.isalnum() and branch.isascii() and via.params.get("branch") == branch
                and "," not in value and '"' not in value and value == value.strip(" \t")):
            if len(_VIA_SHAPES) >= _VIA_SHAPES_MAX:
                _VIA_SHAPES.clear()
            _VIA_SHAPES[value[:at]] = (value[end : end + 1], value[end + 1 :], via.transport,
                                       via.host, via.port, dict(via.params), via.protocol)
    return via


def _parse_via(value: str) -> Via:
    if value.startswith(_SIMPLE_VIA_PREFIX):
        simple = _parse_via_simple(value)
        if simple is not None:
            return simple
    parts = value.split("/", 2)
    if len(parts) != 3:
        raise _bad("Via", value, "expected SIP/2.0/transport")
    name, version = parts[0].strip(" \t"), parts[1].strip(" \t")
    rest = parts[2].lstrip(" \t")
    if not _is_token(name) or not _is_token(version):
        raise _bad("Via", value, "bad protocol")
    transport, _, after = rest.partition(" ")
    if "\t" in transport:
        transport, _, tail = transport.partition("\t")
        after = tail + " " + after
    if not _is_token(transport):
        raise _bad("Via", value, "bad transport")
    sent_by, semi, param_text = after.partition(";")
    words = sent_by.split()
    # LWS is allowed around the ':' before the port, nowhere else in sent-by.
    for left, right in itertools.pairwise(words):
        if not left.endswith(":") and not right.startswith(":"):
            raise _bad("Via", value, "whitespace in sent-by")
    sent_by = "".join(words)
    if not sent_by:
        raise _bad("Via", value, "missing sent-by")
    try:
        host, port = split_host_port(sent_by, "Via")
        params = parse_params(semi + param_text, "Via")
    except SipParseError as exc:
        raise _wrap("Via", value, exc) from None
    _check_via_params(value, params)
    return _new(Via, (transport.upper(), host, port, freeze_params(params), f"{name}/{version}"))


def _check_via_params(value: str, params: dict[str, str | None]) -> None:
    rport = params.get("rport")
    if rport is not None and (len(rport) > 5 or not rport.isascii() or not rport.isdigit()):
        raise _bad("Via", value, "bad rport")
    if rport is not None and int(rport) > 65535:
        raise _bad("Via", value, "bad rport")
    ttl = params.get("ttl")
    if "ttl" in params and (
        ttl is None or len(ttl) > 3 or not ttl.isascii() or not ttl.isdigit() or int(ttl) > 255
    ):
        raise _bad("Via", value, "bad ttl")
    for name in ("received", "maddr"):
        if name in params:
            host = params[name]
            if host is None:
                raise _bad("Via", value, f"empty {name}")
            try:
                parse_host(host, "Via")
            except SipParseError:
                raise _bad("Via", value, f"bad {name}") from None
    if "branch" in params and not _is_token(params["branch"] or ""):
        raise _bad("Via", value, "bad branch")


# ---------------------------------------------------------------- CSeq, Call-ID, numbers


class CSeq(NamedTuple):
    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"

    def __repr__(self) -> str:
        return value_repr(self, self._fields)


# The methods of RFC 3261 and its extensions (tokens): a UA answers the others 501, and the
# usual CSeq ("1 NOTIFY") names one of them.
KNOWN_METHODS = frozenset({
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY",
    "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
})
_METHODS = {method: method for method in KNOWN_METHODS}  # (one string object per method)


# The usual CSeq values seen ("1 NOTIFY", "2 NOTIFY"...: every dialog counts from its first
# number) and their CSeq: a lookup instead of the parse. At most _CSEQS_MAX values, each at
# most MAX_NUMBER_DIGITS characters and a method name; emptied when full.
_CSEQS: dict[str, CSeq] = {}
_CSEQS_MAX = 1024


def usual_cseq(value: str) -> CSeq | None:
    """What ``parse_cseq`` gives for the usual "1 NOTIFY" (what split() gives): a known
    method and fewer digits than 2**32 - 1 has; None for any other value."""
    cseq = _CSEQS.get(value)
    if cseq is not None:
        return cseq
    number, _, method = value.partition(" ")
    known = _METHODS.get(method)
    if known is not None and len(number) < MAX_NUMBER_DIGITS and number.isdigit() \
            and number.isascii():
        cseq = _new(CSeq, (int(number), known))
        if len(_CSEQS) >= _CSEQS_MAX:
            _CSEQS.clear()
        _CSEQS[value] = cseq
        return cseq
    return None


def parse_cseq(value: str) -> CSeq:
    cseq = usual_cseq(value)
    if cseq is not None:
        return cseq
    number, _, method = value.partition(" ")
    if method.isalpha() and method.isascii() and number.isdigit() and number.isascii() \
            and len(number) <= MAX_NUMBER_DIGITS:
        # Another letters-only method is a token too.
        sequence = int(number)
        if sequence <= 2**32 - 1:
            return _new(CSeq, (sequence, method))
    parts = value.split()
    if len(parts) != 2:
        raise _bad("CSeq", value)
    number, method = parts
    if not number.isascii() or not number.isdigit() or len(number) > MAX_NUMBER_DIGITS:
        raise _bad("CSeq", value)
    sequence = int(number)
    if sequence > 2**32 - 1 or not _is_token(method):
        raise _bad("CSeq", value)
    return _new(CSeq, (sequence, method))


def parse_call_id(value: str) -> str:
    """Call-ID: ``word ["@" word]``; we require a non-empty printable value without LWS."""
    if not value or not value.isprintable() or " " in value:
        raise _bad("Call-ID", value)
    return value


# The usual spellings of Max-Forwards values ("70"): a lookup instead of the checks below.
MAX_FORWARDS_VALUES = {str(number): number for number in range(256)}


def parse_max_forwards(value: str) -> int:
    number = MAX_FORWARDS_VALUES.get(value)
    if number is not None:
        return number
    if not value.isascii() or not value.isdigit() or len(value) > 3 or int(value) > 255:
        raise _bad("Max-Forwards", value)
    return int(value)


# The values of delta-seconds seen ("3600", "600"...): a lookup instead of the checks. At
# most _EXPIRES_MAX values of at most MAX_NUMBER_DIGITS characters, only valid ones (the
# header name only shows in an error); emptied when full.
EXPIRES_VALUES: dict[str, int] = {}
_EXPIRES_MAX = 1024


def parse_expires(value: str, header: str = "Expires") -> int:
    """delta-seconds (Expires, Min-Expires); huge values clamp to 2**32-1."""
    number = EXPIRES_VALUES.get(value)
    if number is not None:
        return number
    try:
        number = parse_delta_seconds(value, header)
    except SipParseError:
        raise _bad(header, value) from None
    if len(value) <= MAX_NUMBER_DIGITS:
        if len(EXPIRES_VALUES) >= _EXPIRES_MAX:
            EXPIRES_VALUES.clear()
        EXPIRES_VALUES[value] = number
    return number


def _skip_comment(text: str, header: str, value: str) -> str:
    """Drop a leading ``( ... )`` comment (may nest, may hold quoted-pairs)."""
    depth = 0
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "(":
            depth += 1
            if depth > MAX_COMMENT_DEPTH:
                raise _bad(header, value, "comment nested too deeply")
        elif c == ")":
            depth -= 1
            if depth == 0:
                return text[i + 1 :]
        i += 1
    raise _bad(header, value, "unterminated comment")


def parse_retry_after(value: str) -> int:
    """``delta-seconds [comment] *(;param)``: only the delta-seconds are returned."""
    text = value.strip(" \t")
    end = 0
    while end < len(text) and "0" <= text[end] <= "9":
        end += 1
    seconds = parse_expires(text[:end], "Retry-After") if end else None
    if seconds is None:
        raise _bad("Retry-After", value)
    rest = text[end:].lstrip(" \t")
    if rest.startswith("("):
        rest = _skip_comment(rest, "Retry-After", value)
    try:
        parse_params(rest, "Retry-After")
    except SipParseError as exc:
        raise _wrap("Retry-After", value, exc) from None
    return seconds


# ---------------------------------------------------------------- Contact, Route


class ContactValue(NamedTuple):
    """One Contact value: a name-addr, or the wildcard ``*`` (``address is None``)."""

    address: NameAddr | None

    @property
    def is_star(self) -> bool:
        return self.address is None

    @property
    def uri(self) -> str | None:
        return None if self.address is None else self.address.uri

    @property
    def params(self) -> Params:
        return EMPTY_PARAMS if self.address is None else self.address.params

    @property
    def q(self) -> float | None:
        value = self.params.get("q")
        return None if value is None else _parse_qvalue(value, "Contact")

    @property
    def expires(self) -> int | None:
        value = self.params.get("expires")
        return None if value is None else parse_expires(value, "Contact")

    def __str__(self) -> str:
        return "*" if self.address is None else str(self.address)

    def __repr__(self) -> str:
        return value_repr(self, self._fields)


def _parse_qvalue(text: str, header: str) -> float:
    """qvalue = "0" [ "." 0*3DIGIT ] / "1" [ "." 0*3("0") ]."""
    whole, dot, frac = text.partition(".")
    if (
        whole not in ("0", "1")
        or len(frac) > 3
        or (dot and frac and not (frac.isascii() and frac.isdigit()))
        or (whole == "1" and frac.strip("0"))
    ):
        raise _bad(header, text, "bad q")
    return float(text)


@functools.lru_cache(maxsize=4096)
def parse_contact(value: str) -> ContactValue:
    """One Contact value; cached (at most 4,096 values: a dialog's Contact repeats)."""
    if value.strip(" \t") == "*":
        return _new(ContactValue, (None,))
    try:
        address = parse_name_addr_uncached(value, "Contact")
    except SipParseError as exc:
        raise _wrap("Contact", value, exc) from None
    # Validate q and expires now so that later property access cannot fail.
    params = address.params
    if "q" in params:
        _parse_qvalue(params["q"] or "", "Contact")
    if "expires" in params:
        parse_expires(params["expires"] or "", "Contact")
    return _new(ContactValue, (address,))


def parse_named(value: str, header: str) -> NameAddr:
    """From, To, Route, Record-Route values (``parse_from`` and ``parse_to`` are cached)."""
    try:
        return parse_name_addr_uncached(value, header)
    except SipParseError as exc:
        raise _wrap(header, value, exc) from None


@functools.lru_cache(maxsize=8192)
def _from_or_to(value: str) -> NameAddr | None:
    """The name-addr of a From or To value, None when it does not parse; cached (at most
    8,192 values: a dialog's From and To repeat in each of its messages, and one cache
    serves both because a value comes back under the other name: a NOTIFY's From is the
    To of the 200 that answered its SUBSCRIBE). The header's name only names the error."""
    try:
        return parse_name_addr_uncached(value, "From")
    except SipParseError:
        return None


def parse_from(value: str) -> NameAddr:
    """A From value (cached: see ``_from_or_to``)."""
    named = _from_or_to(value)
    return parse_named(value, "From") if named is None else named  # (None: raises)


def parse_to(value: str) -> NameAddr:
    """A To value (cached: see ``_from_or_to``)."""
    named = _from_or_to(value)
    return parse_named(value, "To") if named is None else named  # (None: raises)


# ---------------------------------------------------------------- Event, Subscription-State


class EventHeader(NamedTuple):
    """``Event: package[.template] *(;param)`` (RFC 6665 §8.2.1)."""

    package: str  # as written, e.g. "presence" or "presence.winfo"
    params: Params = EMPTY_PARAMS

    @property
    def id(self) -> str | None:
        return self.params.get("id")

    def __str__(self) -> str:
        return self.package + format_params(self.params)

    def __repr__(self) -> str:
        return value_repr(self, self._fields)


# The parsers below are cached by value text (values repeat in every message of a dialog,
# and in every dialog); the values are immutable, so every caller may share one.


@functools.lru_cache(maxsize=1024)
def parse_event(value: str) -> EventHeader:
    package, semi, param_text = value.partition(";")
    package = package.strip(" \t")
    if not _is_token(package) or package.startswith(".") or package.endswith("."):
        raise _bad("Event", value)
    try:
        params = parse_params(semi + param_text, "Event")
    except SipParseError as exc:
        raise _wrap("Event", value, exc) from None
    if "id" in params and not params["id"]:
        raise _bad("Event", value, "empty id")
    return _new(EventHeader, (package, freeze_params(params)))


class SubscriptionState(NamedTuple):
    """``Subscription-State`` (RFC 6665 §8.2.3). ``value`` is the state token as received;
    ``state`` is it lowercased. ``params`` keeps only the parameters not given a field."""

    value: str
    reason: str | None = None
    expires: int | None = None
    retry_after: int | None = None
    params: Params = EMPTY_PARAMS

    @property
    def state(self) -> str:
        return self.value.lower()

    def __str__(self) -> str:
        out = [self.value]
        if self.reason is not None:
            out.append(f";reason={self.reason}")
        if self.expires is not None:
            out.append(f";expires={self.expires}")
        if self.retry_after is not None:
            out.append(f";retry-after={self.retry_after}")
        out.append(format_params(self.params))
        return "".join(out)

    def __repr__(self) -> str:
        return value_repr(self, self._fields)


@functools.lru_cache(maxsize=1024)
def parse_subscription_state(value: str) -> SubscriptionState:
    """``Subscription-State: state *(;param)``, cached by text like the other values. The
    usual value, ``state;expires=N`` (every NOTIFY of an active or pending subscription,
    RFC 6665 §4.1.3), is read without the general parse: its text changes with the time
    left, so most of them are not in the cache. The result is the general parse's (a token
    state and plain digits: no other parameter, nothing to strip)."""
    state, sep, seconds = value.partition(";expires=")
    if sep and seconds.isdigit() and seconds.isascii() and len(seconds) <= MAX_NUMBER_DIGITS \
            and state and not state.strip(_TOKEN_STRING):
        # (What parse_expires gives for these digits, without filling its cache with
        # values that do not recur.)
        return _new(SubscriptionState, (state, None, min(int(seconds), 2**32 - 1), None,
                                        EMPTY_PARAMS))
    return _parse_subscription_state(value)


def _parse_subscription_state(value: str) -> SubscriptionState:
    state, semi, param_text = value.partition(";")
    state = state.strip(" \t")
    if not _is_token(state):
        raise _bad("Subscription-State", value)
    try:
        params = parse_params(semi + param_text, "Subscription-State")
    except SipParseError as exc:
        raise _wrap("Subscription-State", value, exc) from None
    reason = params.pop("reason", None)
    if reason is not None and not _is_token(reason):
        raise _bad("Subscription-State", value, "bad reason")
    numbers: dict[str, int | None] = {}
    for name in ("expires", "retry-after"):
        if name in params:
            text = params.pop(name)
            if text is None:
                raise _bad("Subscription-State", value, f"empty {name}")
            numbers[name] = parse_expires(text, "Subscription-State")
    return _new(SubscriptionState, (
        state, reason, numbers.get("expires"), numbers.get("retry-after"), freeze_params(params)))


# ---------------------------------------------------------------- Content-Type, Accept


class ContentType(NamedTuple):
    type: str
    subtype: str
    params: Params = EMPTY_PARAMS

    @property
    def mime(self) -> str:
        return f"{self.type}/{self.subtype}".lower()

    def __str__(self) -> str:
        return f"{self.type}/{self.subtype}{format_params(self.params)}"

    def __repr__(self) -> str:
        return value_repr(self, self._fields)


def _split_media(value: str, header: str, allow_star: bool) -> tuple[str, str, str]:
    media, semi, param_text = value.partition(";")
    mtype, slash, subtype = media.partition("/")
    mtype, subtype = mtype.strip(" \t"), subtype.strip(" \t")
    if not slash or not _is_token(mtype) or not _is_token(subtype):
        raise _bad(header, value)
    if not allow_star and "*" in (mtype + subtype):
        raise _bad(header, value, "wildcard not allowed")
    return mtype, subtype, semi + param_text


@functools.lru_cache(maxsize=1024)
def parse_content_type(value: str) -> ContentType:
    mtype, subtype, param_text = _split_media(value, "Content-Type", allow_star=False)
    try:
        params = parse_params(param_text, "Content-Type")
    except SipParseError as exc:
        raise _wrap("Content-Type", value, exc) from None
    return _new(ContentType, (mtype, subtype, freeze_params(params)))


@functools.lru_cache(maxsize=1024)
def parse_media_range(value: str) -> str:
    """Validate one Accept element; return it with surrounding whitespace removed. Cached
    (at most 1,024 values: a UA sends the same Accept every time)."""
    _, _, param_text = _split_media(value, "Accept", allow_star=True)
    try:
        parse_params(param_text, "Accept")
    except SipParseError as exc:
        raise _wrap("Accept", value, exc) from None
    return value.strip(" \t")


def split_list(value: str, header: str) -> list[str]:
    """Split a comma list outside quotes and <...>; empty elements are dropped."""
    try:
        parts = split_outside(value, ",", header)
    except SipParseError as exc:
        raise _wrap(header, value, exc) from None
    return [p for p in (part.strip(" \t") for part in parts) if p]


# ---------------------------------------------------------------- the header multi-map


# Canonical spelling of well-known headers, keyed by lowercase name; compact forms
# (RFC 3261 §7.3.3, RFC 3265/6665 "o" and "u", RFC 3903 "k"/"s"...) map to the full name.
_KNOWN_NAMES = (
    "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
    "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "In-Reply-To",
    "Max-Forwards", "MIME-Version", "Min-Expires", "Organization", "Path", "Priority",
    "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "Record-Route",
    "Reply-To", "Require", "Retry-After", "Route", "Server", "Service-Route", "Subject",
    "Subscription-State", "Supported", "Timestamp", "To", "Unsupported", "User-Agent",
    "Via", "Warning", "WWW-Authenticate", "Refer-To", "Referred-By", "SIP-ETag",
    "SIP-If-Match", "P-Asserted-Identity", "P-Preferred-Identity",
)  # fmt: skip
_COMPACT_FORMS = {
    "i": "Call-ID", "f": "From", "t": "To", "v": "Via", "m": "Contact", "l": "Content-Length",
    "c": "Content-Type", "o": "Event", "e": "Content-Encoding", "k": "Supported",
    "s": "Subject", "u": "Allow-Events", "r": "Refer-To", "b": "Referred-By",
}  # fmt: skip
CANONICAL_NAMES: dict[str, str] = {name.lower(): name for name in _KNOWN_NAMES}
CANONICAL_NAMES.update(_COMPACT_FORMS)
# Lowercase spelling -> (lookup key, canonical name), for the parser's per-line lookup.
PARSER_NAMES: dict[str, tuple[str, str]] = {
    lower: (full.lower(), full) for lower, full in CANONICAL_NAMES.items()
}

# Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1): get_all splits them.
# Not listed on purpose: WWW-Authenticate, Authorization, Proxy-*, Date, Subject, Call-ID...
LIST_HEADERS = frozenset(
    name.lower()
    for name in (
        "Via", "Route", "Record-Route", "Contact", "Accept", "Accept-Encoding",
        "Accept-Language", "Allow", "Allow-Events", "Supported", "Require", "Proxy-Require",
        "Unsupported", "Content-Encoding", "Content-Language", "In-Reply-To", "Alert-Info",
        "Call-Info", "Error-Info", "Warning", "Path", "Service-Route", "P-Asserted-Identity",
    )
)  # fmt: skip


def canonical_name(name: str) -> str:
    """Full canonical spelling for known headers (compact forms expanded), else as given."""
    return CANONICAL_NAMES.get(name.lower(), name)


# Lookup key (lowercase canonical name) of each spelling seen by get()/values()/...: the
# same few names are asked for on every message, so computing the key once saves two
# str.lower() per lookup. Bounded so hostile or generated names cannot grow it forever.
_LOOKUP_KEYS: dict[str, str] = {}
_LOOKUP_KEYS_MAX = 1024


def lookup_key(name: str) -> str:
    """Lowercase canonical key of a header name (compact forms expanded)."""
    key = _LOOKUP_KEYS.get(name)
    if key is None:
        key = CANONICAL_NAMES.get(name.lower(), name).lower()
        if len(_LOOKUP_KEYS) < _LOOKUP_KEYS_MAX:
            _LOOKUP_KEYS[name] = key
    return key


# (lookup key, canonical name) of each valid header name given to ``Headers.add``: the same
# few are added to every request built. At most _ADDED_NAMES_MAX names, filled up and then
# left as they are.
_ADDED_NAMES: dict[str, tuple[str, str]] = {}
_ADDED_NAMES_MAX = 1024


# (lookup key, canonical or written name) of each header name as written before its colon
# (``Via``, ``CSeq ``...) that is a valid name: at most _SPELLINGS_MAX names of at most one
# header line each, filled up and then left as they are.
FIELD_SPELLINGS: dict[str, tuple[str, str]] = {}
_SPELLINGS_MAX = 1024


def field_spelling(written: str) -> tuple[str, str] | None:
    """(lookup key, name) of a header name as written before the colon (trailing whitespace
    allowed): the canonical name of a known header, else the name as written; None when it
    is not a token."""
    spelling = FIELD_SPELLINGS.get(written)
    if spelling is not None:
        return spelling
    name = written.rstrip(" \t")
    lower = name.lower()
    spelling = PARSER_NAMES.get(lower)
    if spelling is None:
        if not name or not set(name) <= TOKEN_CHARS:
            return None
        spelling = (lower, name)
    if len(FIELD_SPELLINGS) < _SPELLINGS_MAX:
        FIELD_SPELLINGS[written] = spelling
    return spelling


# A header line as the parser splits it, its index entry: (lookup key, (value,)), the
# 1-tuple being the index entry of a name that appears once (built with the line and cached
# with it). The name as written stays in the line until it is needed.
FieldEntry = tuple[str, tuple[str]]


class Headers:
    """Ordered, case-insensitive multi-map of header fields with canonical names."""

    __slots__ = ("_cache", "_fields", "_index", "_text")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        # (lowercase key, canonical name, value) in order, see ``_items``. `_index` (key ->
        # values) is built on the first lookup and dropped on every mutation, like the
        # typed-value cache.
        self._fields: list[tuple[str, str, str]] | None = []  # None: ParsedHeaders
        # Each lookup key's values in order: a list, or the parser's 1-tuple of a name that
        # appears once (read-only either way: every reader copies before handing out).
        self._index: dict[str, Sequence[str]] | None = None
        self._cache: dict[str, object] = {}  # typed values, see message._Accessors
        # The header lines as ``to_bytes`` writes them (Content-Length apart), joined by
        # CRLF, when the builder wrote them with the fields (``extend_known``); dropped on
        # every mutation, like the index.
        self._text: str | None = None
        for name, value in items:
            self.add(name, value)

    @property
    def _items(self) -> list[tuple[str, str, str]]:
        """Every field (lowercase key, canonical name, value) in order."""
        fields = self._fields
        if fields is None:
            fields = self._fields = self._received_fields()
        return fields

    def _received_fields(self) -> list[tuple[str, str, str]]:
        """The fields of a received message (see ``ParsedHeaders``)."""
        return []

    def _changed(self) -> None:
        self._index = None
        self._text = None
        self._cache.clear()

    def _lookup(self) -> dict[str, Sequence[str]]:
        index = self._index
        if index is None:
            index = {}
            lists: dict[str, list[str]] = {}
            for key, _, value in self._items:
                values = lists.get(key)
                if values is None:
                    lists[key] = [value]
                else:
                    values.append(value)
            self._index = index = dict(lists)
        return index

    def _append_trusted(self, name: str, value: str) -> None:
        """Parser fast path: name already canonical, value known to be a single line."""
        self._items.append((name.lower(), name, value))
        self._index = None
        self._text = None

    def extend_known(self, fields: list[tuple[str, str, str]], values: str, text: str,
                     items: Sequence[tuple[str, str]] = ()) -> None:
        """Builder fast path: add (lookup key, canonical name, value) ``fields`` whose names
        are known valid, then the (name, value) ``items`` as ``add`` adds them, with the
        errors of ``add`` in that order (nothing is added on an error in ``fields``).
        ``values`` holds the text of every value of ``fields`` (in any order: only looked at
        for a CR or LF), ``text`` their header lines as ``to_bytes`` writes them (joined by
        CRLF; the caller writes both in one step each, having the values at hand). When
        every item's name was added before and its value holds no CR or LF (what ``add``
        checks), ``fields`` gets the items' fields and the lines are kept (``_text``): a
        request is built with a few such headers, then written once."""
        if "\r" in values or "\n" in values:
            for _, name, value in fields:
                if "\r" in value or "\n" in value:
                    raise ValueError(f"header value for {name!r} contains CR or LF")
        count = len(fields)
        lines = [text]
        for name, value in items:
            spelling = _ADDED_NAMES.get(name)
            if spelling is None or "\r" in value or "\n" in value \
                    or spelling[0] == "content-length":  # (not written as a header line)
                del fields[count:]  # (add checks them, one by one)
                self._items.extend(fields)
                self._changed()
                for name, value in items:
                    self.add(name, value)
                return
            fields.append((spelling[0], spelling[1], value))
            lines.append(f"{spelling[1]}: {value}")
        self._items.extend(fields)
        self._changed()
        self._text = "\r\n".join(lines)

    def add(self, name: str, value: str) -> None:
        if "\r" in value or "\n" in value:
            raise ValueError(f"header value for {name!r} contains CR or LF")
        spelling = _ADDED_NAMES.get(name)
        if spelling is None:
            if not name or not set(name) <= TOKEN_CHARS:
                raise ValueError(f"bad header name {name!r}")
            full = canonical_name(name)
            spelling = (full.lower(), full)
            if len(_ADDED_NAMES) < _ADDED_NAMES_MAX:
                _ADDED_NAMES[name] = spelling
        fields = self._fields
        if fields is None:
            fields = self._items
        key, full = spelling
        fields.append((key, full, value))
        self._index = None  # (what _changed does, inline: a request is built by adds)
        self._text = None
        self._cache.clear()

    def set(self, name: str, value: str) -> None:
        """Replace every field called ``name`` by one (at the first one's position)."""
        key = canonical_name(name).lower()
        positions = [i for i, item in enumerate(self._items) if item[0] == key]
        self.add(name, value)
        if positions:
            new = self._items.pop()
            self._fields = [item for item in self._items if item[0] != key]
            self._fields.insert(positions[0], new)
            self._changed()

    def remove(self, name: str) -> None:
        key = canonical_name(name).lower()
        self._fields = [item for item in self._items if item[0] != key]
        self._changed()

    def get(self, name: str) -> str | None:
        index = self._index
        if index is None:
            index = self._lookup()
        key = _LOOKUP_KEYS.get(name)
        values = index.get(lookup_key(name) if key is None else key)
        return None if values is None else values[0]

    def values(self, name: str) -> list[str]:
        """Every field value of ``name`` as written (one entry per header line)."""
        values = self._lookup().get(lookup_key(name))
        return [] if values is None else list(values)

    def single(self, name: str) -> str | None:
        """The value of ``name`` when exactly one field line has it, else None."""
        index = self._index
        if index is None:
            index = self._lookup()
        key = _LOOKUP_KEYS.get(name)
        values = index.get(lookup_key(name) if key is None else key)
        return values[0] if values is not None and len(values) == 1 else None

    def get_all(self, name: str) -> list[str]:
        """Every value; comma lists are split where the header grammar is a list."""
        key = lookup_key(name)
        values = self._lookup().get(key)
        if values is None:
            return []
        if key not in LIST_HEADERS:
            return list(values)
        out: list[str] = []
        for value in values:
            if "," in value or '"' in value:
                out.extend(split_list(value, canonical_name(name)))
            else:  # one element (what split_list returns for it, without the scan)
                value = value.strip(" \t")
                if value:
                    out.append(value)
        return out

    def items(self) -> list[tuple[str, str]]:
        return [(item[1], item[2]) for item in self._items]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        index = self._index
        if index is None:
            index = self._lookup()
        key = _LOOKUP_KEYS.get(name)
        return (lookup_key(name) if key is None else key) in index

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self.items() == other.items()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


class ParsedHeaders(Headers):
    """The headers of a received message, as ``parse_message`` builds them: its header
    ``lines`` (unfolded) in order, Content-Length (framing data, not kept) included, each
    line's ``entries`` (``FieldEntry``), and ``index`` built from them without Content-Length.
    The field list (names resolved, without Content-Length) is made when first needed: a
    received message is usually only looked up. Otherwise a ``Headers`` like any other."""

    __slots__ = ("_entries", "_lines")

    def __init__(self, lines: list[str], entries: list[FieldEntry],
                 index: dict[str, Sequence[str]], cache: dict[str, object]) -> None:
        # (No call of Headers.__init__: these five are all it needs, and this runs for every
        # message received.)
        self._fields = None
        self._lines = lines
        self._entries = entries
        self._index = index
        self._cache = cache
        self._text = None

    def _received_fields(self) -> list[tuple[str, str, str]]:
        fields = []
        for line, (key, values) in zip(self._lines, self._entries, strict=True):
            if key != "content-length":
                spelling = field_spelling(line.partition(":")[0])
                assert spelling is not None  # (the line was split with it)
                fields.append((key, spelling[1], values[0]))
        return fields
