"""Where a farm's shards run: in this process one after another, on a Dask ``LocalCluster``
of worker processes (``workers``), or on an existing Dask cluster (``scheduler``).

Dask (``dask.distributed``) is imported here, and only when a cluster is asked for: the
default path costs no Dask start-up. What travels to a worker is the workload and the shard
(a few hundred bytes); what comes back is a ``ShardResult`` (counts per 10-second bin, one
count per simulated second, minute integrals, 8 bytes per propagation-delay sample) and,
only with a trace or pcap, those files (as paths on a local cluster, bytes otherwise); and
while it runs, a progress event per 1 % of the shard's simulated time.

A shard whose task raises is retried once (``retries=1``); a shard whose worker dies is
rescheduled once on a local cluster (``LOCAL_SCHEDULER_CONFIG``; a remote scheduler uses
its own settings). Then the run fails with ``FarmError`` naming the shard, and nothing is merged.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TextIO

from simulator.farm import Shard, shards_of
from simulator.merge import RunResult, ShardResult, merge_pcap, merge_results, merge_trace
from simulator.run import run_shard, run_workload
from simulator.workload import Workload

CONNECT_TIMEOUT = "10s"  # reaching an existing scheduler
# For the scheduler of a local cluster (docs/simulator.md gives them for a remote one): a
# shard whose worker dies is retried once; a worker holds only the shard it runs, so when
# it dies, the shard it ran is the one blamed (Dask blames every task a dead worker held).
LOCAL_SCHEDULER_CONFIG = {
    "distributed.scheduler.allowed-failures": 1,
    "distributed.scheduler.worker-saturation": 1.0,
}


class FarmError(RuntimeError):
    """A shard could not be run (the message names it) or the cluster is unusable."""


class ShardRunner(Protocol):
    def __call__(
        self,
        workload: Workload,
        shard: Shard,
        *,
        trace: bool = ...,
        pcap: bool = ...,
        parts_dir: str | None = ...,
        progress: Callable[[float], None] | None = ...,
    ) -> ShardResult: ...


@contextmanager
def _quiet_dask() -> Iterator[None]:
    """Dask logs worker deaths and retries itself; the run reports them as one error."""
    logger = logging.getLogger("distributed")
    before = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(before)


def run_farm(
    workload: Workload,
    seed: int,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    trace: TextIO | None = None,
    pcap: BinaryIO | None = None,
    parts_dir: Path | None = None,
    progress: Callable[[float], None] | None = None,
    runner: ShardRunner = run_shard,
) -> RunResult:
    """Run ``workload``; ``progress`` gets simulated seconds done over all shards (of
    ``len(shards) * duration``). A workload that is not a farm always runs in-process."""
    if not workload.is_farm or (workers is None and scheduler is None):
        return run_workload(
            workload, seed, trace=trace, pcap=pcap, progress=progress, parts_dir=parts_dir
        )
    started = time.perf_counter()  # the cluster's start-up counts
    shards = shards_of(workload, seed)
    simulated = [0.0] * len(shards)  # per shard, as reported by the workers
    lock = threading.Lock()  # reports come on Dask's thread, completions on this one

    def shard_progress(index: int, now: float) -> None:
        with lock:
            simulated[index] = max(simulated[index], now)
            if progress is not None:
                progress(sum(simulated))

    def shard_done(shard: Shard, _result: ShardResult) -> None:
        shard_progress(shard.index, workload.duration)

    results = run_shards_on_dask(
        workload,
        shards,
        workers=workers,
        scheduler=scheduler,
        options={
            "trace": trace is not None,
            "pcap": pcap is not None,
            # Files only where this process can read what the workers wrote.
            "parts_dir": str(parts_dir) if parts_dir is not None and scheduler is None else None,
        },
        runner=runner,
        shard_done=shard_done,
        shard_progress=shard_progress if progress is not None else None,
    )
    if trace is not None:
        merge_trace([r.trace for r in results], trace)
    if pcap is not None:
        merge_pcap([r.pcap for r in results], pcap)
    for result in results:
        for part in (result.trace, result.pcap):
            if isinstance(part, str):
                Path(part).unlink(missing_ok=True)
        result.trace = result.pcap = None
    return merge_results(workload, seed, results, time.perf_counter() - started)


def run_shards_on_dask(
    workload: Workload,
    shards: list[Shard],
    *,
    workers: int | None,
    scheduler: str | None,
    options: dict[str, Any],
    runner: ShardRunner,
    shard_done: Callable[[Shard, ShardResult], None],
    shard_progress: Callable[[int, float], None] | None = None,
) -> list[ShardResult]:
    """``shards`` run on Dask, results in the order of ``shards`` (``run_farm`` runs all
    of a farm's; ``benchmarks/farm_bench.py`` some). ``options`` go to ``runner``.
    ``shard_progress(shard index, simulated seconds)`` is called, on a Dask thread, as the
    workers report (a structured event per 1 % of a shard's duration)."""
    import dask
    from distributed import Client, LocalCluster, as_completed
    from distributed.scheduler import KilledWorker

    cluster: Any = None
    with _quiet_dask(), dask.config.set(LOCAL_SCHEDULER_CONFIG):
        try:
            if scheduler is None:
                cluster = LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,  # the simulation holds the GIL: one per process
                    processes=True,
                    dashboard_address=":0",  # any free port for its HTTP endpoints
                    scheduler_kwargs={"dashboard": False},
                    silence_logs=logging.CRITICAL,
                )
                client = Client(cluster)
            else:
                client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            if cluster is not None:
                cluster.close()
            where = f"the Dask scheduler at {scheduler}" if scheduler else "a local Dask cluster"
            raise FarmError(f"cannot start or reach {where}: {exc}") from exc
        run = uuid.uuid4().hex[:8]
        topic = f"b2b-sim {run} progress"
        try:
            if shard_progress is not None:
                report = shard_progress
                client.subscribe_topic(topic, lambda event: report(*event[1]))
            futures = {
                client.submit(
                    _run_reporting,
                    runner,
                    topic if shard_progress is not None else None,
                    workload,
                    shard,
                    **options,
                    key=f"b2b-sim {run} shard {shard.name}",
                    retries=1,
                    pure=False,
                ): shard
                for shard in shards
            }
            position = {shard: i for i, shard in enumerate(shards)}
            results: list[ShardResult | None] = [None] * len(shards)
            for future in as_completed(futures):
                # Dropping the future lets its worker forget the result once it is here:
                # a worker holds one shard's results, not all it has run.
                shard = futures.pop(future)
                try:
                    result = future.result()
                except KilledWorker as exc:
                    raise FarmError(
                        f"shard {shard.name}: the worker running it died, and again after "
                        f"one retry ({exc}); no output written"
                    ) from exc
                except Exception as exc:
                    raise FarmError(
                        f"shard {shard.name} failed twice: {type(exc).__name__}: {exc}; "
                        "no output written"
                    ) from exc
                results[position[shard]] = result
                shard_done(shard, result)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    return [r for r in results if r is not None]


def _run_reporting(
    runner: ShardRunner, topic: str | None, workload: Workload, shard: Shard, **options: Any
) -> ShardResult:
    """On a worker: run the shard, reporting its simulated time as events on ``topic``."""
    if topic is None:
        return runner(workload, shard, **options)
    from distributed import get_worker

    worker = get_worker()

    def report(now: float) -> None:
        worker.log_event(topic, (shard.index, now))

    return runner(workload, shard, progress=report, **options)
