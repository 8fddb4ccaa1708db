"""SIP/SIPS URIs (RFC 3261 §19.1) and name-addr / addr-spec values (§20.10, §25.1).

Parsing is a single left-to-right pass with str.find / set checks; the one regular
expression (the usual From/To value, see ``_USUAL_NAME_ADDR``) has only possessive
repeats, so hostile input cannot make it backtrack at length. Every failure is a ``SipParseError``.

Decisions:
* ``SipUri`` fields keep the text as written (``%``-escapes are *not* decoded), so that
  ``str(parse_uri(t)) == t`` for any valid ``t`` whose parameter names are lowercase.
  Parameter names are lowercased on parse (they are case-insensitive); values are kept.
* ``equivalent`` decodes escapes before comparing, as §19.1.4 requires.
* A URI parameter or header parameter that appears twice is an error: which value wins
  would otherwise be ambiguous (e.g. two ``tag`` values).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple
from urllib.parse import unquote_to_bytes

from reference.sip.errors import SipParseError
from reference.sip.grammar import (
    ALNUM,
    EMPTY_PARAMS,
    PLAIN_PARAM_STRING,
    TOKEN_CHARS,
    UNRESERVED,
    Params,
    check_chars,
    end_of_quoted,
    format_params,
    freeze_params,
    parse_params,
    parse_plain_params,
    quote,
    split_host_port,
    unquote,
    value_repr,
)

# Characters allowed in each URI component; "%" is allowed and checked as an escape after.
_USER_CHARS = UNRESERVED | frozenset("%&=+$,;?/")
_PASSWORD_CHARS = UNRESERVED | frozenset("%&=+$,")
_PARAM_CHARS = UNRESERVED | frozenset("%[]/:&+$")
_HEADER_CHARS = UNRESERVED | frozenset("%[]/?:+$")
_SCHEME_CHARS = ALNUM | frozenset("+-.")
# Characters that may never appear inside an absolute URI held in a name-addr.
_URI_FORBIDDEN = frozenset(' \t\r\n<>"')
# URI parameters that must match when present in either URI (§19.1.4).
_STRICT_URI_PARAMS = ("user", "ttl", "method", "maddr", "transport")
DEFAULT_PORTS = {"sip": 5060, "sips": 5061}


def _unescape(text: str | None) -> bytes | None:
    return None if text is None else unquote_to_bytes(text)


def _host_key(host: str) -> str:
    """Comparison key of a host: case-insensitive, IPv6 references normalised."""
    if host.startswith("["):
        try:
            return "[" + str(ipaddress.IPv6Address(host[1:-1])) + "]"
        except ValueError:
            return host.lower()
    return host.lower()


@dataclass(frozen=True, slots=True)
class SipUri:
    """A sip: or sips: URI. Components are kept as written (escapes not decoded)."""

    scheme: str  # "sip" or "sips", lowercase
    user: str | None
    password: str | None
    host: str  # hostname, IPv4 address or "[IPv6]" reference
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)  # flag params map to None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out += (":", self.password)
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out += (":", str(self.port))
        out.append(format_params(self.params))
        if self.headers:
            out += ("?", "&".join(f"{k}={v}" for k, v in self.headers.items()))
        return "".join(out)

    def address(self) -> tuple[str, int]:
        """Where to send a request for this URI: maddr or host, and port or the default."""
        maddr = self.params.get("maddr")
        host = maddr if maddr else self.host
        if host.startswith("["):
            host = host[1:-1]
        return host, self.port if self.port is not None else DEFAULT_PORTS[self.scheme]

    def equivalent(self, other: SipUri) -> bool:
        """RFC 3261 §19.1.4 URI comparison."""
        if self.scheme != other.scheme or self.port != other.port:
            return False
        if _unescape(self.user) != _unescape(other.user):
            return False
        if _unescape(self.password) != _unescape(other.password):
            return False
        if _host_key(self.host) != _host_key(other.host):
            return False
        for name in _STRICT_URI_PARAMS:
            if (name in self.params) != (name in other.params):
                return False
        for name, value in self.params.items():
            if name in other.params and not _param_values_match(value, other.params[name]):
                return False
        mine = {k.lower(): unquote_to_bytes(v) for k, v in self.headers.items()}
        theirs = {k.lower(): unquote_to_bytes(v) for k, v in other.headers.items()}
        return mine == theirs


def _param_values_match(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    return unquote_to_bytes(a).lower() == unquote_to_bytes(b).lower()


def parse_uri(text: str) -> SipUri:
    """Parse a sip: or sips: URI; raise ``SipParseError`` naming the bad component."""
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in DEFAULT_PORTS:
        raise SipParseError(f"bad URI: not a SIP URI: {text[:80]!r}")
    # Nothing after the host may contain '@' unescaped, so the last '@' ends the userinfo
    # (the user part itself may contain ';' and '?').
    at = rest.rfind("@")
    user: str | None = None
    password: str | None = None
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user_text, pcolon, password_text = userinfo.partition(":")
        if not user_text:
            raise SipParseError(f"bad URI: empty user in {text[:80]!r}")
        check_chars(user_text, _USER_CHARS, "URI user")
        user = user_text
        if pcolon:
            check_chars(password_text, _PASSWORD_CHARS, "URI password")
            password = password_text
    rest, qmark, header_text = rest.partition("?")
    hostport, semi, param_text = rest.partition(";")
    host, port = split_host_port(hostport, "URI")
    params: dict[str, str | None] = {}
    if semi:
        for item in param_text.split(";"):
            name, eq, value = item.partition("=")
            name = name.lower()
            if not name:
                raise SipParseError(f"bad URI: empty parameter name in {text[:80]!r}")
            check_chars(name, _PARAM_CHARS, "URI parameter")
            if eq:
                check_chars(value, _PARAM_CHARS, "URI parameter")
            if name in params:
                raise SipParseError(f"bad URI: duplicate parameter {name!r}")
            params[name] = value if eq else None
    headers: dict[str, str] = {}
    if qmark:
        for item in header_text.split("&"):
            name, eq, value = item.partition("=")
            if not name or not eq:
                raise SipParseError(f"bad URI: header {item!r}")
            check_chars(name, _HEADER_CHARS, "URI header")
            check_chars(value, _HEADER_CHARS, "URI header")
            headers[name] = value
    return SipUri(scheme, user, password, host, port, params, headers)


# The common SIP URI, ``sip:user@host[:port]`` or ``sip:host[:port]`` with a plain user, a
# host name or IPv4 address and no parameters: ``is_plain_sip_uri`` recognises exactly
# that shape without building a SipUri. It only ever says yes to a URI that ``parse_uri``
# accepts (plain user characters are a subset of the user's, with no '%', ':', ';', '?';
# plain host characters are the host's); everything else takes the full parse.
_PLAIN_USER_STRING = "".join(sorted(ALNUM | frozenset("-_.!~*'()&=+$,")))
_PLAIN_HOST_STRING = "".join(sorted(ALNUM | frozenset("-._")))


def is_plain_sip_uri(text: str) -> bool:
    user, at, hostport = text[4:].rpartition("@")
    if at and (not user or user.strip(_PLAIN_USER_STRING)):
        return False
    host, colon, port = hostport.partition(":")
    if not host or host.strip(_PLAIN_HOST_STRING):
        return False
    return not colon or (
        0 < len(port) <= 5 and port.isascii() and port.isdigit() and int(port) <= 65535)


def plain_sip_address(text: str) -> tuple[str, int] | None:
    """``parse_uri(text).address()`` of a plain SIP URI (see ``is_plain_sip_uri``: no
    maddr, no IPv6 reference, the host as written), without building the SipUri; None for
    any other URI."""
    if not text.startswith("sip:") or not is_plain_sip_uri(text):
        return None
    host, colon, port = text[4:].rpartition("@")[2].partition(":")
    return host, int(port) if colon else DEFAULT_PORTS["sip"]


def check_absolute_uri(text: str, what: str) -> None:
    """Validate any absolute URI (``scheme:...``); sip/sips ones are parsed fully."""
    if text.startswith("sip:") and is_plain_sip_uri(text):
        return
    scheme, colon, rest = text.partition(":")
    if (
        not colon
        or not rest
        or not scheme
        or not scheme[0].isalpha()
        or not scheme.isascii()
        or not set(scheme) <= _SCHEME_CHARS
    ):
        raise SipParseError(f"bad {what}: not an absolute URI: {text[:80]!r}")
    if not _URI_FORBIDDEN.isdisjoint(text):
        raise SipParseError(f"bad {what}: whitespace or delimiter in URI {text[:80]!r}")
    if scheme.lower() in DEFAULT_PORTS:
        problem = _sip_uri_problem(text)
        if problem is not None:
            raise SipParseError(f"bad {what}: {problem}")


@functools.lru_cache(maxsize=4096)
def _sip_uri_problem(text: str) -> str | None:
    """Validation result of a SIP URI, cached: the same URIs recur in every dialog message.
    (Only the verdict is cached, never a SipUri, whose dicts a caller could mutate.)"""
    try:
        parse_uri(text)
    except SipParseError as exc:
        return str(exc)
    return None


class NameAddr(NamedTuple):
    """``[display-name] <uri> *(;param)`` as used by From, To, Contact, Route...

    ``uri`` is the URI text as written (any absolute URI: sip, sips, tel, pres...).
    ``display_name`` is None when absent; quotes and escapes are removed. Immutable (a named
    tuple with read-only ``params``), so one parsed value serves every caller.
    """

    display_name: str | None
    uri: str
    params: Params = EMPTY_PARAMS

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def sip_uri(self) -> SipUri:
        """The URI parsed as a SIP URI (raises SipParseError for other schemes)."""
        return parse_uri(self.uri)

    def with_param(self, name: str, value: str | None) -> NameAddr:
        return NameAddr(self.display_name, self.uri,
                        freeze_params({**self.params, name.lower(): value}))

    def __str__(self) -> str:
        display = "" if self.display_name is None else quote(self.display_name) + " "
        return f"{display}<{self.uri}>{format_params(self.params)}"

    def __repr__(self) -> str:
        return value_repr(self, self._fields)


_new = tuple.__new__  # builds a named tuple without its Python-level __new__


@functools.lru_cache(maxsize=4096)
def parse_name_addr(text: str, what: str = "name-addr") -> NameAddr:
    """Parse the name-addr form (``"Bob" <sip:b@x;p=1>;tag=9``) or the addr-spec form
    (``sip:b@x;tag=9``, where everything after the first ';' is a header parameter).

    Cached (at most 4,096 values): From, To and Contact values repeat in every message of a
    dialog, and the value is immutable, so a hit is the parse of the same text."""
    return parse_name_addr_uncached(text, what)


def _char_class(chars: str | frozenset[str]) -> str:
    return "[" + "".join(map(re.escape, sorted(chars))) + "]"


# The usual From or To value, ``<sip:user@host[:port]>`` with no display name and at most a
# ``;tag=token`` parameter, in one match (on a busy agent a dialog's From and To miss the
# caches in each message): a plain SIP URI (see ``is_plain_sip_uri``: the same user and host
# characters, neither holding '@', ':' or '>'; a port of one to five ASCII digits, checked
# against 65535 after the match) and a tag whose value is a token. What ``_parse_name_addr``
# gives for it; anything else goes there. (Possessive repeats give no characters back, so
# the match takes time linear in the value's length, whatever the value.)
_USUAL_NAME_ADDR = re.compile(
    "<(sip:(?:" + _char_class(_PLAIN_USER_STRING) + "++@)?" + _char_class(_PLAIN_HOST_STRING)
    + "++(?::([0-9]{1,5}+))?)>(?:;tag=(" + _char_class(TOKEN_CHARS) + "++))?")


def parse_name_addr_uncached(text: str, what: str) -> NameAddr:
    """``parse_name_addr`` without its cache (for callers that cache the result)."""
    usual = _USUAL_NAME_ADDR.fullmatch(text)
    if usual is not None:
        uri, port, tag = usual.groups()
        if port is None or int(port) <= 65535:
            return _new(NameAddr, (None, uri, EMPTY_PARAMS if tag is None
                                   else MappingProxyType({"tag": tag})))
    return _parse_name_addr(text, what)


def _parse_name_addr(text: str, what: str) -> NameAddr:
    """``parse_name_addr_uncached`` without its match of the usual From or To value."""
    if text.startswith("<sip:"):
        # The usual ``<sip:user@host[:port]>[;plain params]``: what the general path below
        # gives for it, in fewer steps (nothing to strip, no display name, a plain URI).
        uri, closed, rest = text[1:].partition(">")
        if closed and is_plain_sip_uri(uri):
            if not rest:
                return _new(NameAddr, (None, uri, EMPTY_PARAMS))
            if rest[0] == ";" and not rest.strip(PLAIN_PARAM_STRING):
                plain = parse_plain_params(rest[1:])
                if plain is not None:
                    return _new(NameAddr, (None, uri, MappingProxyType(plain)))
    s = text.strip(" \t")
    if not s:
        raise SipParseError(f"bad {what}: empty value")
    display: str | None = None
    if s[0] == '"':
        end = end_of_quoted(s, 0, what)
        display = unquote(s[:end])
        rest = s[end:].lstrip(" \t")
        if not rest.startswith("<"):
            raise SipParseError(f"bad {what}: expected '<' after display name in {s[:80]!r}")
    else:
        lt = s.find("<")
        if lt < 0:
            uri, semi, param_text = s.partition(";")
            check_absolute_uri(uri, what)
            return _new(NameAddr, (None, uri, _name_addr_params(semi + param_text, what)))
        if lt:
            words = s[:lt].split()
            if words:
                if '"' in s[:lt]:
                    raise SipParseError(
                        f"bad {what}: stray quote in display name {s[:80]!r}")
                display = " ".join(words)
        rest = s[lt:]
    gt = rest.find(">")
    if gt < 0:
        raise SipParseError(f"bad {what}: missing '>' in {s[:80]!r}")
    uri = rest[1:gt].strip(" \t")
    check_absolute_uri(uri, what)
    return _new(NameAddr, (display, uri, _name_addr_params(rest[gt + 1 :], what)))


def _name_addr_params(text: str, what: str) -> Params:
    return freeze_params(parse_params(text, what)) if text else EMPTY_PARAMS
