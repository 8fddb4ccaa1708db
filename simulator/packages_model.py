"""The notifier model for `reg` (RFC 3680) and resource lists (RFC 4662), and over TCP.

Rules of this file:

* :class:`PackageNotifier` is the presence server model (``simulator.notifier.Notifier``)
  serving one package per run: ``presence``, ``reg`` or ``presence-list``. Everything the
  base class decides (expiry, 423/481/489/503, rejection rules, outages, dialog expiry,
  NOTIFY transactions) stays the base class's; this class adds the package bodies, the
  version sequence of each dialog and the stream transport. A run whose workload is plain
  presence over UDP never builds one (``Workload.uses_streams``): presence dialogs keep
  their cost.
* Bodies come from the reference's builders, never from a copy: reginfo from
  ``reference.reginfo.build_reginfo``, list bodies from ``reference.rlmi.build_list_body``
  (RLMI root + ``reference.multipart``), each member's PIDF from the base notifier's PIDF
  template (which tests hold equal to ``reference.pidf.build_pidf``).
* Versions (RFC 3680 reginfo ``version``, RFC 4662 RLMI ``version``): each dialog counts
  its documents from 0. A NOTIFY caused by a SUBSCRIBE (initial, refresh), an expiry or
  a terminate carries full state; a NOTIFY caused by a change carries partial state naming
  only what changed (the registration with the changed contact; the one list member whose
  presence changed).
* Transport (RFC 3261 §18.1.1, §18.2.2): a NOTIFY goes on the stream connection to the
  subscriber (``simulator.streams``) when the subscriber's Contact says ``transport=tcp`` or
  the message is larger than ``UDP_LIMIT`` bytes; its Via then says TCP and its transaction
  has no Timer E (Timer F still runs). When the subscriber refuses connections, a NOTIFY
  that went to TCP only for its size is sent over UDP (§18.1.1) and counted
  ``notify_tcp_refused``. A SUBSCRIBE that came on a connection is answered on it. A lost
  connection fails the NOTIFY transactions in flight on it as a timeout would (§18.4):
  the dialog ends (RFC 6665 §4.2.2), as the base model does after Timer F.
* SUBSCRIBEs are read with the full parser here (a list subscription's ``Supported:
  eventlist`` is not in the fast scanner's shape); a SUBSCRIBE to a list without
  ``eventlist`` gets 421 with ``Require: eventlist`` (RFC 4662 §4.1).
* Registration model (``reg``, ``RegSpec``): each AOR starts with its contacts registered;
  refresh events re-register one active contact (event ``refreshed``), expiry events
  expire one (``expired``, state terminated) and it registers again ``reregister_after``
  seconds later (``registered``). A registration with no active contact is
  ``terminated``. Contacts never expire on their own: the expiry events are the churn.
* List model (``presence-list``, ``ListsSpec``): ``count`` lists, each with members drawn
  without repetition among the presentities (size from the workload's distribution); a
  member's presence change is one partial NOTIFY to every dialog watching a list holding it.
"""

from __future__ import annotations

import random
from typing import Any

from reference.reginfo import RegContact, Registration, build_reginfo
from reference.rlmi import Instance, Resource, build_list_body
from reference.sip import Headers, Request
from simulator.network import Address, Network
from simulator.notifier import (
    DialogKey,
    Notifier,
    NotifierObserver,
    _Dialog,
    _Incoming,
    _NotifyTx,
)
from simulator.rng import stream
from simulator.sipscan import ScannedResponse
from simulator.streams import StreamLayer
from simulator.workload import ListsSpec, NotifierSpec, RegSpec

UDP_LIMIT = 1300  # RFC 3261 §18.1.1: larger requests go over a congestion-controlled transport
REGINFO_TYPE = "application/reginfo+xml"

__all__ = ["UDP_LIMIT", "ListModel", "PackageNotifier", "RegModel", "package_figures",
           "schedule_package_changes"]


def _user(uri: str) -> str:
    """The user part of sip:user@host (the URIs this model makes always have one)."""
    return uri.split(":", 1)[1].split("@", 1)[0]


class _Contact:
    __slots__ = ("event", "expires_at", "id", "state", "uri")

    def __init__(self, ident: str, uri: str, expires_at: float) -> None:
        self.id = ident
        self.uri = uri
        self.state = "active"
        self.event = "registered"
        self.expires_at = expires_at


class RegModel:
    """The registrations of every AOR of one notifier (see the module rules)."""

    def __init__(self, spec: RegSpec, aors: list[str], seed: int, name: str) -> None:
        self.spec = spec
        rng = stream(seed, "notifier", name, "reg", "contacts")
        self._contacts: dict[str, list[_Contact]] = {}
        for aor in aors:
            user, host = aor.split(":", 1)[1].split("@", 1)
            count = spec.contacts.draw(rng)
            self._contacts[aor] = [
                _Contact(f"{user}-c{k}", f"sip:{user}@ua{k}.{host}", float(spec.register_expires))
                for k in range(count)
            ]

    def registration(self, aor: str, now: float, only: _Contact | None = None) -> Registration:
        """The AOR's registration: every contact, or only ``only`` (partial state)."""
        contacts = self._contacts.get(aor, [])
        shown = contacts if only is None else [only]
        active = any(c.state == "active" for c in contacts)
        return Registration(
            aor, f"reg-{_user(aor)}", "active" if active else "terminated",
            tuple(RegContact(c.id, c.state, c.event, c.uri,
                             expires=max(0, round(c.expires_at - now)) if c.state == "active"
                             else 0)
                  for c in shown if only is not None or c.state == "active"),
        )  # fmt: skip

    def refresh(self, aor: str, now: float, rng: random.Random) -> _Contact | None:
        active = [c for c in self._contacts.get(aor, []) if c.state == "active"]
        if not active:
            return None
        contact = active[rng.randrange(len(active))]
        contact.event = "refreshed"
        contact.expires_at = now + self.spec.register_expires
        return contact

    def expire(self, aor: str, rng: random.Random) -> _Contact | None:
        active = [c for c in self._contacts.get(aor, []) if c.state == "active"]
        if not active:
            return None
        contact = active[rng.randrange(len(active))]
        contact.state = "terminated"
        contact.event = "expired"
        return contact

    def reregister(self, contact: _Contact, now: float) -> None:
        contact.state = "active"
        contact.event = "registered"
        contact.expires_at = now + self.spec.register_expires


class ListModel:
    """The resource lists of one notifier: list URI -> members (presentity URIs)."""

    def __init__(self, spec: ListsSpec, lists: list[str], members: list[str],
                 seed: int, name: str) -> None:  # fmt: skip
        rng = stream(seed, "notifier", name, "lists", "members")
        self.members: dict[str, tuple[str, ...]] = {}
        self.holding: dict[str, list[str]] = {}  # member -> the lists holding it
        for uri in lists:
            size = min(spec.size.draw(rng), len(members))
            chosen = tuple(members[i] for i in sorted(rng.sample(range(len(members)), size)))
            self.members[uri] = chosen
            for member in chosen:
                self.holding.setdefault(member, []).append(uri)


class PackageNotifier(Notifier):
    """A notifier serving ``reg`` or ``presence-list`` (or presence over TCP)."""

    def __init__(
        self,
        env: Any,
        network: Network,
        name: str,
        address: Address,
        spec: NotifierSpec,
        seed: int,
        observer: NotifierObserver | None,
        *,
        package: str,
        streams: StreamLayer,
        reg: RegModel | None = None,
        lists: ListModel | None = None,
    ) -> None:
        super().__init__(env, network, name, address, spec, seed, observer)
        self.package = package
        self.events = ("reg",) if package == "reg" else ("presence",)
        self.streams = streams
        self.reg = reg
        self.lists = lists
        self._changes = stream(seed, "notifier", name, "package-events")
        self._doc_versions: dict[DialogKey, int] = {}
        self._stream_in: set[tuple[str, ...]] = set()  # SUBSCRIBEs that came on a connection
        self._stream_txs: dict[str, int] = {}  # NOTIFY branch -> connection id
        self._receiving_stream = False
        if spec.transport == "tcp":
            host, port = address
            self._contact = f"<sip:{spec.domain}@{host}:{port};transport=tcp>"
        streams.listen(name, self.handle_stream, self._connection_lost)

    # -- receiving --------------------------------------------------------------------------

    def handle_datagram(self, data: bytes, source: Address) -> None:
        if self.up and data.startswith(b"SUBSCRIBE "):
            self._handle_parsed(data, source)  # see the module rules
            return
        super().handle_datagram(data, source)

    def handle_stream(self, data: bytes, source: Address) -> None:
        """One message from a connection (``simulator.streams``)."""
        self._count("stream_messages_received")
        self._receiving_stream = True
        try:
            self.handle_datagram(data, source)
        finally:
            self._receiving_stream = False

    def _on_subscribe(self, incoming: _Incoming, source: Address) -> None:
        if self._receiving_stream:
            self._stream_in.add(incoming.key)
        super()._on_subscribe(incoming, source)

    def _process_subscribe(self, incoming: _Incoming, source: Address) -> None:
        request = incoming.request
        if self.up and self.lists is not None and request is not None:
            try:
                record = request.to.uri
                supported = {v.strip().lower() for v in request.headers.get_all("Supported")}
            except ValueError:
                record, supported = "", set()
            if record in self.lists.members and "eventlist" not in supported:
                self._respond(incoming, source, 421, extra=(("Require", "eventlist"),))
                return
        super()._process_subscribe(incoming, source)

    def _respond(
        self,
        incoming: _Incoming,
        source: Address,
        status: int,
        *,
        to_tag: str | None = None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        if incoming.key not in self._stream_in:
            super()._respond(incoming, source, status, to_tag=to_tag, extra=extra)
            return
        self._stream_in.discard(incoming.key)
        data = self._build(incoming, status, to_tag, extra)
        self._remember(incoming.key, data)
        self._count(f"response_{status}")
        if self.up:
            self.streams.send(self.name, source, data)

    def _on_response(self, response: ScannedResponse) -> None:
        super()._on_response(response)
        if response.status >= 200:
            self._stream_txs.pop(response.branch, None)

    # -- NOTIFY -----------------------------------------------------------------------------

    def _next_version(self, dialog: _Dialog) -> int:
        version = self._doc_versions.get(dialog.key, -1) + 1
        self._doc_versions[dialog.key] = version
        return version

    def _full_body(self, dialog: _Dialog, version: int) -> tuple[bytes, str]:
        record = dialog.record
        if self.reg is not None:
            self._count("notify_full")
            return build_reginfo(version, "full", [self.reg.registration(record, self.env.now)]), \
                REGINFO_TYPE  # fmt: skip
        if self.lists is not None and record in self.lists.members:
            self._count("notify_full")
            return self._list_body(record, version, True, self.lists.members[record])
        return self._body(record), "application/pidf+xml"

    def _list_body(self, list_uri: str, version: int, full: bool,
                   members: tuple[str, ...]) -> tuple[bytes, str]:  # fmt: skip
        owner = _user(list_uri)
        resources = []
        documents: dict[str, bytes] = {}
        for member in members:
            cid = f"{_user(member)}@{owner}"
            resources.append(Resource(member, (), (Instance(f"i-{_user(member)}", "active",
                                                            cid=cid),)))  # fmt: skip
            documents[cid] = self._body(member)
        return build_list_body(list_uri, version, full, resources, documents)

    def _notify(self, dialog: _Dialog, subscription_state: str) -> None:
        """Full state (a SUBSCRIBE, an expiry, a terminate: see the module rules)."""
        if not self.up:
            return
        version = self._next_version(dialog)
        if subscription_state.startswith("terminated"):
            self._doc_versions.pop(dialog.key, None)
        body, content_type = self._full_body(dialog, version)
        self._send_notify(dialog, subscription_state, body, content_type)

    def _notify_partial(self, dialog: _Dialog, what: Any) -> None:
        """Partial state after a change: ``what`` is the changed contact or list member."""
        if self._dialogs.get(dialog.key) is not dialog or not self.up:
            return
        version = self._next_version(dialog)
        remaining = max(0, round(dialog.expires_at - self.env.now))
        self._count("notify_partial")
        if self.reg is not None:
            registration = self.reg.registration(dialog.record, self.env.now, only=what)
            body, content_type = build_reginfo(version, "partial", [registration]), REGINFO_TYPE
        else:
            body, content_type = self._list_body(dialog.record, version, False, (what,))
        self._send_notify(dialog, f"active;expires={remaining}", body, content_type)

    def _send_notify(self, dialog: _Dialog, subscription_state: str, body: bytes,
                     content_type: str) -> None:  # fmt: skip
        address = self._address(dialog.target)
        if address is None:
            return
        dialog.local_cseq += 1
        branch = "z9hG4bK" + self._token()
        wants_tcp = ";transport=tcp" in dialog.target.lower()
        data = self._notify_bytes(dialog, branch, subscription_state, body, content_type,
                                  "TCP" if wants_tcp else "UDP")  # fmt: skip
        connection = 0
        if wants_tcp or len(data) > UDP_LIMIT:
            tcp_data = data if wants_tcp else data.replace(
                b"Via: SIP/2.0/UDP ", b"Via: SIP/2.0/TCP ", 1)  # same length
            connection = self.streams.send(self.name, address, tcp_data)
            if connection:
                data = tcp_data
                self._count("notify_tcp")
            elif wants_tcp:
                self._count("notify_tcp_refused")
                self._notify_failed(dialog)
                return
            else:
                self._count("notify_tcp_refused")
        now = self.env.now
        tx = _NotifyTx(dialog, data, address, now, self._t1, self._timer_f)
        self._txs[branch] = tx
        self._count("notify_sent")
        if connection:
            tx.next_at = tx.deadline  # reliable: no Timer E, Timer F only
            self._stream_txs[branch] = connection
        else:
            self._count("notify_udp")
            self._send(data, address)
        self._tx_timers.push(tx.next_at, branch)

    def _notify_bytes(self, dialog: _Dialog, branch: str, subscription_state: str, body: bytes,
                      content_type: str, transport: str) -> bytes:  # fmt: skip
        headers = Headers()
        headers.add("Via", f"SIP/2.0/{transport} {self._sent_by};branch={branch}")
        headers.add("Max-Forwards", "70")
        headers.add("From", f"{dialog.to_value};tag={dialog.key}")
        headers.add("To", dialog.from_value)
        headers.add("Call-ID", dialog.call_id)
        headers.add("CSeq", f"{dialog.local_cseq} NOTIFY")
        headers.add("Contact", self._contact)
        headers.add("Event", self.events[0])
        headers.add("Subscription-State", subscription_state)
        headers.add("Content-Type", content_type)
        if self.lists is not None:
            headers.add("Require", "eventlist")
        return Request("NOTIFY", dialog.target, headers, body).to_bytes()

    def _notify_failed(self, dialog: _Dialog) -> None:
        self._doc_versions.pop(dialog.key, None)
        super()._notify_failed(dialog)

    def _connection_lost(self, peer: Address, connection: int) -> None:
        """``simulator.streams``: the NOTIFY transactions in flight on it fail."""
        for branch, ident in list(self._stream_txs.items()):
            tx = self._txs.get(branch)
            if tx is None:
                del self._stream_txs[branch]  # ended (Timer F) while the connection lived
            elif ident == connection:
                del self._stream_txs[branch]
                del self._txs[branch]
                self._count("notify_transport_lost")
                self._notify_failed(tx.dialog)

    # -- changes (workload drivers and tests) -----------------------------------------------

    def change_presence(self, record: str) -> int:
        """A list member's presence flips: a partial NOTIFY to every dialog of every list
        holding it. (Without lists, the base behaviour.)"""
        if self.lists is None:
            return super().change_presence(record)
        self._versions[record] = self._versions.get(record, 0) + 1
        if not self.up:
            return 0
        sent = 0
        for list_uri in self.lists.holding.get(record, ()):
            if self.observer is not None:
                self.observer.presence_changed(list_uri, self.env.now)
            for dialog in self._watchers(list_uri):
                self._later(self.spec.notify_delay,
                            lambda d=dialog: self._notify_partial(d, record))  # type: ignore[misc]
                sent += 1
        return sent

    def registration_event(self, aor: str, kind: str) -> int:
        """``kind`` refresh or expire on one AOR (see the module rules); returns the
        NOTIFYs it caused."""
        reg = self.reg
        if reg is None:
            raise ValueError("registration_event needs package reg")
        now = self.env.now
        if kind == "refresh":
            contact = reg.refresh(aor, now, self._changes)
        elif kind == "expire":
            contact = reg.expire(aor, self._changes)
            if contact is not None:
                chosen = contact

                def again() -> None:
                    reg.reregister(chosen, self.env.now)
                    self._registration_changed(aor, chosen)

                self.env.timeout(reg.spec.reregister_after).callbacks.append(lambda _e: again())
        else:
            raise ValueError(f"unknown registration event {kind!r}")
        if contact is None:
            self._count("reg_events_without_contact")
            return 0
        return self._registration_changed(aor, contact)

    def _registration_changed(self, aor: str, contact: _Contact) -> int:
        self._count("reg_events")
        if not self.up:
            return 0
        if self.observer is not None:
            self.observer.presence_changed(aor, self.env.now)
        watchers = self._watchers(aor)
        for dialog in watchers:
            self._later(self.spec.notify_delay,
                        lambda d=dialog: self._notify_partial(d, contact))  # type: ignore[misc]
        return len(watchers)

    def come_up(self, state_lost: bool) -> None:
        if state_lost:
            self._doc_versions.clear()
            self._stream_txs.clear()
            self._stream_in.clear()
        super().come_up(state_lost)


def schedule_package_changes(sim: Any, rng: random.Random) -> None:
    """The change process of a reg or presence-list run (one notifier, topology single):
    member presence changes at ``presence_changes_per_hour`` per presentity, or
    registration events at (refreshes + expiries) per hour per AOR."""
    workload = sim.workload
    domain = sim.domains[0]
    notifier = domain.notifier
    assert isinstance(notifier, PackageNotifier)
    if workload.package == "presence-list":
        members = sim.members
        rate = workload.presence_changes_per_hour * len(members) / 3600.0
        if rate <= 0:
            return

        def change() -> None:
            notifier.change_presence(members[rng.randrange(len(members))])
            sim.call_at(sim.env.now + rng.expovariate(rate), change)

        sim.call_at(rng.expovariate(rate), change)
        return
    spec = workload.reg
    aors = domain.records
    per_aor = spec.refreshes_per_hour + spec.expiries_per_hour
    rate = per_aor * len(aors) / 3600.0
    if rate <= 0:
        return
    refresh_share = spec.refreshes_per_hour / per_aor

    def event() -> None:
        aor = aors[rng.randrange(len(aors))]
        notifier.registration_event(aor, "refresh" if rng.random() < refresh_share else "expire")
        sim.call_at(sim.env.now + rng.expovariate(rate), event)

    sim.call_at(rng.expovariate(rate), event)


def package_figures(sim: Any) -> dict[str, dict[str, int]]:
    """The summary sections of a run with the stream layer (``transport``: the stream
    layer's counters; ``tcp_messages_by_type``) and of another package than presence
    (``status_deliveries_by_package``: "PACKAGE STATUS" -> status messages). Empty for a
    presence run over UDP, whose summary stays as it was."""
    figures: dict[str, dict[str, int]] = {}
    streams = sim.streams
    if streams is not None:
        figures["transport"] = dict(streams.counters)
        figures["tcp_messages_by_type"] = dict(sorted(streams.by_type.items()))
    if sim.workload.package != "presence":
        deliveries: dict[str, int] = {}
        for domain in sim.domains:
            for key, count in domain.agent.package_deliveries.items():
                deliveries[key] = deliveries.get(key, 0) + count
        figures["status_deliveries_by_package"] = dict(sorted(deliveries.items()))
    return figures
