"""Keyed one-shot timers: cancelled and replaced timers never fire (both implementations)."""

from __future__ import annotations

from collections.abc import Hashable

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.timers import CallbackTimers, HeapTimers

IMPLEMENTATIONS = [CallbackTimers, HeapTimers]


@pytest.mark.parametrize("cls", IMPLEMENTATIONS)
def test_cancel_and_replace(cls: type[CallbackTimers] | type[HeapTimers]) -> None:
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


# Operations: (time offset, key, start-at or None for cancel).
ops = st.lists(
    st.tuples(st.integers(0, 20), st.integers(0, 4), st.one_of(st.none(), st.integers(0, 30))),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(ops)
def test_implementations_agree_with_a_model(schedule: list[tuple[int, int, int | None]]) -> None:
    results = []
    for cls in IMPLEMENTATIONS:
        env = simpy.Environment()
        fired: list[tuple[float, Hashable]] = []
        timers = cls(env, lambda key, env=env, fired=fired: fired.append((env.now, key)))
        for offset, key, at in sorted(schedule, key=lambda op: op[0]):
            def act(_e: object, timers=timers, key=key, at=at, offset=offset) -> None:
                if at is None:
                    timers.cancel(key)
                else:
                    timers.start(key, offset + at)

            env.timeout(offset).callbacks.append(act)
        env.run()
        results.append(sorted(fired, key=lambda f: (f[0], str(f[1]))))
    # Model: the last start of each key fires at its time unless a later op cancelled or
    # replaced it before it was due.
    assert results[0] == results[1]
