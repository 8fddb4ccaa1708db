"""The `sim` target replays byte-identically from a scenario's seed (its agent gets a seeded
`IdSource`), while an `Agent` built without one draws identifiers from the OS CSPRNG."""

from __future__ import annotations

from pathlib import Path

from conformance.runner import Datagram
from conformance.scenario import Scenario, load
from conformance.targets.sim import SimTarget
from reference import Agent, AgentConfig, Send
from reference.ids import OsRandomIds, SeededIds

SCENARIO = (Path(__file__).resolve().parents[2] / "scenarios" / "conformance" / "terminated"
            / "deactivated.yaml")


def _scenario() -> Scenario:
    scenarios, errors = load([SCENARIO])
    assert not errors
    return scenarios[0]


def _first_subscribe(scenario: Scenario) -> bytes:
    session = SimTarget().open(scenario, "rfc6665")
    session.subscribe("sip:bob@127.0.0.1:5070", "sip:alice@b2b.test")
    incoming = session.poll(1.0)
    assert isinstance(incoming, Datagram)
    return incoming.data


def test_sim_target_subscribe_is_byte_identical_run_to_run() -> None:
    scenario = _scenario()
    first, second = _first_subscribe(scenario), _first_subscribe(scenario)
    assert b"Call-ID: " in first
    assert first == second


def test_agent_defaults_to_the_os_csprng_and_seeded_ids_follow_the_seed() -> None:
    config = AgentConfig(profile="rfc6665", seed=5)
    assert isinstance(Agent(config).ids, OsRandomIds)

    def call_id(agent: Agent) -> bytes:
        agent.subscribe("sip:bob@127.0.0.1:5070", "sip:alice@b2b.test", "q", now=0.0)
        sent = [e for e in agent.drain_effects() if isinstance(e, Send)]
        return next(line for line in sent[0].data.split(b"\r\n") if line.startswith(b"Call-ID"))

    assert call_id(Agent(config)) != call_id(Agent(config))
    assert call_id(Agent(config, ids=SeededIds(5))) == call_id(Agent(config, ids=SeededIds(5)))
    assert call_id(Agent(config, ids=SeededIds(5))) != call_id(Agent(config, ids=SeededIds(6)))
