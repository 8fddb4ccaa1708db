"""Issue 17 (b): a resource list held in Kamailio 5.6.3's xcap table, served by its `rls`
module (tests/interop/kamailio/kamailio-rls.cfg, udp+tcp 127.0.0.1:5076).

The agent subscribes (`presence-list`, over TCP) to a list of 12 buddies. The list's first
NOTIFY (full state, every member `pending`) and the partial-state NOTIFYs that follow the
buddies' PUBLISHes (SIPp) are `multipart/related` with an RLMI root, larger than 1,300 bytes,
and arrive over TCP (the agent's Contact asks for it). The agent reports each buddy's
PUBLISHed state as a status message naming the list and the resource, one per resource a
NOTIFY carries. What the wire carried is taken where the runtime hands a received message to
the agent, with its transport. Kamailio keeps rls's tables in db_text and runs one UDP
worker: with sqlite there, 5.6.3 crashes or refuses rls's back-end subscriptions
(docs/lab.md, "Resource lists against Kamailio 5.6.3").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from reference import StatusMessage
from reference.rlmi import parse_list_body
from reference.sip.message import Request, parse_message
from tests.interop.conftest import RLS_PORT, AgentUnderTest, RlsLab, basic
from tests.reference.test_udp import run

pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("loop_name")]

MEMBERS = 12  # enough that every list NOTIFY exceeds 1,300 bytes


@dataclass(frozen=True)
class ListNotify:
    """One list NOTIFY as the agent received it."""

    transport: str
    size: int
    version: int
    full_state: bool
    resources: tuple[str, ...]


def received_notifies(agent: AgentUnderTest) -> list[ListNotify]:
    """Record every NOTIFY the runtime hands to the agent (with the transport it came on)."""
    seen: list[ListNotify] = []
    original = agent.runtime.agent.datagram_received

    def spy(data: bytes, source: tuple[str, int], *, now: float,
            transport: str = "udp") -> None:
        message = parse_message(data)
        if isinstance(message, Request) and message.method == "NOTIFY":
            content_type = message.content_type
            assert content_type is not None and content_type.mime == "multipart/related"
            rlmi = parse_list_body(message.body, content_type.params).rlmi
            seen.append(ListNotify(transport, len(data), rlmi.version, rlmi.full_state,
                                   tuple(resource.uri for resource in rlmi.resources)))
        original(data, source, now=now, transport=transport)

    agent.runtime.agent.datagram_received = spy  # type: ignore[method-assign]
    return seen


async def published_states(agent: AgentUnderTest, expected: dict[str, str],
                           timeout: float) -> dict[str, StatusMessage]:
    """Per resource, a status message reporting its expected PIDF basic (they may come in
    any order, several resources in one NOTIFY)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = {m.resource: m for m in agent.statuses
                 if m.resource is not None and basic(m) == expected.get(m.resource)}
        if len(found) == len(expected) or loop.time() > deadline:
            break
        await asyncio.sleep(0.05)
    missing = sorted(set(expected) - set(found))
    assert not missing, (f"no published state for {missing}; seen: "
                         f"{[(m.resource, m.status, basic(m)) for m in agent.statuses]}")
    return {uri: found[uri] for uri in expected}


def test_list_members_published_state_over_tcp(rls_lab: RlsLab, loop_name: str) -> None:
    watcher = f"watcher-{loop_name}"
    service = f"sip:friends-{loop_name}@lab.test"
    users = [f"buddy{i}-{loop_name}" for i in range(MEMBERS)]
    members = [f"sip:{user}@lab.test" for user in users]
    published = {uri: ("closed" if i % 3 == 0 else "open") for i, uri in enumerate(members)}
    rls_lab.add_list(watcher, service, members)

    async def scenario() -> None:
        agent = await AgentUnderTest.start(
            profile="rfc6665", transports="udp,tcp", default_expiration=60,
            presence_route=f"<sip:127.0.0.1:{RLS_PORT};lr;transport=tcp>")
        notifies = received_notifies(agent)
        try:
            agent.runtime.subscribe(service, f"sip:{watcher}@lab.test", "test",
                                    "presence-list")
            for uri in members:
                def names(m: StatusMessage, uri: str = uri) -> bool:
                    return m.resource == uri
                message = await agent.next_status(names, timeout=10, what=f"{uri} in the list")
                assert message.list_uri == service and message.package == "presence-list"
                assert message.status in ("pending", "active") and basic(message) is None
            first = notifies[0]
            assert first.full_state and sorted(first.resources) == sorted(members)

            for user, uri in zip(users, members, strict=True):
                await rls_lab.publish(user, published[uri])
            reports = await published_states(agent, published, timeout=30)
            for uri, message in reports.items():
                assert message.list_uri == service and message.package == "presence-list"
                assert message.status == "active"
                assert message.document is not None and message.document.entity == uri

            # One status message per resource each NOTIFY carried, none lost or invented.
            carried = sum(len(notify.resources) for notify in notifies)
            for _ in range(100):
                if len(agent.statuses) >= carried:
                    break
                await asyncio.sleep(0.02)
            assert len(agent.statuses) == carried
            assert len(notifies) >= 2 and not any(n.full_state for n in notifies[1:])
            assert [n.version for n in notifies] == sorted({n.version for n in notifies})
            assert all(n.transport == "tcp" and n.size > 1300 for n in notifies), notifies
            assert agent.counter("rx.datagrams") == 0
            assert agent.counter("presence-list.applied") == len(notifies)
        finally:
            agent.close()
    run(scenario(), timeout=90)
