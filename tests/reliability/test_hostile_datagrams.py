"""Hostile datagrams into the agent core (issue 8 §3).

Generated and mutated SIP datagrams, starting from real messages the agent exchanges, are fed
to an agent that holds established subscriptions. Whatever arrives: no exception escapes, the
other subscriptions' state is untouched, and every malformed request that can be answered
gets a 400 whose reason names the problem.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference.sip import Request, Response, SipParseError, parse_message
from tests.reference.harness import Harness

PROFILES = ("ser", "rfc6665")
STRANGER = ("192.0.2.66", 5999)


def _established(profile: str) -> tuple[Harness, list[bytes]]:
    """Two confirmed subscriptions plus the real datagrams of their set-up, as seeds."""
    h = Harness.make(profile, seed=7)
    seeds: list[bytes] = []
    for record in ("sip:bob@lab.test", "sip:carol@lab.test"):
        h.subscribe(record=record)
        h.advance_by(0.1)
        response = h.respond(expires=600)
        seeds.append(response.to_bytes())
        notify = h.notify_bytes(state="active;expires=600")
        seeds.append(notify)
        h.feed(notify)
    seeds.extend(s.data for s in h.sent)
    return h, seeds


def _snapshot(h: Harness) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "failures"} for row in h.agent.dump()]


def _mutate(seed: bytes, data: st.DataObject) -> bytes:
    kind = data.draw(st.sampled_from(["flip", "cut", "insert", "dup_header", "huge_cl", "nul"]))
    if kind == "flip" and seed:
        pos = data.draw(st.integers(0, len(seed) - 1))
        return seed[:pos] + bytes([data.draw(st.integers(0, 255))]) + seed[pos + 1:]
    if kind == "cut":
        return seed[: data.draw(st.integers(0, len(seed)))]
    if kind == "insert":
        pos = data.draw(st.integers(0, len(seed)))
        return seed[:pos] + data.draw(st.binary(max_size=40)) + seed[pos:]
    if kind == "dup_header":
        head, _, body = seed.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        line = lines[data.draw(st.integers(0, len(lines) - 1))]
        return b"\r\n".join(lines + [line] * data.draw(st.integers(1, 300))) + b"\r\n\r\n" + body
    if kind == "huge_cl":
        return seed.replace(b"Content-Length: ", b"Content-Length: 99999999", 1)
    return seed.replace(b"\r\n", b"\r\n\x00", 1)


@pytest.mark.parametrize("profile", PROFILES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_datagrams_never_escape_or_disturb(profile: str, data: st.DataObject) -> None:
    h, seeds = _established(profile)
    before = _snapshot(h)
    seed = data.draw(st.sampled_from(seeds))
    datagram = _mutate(seed, data)
    sent_before = len(h.sent)
    h.feed(datagram, source=STRANGER)
    # A datagram from a stranger may at most be answered; it never changes our subscriptions
    # unless it is (still) a well-formed in-dialog message of theirs, which mutations rarely
    # leave intact: then only the matched subscription may move.
    after = _snapshot(h)
    changed = [a for a, b in zip(after, before, strict=False) if a != b]
    assert len(after) == len(before)
    assert len(changed) <= 1
    for s in h.sent[sent_before:]:
        assert s.destination[0] in (STRANGER[0], "127.0.0.1")


@pytest.mark.parametrize("profile", PROFILES)
@settings(max_examples=200, deadline=None)
@given(datagram=st.binary(max_size=2000))
def test_arbitrary_bytes(profile: str, datagram: bytes) -> None:
    h, _ = _established(profile)
    before = _snapshot(h)
    h.feed(datagram, source=STRANGER)
    assert _snapshot(h) == before


def _malformed_requests() -> list[tuple[str, bytes]]:
    good = (
        "NOTIFY sip:127.0.0.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.66:5999;branch=z9hG4bKevil1\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:x@y>;tag=a\r\nTo: <sip:z@w>;tag=b\r\n"
        "Call-ID: evil@y\r\nCSeq: 1 NOTIFY\r\nEvent: presence\r\n"
        "Subscription-State: active\r\nContent-Length: 0\r\n\r\n"
    )
    return [
        ("bad CSeq", good.replace("CSeq: 1 NOTIFY", "CSeq: abc NOTIFY").encode()),
        ("CSeq", good.replace("CSeq: 1 NOTIFY\r\n", "").encode()),
        ("Content-Length", good.replace("Content-Length: 0", "Content-Length: 500").encode()),
        ("Call-ID", good.replace("Call-ID: evil@y\r\n", "").encode()),
        ("From", good.replace("From: <sip:x@y>;tag=a", "From: <sip:x@y;tag=a").encode()),
        ("non-UTF-8", good.replace("Event: presence", "Event: pr\udcffesence").encode(
            "utf-8", "surrogateescape")),
    ]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("problem", "datagram"), _malformed_requests())
def test_malformed_request_gets_400_naming_the_problem(profile: str, problem: str,
                                                       datagram: bytes) -> None:
    h, _ = _established(profile)
    before = _snapshot(h)
    sent_before = len(h.sent)
    h.feed(datagram, source=STRANGER)
    answers = [s for s in h.sent[sent_before:] if isinstance(s.message, Response)]
    assert len(answers) == 1, "exactly one answer"
    answer = answers[0].message
    assert isinstance(answer, Response)
    assert answer.status == 400
    assert problem.lower() in answer.reason.lower()
    assert answers[0].destination == STRANGER
    assert _snapshot(h) == before
    assert h.agent.counters.get("rx.parse_errors", 0) >= 1


@pytest.mark.parametrize("profile", PROFILES)
def test_oversize_and_header_bomb(profile: str) -> None:
    h, _ = _established(profile)
    before = _snapshot(h)
    h.feed(b"NOTIFY sip:a@b SIP/2.0\r\n" + b"X: y\r\n" * 100_000 + b"\r\n", source=STRANGER)
    h.feed(b"\x00" * 70_000, source=STRANGER)
    h.feed(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnothing\r\n"
           b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 SUBSCRIBE\r\n"
           b"Content-Length: 0\r\n\r\n", source=STRANGER)
    assert _snapshot(h) == before
    assert h.agent.counters.get("rx.unmatched_responses", 0) == 1


def test_parse_error_is_the_only_parser_exception() -> None:
    # Guard for the fuzzers above: the parser's own contract.
    with pytest.raises(SipParseError):
        parse_message(b"\xff\xfe garbage")
    assert isinstance(parse_message(
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n"), Request)
