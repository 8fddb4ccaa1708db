"""The reference agent against the lab's Kamailio 5.6 presence server (real UDP, loopback).

Kamailio runs with min_expires 5 s (session fixture `kamailio`); SIPp PUBLISHes presence
with the lab's publish.xml. Each test uses its own presentity so tests do not see each
other's publications.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from typing import Any

import pytest

from tests.interop.conftest import (
    KAMAILIO_PORT,
    MIN_EXPIRES,
    AgentUnderTest,
    KamailioLab,
    basic,
    finish,
)
from tests.reference.test_udp import run, until

# Every test here runs on both event loops (tests/event_loops.py).
pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("loop_name")]

ROUTE = f"<sip:127.0.0.1:{KAMAILIO_PORT};lr>"
PROFILES = ("ser", "rfc6665")


@pytest.mark.parametrize("profile", PROFILES)
def test_publish_refresh_and_unsubscribe(kamailio: KamailioLab, profile: str,
                                        loop_name: str) -> None:
    """Active on subscribe; PUBLISH open/closed show up; the refresh before expiry is
    answered 200; an internal unsubscribe ends with Kamailio's terminated;reason=timeout
    NOTIFY and an empty dump."""
    user = f"life-{profile}-{loop_name}"  # Kamailio keeps presentities between tests
    record = f"sip:{user}@lab.test"

    async def scenario() -> None:
        # Granted 10 s; refresh 10 - 6 = 4 s after the 200 (well before expiry).
        agent = await AgentUnderTest.start(
            profile=profile, presence_route=ROUTE, default_expiration=10,
            resubscribe_delta=6, min_resubscribe_time=2, wait_for_term_notify=10)
        try:
            handle = agent.subscribe(record)
            first = await agent.next_status(what="the first NOTIFY")
            assert first.handle == handle and first.status == "active"
            # Nobody published yet: Kamailio's NOTIFY has no body.
            assert first.document is None

            await kamailio.publish(user, "open")
            opened = await agent.next_status(lambda m: basic(m) == "open", what="open")
            assert opened.status == "active"
            assert opened.document is not None
            assert opened.document.entity == record
            assert [n.text for n in opened.document.tuples[0].notes] == ["lab open"]

            await kamailio.publish(user, "closed")
            closed = await agent.next_status(lambda m: basic(m) == "closed", what="closed")
            assert closed.status == "active"

            await until(lambda: agent.counter("tx.SUBSCRIBE") >= 2
                        and agent.counter("rx.response.200") >= 2, timeout=10,
                        what="a refresh SUBSCRIBE answered 200")
            (entry,) = agent.runtime.agent.dump()
            assert entry["state"] == "confirmed"
            assert entry["expires_at"] > agent.runtime.loop.time()  # refreshed in time
            assert agent.counter("rx.response.423") == 0

            agent.runtime.unsubscribe(handle)
            await until(lambda: not agent.runtime.agent.dump(), timeout=8,
                        what="Kamailio's terminated NOTIFY to end the subscription")
            assert agent.runtime.agent.is_idle
            assert agent.counter("rx.request.NOTIFY") >= 4
        finally:
            agent.close()

    run(scenario(), timeout=40)


def test_interval_too_brief_rfc6665_retries_with_min_expires(kamailio: KamailioLab) -> None:
    async def scenario() -> None:
        agent = await AgentUnderTest.start(
            profile="rfc6665", presence_route=ROUTE, default_expiration=MIN_EXPIRES - 2,
            on_error_retry_time=1)
        try:
            agent.subscribe("sip:brief-rfc@lab.test")
            status = await agent.next_status(what="active after the 423 retry")
            assert status.status == "active"
            assert agent.counter("rx.response.423") == 1
            (entry,) = agent.runtime.agent.dump()
            assert entry["state"] == "confirmed"
        finally:
            agent.close()

    run(scenario())


def test_interval_too_brief_ser_keeps_failing(kamailio: KamailioLab) -> None:
    async def scenario() -> None:
        agent = await AgentUnderTest.start(
            profile="ser", presence_route=ROUTE, default_expiration=MIN_EXPIRES - 2,
            on_error_retry_time=1)
        try:
            agent.subscribe("sip:brief-ser@lab.test")
            # SER ignores Min-Expires: the same too-short Expires again after 1 s, and again.
            await until(lambda: agent.counter("rx.response.423") >= 3, timeout=6,
                        what="three 423 answers")
            assert agent.statuses == []  # SER reports no failure to the subscriber
            assert agent.counter("rx.response.200") == 0
        finally:
            agent.close()

    run(scenario())


def test_b2b_agent_cli_with_control_protocol(kamailio: KamailioLab, loop_name: str) -> None:
    """The `b2b-agent` process, driven over its control socket, sees alice's PUBLISH."""
    user = f"cli-alice-{loop_name}"

    async def scenario() -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "reference", "--loop", loop_name, "--listen", "127.0.0.1:0",
            "--control", "127.0.0.1:0", "--param", f"presence_route={ROUTE}",
            "--param", "default_expiration=60", "--duration", "30",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            assert process.stderr is not None
            control_port = None
            async with asyncio.timeout(10):
                while control_port is None:
                    line = (await process.stderr.readline()).decode()
                    assert line, "b2b-agent exited during startup"
                    found = re.search(r"control protocol on tcp 127\.0\.0\.1:(\d+)", line)
                    if found:
                        control_port = int(found.group(1))
            reader, writer = await asyncio.open_connection("127.0.0.1", control_port)

            async def request(**fields: Any) -> None:
                writer.write(json.dumps(fields).encode() + b"\n")
                await writer.drain()

            async def read() -> dict[str, Any]:
                line = await asyncio.wait_for(reader.readline(), 8)
                assert line, "control connection closed"
                obj: dict[str, Any] = json.loads(line)
                return obj

            await request(op="subscribe", record=f"sip:{user}@lab.test",
                          subscriber="sip:bob@lab.test", id=1)
            assert await read() == {"ok": True, "handle": 1, "id": 1}
            first = await read()
            assert first["event"] == "status" and first["status"] == "active"
            await kamailio.publish(user, "open")
            opened = await read()
            assert opened["document"]["tuples"][0]["basic"] == "open"
            await request(op="shutdown")
            assert (await read())["ok"] is True
            # Graceful: the agent unsubscribes, Kamailio's terminated NOTIFY ends it, exit 0.
            await finish(process, 10)
            assert process.returncode == 0
            writer.close()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    run(scenario(), timeout=40)
