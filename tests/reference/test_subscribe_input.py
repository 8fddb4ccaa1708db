"""QSA subscribe input (reference/subscribe_input.py), in the sans-IO core: what is accepted,
and that a refusal leaves the agent exactly as it was."""

from __future__ import annotations

import pytest

from reference.agent import Agent
from reference.config import AgentConfig
from reference.effects import Send
from reference.subscribe_input import MAX_URI_BYTES, BadSubscribeInput, check_subscribe_uris

ROUTE = "<sip:127.0.0.1:5070;lr>"


@pytest.mark.parametrize(("record", "subscriber", "expected"), [
    ("sip:alice@lab.test", "sip:bob@lab.test", "sip:alice@lab.test"),
    ("<sips:alice@lab.test;transport=tcp>", "<sip:bob@lab.test>",
     "sips:alice@lab.test;transport=tcp"),
    ("sip:alice@lab.test", "pres:bob@lab.test", "sip:alice@lab.test"),
    ("sip:a%20b?c@lab.test", "sip:bob@lab.test", "sip:a%20b?c@lab.test"),  # '?' in the user
    ("sip:" + "a" * (MAX_URI_BYTES - 13) + "@lab.test", "sip:bob@lab.test", None),
])
def test_accepted(record: str, subscriber: str, expected: str | None) -> None:
    got = check_subscribe_uris(record, subscriber, routable_pres=False)
    assert got == (expected or record)


@pytest.mark.parametrize(("record", "subscriber", "error"), [
    ("pres:alice@lab.test", "sip:bob@lab.test", "needs presence_route"),
    ("sip:alice@lab.test", "pres:bob", "pres:user@host"),
    ("sip:alice@lab.test", "pres:bob@lab.test?subject=x", "URI headers"),
    ("sip:alice@lab.test", "tel:+15551234", "not a sip:, sips: or pres: URI"),
    ("sip:alice@lab.test", "sip:bob@lab.test\t", "control character"),
    ("sip:alice@lab.test", "sip:bob@lab.test\x7f", "control character"),
    ("sip:alice@lab.tést", "sip:bob@lab.test", "bad record URI"),
    ("sip:" + "a" * (MAX_URI_BYTES - 12) + "@lab.test", "sip:bob@lab.test", "longer than"),
])
def test_refused(record: str, subscriber: str, error: str) -> None:
    with pytest.raises(BadSubscribeInput, match=error):
        check_subscribe_uris(record, subscriber, routable_pres=False)


@pytest.mark.parametrize("char", [chr(i) for i in range(128)] + ["\x85", "\xa0", "\u2028",
                                                                 "\udc80", "é"])
def test_control_characters_are_found_in_any_string(char: str) -> None:
    """The refusal for a control character is the per-character scan's, whether the URI is
    ASCII (its printable test) or not."""
    for text in (f"sip:bo{char}b@lab.test", f"sip:bo{char}b@lab.tést"):
        scan = next((c for c in text if c < " " or c == "\x7f"), None)
        try:
            check_subscribe_uris("sip:alice@lab.test", text, routable_pres=False)
            error = None
        except BadSubscribeInput as exc:
            error = str(exc)
        if scan is None:
            assert error is None or "control character" not in error
        else:
            assert error == f"bad subscriber URI: control character {scan!r}"


def test_refusal_in_the_core_changes_nothing() -> None:
    # ser: a pres: record without a route is refused (rfc6665 resolves it to sip:).
    agent = Agent(AgentConfig(max_subscriptions=1, profile="ser"))
    for record, subscriber in (("sip:a@b.test", "sip:x@y.test\r\nVia: evil"),
                               ("sip:a@b.test?Route=%3Csip:e.test%3E", "sip:x@y.test"),
                               ("pres:a@b.test", "sip:x@y.test")):
        with pytest.raises(BadSubscribeInput):
            agent.subscribe(record, subscriber, "d", now=0.0)
        assert not agent.subscriptions
        assert not agent.drain_effects()
    agent.subscribe("sip:a@b.test", "sip:x@y.test", "d", now=0.0)
    assert len(agent.subscriptions) == 1


@pytest.mark.parametrize(("profile", "request_uri", "to"), [
    ("ser", b"pres:alice@lab.test", b"pres:alice@lab.test"),          # verbatim (SER-064)
    ("rfc6665", b"sip:alice@lab.test", b"<pres:alice@lab.test>"),     # resolved (SUB-081)
])
def test_pres_record_goes_through_the_configured_route(profile: str, request_uri: bytes,
                                                       to: bytes) -> None:
    agent = Agent(AgentConfig(presence_route=ROUTE, profile=profile))
    agent.subscribe("pres:alice@lab.test", "pres:bob@lab.test", "d", now=0.0)
    sends = [e for e in agent.drain_effects() if isinstance(e, Send)]
    assert len(sends) == 1
    data = sends[0].data
    assert data.startswith(b"SUBSCRIBE " + request_uri + b" SIP/2.0\r\n")
    assert b"\r\nTo: " + to + b"\r\n" in data
    assert sends[0].destination == ("127.0.0.1", 5070)


def test_pres_record_resolved_to_sip() -> None:
    """rfc6665 without a route: pres:user@host goes to sip:user@host, host:port from it."""
    agent = Agent(AgentConfig())
    handle = agent.subscribe("pres:alice@127.0.0.1:5070", "sip:bob@lab.test", "d", now=0.0)
    [send] = [e for e in agent.drain_effects() if isinstance(e, Send)]
    assert send.data.startswith(b"SUBSCRIBE sip:alice@127.0.0.1:5070 SIP/2.0\r\n")
    assert send.destination == ("127.0.0.1", 5070)
    assert agent.subscriptions[handle].record == "pres:alice@127.0.0.1:5070"
