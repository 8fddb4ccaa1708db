"""The core's one deadline queue (reference.timers), driven by an injected clock."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference import timers
from reference.timers import DeadlineQueue, TimerKey, TimerKind, public_key, timer_n_key


def K(name: str | int) -> TimerKey:
    """A key named by a string (a transaction timer name) or an int (a handle)."""
    if isinstance(name, int):
        return TimerKey(TimerKind.SUBSCRIPTION, name)
    return TimerKey(TimerKind.CLIENT_TX, branch="z9hG4bK1", name=name)




def drain(queue: DeadlineQueue, now: float) -> list[Any]:
    fired = []
    while (key := queue.pop_due(now)) is not None:
        fired.append(key.handle if key.kind is TimerKind.SUBSCRIPTION else key.name)
    return fired


def test_a_subscriptions_int_keys_show_as_timer_keys() -> None:
    queue = DeadlineQueue()
    queue.arm(0, 1.0)  # handle 0's subscription timer
    queue.arm(timer_n_key(0), 2.0)
    queue.arm(K("E"), 3.0)
    assert queue.deadlines() == {TimerKey(TimerKind.SUBSCRIPTION, 0): 1.0,
                                 TimerKey(TimerKind.TIMER_N, 0): 2.0, K("E"): 3.0}
    assert [public_key(key) for key in (queue.pop_due(5.0), queue.pop_due(5.0))] == [
        TimerKey(TimerKind.SUBSCRIPTION, 0), TimerKey(TimerKind.TIMER_N, 0)]


def test_rearmed_later_fires_once_at_the_new_time() -> None:
    queue = DeadlineQueue()
    queue.arm(K("a"), 1.0)
    queue.arm(K("a"), 5.0)
    assert drain(queue, 1.0) == [] and drain(queue, 4.999) == []
    assert K("a") in queue and queue.at(K("a")) == 5.0
    assert drain(queue, 5.0) == ["a"]
    assert drain(queue, 100.0) == [] and len(queue) == 0


def test_rearmed_earlier_fires_once_at_the_new_time() -> None:
    queue = DeadlineQueue()
    queue.arm(K("a"), 5.0)
    queue.arm(K("a"), 2.0)
    assert drain(queue, 1.9) == []
    assert drain(queue, 2.0) == ["a"]
    assert drain(queue, 10.0) == []  # the entry left at 5.0 is stale


def test_cancelled_never_fires_and_restart_after_cancel_fires_once() -> None:
    queue = DeadlineQueue()
    queue.arm(K("gone"), 1.0)
    queue.cancel(K("gone"))
    queue.cancel(K("never-started"))
    assert drain(queue, 10.0) == [] and len(queue) == 0
    queue.arm(K("b"), 11.0)
    queue.cancel(K("b"))
    queue.arm(K("b"), 11.0)  # same deadline as the cancelled arm: still one firing
    assert drain(queue, 20.0) == ["b"]


def test_due_keys_come_out_in_deadline_order_including_lazily_rearmed_ones() -> None:
    queue = DeadlineQueue()
    queue.arm(K("x"), 3.0)
    queue.arm(K("y"), 1.0)
    queue.arm(K("z"), 2.0)
    queue.arm(K("y"), 2.5)  # lazy re-arm: its old entry at 1.0 must not make it fire first
    assert drain(queue, 10.0) == ["z", "y", "x"]


def test_heap_stays_proportional_to_live_timers_under_rearming() -> None:
    queue = DeadlineQueue()
    for step in range(20_000):  # each re-arm is earlier: every one pushes an entry
        queue.arm(K(step % 10), 1_000_000.0 - step)
    assert len(queue) == 10
    assert len(queue._heap) <= max(64, 2 * len(queue)) + 1
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
    queue = DeadlineQueue()
    model: dict[int, float] = {}
    now = 0.0
    for op, key, value in ops:
        if op == "start":
            queue.arm(K(key), now + value)
            model[key] = now + value
        elif op == "cancel":
            queue.cancel(K(key))
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
        assert all(queue.at(K(k)) == at for k, at in model.items())
        next_at = queue.next_deadline()
        if model:  # the loop timer is never set later than the earliest live deadline
            assert next_at is not None and next_at <= min(model.values())


def test_equal_deadlines_fire_in_arming_order_and_a_rearm_moves_to_the_back() -> None:
    queue = DeadlineQueue()
    for name in ("c", "a", "b"):
        queue.arm(K(name), 1.0)
    queue.arm(K("c"), 1.0)  # re-armed for the same time: now armed last
    assert drain(queue, 1.0) == ["a", "b", "c"]


def test_a_timer_armed_while_draining_at_or_before_now_comes_out_in_the_same_drain() -> None:
    queue = DeadlineQueue()
    queue.arm(K("first"), 1.0)
    queue.arm(K("later"), 1.0)
    assert queue.pop_due(1.0) == K("first")
    queue.arm(K("chained"), 0.5)  # what a timer's action may do
    assert drain(queue, 1.0) == ["chained", "later"]
    assert queue.next_deadline() is None


def test_deadlines_lists_the_live_timers() -> None:
    queue = DeadlineQueue()
    queue.arm(K(1), 3.0)
    queue.arm(K(2), 4.0)
    queue.cancel(K(1))
    assert queue.deadlines() == {K(2): 4.0}


# Keys of every shape a queue holds: subscription handles, Timer N keys (< 0), TimerKeys,
# and ints too large for an entry's key code (kept like TimerKeys).
ANY_KEYS = st.sampled_from([0, 1, 7, timer_n_key(0), timer_n_key(7), K("E"), K("F"),
                            2**40, -(2**40)])
ANY_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("arm"), ANY_KEYS, st.sampled_from([-1.5, -0.0, 0.0, 1.0, 2.0, 2.5])),
        st.tuples(st.just("cancel"), ANY_KEYS, st.just(0.0)),
        st.tuples(st.just("pop"), st.just(0), st.sampled_from([-1.0, 0.0, 1.0, 2.5, 9.0])),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(ops=ANY_OPS, renumber_every=st.sampled_from([None, 1, 3]))
def test_pop_order_is_deadline_then_arming_order(
    ops: list[tuple[str, Any, float]], renumber_every: int | None
) -> None:
    """Against a model that sorts (deadline, arm count): the exact order, ties included,
    with cancels and re-arms, of every key shape; also with the arm counter running out of
    bits every few arms (the live entries are renumbered in their order)."""
    with pytest.MonkeyPatch.context() as patch:
        if renumber_every is not None:
            patch.setattr(timers, "_SEQ_LIMIT", renumber_every)
        check_against_the_model(ops)


def check_against_the_model(ops: list[tuple[str, Any, float]]) -> None:
    queue = DeadlineQueue()
    model: dict[Any, tuple[float, int]] = {}
    for count, (op, key, value) in enumerate(ops):
        if op == "arm":
            queue.arm(key, value)
            model[key] = (value + 0.0, count)
        elif op == "cancel":
            queue.cancel(key)
            model.pop(key, None)
        else:
            expected = sorted((entry, k) for k, entry in model.items() if entry[0] <= value)
            assert drain_keys(queue, value) == [k for _, k in expected]
            for _, k in expected:
                del model[k]
        assert len(queue) == len(model)
        assert {k: queue.at(k) for k in model} == {k: at for k, (at, _) in model.items()}
        first = min(model.values(), default=None)
        assert queue.next_deadline() == (None if first is None else first[0])


def drain_keys(queue: DeadlineQueue, now: float) -> list[Any]:
    fired = []
    while (key := queue.pop_due(now)) is not None:
        fired.append(key)
    return fired


def test_deadlines_keep_their_exact_float_values() -> None:
    queue = DeadlineQueue()
    values = [0.1 + 0.2, 1e-300, 5e-324, 1e300, float("inf"), -2.5, 3600.000000001]
    for handle, at in enumerate(values):
        queue.arm(handle, at)
    assert [queue.at(handle) for handle in range(len(values))] == values
    assert drain_keys(queue, float("inf")) == [5, 2, 1, 0, 6, 3, 4]
