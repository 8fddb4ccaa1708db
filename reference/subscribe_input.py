"""What a QSA `subscribe` accepts as record and subscriber (docs/limits.md).

Rules of this file:
* Both strings come from an internal subscriber that may be any local user (the control
  protocol), so they are checked completely *before* the agent registers anything: a refused
  subscribe leaves no subscription and does not count against `max_subscriptions`.
* The record becomes the Request-URI and the To URI, the subscriber the From URI. Each must
  be a `sip:`, `sips:` or `pres:` URI (RFC 3261 §19.1, RFC 3859), optionally in `<...>`,
  without display name, without URI headers (`?Route=...`: RFC 3261 Table 1 / §19.1.5 forbid
  them in a Request-URI, and in From/To they would be copied into every request), and at most
  `MAX_URI_BYTES` long.
* `MAX_URI_BYTES` keeps every SUBSCRIBE far below the UDP maximum: the initial SUBSCRIBE
  carries the record twice (Request-URI, To) and the subscriber once (From) beside about
  400 bytes of other headers (384 measured with one Route, in tests/reference/
  test_control.py), so URIs of the maximum make a SUBSCRIBE of about 6.5 KB, a tenth of the
  UDP maximum (65,507); the configured route set and extra headers come on top.
"""

from __future__ import annotations

from reference.sip.errors import SipParseError
from reference.sip.grammar import split_host_port
from reference.sip.uri import is_plain_sip_uri, parse_uri

MAX_URI_BYTES = 2048
SCHEMES = ("sip", "sips", "pres")
# RFC 3859 §4: pres:[to], to = mailbox; the local part as in an RFC 3261 user, no '?' (that
# would start URI headers) and no ';'.
_PRES_USER_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()%&=+$,")


class BadSubscribeInput(ValueError):
    """A record or subscriber a subscribe refuses (nothing was registered)."""


def check_subscribe_uris(record: str, subscriber: str, *, routable_pres: bool) -> str:
    """Check both strings; return the record without its `<>`. `routable_pres`: whether a
    `pres:` record can be sent at all (only through a configured route or outbound proxy:
    a pres URI names no host to send to)."""
    record_uri = _bare_uri(record, "record")
    scheme = _check_uri(record_uri, "record")
    if scheme == "pres" and not routable_pres:
        raise BadSubscribeInput(
            "bad record URI: a pres: record needs presence_route or outbound_proxy")
    _check_uri(_bare_uri(subscriber, "subscriber"), "subscriber")
    return record_uri


def _bare_uri(text: str, what: str) -> str:
    if len(text.encode("utf-8", "surrogatepass")) > MAX_URI_BYTES:
        raise BadSubscribeInput(f"bad {what} URI: longer than {MAX_URI_BYTES} bytes")
    # (An ASCII string is printable exactly when it has no control character: the scan
    # below, a generator step per character, is left for the other strings.)
    bad = None if text.isascii() and text.isprintable() else next(
        (c for c in text if c < " " or c == "\x7f"), None)
    if bad is not None:
        raise BadSubscribeInput(f"bad {what} URI: control character {bad!r}")
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    return text


def _check_uri(text: str, what: str) -> str:
    scheme = text.partition(":")[0].lower()
    if scheme not in SCHEMES:
        raise BadSubscribeInput(f"bad {what} URI {text[:80]!r}: not a sip:, sips: or pres: URI")
    if text.startswith("sip:") and is_plain_sip_uri(text):
        return scheme  # the usual sip:user@host: valid and without URI headers, unparsed
    try:
        if scheme == "pres":
            _check_pres(text)
        elif parse_uri(text).headers:
            raise BadSubscribeInput(f"bad {what} URI {text[:80]!r}: URI headers are not allowed")
    except SipParseError as exc:
        raise BadSubscribeInput(f"bad {what} URI {text[:80]!r}: {exc}") from None
    return scheme


def _check_pres(text: str) -> None:
    user, at, host = text[len("pres:"):].partition("@")
    if "?" in host:
        raise SipParseError("URI headers are not allowed")
    if not at or not user or not set(user) <= _PRES_USER_CHARS:
        raise SipParseError("a pres: URI is pres:user@host")
    # A port is not RFC 3859 syntax (the domain of a mailbox), but the rfc6665 profile
    # resolves pres:user@host:port to sip:user@host:port, which a lab notifier on another
    # port needs (docs/behaviour.md, issue 18).
    split_host_port(host, "pres URI")
