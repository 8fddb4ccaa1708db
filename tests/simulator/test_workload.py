"""Workload files: schema errors name the field; shipped scenarios are valid."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from simulator.workload import (
    ContactsSpec,
    WorkloadError,
    load_workload,
    workload_from_mapping,
)

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios" / "load"


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"watchers": -5}, "workload.yaml: watchers: -5 is less than the minimum of 1"),
        ({"kind": "scenario"}, "workload.yaml: kind: 'workload' was expected"),
        ({"network": {"loss": 2}}, "workload.yaml: network.loss: 2 is greater than the maximum"),
        ({"faults": [{"kind": "outage", "start": -1, "duration": 5}]}, "faults[0].start: -1"),
        ({"faults": [{"kind": "outage", "start": 1}]}, "faults[0].duration: required"),
        ({"contacts": {"distribution": "uniform", "min": 5, "max": 2}}, "contacts.min"),
        ({"contacts": {"distribution": "zipf"}}, "contacts.distribution: 'zipf' is not one of"),
        ({"agent": {"profile": "kamailio"}}, "agent.profile: 'kamailio' is not one of"),
        ({"watchrs": 3}, "Additional properties are not allowed ('watchrs' was unexpected)"),
    ],
)
def test_errors_name_the_field(patch: dict[str, Any], message: str) -> None:
    data: dict[str, Any] = {"kind": "workload", "watchers": 3, **patch}
    with pytest.raises(WorkloadError) as err:
        workload_from_mapping(data, "workload.yaml")
    assert message in str(err.value)


def test_file_errors_carry_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("kind: workload\nwatchers: 0\n")
    with pytest.raises(WorkloadError, match=r"^broken.yaml: watchers: 0 is less than"):
        load_workload(path)


@pytest.mark.parametrize(
    "name", ["steady-10k", "outage-storm", "federation-20k", "farm-1m", "farm-outage"]
)
def test_shipped_scenarios_load(name: str) -> None:
    workload = load_workload(SCENARIOS / f"{name}.yaml")
    assert workload.name == name
    assert workload.duration == 3600


def test_outage_storm_has_a_ten_minute_outage() -> None:
    (fault,) = load_workload(SCENARIOS / "outage-storm.yaml").faults
    assert (fault.kind, fault.duration) == ("outage", 600)


def test_farm_workloads_have_the_sizes_they_claim() -> None:
    farm = load_workload(SCENARIOS / "farm-1m.yaml")
    assert (farm.servers, farm.watchers * farm.contacts.value) == (16, 1_000_000)
    assert farm.presence_changes_per_hour == 3
    outage = load_workload(SCENARIOS / "farm-outage.yaml")
    (fault,) = outage.faults
    assert (fault.kind, fault.node, fault.duration, fault.state_lost) == ("outage", 5, 600, True)
    assert outage.servers == 16


def test_contact_distributions_stay_in_range() -> None:
    rng = random.Random(1)
    assert {ContactsSpec("fixed", value=4).draw(rng) for _ in range(50)} == {4}
    assert {ContactsSpec("uniform", low=2, high=5).draw(rng) for _ in range(500)} == {2, 3, 4, 5}
    draws = [ContactsSpec("poisson", mean=3.0).draw(rng) for _ in range(5000)]
    assert min(draws) >= 1
    assert 2.8 < sum(draws) / len(draws) < 3.4
