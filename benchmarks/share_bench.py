"""Shared subscriptions: what `share_subscriptions` saves as a function of overlap (prints
numbers; asserts nothing).

SER's presence_b2b documentation left open whether subscribing "with the same To + From
only once" would help ("it will probably not help a lot"). This runs the workload
scenarios/load/shared-overlap.yaml (two internal users, e.g. an RLS and a PA module, each
asking for watchers x contacts (record, watcher) pairs; the second asks for the first's
pair with probability `overlap`) with sharing off and on, for each overlap, and reports per
run:

* SIP messages over the whole run (both directions: SUBSCRIBEs, NOTIFYs and their answers);
* the agent's heap at the end of the run: bytes allocated by `reference/` code and still
  alive (tracemalloc), i.e. its subscriptions, dialogs, members and queued state;
* dialogs and internal subscriptions at the end, status messages delivered;

and the ratios on/off measured in the same run (the anchor is sharing off at the same
overlap). Status messages delivered should be equal on and off (every internal subscriber
still hears every change); a test pins that (tests/simulator/test_sharing_workload.py).

    .venv/bin/python benchmarks/share_bench.py                    # 500 watchers, 0 .. 1
    .venv/bin/python benchmarks/share_bench.py --watchers 500 --overlaps 0 1 --json out.json
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc
from pathlib import Path
from typing import Any

from simulator.run import build, finish
from simulator.workload import Workload, load_workload

ROOT = Path(__file__).resolve().parents[1]
WORKLOAD = ROOT / "scenarios" / "load" / "shared-overlap.yaml"


def _agent_bytes(snapshot: tracemalloc.Snapshot) -> int:
    """Live bytes allocated by the agent's code (reference/), the parsers included."""
    wanted = [tracemalloc.Filter(True, "*/reference/*")]
    return sum(stat.size for stat in snapshot.filter_traces(wanted).statistics("filename"))


def warm_up(workload: Workload, seed: int) -> None:
    """One small untraced run of both settings first, so that caches filled on first use
    (interned strings, regular expressions, lazily built tables) are not counted against
    whichever measured run comes first."""
    small = workload.replace(watchers=20, presentities=80, duration=300.0)
    for share in (0, 1):
        parameters = {**small.parameters, "share_subscriptions": share}
        sim = build(small.replace(parameters=parameters), seed)
        sim.run(until=small.duration)


def run_one(workload: Workload, share: int, seed: int) -> dict[str, Any]:
    parameters = {**workload.parameters, "share_subscriptions": share}
    wl = workload.replace(parameters=parameters)
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    sim = build(wl, seed)
    sim.run(until=wl.duration)
    wall = time.perf_counter() - started
    gc.collect()
    snapshot = tracemalloc.take_snapshot()
    total_heap, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    agent = sim.domains[0].agent.agent
    result = finish(sim, wall)
    summary = result.summary
    return {
        "share": share,
        "overlap": wl.overlap,
        "messages": summary["messages"]["total"],
        "subscribes": summary["messages"]["requests"].get("SUBSCRIBE", 0),
        "notifies": summary["messages"]["requests"].get("NOTIFY", 0),
        "deliveries": sum(summary["status_deliveries"].values()),
        "agent_heap": _agent_bytes(snapshot),
        "total_heap": total_heap,
        "dialogs": agent.dialog_count,
        "internal": agent.internal_subscription_count,
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=500)
    parser.add_argument("--duration", type=float, default=None,
                        help="simulated seconds (default: the workload's)")
    parser.add_argument("--overlaps", type=float, nargs="+",
                        default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args()
    base = load_workload(WORKLOAD)
    base = base.replace(watchers=args.watchers, presentities=4 * args.watchers)
    if args.duration is not None:
        base = base.replace(duration=args.duration)
    users = base.internal_users
    warm_up(base, args.seed)
    print(f"workload {WORKLOAD.name}: {base.watchers} watchers x {base.contacts.value} "
          f"contacts x {users} internal users, {base.duration:g} s simulated, "
          f"expires {base.parameters.get('default_expiration')} s, seed {args.seed}")
    print(f"{'overlap':>7} {'share':>5} {'internal':>8} {'dialogs':>7} {'messages':>9} "
          f"{'deliveries':>10} {'agent heap':>11} {'total heap':>11} {'wall s':>7} "
          f"{'msg ratio':>9} {'heap ratio':>10}")
    rows: list[dict[str, Any]] = []
    for overlap in args.overlaps:
        workload = base.replace(overlap=overlap)
        off = run_one(workload, 0, args.seed)
        on = run_one(workload, 1, args.seed)
        on["messages_ratio"] = on["messages"] / off["messages"]
        on["agent_heap_ratio"] = on["agent_heap"] / off["agent_heap"]
        on["total_heap_ratio"] = on["total_heap"] / off["total_heap"]
        for row in (off, on):
            ratios = (f"{row['messages_ratio']:>8.2f}x {row['agent_heap_ratio']:>9.2f}x"
                      if row["share"] else f"{'1.00x':>9} {'1.00x':>10}")
            print(f"{overlap:>7.2f} {row['share']:>5} {row['internal']:>8} "
                  f"{row['dialogs']:>7} {row['messages']:>9} {row['deliveries']:>10} "
                  f"{row['agent_heap'] / 1024:>9.0f}Ki {row['total_heap'] / 1024:>9.0f}Ki "
                  f"{row['wall']:>7.1f} {ratios}")
        rows.extend((off, on))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
