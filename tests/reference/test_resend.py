"""reference.resend: what a 401/407/420 decides (the agent turns it into R_RESEND or a
failure)."""

from __future__ import annotations

from reference.credentials import CredentialStore
from reference.digest import Credentials, DigestSession
from reference.resend import answer_challenge, drop_option_tags
from reference.sip import Headers, Response

STORE = CredentialStore({("*", "lab.test"): Credentials("bob", "pw", "lab.test")})


def _known(realm: str) -> bool:
    return STORE.lookup("sip:bob@lab.test", realm) is not None


def _response(status: int, *headers: tuple[str, str]) -> Response:
    return Response(status, "x", Headers(list(headers)))


def test_challenge_answered_then_rejected() -> None:
    session = DigestSession("sip:bob@lab.test")
    www = ("WWW-Authenticate", 'Digest realm="lab.test", nonce="n1", qop="auth"')
    first = answer_challenge(_response(401, www), session, "sip:bob@lab.test", _known)
    assert first.resend and first.reason is None and not session.cached  # pure
    session.adopt(first.challenges)
    again = answer_challenge(_response(401, www), session, "sip:bob@lab.test", _known)
    assert not again.resend and again.permanent
    assert again.reason == "credentials rejected by realm 'lab.test' (same nonce)"


def test_unreadable_or_unknown_realm_challenge_is_a_permanent_failure() -> None:
    session = None
    bad = answer_challenge(_response(407, ("Proxy-Authenticate", "Digest nonce=1")), session,
                           "sip:bob@lab.test", _known)
    assert not bad.resend and bad.permanent and bad.reason is not None
    assert "without realm" in bad.reason
    other = answer_challenge(
        _response(401, ("WWW-Authenticate", 'Digest realm="x", nonce="1"')), session,
        "sip:bob@lab.test", _known)
    assert other.reason == "no credentials for realm 'x'"
    none = answer_challenge(_response(401), session, "sip:bob@lab.test", _known)
    assert none.reason == "challenge without a Digest challenge"


def test_420_drops_listed_tags_once() -> None:
    response = _response(420, ("Unsupported", "X-Lab-Test, other"))
    first = drop_option_tags(response, ("x-lab-test", "keep"), already_dropped=False)
    assert first.resend and first.option_tags == ("keep",)
    assert not drop_option_tags(response, ("keep",), already_dropped=False).resend
    second = drop_option_tags(response, ("x-lab-test",), already_dropped=True)
    assert not second.resend and second.reason == "420 Bad Extension (X-Lab-Test, other)"
    empty = drop_option_tags(_response(420), ("a",), already_dropped=False)
    assert empty.reason == "420 Bad Extension (no Unsupported header)"
