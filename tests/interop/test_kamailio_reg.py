"""Issue 17 against real Kamailio 5.6 (tests/interop/kamailio/kamailio-reg.cfg on udp and tcp
127.0.0.1:5075): the agent's `reg` subscription reports a REGISTER that SIPp makes, with its
expiry, and its end; a plain `presence` subscription runs over TCP end to end."""

from __future__ import annotations

import pytest

from reference.qsa import StatusMessage
from tests.interop.conftest import REG_PORT, AgentUnderTest, RegLab, basic, find_lab_dir
from tests.reference.test_udp import run

pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("loop_name")]


def contacts(message: StatusMessage) -> list[tuple[str, str, str, int | None]]:
    registration = message.registration
    if registration is None:
        return []
    return [(c.uri, c.state, c.event, c.expires) for c in registration.contacts]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_reg_subscription_reports_a_sipp_register_and_its_expiry(
        reg_lab: RegLab, transport: str, loop_name: str) -> None:
    user = f"reg-{transport}-{loop_name}"
    record = f"sip:{user}@lab.test"
    suffix = ";transport=tcp" if transport == "tcp" else ""

    async def scenario() -> None:
        agent = await AgentUnderTest.start(
            profile="rfc6665", transports="udp,tcp", default_expiration=60,
            presence_route=f"<sip:127.0.0.1:{REG_PORT};lr{suffix}>")
        try:
            agent.subscribe(record, package="reg")
            first = await agent.next_status(what="the first reg NOTIFY")
            assert first.status == "active" and first.package == "reg"
            assert first.registration is None  # nobody registered yet: no body

            await reg_lab.register(user, 120, port=REG_PORT + 100)
            registered = await agent.next_status(lambda m: m.registration is not None,
                                                 what="the registration")
            assert registered.registration is not None
            assert registered.registration.aor == record
            assert registered.registration.state == "active"
            [(uri, state, _event, expires)] = contacts(registered)
            assert uri == f"sip:{user}@127.0.0.1:{REG_PORT + 100}" and state == "active"
            assert expires is not None and 110 <= expires <= 120

            await reg_lab.register(user, 0, port=REG_PORT + 100)
            ended = await agent.next_status(
                lambda m: any(c[1] == "terminated" for c in contacts(m)),
                what="the unregistration")
            [(_uri, state, event, _expires)] = contacts(ended)
            assert (state, event) == ("terminated", "unregistered")
            if transport == "tcp":
                assert agent.runtime.tcp is not None
                assert agent.runtime.tcp.counters.messages_in >= 3  # 200 + NOTIFYs
                assert agent.counter("rx.datagrams") == 0
        finally:
            agent.close()
    run(scenario(), timeout=40)


def test_presence_subscription_over_tcp(reg_lab: RegLab, loop_name: str) -> None:
    lab_dir = find_lab_dir()
    if lab_dir is None:
        pytest.skip("lab scripts not found (publish.xml of ../shared/lab)")
    user = f"tcp-presence-{loop_name}"
    record = f"sip:{user}@lab.test"

    async def scenario() -> None:
        agent = await AgentUnderTest.start(
            profile="rfc6665", transports="udp,tcp", default_expiration=60,
            presence_route=f"<sip:127.0.0.1:{REG_PORT};lr;transport=tcp>")
        try:
            agent.subscribe(record)
            first = await agent.next_status(what="the first NOTIFY")
            assert first.status == "active"
            await reg_lab.publish(lab_dir, user, "open")
            opened = await agent.next_status(lambda m: basic(m) == "open", what="open")
            assert opened.document is not None and opened.document.entity == record
            assert agent.runtime.tcp is not None
            counters = agent.runtime.tcp.counters
            assert counters.connected >= 1 and counters.messages_in >= 3
            assert agent.counter("rx.datagrams") == 0  # nothing came over UDP
            assert agent.counter("tx.response.200") >= 2
        finally:
            agent.close()
    run(scenario(), timeout=40)
