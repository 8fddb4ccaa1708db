"""Issue 17 in the suite: list bodies from templates (built with the project's RLMI builder
and read back by the agent's parser), the per-check `match_tests` of `expect_status`, the
`tcp` capability (n/a where it is missing or in ser), the sim target's stream model (replays
byte-identically) and `expect_nothing` with `retransmissions: true`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.peer import list_body, notify_body
from conformance.runner import FAIL, NA, PASS, ScenarioResult, run_scenario
from conformance.scenario import ScenarioError, load_file, unattributed_checks
from conformance.targets.sim import SimTarget
from reference.rlmi import RlmiError, parse_list_body
from reference.sip.headers import parse_content_type

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios" / "conformance"


def _parse(spec: dict[str, object]) -> object:
    body, content_type = list_body(spec, "sip:list@lab.test")
    return parse_list_body(body, parse_content_type(content_type).params)


def test_a_list_template_is_what_the_agent_parses() -> None:
    notification = _parse({"version": 4, "full_state": False, "resources": [
        {"uri": "sip:ann@lab.test", "name": "Ann", "body": "closed"},
        {"uri": "sip:ben@lab.test", "state": "terminated", "reason": "rejected"}]})
    rlmi = notification.rlmi  # type: ignore[attr-defined]
    assert (rlmi.uri, rlmi.version, rlmi.full_state) == ("sip:list@lab.test", 4, False)
    ann, ben = rlmi.resources
    assert ann.names == ("Ann",) and ann.instances[0].state == "active"
    assert notification.documents[ann.instances[0].cid].basic == "closed"  # type: ignore[attr-defined]
    assert (ben.instances[0].state, ben.instances[0].reason, ben.instances[0].cid) == (
        "terminated", "rejected", None)


def test_a_cid_without_a_part_is_refused_by_the_agent_parser() -> None:
    with pytest.raises(RlmiError, match="ghost@list"):
        _parse({"version": 0, "resources": [
            {"uri": "sip:ann@lab.test", "cid": "ghost@list", "body": None}]})


def test_notify_body_types() -> None:
    assert notify_body("open", "sip:a@b", Path("."))[1] == "application/pidf+xml"
    _, list_type = notify_body({"list": {"version": 0}}, "sip:a@b", Path("."))
    assert list_type.startswith("multipart/related;type=\"application/rlmi+xml\"")


HEAD = """
kind: scenario
name: t/issue17
covers: [TCP-004]
profiles: [ser, rfc6665]
params: {default_expiration: 10, on_error_retry_time: 2, t1: 0.05}
"""


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "x.yaml"
    path.write_text(HEAD + text, encoding="utf-8")
    [scenario] = load_file(path)
    return scenario


def _run(tmp_path: Path, text: str, profile: str = "rfc6665",
         target: object | None = None) -> ScenarioResult:
    return run_scenario(_load(tmp_path, text), profile,  # type: ignore[arg-type]
                        target or SimTarget())  # type: ignore[arg-type]


QUIET = """steps:
  - subscribe:
  - expect: {id: s1, method: SUBSCRIBE, within: [0, 0], tests: [SUB-006]}
  - expect_nothing: {duration: 1, retransmissions: true, tests: [TCP-004]}
"""


def test_retransmissions_count_only_when_asked(tmp_path: Path) -> None:
    # Over UDP the unanswered SUBSCRIBE is retransmitted (T1 = 50 ms): absorbed by default,
    # a failure with `retransmissions: true`; over TCP there is none.
    absorbed = QUIET.replace(", retransmissions: true", "")
    assert _run(tmp_path, absorbed + "  - wait: 3\n").verdict == PASS
    strict = _run(tmp_path, QUIET + "  - wait: 3\n")
    assert strict.verdict == FAIL and "retransmitted" in (strict.failure or "")
    over_tcp = 'transport: tcp\nrecord: "sip:alice@{peer};transport=tcp"\n' + QUIET
    assert _run(tmp_path, over_tcp + "  - wait: 3\n").verdict == PASS


def test_tcp_is_not_applicable_in_ser_or_without_the_capability(tmp_path: Path) -> None:
    text = 'transport: tcp\nrecord: "sip:alice@{peer};transport=tcp"\n' + QUIET
    in_ser = _run(tmp_path, text, profile="ser")
    assert in_ser.verdict == NA and "judged in the rfc6665 profile only" in (
        in_ser.failure or "")

    class UdpOnly(SimTarget):
        capabilities = frozenset({"status", "faults", "unsubscribe", "reg"})

    lacking = _run(tmp_path, text, target=UdpOnly())
    assert lacking.verdict == NA and "lacks tcp" in (lacking.failure or "")


def test_a_status_step_testing_two_rows_names_each_check(tmp_path: Path) -> None:
    scenario = _load(tmp_path, """steps:
  - subscribe:
  - expect_status: {status: active, reason: x, resource: y, tests: [RLS-006, RLS-007]}
""")
    problems = unattributed_checks(scenario)  # type: ignore[arg-type]
    assert problems and "match_tests.reason" in problems[0] and "match_tests.resource" in \
        problems[0]
    named = _load(tmp_path, """steps:
  - subscribe:
  - expect_status: {status: active, reason: x, resource: y,
                    match_tests: {reason: [RLS-006], resource: [RLS-007]},
                    tests: [RLS-006, RLS-007]}
""")
    assert not unattributed_checks(named)  # type: ignore[arg-type]


def test_unknown_transport_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="transport"):
        _load(tmp_path, "transport: sctp\nsteps:\n  - subscribe:\n")


@pytest.mark.parametrize("name", ["tcp/contact-transport.yaml", "tcp/connection-lost.yaml",
                                  "tcp/oversize-notify.yaml"])
def test_sim_streams_replay_byte_identically(name: str) -> None:
    [scenario] = load_file(LIBRARY / name)
    first, second = (run_scenario(scenario, "rfc6665", SimTarget()) for _ in range(2))
    assert first.verdict == PASS
    assert json.dumps(first.ladder) == json.dumps(second.ladder)
    streams = [rung for rung in first.ladder if rung.get("transport") == "tcp"]
    assert streams and all(rung["connection"].startswith("c") for rung in streams)
    assert all(" over tcp c" in rung["note"] for rung in streams)


def test_a_broken_reply_connection_is_caught(tmp_path: Path) -> None:
    # A subscriber that answers a TCP NOTIFY elsewhere fails `connection: same`: here the
    # expectation is turned around to show the check can fail.
    text = ('transport: tcp\nrecord: "sip:alice@{peer};transport=tcp"\nsteps:\n'
            "  - subscribe:\n"
            "  - expect: {id: s1, method: SUBSCRIBE, within: [0, 0], tests: [TCP-002]}\n"
            "  - reply: {status: 200, expires: 10}\n"
            "  - notify: {id: n1, state: active, expires: 10, body: open}\n"
            "  - expect_response: {to: n1, status: 200, match: {connection: MATCH},"
            " tests: [TCP-005]}\n")
    assert _run(tmp_path, text.replace("MATCH", "same")).verdict == PASS
    assert _run(tmp_path, text.replace("MATCH", "c1")).verdict == FAIL
