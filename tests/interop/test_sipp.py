"""SIPp as a scripted notifier (UAS scenarios in tests/interop/sipp/): the agent over real UDP
shows the profile behaviour the core tests pin with simulated time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.interop.conftest import (
    SIPP_DIR,
    AgentUnderTest,
    basic,
    finish,
    free_udp_port,
    udp_port_bound,
)
from tests.reference.test_udp import run, until

# Every test here runs on both event loops (tests/event_loops.py).
pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("loop_name")]

RECORD = "sip:alice@lab.test"


async def start_uas(sipp: str, scenario: str, port: int, calls: int, cwd: Path,
                    *keys: str) -> asyncio.subprocess.Process:
    """Start SIPp as a UAS on 127.0.0.1:port and wait (bounded) until it has bound the port."""
    key_args: list[str] = []
    for pair in keys:
        name, value = pair.split("=", 1)
        key_args += ["-key", name, value]
    process = await asyncio.create_subprocess_exec(
        sipp, "-sf", str(SIPP_DIR / scenario), "-i", "127.0.0.1", "-p", str(port),
        "-m", str(calls), "-nostdin", "-timeout", "20s", "-timeout_error", *key_args,
        cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    await until(lambda: udp_port_bound(port) or process.returncode is not None, timeout=5,
                what="SIPp to bind its port")
    assert process.returncode is None, "SIPp exited at startup"
    return process


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
        await process.wait()


def test_rejected_initial_subscribe_rfc6665(sipp_bin: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        port = free_udp_port()
        uas = await start_uas(sipp_bin, "reject_subscribe.xml", port, 1, tmp_path)
        agent = await AgentUnderTest.start(profile="rfc6665",
                                           presence_route=f"<sip:127.0.0.1:{port};lr>")
        try:
            agent.subscribe(RECORD)
            status = await agent.next_status(what="rejected")
            assert status.status == "rejected"
            # A permanent failure: the next attempt waits max_retry_time.
            assert status.retry_at is not None
            assert status.retry_at - status.at == pytest.approx(
                agent.runtime.agent.config.max_retry_time)
            out = await finish(uas, 10)
            assert uas.returncode == 0, out
            assert agent.counter("rx.response.403") == 1
        finally:
            agent.close()
            await stop(uas)

    run(scenario())


def test_rejected_initial_subscribe_ser_retries_silently(sipp_bin: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        port = free_udp_port()
        uas = await start_uas(sipp_bin, "reject_subscribe.xml", port, 2, tmp_path)
        agent = await AgentUnderTest.start(profile="ser", on_error_retry_time=1,
                                           presence_route=f"<sip:127.0.0.1:{port};lr>")
        loop = asyncio.get_running_loop()
        answered_at: list[float] = []

        def count_403s() -> bool:
            while len(answered_at) < agent.counter("rx.response.403"):
                answered_at.append(loop.time())
            return len(answered_at) >= 2

        try:
            agent.subscribe(RECORD)
            await until(count_403s, timeout=5, what="two 403s")
            # SER: no status to the subscriber, a new SUBSCRIBE after on_error_retry_time.
            assert agent.statuses == []
            assert answered_at[1] - answered_at[0] == pytest.approx(1.0, abs=0.25)
            out = await finish(uas, 10)
            assert uas.returncode == 0, out
        finally:
            agent.close()
            await stop(uas)

    run(scenario())


@pytest.mark.parametrize(("profile", "reason", "status", "reported", "state_after"), [
    ("rfc6665", "noresource", "terminated", "noresource", "terminated"),  # final
    ("rfc6665", "rejected", "rejected", "rejected", "terminated"),
    # SER only reports the status, without the reason, and keeps the dialog (defect B2).
    ("ser", "noresource", "terminated", None, "confirmed"),
])
def test_terminated_notify_with_reason(sipp_bin: str, tmp_path: Path, profile: str,
                                       reason: str, status: str, reported: str | None,
                                       state_after: str) -> None:
    async def scenario() -> None:
        port = free_udp_port()
        uas = await start_uas(sipp_bin, "terminated_notify.xml", port, 1, tmp_path,
                              f"reason={reason}")
        agent = await AgentUnderTest.start(profile=profile,
                                           presence_route=f"<sip:127.0.0.1:{port};lr>")
        try:
            agent.subscribe(RECORD)
            active = await agent.next_status(what="active")
            assert active.status == "active" and basic(active) == "open"
            ended = await agent.next_status(what=f"{status} ({reason})")
            assert ended.status == status
            assert ended.reason == reported
            out = await finish(uas, 10)  # SIPp got a 200 for both NOTIFYs
            assert uas.returncode == 0, out
            (entry,) = agent.runtime.agent.dump()
            assert entry["state"] == state_after
            assert agent.counter("tx.SUBSCRIBE") == 1  # no new SUBSCRIBE for these reasons
        finally:
            agent.close()
            await stop(uas)

    run(scenario())
