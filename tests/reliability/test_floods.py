"""Floods over real UDP (issue 8 §2), small: 5,000 of each against a `b2b-agent` process.

The long version is `benchmarks/flood_bench.py` (100,000 of each, numbers in
docs/reliability.md). A warm-up flood of the same size comes first: Python's allocator keeps
the arenas of the first burst, so "RSS after within 10 % of before" is measured against the
warmed-up process (a leak would still grow it flood after flood).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from benchmarks.flood_bench import (
    MiniNotifier,
    flood,
    hold_subscriptions,
    running_agent,
    unknown_notify,
    unsolicited_200,
)
from reference.udp import UdpRuntime
from tests.reference.test_udp import TinyNotifier, lab_config, run, until

COUNT = 5000
GRANT = 4  # seconds: the agent refreshes every 2 s
T1 = 0.02  # transactions (Timer J/K) linger 64*T1 = 1.28 s, so the test can wait for them


@pytest.mark.slow
def test_floods_of_unknown_notifies_and_unsolicited_200s(loop_name: str) -> None:
    notifier = MiniNotifier(GRANT)
    try:
        params = {"default_expiration": str(GRANT), "t1": str(T1), "t2": "4", "trace": "0"}
        with running_agent(params, loop=loop_name) as agent:
            held = 3
            hold_subscriptions(agent, notifier, held)
            settle = 64 * T1 + 1.5
            flood(agent, notifier, "warm-up", COUNT, unknown_notify,
                  "rx.notify_unknown_dialog", settle)
            before = agent.stats()
            notifies = flood(agent, notifier, "NOTIFY", COUNT, unknown_notify,
                             "rx.notify_unknown_dialog", settle)
            responses = flood(agent, notifier, "200", COUNT, unsolicited_200,
                              "rx.unmatched_responses", settle)
            after = agent.stats()
            dump = agent.request({"op": "dump"})["subscriptions"]
            assert agent.proc.poll() is None, "the agent survived"
        assert agent.proc.returncode == 0, "and shut down cleanly"
    finally:
        notifier.close()

    # The kernel may drop some of a full-speed burst (counted per socket); the rest was
    # handled by the agent: every datagram is accounted for.
    assert notifies.handled >= COUNT // 2
    assert notifies.handled + notifies.kernel_dropped == COUNT
    assert responses.handled + responses.kernel_dropped == COUNT
    # Every handled NOTIFY got a 481 from the core; each was sent or rate-limited (counted).
    core_481 = (after["counters"]["tx.response.481"] - before["counters"]["tx.response.481"])
    assert core_481 == notifies.handled
    assert notifies.answers.get("481", 0) + notifies.rate_limited == notifies.handled
    assert set(notifies.answers) <= {"481"}
    # Responses that match nothing are counted and never answered.
    assert responses.handled >= COUNT // 2
    assert responses.answers == {}
    # The held subscriptions kept being refreshed on time through both floods.
    for result in (notifies, responses):
        assert result.max_refresh_gap < GRANT - 0.5, result.kind
    assert sum(1 for row in dump if row["state"] in ("confirmed", "resubscription")) == held
    # Nothing of the floods is left: no transaction timers, no memory growth.
    assert responses.timers_after <= 6 * held
    assert notifies.rss_after_kib <= notifies.rss_before_kib * 1.10
    assert responses.rss_after_kib <= notifies.rss_before_kib * 1.10


@pytest.mark.usefixtures("loop_name")
def test_error_answers_are_rate_limited_and_counted() -> None:
    """The runtime's token bucket: `burst` answers at once, then `rate` per second."""
    async def scenario() -> None:
        notifier = TinyNotifier()
        port = await notifier.open()
        runtime = await UdpRuntime.open(lab_config(port), "127.0.0.1", 0,
                                        error_answer_rate=5.0, error_answer_burst=10)
        try:
            assert notifier.transport is not None
            started = time.monotonic()
            for i in range(60):
                notifier.transport.sendto(
                    unknown_notify(i, ("127.0.0.1", port), runtime.local_address),
                    runtime.local_address)
            await until(lambda: runtime.agent.counters.get("rx.notify_unknown_dialog", 0) == 60,
                        what="60 NOTIFYs handled")
            await asyncio.sleep(0.05)  # answers in flight on loopback
            elapsed = time.monotonic() - started
            answered = sum(1 for r in notifier.responses if r.status == 481)
            limited = runtime.stats()["answers_rate_limited"]
            assert answered + limited == 60
            assert 10 <= answered <= 10 + 5 * elapsed + 1
            assert runtime.stats()["runtime"]["answers_rate_limited"] == limited
            # 200s are never rate-limited: a real subscription still works.
            seen: list[object] = []
            runtime.add_listener("q", seen.append)
            runtime.subscribe("sip:alice@lab.test", "sip:bob@lab.test", "q")
            await until(lambda: bool(seen), what="a status for a real subscription")
        finally:
            runtime.close()
            notifier.close()

    run(scenario())
