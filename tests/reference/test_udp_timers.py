"""The UDP runtime's timer queue (driven by an injected clock) and its loop wiring, the
send batching of a read, and the IP-literal cache.

Real-loop waits are bounded (`until` from test_udp polls with a deadline); no sleeps-and-hope.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference import AgentConfig, CancelTimer, StartTimer
from reference.udp import (
    COMPACT_SLACK,
    LITERAL_CACHE_SIZE,
    NONE_DUE,
    TimerQueue,
    UdpRuntime,
    _ip_literal,
)
from tests.reference.test_udp import run, until

# ---------------------------------------------------------------- TimerQueue, injected clock


def drain(queue: TimerQueue, now: float) -> list[Any]:
    fired = []
    while (key := queue.pop_due(now)) is not NONE_DUE:
        fired.append(key)
    return fired


def test_rearmed_later_fires_once_at_the_new_time() -> None:
    queue = TimerQueue()
    queue.start("a", 1.0)
    queue.start("a", 5.0)
    assert drain(queue, 1.0) == [] and drain(queue, 4.999) == []
    assert "a" in queue and queue.deadline("a") == 5.0
    assert drain(queue, 5.0) == ["a"]
    assert drain(queue, 100.0) == [] and len(queue) == 0


def test_rearmed_earlier_fires_once_at_the_new_time() -> None:
    queue = TimerQueue()
    queue.start("a", 5.0)
    queue.start("a", 2.0)
    assert drain(queue, 1.9) == []
    assert drain(queue, 2.0) == ["a"]
    assert drain(queue, 10.0) == []  # the entry left at 5.0 is stale


def test_cancelled_never_fires_and_restart_after_cancel_fires_once() -> None:
    queue = TimerQueue()
    queue.start("gone", 1.0)
    queue.cancel("gone")
    queue.cancel("never-started")
    assert drain(queue, 10.0) == [] and len(queue) == 0
    queue.start("b", 11.0)
    queue.cancel("b")
    queue.start("b", 11.0)  # same deadline as the cancelled arm: still one firing
    assert drain(queue, 20.0) == ["b"]


def test_due_keys_come_out_in_deadline_order_including_lazily_rearmed_ones() -> None:
    queue = TimerQueue()
    queue.start("x", 3.0)
    queue.start("y", 1.0)
    queue.start("z", 2.0)
    queue.start("y", 2.5)  # lazy re-arm: its old entry at 1.0 must not make it fire first
    assert drain(queue, 10.0) == ["z", "y", "x"]


def test_keys_need_not_be_orderable() -> None:
    queue = TimerQueue()
    queue.start(("tx", 1), 1.0)
    queue.start(frozenset({1}), 1.0)
    queue.start(None, 1.0)
    assert len(drain(queue, 1.0)) == 3


def test_heap_stays_proportional_to_live_timers_under_rearming() -> None:
    queue = TimerQueue()
    for step in range(20_000):  # each re-arm is earlier: every one pushes an entry
        queue.start(step % 10, 1_000_000.0 - step)
    assert len(queue) == 10
    assert len(queue._heap) <= 2 * len(queue) + COMPACT_SLACK + 1
    fired = drain(queue, 1_000_000.0)
    assert sorted(fired) == list(range(10)) and len(fired) == 10


KEYS = st.integers(0, 5)
TIMES = st.integers(0, 40).map(float)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("start"), KEYS, TIMES),
        st.tuples(st.just("cancel"), KEYS, st.just(0.0)),
        st.tuples(st.just("advance"), st.just(0), st.integers(0, 8).map(float)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops=OPS)
def test_timer_queue_matches_a_dict_model(ops: list[tuple[str, int, float]]) -> None:
    """Against a plain dict: the same keys fire, each once, never early, in deadline order."""
    queue = TimerQueue()
    model: dict[int, float] = {}
    now = 0.0
    for op, key, value in ops:
        if op == "start":
            queue.start(key, now + value)
            model[key] = now + value
        elif op == "cancel":
            queue.cancel(key)
            model.pop(key, None)
        else:
            now += value
            fired = drain(queue, now)
            due = {k for k, at in model.items() if at <= now}
            assert sorted(fired) == sorted(due)
            deadlines = [model[k] for k in fired]
            assert deadlines == sorted(deadlines)
            for k in fired:
                del model[k]
        assert len(queue) == len(model)
        assert all(queue.deadline(k) == at for k, at in model.items())
        next_at = queue.next_at()
        if model:  # the loop timer is never set later than the earliest live deadline
            assert next_at is not None and next_at <= min(model.values())


# ---------------------------------------------------------------- on the real loop


def test_runtime_timers_fire_once_in_order_never_early_and_not_when_cancelled() -> None:
    async def scenario() -> None:
        runtime = await UdpRuntime.open(AgentConfig(), "127.0.0.1", 0)
        fired: list[tuple[object, float]] = []
        runtime.agent.timer_fired = (  # type: ignore[method-assign]
            lambda key, *, now: fired.append((key, now)))
        try:
            loop = asyncio.get_running_loop()
            base = loop.time()
            runtime._effect(StartTimer("c", base + 0.09))
            runtime._effect(StartTimer("a", base + 0.03))
            runtime._effect(StartTimer("b", base + 0.30))
            runtime._effect(StartTimer("b", base + 0.06))  # re-armed earlier
            runtime._effect(StartTimer("late", base + 0.02))
            runtime._effect(StartTimer("late", base + 0.12))  # re-armed later
            runtime._effect(StartTimer("gone", base + 0.04))
            runtime._effect(CancelTimer("gone"))
            assert len(runtime._timers) == 4
            await until(lambda: len(fired) >= 4, timeout=3, what="four timers")
            await asyncio.sleep(0.3)  # past b's first deadline: nothing more may fire
            assert [key for key, _ in fired] == ["a", "b", "c", "late"]
            deadlines = {"a": 0.03, "b": 0.06, "c": 0.09, "late": 0.12}
            assert all(now >= base + deadlines[str(key)] for key, now in fired)
            assert runtime.counters.timers_fired == 4 and not runtime._timers
        finally:
            runtime.close()

    run(scenario())


def test_timer_armed_while_timers_fire_is_scheduled() -> None:
    async def scenario() -> None:
        runtime = await UdpRuntime.open(AgentConfig(), "127.0.0.1", 0)
        fired: list[object] = []
        loop = asyncio.get_running_loop()

        def on_timer(key: object, *, now: float) -> None:
            fired.append(key)
            if key == "first":  # what the agent does: arm the next timer from a timer
                runtime._effect(StartTimer("second", now + 0.02))

        runtime.agent.timer_fired = on_timer  # type: ignore[method-assign]
        try:
            runtime._effect(StartTimer("first", loop.time() + 0.02))
            await until(lambda: len(fired) == 2, timeout=3, what="the chained timer")
            assert fired == ["first", "second"]
        finally:
            runtime.close()

    run(scenario())


def test_close_cancels_pending_timers() -> None:
    async def scenario() -> None:
        runtime = await UdpRuntime.open(AgentConfig(), "127.0.0.1", 0)
        fired: list[object] = []
        runtime.agent.timer_fired = (  # type: ignore[method-assign]
            lambda key, *, now: fired.append(key))
        loop = asyncio.get_running_loop()
        runtime._effect(StartTimer("x", loop.time() + 0.02))
        runtime.close()
        runtime._effect(StartTimer("y", loop.time() + 0.02))  # after close: ignored
        await asyncio.sleep(0.1)
        assert fired == [] and len(runtime._timers) == 0

    run(scenario())


# ---------------------------------------------------------------- send batching


def test_sends_of_a_read_batch_leave_in_order_and_close_flushes_them() -> None:
    async def scenario() -> None:
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(2.0)  # bounded wait for each datagram
        runtime = await UdpRuntime.open(AgentConfig(), "127.0.0.1", 0)
        try:
            address = ("127.0.0.1", peer.getsockname()[1])
            runtime._outbox = []  # as inside `_read_ready`
            for number in range(3):
                runtime._sendto(b"answer %d" % number, address)
            assert runtime.counters.datagrams_sent == 0  # held until the batch ends
            runtime.close()  # e.g. a listener closing the runtime mid-batch
            assert [peer.recv(100) for _ in range(3)] == [b"answer 0", b"answer 1",
                                                          b"answer 2"]
            assert runtime.counters.datagrams_sent == 3
        finally:
            runtime.close()
            peer.close()

    run(scenario())


def test_answers_to_a_burst_all_arrive() -> None:
    """Many datagrams in one read batch: every one is answered (a 481 each), in order."""
    async def scenario() -> None:
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(2.0)
        runtime = await UdpRuntime.open(AgentConfig(), "127.0.0.1", 0)
        try:
            port = peer.getsockname()[1]
            for number in range(40):
                peer.sendto((
                    "NOTIFY sip:x@127.0.0.1 SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKburst{number}\r\n"
                    "Max-Forwards: 70\r\nFrom: <sip:n@lab.test>;tag=a\r\n"
                    "To: <sip:s@lab.test>;tag=nope\r\n"
                    f"Call-ID: burst{number}\r\nCSeq: 1 NOTIFY\r\n"
                    "Contact: <sip:n@127.0.0.1>\r\nEvent: presence\r\n"
                    "Subscription-State: active\r\nContent-Length: 0\r\n\r\n").encode(),
                    runtime.local_address)
            loop = asyncio.get_running_loop()
            answers = [await loop.run_in_executor(None, peer.recv, 65535) for _ in range(40)]
            assert all(a.startswith(b"SIP/2.0 481 ") for a in answers)
            order = [int(a.split(b"branch=z9hG4bKburst")[1].split(b"\r\n")[0].split(b";")[0])
                     for a in answers]
            assert order == list(range(40))
        finally:
            runtime.close()
            peer.close()

    run(scenario())


# ---------------------------------------------------------------- IP literal cache


@pytest.mark.parametrize(("host", "literal"), [
    ("127.0.0.1", "127.0.0.1"), ("[::1]", "::1"), ("::1", "::1"),
    ("[2001:db8::7]", "2001:db8::7"), ("lab.test", None), ("127.0.0.256", None), ("", None),
])
def test_ip_literal(host: str, literal: str | None) -> None:
    assert _ip_literal(host) == literal
    assert _ip_literal(host) == literal  # cached answer is the same


def test_ip_literal_cache_is_bounded() -> None:
    for number in range(LITERAL_CACHE_SIZE + 10):
        _ip_literal(f"host{number}.lab.test")
    assert _ip_literal.cache_info().currsize <= LITERAL_CACHE_SIZE
