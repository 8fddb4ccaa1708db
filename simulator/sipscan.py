"""Purpose-built reading of the two kinds of message the notifier model receives.

The notifier only needs a handful of values from a SUBSCRIBE (top Via, From, To, Call-ID,
CSeq, Contact, Event, Expires) and from a response to its NOTIFY (status, the single Via,
CSeq). Building ``reference.sip`` message objects for each of them cost more than the rest
of the notifier together, so these scanners read the bytes directly.

They accept only a conservative shape: ASCII, CRLF line ends, no folding, no body, name-addr
values written ``<sip:...>;param=token``, a plain ``SIP/2.0/UDP host[:port];params`` Via.
Everything they accept, ``reference.sip.parse_message`` and its typed accessors accept too,
with the same values (``tests/simulator/test_sipscan.py`` checks this with hypothesis).
Anything else returns None and the caller takes the full parser, which is the one that
decides how to reject malformed input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Header names we read, by lowercase full or compact name (RFC 3261 §7.3.3, RFC 6665 "o").
_WANTED = {
    "via": "via", "v": "via", "from": "from", "f": "from", "to": "to", "t": "to",
    "call-id": "call-id", "i": "call-id", "cseq": "cseq", "contact": "contact",
    "m": "contact", "event": "event", "o": "event", "expires": "expires",
    "content-length": "content-length", "l": "content-length",
}  # fmt: skip
# The same by the name exactly as usually written (one dict lookup for most lines); names
# mapped to None are common ones we skip.
_AS_WRITTEN: dict[str, str | None] = {
    "Via": "via", "From": "from", "To": "to", "Call-ID": "call-id", "CSeq": "cseq",
    "Contact": "contact", "Event": "event", "Expires": "expires",
    "Content-Length": "content-length", "Max-Forwards": None, "Accept": None,
    "User-Agent": None, "Allow": None, "Supported": None, "Allow-Events": None,
}  # fmt: skip
# Other header names are skipped but must be plain tokens (the full parser checks them).
_PLAIN_NAME = re.compile(r"[A-Za-z0-9-]+\Z")
_MAX_HEAD = 8192  # well under every ParseLimits bound (line length, header count, size)

# A host name or IPv4 address: dot-separated labels that start and end alphanumeric.
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
_PORT = r"[0-9]{1,5}"
_PARAMS = r"(?:;[a-z0-9-]+(?:=[A-Za-z0-9._~+-]+)?)*"
_URI = rf"sips?:(?:[A-Za-z0-9._~+-]+@)?{_HOST}(?::{_PORT})?"
# <uri>;params (no display name); group 1 the URI, group 2 the parameters.
_NAME_ADDR = re.compile(rf"<({_URI})>({_PARAMS})\Z")
_REQUEST_URI = re.compile(rf"{_URI}\Z")
# The top Via; groups: sent-by host, port, parameters.
_VIA = re.compile(rf"SIP/2\.0/UDP ({_HOST})(?::({_PORT}))?({_PARAMS})\Z")
_EVENT = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\Z")
# The plain expressions below take a host as any run of the characters of _HOST
# (_HOST_RUN), and the host is checked against _HOST afterwards, once per distinct host
# (see _sent_by_seen and _hosts_seen): with its nested repeats, _HOST cost them a third
# to a half of their time. A run is followed by a character it cannot hold, so a run that
# is a _HOST is the span _HOST would have matched.
_HOST_RUN = r"[A-Za-z0-9.-]+"
_HOST_ONLY = re.compile(_HOST + r"\Z")
# A response laid out exactly as reference.sip writes one to a request with one Via: one
# regular-expression match instead of the general line loop (most of what the notifier
# receives). Groups: status, Via host, port, branch, CSeq number, CSeq method.
_TEXT = rb"[\x20-\x7e]*"
_PLAIN_RESPONSE = re.compile(
    rb"SIP/2\.0 ([1-6][0-9][0-9]) " + _TEXT + rb"\r\n"
    rb"Via: SIP/2\.0/UDP (" + _HOST_RUN.encode() + rb")(?::([0-9]{1,5}))?"
    rb";branch=([A-Za-z0-9._~+-]+)\r\n"
    rb"From: " + _TEXT + rb"\r\nTo: " + _TEXT + rb"\r\nCall-ID: " + _TEXT + rb"\r\n"
    rb"CSeq: ([0-9]{1,10}) ([A-Za-z]+)\r\nContent-Length: 0\r\n\r\n\Z"
)
_MAX_CSEQ = 2**32 - 1  # ten digits (nine never exceed it)
# Normalized sent-by by the (host, port) bytes of a plain response's Via, whose host was
# checked: the notifier's own, nearly always (a few calls less per response).
SENT_BY_MEMORY = 64
_sent_by_seen: dict[tuple[bytes, bytes | None], str] = {}
# Host names (runs of host characters) checked to be a _HOST (at most HOSTS_MEMORY).
HOSTS_MEMORY = 64
_hosts_seen: set[str] = set()
# A port number up to 65535 (what _port_ok and the Via check accept), in the expression.
_PLAIN_PORT = r"(?:[0-9]{1,4}|[0-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
# A URI whose host (a group) is a _HOST_RUN.
_PLAIN_URI = rf"sips?:(?:[A-Za-z0-9._~+-]+@)?({_HOST_RUN})(?::{_PLAIN_PORT})?"
# A SUBSCRIBE laid out exactly as the reference agent writes one (its header order, single
# headers, no body): one regular-expression match instead of the general line loop, for
# nearly every SUBSCRIBE the notifier receives. Groups: request URI host; Via value, its
# host, port and parameters; To value, URI, its host, parameters; From value, URI, its
# host, parameters; Call-ID; CSeq value and number; Contact URI, its host and parameters;
# Event; Expires. Its ports are at most 65535 (a larger one fails the match, as it fails
# the general path); the hosts and the other values then take the same checks as on the
# general path, which takes over when one fails.
_PLAIN_SUBSCRIBE = re.compile(
    rf"SUBSCRIBE {_PLAIN_URI} SIP/2\.0\r\n"
    rf"Via: (SIP/2\.0/UDP ({_HOST_RUN})(?::({_PLAIN_PORT}))?({_PARAMS}))\r\n"
    r"Max-Forwards: [0-9]{1,3}\r\n"
    rf"To: (<({_PLAIN_URI})>({_PARAMS}))\r\n"
    rf"From: (<({_PLAIN_URI})>({_PARAMS}))\r\n"
    r"Call-ID: ([\x21-\x7e]+)\r\n"
    r"CSeq: (([0-9]{1,10}) SUBSCRIBE)\r\n"
    rf"Contact: <({_PLAIN_URI})>({_PARAMS})\r\n"
    r"Event: ([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)\r\n"
    r"Accept: [\x20-\x7e]*\r\n"
    r"Expires: ([0-9]{1,9})\r\n"
    r"Content-Length: 0\r\n\r\n\Z"
)


@dataclass(slots=True)
class ScannedSubscribe:
    """The values the notifier reads from a SUBSCRIBE, as written (stripped)."""

    vias: list[str]  # every Via value, in order (copied into responses)
    branch: str
    sent_by: str  # top Via "host[:port]" as written
    from_value: str
    from_uri: str
    to_value: str
    to_uri: str
    to_tag: str | None
    call_id: str
    cseq_value: str
    cseq: int
    contact_uri: str | None  # first Contact's URI
    package: str | None  # Event package
    expires: int | None


@dataclass(slots=True)
class ScannedResponse:
    status: int
    branch: str
    sent_by: str  # normalized like reference.sip.transaction.normalize_sent_by
    method: str  # CSeq method


def _head_fields(data: bytes) -> tuple[str, dict[str, list[str]]] | None:
    """(start line, wanted headers by key) for a body-less message of the simple shape."""
    end = data.find(b"\r\n\r\n")
    if end <= 0 or end > _MAX_HEAD or len(data) != end + 4 or not data.isascii():
        return None
    head = data[:end]
    # No bare CR or LF, no folded line (an empty line cannot occur before `end`).
    crlf = head.count(b"\r\n")
    if head.count(b"\r") != crlf or head.count(b"\n") != crlf:
        return None
    if b"\n " in head or b"\n\t" in head:
        return None
    lines = head.decode("ascii").split("\r\n")
    fields: dict[str, list[str]] = {}
    as_written = _AS_WRITTEN
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            return None
        if name in as_written:
            key = as_written[name]
            if key is None:
                continue
        else:
            name = name.rstrip(" \t")
            key = _WANTED.get(name.lower())
            if key is None:
                if _PLAIN_NAME.match(name) is None:
                    return None
                continue
        values = fields.get(key)
        if values is None:
            fields[key] = [value.strip(" \t")]
        else:
            values.append(value.strip(" \t"))
    length = fields.get("content-length")
    if length is not None and length != ["0"]:
        return None
    return lines[0], fields


def _single(fields: dict[str, list[str]], key: str) -> str | None:
    values = fields.get(key)
    return values[0] if values is not None and len(values) == 1 else None


def _params(text: str) -> dict[str, str | None] | None:
    """;name[=value] pairs already matched by _PARAMS; None on a repeated name."""
    params: dict[str, str | None] = {}
    if text:
        for item in text[1:].split(";"):
            name, eq, value = item.partition("=")
            if name in params:
                return None
            params[name] = value if eq else None
    return params


def _top_via(value: str) -> tuple[str, str, str | None, str] | None:
    """(branch, host, port, "host[:port]") of a simple Via value with a branch."""
    match = _VIA.match(value)
    if match is None:
        return None
    host, port, param_text = match.groups()
    if port is not None and int(port) > 65535:
        return None
    params = _params(param_text)
    if params is None:
        return None
    branch = params.get("branch")
    if not branch:
        return None
    return branch, host, port, host if port is None else f"{host}:{port}"


def _name_addr(value: str) -> tuple[str, str | None] | None:
    """(URI, tag) of ``<sip:...>;params``."""
    match = _NAME_ADDR.match(value)
    if match is None:
        return None
    uri, param_text = match.groups()
    if not _port_ok(uri):
        return None
    params = _params(param_text)
    if params is None:
        return None
    return uri, params.get("tag")


def _port_ok(uri: str) -> bool:
    colon = uri.rfind(":")
    tail = uri[colon + 1 :]
    return not tail.isdigit() or colon <= 4 or int(tail) <= 65535


def scan_subscribe(data: bytes) -> ScannedSubscribe | None:
    """The SUBSCRIBE's values, or None when it is not of the simple shape."""
    if len(data) <= _MAX_HEAD + 4 and data.isascii():
        plain = _PLAIN_SUBSCRIBE.match(data.decode("ascii"))
        if plain is not None:
            scanned = _plain_subscribe(plain)
            if scanned is not None:
                return scanned
    return _scan_subscribe_general(data)


def _plain_subscribe(match: re.Match[str]) -> ScannedSubscribe | None:
    """The values of a SUBSCRIBE of the agent's layout, after the checks the general path
    makes on the same values (the regular expression made the others, the ports' too);
    None when one fails."""
    (uri_host, via, host, port, via_params, to_value, to_uri, to_host, to_params, from_value,
     from_uri, from_host, from_params, call_id, cseq_value, number, contact_uri, contact_host,
     contact_params, package, expires) = match.groups()  # fmt: skip
    hosts = (uri_host, host, to_host, from_host, contact_host)
    if not _hosts_seen.issuperset(hosts) and not all(map(_new_host, hosts)):
        return None
    cseq = int(number)
    if cseq > _MAX_CSEQ:
        return None
    params = _params(via_params)
    branch = None if params is None else params.get("branch")
    if not branch:
        return None
    # The other parameters are read for the To tag and checked for a repeated name, which
    # takes two of them (each ";" starts one): most have none or one, and need no call.
    to_tag = None
    if to_params:
        to_tags = _params(to_params)
        if to_tags is None:
            return None
        to_tag = to_tags.get("tag")
    if from_params.count(";") > 1 and _params(from_params) is None:
        return None
    if contact_params.count(";") > 1 and _params(contact_params) is None:
        return None
    # Positional, in the order of the fields: a call by keywords costs twice as much.
    return ScannedSubscribe(
        [via], branch, host if port is None else f"{host}:{port}", from_value, from_uri,
        to_value, to_uri, to_tag, call_id, cseq_value, cseq, contact_uri, package, int(expires),
    )  # fmt: skip


def _new_host(name: str) -> bool:
    """Whether a run of host characters is a _HOST (remembered when it is)."""
    if _HOST_ONLY.match(name) is None:
        return False
    if len(_hosts_seen) < HOSTS_MEMORY:
        _hosts_seen.add(name)
    return True


def _scan_subscribe_general(data: bytes) -> ScannedSubscribe | None:
    """scan_subscribe for any header order, repeated names, compact forms."""
    head = _head_fields(data)
    if head is None:
        return None
    start, fields = head
    parts = start.split(" ")
    if len(parts) != 3 or parts[0] != "SUBSCRIBE" or parts[2] != "SIP/2.0":
        return None
    if _REQUEST_URI.match(parts[1]) is None or not _port_ok(parts[1]):
        return None
    vias = fields.get("via")
    from_value = _single(fields, "from")
    to_value = _single(fields, "to")
    call_id = _single(fields, "call-id")
    cseq_value = _single(fields, "cseq")
    if not vias or from_value is None or to_value is None or call_id is None:
        return None
    if cseq_value is None:
        return None
    top = _top_via(vias[0])
    from_parts = _name_addr(from_value)
    to_parts = _name_addr(to_value)
    if top is None or from_parts is None or to_parts is None:
        return None
    if not call_id or not call_id.isprintable() or " " in call_id:
        return None
    number, _, method = cseq_value.partition(" ")
    if method != "SUBSCRIBE" or not number.isdigit() or len(number) > 10:
        return None
    cseq = int(number)
    if cseq > _MAX_CSEQ:
        return None
    contact_uri: str | None = None
    contacts = fields.get("contact")
    if contacts is not None:
        if len(contacts) != 1:
            return None
        contact = _name_addr(contacts[0])
        if contact is None:
            return None
        contact_uri = contact[0]
    package: str | None = None
    events = fields.get("event")
    if events is not None:
        if len(events) != 1 or _EVENT.match(events[0]) is None:
            return None
        package = events[0]
    expires: int | None = None
    expires_values = fields.get("expires")
    if expires_values is not None:
        if len(expires_values) != 1:
            return None
        text = expires_values[0]
        if not text.isdigit() or len(text) > 9:
            return None
        expires = int(text)
    return ScannedSubscribe(
        vias=vias,
        branch=top[0],
        sent_by=top[3],
        from_value=from_value,
        from_uri=from_parts[0],
        to_value=to_value,
        to_uri=to_parts[0],
        to_tag=to_parts[1],
        call_id=call_id,
        cseq_value=cseq_value,
        cseq=cseq,
        contact_uri=contact_uri,
        package=package,
        expires=expires,
    )


def scan_response(data: bytes) -> ScannedResponse | None:
    """Status, branch, normalized sent-by and CSeq method of a response with one Via."""
    plain = _PLAIN_RESPONSE.match(data)
    if plain is not None:
        status, host, port, branch, number, method = plain.groups()
        sent_by = _sent_by_seen.get((host, port))
        if sent_by is None and (port is None or int(port) <= 65535) \
                and _HOST_ONLY.match(host.decode()) is not None:  # fmt: skip
            sent_by = f"{host.decode().lower()}:{5060 if port is None else int(port)}"
            if len(_sent_by_seen) < SENT_BY_MEMORY:
                _sent_by_seen[(host, port)] = sent_by
        if sent_by is not None and (len(number) < 10 or int(number) <= _MAX_CSEQ):
            return ScannedResponse(int(status), branch.decode(), sent_by, method.decode())
    head = _head_fields(data)
    if head is None:
        return None
    start, fields = head
    if start[:8] != "SIP/2.0 ":
        return None
    code = start[8:11]
    if len(code) != 3 or not code.isdigit() or code[0] not in "123456":
        return None
    if len(start) > 11 and start[11] != " ":
        return None
    vias = fields.get("via")
    cseq_value = _single(fields, "cseq")
    if vias is None or len(vias) != 1 or cseq_value is None:
        return None
    for key in ("from", "to", "call-id"):
        if _single(fields, key) is None:
            return None
    top = _top_via(vias[0])
    if top is None:
        return None
    number, _, method = cseq_value.partition(" ")
    if not number.isdigit() or len(number) > 10 or int(number) > _MAX_CSEQ:
        return None
    if _EVENT.match(method) is None or "." in method:
        return None
    branch, host, port, _sent_by = top
    sent_by = f"{host.lower()}:{5060 if port is None else int(port)}"
    return ScannedResponse(int(code), branch, sent_by, method)
