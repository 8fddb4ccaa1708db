"""End-to-end runs of the reference agent on the simulated network (small sizes)."""

from __future__ import annotations

import io
import itertools
import json
import os
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from simulator.run import WALL_CLOCK_FIELDS, build, run_workload
from simulator.workload import Workload, workload_from_mapping


def _workload(**overrides: Any) -> Workload:
    data: dict[str, Any] = {
        "kind": "workload",
        "name": "small",
        "duration": 900,
        "watchers": 6,
        "presentities": 8,
        "contacts": 3,
        "presence_changes_per_hour": 20,
        "ramp_up": 10,
        "agent": {"profile": "rfc6665", "parameters": {"default_expiration": 300}},
        "notifier": {"max_expires": 300},
        "network": {"latency": {"kind": "uniform", "low": 0.005, "high": 0.05}, "loss": 0.05},
    }
    data.update(overrides)
    return workload_from_mapping(data, "test.yaml")


def _stable(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in WALL_CLOCK_FIELDS}


def test_same_seed_same_summary_and_trace_other_seed_differs() -> None:
    wl = _workload()
    traces = [io.StringIO() for _ in range(3)]
    first = run_workload(wl, 11, trace=traces[0])
    second = run_workload(wl, 11, trace=traces[1])
    other = run_workload(wl, 12, trace=traces[2])
    assert _stable(first.summary) == _stable(second.summary)
    assert traces[0].getvalue() == traces[1].getvalue()
    assert first.timeseries == second.timeseries
    assert _stable(first.summary) != _stable(other.summary)
    assert traces[0].getvalue() != traces[2].getvalue()
    # Loss really happened, so the equality above covers retransmission paths too.
    assert first.summary["messages"]["by_fate"].get("lost", 0) > 0


@pytest.mark.parametrize("profile", ["rfc6665", "ser"])
def test_message_counts_match_closed_form_without_loss(profile: str) -> None:
    # E = 300, refresh at E - resubscribe_delta = 270 s after the 2xx: two refreshes before
    # the unsubscribe at 600 s for subscriptions started within the first 10 s.
    wl = _workload(
        network={"latency": {"kind": "constant", "value": 0.01}},
        presence_changes_per_hour=0,
        agent={"profile": profile, "parameters": {"default_expiration": 300}},
    )
    sim = build(wl, 3)
    notifier = sim.notifiers[0]
    domain = sim.domains[0]
    watchers_at_change: list[int] = []

    def change(record: int) -> None:
        uri = domain.records[record]
        watchers_at_change.append(sum(1 for s in sim.live.values() if s.record == record))
        notifier.change_presence(uri)

    for at, record in ((100.0, 0), (150.0, 1), (400.0, 2), (420.0, 0), (500.0, 7)):
        sim.call_at(at, lambda r=record: change(r))  # type: ignore[misc]
    sim.call_at(600.0, sim.unsubscribe_all)
    sim.run(700.0)
    subs = sim.metrics.subscribe_calls
    assert subs == 6 * 3
    refreshes = 2
    expected = subs * (4 + 4 * refreshes + 4) + 2 * sum(watchers_at_change)
    counts = sim.metrics.summary()["messages"]
    assert sum(watchers_at_change) > 0
    assert counts["total"] == expected
    assert counts["requests"]["SUBSCRIBE"] == subs * (2 + refreshes)


def _attempts(trace: str, start: float, end: float) -> dict[int, list[float]]:
    sends: dict[int, list[float]] = defaultdict(list)
    for line in trace.splitlines():
        record = json.loads(line)
        if record["dir"] == "event" and record["kind"] == "send" and start <= record["t"] < end:
            sends[record["handle"]].append(record["t"])
    return sends


def _outage_run(profile: str) -> tuple[dict[int, list[float]], list[dict[str, Any]]]:
    wl = _workload(
        duration=3000,
        watchers=10,
        presentities=40,
        contacts=4,
        presence_changes_per_hour=0,
        ramp_up=30,
        network={"latency": {"kind": "constant", "value": 0.01}},
        agent={"profile": profile, "parameters": {"default_expiration": 600}},
        notifier={"max_expires": 600},
        faults=[{"kind": "outage", "start": 900, "duration": 1800, "state_lost": True}],
    )
    trace = io.StringIO()
    result = run_workload(wl, 5, trace=trace)
    return _attempts(trace.getvalue(), 900, 2700), result.timeseries


def test_outage_ser_retries_in_lockstep_every_on_error_retry_time() -> None:
    attempts, rows = _outage_run("ser")
    assert len(attempts) == 40
    # Availability: full before the outage (minutes 0-14 after the ramp-up), none while the
    # server is down (minutes 15-44), back to full once every subscription got through.
    assert all(r["availability"] > 0.99 for r in rows[1:15])
    assert all(r["availability"] == 0 for r in rows[15:45])
    assert rows[-1]["availability"] == 1.0
    gaps = [b - a for times in attempts.values() for a, b in itertools.pairwise(times)]
    assert len(gaps) >= 40 * 5
    # Each failure (30 s transaction timeout) is followed by a new dialog 120 s later:
    # every subscription retries on the same 150 s beat, no jitter, no back-off.
    assert all(abs(gap - 150.0) < 0.1 for gap in gaps)


def test_outage_rfc6665_retries_back_off_with_jitter() -> None:
    attempts, rows = _outage_run("rfc6665")
    assert len(attempts) == 40
    assert all(r["availability"] == 0 for r in rows[15:45])
    first_gaps = [times[1] - times[0] for times in attempts.values()]
    later_gaps = [times[2] - times[1] for times in attempts.values() if len(times) > 2]
    # Jitter: the first retries of 40 subscriptions that failed within 30 s of each other
    # are spread, not on one beat.
    assert statistics.pstdev(first_gaps) > 2.0
    assert len({round(g, 1) for g in first_gaps}) > 20
    # Back-off: the next gap is longer than the first for every subscription.
    assert later_gaps
    assert statistics.mean(later_gaps) > 1.5 * statistics.mean(first_gaps)
    # And fewer attempts than the ser beat over the same 30 minutes.
    assert sum(len(t) for t in attempts.values()) < 40 * 6


def test_churn_replaces_subscriptions_and_keeps_the_population() -> None:
    wl = _workload(churn_per_hour=4, network={"latency": {"kind": "constant", "value": 0.01}})
    result = run_workload(wl, 9)
    calls = result.summary["internal_subscriptions"]
    # 18 subscriptions x 4/h x 0.25 h after the ramp-up: about 18 replacements.
    assert 5 <= calls["unsubscribe_calls"] <= 40
    assert calls["subscribe_calls"] == 18 + calls["unsubscribe_calls"]
    assert result.summary["subscriptions_live_at_end"] == 18
    assert result.summary["availability"] > 0.99


def test_federation_two_domains_watch_each_other() -> None:
    wl = _workload(
        topology="federation",
        watchers=10,
        contacts=2,
        network={"latency": {"kind": "constant", "value": 0.04}},
    )
    sim = build(wl, 4)
    sim.run(wl.duration)
    # 5 users per domain x 2 contacts x 2 domains; handles repeat across the two agents,
    # subscription ids must not.
    assert len(sim.live) == 20
    assert {s.domain.name for s in sim.live.values()} == {"a", "b"}
    for domain in sim.domains:
        assert all(r.endswith(("@a.test", "@b.test")) for r in domain.records)
        assert domain.records[0].split("@")[1] != domain.watchers[0].split("@")[1]
        assert domain.agent.deliveries > 0
    summary = sim.metrics.summary()
    assert summary["availability"] > 0.99
    assert summary["propagation_delay_seconds"]["count"] > 0


def test_runs_do_not_depend_on_pythonhashseed(tmp_path: Path) -> None:
    workload = tmp_path / "w.yaml"
    workload.write_text(
        "kind: workload\nduration: 300\nwatchers: 4\npresentities: 5\ncontacts: 2\n"
        "presence_changes_per_hour: 60\nramp_up: 5\nchurn_per_hour: 6\n"
        "network: {latency: {kind: uniform, low: 0.01, high: 0.05}, loss: 0.05}\n"
    )
    outputs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"out{hash_seed}"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run(
            [sys.executable, "-m", "simulator", "run", str(workload), "--seed", "7",
             "--out", str(out), "--trace", "--no-progress"],
            env=env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        summary = _stable(json.loads((out / "summary.json").read_text()))
        outputs.append((summary, (out / "trace.jsonl").read_text()))
    assert outputs[0] == outputs[1]


def test_events_processed_counts_simpy_steps() -> None:
    # The count comes from event ids minus queued events; check it against real steps.
    sim = build(_workload(duration=300), 5)
    steps = 0
    original = sim.env.step

    def counted_step() -> None:
        nonlocal steps
        steps += 1
        original()

    sim.env.step = counted_step  # type: ignore[method-assign]
    sim.run(300)
    assert steps > 100 and sim.env.events_processed == steps


def test_live_subscriptions_view_is_what_was_subscribed() -> None:
    sim = build(_workload(), 4)
    domain = sim.domains[0]
    sid = sim.subscribe(domain, 5, 7)
    view = sim.live[sid]
    assert (view.domain, view.watcher, view.record) == (domain, 5, 7)
    assert domain.agent.subscription_id(view.handle) == sid
    sim.unsubscribe(sid)
    assert sid not in sim.live


def test_live_subscriptions_keep_the_seen_change_beside_the_indexes() -> None:
    # The metrics' seen change lives in the same packed int as the watcher and record.
    sim = build(_workload(), 4)
    domain = sim.domains[0]
    sid = sim.subscribe(domain, 5, 3)  # before any change of the record: seen -inf
    for change, later in ((-1e300, True), (0.1 + 0.2, True), (0.3, False), (3599.999999, True),
                          (5e-324, False), (3599.999999, False), (3600.0, True)):  # fmt: skip
        assert sim.live.see_change(sid, change) is later
        assert (sim.live[sid].watcher, sim.live[sid].record) == (5, 3)
    sim.unsubscribe(sid)
    assert not sim.live.see_change(sid, 7200.0)
