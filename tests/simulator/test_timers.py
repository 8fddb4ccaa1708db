"""Keyed one-shot timers: cancelled and replaced timers never fire (both implementations)."""

from __future__ import annotations

from collections.abc import Callable, Hashable

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.timers import CallbackTimers, HeapTimers, LazyTimers, TimerCallback

AnyTimers = CallbackTimers | HeapTimers | LazyTimers
IMPLEMENTATIONS: list[type[AnyTimers]] = [CallbackTimers, HeapTimers, LazyTimers]


@pytest.mark.parametrize("cls", IMPLEMENTATIONS)
def test_cancel_and_replace(cls: type[AnyTimers]) -> None:
    env = simpy.Environment()
    fired: list[tuple[float, Hashable]] = []
    timers = cls(env, lambda key: fired.append((env.now, key)))
    timers.start("a", 5)
    timers.start("b", 3)
    timers.start("c", 4)
    timers.cancel("c")
    timers.start("a", 2)  # replaces the 5 s timer
    env.run()
    assert fired == [(2, "a"), (3, "b")]
    assert timers.pending() == 0


# Operations: (time slot, key, start delay or None for cancel). Ops happen at even times and
# timers are due at odd times, so the model needs no tie-breaking between an op and a fire.
ops = st.lists(
    st.tuples(st.integers(0, 10), st.integers(0, 4), st.one_of(st.none(), st.integers(0, 15))),
    max_size=40,
)


def _model(schedule: list[tuple[int, int, int | None]]) -> list[tuple[float, Hashable]]:
    live: dict[int, int] = {}
    fired: list[tuple[float, Hashable]] = []

    def fire_until(t: float) -> None:
        for key, at in sorted(live.items(), key=lambda kv: kv[1]):
            if at < t:
                fired.append((at, key))
                del live[key]

    for slot, key, delay in sorted(schedule, key=lambda op: op[0]):
        fire_until(2 * slot)
        if delay is None:
            live.pop(key, None)
        else:
            live[key] = 2 * slot + 2 * delay + 1
    fire_until(float("inf"))
    return sorted(fired, key=lambda f: (f[0], str(f[1])))


def _recorder(env: simpy.Environment, fired: list[tuple[float, Hashable]]) -> TimerCallback:
    return lambda key: fired.append((env.now, key))


def _action(timers: AnyTimers, key: int, slot: int, delay: int | None) -> Callable[[object], None]:
    def act(_event: object) -> None:
        if delay is None:
            timers.cancel(key)
        else:
            timers.start(key, 2 * slot + 2 * delay + 1)

    return act


@settings(max_examples=60, deadline=None)
@given(ops)
def test_implementations_agree_with_a_model(schedule: list[tuple[int, int, int | None]]) -> None:
    for cls in IMPLEMENTATIONS:
        env = simpy.Environment()
        fired: list[tuple[float, Hashable]] = []
        timers = cls(env, _recorder(env, fired))
        for slot, key, delay in sorted(schedule, key=lambda op: op[0]):
            env.timeout(2 * slot).callbacks.append(_action(timers, key, slot, delay))
        env.run()
        assert sorted(fired, key=lambda f: (f[0], str(f[1]))) == _model(schedule), cls.__name__


def test_lazy_timers_compact_deadlines_moved_earlier_again_and_again() -> None:
    # A refresh timer pulled earlier by every NOTIFY leaves one queued entry each time;
    # compaction keeps the queue near the number of live timers and changes no firing.
    env = simpy.Environment()
    fired: list[tuple[float, Hashable]] = []
    timers = LazyTimers(env, _recorder(env, fired))
    keys = 50
    for step in range(200):
        for key in range(keys):
            timers.start(key, 10_000.0 - step - key / 100)
    assert timers.pending() == keys
    assert len(timers._queue) <= 2 * max(1024, 2 * keys)
    timers.cancel(0)
    env.run()
    expected = sorted((10_000.0 - 199 - key / 100, key) for key in range(1, keys))
    assert fired == expected


def test_lazy_timers_cancelled_before_due_cost_no_simpy_event() -> None:
    env = simpy.Environment()
    fired: list[tuple[float, Hashable]] = []
    timers = LazyTimers(env, _recorder(env, fired))
    timers.start("keep", 100.0)
    for key in range(1000):  # each started and cancelled while a later wakeup is armed...
        timers.start(key, 200.0 + key)
        timers.cancel(key)
    env.run()
    assert fired == [(100.0, "keep")]
    # ...so the only SimPy events were the wakeup for "keep" and its re-arm (none left).
    assert len(env._queue) == 0 and env.now == 100.0
