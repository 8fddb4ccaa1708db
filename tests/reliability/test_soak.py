"""Soak in simulation, small (issue 8 §1; the long run is `benchmarks/soak.py`).

A few hundred subscriptions for four simulated hours on a network that loses 20 % of the
datagrams, duplicates and reorders some, with a notifier outage that loses its state, one
that keeps it, and a 5-minute partition. `run_soak` checks recovery after each fault, the
timers/dialogs/transactions the agent holds at the end, memory per subscription over time,
and that unsubscribing everything leaves nothing behind; `problems` lists every violation.
"""

from __future__ import annotations

import pytest

from benchmarks.soak import run_soak


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["ser", "rfc6665"])
def test_lossy_day_with_outages_and_partition(profile: str) -> None:
    report = run_soak(subscriptions=240, hours=4.0, profile=profile, seed=3)
    assert report.problems == []
    # The faults really happened and really cost something.
    assert report.network["lost"] > 0.15 * report.network["sent"]
    assert report.network["partitioned"] > 0
    assert report.network["duplicated"] > 0
    assert report.unsubscribed > report.subscriptions  # churn plus the final unsubscribe_all
    for fault in report.faults:
        assert fault.recovery_seconds is not None, fault.name
        assert fault.messages > 0
    first, last = report.bytes_per_subscription.values()
    assert last <= first * 1.15
