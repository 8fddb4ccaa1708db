"""One run's results from the results of its shards (a workload that is not a farm is one
shard): summary.json content, time series, and the trace and pcap merged in time order.

Rules: counts are summed; percentiles come from the merged delay samples (never averaged);
availability is live subscription time over subscription time, both summed over shards;
peak rates come from the merged per-second and per-minute series; memory is reported per
worker process (the peak of the shards it ran). Shards are merged in shard order, never in
completion order, so the same seed gives the same bytes whatever ran the shards.
"""

from __future__ import annotations

import heapq
import json
import shutil
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from simulator.figures import MetricsState
from simulator.metrics import Metrics
from simulator.workload import Workload

# Fields that depend on the machine, the build and the worker count, not on the workload
# and the seed.
WALL_CLOCK_FIELDS = (
    "wall_seconds",
    "events_per_wall_second",
    "peak_memory_kib",
    "peak_memory_kib_per_worker",
    "cpu_seconds",
    "build",
)

Part = str | bytes | None  # a trace or pcap part: a file path, the bytes, or nothing


@dataclass
class ShardResult:
    """What one shard sends back: raw figures, never per-message data (but the optional
    trace and pcap parts, by file path on a shared machine or as bytes)."""

    shard: str | None  # "b2b-0/ps-3", None for a workload that is not a farm
    agent: str
    node: str
    metrics: MetricsState
    agent_counters: dict[str, int]
    notifier_counters: dict[str, int]
    network: dict[str, int]
    events_processed: int
    simulated_seconds: float
    live_at_end: int
    wall_seconds: float
    cpu_seconds: float  # CPU time of the process while it ran the shard
    peak_memory_kib: int
    worker: str  # host:pid of the process that ran it
    build: str
    trace: Part = None
    pcap: Part = None
    # Issue 17 (runs with the stream layer or another package): summary sections of
    # counters, {section: {name: count}}, summed over shards; empty otherwise.
    extra: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class RunResult:
    summary: dict[str, Any]
    timeseries: list[dict[str, Any]]
    fine_series: dict[int, dict[str, int]]
    delays: list[float] = field(default_factory=list)


def _sum_counters(counters: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counter in counters:
        for name, value in counter.items():
            total[name] = total.get(name, 0) + value
    return dict(sorted(total.items()))


def _group_figures(duration: float, results: list[ShardResult]) -> dict[str, Any]:
    """Key figures of a group of shards (one node, or one agent instance)."""
    s = Metrics.merged(duration, [r.metrics for r in results]).summary()
    return {
        "subscriptions": s["internal_subscriptions"]["subscribe_calls"],
        "messages": s["messages"]["total"],
        "peak_messages_per_second": s["rates"]["peak_messages_per_second"],
        "availability": s["availability"],
        "subscribe_requests": s["messages"]["requests"].get("SUBSCRIBE", 0),
        "responses_503": s["messages"]["responses"].get("503 SUBSCRIBE", 0),
        "new_dialog_retries": s["retries"]["new_dialog_retries"],
        "propagation_delay_p95": s["propagation_delay_seconds"]["p95"],
    }


def _groups(results: list[ShardResult], key: str) -> dict[str, list[ShardResult]]:
    groups: dict[str, list[ShardResult]] = {}
    for result in results:
        groups.setdefault(getattr(result, key), []).append(result)
    return groups


def merge_results(
    workload: Workload, seed: int, results: list[ShardResult], wall_seconds: float
) -> RunResult:
    """The run's results; ``results`` in shard order."""
    metrics = Metrics.merged(workload.duration, [r.metrics for r in results])
    summary = metrics.summary()
    events = sum(r.events_processed for r in results)
    per_worker: dict[str, int] = {}
    for r in results:
        per_worker[r.worker] = max(per_worker.get(r.worker, 0), r.peak_memory_kib)
    summary.update(
        {
            "workload": workload.name,
            "seed": seed,
            "profile": workload.profile,
            "simulated_seconds": max(r.simulated_seconds for r in results),
            "subscriptions_live_at_end": sum(r.live_at_end for r in results),
            "faults": [
                {"kind": f.kind, "start": f.start, "duration": f.duration, "domain": f.domain}
                | ({"node": f.node} if f.node is not None else {})
                for f in workload.faults
            ],
            "agent_counters": _sum_counters(r.agent_counters for r in results),
            "notifier_counters": _sum_counters(r.notifier_counters for r in results),
            "network": _sum_counters(r.network for r in results),
            "events_processed": events,
            "wall_seconds": wall_seconds,
            "events_per_wall_second": events / wall_seconds if wall_seconds > 0 else None,
            "cpu_seconds": sum(r.cpu_seconds for r in results),
            "peak_memory_kib": max(per_worker.values()),
            "peak_memory_kib_per_worker": dict(sorted(per_worker.items())),
            "build": ", ".join(sorted({r.build for r in results})),
        }
    )
    extra: dict[str, dict[str, int]] = {}
    for r in results:
        for section, counters in r.extra.items():
            extra[section] = _sum_counters([extra.get(section, {}), counters])
    if extra:
        summary["package"] = workload.package
        transport = extra.get("transport")
        if transport is not None:
            total = summary["messages"]["total"]
            tcp = transport.get("messages", 0)
            summary["transport"] = {
                "udp_messages": total - tcp,
                "tcp_messages": tcp,
                "tcp_share": tcp / total if total else 0.0,
                "tcp_bytes": transport.get("bytes", 0),
                **{k: v for k, v in transport.items() if k not in ("messages", "bytes")},
            }
        for section in sorted(extra):
            if section != "transport":
                summary[section] = extra[section]
    if workload.is_farm:
        duration = workload.duration
        summary["farm"] = {
            "servers": workload.servers,
            "agents": workload.agents,
            "shards": len(results),
            "assignment": "sha256(AOR)[:8] big-endian mod count",
        }
        summary["nodes"] = {
            name: _group_figures(duration, group)
            for name, group in _groups(results, "node").items()
        }
        summary["agents"] = {
            name: _group_figures(duration, group)
            for name, group in _groups(results, "agent").items()
        }
    fine = {k: dict(v) for k, v in sorted(metrics.fine.items())}
    return RunResult(summary, metrics.timeseries_rows(), fine, list(metrics.delays))


# -- trace and pcap ------------------------------------------------------------------------


def _lines(part: Part) -> Iterator[str]:
    if isinstance(part, bytes):
        yield from part.decode("utf-8").splitlines(keepends=True)
    elif part is not None:
        with open(part, encoding="utf-8") as handle:
            yield from handle


def merge_trace(parts: list[Part], out: TextIO) -> None:
    """Trace records of every shard by simulated time; equal times keep shard order."""
    keyed = (((json.loads(line)["t"], line) for line in _lines(part)) for part in parts)
    for _t, line in heapq.merge(*keyed, key=lambda item: item[0]):
        out.write(line)


PCAP_HEADER_BYTES = 24
_RECORD = struct.Struct("<IIII")


def _packets(part: Part) -> Iterator[tuple[tuple[int, int], bytes]]:
    """((seconds, microseconds), record bytes with its header) of a pcap part."""
    if part is None:
        return
    data = part if isinstance(part, bytes) else Path(part).read_bytes()
    offset = PCAP_HEADER_BYTES
    while offset < len(data):
        seconds, micros, caplen, _length = _RECORD.unpack_from(data, offset)
        end = offset + _RECORD.size + caplen
        yield (seconds, micros), data[offset:end]
        offset = end


def merge_pcap(parts: list[Part], out: BinaryIO) -> None:
    """Packets of every shard by capture time; equal times keep shard order."""
    header = b""
    for part in parts:
        if part is not None:
            data = part if isinstance(part, bytes) else Path(part).read_bytes()
            header = data[:PCAP_HEADER_BYTES]
            break
    out.write(header)
    merged = heapq.merge(*(_packets(part) for part in parts), key=lambda item: item[0])
    for _time, record in merged:
        out.write(record)


def write_part(part: Part, out: Path) -> None:
    """One shard's part as the run's file (no merging needed)."""
    if isinstance(part, bytes):
        out.write_bytes(part)
    elif part is not None and Path(part) != out:
        shutil.move(part, out)
