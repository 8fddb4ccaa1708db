"""The `udp` target against the real `b2b-agent` process (representative subset, run in
parallel): the same scenarios that pass on `sim` pass in real time."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from conformance.cli import run_all
from conformance.runner import NA, PASS, XFAIL
from conformance.scenario import OPTIONAL_FEATURES, load
from conformance.targets.udp import agent_argv

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios" / "conformance"


@pytest.mark.slow
def test_whole_library_passes_on_udp() -> None:
    """Issue 6: the reference passes every scenario in both profiles over real UDP too (about
    1.5 min of real time, scenarios in parallel). Fault scenarios need the simulator: n/a."""
    scenarios, errors = load([LIBRARY])
    assert not errors and scenarios
    command = f"{shlex.quote(sys.executable)} -m reference --listen {{listen}} " \
              "--control {control} --profile {profile} {params}"
    results = run_all(scenarios, "udp", jobs=6, agent_command=command)
    failures = [f"{r.scenario}[{r.profile}]: {r.failure}" for r in results
                if r.verdict not in (PASS, NA, XFAIL)]
    assert not failures, "\n".join(failures)
    # n/a: fault scenarios (simulator only) and scenarios needing an optional subscriber
    # feature the reference does not have (docs/conformance.md, "Capabilities").
    optional = {s.name for s in scenarios if s.requires & set(OPTIONAL_FEATURES)}
    not_applicable = {r.scenario for r in results if r.verdict == NA}
    assert all(name.startswith("faults/") or name in optional
               for name in not_applicable), not_applicable
    assert sum(r.verdict == PASS for r in results) >= 70


def test_agent_argv_expands_params() -> None:
    argv = agent_argv("agent --listen {listen} --control {control} -p {profile} {params}",
                      "127.0.0.1:1", "127.0.0.1:2", "ser",
                      {"profile": "ser", "t1": 0.05, "default_expiration": 10})
    assert argv == ["agent", "--listen", "127.0.0.1:1", "--control", "127.0.0.1:2", "-p",
                    "ser", "--param", "t1=0.05", "--param", "default_expiration=10"]
