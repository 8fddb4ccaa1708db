"""A presence server (notifier) model built on ``reference.sip``.

Answers SUBSCRIBE per RFC 6665 (200 with Expires = min(requested, max_expires), 423 with
Min-Expires, configurable rejections, 481 for unknown dialogs, 503 + Retry-After when its
request queue is full), keeps dialogs (To tag on the 2xx, increasing NOTIFY CSeq), sends
NOTIFY on subscribe, refresh, presence change, expiry (``terminated;reason=timeout``) and on
demand, each NOTIFY in its own RFC 3261 client transaction (retransmitted over the lossy
network). Outages: while down it is silent; when it comes back it has either lost its state
(refreshes get 481) or kept it.

Iteration order is always insertion order (dicts, never sets) so runs are reproducible.
"""

from __future__ import annotations

import fnmatch
import itertools
import sys
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from reference.pidf import build_pidf
from reference.sip import (
    Headers,
    Request,
    Response,
    SipParseError,
    make_response,
    parse_message,
    parse_uri,
)
from reference.sip.transaction import (
    ClearTimer,
    ClientTransaction,
    PassUp,
    SetTimer,
    TimedOut,
    TimerSettings,
    Transmit,
    client_key,
    normalize_sent_by,
)
from simulator.network import Address, Network
from simulator.rng import stream
from simulator.timers import CallbackTimers
from simulator.workload import NotifierSpec, RejectRule

DialogKey = tuple[str, str]  # (Call-ID, our tag)
PIDF_TYPE = "application/pidf+xml"
# The NOTIFY's header fields in order, as (lookup key, canonical name).
_NOTIFY_NAMES = tuple(
    (name.lower(), name)
    for name in ("Via", "Max-Forwards", "From", "To", "Call-ID", "CSeq", "Contact", "Event",
                 "Subscription-State", "Content-Type")
)  # fmt: skip
ADDRESS_CACHE_SIZE = 1024  # Contact URI -> address: one entry per agent in practice
RETRANSMISSION_MEMORY = 32.0  # how long a SUBSCRIBE's response is kept for retransmissions


class NotifierObserver(Protocol):
    """What the notifier reports to metrics."""

    def dialog_live(self, notifier: str, delta: int, now: float) -> None: ...
    def notifier_up(self, notifier: str, up: bool, now: float) -> None: ...
    def presence_changed(self, record: str, now: float) -> None: ...


@dataclass(slots=True)
class _Dialog:
    key: DialogKey
    record: str
    pair: tuple[str, str]  # (subscriber URI, record): one internal subscription
    notify_from: str  # our To value with our tag -> NOTIFY From
    notify_to: str  # their From value -> NOTIFY To
    target: str  # their Contact URI
    target_address: Address
    expires_at: float
    local_cseq: int = 0
    remote_cseq: int = 0


class Notifier:
    """One presence server node. ``handle_datagram`` is its network receiver."""

    def __init__(
        self,
        env: Any,
        network: Network,
        name: str,
        address: Address,
        spec: NotifierSpec,
        seed: int,
        observer: NotifierObserver | None = None,
        timer_settings: TimerSettings | None = None,
    ) -> None:
        self.env = env
        self.network = network
        self.name = name
        self.address = address
        self.spec = spec
        self.observer = observer
        self.up = True
        self.settings = timer_settings or TimerSettings()
        self._ids = stream(seed, "notifier", name, "ids")
        self._reject_rng = stream(seed, "notifier", name, "reject")
        self._timers = CallbackTimers(env, self._timer_fired)
        self._dialogs: dict[DialogKey, _Dialog] = {}
        # record -> its dialogs in creation order (a list: few watchers per record, and a
        # list is a third of a dict's size at 100,000 records)
        self._by_record: dict[str, list[DialogKey]] = {}
        self._pairs: dict[tuple[str, str], int] = {}
        self._state: dict[str, tuple[str, int]] = {}  # record -> (basic, version)
        self._bodies: dict[str, tuple[int, bytes]] = {}  # record -> (version, PIDF body)
        self._transactions: dict[tuple[str, str], ClientTransaction] = {}
        self._tx_dialog: dict[tuple[str, str], DialogKey] = {}
        # Server side: responses by (branch, method, sent-by) for absorbing retransmissions;
        # None while the request is still being processed.
        self._answered: dict[tuple[str, ...], bytes | None] = {}
        self._answered_old: dict[tuple[str, ...], bytes | None] = {}
        self._answered_epoch = 0
        self._busy_until = 0.0
        self.counters: dict[str, int] = {}
        self._seq = itertools.count(1)
        self._addresses: dict[str, Address] = {}  # one shared tuple per Contact URI
        host, port = address
        self._sent_by = f"{host}:{port}"
        self._sent_by_key = normalize_sent_by("UDP", host, port)  # as ClientTransaction keys it
        self._contact = f"<sip:{spec.domain}@{host}:{port}>"
        network.add_node(name, address, self.handle_datagram, aliases=[spec.domain])

    # -- helpers ----------------------------------------------------------------------------

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def _token(self) -> str:
        return f"{self._ids.getrandbits(48):012x}"

    def _send(self, data: bytes, destination: Address) -> None:
        if self.up:
            self.network.send(self.name, destination, data)

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        if delay <= 0:
            action()
        else:
            self.env.timeout(delay).callbacks.append(lambda _e: action())

    def _pair_delta(self, pair: tuple[str, str], delta: int) -> None:
        before = self._pairs.get(pair, 0)
        after = before + delta
        if after:
            self._pairs[pair] = after
        else:
            self._pairs.pop(pair, None)
        if self.observer is not None and (before == 0) != (after == 0):
            self.observer.dialog_live(self.name, 1 if after else -1, self.env.now)

    @property
    def dialog_count(self) -> int:
        return len(self._dialogs)

    # -- receiving --------------------------------------------------------------------------

    def handle_datagram(self, data: bytes, source: Address) -> None:
        if not self.up:
            self._count("dropped_while_down")
            return
        try:
            message = parse_message(data)
        except SipParseError:
            self._count("unparsable")
            return
        if isinstance(message, Response):
            self._on_response(message)
        elif message.method == "SUBSCRIBE":
            self._on_subscribe(message, source)
        else:
            self._count("unexpected_request")

    def _server_key(self, request: Request) -> tuple[str, ...]:
        via = request.vias[0]
        return (via.branch or "", request.cseq.method, via.host, str(via.port))

    def _remember(self, key: tuple[str, ...], value: bytes | None) -> None:
        epoch = int(self.env.now // RETRANSMISSION_MEMORY)
        if epoch != self._answered_epoch:
            fresh = epoch == self._answered_epoch + 1
            self._answered_old = self._answered if fresh else {}
            self._answered = {}
            self._answered_epoch = epoch
        self._answered[key] = value

    def _on_subscribe(self, request: Request, source: Address) -> None:
        try:
            key = self._server_key(request)
        except (SipParseError, IndexError):
            self._count("bad_request")
            return
        if key in self._answered or key in self._answered_old:
            cached = self._answered.get(key, self._answered_old.get(key))
            self._count("subscribe_retransmissions")
            if cached is not None:
                self._send(cached, source)
            return
        self._remember(key, None)
        now = self.env.now
        service = self.spec.service_time
        if service > 0:
            start = max(now, self._busy_until)
            if (start - now) / service > self.spec.queue_limit:
                self._count("overloaded")
                retry = str(self.spec.overload_retry_after)
                self._respond(request, key, source, 503, headers=[("Retry-After", retry)])
                return
            self._busy_until = start + service
            delay = self._busy_until - now + self.spec.response_delay
        else:
            delay = self.spec.response_delay
        self._later(delay, lambda: self._process_subscribe(request, key, source))

    def _respond(
        self,
        request: Request,
        key: tuple[str, ...],
        source: Address,
        status: int,
        *,
        to_tag: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        response = make_response(request, status, to_tag=to_tag, headers=headers or [])
        data = response.to_bytes()
        self._remember(key, data)
        self._count(f"response_{status}")
        self._send(data, self._response_address(request, source))

    def _response_address(self, request: Request, source: Address) -> Address:
        # RFC 3261 §18.2.2 / RFC 3581: answer to the source (received/rport behaviour).
        return source

    def _process_subscribe(self, request: Request, key: tuple[str, ...], source: Address) -> None:
        if not self.up:
            return
        try:
            event = request.event
            requested = request.expires
            to = request.to
            from_ = request.from_
            contacts = request.contacts
        except SipParseError:
            self._respond(request, key, source, 400)
            return
        if event is None or event.package != "presence":
            self._respond(request, key, source, 489, headers=[("Allow-Events", "presence")])
            return
        expires = self.spec.max_expires if requested is None else requested
        if 0 < expires < self.spec.min_expires:
            self._respond(
                request, key, source, 423, headers=[("Min-Expires", str(self.spec.min_expires))]
            )
            return
        granted = min(expires, self.spec.max_expires)
        if to.tag is not None:
            self._in_dialog_subscribe(request, key, source, to.tag, granted)
            return
        record = sys.intern(to.uri)  # shared with _state, _by_record and other dialogs
        rule = self._rejection(record)
        if rule is not None:
            extra = [] if rule.retry_after is None else [("Retry-After", str(rule.retry_after))]
            self._respond(request, key, source, rule.code, headers=extra)
            return
        if not contacts or contacts[0].uri is None:
            self._respond(request, key, source, 400)
            return
        target = sys.intern(contacts[0].uri)  # every dialog of one agent has the same one
        target_address = self._addresses.get(target)
        if target_address is None:
            try:
                target_address = parse_uri(target).address()
            except SipParseError:
                self._respond(request, key, source, 400)
                return
            if len(self._addresses) < ADDRESS_CACHE_SIZE:
                self._addresses[target] = target_address
        tag = self._token()
        dialog_key = (request.call_id, tag)
        our_to = request.headers.get("To") or str(to)
        dialog = _Dialog(
            key=dialog_key,
            record=record,
            pair=(sys.intern(from_.uri), record),
            notify_from=f"{our_to};tag={tag}",
            notify_to=request.headers.get("From") or str(from_),
            target=target,
            target_address=target_address,
            expires_at=self.env.now + granted,
            remote_cseq=request.cseq.number,
        )
        self._respond(request, key, source, 200, to_tag=tag, headers=self._ok_headers(granted))
        if granted == 0:
            # A fetch: one NOTIFY with the state and the subscription is over.
            self._later(self.spec.notify_delay, lambda: self._notify_final(dialog, "timeout"))
            return
        self._add_dialog(dialog)
        self._later(self.spec.notify_delay, lambda: self._notify_state(dialog))

    def _ok_headers(self, granted: int) -> list[tuple[str, str]]:
        return [("Expires", str(granted)), ("Contact", self._contact)]

    def _in_dialog_subscribe(
        self, request: Request, key: tuple[str, ...], source: Address, tag: str, granted: int
    ) -> None:
        dialog = self._dialogs.get((request.call_id, tag))
        if dialog is None:
            self._respond(request, key, source, 481)
            return
        if request.cseq.number <= dialog.remote_cseq:
            self._respond(request, key, source, 500, headers=[("Retry-After", "1")])
            return
        dialog.remote_cseq = request.cseq.number
        self._respond(request, key, source, 200, headers=self._ok_headers(granted))
        if granted == 0:
            self._remove_dialog(dialog)
            self._later(self.spec.notify_delay, lambda: self._notify_final(dialog, "timeout"))
            return
        dialog.expires_at = self.env.now + granted
        self._timers.start(("exp", dialog.key), dialog.expires_at)
        self._later(self.spec.notify_delay, lambda: self._notify_state(dialog))

    def _rejection(self, record: str) -> RejectRule | None:
        for rule in self.spec.reject:
            if fnmatch.fnmatchcase(record, rule.record) and (
                rule.probability >= 1.0 or self._reject_rng.random() < rule.probability
            ):
                return rule
        return None

    # -- dialogs ----------------------------------------------------------------------------

    def _add_dialog(self, dialog: _Dialog) -> None:
        self._dialogs[dialog.key] = dialog
        self._by_record.setdefault(dialog.record, []).append(dialog.key)
        self._pair_delta(dialog.pair, +1)
        self._timers.start(("exp", dialog.key), dialog.expires_at)

    def _remove_dialog(self, dialog: _Dialog) -> None:
        if self._dialogs.pop(dialog.key, None) is None:
            return
        watchers = self._by_record.get(dialog.record)
        if watchers is not None:
            watchers.remove(dialog.key)
            if not watchers:
                del self._by_record[dialog.record]
        self._pair_delta(dialog.pair, -1)
        self._timers.cancel(("exp", dialog.key))

    # -- NOTIFY -----------------------------------------------------------------------------

    def _body(self, record: str) -> bytes:
        basic, version = self._state.get(record, ("open", 0))
        cached = self._bodies.get(record)
        if cached is not None and cached[0] == version:
            return cached[1]
        body = build_pidf(record, basic=basic, note=f"version {version}")
        self._bodies[record] = (version, body)
        return body

    def _notify_state(self, dialog: _Dialog) -> None:
        if dialog.key not in self._dialogs:
            return
        remaining = max(0, round(dialog.expires_at - self.env.now))
        self._notify(dialog, f"active;expires={remaining}", self._body(dialog.record))

    def _notify_final(self, dialog: _Dialog, reason: str, retry_after: int | None = None) -> None:
        state = f"terminated;reason={reason}"
        if retry_after is not None:
            state += f";retry-after={retry_after}"
        self._notify(dialog, state, self._body(dialog.record))

    def _notify(self, dialog: _Dialog, subscription_state: str, body: bytes) -> None:
        if not self.up:
            return
        dialog.local_cseq += 1
        branch = "z9hG4bK" + self._token()
        # Built from a template (the header values are ours and known to be valid): the
        # same request, and the same bytes, as Headers.add(...) + Request.to_bytes().
        values = (  # in _NOTIFY_NAMES order
            f"SIP/2.0/UDP {self._sent_by};branch={branch}",
            "70",
            dialog.notify_from,
            dialog.notify_to,
            dialog.key[0],
            f"{dialog.local_cseq} NOTIFY",
            self._contact,
            "presence",
            subscription_state,
            PIDF_TYPE,
        )
        headers = Headers.from_trusted(
            [(key, name, value) for (key, name), value in zip(_NOTIFY_NAMES, values, strict=True)]
        )
        request = Request("NOTIFY", dialog.target, headers, body)
        data = (
            f"NOTIFY {dialog.target} SIP/2.0\r\nVia: {values[0]}\r\nMax-Forwards: 70\r\n"
            f"From: {values[2]}\r\nTo: {values[3]}\r\nCall-ID: {values[4]}\r\n"
            f"CSeq: {values[5]}\r\nContact: {values[6]}\r\nEvent: presence\r\n"
            f"Subscription-State: {values[8]}\r\nContent-Type: {PIDF_TYPE}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        tx = ClientTransaction(
            request, self.settings, data=data, branch=branch, sent_by=self._sent_by_key
        )
        self._transactions[tx.key] = tx
        self._tx_dialog[tx.key] = dialog.key
        self._count("notify_sent")
        self._apply(tx, tx.start(self.env.now), dialog.target_address)

    def _apply(self, tx: ClientTransaction, effects: list[Any], destination: Address) -> None:
        for effect in effects:
            if isinstance(effect, Transmit):
                self._send(effect.data, destination)
            elif isinstance(effect, SetTimer):
                self._timers.start(("tx", tx.key, effect.name, destination), effect.at)
            elif isinstance(effect, ClearTimer):
                self._timers.cancel(("tx", tx.key, effect.name, destination))
            elif isinstance(effect, PassUp):
                self._notify_answered(tx, effect.response)
            elif isinstance(effect, TimedOut):
                self._count("notify_timeouts")
                self._notify_failed(tx)
            else:  # Terminated
                self._transactions.pop(tx.key, None)
                self._tx_dialog.pop(tx.key, None)

    def _on_response(self, response: Response) -> None:
        try:
            key = client_key(response)
        except SipParseError:
            return
        tx = self._transactions.get(key) if key is not None else None
        if tx is None:
            self._count("stray_responses")
            return
        destination = self._dialog_address(tx)
        self._apply(tx, tx.receive_response(response, self.env.now), destination)

    def _dialog_address(self, tx: ClientTransaction) -> Address:
        dialog = self._dialogs.get(self._tx_dialog.get(tx.key, ("", "")))
        if dialog is not None:
            return dialog.target_address
        return parse_uri(tx.request.uri).address()

    def _notify_answered(self, tx: ClientTransaction, response: Response) -> None:
        if response.status >= 300:
            self._count(f"notify_rejected_{response.status}")
            self._notify_failed(tx)

    def _notify_failed(self, tx: ClientTransaction) -> None:
        # RFC 6665 §4.2.2: a failed NOTIFY (timeout or error response) ends the subscription.
        dialog = self._dialogs.get(self._tx_dialog.get(tx.key, ("", "")))
        if dialog is not None:
            self._remove_dialog(dialog)

    # -- timers -----------------------------------------------------------------------------

    def _timer_fired(self, key: Hashable) -> None:
        assert isinstance(key, tuple)
        if key[0] == "exp":
            dialog = self._dialogs.get(key[1])
            if dialog is None or dialog.expires_at > self.env.now + 1e-9:
                return
            self._remove_dialog(dialog)
            self._count("expired")
            if self.up:
                self._notify_final(dialog, "timeout")
            return
        _tag, tx_key, name, destination = key
        tx = self._transactions.get(tx_key)
        if tx is None:
            return
        if not self.up:
            # A server that is down does nothing; its transactions die with it.
            self._transactions.pop(tx_key, None)
            self._tx_dialog.pop(tx_key, None)
            return
        self._apply(tx, tx.timer_fired(name, self.env.now), destination)

    # -- control (workload drivers and tests) -------------------------------------------------

    def change_presence(self, record: str) -> int:
        """Flip the record's basic status; NOTIFY every dialog watching it. Returns count."""
        basic, version = self._state.get(record, ("open", 0))
        self._state[record] = ("closed" if basic == "open" else "open", version + 1)
        if self.observer is not None and self.up:
            self.observer.presence_changed(record, self.env.now)
        if not self.up:
            return 0
        keys = list(self._by_record.get(record, []))
        for key in keys:
            dialog = self._dialogs[key]
            self._later(self.spec.notify_delay, lambda d=dialog: self._notify_state(d))  # type: ignore[misc]
        return len(keys)

    def terminate(self, reason: str, retry_after: int | None = None, fraction: float = 1.0) -> int:
        """Terminate a share of the dialogs (chosen with the seeded stream) with ``reason``."""
        chosen = [
            d
            for d in list(self._dialogs.values())
            if fraction >= 1.0 or self._reject_rng.random() < fraction
        ]
        for dialog in chosen:
            self._remove_dialog(dialog)
            self._notify_final(dialog, reason, retry_after)
        return len(chosen)

    def go_down(self) -> None:
        self.up = False
        if self.observer is not None:
            self.observer.notifier_up(self.name, False, self.env.now)

    def come_up(self, state_lost: bool) -> None:
        if state_lost:
            for dialog in list(self._dialogs.values()):
                self._remove_dialog(dialog)
            self._transactions.clear()
            self._tx_dialog.clear()
            self._answered.clear()
            self._answered_old.clear()
        self._busy_until = self.env.now
        self.up = True
        if self.observer is not None:
            self.observer.notifier_up(self.name, True, self.env.now)
