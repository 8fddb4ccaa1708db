"""Digest authentication against a real server: Kamailio 5.6 with auth + auth_db (sqlite
subscriber table, qop=auth, nonce counts checked) challenges every SUBSCRIBE on udp 5071
(tests/interop/kamailio-auth.cfg). Run under the interop lock:

    flock /tmp/interop.lock .venv/bin/pytest -q tests/interop/test_kamailio_auth.py
"""

from __future__ import annotations

import re

import pytest

from reference.credentials import CredentialStore
from reference.digest import Credentials
from tests.interop.conftest import (
    AUTH_PASSWORD,
    AUTH_REALM,
    AUTH_USER,
    KAMAILIO_AUTH_PORT,
    AgentUnderTest,
    KamailioAuth,
)
from tests.reference.test_udp import run, until

pytestmark = [pytest.mark.interop]

ROUTE = f"<sip:127.0.0.1:{KAMAILIO_AUTH_PORT};lr>"


def _nc(authorization: str) -> int:
    match = re.search(r"\bnc=([0-9a-fA-F]{8})", authorization)
    assert match is not None, authorization
    return int(match.group(1), 16)


def test_subscription_succeeds_only_when_authenticated(kamailio_auth: KamailioAuth) -> None:
    """Without credentials the subscription is rejected with the reason; with them it comes
    up after one challenge, and the refreshes reuse the nonce with nc 2, 3, ... (Kamailio
    checks the counts), no further challenge."""
    record = f"sip:{AUTH_USER}@{AUTH_REALM}"

    async def scenario() -> None:
        params = dict(presence_route=ROUTE, default_expiration=8, resubscribe_delta=5,
                      min_resubscribe_time=1, wait_for_term_notify=5, max_retry_time=600)
        bare = await AgentUnderTest.start(**params)
        try:
            bare.subscribe(record)
            failed = await bare.next_status(what="the failure without credentials")
            assert failed.status == "rejected"
            assert failed.reason == "no credentials for realm 'lab.test'"
            assert bare.counter("rx.response.407") == 1
        finally:
            bare.close()

        agent = await AgentUnderTest.start(**params)
        agent.runtime.agent.credentials = CredentialStore(
            {(record, AUTH_REALM): Credentials(AUTH_USER, AUTH_PASSWORD, AUTH_REALM)})
        try:
            handle = agent.subscribe(record)
            first = await agent.next_status(what="the first NOTIFY", timeout=8)
            assert first.handle == handle and first.status == "active"
            await until(lambda: len(kamailio_auth.accepted_authorizations()) >= 3,
                        timeout=20, what="two authenticated refreshes")
            accepted = kamailio_auth.accepted_authorizations()
            counts = [_nc(a) for a in accepted[-3:]]
            assert counts == [1, 2, 3], accepted
            assert len({re.search(r'nonce="([^"]+)"', a).group(1)  # type: ignore[union-attr]
                        for a in accepted[-3:]}) == 1
            assert AUTH_PASSWORD not in " ".join(accepted)
            # Challenged once (auth_challenge answers a non-REGISTER with 407), then reused.
            assert agent.counter("rx.response.407") == 1
            agent.runtime.unsubscribe(handle)
            await until(lambda: agent.runtime.agent.is_idle, timeout=10,
                        what="the authenticated unsubscribe to end the subscription")
            assert _nc(kamailio_auth.accepted_authorizations()[-1]) == 4
        finally:
            agent.close()

    run(scenario(), timeout=60)
