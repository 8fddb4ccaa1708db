"""RFC 4475 torture cases that apply to a UAS receiving NOTIFY (issue 13 §4).

Each case is a NOTIFY written for this agent in the spirit of one RFC 4475 message (§3.1.2
parser tests, §3.3 application-layer semantics), carrying the identifiers of a live dialog,
so that a parser that reads only the first of two Call-IDs, or a Request-URI check that is
missing, shows up as a 200 or 481 instead of the expected answer. Every answer must reach
the sender (RFC 3261 §18.2.2: the Via's sent-by, `received` added when the source differs)
and change nothing. The cases run in-process (both profiles) and over real UDP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from benchmarks.flood_bench import (
    MiniNotifier,
    hold_subscriptions,
    running_agent,
    unknown_notify,
)
from reference.sip import Response, parse_message
from reference.udp import UdpRuntime
from tests.reference.harness import Harness
from tests.reference.test_udp import TinyNotifier, lab_config, run, until

from .test_udp_hostile import Client

PROFILES = ("ser", "rfc6665")
SENDER = ("192.0.2.66", 5999)  # the datagram's source; the Via says 192.0.2.20:5070

Edit = Callable[[str], str]


def _replace(old: str, new: str) -> Edit:
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)
    return edit


def _after(header: str, line: str) -> Edit:
    """Insert `line` after the header line starting with `header`."""
    def edit(text: str) -> str:
        lines = text.split("\r\n")
        at = next(i for i, item in enumerate(lines) if item.startswith(header))
        return "\r\n".join([*lines[: at + 1], line, *lines[at + 1:]])
    return edit


def _request_line(make: Callable[[str, str], str]) -> Edit:
    """Rewrite the request line from its Request-URI and version."""
    def edit(text: str) -> str:
        first, rest = text.split("\r\n", 1)
        _, uri, version = first.split(" ")
        return make(uri, version) + "\r\n" + rest
    return edit


# (id, RFC 4475 section it follows, edit of a well-formed in-dialog NOTIFY, status, what the
# reason phrase must name)
CASES: list[tuple[str, str, Edit, int, str]] = [
    ("two-call-ids", "3.3.8", _after("Call-ID:", "i: 98asdh@10.10.1.1"), 400,
     "duplicate header: call-id"),
    ("two-cseqs", "3.3.8", _after("CSeq:", "CSeq: 59 NOTIFY"), 400, "duplicate header: cseq"),
    ("two-froms", "3.3.8", _after("From:", "f: <sip:eve@lab.test>;tag=3413415"), 400,
     "duplicate header: from"),
    ("two-tos", "3.3.8", _after("To:", "t: <sip:eve@lab.test>"), 400, "duplicate header: to"),
    ("two-max-forwards", "3.3.8", _after("Max-Forwards:", "Max-Forwards: 5"), 400,
     "duplicate header: max-forwards"),
    ("two-content-lengths", "3.3.9", _after("Content-Length:", "l: 0"), 400,
     "duplicate header: content-length"),
    ("uri-at-signs", "3.1.2.7", _request_line(lambda u, v: f"NOTIFY sip:@@@ {v}"), 400,
     "request-uri"),
    ("uri-in-angles", "3.1.2.7", _request_line(lambda u, v: f"NOTIFY <{u}> {v}"), 400,
     "request-uri"),
    ("uri-empty", "3.1.2.7", _request_line(lambda u, v: f"NOTIFY sip: {v}"), 400,
     "request-uri"),
    ("uri-escaped-headers", "3.1.2.11",
     _request_line(lambda u, v: f"NOTIFY {u}?Route=%3Csip:example.com%3E {v}"), 400,
     "request-uri"),
    ("uri-embedded-lws", "3.1.2.8", _request_line(lambda u, v: f"NOTIFY {u}; lr {v}"), 400,
     "request line"),
    ("multiple-sp", "3.1.2.9", _request_line(lambda u, v: f"NOTIFY  {u}   {v}"), 400,
     "request line"),
    ("trailing-sp", "3.1.2.10", _request_line(lambda u, v: f"NOTIFY {u} {v}  "), 400,
     "request line"),
    ("sip-7.0", "3.1.2.16", _request_line(lambda u, v: f"NOTIFY {u} SIP/7.0"), 505,
     "sip/7.0"),
    ("unknown-scheme", "3.3.2",
     _request_line(lambda u, v: f"NOTIFY nobodyKnowsThisScheme:totallyopaquecontent {v}"),
     416, "unsupported uri scheme"),
]
CASE_IDS = [case[0] for case in CASES]


def _dialog_notify(h: Harness) -> str:
    """A well-formed in-dialog NOTIFY of the harness's live subscription, from a peer whose
    Via names 192.0.2.20:5070 (so the answer needs `received`)."""
    text = h.notify_bytes(state="active;expires=600", body=b"").decode()
    return text.replace("Via: SIP/2.0/UDP 127.0.0.1:5070;", "Via: SIP/2.0/UDP 192.0.2.20:5070;")


def _live(profile: str) -> Harness:
    h = Harness.make(profile, seed=3)
    h.confirmed(expires=600)
    return h


@pytest.mark.parametrize("profile", PROFILES)
def test_the_untouched_notify_is_accepted(profile: str) -> None:
    # The control case: without the edit the same NOTIFY is the dialog's and gets 200.
    h = _live(profile)
    before = len(h.sent)
    h.feed(_dialog_notify(h).encode(), source=SENDER)
    assert [s.message.status for s in h.sent[before:] if isinstance(s.message, Response)] \
        == [200]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("name", "section", "edit", "status", "names"), CASES, ids=CASE_IDS)
def test_torture_case_is_answered(profile: str, name: str, section: str, edit: Edit,
                                  status: int, names: str) -> None:
    h = _live(profile)
    dump = h.agent.dump()
    delivered = len(h.delivered)
    request = _dialog_notify(h)
    datagram = edit(request).encode()
    before = len(h.sent)
    h.feed(datagram, source=SENDER)
    answers = [s for s in h.sent[before:] if isinstance(s.message, Response)]
    assert len(answers) == 1, f"RFC 4475 §{section}: exactly one answer"
    answer = answers[0].message
    assert isinstance(answer, Response)
    assert answer.status == status, f"RFC 4475 §{section}: {answer.status} {answer.reason}"
    assert names in answer.reason.lower()
    # A usable answer: it goes where RFC 3261 §18.2.2 says (no rport: the source address,
    # the Via's port), and its Via is the request's with `received`, so the client
    # transaction matches it (same branch).
    assert answers[0].destination == (SENDER[0], 5070)
    top = answer.vias[0]
    assert top.params.get("received") == SENDER[0]
    assert top.branch == request.split("branch=", 1)[1].split("\r\n", 1)[0]
    assert answer.headers.values("Call-ID")[:1] == [answer.call_id]
    assert len(answer.headers.values("Call-ID")) == 1
    # Nothing moved: same subscription rows, nothing delivered.
    assert h.agent.dump() == dump
    assert len(h.delivered) == delivered


@pytest.mark.parametrize("profile", PROFILES)
def test_ack_with_a_bad_request_line_is_not_answered(profile: str) -> None:
    # An ACK never gets a response (RFC 3261 §17.2.1), however broken.
    h = _live(profile)
    text = _dialog_notify(h).replace("NOTIFY", "ACK")
    before = len(h.sent)
    h.feed(text.replace(" SIP/2.0\r\n", " SIP/7.0\r\n", 1).encode(), source=SENDER)
    h.feed(text.replace("Call-ID:", "i: x\r\nCall-ID:", 1).encode(), source=SENDER)
    assert h.sent[before:] == []


@pytest.mark.parametrize("profile", PROFILES)
def test_strangers_requests_hold_no_transaction(profile: str) -> None:
    # Every answer a stranger can provoke is stateless: refused requests, NOTIFYs of unknown
    # dialogs, OPTIONS, CANCEL, 405/501. Retransmissions get the same answer again.
    h = _live(profile)
    transactions, timers = h.agent.transaction_count, dict(h.timers)
    text = _dialog_notify(h).replace("Call-ID: ", "Call-ID: x", 1)
    requests = [
        text,  # unknown dialog: 481
        text.replace("NOTIFY", "OPTIONS"),
        text.replace("NOTIFY", "CANCEL"),
        text.replace("NOTIFY", "MESSAGE"),
        text.replace("NOTIFY", "FOO"),
        *(edit(_dialog_notify(h)) for _, _, edit, _, _ in CASES),
    ]
    for attempt in range(2):
        before = len(h.sent)
        for i, request in enumerate(requests):  # each its own transaction (branch)
            h.feed(request.replace("branch=z9hG4bK", f"branch=z9hG4bK{i}s", 1).encode(),
                   source=SENDER)
        statuses = [s.message.status for s in h.sent[before:] if isinstance(s.message, Response)]
        assert statuses[:5] == [481, 200, 481, 405, 501], attempt
        assert len(statuses) == len(requests)
    assert h.agent.transaction_count == transactions
    assert h.timers == timers


# ---------------------------------------------------------------------------- real UDP
UDP_CASES = ["two-call-ids", "two-cseqs", "two-content-lengths", "uri-at-signs",
             "uri-in-angles", "uri-empty", "sip-7.0", "unknown-scheme"]


@pytest.mark.slow
def test_torture_cases_over_udp() -> None:
    """The same datagrams through the kernel to a running `b2b-agent`: each is answered on
    the sender's socket (Via with rport) with the expected status, and the subscription
    the NOTIFYs name stays confirmed."""
    notifier = MiniNotifier(600)
    try:
        with running_agent({"trace": "0"}) as agent:
            hold_subscriptions(agent, notifier, 1)
            dialog = next(iter(notifier.dialogs.values()))
            client = Client(agent.sip)
            me = client.address
            base = (
                f"NOTIFY sip:{dialog.target[0]}:{dialog.target[1]} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {me[0]}:{me[1]};branch=z9hG4bK{{case}};rport\r\n"
                f"Max-Forwards: 70\r\nFrom: {dialog.our_to}\r\nTo: {dialog.subscriber_from}\r\n"
                f"Call-ID: {dialog.call_id}\r\nCSeq: {{cseq}} NOTIFY\r\nEvent: presence\r\n"
                f"Subscription-State: active;expires=600\r\nContent-Length: 0\r\n\r\n")
            cases = {case[0]: case for case in CASES}
            for i, name in enumerate(UDP_CASES):
                _, _, edit, _, _ = cases[name]
                text = base.replace("{case}", name.replace("-", "")).replace(
                    "{cseq}", str(100 + i))
                client.send(edit(text).encode())
            client.collect(quiet=1.0)
            rows = agent.request({"op": "dump"})["subscriptions"]
            assert agent.proc.poll() is None
    finally:
        notifier.close()
    by_branch: dict[str, list[Response]] = {}
    for data in client.answers:
        answer = parse_message(data)
        assert isinstance(answer, Response)
        by_branch.setdefault(answer.vias[0].branch or "", []).append(answer)
    for name in UDP_CASES:
        _, section, _, status, names = cases[name]
        answers = by_branch.get("z9hG4bK" + name.replace("-", ""), [])
        assert [a.status for a in answers] == [status], f"{name} (RFC 4475 §{section})"
        assert names in answers[0].reason.lower()
        assert answers[0].vias[0].rport == me[1]  # RFC 3581: rport filled in
    assert [row["state"] for row in rows] == ["confirmed"]


def test_new_error_answers_share_the_rate_limit() -> None:
    """400, 416 and 505 answers go through the runtime's token bucket like the 481s: a
    flood of refused requests (with a spoofed source) cannot make the agent a reflector."""
    async def scenario() -> None:
        notifier = TinyNotifier()
        port = await notifier.open()
        runtime = await UdpRuntime.open(lab_config(port), "127.0.0.1", 0,
                                        error_answer_rate=5.0, error_answer_burst=10)
        try:
            assert notifier.transport is not None
            cases = {case[0]: case[2] for case in CASES}
            started = time.monotonic()
            for i in range(60):
                name = ("sip-7.0", "unknown-scheme", "two-call-ids")[i % 3]
                text = unknown_notify(i, ("127.0.0.1", port), runtime.local_address).decode()
                notifier.transport.sendto(cases[name](text).encode(), runtime.local_address)
            await until(lambda: runtime.agent.counters.get("rx.datagrams", 0) == 60,
                        what="60 requests handled")
            await asyncio.sleep(0.05)  # answers in flight on loopback
            elapsed = time.monotonic() - started
            statuses = sorted({r.status for r in notifier.responses})
            answered = len(notifier.responses)
            limited = runtime.stats()["answers_rate_limited"]
            assert answered + limited == 60
            assert 10 <= answered <= 10 + 5 * elapsed + 1
            assert set(statuses) <= {400, 416, 505} and len(statuses) >= 2
        finally:
            runtime.close()
            notifier.close()

    run(scenario())
