"""reference.digest against the published example vectors (RFC 2617 §3.5, RFC 7616 §3.9.1)
and the answer-once rules of a subscription's digest session."""

from __future__ import annotations

import pytest

from reference.digest import (
    MAX_CHALLENGE_BYTES,
    MAX_STALE_ROUNDS,
    Challenge,
    Credentials,
    DigestError,
    DigestSession,
    authorization,
    best_per_realm,
    challenges_of,
    parse_challenges,
)
from reference.ids import SeededIds


def _params(value: str) -> dict[str, str]:
    """The name=value pairs of an Authorization value (test helper, quotes removed)."""
    out = {}
    for part in value.removeprefix("Digest ").split(", "):
        name, _, text = part.partition("=")
        out[name] = text.strip('"')
    return out


# RFC 7616 §3.9.1: the same request answered with MD5 and SHA-256.
RFC7616_WWW = ('Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, '
               'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
               'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"')
MUFASA = Credentials("Mufasa", "Circle of Life", "http-auth@example.org")
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


@pytest.mark.parametrize(("algorithm", "response"), [
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
])
def test_rfc7616_example(algorithm: str, response: str) -> None:
    [challenge] = parse_challenges("WWW-Authenticate", RFC7616_WWW.format(alg=algorithm))
    assert challenge.qop == ("auth", "auth-int") and challenge.algorithm == algorithm
    answer = authorization(challenge, MUFASA, method="GET", uri="/dir/index.html", nc=1,
                           cnonce=RFC7616_CNONCE)
    params = _params(answer.value)
    assert answer.header == "Authorization"
    assert params["response"] == response
    assert params["qop"] == "auth" and params["nc"] == "00000001"
    assert params["opaque"] == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
    assert "Circle" not in answer.value


def test_rfc2617_example() -> None:
    [challenge] = parse_challenges(
        "WWW-Authenticate",
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"')
    answer = authorization(challenge, Credentials("Mufasa", "Circle Of Life"), method="GET",
                           uri="/dir/index.html", nc=1, cnonce="0a4f113b")
    assert _params(answer.value)["response"] == "6629fae49393a05397450978507c4ef1"


def test_rfc2069_without_qop_sends_no_nc() -> None:
    # RFC 2617 §3.2.2.1 with no qop: response = H(HA1:nonce:HA2); value checked by hand with
    # hashlib: md5("939e7578ed9e3c518a452acee763bce9:dcd98b7102dd2f0e8b11d0f600bfb0c093:
    # 39aff3a2bab6126f332b942af96d3366").
    [challenge] = parse_challenges("WWW-Authenticate", 'Digest realm="testrealm@host.com", '
                                   'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093"')
    answer = authorization(challenge, Credentials("Mufasa", "Circle Of Life"), method="GET",
                           uri="/dir/index.html")
    params = _params(answer.value)
    assert "nc" not in params and "cnonce" not in params and "qop" not in params
    assert params["response"] == "670fd8c2df070c60b045671b8b24ff02"


def test_sess_and_auth_int_differ_from_plain() -> None:
    base = 'Digest realm="lab.test", nonce="n1", qop="{qop}", algorithm={alg}'
    bob = Credentials("bob", "pw")
    seen = set()
    for alg in ("MD5", "MD5-sess", "SHA-256", "SHA-256-sess"):
        for qop in ("auth", "auth-int"):
            [ch] = parse_challenges("WWW-Authenticate", base.format(qop=qop, alg=alg))
            value = authorization(ch, bob, method="SUBSCRIBE", uri="sip:a@b", body=b"x",
                                  cnonce="c1").value
            params = _params(value)
            assert params["algorithm"] == alg and params["qop"] == qop
            seen.add(params["response"])
    assert len(seen) == 8  # every combination hashes differently


def test_several_challenges_in_one_value_and_other_schemes() -> None:
    value = ('Basic realm="x", Digest realm="a", nonce="1", algorithm=MD5, '
             'Digest realm="a", nonce="2", algorithm=SHA-256, Bearer realm="y", '
             'Digest realm="b", nonce="3", stale=TRUE')
    challenges = parse_challenges("Proxy-Authenticate", value)
    assert [(c.realm, c.nonce, c.algorithm) for c in challenges] == [
        ("a", "1", "MD5"), ("a", "2", "SHA-256"), ("b", "3", "MD5")]
    assert challenges[2].stale and challenges[0].answer_header == "Proxy-Authorization"
    best = best_per_realm(challenges)
    assert [(c.realm, c.algorithm) for c in best] == [("a", "SHA-256"), ("b", "MD5")]


@pytest.mark.parametrize("value", [
    'Digest nonce="1"', 'Digest realm="a"', 'realm="a", Digest nonce="1"',
    'Digest realm="a, nonce="1"', 'Digest realm="a", realm="b", nonce="1"', "Digest @",
    "Digest " + "x" * MAX_CHALLENGE_BYTES,
])
def test_bad_challenges_are_refused(value: str) -> None:
    with pytest.raises(DigestError):
        parse_challenges("WWW-Authenticate", value)


def test_unknown_algorithm_is_not_answered() -> None:
    [ch] = parse_challenges("WWW-Authenticate",
                            'Digest realm="a", nonce="1", algorithm=SHA-512-256')
    assert not ch.supported
    with pytest.raises(DigestError, match="not supported"):
        authorization(ch, Credentials("u", "p"), method="SUBSCRIBE", uri="sip:a@b")


def test_credentials_repr_hides_the_password() -> None:
    assert "secret" not in repr(Credentials("bob", "secret", "lab.test"))
    assert "secret" not in str(Credentials("bob", "secret", "lab.test"))


class _Store:
    def __init__(self, realms: dict[str, Credentials]) -> None:
        self.realms = realms

    def lookup(self, subscriber: str, realm: str) -> Credentials | None:
        return self.realms.get(realm)


def _challenge(nonce: str, *, stale: bool = False, realm: str = "lab.test") -> Challenge:
    return Challenge("WWW-Authenticate", realm, nonce, qop=("auth",), stale=stale)


def test_session_answers_once_then_reuses_with_growing_nc() -> None:
    store = _Store({"lab.test": Credentials("bob", "pw")})
    ids = SeededIds(1)
    session = DigestSession("sip:bob@lab.test")
    assert session.answer([_challenge("n1")], store) is None
    [(name, first)] = session.headers_for(store, ids, method="SUBSCRIBE", uri="sip:a@b")
    assert name == "Authorization" and _params(first)["nc"] == "00000001"
    # The same nonce again, not stale: the credentials were rejected.
    reason = session.answer([_challenge("n1")], store)
    assert reason is not None and "rejected" in reason and "same nonce" in reason
    # A fresh round: answered once, then accepted and reused pre-emptively.
    assert session.answer([_challenge("n2")], store) is None
    session.headers_for(store, ids, method="SUBSCRIBE", uri="sip:a@b")
    session.accepted()
    [(_, refresh)] = session.headers_for(store, ids, method="SUBSCRIBE", uri="sip:a@b")
    assert _params(refresh)["nonce"] == "n2" and _params(refresh)["nc"] == "00000002"
    # Challenged on a refresh (not an answer to a challenge): answered again.
    assert session.answer([_challenge("n3")], store) is None


def test_session_stale_retries_with_new_nonce_bounded() -> None:
    store = _Store({"lab.test": Credentials("bob", "pw")})
    session = DigestSession("sip:bob@lab.test")
    assert session.answer([_challenge("n1")], store) is None
    for round_ in range(MAX_STALE_ROUNDS):
        assert session.answer([_challenge(f"s{round_}", stale=True)], store) is None
        [(_, value)] = session.headers_for(store, SeededIds(2), method="SUBSCRIBE", uri="u")
        assert _params(value)["nonce"] == f"s{round_}" and _params(value)["nc"] == "00000001"
    reason = session.answer([_challenge("s9", stale=True)], store)
    assert reason is not None and "stale" in reason


def test_session_fails_without_credentials_for_a_realm() -> None:
    store = _Store({"lab.test": Credentials("bob", "pw")})
    session = DigestSession("sip:bob@lab.test")
    reason = session.answer([_challenge("n1"), _challenge("p1", realm="proxy.test")], store)
    assert reason == "no credentials for realm 'proxy.test'"
    assert session.answer([], store) == "challenge without a Digest challenge"


def test_challenges_of_reads_both_headers() -> None:
    items = [("Via", "x"), ("WWW-Authenticate", 'Digest realm="a", nonce="1"'),
             ("Proxy-Authenticate", 'Digest realm="p", nonce="2"')]
    assert [c.answer_header for c in challenges_of(items)] == [
        "Authorization", "Proxy-Authorization"]


def test_sess_without_qop_is_not_answered() -> None:
    [ch] = parse_challenges("WWW-Authenticate", 'Digest realm="a", nonce="1", algorithm=MD5-sess')
    assert not ch.supported
