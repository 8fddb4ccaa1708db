"""``b2b-sim``: run a workload on the simulated network, or compare two runs."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from simulator.workload import WorkloadError, load_workload

EPILOG = """\
examples:
  b2b-sim run scenarios/load/steady-10k.yaml --seed 1 --out out/steady
  b2b-sim run scenarios/load/outage-storm.yaml --seed 1 --profile ser --out out/ser
  b2b-sim run scenarios/load/outage-storm.yaml --seed 1 --profile rfc6665 --out out/rfc
  b2b-sim compare out/ser out/rfc
  b2b-sim run scenarios/load/steady-10k.yaml --seed 2 --duration 300 --trace --pcap --out out/s
  b2b-sim run scenarios/load/farm-1m.yaml --workers 2 --out out/farm
  b2b-sim run scenarios/load/farm-1m.yaml --scheduler tcp://10.0.0.5:8786 --out out/farm

A farm workload (servers: N and/or agents: M) runs as N x M independent shards: in this
process one after another (default), on a local Dask cluster of worker processes
(--workers N), or on an existing Dask cluster (--scheduler ADDRESS). The same seed gives
the same outputs whatever runs them.

outputs of `run` (in --out): summary.json, timeseries.csv (per simulated minute),
fine_series.json (10 s bins), message_rate.png, availability.png, delay_cdf.png,
and with --trace trace.jsonl, with --pcap traffic.pcap (open with wireshark/tshark/sngrep).
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="b2b-sim",
        description="SimPy simulator for the presence B2BUA: workloads, faults, metrics, plots.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run a workload YAML file",
        description="Run a workload (kind: workload) and write its outputs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("workload", type=Path, help="workload YAML file")
    run.add_argument("--seed", type=int, default=1, help="run seed (default 1)")
    run.add_argument("--out", type=Path, required=True, help="output directory")
    run.add_argument("--duration", type=float, help="simulated seconds (overrides the file)")
    run.add_argument("--profile", choices=("ser", "rfc6665"), help="agent profile override")
    run.add_argument("--trace", action="store_true", help="write trace.jsonl")
    run.add_argument("--pcap", action="store_true", help="write traffic.pcap")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    where = run.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run a farm's shards on a local Dask cluster of N worker processes",
    )
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run a farm's shards on an existing Dask cluster (e.g. tcp://host:8786)",
    )
    compare = sub.add_parser(
        "compare",
        help="compare two run directories side by side",
        description="Print key numbers of two runs side by side and plot them (compare.png).",
    )
    compare.add_argument("dir_a", type=Path)
    compare.add_argument("dir_b", type=Path)
    compare.add_argument("--out", type=Path, help="where compare.png goes (default: DIR_B)")
    return parser


def _progress(enabled: bool, total: float) -> tuple[Callable[[float], None] | None, object]:
    if not enabled:
        return None, None
    import shutil

    from tqdm import tqdm

    # A pty that reports a 0x0 size would hide the bar: fall back to 80x24.
    size = shutil.get_terminal_size((80, 24))
    bar = tqdm(
        total=round(total), unit="sim-s", desc="simulating", ncols=size.columns, nrows=size.lines
    )
    done = [0]

    def update(now: float) -> None:
        step = round(now) - done[0]
        if step > 0:
            bar.update(step)
            done[0] += step

    return update, bar


OUTPUT_FILES = (
    "summary.json",
    "timeseries.csv",
    "fine_series.json",
    "message_rate.png",
    "availability.png",
    "delay_cdf.png",
    "trace.jsonl",
    "traffic.pcap",
)


def _run(args: argparse.Namespace) -> int:
    from simulator.cluster import FarmError, run_farm
    from simulator.farm import shards_of
    from simulator.report import write_outputs

    try:
        workload = load_workload(args.workload)
    except WorkloadError as exc:
        print(f"b2b-sim: {exc}", file=sys.stderr)
        return 2
    if args.duration is not None:
        if args.duration <= 0:
            print("b2b-sim: --duration must be positive", file=sys.stderr)
            return 2
        workload = workload.replace(duration=args.duration)
    if args.profile is not None:
        workload = workload.replace(profile=args.profile)
    if args.workers is not None and args.workers < 1:
        print("b2b-sim: --workers must be at least 1", file=sys.stderr)
        return 2
    distributed = args.workers is not None or args.scheduler is not None
    if distributed and not workload.is_farm:
        print(
            f"b2b-sim: {workload.name} is not a farm (one shard): running it in this process",
            file=sys.stderr,
        )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_FILES:  # never leave an earlier run's files beside a failed one
        (out / name).unlink(missing_ok=True)
    shards = len(shards_of(workload, args.seed)) if workload.is_farm else 1
    show = not args.no_progress and sys.stderr.isatty()
    progress, bar = _progress(show, workload.duration * shards)
    parts = out / ".parts"
    if workload.is_farm and (args.trace or args.pcap):
        parts.mkdir(exist_ok=True)
    trace_file = (out / "trace.jsonl").open("w") if args.trace else None
    pcap_file = (out / "traffic.pcap").open("wb") if args.pcap else None
    try:
        result = run_farm(
            workload,
            args.seed,
            workers=args.workers,
            scheduler=args.scheduler,
            trace=trace_file,
            pcap=pcap_file,
            parts_dir=parts if parts.is_dir() else None,
            progress=progress,
        )
    except FarmError as exc:
        result = None
        error = str(exc)
    finally:
        for handle in (trace_file, pcap_file, bar):
            if handle is not None:
                handle.close()  # type: ignore[attr-defined]
        if parts.is_dir():
            shutil.rmtree(parts)
    if result is None:
        for name in OUTPUT_FILES:
            (out / name).unlink(missing_ok=True)
        print(f"b2b-sim: {error}", file=sys.stderr)
        return 1
    written = write_outputs(result, out)
    s = result.summary
    print(
        f"{workload.name}: {s['messages']['total']} messages, "
        f"availability {s['availability']}, "
        f"{s['events_processed']} events in {s['wall_seconds']:.1f} s wall ({s['build']} build)"
    )
    if "farm" in s:
        print(f"  {s['farm']['shards']} shards ({s['farm']['servers']} servers x "
              f"{s['farm']['agents']} agents)")  # fmt: skip
    for worker, kib in s["peak_memory_kib_per_worker"].items():
        print(f"  peak RSS {kib / 1024:.0f} MiB in {worker}")
    for path in written + [p for p in (out / "trace.jsonl", out / "traffic.pcap") if p.exists()]:
        print(f"  wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
    from simulator.report import compare

    for directory in (args.dir_a, args.dir_b):
        if not (directory / "summary.json").exists():
            print(f"b2b-sim: {directory}: no summary.json", file=sys.stderr)
            return 2
    print(compare(args.dir_a, args.dir_b, args.out))
    return 0
