"""The notifier peer: builds the responses and NOTIFYs the scenario asks for.

Built on `reference.sip` message objects, but header values are written as given, so a
scenario can forge malformed input (bad CSeq, missing Subscription-State, raw bytes). The
peer keeps one record per subscriber dialog (keyed by Call-ID): the tag it answers with,
its NOTIFY CSeq counter and the subscriber's Contact.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reference.pidf import build_pidf
from reference.reginfo import RegContact, Registration, build_reginfo
from reference.rlmi import Instance, Resource, build_list_body
from reference.sip import (
    Headers,
    Request,
    Response,
    SipParseError,
    make_response,
    parse_message,
    parse_uri,
)

PIDF_TYPE = "application/pidf+xml"
REGINFO_TYPE = "application/reginfo+xml"
# RFC 3261 §18.1.1: a request larger than this goes over a congestion-controlled transport.
UDP_MAX_BYTES = 1300


@dataclass
class Captured:
    """A request from the subscriber that an `expect` step accepted."""

    step_id: str | None
    request: Request
    data: bytes
    at: float
    destination: str
    key: tuple[str, str, str]
    peer_tag: str
    reply: bytes | None = None
    source: str = ""              # host:port it came from ("" on one-to-one targets)
    transport: str = "udp"        # "tcp": it came on the peer's connection `connection`
    connection: str = ""


def registrar_reply(data: bytes, default_expires: int = 3600) -> bytes | None:
    """The 200 OK a minimal registrar gives a REGISTER (RFC 3261 §10.3): the binding's
    Contact back with its expiry (the request's Expires, else `default_expires`); no
    Contact for a removal (Expires 0 or `*`). None when the datagram is no REGISTER that
    parses. Nothing is stored: the peer only lets a subscriber that subscribes once it is
    registered (linphone) get that far."""
    try:
        request = parse_message(data)
    except SipParseError:
        return None
    if not isinstance(request, Request) or request.method != "REGISTER":
        return None
    try:
        expires = request.expires
    except SipParseError:
        expires = None
    contact = request.headers.get("Contact")
    in_contact = re.search(r";\s*expires\s*=\s*(\d+)", contact or "", re.IGNORECASE)
    if in_contact:  # the binding's own expiry wins over the Expires header (§10.2.1.1)
        expires = int(in_contact.group(1))
    seconds = default_expires if expires is None else expires
    headers: list[tuple[str, str]] = []
    if contact and contact.strip() != "*" and seconds > 0:
        shown = contact if "expires=" in contact.lower() else f"{contact};expires={seconds}"
        headers.append(("Contact", shown))
    headers.append(("Expires", str(seconds)))
    return make_response(request, 200, None, to_tag="registrar", headers=headers).to_bytes()


@dataclass
class PeerDialog:
    call_id: str
    peer_tag: str
    subscriber_from: str          # the SUBSCRIBE's From (with the subscriber's tag)
    record_uri: str               # the SUBSCRIBE's To URI: our identity in NOTIFY From
    remote_target: str            # the subscriber's Contact URI
    notify_cseq: int = 0
    expires_at: float | None = None   # the last grant (2xx Expires, NOTIFY expires)
    # What set `expires_at` last: "" (a 2xx) or the requirement a NOTIFY `expires` that
    # moved it falls under (SUB-028 active, SUB-029 pending).
    expiry_from: str = ""
    address: str = ""             # host:port NOTIFYs go to ("" = the target's address)
    # How the SUBSCRIBE came: over "tcp" the peer's Contact asks for TCP too (RFC 3261
    # §8.1.1.8), so the subscriber's in-dialog requests come over TCP.
    transport: str = "udp"


@dataclass
class SentNotify:
    step_id: str | None
    branch: str
    at: float
    data: bytes
    responses: list[Response] = field(default_factory=list)
    destinations: list[str] = field(default_factory=list)  # where each response went
    to: str = ""                  # where it was sent ("" = the target's address)
    transport: str = "udp"        # how it was sent; "tcp": on connection `connection`
    connection: str = ""
    # (transport, connection, Content-Length as written) of each response, in order.
    arrivals: list[tuple[str, str, int | None]] = field(default_factory=list)


def request_key(request: Request) -> tuple[str, str, str]:
    """What makes two datagrams the same transaction: top Via branch, method, CSeq."""
    branch = ""
    try:
        vias = request.vias
        branch = (vias[0].branch or "") if vias else ""
    except SipParseError:
        pass
    return branch, request.method, request.headers.get("CSeq") or ""


def _uri_of(name_addr: str) -> str:
    text = name_addr.strip()
    if "<" in text and ">" in text:
        return text[text.index("<") + 1:text.index(">")]
    return text.split(";", 1)[0]


def contact_address(uri: str) -> str:
    """host:port of a SIP URI whose host is an IPv4 literal (port 5060 by default), else ""
    (a name would need DNS: the runner sends to where the request came from instead)."""
    try:
        parsed = parse_uri(uri)
    except SipParseError:
        return ""
    try:
        ipaddress.IPv4Address(parsed.host)
    except ValueError:
        return ""
    return f"{parsed.host}:{parsed.port or 5060}"


def notify_body(spec: Any, entity: str, base: Path) -> tuple[bytes, str]:
    """A NOTIFY body and the Content-Type it goes with when the step names none: PIDF,
    reginfo (`reginfo`) or a resource list's multipart/related (`list`)."""
    if isinstance(spec, dict) and "reginfo" in spec:
        return reginfo_bytes(spec["reginfo"], entity), REGINFO_TYPE
    if isinstance(spec, dict) and "list" in spec:
        return list_body(spec["list"], entity)
    return body_bytes(spec, entity, base), PIDF_TYPE


def body_bytes(spec: Any, entity: str, base: Path) -> bytes:
    """A NOTIFY body from a template name, a file (relative to the scenario) or text."""
    if spec is None:
        return b""
    if isinstance(spec, str):
        spec = {"template": spec}
    if "file" in spec:
        return (base / str(spec["file"])).read_bytes()
    if "text" in spec:
        return str(spec["text"]).encode("utf-8")
    if "reginfo" in spec:
        return reginfo_bytes(spec["reginfo"], entity)
    if "list" in spec:
        return list_body(spec["list"], entity)[0]
    template = spec.get("template", "empty")
    if template == "empty":
        return b""
    if template == "no-tuple":
        return build_pidf(entity, tuples=[])
    return build_pidf(entity, basic=template, note=spec.get("note"))


def reginfo_bytes(spec: dict[str, Any], entity: str) -> bytes:
    """A schema-valid RFC 3680 document from a scenario's `reginfo` mapping (the AOR defaults
    to the subscription's record; contacts default to active/registered)."""
    registrations = []
    for index, reg in enumerate(spec.get("registrations") or []):
        contacts = tuple(
            RegContact(id=str(c.get("id", f"c{n}")), state=c.get("state", "active"),
                       event=c.get("event", "registered"),
                       uri=c.get("uri", f"sip:contact{n}@192.0.2.{n + 1}"),
                       expires=c.get("expires"), q=c.get("q"))
            for n, c in enumerate(reg.get("contacts") or []))
        registrations.append(Registration(reg.get("aor", entity), reg.get("id", f"r{index}"),
                                          reg.get("state", "active"), contacts))
    return build_reginfo(int(spec["version"]), str(spec["state"]), registrations)


def list_body(spec: dict[str, Any], entity: str) -> tuple[bytes, str]:
    """An RFC 4662 list NOTIFY body from a scenario's `list` mapping, built with
    `reference.rlmi.build_list_body` (multipart/related, RLMI root, one PIDF part per
    resource that has a `body`), and its Content-Type. The list URI defaults to the record.
    Each resource has one instance (`instance` id, default `i<n>`; `state` active; an
    optional `reason`); its part is the PIDF template `body` (default `open` for an active
    instance, none otherwise), named by `cid` (default `<n>@list`). A `cid` given with
    `body: null` names a part the body does not have (the unresolved-cid case)."""
    resources: list[Resource] = []
    parts: dict[str, bytes] = {}
    for n, item in enumerate(spec.get("resources") or []):
        uri = str(item["uri"])
        state = str(item.get("state", "active"))
        part = item.get("body", "open" if state == "active" else None)
        cid = item.get("cid")
        if part is not None:
            cid = str(cid or f"{n}@list")
            parts[cid] = body_bytes(part, uri, Path("."))
        name = item.get("name")
        instance = Instance(str(item.get("instance", f"i{n}")), state, item.get("reason"),
                            None if cid is None else str(cid))
        resources.append(Resource(uri, (str(name),) if name else (), (instance,)))
    return build_list_body(str(spec.get("uri", entity)), int(spec["version"]),
                           bool(spec.get("full_state", True)), resources, parts)


class Peer:
    """Dialog bookkeeping and message construction for the notifier side."""

    def __init__(self, hostport: str) -> None:
        self.hostport = hostport
        self.dialogs: dict[str, PeerDialog] = {}
        self._counter = 0

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    def dialog_for(self, request: Request, source: str = "") -> PeerDialog:
        """The peer's dialog for a SUBSCRIBE (created on the first one of a Call-ID).
        `source`: where the SUBSCRIBE came from (NOTIFYs go there when the Contact names
        no IP address and port)."""
        call_id = request.call_id
        dialog = self.dialogs.get(call_id)
        contacts = request.contacts
        target = contacts[0].uri if contacts and contacts[0].uri else self.hostport
        if dialog is None:
            tag = request.to.tag or f"peer{self._next()}"
            dialog = PeerDialog(call_id, tag, request.headers.get("From") or "",
                                _uri_of(request.headers.get("To") or ""), target)
            self.dialogs[call_id] = dialog
        else:
            dialog.remote_target = target
        address = contact_address(target)
        if address or source:
            dialog.address = address or source
        return dialog

    def reply(self, captured: Captured, status: int, reason: str | None,
              headers: list[tuple[str, str]], to_tag: str | bool | None = True,
              top_via: str | None = None) -> bytes:
        """A response to a captured request. `to_tag`: True = the dialog's tag when the
        request has none (final responses above 100), None/False = no tag, str = that tag.
        `top_via` replaces the first Via value (to forge a non-matching response)."""
        tag: str | None = None
        if to_tag is True:
            tag = captured.peer_tag if status > 100 else None
        elif isinstance(to_tag, str):
            tag = to_tag
        response = make_response(captured.request, status, reason, to_tag=tag, headers=headers,
                                 top_via=top_via)
        data = response.to_bytes()
        captured.reply = data
        return data

    def notify(self, dialog: PeerDialog, *, state: str, body: bytes,
               content_type: str | None, event: str | None, headers: list[tuple[str, str]],
               remove: list[str], cseq: int | None, call_id: str | None,
               from_tag: str | None, to_tag: str | None) -> tuple[bytes, str]:
        branch = f"z9hG4bKpeer{self._next()}"
        if cseq is None:
            dialog.notify_cseq += 1
            cseq = dialog.notify_cseq
        else:
            dialog.notify_cseq = max(dialog.notify_cseq, cseq)
        to_value = dialog.subscriber_from
        if to_tag is not None:
            to_value = f"<{_uri_of(to_value)}>;tag={to_tag}"
        out = Headers()
        out.add("Via", f"SIP/2.0/UDP {self.hostport};branch={branch};rport")
        out.add("Max-Forwards", "70")
        out.add("From", f"<{dialog.record_uri}>;tag={from_tag or dialog.peer_tag}")
        out.add("To", to_value)
        out.add("Call-ID", call_id or dialog.call_id)
        out.add("CSeq", f"{cseq} NOTIFY")
        out.add("Contact", self.contact(dialog.transport))
        if event is not None:
            out.add("Event", event)
        out.add("Subscription-State", state)
        if body and content_type is not None:
            out.add("Content-Type", content_type)
        for name, value in headers:
            out.set(name, value)
        for name in remove:
            out.remove(name)
        request = Request("NOTIFY", dialog.remote_target, out, body)
        return request.to_bytes(), branch

    def via_transport(self, data: bytes, transport: str) -> bytes:
        """A NOTIFY built by `notify` with its Via naming `transport` (RFC 3261 §18.1.1:
        the transport is chosen once the message's size is known)."""
        if transport == "udp":
            return data
        own = self.hostport.encode()
        return data.replace(b"SIP/2.0/UDP " + own, b"SIP/2.0/" + transport.upper().encode()
                            + b" " + own, 1)

    def contact(self, transport: str = "udp") -> str:
        """The peer's Contact: over TCP it asks for TCP."""
        return f"<sip:{self.hostport};transport=tcp>" if transport == "tcp" \
            else f"<sip:{self.hostport}>"

    def raw(self, text: str, dialog: PeerDialog | None) -> tuple[bytes, str]:
        """Raw bytes with `{call_id}`, `{peer_tag}`, `{subscriber_from}`, `{target}`,
        `{peer}`, `{branch}` filled in; `\\n` line ends become CRLF."""
        branch = f"z9hG4bKpeer{self._next()}"
        values = {"peer": self.hostport, "branch": branch}
        if dialog is not None:
            dialog.notify_cseq += 1
            values.update(call_id=dialog.call_id, peer_tag=dialog.peer_tag,
                          subscriber_from=dialog.subscriber_from, target=dialog.remote_target,
                          record=dialog.record_uri, cseq=str(dialog.notify_cseq))
        for name, value in values.items():
            text = text.replace("{" + name + "}", value)
        text = text.replace("\r\n", "\n").replace("\n", "\r\n")
        return text.encode("utf-8"), branch
