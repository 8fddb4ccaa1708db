"""The UAC side of a SUBSCRIBE dialog (RFC 3261 §12, RFC 6665 §4.4.1), sans-IO.

A `Dialog` starts "early" when the subscriber builds its first SUBSCRIBE (no remote tag yet,
the To header carries none) and becomes "confirmed" either from the 2xx (`confirm`) or from a
NOTIFY that arrives first (`confirm_from_notify`). It builds every request of the dialog, the
initial SUBSCRIBE included, so the CSeq numbering lives in one place.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from reference.sip.headers import Headers
from reference.sip.message import Request, Response
from reference.sip.uri import NameAddr, parse_name_addr, parse_uri

DialogState = Literal["early", "confirmed"]

# CSeq numbers must stay below 2**31 (§8.1.1.5).
_CSEQ_LIMIT = 2**31

# URI parameters that are not allowed in a Request-URI (§19.1.1 table 1); stripped when a
# strict router's URI becomes the Request-URI (§12.2.1.1).
_NOT_IN_REQUEST_URI = ("method",)


def route_set_of(entries: Iterable[NameAddr]) -> tuple[str, ...]:
    """A route set from parsed Route / Record-Route entries, in the given order."""
    return tuple(sys.intern(str(entry)) for entry in entries)


class DialogError(ValueError):
    """A message cannot create or update the dialog the way it was asked to."""


@dataclass(slots=True)
class Dialog:
    """Dialog state (§12): identifiers, CSeq counters, route set and remote target.

    `local_cseq` is the CSeq number of the last request built; the next request uses
    `local_cseq + 1` (it starts at `first_cseq - 1`, so the first request uses `first_cseq`).
    `route_set` holds name-addr strings (`<sip:p1;lr>`), in the order they go into Route:
    a tuple of interned strings, since most dialogs share one route set (or none) with
    thousands of others and an empty tuple costs nothing per dialog.
    """

    call_id: str
    local_tag: str
    local_uri: str
    remote_uri: str
    remote_target: str
    local_cseq: int
    remote_tag: str | None = None
    remote_cseq: int | None = None
    route_set: tuple[str, ...] = ()
    state: DialogState = "early"
    # The Contact field the remote target was last taken from (interned): a NOTIFY carrying
    # the same text again leaves the target as it is without parsing it (almost every one).
    contact_text: str | None = None

    @classmethod
    def new_uac(
        cls,
        *,
        call_id: str,
        local_uri: str,
        local_tag: str,
        remote_uri: str,
        remote_target: str,
        preloaded_route: Iterable[str] = (),
        first_cseq: int = 1,
    ) -> Dialog:
        """A dialog about to send its initial request; `preloaded_route` is the outbound
        proxy / presence_route set used until a response or NOTIFY supplies a route set."""
        if not 0 <= first_cseq < _CSEQ_LIMIT:
            raise DialogError(f"bad first CSeq: {first_cseq}")
        return cls(
            # Interned, as the remote tag: the simulator's notifier interns its copies of
            # all three (simulator.notifier), so the two sides of a dialog share one string
            # each.
            call_id=sys.intern(call_id),
            local_tag=sys.intern(local_tag),
            local_uri=local_uri,
            remote_uri=remote_uri,
            remote_target=remote_target,
            local_cseq=first_cseq - 1,
            route_set=route_set_of(parse_name_addr(route) for route in preloaded_route),
        )

    # ------------------------------------------------------------------ building requests

    def build_request(
        self,
        method: str,
        *,
        branch: str,
        sent_by: str,
        contact: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        max_forwards: int = 70,
        transport: str = "UDP",
    ) -> tuple[Request, str]:
        """Build the next request of the dialog; returns it and the next-hop URI.

        Every call consumes one CSeq number (§12.2.1.1: strictly +1), so build only requests
        that are going to be sent; a retransmission reuses the bytes, not this method.
        """
        cseq = self.local_cseq + 1
        if cseq >= _CSEQ_LIMIT:
            raise DialogError("local CSeq exhausted")
        request_uri, routes, next_hop = self._route()
        to_value = self.remote_uri
        if self.remote_tag is not None:
            to_value = f"{to_value};tag={self.remote_tag}"
        # The fixed fields go in as (lookup key, canonical name, value), their names known
        # valid; their values may carry text from outside (configuration, a peer's tags and
        # Record-Route, the caller's Contact): ``extend_known`` checks them as ``add`` does.
        via = f"SIP/2.0/{transport} {sent_by};branch={branch};rport"
        from_value = f"{self.local_uri};tag={self.local_tag}"
        cseq_value = f"{cseq} {method}"
        fields = [
            ("via", "Via", via),
            ("max-forwards", "Max-Forwards", str(max_forwards)),
            ("to", "To", to_value),
            ("from", "From", from_value),
            ("call-id", "Call-ID", self.call_id),
            ("cseq", "CSeq", cseq_value),
        ]
        for route in routes:  # one Route header per entry: easy to read and to edit
            fields.append(("route", "Route", route))
        fields.append(("contact", "Contact", contact))
        # The values' text for the CR and LF check, and the lines of the fields written as
        # ``to_bytes`` writes them (kept by ``extend_known``), each in one step (Max-Forwards,
        # a number, holds neither).
        values = f"{via}{to_value}{from_value}{self.call_id}{cseq_value}{contact}"
        text = (f"Via: {via}\r\nMax-Forwards: {max_forwards}\r\nTo: {to_value}\r\n"
                f"From: {from_value}\r\nCall-ID: {self.call_id}\r\nCSeq: {cseq_value}\r\n")
        if routes:
            values = "".join([values, *routes])
            text += "".join([f"Route: {route}\r\n" for route in routes])
        hdrs = Headers()
        hdrs.extend_known(fields, values, f"{text}Contact: {contact}", headers)
        self.local_cseq = cseq
        return Request(method, request_uri, hdrs, body), next_hop

    def next_hop(self) -> str:
        """The URI the next request of the dialog goes to (§12.2.1.1), without building it:
        its ``transport`` parameter picks the transport (RFC 3261 §18.1.1)."""
        return self._route()[2]

    def _route(self) -> tuple[str, list[str], str]:
        """(Request-URI, Route values, next-hop URI) per §12.2.1.1."""
        if not self.route_set:
            return self.remote_target, [], self.remote_target
        first = parse_name_addr(self.route_set[0])
        first_uri = parse_uri(first.uri)
        if "lr" in first_uri.params:
            # Loose routing: the target stays in the Request-URI, the request goes to the
            # first route.
            return self.remote_target, list(self.route_set), first.uri
        # Strict routing: the first route becomes the Request-URI (minus what a Request-URI
        # may not carry) and the remote target goes last in Route.
        params = {k: v for k, v in first_uri.params.items() if k not in _NOT_IN_REQUEST_URI}
        request_uri = str(dataclasses.replace(first_uri, params=params, headers={}))
        routes = [*self.route_set[1:], f"<{self.remote_target}>"]
        return request_uri, routes, request_uri

    # ------------------------------------------------------------------ updating the dialog

    def confirm(self, response: Response, *, keep_preloaded_route: bool = False) -> None:
        """Complete the dialog from the 2xx to the initial request (§12.1.2).

        Remote tag from To (a 2xx without one cannot form a dialog, SUB-134), remote target
        from the first Contact, route set = Record-Route reversed, or, when
        `keep_preloaded_route`, the preloaded route reversed (SER's tm keeps it and reverses
        it like a Record-Route, spec §4.4). If an early NOTIFY already confirmed the
        dialog, a 2xx from the same peer changes nothing (its route set is not used, SUB-049)
        and a 2xx with another To tag raises: it is another fork.
        """
        if not 200 <= response.status < 300:
            raise DialogError(f"only a 2xx confirms a dialog, not {response.status}")
        tag = response.to.tag
        if not tag:
            raise DialogError("2xx without To tag cannot form a dialog")
        if self.state == "confirmed":
            if tag != self.remote_tag:
                raise DialogError(f"2xx from another fork (To tag {tag!r})")
            return
        self.remote_tag = sys.intern(tag)
        self.refresh_target(response)
        if keep_preloaded_route:
            self.route_set = tuple(reversed(self.route_set))
        else:
            self.route_set = route_set_of(reversed(response.record_routes))
        self.state = "confirmed"

    def confirm_from_notify(self, notify: Request) -> None:
        """Create the dialog from a NOTIFY that arrived before the 2xx (RFC 6665 §4.4.1,
        SUB-049): this side acts as the UAS of the NOTIFY, so the route set is the NOTIFY's
        Record-Route in order (§12.1.1), and the remote CSeq starts at the NOTIFY's."""
        if self.state == "confirmed":
            raise DialogError("dialog already confirmed")
        if notify.call_id != self.call_id or notify.to.tag != self.local_tag:
            raise DialogError("NOTIFY does not belong to this dialog")
        tag = notify.from_.tag
        if not tag:
            raise DialogError("NOTIFY without From tag cannot form a dialog")
        self.remote_tag = sys.intern(tag)
        self.refresh_target(notify)
        self.route_set = route_set_of(notify.record_routes)
        self.remote_cseq = notify.cseq.number
        self.state = "confirmed"

    def refresh_target(self, message: Request | Response) -> None:
        """Target refresh (§12.2.1.2 / RFC 6665 §4.4.1): a 2xx to a refresh or an in-dialog
        NOTIFY with a Contact replaces the remote target; the route set never changes.
        (Also how a confirming 2xx or NOTIFY sets the target first.)"""
        # A missing Contact keeps the current target: the dialog stays usable with a
        # non-conforming peer instead of failing (the caller may still check for it).
        text = message.headers.single("Contact")
        if text is not None and text == self.contact_text:
            return  # the text this target came from: parsing it again gives the same
        for contact in message.contacts:
            if contact.uri is not None:  # skip a '*' Contact: it names no target
                # Interned: every dialog with the same peer shares one copy of its Contact
                # (the string lives as long as some dialog uses it).
                self.remote_target = sys.intern(contact.uri)
                self.contact_text = None if text is None else sys.intern(text)
                return

    # ------------------------------------------------------------------ incoming requests

    def check_remote_cseq(self, cseq: int) -> bool:
        """False when an in-dialog request's CSeq is lower than the last one seen (the caller
        answers 500, §12.2.2, SUB-150); otherwise record it and return True.

        An equal CSeq is not out of order: within Timer J the server transaction absorbs a
        retransmission, and one arriving after Timer J is handled as a new request (SUB-142)."""
        if self.remote_cseq is not None and cseq < self.remote_cseq:
            return False
        self.remote_cseq = cseq
        return True

    def matches_notify(self, notify: Request) -> bool:
        """Does this NOTIFY belong to the dialog? Call-ID, our tag in To, and the peer's tag
        in From once known (before that any fork's NOTIFY matches, RFC 6665 §4.1.2.4)."""
        return self.matches_ids(notify.call_id, notify.to.tag, notify)

    def matches_ids(self, call_id: str, to_tag: str | None, notify: Request) -> bool:
        """``matches_notify`` for a caller that already read the NOTIFY's Call-ID and To
        tag (its From is read only when the peer's tag is known, as there)."""
        if call_id != self.call_id or to_tag != self.local_tag:
            return False
        return self.remote_tag is None or notify.from_.tag == self.remote_tag
