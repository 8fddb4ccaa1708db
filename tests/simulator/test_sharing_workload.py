"""The sharing workload (scenarios/load/shared-overlap.yaml): two internal users, overlap;
share_subscriptions saves dialogs and messages and every internal subscriber still hears
every change."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.run import build, finish
from simulator.workload import WorkloadError, load_workload, workload_from_mapping

WORKLOAD = Path(__file__).resolve().parents[2] / "scenarios" / "load" / "shared-overlap.yaml"


def _run(overlap: float, share: int) -> tuple[dict[str, object], int, int]:
    wl = load_workload(WORKLOAD)
    wl = wl.replace(watchers=40, presentities=160, duration=900.0, overlap=overlap,
                    parameters={**wl.parameters, "share_subscriptions": share})
    sim = build(wl, 3)
    sim.run(until=wl.duration)
    agent = sim.domains[0].agent.agent
    dialogs, internal = agent.subscription_count, agent.internal_subscription_count
    return finish(sim, 0.0).summary, dialogs, internal


@pytest.mark.parametrize("overlap", [0.0, 0.5, 1.0])
def test_sharing_saves_what_overlaps_and_loses_no_message(overlap: float) -> None:
    off, off_dialogs, off_internal = _run(overlap, 0)
    on, on_dialogs, on_internal = _run(overlap, 1)
    assert off_internal == on_internal == 2 * 40 * 4
    assert off_dialogs == off_internal
    shared = round(overlap * 160)  # pairs the second user shares, expected
    assert abs((off_internal - on_dialogs) - shared) <= 30  # seeded draw around the mean
    assert on["status_deliveries"] == off["status_deliveries"]
    messages_off = off["messages"]["total"]  # type: ignore[index]
    messages_on = on["messages"]["total"]  # type: ignore[index]
    if overlap == 0.0:
        assert messages_on == messages_off
    else:
        assert messages_on < messages_off


def test_more_than_one_internal_user_needs_a_simple_workload() -> None:
    with pytest.raises(WorkloadError, match="internal_users"):
        workload_from_mapping({"kind": "workload", "watchers": 2, "churn_per_hour": 1,
                               "internal_users": {"count": 2, "overlap": 0.5}})
