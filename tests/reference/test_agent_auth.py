"""Issue 18 in the core: digest authentication of SUBSCRIBE (AUTH-001..009), 420 option tags
(SUB-130), RFC 5839 (SUB-018), fetch (SUB-052), and that ser keeps none of it."""

from __future__ import annotations

import json
import re

import pytest

from reference.credentials import CredentialStore
from reference.digest import Credentials, parse_challenges
from reference.digest import authorization as digest_answer
from reference.effects import TraceEvent
from reference.sip import Request
from tests.reference.harness import SUBSCRIBER, Harness, timer_n

SECRET = "very-secret-Pw9"
STORE = CredentialStore({(SUBSCRIBER, "lab.test"): Credentials("alice", SECRET, "lab.test")})
WWW = ("WWW-Authenticate", 'Digest realm="lab.test", nonce="n1", algorithm=MD5, qop="auth"')


def _harness(profile: str = "rfc6665", **params: object) -> Harness:
    h = Harness.make(profile, trace=1, **params)
    h.agent.credentials = STORE
    return h


def _nc(request: Request, header: str = "Authorization") -> int:
    value = request.headers.get(header)
    assert value is not None, f"no {header}"
    match = re.search(r"nc=([0-9a-f]{8})", value)
    assert match is not None
    return int(match.group(1), 16)


def test_401_answered_with_a_correct_digest_and_cseq_plus_one() -> None:
    h = _harness()
    h.subscribe()
    first = h.last_subscribe()
    h.respond(status=401, headers=[WWW], to_tag=None)
    second = h.last_subscribe()
    assert second is not first and second.call_id == first.call_id
    assert second.cseq.number == first.cseq.number + 1
    assert second.from_.tag == first.from_.tag and second.uri == first.uri
    value = second.headers.get("Authorization")
    assert value is not None and SECRET not in value
    # Recompute the expected answer from the same pieces: the response hash must match.
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', value))
    [challenge] = parse_challenges(*WWW)
    expected = digest_answer(challenge, Credentials("alice", SECRET), method="SUBSCRIBE",
                             uri=second.uri, nc=1, cnonce=fields["cnonce"])
    assert value == expected.value


def test_credentials_reused_on_refresh_and_unsubscribe_with_growing_nc() -> None:
    h = _harness(default_expiration=60, resubscribe_delta=10, min_resubscribe_time=5)
    handle = h.subscribe()
    h.respond(status=401, headers=[WWW], to_tag=None)
    h.respond(expires=60)
    h.notify(state="active;expires=60")
    h.advance_by(51)
    refresh = h.last_subscribe()
    assert refresh.to.tag == "srv1" and _nc(refresh) == 2
    h.respond(expires=60)
    h.unsubscribe(handle)
    assert _nc(h.last_subscribe()) == 3 and h.last_subscribe().expires == 0
    assert h.agent.counters["auth.answered"] == 1


def test_wrong_password_rejected_and_waits_max_retry_time() -> None:
    h = _harness(max_retry_time=900)
    h.subscribe()
    h.respond(status=401, headers=[WWW], to_tag=None)
    h.respond(status=401, headers=[WWW], to_tag=None)
    [message] = h.delivered
    assert message.status == "rejected"
    assert message.reason == "credentials rejected by realm 'lab.test' (same nonce)"
    assert message.retry_at == pytest.approx(h.now + 900)
    sent = len(h.subscribes())
    h.advance_by(899)
    assert len(h.subscribes()) == sent
    h.advance_by(2)
    assert len(h.subscribes()) == sent + 1
    assert h.last_subscribe().headers.get("Authorization") is None  # new dialog: none sent


def test_407_to_unsubscribe_answered_in_the_dialog() -> None:
    h = _harness()
    handle = h.confirmed()
    h.unsubscribe(handle)
    unsub = h.last_subscribe()
    h.respond(status=407, headers=[("Proxy-Authenticate",
                                    'Digest realm="lab.test", nonce="p1", qop="auth"')])
    again = h.last_subscribe()
    assert again.expires == 0 and again.to.tag == unsub.to.tag
    assert again.cseq.number == unsub.cseq.number + 1
    assert "nonce=\"p1\"" in (again.headers.get("Proxy-Authorization") or "")


def test_challenge_without_credentials_is_reported() -> None:
    h = Harness.make("rfc6665")
    h.subscribe()
    h.respond(status=401, headers=[WWW], to_tag=None)
    [message] = h.delivered
    assert message.status == "rejected" and message.reason == "no credentials for realm 'lab.test'"


def test_ser_treats_401_as_any_error() -> None:
    h = _harness("ser", on_error_retry_time=5)
    h.subscribe()
    h.respond(status=401, headers=[WWW], to_tag=None)
    assert h.delivered == [] and len(h.subscribes()) == 1
    h.advance_by(5)
    assert len(h.subscribes()) == 2 and h.last_subscribe().headers.get("Authorization") is None


def test_password_never_traced_or_dumped() -> None:
    h = _harness(default_expiration=60, resubscribe_delta=10, min_resubscribe_time=5)
    handle = h.subscribe()
    h.respond(status=401, headers=[WWW], to_tag=None)
    h.respond(expires=60)
    h.notify(state="active;expires=60")
    h.advance_by(51)
    h.respond(status=401, headers=[WWW], to_tag=None)
    h.respond(status=401, headers=[WWW], to_tag=None)  # rejected: reason in a message
    traces = [e for e in h.log if isinstance(e, TraceEvent)]
    assert traces
    text = json.dumps([t.fields for t in traces], default=str)
    text += json.dumps(h.agent.dump(), default=str) + json.dumps(h.agent.stats())
    text += " ".join(json.dumps(m.to_json(), default=str) for m in h.delivered)
    text += repr(h.agent.credentials) + repr(h.agent.subscriptions)
    assert SECRET not in text
    assert "Authorization" not in text  # not even the digest
    assert handle


def test_420_drops_tags_once() -> None:
    h = _harness(require_option_tags="x-a, x-b")
    h.subscribe()
    assert h.last_subscribe().headers.get("Require") == "x-a, x-b"
    h.respond(status=420, headers=[("Unsupported", "x-a")], to_tag=None)
    again = h.last_subscribe()
    assert again.headers.get("Require") == "x-b"
    h.respond(status=420, headers=[("Unsupported", "x-b")], to_tag=None)
    [message] = h.delivered
    assert message.status == "terminated" and message.reason == "420 Bad Extension (x-b)"


def test_ser_refuses_option_tags_and_sharing() -> None:
    with pytest.raises(ValueError, match="require_option_tags"):
        Harness.make("ser", require_option_tags="x")
    with pytest.raises(ValueError, match="share_subscriptions"):
        Harness.make("ser", share_subscriptions=1)


def test_204_stops_timer_n_and_etag_goes_on_refresh() -> None:
    h = _harness(default_expiration=60, resubscribe_delta=10, min_resubscribe_time=5)
    handle = h.subscribe()
    h.respond(expires=60)
    h.notify(state="active;expires=60", extra=[("SIP-ETag", "e7")])
    h.advance_by(51)
    refresh = h.last_subscribe()
    assert refresh.headers.get("Suppress-If-Match") == "e7"
    assert timer_n(handle) in h.timers
    h.respond(status=204, expires=60)
    assert timer_n(handle) not in h.timers
    h.advance_by(40)  # past 64*T1: no failure, no message
    assert len(h.delivered) == 1 and h.row(handle)["state"] == "confirmed"


def test_fetch_one_message_then_gone() -> None:
    h = _harness()
    handle = h.agent.fetch("sip:bob@lab.test", SUBSCRIBER, "q1", now=h.now)
    h.absorb()
    request = h.last_subscribe()
    assert request.expires == 0 and request.to.tag is None
    h.respond(expires=0)
    h.notify(state="terminated;reason=timeout", basic="closed")
    [message] = h.delivered
    assert message.handle == handle and message.status == "terminated"
    assert message.retry_at is None and message.document is not None
    assert not h.agent.has_subscription(handle) and h.agent.is_idle


def test_fetch_without_notify_ends_with_one_message() -> None:
    h = _harness(wait_for_term_notify=5)
    handle = h.agent.fetch("sip:bob@lab.test", SUBSCRIBER, "q1", now=h.now)
    h.absorb()
    h.respond(expires=0)
    h.advance_by(6)
    [message] = h.delivered
    assert message.status == "terminated" and message.retry_at is None
    assert not h.agent.has_subscription(handle)
    with pytest.raises(ValueError, match="not available in profile ser"):
        Harness.make("ser").agent.fetch("sip:b@l.test", SUBSCRIBER, "q1", now=0.0)
