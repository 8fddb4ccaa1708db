"""RFC 3261 §25.1 grammar shared by URIs and header values.

Rules of this file: character classes, quoted strings, generic parameters, host/port and
delta-seconds, each a function of text only. It knows no header and no URI scheme; it
imports only the error type and the numeric limits, so every other SIP module may import it.
Every failure is a ``SipParseError`` whose text starts with ``bad <what>:``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from reference.sip.errors import SipParseError
from reference.sip.limits import MAX_NUMBER_DIGITS

ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
HEX = frozenset("0123456789abcdefABCDEF")
UNRESERVED = ALNUM | frozenset("-_.!~*'()")
_HOST_CHARS = ALNUM | frozenset("-._")  # "_" is not in the grammar but common in the wild
_IPV6_CHARS = HEX | frozenset(":.")
TOKEN_CHARS = ALNUM | frozenset("-.!%*_+`'~")


def check_escapes(text: str, what: str) -> None:
    """Every '%' must start a two-hex-digit escape."""
    pos = text.find("%")
    while pos >= 0:
        pair = text[pos + 1 : pos + 3]
        if len(pair) != 2 or not set(pair) <= HEX:
            raise SipParseError(f"bad {what}: invalid %-escape in {text!r}")
        pos = text.find("%", pos + 3)


def check_chars(text: str, allowed: frozenset[str], what: str) -> None:
    if not set(text) <= allowed:
        bad = sorted(set(text) - allowed)[0]
        raise SipParseError(f"bad {what}: unexpected character {bad!r} in {text!r}")
    if "%" in text:
        check_escapes(text, what)


def parse_port(text: str, what: str) -> int:
    if not text or len(text) > 5 or not text.isascii() or not text.isdigit():
        raise SipParseError(f"bad {what}: port {text!r}")
    port = int(text)
    if port > 65535:
        raise SipParseError(f"bad {what}: port {text!r}")
    return port


def parse_host(text: str, what: str) -> str:
    """Validate a host (hostname, IPv4 address or bracketed IPv6 reference)."""
    if not text:
        raise SipParseError(f"bad {what}: empty host")
    if text[0] == "[":
        if text[-1] != "]" or len(text) < 4 or not set(text[1:-1]) <= _IPV6_CHARS:
            raise SipParseError(f"bad {what}: IPv6 reference {text!r}")
        return text
    if not set(text) <= _HOST_CHARS:
        raise SipParseError(f"bad {what}: host {text!r}")
    return text


def split_host_port(text: str, what: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` where host may be an IPv6 reference ``[...]``."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise SipParseError(f"bad {what}: unterminated IPv6 reference {text!r}")
        host, rest = text[: close + 1], text[close + 1 :]
        if rest and rest[0] != ":":
            raise SipParseError(f"bad {what}: junk after IPv6 reference {text!r}")
        port_text: str | None = rest[1:] if rest else None
    else:
        host, sep, after = text.partition(":")
        port_text = after if sep else None
    return parse_host(host, what), (parse_port(port_text, what) if port_text is not None else None)


def end_of_quoted(text: str, start: int, what: str) -> int:
    """Index just past the quoted-string that starts at ``text[start] == '"'``."""
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i + 1
        i += 1
    raise SipParseError(f"bad {what}: unterminated quoted string")


def unquote(text: str) -> str:
    """Remove the quotes and quoted-pair escapes of a quoted-string (others unchanged)."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    inner = text[1:-1]
    if "\\" not in inner:
        return inner
    out: list[str] = []
    i = 0
    while i < len(inner):
        c = inner[i]
        if c == "\\" and i + 1 < len(inner):
            out.append(inner[i + 1])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def quote(text: str) -> str:
    """Write ``text`` as a quoted-string (inverse of ``unquote``)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def split_outside(text: str, sep: str, what: str) -> list[str]:
    """Split on ``sep`` except inside quoted strings and ``<...>``."""
    if '"' not in text and ("<" not in text or sep not in text):
        return text.split(sep)  # nothing to skip, or nothing to split at
    parts: list[str] = []
    start = 0
    i = 0
    n = len(text)
    in_angle = False
    while i < n:
        c = text[i]
        if c == '"' and not in_angle:
            i = end_of_quoted(text, i, what)
            continue
        if c == "<":
            in_angle = True
        elif c == ">":
            in_angle = False
        elif c == sep and not in_angle:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


_PARAM_VALUE_FORBIDDEN = frozenset(' \t,;<>"')
# The characters of the common parameter list (``;tag=1a2b;rport``): token characters, ';'
# and '='. ``not text.strip(PLAIN_PARAM_STRING)`` is true exactly when ``text`` has only
# those, and then it has no whitespace, quote or delimiter that the general loop handles.
PLAIN_PARAM_STRING = "".join(sorted(TOKEN_CHARS | frozenset(";=")))


def parse_plain_params(text: str) -> dict[str, str | None] | None:
    """The params of a plain list after its leading ';' (only PLAIN_PARAM_STRING
    characters), or None where the general loop of ``parse_params`` must decide (an empty
    name or value, a duplicate). Its result is the general loop's for ``";" + text``, which
    also names every error."""
    params: dict[str, str | None] = {}
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        if not name:
            return None
        name = name.lower()
        if name in params or (eq and not value):
            return None
        params[name] = value if eq else None
    return params


def parse_params(text: str, what: str) -> dict[str, str | None]:
    """Parse ``*( SEMI name [EQUAL value] )`` of a header value.

    Names are lowercased; values are kept as written (quoted strings keep their quotes, so
    writing them back is exact; use ``unquote`` to read one).
    """
    params: dict[str, str | None] = {}
    if not text:
        return params
    if text[0] == ";" and not text.strip(PLAIN_PARAM_STRING):
        plain = parse_plain_params(text[1:])
        if plain is not None:
            return plain
    text = text.strip(" \t")
    if not text:
        return params
    if text[0] != ";":
        raise SipParseError(f"bad {what}: expected ';' before {text[:40]!r}")
    for item in split_outside(text[1:], ";", what):
        name, eq, value = item.partition("=")
        name = name.strip(" \t").lower()
        if not name or not set(name) <= TOKEN_CHARS:
            raise SipParseError(f"bad {what}: parameter name {name!r}")
        if name in params:
            raise SipParseError(f"bad {what}: duplicate parameter {name!r}")
        if not eq:
            params[name] = None
            continue
        value = value.strip(" \t")
        if not value:
            raise SipParseError(f"bad {what}: empty value for parameter {name!r}")
        if value[0] == '"':
            if end_of_quoted(value, 0, what) != len(value):
                raise SipParseError(f"bad {what}: junk after quoted value of {name!r}")
        elif not _PARAM_VALUE_FORBIDDEN.isdisjoint(value):
            raise SipParseError(f"bad {what}: parameter {name}={value!r}")
        params[name] = value
    return params


# The parameters of a parsed header value: read-only, so one parsed value can be cached and
# handed to every caller (a named tuple holding them is then immutable all the way down).
Params = Mapping[str, str | None]
EMPTY_PARAMS: Params = MappingProxyType({})


def freeze_params(params: dict[str, str | None]) -> Params:
    """A read-only view of ``params`` (the caller gives up the dict)."""
    return MappingProxyType(params) if params else EMPTY_PARAMS


def value_repr(value: tuple[object, ...], fields: tuple[str, ...]) -> str:
    """``Name(field=value, ...)`` of a header value type, with read-only params shown as the
    dict they hold (the repr the value types had as dataclasses; tests and logs read it)."""
    shown = []
    for name, item in zip(fields, value, strict=True):
        plain = dict(item) if isinstance(item, MappingProxyType) else item
        shown.append(f"{name}={plain!r}")
    return f"{type(value).__name__}({', '.join(shown)})"


def format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def parse_delta_seconds(text: str, what: str) -> int:
    """delta-seconds (``1*DIGIT``, so leading zeros do not change the value:
    ``000000000000600`` is 600); values above 2**32-1 are clamped to it (RFC 3261 §20.19
    style)."""
    if not text or not text.isascii() or not text.isdigit():
        raise SipParseError(f"bad {what}: {text!r}")
    if len(text) > MAX_NUMBER_DIGITS:
        text = text.lstrip("0") or "0"
        if len(text) > MAX_NUMBER_DIGITS:
            return 2**32 - 1
    return min(int(text), 2**32 - 1)
