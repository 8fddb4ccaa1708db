"""A presence server (notifier) model: a real SIP peer of the agent on the simulated network.

Answers SUBSCRIBE per RFC 6665 (200 with Expires = min(requested, max_expires), 423 with
Min-Expires, configurable rejections, 481 for unknown dialogs, 503 + Retry-After when its
request queue is full), keeps dialogs (To tag on the 2xx, increasing NOTIFY CSeq), sends
NOTIFY on subscribe, refresh, presence change, expiry (``terminated;reason=timeout``) and on
demand, each NOTIFY in its own RFC 3261 non-INVITE client transaction (Timer E
retransmissions over the lossy network, Timer F timeout, Timer K absorbing retransmitted
answers). Outages: while down it is silent; when it comes back it has either lost its state
(refreshes get 481) or kept it.

Built for 100,000 dialogs per node (see ``benchmarks/sim_bench.py``):

* the agent's SUBSCRIBEs and answers are read by ``simulator.sipscan`` (the values it needs,
  straight from the bytes); anything of another shape takes ``reference.sip.parse_message``
  and ``make_response``, which decide how malformed input is rejected;
* responses and NOTIFYs are written from templates (the same bytes ``make_response`` /
  ``Request.to_bytes`` write: ``tests/simulator/test_sipscan.py``), the PIDF body from a
  template equal to ``build_pidf``'s output;
* a dialog is one slotted object holding shared (interned) strings where it can; a NOTIFY
  transaction is one slotted object while it waits for its answer and one dict entry during
  Timer K; dialog expiries and transaction timers are ``DeadlineQueue`` entries, not SimPy
  events, and a remembered SUBSCRIBE answer is a (status, tag, extra headers) recipe.

Iteration order is always insertion order (dicts, never sets) so runs are reproducible.
"""

from __future__ import annotations

import fnmatch
import math
import re
import sys
from collections.abc import Callable
from typing import Any, Protocol

from reference.pidf import build_pidf
from reference.sip import (
    Request,
    Response,
    SipParseError,
    make_response,
    parse_message,
    parse_uri,
    reason_phrase,
)
from reference.sip.transaction import TimerSettings, normalize_sent_by
from simulator.network import Address, Network
from simulator.rng import stream
from simulator.sipscan import ScannedResponse, ScannedSubscribe, scan_response, scan_subscribe
from simulator.timers import DeadlineQueue, call_later
from simulator.workload import NotifierSpec, RejectRule

PIDF_TYPE = "application/pidf+xml"
ADDRESS_CACHE_SIZE = 1024  # Contact URI -> address: one entry per agent in practice
RETRANSMISSION_MEMORY = 32.0  # how long a SUBSCRIBE's response is kept for retransmissions
# Any character build_pidf would escape in the entity (one search, not a loop over it).
_XML_SPECIAL = re.compile("[&<>\"']")

Extra = tuple[tuple[str, str], ...]  # extra response headers, in order
# How to rebuild a SUBSCRIBE's answer from a retransmission of it (a byte copy): status,
# To tag added, extra headers. Raw bytes for requests that took the full parser.
Answer = tuple[int, str | None, Extra] | bytes


class NotifierObserver(Protocol):
    """What the notifier reports to metrics."""

    def dialog_live(self, notifier: str, delta: int, now: float) -> None: ...
    def notifier_up(self, notifier: str, up: bool, now: float) -> None: ...
    def presence_changed(self, record: str, now: float) -> None: ...


# Our To tag: drawn unique among this notifier's live dialogs, it names one alone (no
# (Call-ID, tag) tuple per dialog); an in-dialog request must also carry the Call-ID.
DialogKey = str


def _token_text(bits: int) -> str:
    """A 48-bit token (tag or branch) as its text, 12 hex digits; ``int(text, 16)`` gives
    the bits back (the expiry queue keys dialogs by their tags' bits)."""
    return f"{bits:012x}"


def epoch_start_bound(epoch: int, length: float) -> float:
    """A time no later than the first ``now`` with ``int(now // length) >= epoch``: one
    float step below ``epoch * length``, which may have rounded up. Checked against it
    (``now >= bound``), a generation never moves late; early only costs a division."""
    return math.nextafter(epoch * length, -math.inf)


class _Dialog:
    """One subscription dialog (our side). Strings shared by many dialogs are interned."""

    __slots__ = ("call_id", "expires_at", "from_head", "from_tag", "key", "local_cseq",
                 "record", "remote_cseq", "subscriber", "target", "to_value")  # fmt: skip

    def __init__(
        self,
        key: DialogKey,
        call_id: str,
        record: str,
        subscriber: str,
        to_value: str,
        from_value: str,
        target: str,
        expires_at: float,
        remote_cseq: int,
    ) -> None:
        self.key = key  # our To tag (interned), the key of Notifier._dialogs
        self.call_id = call_id  # interned: the agent's Dialog holds the same string
        self.record = record  # To URI (interned)
        self.subscriber = subscriber  # From URI (interned)
        self.to_value = to_value  # their To value (interned) -> NOTIFY From, with our tag
        # Their From value (-> NOTIFY To), kept split at its last ";tag=" (losslessly:
        # `from_value` joins the two again), both parts interned: the head is the agent's
        # local URI and the tag its local tag (reference.sip.dialog interns both), so the
        # dialog holds no ~90-byte copy of its own.
        head, sep, tail = from_value.rpartition(";tag=")
        self.from_head = sys.intern(head) if sep else from_value
        self.from_tag = sys.intern(tail) if sep else None
        self.target = target  # their Contact URI (interned)
        self.expires_at = expires_at
        self.local_cseq = 0
        self.remote_cseq = remote_cseq

    @property
    def from_value(self) -> str:
        """Their From value, as it came."""
        tag = self.from_tag
        return self.from_head if tag is None else f"{self.from_head};tag={tag}"


class _NotifyTx:
    """A NOTIFY client transaction in Trying/Proceeding (RFC 3261 §17.1.2, UDP)."""

    __slots__ = ("address", "data", "deadline", "dialog", "interval", "next_at", "proceeding")

    def __init__(self, dialog: _Dialog, data: bytes, address: Address, now: float,
                 t1: float, timer_f: float) -> None:  # fmt: skip
        self.dialog = dialog
        self.data = data
        self.address = address
        self.interval = t1  # next Timer E interval while Trying
        self.deadline = now + timer_f  # Timer F
        first = now + self.interval
        self.next_at = first if first <= self.deadline else self.deadline  # min(), inline
        self.proceeding = False


class _Incoming:
    """A SUBSCRIBE being served: its server-transaction key and how it was read."""

    __slots__ = ("key", "request", "scanned")

    def __init__(
        self, key: tuple[str, ...], scanned: ScannedSubscribe | None, request: Request | None
    ) -> None:
        self.key = key
        self.scanned = scanned  # fast path
        self.request = request  # full parser (values read when processed)


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
        # Read per NOTIFY: Timer F is a property (a call), T1 and T4 are read once here.
        self._t1 = self.settings.t1
        self._timer_f = self.settings.timer_f
        self._t4 = self.settings.t4
        # Event packages served (simulator.packages_model serves reg; lists are presence).
        self.events: tuple[str, ...] = ("presence",)
        self._ids = stream(seed, "notifier", name, "ids")
        self._reject_rng = stream(seed, "notifier", name, "reject")
        self._dialogs: dict[DialogKey, _Dialog] = {}
        # record -> its dialog, or its dialogs in creation order when more than one
        self._by_record: dict[str, _Dialog | list[_Dialog]] = {}
        self._versions: dict[str, int] = {}  # record -> changes so far (odd: closed)
        self._last_body: tuple[str, int, bytes] = ("", -1, b"")  # (record, version, body)
        self._expiries = DeadlineQueue(env, self._expired, self._expiry_due)
        self._txs: dict[str, _NotifyTx] = {}  # by branch, while Trying/Proceeding
        self._tx_timers = DeadlineQueue(env, self._tx_timer, self._tx_due)
        # Completed NOTIFY transactions (Timer K): branch -> end of Completed, in two
        # generations of T4 seconds so old entries go without a timer each.
        self._completed: dict[str, float] = {}
        self._completed_old: dict[str, float] = {}
        self._completed_epoch = 0
        # No generation moves on before these times (what the epochs give, read without a
        # division per NOTIFY answer; see _complete and _age_answers).
        self._completed_age_at = 0.0
        self._answers_age_at = 0.0
        # Server side: answers by transaction key for absorbing retransmissions; None while
        # the request is still being processed.
        self._answered: dict[tuple[str, ...], Answer | None] = {}
        self._answered_old: dict[tuple[str, ...], Answer | None] = {}
        self._answered_epoch = 0
        self._busy_until = 0.0
        self.counters: dict[str, int] = {}
        self._addresses: dict[str, Address] = {}  # one shared tuple per Contact URI
        self._ok_extra: dict[int, Extra] = {}  # granted Expires -> 200's extra headers
        host, port = address
        self._sent_by = f"{host}:{port}"
        self._sent_by_key = normalize_sent_by("UDP", host, port)  # as responses must carry
        self._contact = f"<sip:{spec.domain}@{host}:{port}>"
        network.add_node(name, address, self.handle_datagram, aliases=[spec.domain])

    # -- helpers ----------------------------------------------------------------------------

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def _token(self) -> str:
        return _token_text(self._ids.getrandbits(48))

    def _send(self, data: bytes, destination: Address) -> None:
        if self.up:
            self.network.send(self.name, destination, data)

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        if delay <= 0:
            action()
        else:
            call_later(self.env, delay, action)

    def _pair_changed(self, dialog: _Dialog, delta: int) -> None:
        """Tell the observer when ``dialog``, just added to (``delta`` 1) or removed from
        (-1) its record's watchers, is the only live dialog of its (subscriber, record)
        pair: the record's few watchers are scanned, no count is kept per pair."""
        if self.observer is None:
            return
        watchers = self._by_record.get(dialog.record)
        if isinstance(watchers, list):
            subscriber = dialog.subscriber
            if any(w.subscriber == subscriber and w is not dialog for w in watchers):
                return
        elif watchers is not None and watchers is not dialog \
                and watchers.subscriber == dialog.subscriber:  # fmt: skip
            return
        self.observer.dialog_live(self.name, delta, self.env.now)

    @property
    def dialog_count(self) -> int:
        return len(self._dialogs)

    @property
    def pending_transactions(self) -> int:
        """NOTIFY transactions waiting for an answer (Trying or Proceeding)."""
        return len(self._txs)

    # -- receiving --------------------------------------------------------------------------

    def handle_datagram(self, data: bytes, source: Address) -> None:
        if not self.up:
            self._count("dropped_while_down")
            return
        if data.startswith(b"SIP/2.0 "):
            response = scan_response(data)
            if response is not None:
                self._on_response(response)
                return
        elif data.startswith(b"SUBSCRIBE "):
            scanned = scan_subscribe(data)
            if scanned is not None:
                key = (scanned.branch, scanned.sent_by)
                self._on_subscribe(_Incoming(key, scanned, None), source)
                return
        self._handle_parsed(data, source)

    def _handle_parsed(self, data: bytes, source: Address) -> None:
        """Anything the scanners do not take: the full parser decides."""
        try:
            message = parse_message(data)
        except SipParseError:
            self._count("unparsable")
            return
        if isinstance(message, Response):
            try:
                top = message.top_via
                method = message.cseq.method
                single_via = len(message.vias) == 1
            except SipParseError:
                return
            if top is None or not top.branch:
                self._count("stray_responses")
                return
            sent_by = normalize_sent_by(top.transport, top.host, top.port)
            if not single_via:
                # §8.1.3.3: a response with several Vias is discarded (by its transaction).
                sent_by = ""
            self._on_response(ScannedResponse(message.status, top.branch, sent_by, method))
        elif message.method == "SUBSCRIBE":
            try:
                via = message.vias[0]
                key = (via.branch or "", message.cseq.method, via.host, str(via.port))
            except (SipParseError, IndexError):
                self._count("bad_request")
                return
            self._on_subscribe(_Incoming(key, None, message), source)
        else:
            self._count("unexpected_request")

    def _age_answers(self, now: float) -> None:
        """Move the remembered answers on by generations of RETRANSMISSION_MEMORY seconds
        (an answer is kept 32 to 64 s). Called when a SUBSCRIBE arrives and when a NOTIFY
        transaction completes: between refresh waves no SUBSCRIBE comes for most of an
        hour, and the last wave's answers must not stay until the next one."""
        epoch = int(now // RETRANSMISSION_MEMORY)
        if epoch != self._answered_epoch:
            fresh = epoch == self._answered_epoch + 1
            self._answered_old = self._answered if fresh else {}
            self._answered = {}
            self._answered_epoch = epoch
        # The next epoch starts there exactly (a power of two: now // it has no rounding).
        self._answers_age_at = (epoch + 1) * RETRANSMISSION_MEMORY

    def _remember(self, key: tuple[str, ...], value: Answer | None) -> None:
        if self.env.now >= self._answers_age_at:
            self._age_answers(self.env.now)
        self._answered[key] = value

    def _on_subscribe(self, incoming: _Incoming, source: Address) -> None:
        key = incoming.key
        if self.env.now >= self._answers_age_at:
            self._age_answers(self.env.now)
        if key in self._answered or key in self._answered_old:
            cached = self._answered.get(key, self._answered_old.get(key))
            self._count("subscribe_retransmissions")
            if isinstance(cached, bytes):
                self._send(cached, source)
            elif cached is not None:
                # A retransmission is a byte copy of the request: the same answer again.
                status, tag, extra = cached
                self._send(self._build(incoming, status, tag, extra), source)
            return
        self._answered[key] = None  # being processed (the answers were aged just above)
        now = self.env.now
        service = self.spec.service_time
        if service > 0:
            start = max(now, self._busy_until)
            if (start - now) / service > self.spec.queue_limit:
                self._count("overloaded")
                retry = str(self.spec.overload_retry_after)
                self._respond(incoming, source, 503, extra=(("Retry-After", retry),))
                return
            self._busy_until = start + service
            delay = self._busy_until - now + self.spec.response_delay
        else:
            delay = self.spec.response_delay
        if delay <= 0:
            self._process_subscribe(incoming, source)  # what _later does, without a closure
        else:
            call_later(self.env, delay, lambda: self._process_subscribe(incoming, source))

    # -- answering --------------------------------------------------------------------------

    @staticmethod
    def _render(scanned: ScannedSubscribe, status: int, tag: str | None, extra: Extra) -> bytes:
        """What make_response(request, status, to_tag=tag, headers=extra) writes."""
        to_value = scanned.to_value
        if tag is not None and scanned.to_tag is None:
            to_value = f"{to_value};tag={tag}"
        vias = "".join([f"Via: {via}\r\n" for via in scanned.vias])
        headers = "".join([f"{name}: {value}\r\n" for name, value in extra])
        return (
            f"SIP/2.0 {status} {reason_phrase(status)}\r\n{vias}"
            f"From: {scanned.from_value}\r\nTo: {to_value}\r\nCall-ID: {scanned.call_id}\r\n"
            f"CSeq: {scanned.cseq_value}\r\n{headers}Content-Length: 0\r\n\r\n"
        ).encode()

    def _build(self, incoming: _Incoming, status: int, tag: str | None, extra: Extra) -> bytes:
        if incoming.scanned is not None:
            return self._render(incoming.scanned, status, tag, extra)
        assert incoming.request is not None
        return make_response(incoming.request, status, to_tag=tag, headers=extra).to_bytes()

    def _respond(
        self,
        incoming: _Incoming,
        source: Address,
        status: int,
        *,
        to_tag: str | None = None,
        extra: Extra = (),
    ) -> None:
        # RFC 3261 §18.2.2 / RFC 3581: answer to the source (received/rport behaviour).
        data = self._build(incoming, status, to_tag, extra)
        # Fast-path answers are remembered as a recipe (a few shared objects), others as bytes.
        self._remember(incoming.key, (status, to_tag, extra) if incoming.scanned else data)
        self._count(f"response_{status}")
        self._send(data, source)

    def _ok_headers(self, granted: int) -> Extra:
        extra = self._ok_extra.get(granted)
        if extra is None:
            extra = (("Expires", str(granted)), ("Contact", self._contact))
            if len(self._ok_extra) < 64:
                self._ok_extra[granted] = extra
        return extra

    def _read_parsed(self, request: Request) -> ScannedSubscribe:
        """The values of a request that took the full parser (SipParseError if bad)."""
        event = request.event
        to = request.to
        from_ = request.from_
        contacts = request.contacts
        return ScannedSubscribe(
            vias=[],
            branch="",
            sent_by="",
            from_value=request.headers.get("From") or str(from_),
            from_uri=from_.uri,
            to_value=request.headers.get("To") or str(to),
            to_uri=to.uri,
            to_tag=to.tag,
            call_id=request.call_id,
            cseq_value="",
            cseq=request.cseq.number,
            contact_uri=contacts[0].uri if contacts else None,
            package=None if event is None else event.package,
            expires=request.expires,
        )

    def _process_subscribe(self, incoming: _Incoming, source: Address) -> None:
        if not self.up:
            return
        values = incoming.scanned
        if values is None:
            assert incoming.request is not None
            try:
                values = self._read_parsed(incoming.request)
            except SipParseError:
                self._respond(incoming, source, 400)
                return
        if values.package not in self.events:
            self._respond(incoming, source, 489, extra=(("Allow-Events", ", ".join(self.events)),))
            return
        spec = self.spec
        expires = spec.max_expires if values.expires is None else values.expires
        if 0 < expires < spec.min_expires:
            self._respond(incoming, source, 423, extra=(("Min-Expires", str(spec.min_expires)),))
            return
        granted = min(expires, spec.max_expires)
        if values.to_tag is not None:
            self._in_dialog_subscribe(incoming, values, source, values.to_tag, granted)
            return
        record = sys.intern(values.to_uri)  # shared with _versions, _by_record, dialogs
        rule = self._rejection(record) if self.spec.reject else None
        if rule is not None:
            retry: Extra = ()
            if rule.retry_after is not None:
                retry = (("Retry-After", str(rule.retry_after)),)
            self._respond(incoming, source, rule.code, extra=retry)
            return
        if values.contact_uri is None:
            self._respond(incoming, source, 400)
            return
        target = sys.intern(values.contact_uri)  # every dialog of one agent has the same one
        if self._address(target) is None:
            self._respond(incoming, source, 400)
            return
        tag = self._token()
        while tag in self._dialogs:  # a collision: practically never
            tag = self._token()
        dialog = _Dialog(
            # Interned: the agent interns its copies (reference.sip.dialog), so both sides
            # of the dialog share the Call-ID and the tag.
            key=sys.intern(tag),
            call_id=sys.intern(values.call_id),
            record=record,
            subscriber=sys.intern(values.from_uri),
            to_value=sys.intern(values.to_value),
            from_value=values.from_value,
            target=target,
            expires_at=self.env.now + granted,
            remote_cseq=values.cseq,
        )
        self._respond(incoming, source, 200, to_tag=tag, extra=self._ok_headers(granted))
        if granted == 0:
            # A fetch: one NOTIFY with the state and the subscription is over.
            self._later(self.spec.notify_delay, lambda: self._notify_final(dialog, "timeout"))
            return
        self._add_dialog(dialog)
        if self.spec.notify_delay <= 0:
            self._notify_state(dialog)  # what _later does, without a closure
        else:
            call_later(self.env, self.spec.notify_delay, lambda: self._notify_state(dialog))

    def _address(self, target: str) -> Address | None:
        address = self._addresses.get(target)
        if address is None:
            try:
                address = parse_uri(target).address()
            except SipParseError:
                return None
            if len(self._addresses) < ADDRESS_CACHE_SIZE:
                self._addresses[target] = address
        return address

    def _in_dialog_subscribe(
        self,
        incoming: _Incoming,
        values: ScannedSubscribe,
        source: Address,
        tag: str,
        granted: int,
    ) -> None:
        dialog = self._dialogs.get(tag)
        if dialog is None or dialog.call_id != values.call_id:
            self._respond(incoming, source, 481)
            return
        if values.cseq <= dialog.remote_cseq:
            self._respond(incoming, source, 500, extra=(("Retry-After", "1"),))
            return
        dialog.remote_cseq = values.cseq
        self._respond(incoming, source, 200, extra=self._ok_headers(granted))
        if granted == 0:
            self._remove_dialog(dialog)
            self._later(self.spec.notify_delay, lambda: self._notify_final(dialog, "timeout"))
            return
        before = dialog.expires_at
        dialog.expires_at = self.env.now + granted
        if dialog.expires_at < before:  # earlier than its queued deadline: queue this one
            self._queue_expiry(dialog)
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
        watchers = self._by_record.get(dialog.record)
        if watchers is None:
            self._by_record[dialog.record] = dialog
        elif isinstance(watchers, list):
            watchers.append(dialog)
        else:
            self._by_record[dialog.record] = [watchers, dialog]
        self._pair_changed(dialog, 1)
        self._queue_expiry(dialog)

    def _remove_dialog(self, dialog: _Dialog) -> None:
        if self._dialogs.get(dialog.key) is not dialog:
            return
        del self._dialogs[dialog.key]
        watchers = self._by_record.get(dialog.record)
        if watchers is dialog:
            del self._by_record[dialog.record]
        elif isinstance(watchers, list):
            watchers.remove(dialog)
            if len(watchers) == 1:
                self._by_record[dialog.record] = watchers[0]
        self._pair_changed(dialog, -1)
        # Its expiry entry stays queued; _expiry_due drops it.

    def _watchers(self, record: str) -> list[_Dialog]:
        watchers = self._by_record.get(record)
        if watchers is None:
            return []
        return list(watchers) if isinstance(watchers, list) else [watchers]

    # The expiry queue's keys are the dialogs' tags read as ints (`_token_text`): an int key
    # packs into the queue's entry (simulator.timers), a string would take a table entry.
    def _queue_expiry(self, dialog: _Dialog) -> None:
        self._expiries.push(dialog.expires_at, int(dialog.key, 16))

    def _expiry_due(self, tag: int) -> float | None:
        dialog = self._dialogs.get(_token_text(tag))
        return None if dialog is None else dialog.expires_at

    def _expired(self, tag: int) -> None:
        dialog = self._dialogs[_token_text(tag)]
        self._remove_dialog(dialog)
        self._count("expired")
        if self.up:
            self._notify_final(dialog, "timeout")

    # -- NOTIFY -----------------------------------------------------------------------------

    def _body(self, record: str) -> bytes:
        version = self._versions.get(record, 0)
        last = self._last_body
        if last[0] == record and last[1] == version:
            return last[2]  # the NOTIFYs of one change go out together: built once
        basic = "closed" if version % 2 else "open"
        if record.isascii() and _XML_SPECIAL.search(record) is None:
            # build_pidf(record, basic=..., note=f"version {n}") for a record needing no
            # XML escaping.
            body = (
                "<?xml version='1.0' encoding='UTF-8'?>\n"
                f'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{record}">'
                f'<tuple id="t1"><status><basic>{basic}</basic></status>'
                f"<note>version {version}</note></tuple></presence>"
            ).encode()
        else:
            body = build_pidf(record, basic=basic, note=f"version {version}")
        self._last_body = (record, version, body)
        return body

    def _notify_state(self, dialog: _Dialog) -> None:
        if self._dialogs.get(dialog.key) is not dialog:
            return
        remaining = round(dialog.expires_at - self.env.now)
        self._notify(dialog, f"active;expires={remaining if remaining > 0 else 0}")

    def _notify_final(self, dialog: _Dialog, reason: str, retry_after: int | None = None) -> None:
        state = f"terminated;reason={reason}"
        if retry_after is not None:
            state += f";retry-after={retry_after}"
        self._notify(dialog, state)

    def _notify(self, dialog: _Dialog, subscription_state: str) -> None:
        if not self.up:
            return
        address = self._addresses.get(dialog.target) or self._address(dialog.target)
        if address is None:  # cannot happen: checked when the dialog was made
            return
        dialog.local_cseq += 1
        branch = f"z9hG4bK{self._ids.getrandbits(48):012x}"  # "z9hG4bK" + self._token()
        body = self._body(dialog.record)
        from_tag = dialog.from_tag  # their From value (from_value), written in place
        to_tag = "" if from_tag is None else ";tag=" + from_tag
        # The same bytes as Request("NOTIFY", target, headers, body).to_bytes() with these
        # headers in this order (tests/simulator/test_sipscan.py).
        data = (
            f"NOTIFY {dialog.target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self._sent_by};branch={branch}\r\nMax-Forwards: 70\r\n"
            f"From: {dialog.to_value};tag={dialog.key}\r\nTo: {dialog.from_head}{to_tag}\r\n"
            f"Call-ID: {dialog.call_id}\r\nCSeq: {dialog.local_cseq} NOTIFY\r\n"
            f"Contact: {self._contact}\r\nEvent: presence\r\n"
            f"Subscription-State: {subscription_state}\r\nContent-Type: {PIDF_TYPE}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        tx = _NotifyTx(dialog, data, address, self.env.now, self._t1, self._timer_f)
        self._txs[branch] = tx
        counters = self.counters
        counters["notify_sent"] = counters.get("notify_sent", 0) + 1
        self.network.send(self.name, address, data)  # up: checked above
        self._tx_timers.push(tx.next_at, branch)

    def _tx_due(self, branch: str) -> float | None:
        tx = self._txs.get(branch)
        return None if tx is None else tx.next_at

    def _tx_timer(self, branch: str) -> None:
        """Timer E (retransmit) or, at the deadline, Timer F (time out)."""
        tx = self._txs[branch]
        if not self.up:
            # A server that is down does nothing; its transactions die with it.
            del self._txs[branch]
            return
        now = self.env.now
        if now >= tx.deadline:
            del self._txs[branch]
            self._count("notify_timeouts")
            self._notify_failed(tx.dialog)
            return
        if tx.proceeding:
            tx.interval = self.settings.t2
        else:
            tx.interval = min(2 * tx.interval, self.settings.t2)
        tx.next_at = min(now + tx.interval, tx.deadline)
        self._send(tx.data, tx.address)
        self._tx_timers.push(tx.next_at, branch)

    def _on_response(self, response: ScannedResponse) -> None:
        branch = response.branch
        tx = self._txs.get(branch) if response.method == "NOTIFY" else None
        if tx is None:
            if response.method == "NOTIFY" and self._is_completed(branch):
                return  # Timer K: a retransmitted answer
            self._count("stray_responses")
            return
        if response.sent_by != self._sent_by_key:
            return  # §18.1.2 / §8.1.3.3: not a response to us (other sent-by, several Vias)
        if response.status < 200:
            tx.proceeding = True
            return
        del self._txs[branch]
        t4 = self._t4
        if t4 > 0:  # else reliable transport: Timer K = 0
            self._complete(branch, t4)
        if response.status >= 300:
            self._count(f"notify_rejected_{response.status}")
            self._notify_failed(tx.dialog)

    def _complete(self, branch: str, t4: float) -> None:
        """Timer K (``t4`` > 0) for a NOTIFY transaction that got its final answer."""
        now = self.env.now
        if now >= self._answers_age_at:
            self._age_answers(now)
        if now >= self._completed_age_at:
            epoch = int(now // t4)
            if epoch != self._completed_epoch:
                fresh = epoch == self._completed_epoch + 1
                self._completed_old = self._completed if fresh else {}
                self._completed = {}
                self._completed_epoch = epoch
            self._completed_age_at = epoch_start_bound(epoch + 1, t4)
        self._completed[branch] = now + t4

    def _is_completed(self, branch: str) -> bool:
        until = self._completed.get(branch)
        if until is None:
            until = self._completed_old.get(branch)
        return until is not None and self.env.now < until

    def _notify_failed(self, dialog: _Dialog) -> None:
        # RFC 6665 §4.2.2: a failed NOTIFY (timeout or error response) ends the subscription.
        self._remove_dialog(dialog)

    # -- control (workload drivers and tests) -------------------------------------------------

    def change_presence(self, record: str) -> int:
        """Flip the record's basic status; NOTIFY every dialog watching it. Returns count."""
        self._versions[record] = self._versions.get(record, 0) + 1
        if self.observer is not None and self.up:
            self.observer.presence_changed(record, self.env.now)
        if not self.up:
            return 0
        watchers = self._by_record.get(record)
        if watchers is None:
            return 0
        dialogs = list(watchers) if isinstance(watchers, list) else (watchers,)
        delay = self.spec.notify_delay
        for dialog in dialogs:
            if delay <= 0:
                self._notify_state(dialog)  # what _later does at once, without a closure
            else:
                self._later(delay, lambda d=dialog: self._notify_state(d))  # type: ignore[misc]
        return len(dialogs)

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
            self._expiries.clear()
            self._txs.clear()
            self._tx_timers.clear()
            self._completed.clear()
            self._completed_old.clear()
            self._answered.clear()
            self._answered_old.clear()
        self._busy_until = self.env.now
        self.up = True
        if self.observer is not None:
            self.observer.notifier_up(self.name, True, self.env.now)
