"""Farms: shard assignment, per-shard closed forms, identical outputs in-process and on Dask
(a LocalCluster of worker processes started here), and a dead worker failing the run."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from simulator.cli import main
from simulator.cluster import LOCAL_SCHEDULER_CONFIG, FarmError, run_farm
from simulator.farm import Shard, shard_population, shards_of, stable_index
from simulator.merge import WALL_CLOCK_FIELDS, ShardResult, merge_results
from simulator.run import build, collect, run_shard
from simulator.workload import Workload, WorkloadError, workload_from_mapping

FARM = {
    "kind": "workload",
    "name": "small-farm",
    "duration": 600,
    "watchers": 30,
    "presentities": 40,
    "contacts": 3,
    "presence_changes_per_hour": 20,
    "ramp_up": 10,
    "servers": 3,
    "agents": 2,
    "agent": {"profile": "rfc6665", "parameters": {"default_expiration": 300}},
    "notifier": {"max_expires": 300},
    "network": {"latency": {"kind": "uniform", "low": 0.005, "high": 0.05}, "loss": 0.03},
    "faults": [{"kind": "outage", "node": 1, "start": 200, "duration": 100}],
}


def _farm(**overrides: Any) -> Workload:
    return workload_from_mapping({**FARM, **overrides}, "farm.yaml")


def test_assignment_is_sha256_of_the_aor() -> None:
    digest = hashlib.sha256(b"sip:p7@lab.test").digest()
    assert stable_index("sip:p7@lab.test", 16) == int.from_bytes(digest[:8], "big") % 16
    wl = _farm()
    seen: set[tuple[str, str]] = set()
    for shard in shards_of(wl, 1):
        population = shard_population(wl, shard)
        assert all(stable_index(r, wl.servers) == shard.node for r in population.records)
        assert all(stable_index(w, wl.agents) == shard.agent for w in population.watchers)
        pairs = {(population.watchers[w], population.records[r]) for *_, w, r in population.plan}
        assert len(pairs) == len(population.plan) and not pairs & seen
        seen |= pairs
    # Every watcher has its 3 contacts, each in exactly one shard.
    assert len(seen) == 30 * 3
    assert {w for w, _ in seen} == {f"sip:w{i}@b2b.test" for i in range(30)}


def test_population_does_not_depend_on_the_number_of_servers() -> None:
    def subscriptions(servers: int) -> set[tuple[str, str]]:
        wl = _farm(servers=servers, faults=[])
        found: set[tuple[str, str]] = set()
        for shard in shards_of(wl, 4):
            pop = shard_population(wl, shard)
            found |= {(pop.watchers[w], pop.records[r]) for *_, w, r in pop.plan}
        return found

    assert subscriptions(2) == subscriptions(5)


@pytest.mark.parametrize("profile", ["rfc6665", "ser"])
def test_closed_form_message_counts_per_shard_and_merged(profile: str) -> None:
    # As test_simulation's closed form, per shard: no loss, E = 300 s, two refreshes before
    # the unsubscribe at 600 s; presence changes injected per shard on its node.
    wl = _farm(
        network={"latency": {"kind": "constant", "value": 0.01}},
        presence_changes_per_hour=0,
        faults=[],
        agent={"profile": profile, "parameters": {"default_expiration": 300}},
    )
    results: list[ShardResult] = []
    expected_total = 0
    for shard in shards_of(wl, 3):
        sim = build(wl, 3, shard=shard)
        domain, notifier = sim.domains[0], sim.notifiers[0]
        watchers_at_change: list[int] = []

        def change(record: int, sim: Any = sim, domain: Any = domain, notifier: Any = notifier,
                   counts: list[int] = watchers_at_change) -> None:  # fmt: skip
            counts.append(sum(1 for s in sim.live.values() if s.record == record))
            notifier.change_presence(domain.records[record])

        for at in (100.0, 420.0):
            sim.call_at(at, lambda c=change: c(0))  # type: ignore[misc]
        sim.call_at(600.0, sim.unsubscribe_all)
        sim.run(700.0)
        subs = sim.metrics.subscribe_calls
        expected = subs * (4 + 4 * 2 + 4) + 2 * sum(watchers_at_change)
        counts = sim.metrics.summary()["messages"]
        assert counts["total"] == expected, shard.name
        assert counts["requests"].get("SUBSCRIBE", 0) == subs * 4
        expected_total += expected
        results.append(collect(sim, 1.0, shard))
    merged = merge_results(wl, 3, results, 1.0).summary
    assert merged["internal_subscriptions"]["subscribe_calls"] == 30 * 3
    assert merged["messages"]["total"] == expected_total
    assert merged["messages"]["requests"]["SUBSCRIBE"] == 30 * 3 * 4
    assert sum(n["messages"] for n in merged["nodes"].values()) == expected_total
    assert sum(a["messages"] for a in merged["agents"].values()) == expected_total


def test_outage_acts_on_its_node_only_and_availability_is_time_weighted() -> None:
    wl = _farm()
    results = [run_shard(wl, shard) for shard in shards_of(wl, 2)]
    merged = merge_results(wl, 2, results, 1.0).summary
    nodes = merged["nodes"]
    assert nodes["ps-1"]["availability"] < 0.95 < nodes["ps-0"]["availability"]
    assert nodes["ps-2"]["availability"] > 0.95
    live = sum(r.metrics.live_area for r in results)
    total = sum(r.metrics.subs_area for r in results)
    assert merged["availability"] == live / total
    # Percentiles from the merged samples, not averaged per shard.
    delays = sorted(d for r in results for d in r.metrics.delays)
    p95 = delays[-(-95 * len(delays) // 100) - 1]
    assert merged["propagation_delay_seconds"]["p95"] == p95
    # Peak rate from the merged per-second series.
    per_second = [sum(c) for c in zip(*(r.metrics.per_second for r in results), strict=False)]
    assert merged["rates"]["peak_messages_per_second"] == max(per_second)
    assert max(per_second) > max(max(r.metrics.per_second) for r in results)


def test_workloads_pickle_for_dask_workers() -> None:
    # Also in the compiled build (tests/test_compiled_build.py runs this file there), where
    # LinkSpec and Latency are native classes that do not unpickle by themselves.
    import pickle

    wl = _farm(network={"latency": {"kind": "lognormal", "median": 0.02, "sigma": 0.4},
                        "loss": 0.01, "duplication": 0.02, "reorder": 0.03})  # fmt: skip
    assert pickle.loads(pickle.dumps(wl)) == wl
    shard = shards_of(wl, 9)[4]
    assert pickle.loads(pickle.dumps(shard)) == shard


def test_farm_fields_are_validated(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match=r"faults\[0\].node: 3 is not below servers \(3\)"):
        _farm(faults=[{"kind": "outage", "node": 3, "start": 1, "duration": 1}])
    with pytest.raises(WorkloadError, match="needs topology single"):
        _farm(topology="federation")


# -- Dask --------------------------------------------------------------------------------


def test_dask_stays_out_of_reference_and_is_imported_by_cluster_only() -> None:
    import ast

    root = Path(__file__).resolve().parents[2]
    importers: set[str] = set()
    for path in sorted((root / "reference").rglob("*.py")) + sorted(
        (root / "simulator").rglob("*.py")
    ):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if any(n.split(".")[0] in ("dask", "distributed") for n in names):
                importers.add(str(path.relative_to(root)))
    assert importers == {"simulator/cluster.py"}


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """A LocalCluster of two worker processes, as a user's existing cluster."""
    import dask
    from distributed import LocalCluster

    with dask.config.set(LOCAL_SCHEDULER_CONFIG):  # as docs/simulator.md advises
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # any free port for its HTTP endpoints
            scheduler_kwargs={"dashboard": False},
        )
    try:
        yield str(cluster.scheduler_address)
    finally:
        cluster.close()


def _outputs(out: Path) -> dict[str, bytes]:
    files = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    summary = json.loads(files.pop("summary.json"))
    for name in WALL_CLOCK_FIELDS:
        summary.pop(name)
    files["summary.json"] = json.dumps(summary, sort_keys=True).encode()
    return files


def test_same_outputs_in_process_one_worker_and_a_two_worker_cluster(
    tmp_path: Path, scheduler: str
) -> None:
    workload = tmp_path / "farm.yaml"
    workload.write_text(json.dumps(FARM))
    common = ["run", str(workload), "--seed", "5", "--trace", "--pcap", "--no-progress"]
    # In-process, in a fresh interpreter: no Dask module may be imported on that path.
    code = (
        "import sys; from simulator.cli import main; "
        f"rc = main({[*common, '--out', str(tmp_path / 'local')]!r}); "
        "assert rc == 0; assert not {'dask', 'distributed'} & set(sys.modules), 'dask'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert main([*common, "--out", str(tmp_path / "one"), "--workers", "1"]) == 0
    assert main([*common, "--out", str(tmp_path / "two"), "--scheduler", scheduler]) == 0
    local = _outputs(tmp_path / "local")
    assert set(local) >= {"summary.json", "timeseries.csv", "trace.jsonl", "traffic.pcap",
                          "fine_series.json", "message_rate.png"}  # fmt: skip
    assert _outputs(tmp_path / "one") == local
    assert _outputs(tmp_path / "two") == local
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert len(summary["peak_memory_kib_per_worker"]) == 2  # both workers ran shards
    assert summary["farm"]["shards"] == 6
    assert not (tmp_path / "two" / ".parts").exists()


def die_on_second_shard(workload: Workload, shard: Shard, **options: Any) -> ShardResult:
    """A shard runner whose process dies on shard b2b-0/ps-1, as an out-of-memory kill would."""
    if shard.name == "b2b-0/ps-1":
        os._exit(9)
    return run_shard(workload, shard, **options)


def test_dead_worker_fails_the_run_naming_the_shard(scheduler: str) -> None:
    progress: list[float] = []
    runner: Callable[..., ShardResult] = die_on_second_shard
    with pytest.raises(FarmError, match=r"shard b2b-0/ps-1: the worker running it died"):
        run_farm(_farm(), 1, scheduler=scheduler, runner=runner, progress=progress.append)
    assert max(progress, default=0.0) < 6 * 600  # never presented as complete


def test_cli_failed_run_exits_1_and_leaves_no_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    workload = tmp_path / "farm.yaml"
    workload.write_text(json.dumps({**FARM, "duration": 120}))
    out = tmp_path / "out"
    assert main(["run", str(workload), "--out", str(out), "--no-progress"]) == 0
    assert (out / "summary.json").exists()  # an earlier, complete run

    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise FarmError("shard b2b-1/ps-2: the worker running it died, and again after one retry")

    monkeypatch.setattr("simulator.cluster.run_farm", fail)
    capsys.readouterr()
    assert main(["run", str(workload), "--out", str(out), "--no-progress", "--trace"]) == 1
    err = capsys.readouterr().err
    assert (
        err == "b2b-sim: shard b2b-1/ps-2: the worker running it died, and again after one retry\n"
    )
    assert sorted(p.name for p in out.iterdir()) == []


def test_compare_shows_the_faulted_node_the_other_nodes_and_the_agents(tmp_path: Path) -> None:
    from simulator.report import compare, write_outputs

    for profile in ("ser", "rfc6665"):
        result = run_farm(_farm(duration=400).replace(profile=profile), 1)
        write_outputs(result, tmp_path / profile)
    text = compare(tmp_path / "ser", tmp_path / "rfc6665")
    rows = {line.split("  ")[0].strip(): line.split()[-2:] for line in text.splitlines()[1:-1]}
    summary = json.loads((tmp_path / "ser" / "summary.json").read_text())
    down, others = summary["nodes"]["ps-1"], [summary["nodes"][n] for n in ("ps-0", "ps-2")]
    assert rows["ps-1 availability"][0] == f"{down['availability']:.4g}"
    assert rows["other nodes min availability"][0] == (
        f"{min(n['availability'] for n in others):.4g}"
    )
    assert float(rows["ps-1 availability"][0]) < float(rows["other nodes min availability"][0])
    assert "agents max peak msg/s" in rows


def test_progress_on_a_cluster_comes_from_the_workers_and_ends_at_the_total(
    scheduler: str,
) -> None:
    progress: list[float] = []
    run_farm(_farm(), 1, scheduler=scheduler, progress=progress.append)
    assert progress == sorted(progress)
    assert progress[-1] == 6 * 600
    # Workers report every 1 % of a shard: far more updates than shards finishing.
    assert len(progress) > 6 * 10
