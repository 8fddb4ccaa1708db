"""Issue 17 (b): a resource list held in Kamailio 5.6.3's xcap table, served by its `rls`
module (tests/interop/kamailio/kamailio-rls.cfg, udp+tcp 127.0.0.1:5076).

What works and is tested: the agent's `presence-list` SUBSCRIBE (over TCP) is accepted, and
the list's first NOTIFY, `multipart/related` with an RLMI root, larger than 1,300 bytes,
arrives over TCP (the agent's Contact asks for it) and is reported as one status message per
list member. What does not: once members PUBLISH, Kamailio 5.6.3's rls worker dies with
SIGSEGV while handling its back-end NOTIFYs (docs/lab.md, "Resource lists: Kamailio 5.6.3 rls
crashes"), so the buddies' published states cannot be checked against it.
"""

from __future__ import annotations

import pytest

from tests.interop.conftest import RLS_PORT, AgentUnderTest, RlsLab
from tests.reference.test_udp import run

pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("loop_name")]

MEMBERS = 12  # enough that the list's full-state NOTIFY exceeds 1,300 bytes


def test_list_subscription_first_notify_over_tcp(rls_lab: RlsLab, loop_name: str) -> None:
    watcher = f"watcher-{loop_name}"
    service = f"sip:friends-{loop_name}@lab.test"
    members = [f"sip:buddy{i}-{loop_name}@lab.test" for i in range(MEMBERS)]
    rls_lab.add_list(watcher, service, members)

    async def scenario() -> None:
        agent = await AgentUnderTest.start(
            profile="rfc6665", transports="udp,tcp", default_expiration=60,
            presence_route=f"<sip:127.0.0.1:{RLS_PORT};lr;transport=tcp>")
        sizes: list[tuple[str, int]] = []
        original = agent.runtime.agent.datagram_received

        def spy(data: bytes, source: tuple[str, int], *, now: float,
                transport: str = "udp") -> None:
            if data.startswith(b"NOTIFY"):
                sizes.append((transport, len(data)))
            original(data, source, now=now, transport=transport)

        agent.runtime.agent.datagram_received = spy  # type: ignore[method-assign]
        try:
            agent.runtime.subscribe(service, f"sip:{watcher}@lab.test", "test",
                                    "presence-list")
            for uri in members:
                message = await agent.next_status(lambda m, uri=uri: m.resource == uri,
                                                  timeout=10, what=f"{uri} in the list")
                assert message.list_uri == service and message.package == "presence-list"
                assert message.status in ("pending", "active")
            transport, size = sizes[0]
            assert transport == "tcp" and size > 1300
            assert agent.counter("rx.datagrams") == 0
            assert agent.counter("presence-list.applied") >= 1
        finally:
            agent.close()
    run(scenario(), timeout=40)
