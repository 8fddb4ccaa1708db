"""Writing and comparing run outputs: summary.json, timeseries.csv, PNG plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt

from simulator.merge import RunResult
from simulator.metrics import FINE_BIN_SECONDS

SERIES = ("SUBSCRIBE", "NOTIFY", "2xx", "4xx", "5xx")


def write_outputs(result: RunResult, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "summary.json", out / "timeseries.csv", out / "fine_series.json"]
    (out / "summary.json").write_text(json.dumps(result.summary, indent=2, sort_keys=True) + "\n")
    rows = result.timeseries
    with (out / "timeseries.csv").open("w", newline="") as handle:
        if rows:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    fine = {str(k): v for k, v in result.fine_series.items()}
    (out / "fine_series.json").write_text(json.dumps(fine, sort_keys=True) + "\n")
    written += plot_run(result, out)
    return written


def _rate_series(fine: dict[int, dict[str, int]], key: str) -> tuple[list[float], list[float]]:
    if not fine:
        return [], []
    last = max(fine)
    xs = [i * FINE_BIN_SECONDS / 60.0 for i in range(last + 1)]
    ys = [fine.get(i, {}).get(key, 0) / FINE_BIN_SECONDS for i in range(last + 1)]
    return xs, ys


def _shade_faults(ax: Any, summary: dict[str, Any]) -> None:
    """Grey spans for outages and partitions (x axis in minutes)."""
    for fault in summary.get("faults", []):
        if fault["kind"] in ("outage", "partition") and fault["duration"] > 0:
            start = fault["start"] / 60.0
            ax.axvspan(start, start + fault["duration"] / 60.0, color="0.9", zorder=0)


def plot_run(result: RunResult, out: Path) -> list[Path]:
    paths = [out / "message_rate.png", out / "availability.png", out / "delay_cdf.png"]
    fig, ax = plt.subplots(figsize=(10, 4))
    for key in SERIES:
        xs, ys = _rate_series(result.fine_series, key)
        if any(ys):
            ax.plot(xs, ys, label=key, linewidth=0.8)
    ax.set_xlabel("simulated minutes")
    ax.set_ylabel(f"messages/s ({FINE_BIN_SECONDS} s bins)")
    _shade_faults(ax, result.summary)
    ax.set_title(f"Message rate by type: {result.summary.get('workload')} (grey: faults)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 3.5))
    points = [
        (r["minute"], r["availability"]) for r in result.timeseries if r["availability"] != ""
    ]
    ax.step([p[0] for p in points], [p[1] for p in points], where="post")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("simulated minutes")
    ax.set_ylabel("share with a live dialog")
    _shade_faults(ax, result.summary)
    ax.set_title("Availability (grey: faults)")
    fig.tight_layout()
    fig.savefig(paths[1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    delays = result.delays
    if delays:
        ordered = sorted(delays)
        n = len(ordered)
        ax.plot(ordered, [(i + 1) / n for i in range(n)])
        ax.set_xscale("log")
    ax.set_xlabel("status propagation delay (s)")
    ax.set_ylabel("CDF")
    ax.set_title("Presence change -> status delivery")
    fig.tight_layout()
    fig.savefig(paths[2], dpi=100)
    plt.close(fig)
    return paths


COMPARE_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("profile", ("profile",)),
    ("messages total", ("messages", "total")),
    ("mean msg/s", ("rates", "mean_messages_per_second")),
    ("peak msg/s", ("rates", "peak_messages_per_second")),
    ("availability", ("availability",)),
    ("delay p50 s", ("propagation_delay_seconds", "p50")),
    ("delay p95 s", ("propagation_delay_seconds", "p95")),
    ("delay p99 s", ("propagation_delay_seconds", "p99")),
    ("SUBSCRIBE retransmissions", ("retries", "subscribe_retransmissions")),
    ("new-dialog retries", ("retries", "new_dialog_retries")),
    ("events processed", ("events_processed",)),
    ("wall seconds", ("wall_seconds",)),
    ("build", ("build",)),
)


# Runs that model TCP (issue 17) add these rows (shown when either run has them).
TRANSPORT_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("package", ("package",)),
    ("TCP messages", ("transport", "tcp_messages")),
    ("TCP share", ("transport", "tcp_share")),
    ("TCP connections lost", ("transport", "connections_lost")),
)


def _dig(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = data
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


NODE_FIELDS = (
    ("availability", "availability"),
    ("peak msg/s", "peak_messages_per_second"),
    ("503 responses", "responses_503"),
    ("new-dialog retries", "new_dialog_retries"),
)


def _farm_rows(summary: dict[str, Any], faulted: list[str]) -> dict[str, Any]:
    """Farm figures for compare: each faulted node, the worst of the other nodes (does a
    fault spill over?) and the busiest agent instance."""
    nodes: dict[str, dict[str, Any]] = summary.get("nodes", {})
    rows: dict[str, Any] = {}
    for name in faulted:
        figures = nodes.get(name, {})
        for label, field_name in NODE_FIELDS:
            rows[f"{name} {label}"] = figures.get(field_name)
    others = [f for name, f in nodes.items() if name not in faulted]
    if others:
        live = [f["availability"] for f in others if f["availability"] is not None]
        rows["other nodes min availability"] = min(live, default=None)
        rows["other nodes max peak msg/s"] = max(f["peak_messages_per_second"] for f in others)
        rows["other nodes 503 responses"] = sum(f["responses_503"] for f in others)
        rows["other nodes new-dialog retries"] = sum(f["new_dialog_retries"] for f in others)
    agents = summary.get("agents", {})
    if agents:
        rows["agents max peak msg/s"] = max(f["peak_messages_per_second"] for f in agents.values())
    return rows


def _faulted_nodes(summary: dict[str, Any]) -> list[str]:
    return sorted({f"ps-{f['node']}" for f in summary.get("faults", []) if "node" in f})


def compare(dir_a: Path, dir_b: Path, out: Path | None = None) -> str:
    """A side-by-side table of two runs, plus compare.png overlaying their rates. Farm runs
    add rows per faulted node, for the other nodes together, and for the agent instances."""
    a = json.loads((dir_a / "summary.json").read_text())
    b = json.loads((dir_b / "summary.json").read_text())
    name_a, name_b = str(dir_a), str(dir_b)
    faulted = sorted(set(_faulted_nodes(a)) | set(_faulted_nodes(b)))
    farm_a, farm_b = _farm_rows(a, faulted), _farm_rows(b, faulted)
    farm_labels = list(dict.fromkeys([*farm_a, *farm_b]))
    fields = COMPARE_FIELDS
    if "transport" in a or "transport" in b:
        fields = (*COMPARE_FIELDS, *TRANSPORT_FIELDS)
    width = max(len(label) for label in [*(label for label, _ in fields), *farm_labels])
    col = max(len(name_a), len(name_b), 12)
    lines = [f"{'':{width}}  {name_a:>{col}}  {name_b:>{col}}"]
    for label, path in fields:
        lines.append(f"{label:{width}}  {_fmt(_dig(a, path)):>{col}}  {_fmt(_dig(b, path)):>{col}}")
    for label in farm_labels:
        value_a, value_b = _fmt(farm_a.get(label)), _fmt(farm_b.get(label))
        lines.append(f"{label:{width}}  {value_a:>{col}}  {value_b:>{col}}")
    target = out or dir_b
    target.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for directory, label in ((dir_a, name_a), (dir_b, name_b)):
        fine_path = directory / "fine_series.json"
        fine = {int(k): v for k, v in json.loads(fine_path.read_text()).items()}
        xs, ys = _rate_series(fine, "SUBSCRIBE")
        axes[0].plot(xs, ys, label=label, linewidth=0.8)
        with (directory / "timeseries.csv").open() as handle:
            rows = [r for r in csv.DictReader(handle) if r["availability"]]
        axes[1].step(
            [int(r["minute"]) for r in rows],
            [float(r["availability"]) for r in rows],
            label=label,
            where="post",
        )
    for axis in axes:
        _shade_faults(axis, b)
    axes[0].set_ylabel("SUBSCRIBE/s")
    axes[0].legend()
    axes[1].set_ylabel("availability")
    axes[1].set_xlabel("simulated minutes")
    fig.tight_layout()
    fig.savefig(target / "compare.png", dpi=100)
    plt.close(fig)
    lines.append(f"plot: {target / 'compare.png'}")
    return "\n".join(lines)
