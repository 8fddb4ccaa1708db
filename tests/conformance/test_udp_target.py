"""The `udp` target against the real `b2b-agent` process (scenarios run in parallel): the same
scenarios that pass on `sim` pass in real time.

Event loops: the whole library runs on the default loop (uvloop where installed, what users
get); the standard asyncio loop runs one scenario of every directory, both profiles. The
whole library takes minutes of real time, and its scenarios exercise SIP behaviour that the
loop does not decide; the runtime tests themselves run in full on both loops."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from conformance.cli import run_all
from conformance.runner import NA, PASS, XFAIL
from conformance.scenario import OPTIONAL_FEATURES, Scenario, load
from conformance.targets.udp import agent_argv
from reference.loops import default_loop

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios" / "conformance"


@pytest.mark.slow
def test_whole_library_passes_on_udp() -> None:
    """Issue 6: the reference passes every scenario in both profiles over real UDP too (about
    1.5 min of real time, scenarios in parallel). Fault scenarios need the simulator: n/a."""
    scenarios, errors = load([LIBRARY])
    assert not errors and scenarios
    results = run_all(scenarios, "udp", jobs=6, agent_command=_command(default_loop()))
    failures = [f"{r.scenario}[{r.profile}]: {r.failure}" for r in results
                if r.verdict not in (PASS, NA, XFAIL)]
    assert not failures, "\n".join(failures)
    # n/a: fault scenarios (simulator only) and scenarios needing an optional subscriber
    # feature the reference does not have (docs/conformance.md, "Capabilities").
    # In ser also reg/, list/ and tcp/ (issue 17: SER's presence_b2b had neither the packages
    # nor TCP).
    optional = {s.name for s in scenarios if s.requires & set(OPTIONAL_FEATURES)}
    not_applicable = {(r.scenario, r.profile) for r in results if r.verdict == NA}
    assert all(name.startswith("faults/") or name in optional
               or (profile == "ser" and name.split("/")[0] in ("reg", "list", "tcp"))
               for name, profile in not_applicable), not_applicable
    assert sum(r.verdict == PASS for r in results) >= 70


@pytest.mark.slow
def test_one_scenario_per_directory_passes_on_udp_with_the_asyncio_loop() -> None:
    scenarios, errors = load([LIBRARY])
    assert not errors
    firsts: dict[str, Scenario] = {}
    for scenario in sorted(scenarios, key=lambda s: s.name):
        directory = scenario.name.split("/")[0]
        if directory != "faults":  # simulator only
            firsts.setdefault(directory, scenario)
    assert len(firsts) >= 10
    results = run_all(list(firsts.values()), "udp", jobs=6, agent_command=_command("asyncio"))
    failures = [f"{r.scenario}[{r.profile}]: {r.failure}" for r in results
                if r.verdict not in (PASS, NA, XFAIL)]
    assert not failures, "\n".join(failures)
    assert sum(r.verdict == PASS for r in results) >= 10


def _command(loop: str) -> str:
    return (f"{shlex.quote(sys.executable)} -m reference --loop {loop} --listen {{listen}} "
            "--control {control} --profile {profile} {params}")


def test_agent_argv_expands_params() -> None:
    argv = agent_argv("agent --listen {listen} --control {control} -p {profile} {params}",
                      "127.0.0.1:1", "127.0.0.1:2", "ser",
                      {"profile": "ser", "t1": 0.05, "default_expiration": 10})
    assert argv == ["agent", "--listen", "127.0.0.1:1", "--control", "127.0.0.1:2", "-p",
                    "ser", "--param", "t1=0.05", "--param", "default_expiration=10"]
