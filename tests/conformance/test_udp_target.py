"""The `udp` target against the real `b2b-agent` process (representative subset, run in
parallel): the same scenarios that pass on `sim` pass in real time."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from conformance.cli import run_all
from conformance.runner import PASS
from conformance.scenario import load
from conformance.targets.udp import agent_argv

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios" / "conformance"
SUBSET = [
    "failed/302-redirect.yaml", "failed/423-min-expires.yaml", "failed/481-refresh.yaml",
    "bad-notify/cseq-out-of-order.yaml", "bad-notify/malformed.yaml",
    "term-wait/final-notify-before-2xx.yaml", "resubscribe/notify-expires-shortens.yaml",
]


@pytest.mark.slow
def test_subset_passes_on_udp() -> None:
    scenarios, errors = load([LIBRARY / name for name in SUBSET])
    assert not errors and len(scenarios) == len(SUBSET)
    command = f"{shlex.quote(sys.executable)} -m reference --listen {{listen}} " \
              "--control {control} --profile {profile} {params}"
    results = run_all(scenarios, "udp", jobs=8, agent_command=command)
    failures = [f"{r.scenario}[{r.profile}]: {r.failure}" for r in results if r.verdict != PASS]
    assert not failures, "\n".join(failures)
    assert len(results) == 2 * len(SUBSET)


def test_agent_argv_expands_params() -> None:
    argv = agent_argv("agent --listen {listen} --control {control} -p {profile} {params}",
                      "127.0.0.1:1", "127.0.0.1:2", "ser",
                      {"profile": "ser", "t1": 0.05, "default_expiration": 10})
    assert argv == ["agent", "--listen", "127.0.0.1:1", "--control", "127.0.0.1:2", "-p",
                    "ser", "--param", "t1=0.05", "--param", "default_expiration=10"]
