"""Farm benchmark (prints numbers; asserts nothing): some or all shards of a farm workload
on a local Dask cluster, with CPU time per worker, peak RSS per worker and an estimate for
the whole farm.

Wall time on a shared machine grows with the other jobs; CPU seconds do not (much), so the
estimate for the whole farm is: (CPU seconds per subscriber-hour measured here) x (the
farm's subscriber-hours) / workers, plus the measured cluster start-up, i.e. what the same
run takes on `workers` otherwise idle cores.

    .venv/bin/python benchmarks/farm_bench.py                       # farm-1m, all 64 shards
    .venv/bin/python benchmarks/farm_bench.py --shards 8 --workers 2
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from simulator.cluster import run_shards_on_dask
from simulator.farm import Shard, shards_of
from simulator.merge import ShardResult, merge_results
from simulator.run import run_shard
from simulator.workload import load_workload

ROOT = Path(__file__).resolve().parents[1]


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", type=Path, default=ROOT / "scenarios/load/farm-1m.yaml")
    parser.add_argument("--shards", type=int, help="run only the first N shards (agent-major)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    workload = load_workload(args.workload)
    every = shards_of(workload, args.seed)
    chosen = every[: args.shards] if args.shards else every
    hours = workload.duration / 3600.0
    print(f"{workload.name}: {len(chosen)} of {len(every)} shards on {args.workers} workers; "
          f"load average {_load()}", flush=True)  # fmt: skip
    started = time.perf_counter()
    first_done: list[float] = []
    so_far = [0, 0.0]  # subscriptions, CPU seconds

    def shard_done(shard: Shard, result: ShardResult) -> None:
        # Running totals, so that a run cut short still gives CPU per subscriber-hour.
        if not first_done:
            first_done.append(time.perf_counter() - started)
        so_far[0] += result.metrics.subscribe_calls
        so_far[1] += result.cpu_seconds
        print(
            f"  {shard.name} done at {time.perf_counter() - started:.0f} s: "
            f"{result.metrics.subscribe_calls} subscriptions, CPU {result.cpu_seconds:.1f} s, "
            f"wall {result.wall_seconds:.1f} s, RSS {result.peak_memory_kib / 1024:.0f} MiB; "
            f"so far {so_far[1] * 1e3 / (so_far[0] * hours):.3f} ms CPU/subscriber-hour; "
            f"load {_load()}",
            flush=True,
        )

    results = run_shards_on_dask(
        workload,
        chosen,
        workers=args.workers,
        scheduler=None,
        options={"trace": False, "pcap": False, "parts_dir": None},
        runner=run_shard,
        shard_done=shard_done,
    )
    wall = time.perf_counter() - started
    summary = merge_results(workload, args.seed, results, wall).summary
    subscriptions = summary["internal_subscriptions"]["subscribe_calls"]
    cpu = sum(r.cpu_seconds for r in results)
    shard_wall = sum(r.wall_seconds for r in results)
    per_worker_cpu: dict[str, float] = {}
    for r in results:
        per_worker_cpu[r.worker] = per_worker_cpu.get(r.worker, 0.0) + r.cpu_seconds
    print(
        f"{workload.name}: {len(chosen)} of {len(every)} shards, {subscriptions:,} "
        f"subscriptions x {hours:g} h, {summary['messages']['total']:,} messages, "
        f"{summary['events_processed']:,} events, "
        f"availability {summary['availability']:.6f}"
    )
    print(
        f"wall {wall:.1f} s with {args.workers} workers (first shard back after "
        f"{first_done[0] if first_done else 0:.1f} s, with the cluster start-up); "
        f"load average at the end {_load()}"
    )
    print(
        f"shard CPU {cpu:.1f} s, shard wall {shard_wall:.1f} s (CPU share {cpu / shard_wall:.0%}:"
        " below 100 % the machine was shared)"
    )
    for worker, kib in summary["peak_memory_kib_per_worker"].items():
        print(
            f"  worker {worker}: CPU {per_worker_cpu[worker]:.1f} s, peak RSS {kib / 1024:.0f} MiB"
        )
    sizes = [r.metrics.subscribe_calls for r in results]
    print(f"shard sizes {min(sizes):,} .. {max(sizes):,} subscriptions")
    per_sub_hour = cpu / (subscriptions * hours)
    print(
        f"CPU per subscriber-hour {per_sub_hour * 1e3:.3f} ms "
        f"({1 / per_sub_hour:.0f} subscriber-hours per CPU second)"
    )
    total_sub_hours = subscriptions * hours * len(every) / len(chosen)
    estimate = per_sub_hour * total_sub_hours / args.workers
    print(
        f"estimate for all {len(every)} shards ({total_sub_hours:,.0f} subscriber-hours) on "
        f"{args.workers} idle cores: {estimate:.0f} s = {estimate / 60:.1f} min of shard CPU "
        "per worker, plus start-up"
    )


if __name__ == "__main__":
    main()
