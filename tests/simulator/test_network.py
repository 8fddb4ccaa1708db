"""Network: loss and duplication rates, partitions, latency laws, determinism."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.network import Latency, LinkSpec, Network, Partition
from simulator.rng import derive_seed


def _pair(
    seed: int, spec: LinkSpec
) -> tuple[simpy.Environment, Network, list[tuple[float, bytes]]]:
    env = simpy.Environment()
    net = Network(env, seed, default_link=spec)
    arrivals: list[tuple[float, bytes]] = []
    net.add_node("a", ("10.0.0.1", 5060), lambda d, s: None)
    net.add_node("b", ("10.0.0.2", 5060), lambda d, s: arrivals.append((env.now, d)))
    return env, net, arrivals


def _blast(seed: int, spec: LinkSpec, n: int) -> list[tuple[float, bytes]]:
    env, net, arrivals = _pair(seed, spec)
    for i in range(n):
        net.send("a", ("10.0.0.2", 5060), str(i).encode())
    env.run()
    return arrivals


def test_loss_rate_matches_probability() -> None:
    arrivals = _blast(1, LinkSpec(loss=0.2), 20_000)
    # Binomial sd is 0.0028; 0.015 is more than five of them.
    assert abs(len(arrivals) / 20_000 - 0.8) < 0.015


def test_duplication_rate_matches_probability() -> None:
    arrivals = _blast(2, LinkSpec(duplication=0.1), 20_000)
    assert abs((len(arrivals) - 20_000) / 20_000 - 0.1) < 0.015


def test_reorder_holds_back_by_reorder_delay() -> None:
    spec = LinkSpec(latency=Latency("constant", value=0.01), reorder=1.0, reorder_delay=0.3)
    arrivals = _blast(3, spec, 5)
    assert [round(t, 9) for t, _ in arrivals] == [0.31] * 5


def test_partition_drops_only_inside_window_and_between_sides() -> None:
    env = simpy.Environment()
    net = Network(env, 1)
    got: list[tuple[str, float]] = []

    def receiver(name: str) -> Callable[[bytes, tuple[str, int]], None]:
        return lambda _data, _source: got.append((name, env.now))

    for name, ip in (("a", "10.0.0.1"), ("b", "10.0.0.2"), ("c", "10.0.0.3")):
        net.add_node(name, (ip, 5060), receiver(name))
    net.add_partition(Partition(frozenset({"a"}), frozenset({"b"}), 10.0, 20.0))

    def burst(_event: object) -> None:
        net.send("a", ("10.0.0.2", 5060), b"x")
        net.send("b", ("10.0.0.1", 5060), b"y")
        net.send("a", ("10.0.0.3", 5060), b"z")

    for at in (5.0, 15.0, 25.0):
        env.timeout(at).callbacks.append(burst)
    env.run()
    times = sorted((name, round(t)) for name, t in got)
    assert times == [("a", 5), ("a", 25), ("b", 5), ("b", 25), ("c", 5), ("c", 15), ("c", 25)]
    assert net.counters["partitioned"] == 2


def test_latency_laws() -> None:
    uniform = _blast(4, LinkSpec(latency=Latency("uniform", low=0.1, high=0.2)), 2000)
    assert all(0.1 <= t <= 0.2 for t, _ in uniform)
    lognormal = _blast(5, LinkSpec(latency=Latency("lognormal", median=0.05, sigma=0.5)), 4001)
    times = sorted(t for t, _ in lognormal)
    assert abs(times[2000] - 0.05) < 0.005


def test_same_seed_same_arrivals_other_seed_different() -> None:
    spec = LinkSpec(latency=Latency("uniform", low=0.0, high=1.0), loss=0.1, reorder=0.1)
    first = _blast(7, spec, 500)
    assert first == _blast(7, spec, 500)
    assert first != _blast(8, spec, 500)


def test_host_names_resolve_and_unknown_destinations_are_counted() -> None:
    env = simpy.Environment()
    net = Network(env, 1)
    got: list[bytes] = []
    net.add_node("a", ("10.0.0.1", 5060), lambda d, s: None)
    net.add_node("ps", ("10.0.0.2", 5060), lambda d, s: got.append(d), aliases=["lab.test"])
    net.send("a", ("lab.test", 5060), b"hello")
    net.send("a", ("nowhere.test", 5060), b"lost")
    env.run()
    assert got == [b"hello"]
    assert net.counters["unroutable"] == 1


def test_seed_derivation_ignores_pythonhashseed() -> None:
    code = "from simulator.rng import derive_seed; print(derive_seed(1, 'link', 'a', 'b'))"
    outputs = set()
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(result.stdout.strip())
    assert outputs == {str(derive_seed(1, "link", "a", "b"))}


@settings(max_examples=30, deadline=None)
@given(
    loss=st.floats(0.0, 1.0),
    dup=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32),
    n=st.integers(0, 200),
)
def test_every_datagram_is_accounted_for(loss: float, dup: float, seed: int, n: int) -> None:
    env, net, arrivals = _pair(seed, LinkSpec(loss=loss, duplication=dup))
    for i in range(n):
        net.send("a", ("10.0.0.2", 5060), bytes([i % 256]))
    env.run()
    c = net.counters
    assert c["sent"] == n
    # Each duplicated datagram arrives twice; every other undropped one once.
    assert c["lost"] + c["delivered"] - c["duplicated"] == n
    assert len(arrivals) == c["delivered"]


def test_datagrams_sent_after_others_arrived_reach_their_own_node_with_their_own_source() -> None:
    # Sends after the first arrivals fill in processed arrivals (Network._spare): each must
    # still carry its own data, destination and source, at its own time.
    env = simpy.Environment()
    net = Network(env, 1, default_link=LinkSpec(latency=Latency("constant", value=0.01)))
    got: list[tuple[str, float, bytes, tuple[str, int]]] = []

    def receiver(name: str) -> Callable[[bytes, tuple[str, int]], None]:
        return lambda data, source: got.append((name, round(env.now, 9), data, source))

    net.add_node("a", ("10.0.0.1", 5060), receiver("a"))
    net.add_node("b", ("10.0.0.2", 5060), receiver("b"))

    def wave(at: float, sends: list[tuple[str, str, bytes]]) -> None:
        def go(_event: object) -> None:
            for source, host, data in sends:
                net.send(source, (host, 5060), data)

        env.timeout(at).callbacks.append(go)

    wave(0.0, [("a", "10.0.0.2", b"1"), ("b", "10.0.0.1", b"2"), ("a", "10.0.0.2", b"3")])
    wave(0.5, [("b", "10.0.0.1", b"4"), ("a", "10.0.0.2", b"5")])
    wave(1.0, [("a", "10.0.0.2", b"6"), ("b", "10.0.0.1", b"7"), ("b", "10.0.0.1", b"8")])
    env.run()
    a, b = ("10.0.0.1", 5060), ("10.0.0.2", 5060)
    assert got == [
        ("b", 0.01, b"1", a), ("a", 0.01, b"2", b), ("b", 0.01, b"3", a),
        ("a", 0.51, b"4", b), ("b", 0.51, b"5", a),
        ("b", 1.01, b"6", a), ("a", 1.01, b"7", b), ("a", 1.01, b"8", b),
    ]  # fmt: skip
    assert net.counters["delivered"] == 8
