"""The simulator's DeadlineQueue (the notifier model's timers) and its SimPy wake-ups."""

from __future__ import annotations

from collections.abc import Hashable

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import timers
from simulator.timers import DeadlineQueue


class Owner:
    """A DeadlineQueue owner that keeps one deadline per key, like the notifier model."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.deadlines: dict[Hashable, float] = {}
        self.fired: list[tuple[float, Hashable]] = []
        self.queue = DeadlineQueue(env, self._fire, self.deadlines.get)

    def start(self, key: Hashable, at: float) -> None:
        current = self.deadlines.get(key)
        self.deadlines[key] = at
        if current is None or at < current:
            self.queue.push(at, key)

    def cancel(self, key: Hashable) -> None:
        self.deadlines.pop(key, None)

    def _fire(self, key: Hashable) -> None:
        del self.deadlines[key]
        self.fired.append((self.env.now, key))


OPS = st.lists(st.tuples(st.integers(0, 5), st.one_of(st.none(), st.integers(1, 30))),
               max_size=40)


@settings(max_examples=200, deadline=None)
@given(ops=OPS)
def test_fires_what_a_dict_model_says(ops: list[tuple[int, int | None]]) -> None:
    """Starts (key, time) and cancels (key, None) at time 0: exactly the uncancelled keys
    fire, once each, at their last deadline, in deadline order (ties in start order)."""
    env = simpy.Environment()
    owner = Owner(env)
    model: dict[Hashable, float] = {}
    for key, at in ops:
        if at is None:
            owner.cancel(key)
            model.pop(key, None)
        else:
            owner.start(key, float(at))
            model[key] = float(at)
    env.run()
    assert sorted(owner.fired, key=lambda f: f[0]) == owner.fired
    assert {key: at for at, key in owner.fired} == model
    assert len(owner.fired) == len(model)


def test_compacts_deadlines_moved_earlier_again_and_again() -> None:
    # A deadline pulled earlier again and again leaves one queued entry each time;
    # compaction keeps the queue near the number of live keys and changes no firing.
    env = simpy.Environment()
    owner = Owner(env)
    keys = 50
    for step in range(200):
        for key in range(keys):
            owner.start(key, 10_000.0 - step - key / 100)
    assert len(owner.deadlines) == keys
    assert len(owner.queue) <= 2 * max(1024, 2 * keys)
    owner.cancel(0)
    env.run()
    assert owner.fired == sorted((10_000.0 - 199 - key / 100, key) for key in range(1, keys))


def test_dropped_before_due_costs_no_simpy_event() -> None:
    env = simpy.Environment()
    owner = Owner(env)
    owner.start("keep", 100.0)
    for key in range(1000):  # each started and cancelled while an earlier wakeup is armed...
        owner.start(key, 200.0 + key)
        owner.cancel(key)
    env.run()
    assert owner.fired == [(100.0, "keep")]
    # ...so the only SimPy event was the wakeup for "keep" (none left).
    assert len(env._queue) == 0 and env.now == 100.0


KEYS_OF_ANY_SHAPE = st.sampled_from([0, 1, 2**48 - 1, 2**49, -1, "z9hG4bKa", ("t", 1)])


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(st.tuples(KEYS_OF_ANY_SHAPE, st.one_of(st.none(), st.integers(0, 6))),
                 max_size=40),
    renumber_every=st.sampled_from([None, 1, 4]),
)
def test_equal_deadlines_fire_in_push_order_whatever_the_key(
    ops: list[tuple[Hashable, int | None]], renumber_every: int | None
) -> None:
    """Keys packed into the entry (small non-negative ints) and keys kept beside it fire
    alike: by deadline, equal deadlines in the order of their last push; also when the
    push count runs out of bits every few pushes (the entries are renumbered in order)."""
    with pytest.MonkeyPatch.context() as patch:
        if renumber_every is not None:
            patch.setattr(timers, "SEQ_LIMIT", renumber_every)
        env = simpy.Environment()
        owner = Owner(env)
        started: dict[Hashable, tuple[float, int]] = {}
        cancelled: set[Hashable] = set()
        for count, (key, at) in enumerate(ops):
            if at is None:
                owner.cancel(key)
                if started.pop(key, None) is not None:
                    cancelled.add(key)
            elif key not in cancelled and (key not in started or float(at) < started[key][0]):
                # Only starts that push, of keys with no entry left behind (a key moved
                # later, or started again after a cancel, keeps its old entry, which this
                # model does not follow).
                owner.start(key, float(at))
                started[key] = (float(at), count)
        env.run()
        expected = sorted((entry, repr(key), key) for key, entry in started.items())
        assert owner.fired == [(at, key) for (at, _), _, key in expected]
