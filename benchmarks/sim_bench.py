"""Simulator throughput benchmark (prints numbers; asserts nothing).

Measures, in one process run:
1. the core's deadline queue (reference.timers) on a refresh-like pattern;
2. a bare-SimPy baseline: timeout callbacks only, the same event count as the simulation
   and as many events pending at a time as the simulation had on average (the heap depth
   is part of an event's cost);
3. the simulation: N subscriptions x 1 simulated hour (hourly refresh, 3 changes/hour),
   reporting simulated subscriber-hours per wall second, events/s (SimPy events processed:
   datagram arrivals, timer wakeups, workload callbacks), the ratio to the baseline, and
   memory per subscription; with --split, also the wall time spent inside the agent core
   (reference.Agent calls, timed by each host: `AgentHost.clock`) and the simulator's own
   event rate, events / (wall - agent time), against the same baseline;
4. optionally scenarios/load/federation-20k.yaml: messages/s (simulated) and wall time.

Targets from the issue: 100,000 subscriptions x 1 h in <= 60 s wall; >= 50 % of the
bare-SimPy event rate; <= 2 KiB per subscription. The CPU targets were set against the tree
the issue describes (ISSUE_ANCHOR, d77fa02: 104.9 s and 67.5 s on the machine of the day);
``--baseline d77fa02`` prints them as ratios to it, measured in the same run, and says
whether each is met.

    .venv/bin/python benchmarks/sim_bench.py                   # 100k subscriptions
    .venv/bin/python benchmarks/sim_bench.py --subscriptions 10000 --federation
    .venv-fast/bin/python benchmarks/sim_bench.py              # the compiled build (setup.py)

Against a git ref (``--baseline REF``): the ref's tree is exported (``git archive``) to a
temporary directory and measured beside the working tree in the same run, each measurement
in a fresh interpreter (the same Python; ``PYTHONPATH`` picks the tree), baseline and working
tree alternating, ``--repeat N`` times each; it prints the medians and their ratios:
CPU seconds of the N x 1 h run (build included; CPU, not wall, because the machine is
shared), subscriber-hours per CPU second, peak RSS, Python heap per live subscription
half-way through and at the end of a ``--memory-sample`` run (tracemalloc, after a full
collection), with ``--slope LOW,HIGH`` the heap per further live subscription half-way
(the heap difference between a LOW and a HIGH run over the difference in live
subscriptions: fixed costs cancel out) and, with ``--federation``, the CPU seconds of
federation-20k. ``--subscriptions 0`` skips the N x 1 h run.

    .venv/bin/python benchmarks/sim_bench.py --baseline main --repeat 3
    .venv/bin/python benchmarks/sim_bench.py --baseline d77fa02 --memory-sample 0 --federation
    .venv/bin/python benchmarks/sim_bench.py --baseline main --subscriptions 0 --slope 4000,16000
    .venv/bin/python benchmarks/sim_bench.py --baseline main --subscriptions 10000 --federation
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import simpy

from reference.timers import DeadlineQueue, TimerKey, TimerKind
from simulator.run import build, build_kind, finish
from simulator.workload import Workload, load_workload, workload_from_mapping

ROOT = Path(__file__).resolve().parents[1]

# The issue's CPU targets (100,000 x 1 h in <= 60 s, federation-20k in <= 40 s) were set
# against the tree it describes, d77fa02 ("today ~105 s", "~67 s": 104.9 s and 67.5 s on
# 2026-11-27's build machine). The same tree takes up to twice that on other machines of
# this kind, so a target is judged as the ratio to d77fa02 measured in the same run.
ISSUE_ANCHOR = "d77fa02b65b9a57a93a5d29e8d2cc360cf630896"
ANCHOR_SUBSCRIPTIONS = 100_000  # (the size the 100k target's ratio holds for)
TARGET_RATIOS = {"cpu": 60 / 104.9, "federation_cpu": 40 / 67.5}


def _rss_kib() -> int:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() // 1024


def bench_timers(keys: int = 50_000, horizon: float = 3600.0) -> None:
    """The core's deadline queue (reference.timers) on a refresh-like pattern: every key
    fires and re-arms 500-1000 s later until the horizon, the clock jumping from deadline to
    deadline as a driver's one wake-up would."""
    queue = DeadlineQueue()
    rng = random.Random(1)
    for handle in range(keys):
        queue.arm(TimerKey(TimerKind.SUBSCRIPTION, handle), rng.uniform(0, 1000))
    fired = 0
    started = time.perf_counter()
    while (now := queue.next_deadline()) is not None and now < horizon:
        while (key := queue.pop_due(now)) is not None:
            fired += 1
            queue.arm(key, now + rng.uniform(500, 1000))
    wall = time.perf_counter() - started
    print(f"timers reference.timers.DeadlineQueue {fired:8d} fires in {wall:6.2f} s "
          f"({fired / wall:,.0f}/s)")  # fmt: skip


def bare_simpy(events: int, chains: int = 10_000) -> float:
    """Events per wall second for plain timeout callbacks (each schedules the next);
    ``chains`` callbacks are pending at any time."""
    chains = max(1, min(chains, events))
    env = simpy.Environment()
    rng = random.Random(2)
    per_chain = max(1, events // chains)
    remaining = [per_chain] * chains

    def make(index: int) -> object:
        def fire(_event: object) -> None:
            remaining[index] -= 1
            if remaining[index] > 0:
                env.timeout(rng.uniform(0, 1.0)).callbacks.append(fire)

        return fire

    for index in range(chains):
        env.timeout(rng.uniform(0, 1.0)).callbacks.append(make(index))  # type: ignore[arg-type]
    started = time.perf_counter()
    env.run()
    return per_chain * chains / (time.perf_counter() - started)


def _bench_workload(subscriptions: int) -> Workload:
    contacts = 4
    return workload_from_mapping(
        {
            "kind": "workload",
            "name": f"bench-{subscriptions}",
            "duration": 3600,
            "watchers": max(1, subscriptions // contacts),
            "presentities": max(contacts, subscriptions),
            "contacts": contacts,
            "presence_changes_per_hour": 3,
            "ramp_up": 60,
            "agent": {"profile": "rfc6665", "parameters": {"default_expiration": 3600}},
            "notifier": {"max_expires": 3600},
            "network": {"latency": {"kind": "constant", "value": 0.01}},
        },
        "bench",
    )


def _traced_memory(subscriptions: int, seed: int) -> tuple[int, int, int]:
    """(subscriptions, live bytes at the end, peak bytes) of one traced run."""
    workload = _bench_workload(subscriptions)
    tracemalloc.start()
    sim = build(workload, seed)
    sim.run(workload.duration)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return sim.metrics.subscribe_calls, current, peak


def bench_memory(subscriptions: int, seed: int) -> None:
    """Python heap per subscription (tracemalloc: exact, but slow, so smaller runs).

    Two runs, a third of the size and the full size: the per-subscription average of the
    larger one includes fixed costs (bounded parser caches, interpreter-level tables) that a
    100,000-subscription run spreads thinly; the slope between the two is what each further
    subscription costs, the figure that decides how far a run scales."""
    small = _traced_memory(max(1, subscriptions // 3), seed)
    subs, current, peak = _traced_memory(subscriptions, seed)
    print(f"memory (tracemalloc, {subs} subscriptions x 1 h): live at end "
          f"{current / subs:,.0f} B/sub, peak {peak / subs:,.0f} B/sub")  # fmt: skip
    if subs > small[0]:
        marginal_live = (current - small[1]) / (subs - small[0])
        marginal_peak = (peak - small[2]) / (subs - small[0])
        print(f"  per further subscription ({small[0]} -> {subs}): live {marginal_live:,.0f} B, "
              f"peak {marginal_peak:,.0f} B")  # fmt: skip


def bench_simulation(subscriptions: int, seed: int, split: bool = False) -> float:
    workload = _bench_workload(subscriptions)
    rss_before = _rss_kib()
    started = time.perf_counter()
    sim = build(workload, seed)
    hosts = [domain.agent for domain in sim.domains]
    if split:
        for host in hosts:
            host.clock = time.perf_counter  # the host times each call into its agent
    pending: list[int] = []
    sim.run(workload.duration, lambda _now: pending.append(len(sim.env._queue)))
    wall = time.perf_counter() - started
    result = finish(sim, wall)
    s = result.summary
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    subs = s["internal_subscriptions"]["subscribe_calls"]
    events = s["events_processed"]
    sim_rate = events / wall
    mean_pending = max(1, round(sum(pending) / len(pending)))
    base_rate = bare_simpy(events, chains=mean_pending)
    print(f"simulation: {subs} subscriptions x 1 h, {s['messages']['total']} messages, "
          f"{events} events in {wall:.1f} s wall")  # fmt: skip
    print(f"  subscriber-hours per wall second: {subs / wall:,.0f}")
    print(f"  events/s: {sim_rate:,.0f}; bare SimPy ({mean_pending} pending): "
          f"{base_rate:,.0f}; ratio {sim_rate / base_rate:.1%}")  # fmt: skip
    if split:
        inside = sum(host.agent_seconds for host in hosts)
        calls = sum(host.agent_calls for host in hosts)
        own = wall - inside
        own_rate = events / own
        print(f"  inside the agent core: {inside:.1f} s ({inside / wall:.0%}, "
              f"{calls} calls); simulator and SimPy: {own:.1f} s, "
              f"{own_rate:,.0f} events/s = {own_rate / base_rate:.1%} of bare SimPy")  # fmt: skip
    print(f"  memory: peak RSS {peak_kib / 1024:.0f} MiB, growth during the run "
          f"{(peak_kib - rss_before) / 1024:.0f} MiB = "
          f"{(peak_kib - rss_before) * 1024 / max(subs, 1):,.0f} B/subscription")  # fmt: skip
    return wall


def bench_federation(seed: int) -> None:
    workload = load_workload(ROOT / "scenarios" / "load" / "federation-20k.yaml")
    started = time.perf_counter()
    sim = build(workload, seed)
    sim.run(workload.duration)
    wall = time.perf_counter() - started
    s = finish(sim, wall).summary
    print(f"federation-20k: {s['internal_subscriptions']['subscribe_calls']} subscriptions, "
          f"{s['messages']['total']} messages, mean {s['rates']['mean_messages_per_second']:.1f} "
          f"msg/s, peak {s['rates']['peak_messages_per_second']} msg/s (simulated); "
          f"{wall:.1f} s wall, {s['events_processed'] / wall:,.0f} events/s, "
          f"availability {s['availability']:.5f}")  # fmt: skip


# -- against a baseline (--baseline REF) ---------------------------------------------------


def _child_run(subscriptions: int) -> dict[str, float]:
    workload = _bench_workload(subscriptions)
    cpu, wall = time.process_time(), time.perf_counter()
    sim = build(workload, 1)
    sim.run(workload.duration)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    subs = sim.metrics.subscribe_calls
    return {
        "cpu": cpu,
        "wall": wall,
        "subscriptions": subs,
        "subscriber_hours_per_cpu_second": subs / cpu,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _child_memory(subscriptions: int) -> dict[str, float]:
    """Heap per live subscription half-way (steady state: between the initial wave and the
    refresh wave) and at the end (the refresh wave's transactions and remembered answers,
    kept 32 s and more, still live)."""
    workload = _bench_workload(subscriptions)
    tracemalloc.start()
    sim = build(workload, 1)
    sim.run(workload.duration / 2)
    gc.collect()
    half = tracemalloc.get_traced_memory()[0] / len(sim.live)
    sim.run(workload.duration)
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    live = len(sim.live)
    return {
        "heap_per_live_half_way": half,
        "heap_per_live_subscription": current / live,
        "peak_heap_per_live": peak / live,
    }


def _heap_half_way(subscriptions: int) -> tuple[int, int]:
    """(live subscriptions, traced heap bytes) half-way through the hour, after a full
    collection. ``get_traced_memory`` counts the run's own blocks only: tracemalloc's
    bookkeeping (its traces table, ``get_tracemalloc_memory``) is not in it."""
    workload = _bench_workload(subscriptions)
    tracemalloc.start()
    sim = build(workload, 1)
    sim.run(workload.duration / 2)
    gc.collect()
    current = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return len(sim.live), current


def _child_slope(low: int, high: int) -> dict[str, float]:
    """Heap per further live subscription half-way: the difference between a ``high`` and
    a ``low`` run over the difference in live subscriptions, so fixed costs (bounded parser
    caches, interpreter-level tables) cancel out."""
    low_live, low_heap = _heap_half_way(low)
    high_live, high_heap = _heap_half_way(high)
    return {"heap_per_further_subscription": (high_heap - low_heap) / (high_live - low_live)}


def _child_federation() -> dict[str, float]:
    workload = load_workload(ROOT / "scenarios" / "load" / "federation-20k.yaml")
    cpu = time.process_time()
    sim = build(workload, 1)
    sim.run(workload.duration)
    return {"federation_cpu": time.process_time() - cpu}


def _child(what: str, subscriptions: int, slope: tuple[int, int]) -> None:
    import simulator

    if what == "run":
        result = _child_run(subscriptions)
    elif what == "memory":
        result = _child_memory(subscriptions)
    elif what == "slope":
        result = _child_slope(*slope)
    else:
        result = _child_federation()
    print(json.dumps({"tree": str(Path(simulator.__file__).parents[1]), **result}))


def _export(ref: str, into: Path) -> str:
    """The tree of ``ref`` written to ``into``; returns the commit it names."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=ROOT, check=True,
                             capture_output=True).stdout  # fmt: skip
    with tempfile.TemporaryFile() as handle:
        handle.write(archive)
        handle.seek(0)
        with tarfile.open(fileobj=handle) as tar:
            tar.extractall(into, filter="data")
    return commit


def _measure(tree: Path, what: str, subscriptions: int, slope: tuple[int, int] | None = None,
             ) -> dict[str, float]:  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(tree))
    sizes = ["--slope", f"{slope[0]},{slope[1]}"] if slope else []
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", what,
                          "--subscriptions", str(subscriptions), *sizes],
                         cwd=tree, env=env, check=True, capture_output=True, text=True)  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if Path(result.pop("tree")).resolve() != tree.resolve():
        raise SystemExit(f"sim_bench: the child imported the simulator from elsewhere, not {tree}")
    return result


def compare(ref: str, repeat: int, subscriptions: int, memory_sample: int, federation: bool,
            slope: tuple[int, int] | None = None) -> None:  # fmt: skip
    plan = [("run", subscriptions)] if subscriptions else []
    if memory_sample:
        plan.append(("memory", memory_sample))
    if slope:
        plan.append(("slope", 0))
    if federation:
        plan.append(("federation", 0))
    with tempfile.TemporaryDirectory(prefix="sim-bench-") as tmp:
        base_tree = Path(tmp)
        commit = _export(ref, base_tree)
        head = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                              capture_output=True, text=True).stdout.strip()  # fmt: skip
        print(f"baseline {ref} = {commit[:12]} (exported to {base_tree}); now: working tree "
              f"{head}; {repeat} x each, alternating; load average before: "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
        samples: dict[str, dict[str, list[float]]] = {"base": {}, "now": {}}
        for round_ in range(repeat):
            for what, size in plan:
                # Alternate which tree goes first, so a load change hits both alike.
                order = [("base", base_tree), ("now", ROOT)]
                if round_ % 2:
                    order.reverse()
                for label, tree in order:
                    result = _measure(tree, what, size, slope)
                    for key, value in result.items():
                        samples[label].setdefault(key, []).append(float(value))
                    shown = ", ".join(f"{k} {v:,.1f}" for k, v in result.items())
                    print(f"  round {round_ + 1} {what:10s} {label}: {shown}", flush=True)
    print(f"medians of {repeat} (load average after: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}):")  # fmt: skip
    names = {
        "cpu": f"CPU s, {subscriptions:,} subscriptions x 1 h",
        "wall": "  wall s (shared machine: indicative)",
        "subscriber_hours_per_cpu_second": "subscriber-hours per CPU second",
        "peak_rss_mib": "peak RSS MiB",
        "heap_per_live_half_way": f"heap B per live subscription ({memory_sample:,}), 30 min",
        "heap_per_live_subscription": "  ... at the end (1 h, in the refresh wave)",
        "peak_heap_per_live": "  peak heap B per live subscription",
        "heap_per_further_subscription": (f"heap B per further subscription, 30 min "
                                          f"({slope[0]:,} -> {slope[1]:,})" if slope else ""),
        "federation_cpu": "CPU s, federation-20k",
    }
    targets = {k: v for k, v in _target_ratios(commit, subscriptions).items()
               if k in samples["now"]}  # fmt: skip
    width = max(len(name) for key, name in names.items() if key in samples["now"])
    print(f"  {'measurement':{width}s} {'baseline':>12s} {'now':>12s} {'now/base':>9s}"
          + ("  issue target" if targets else ""))  # fmt: skip
    for key, name in names.items():
        if key not in samples["now"]:
            continue
        base = statistics.median(samples["base"][key])
        now = statistics.median(samples["now"][key])
        ratio = now / base
        target = targets.get(key)
        verdict = ""
        if target is not None:
            verdict = f"  <= {target:.3f}x: {'met' if ratio <= target else 'not met'}"
        print(f"  {name:{width}s} {base:12,.1f} {now:12,.1f} {ratio:8.3f}x{verdict}")


def _target_ratios(commit: str, subscriptions: int) -> dict[str, float]:
    """The issue's CPU targets as ratios, when the baseline is the tree they were set
    against (see ISSUE_ANCHOR); none against another baseline."""
    if commit != ISSUE_ANCHOR:
        return {}
    if subscriptions != ANCHOR_SUBSCRIPTIONS:
        return {"federation_cpu": TARGET_RATIOS["federation_cpu"]}
    return dict(TARGET_RATIOS)


def _sizes(text: str) -> tuple[int, int]:
    """``LOW,HIGH`` (subscriptions), LOW < HIGH."""
    try:
        low, high = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, got {text!r}") from None
    if not 1 <= low < high:
        raise argparse.ArgumentTypeError(f"expected 1 <= LOW < HIGH, got {text!r}")
    return low, high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--federation", action="store_true", help="also run federation-20k")
    parser.add_argument("--skip-timers", action="store_true")
    parser.add_argument("--split", action="store_true",
                        help="time the agent core's calls (adds ~1 us per call)")  # fmt: skip
    parser.add_argument("--memory-sample", type=int, default=5000,
                        help="subscriptions in the tracemalloc run (0: skip)")  # fmt: skip
    parser.add_argument("--baseline", metavar="REF",
                        help="compare with this git ref (e.g. main) in the same run")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1,
                        help="with --baseline: measurements per tree (medians)")  # fmt: skip
    parser.add_argument("--slope", metavar="LOW,HIGH", type=_sizes,
                        help="with --baseline: also the heap per further subscription "
                             "half-way, between runs of LOW and HIGH subscriptions")  # fmt: skip
    parser.add_argument("--child", choices=("run", "memory", "slope", "federation"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.subscriptions, args.slope or (0, 0))
        return
    if args.baseline:
        if args.repeat < 1:
            parser.error("--repeat must be at least 1")
        compare(args.baseline, args.repeat, args.subscriptions, args.memory_sample,
                args.federation, args.slope)  # fmt: skip
        return
    # The compiled build (setup.py, B2B_COMPILE=1) is about 1.35x faster: say which one ran.
    print(f"build: {build_kind()}")
    if not args.skip_timers:
        bench_timers()
    if args.memory_sample:
        bench_memory(args.memory_sample, args.seed)
    bench_simulation(args.subscriptions, args.seed, args.split)
    if args.federation:
        bench_federation(args.seed)


if __name__ == "__main__":
    main()
