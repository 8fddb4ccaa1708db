"""Verdicts by requirement: reference choices are observations on another build, a
requirement is decided only by the steps that test it, and the report pages render them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from conformance import judgement
from conformance.cli import main
from conformance.runner import DIFFERS, FAIL, NA, NOT_TESTED, PASS, run_scenario
from conformance.scenario import Scenario, load
from conformance.targets.sim import SimSession, SimTarget
from reference import Agent, AgentConfig, policy

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios" / "conformance"


def scenario(name: str) -> Scenario:
    found, errors = load([LIBRARY], name)
    assert not errors
    return next(s for s in found if s.name == name)


def _refresh_at_90_percent(config: AgentConfig, granted: int) -> float:
    return 0.9 * granted


def _retry_after_30(config: AgentConfig, failures: int, rng: Any,
                    retry_after: int | None = None) -> float:
    return 30.0


@pytest.fixture
def late_refresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy, "DEFAULT_TIMING", dataclasses.replace(
        policy.DEFAULT_TIMING, refresh_delay=_refresh_at_90_percent))


def test_refresh_at_90_percent_differs_on_another_build_and_fails_on_the_reference(
        late_refresh: None) -> None:
    run = scenario("resubscribe/shorter-grant")
    other = run_scenario(run, "rfc6665", SimTarget(reference=False))
    assert other.verdict == DIFFERS, other.failure
    refresh = other.steps[-1]
    assert refresh.verdict == DIFFERS and refresh.tests == ("SUB-003",)
    assert "too late (window)" in refresh.differences[0]
    assert "t=5.400" in refresh.differences[0]  # what was seen, and when
    table = judgement.judge([other])
    assert table["SUB-003"]["verdict"] == judgement.CONFORMANT
    assert table["reference"]["verdict"] == DIFFERS
    exact = run_scenario(run, "rfc6665", SimTarget(reference=True))
    assert exact.verdict == FAIL


def test_a_refresh_after_the_grant_violates_sub_003(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy, "DEFAULT_TIMING", dataclasses.replace(
        policy.DEFAULT_TIMING, refresh_delay=lambda config, granted: granted + 1.0))
    result = run_scenario(scenario("resubscribe/shorter-grant"), "rfc6665",
                          SimTarget(reference=False))
    assert result.verdict == FAIL
    assert "RFC window" in (result.failure or "")
    table = judgement.judge([result])
    assert table["SUB-003"]["verdict"] == judgement.VIOLATED
    assert table["SUB-003"]["level"] == "normative"
    assert table["SUB-003"]["evidence"][0]["scenario"] == "resubscribe/shorter-grant"


class _AsksAnHour(SimTarget):
    """Another build that asks Expires 3600 whatever the scenario's default_expiration,
    judged with the peer granting what it asked (`grant: asked`) or the scenario's numbers
    (`grant: scenario`, the target-file declaration)."""

    def __init__(self, grants_asked: bool) -> None:
        super().__init__(lambda config, ids: Agent(config.replace(default_expiration=3600),
                                                   ids=ids), reference=False)
        self.grants_asked = grants_asked

    def open(self, scenario: Scenario, profile: str) -> SimSession:
        session = super().open(scenario, profile)
        session.grants_asked = self.grants_asked  # type: ignore[attr-defined]
        return session


def _granted(result: Any) -> list[str]:
    return [line for rung in result.ladder if rung["from"] == "peer"
            for line in rung["message"].split("\n") if line.startswith("Expires:")]


@pytest.mark.parametrize(("grants_asked", "granted", "refresh_at"),
                         [(True, "Expires: 3600", 3597.0), (False, "Expires: 10", 7.0)])
def test_the_peer_grants_what_was_asked_or_the_scenarios_number(
        grants_asked: bool, granted: str, refresh_at: float) -> None:
    result = run_scenario(scenario("failed/500-refresh"), "rfc6665",
                          _AsksAnHour(grants_asked))
    assert result.verdict in (PASS, DIFFERS), result.failure
    assert _granted(result)[0] == granted
    refreshes = [rung for rung in result.ladder if rung["from"] == "subscriber"
                 and rung["message"].startswith("SUBSCRIBE") and "tag=" in
                 rung["message"].split("\nTo:", 1)[1].split("\n", 1)[0]]
    assert refreshes and refreshes[0]["t"] == pytest.approx(refresh_at, abs=0.01)


def test_later_retry_than_retry_after_differs_and_the_run_goes_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy, "DEFAULT_TIMING", dataclasses.replace(
        policy.DEFAULT_TIMING, backoff_delay=_retry_after_30))
    result = run_scenario(scenario("failed/503-retry-after"), "rfc6665",
                          SimTarget(reference=False))
    assert result.verdict == DIFFERS, result.failure
    retry = next(s for s in result.steps if s.tests == ("SUB-131",))
    assert retry.verdict == DIFFERS and retry.at == pytest.approx(30.0)
    assert judgement.judge([result])["SUB-131"]["verdict"] == judgement.CONFORMANT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "demo.yaml"
    path.write_text(text)
    return path


DEMO = """
kind: scenario
name: demo/two-requirements
covers: [SUB-002, SUB-003]
profiles: [rfc6665]
params: {default_expiration: 10, resubscribe_delta: 3, min_resubscribe_time: 2, t1: 0.05}
steps:
  - subscribe:
  - expect: {id: s1, method: SUBSCRIBE, within: [0, 0], match: {Expires: {present: true}},
             tests: [SUB-002]}
  - accept: {expires: 10, tests: [SUB-043]}
  - expect: {method: SUBSCRIBE, within: [5, 6], tests: [SUB-003]}
  - expect_nothing: {duration: 1, tests: [SUB-031]}
"""


def test_a_requirement_is_decided_only_by_its_own_steps(tmp_path: Path) -> None:
    found, errors = load([write(tmp_path, DEMO)])
    assert not errors
    result = run_scenario(found[0], "rfc6665", SimTarget())
    assert result.verdict == FAIL
    assert [s.verdict for s in result.steps] == [PASS, PASS, PASS, FAIL, NOT_TESTED]
    table = judgement.judge([result])
    assert table["SUB-002"]["verdict"] == judgement.CONFORMANT   # Expires was sent
    assert table["SUB-003"]["verdict"] == judgement.VIOLATED
    assert table["SUB-031"]["verdict"] == judgement.NOT_TESTED   # never evaluated
    assert result.ladder and result.ladder[-1]["t"] >= 7.0       # the grace period


# One step testing two requirements, each matcher naming its own: the refresh's Call-ID
# (SUB-112) is right, its CSeq check is forged to fail (SUB-114); the 200 to the NOTIFY
# is right, a forged check of its To tag names SUB-141 only.
BLAME = """
kind: scenario
name: demo/per-check-blame
covers: [SUB-112, SUB-114]
profiles: [rfc6665]
params: {default_expiration: 10, resubscribe_delta: 3, min_resubscribe_time: 2, t1: 0.05}
steps:
  - subscribe:
  - expect: {id: s1, method: SUBSCRIBE, within: [0, 0], tests: [SUB-006]}
  - accept: {expires: 10, tests: [SUB-043]}
  - expect:
      method: SUBSCRIBE
      within: [7, 7]
      match: {call_id: {same_as: s1.call_id}, cseq: {same_as: s1.cseq, offset: 5}}
      match_tests: {call_id: [SUB-112], cseq: [SUB-114]}
      tests: [SUB-112, SUB-114]
"""
RESPONSE_BLAME = """
kind: scenario
name: demo/per-check-blame-response
covers: [SUB-043, SUB-141]
profiles: [rfc6665]
params: {default_expiration: 10, resubscribe_delta: 3, min_resubscribe_time: 2, t1: 0.05}
steps:
  - subscribe:
  - expect: {id: s1, method: SUBSCRIBE, within: [0, 0], tests: [SUB-006]}
  - reply: {status: 200, expires: 10}
  - notify: {id: n1, state: active, expires: 10, body: open}
  - expect_response:
      status: 200
      match: {to_tag: "not-the-tag"}
      match_tests: {to_tag: [SUB-141]}
      tests: [SUB-043, SUB-141]
"""


@pytest.mark.parametrize(("text", "blamed", "spared"), [
    (BLAME, "SUB-114", "SUB-112"), (RESPONSE_BLAME, "SUB-141", "SUB-043")])
def test_a_failing_check_blames_only_the_requirement_it_names(
        tmp_path: Path, text: str, blamed: str, spared: str) -> None:
    found, errors = load([write(tmp_path, text)])
    assert not errors
    result = run_scenario(found[0], "rfc6665", SimTarget(reference=False))
    assert result.verdict == FAIL
    assert result.steps[-1].tests == (blamed,)
    table = judgement.judge([result])
    assert table[blamed]["verdict"] == judgement.VIOLATED
    assert spared not in table  # the failing step is no evidence against it


def test_lint_asks_each_check_of_a_multi_requirement_step_for_its_requirement(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, BLAME.replace(
        "      match_tests: {call_id: [SUB-112], cseq: [SUB-114]}\n",
        "      match_tests: {cseq: [SUB-114, SUB-003]}\n"))
    assert main(["lint", str(path)]) == 2
    err = capsys.readouterr().err
    assert "say which one each check tests (match_tests.call_id)" in err
    assert "match_tests.cseq names SUB-003, which the step does not test" in err


class _NoStatusSession(SimSession):
    capabilities = frozenset({"faults", "unsubscribe"})


class _NoStatusTarget(SimTarget):
    capabilities = _NoStatusSession.capabilities

    def open(self, scenario: Scenario, profile: str) -> SimSession:
        return _NoStatusSession(scenario.agent_config_for(profile), self.agent_factory,
                                False)


@pytest.mark.parametrize("name", ["terminated/timer-n", "terminated/timer-n-refresh",
                                  "bad-notify/unknown-dialog", "dialog/forked-notify",
                                  "bad-notify/malformed"])
def test_a_skipped_status_step_keeps_its_wait_and_anchor(name: str) -> None:
    result = run_scenario(scenario(name), "rfc6665", _NoStatusTarget())
    assert result.verdict == PASS, result.failure
    skipped = [s for s in result.steps if s.action.startswith("expect_") and
               s.action.endswith("status")]
    assert skipped and all(s.verdict == NA for s in skipped)


def test_status_only_requirements_are_not_applicable_without_status() -> None:
    result = run_scenario(scenario("event-package/neutral-before-notify"), "rfc6665",
                          _NoStatusTarget())
    table = judgement.judge([result])
    assert table["SUB-012"]["verdict"] == judgement.NOT_APPLICABLE


def test_levels_from_the_catalogue() -> None:
    rows = judgement.load_catalogue()
    assert judgement.level(rows["SUB-001"]) == "MUST"
    assert judgement.level(rows["SUB-002"]) == "SHOULD"
    assert judgement.level(rows["SUB-038"]) == "SHOULD"      # SHOULD NOT
    assert judgement.level(rows["SUB-011"]) == "normative"   # (normative) / SHOULD
    assert judgement.level(rows["SUB-027"]) == "derived"


def test_lint_refuses_an_expectation_without_tests(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, DEMO.replace(", tests: [SUB-031]", ""))
    assert main(["lint", str(path)]) == 2
    err = capsys.readouterr().err
    assert "steps[4] expect_nothing: says nothing about what it tests" in err
    assert main(["lint", str(LIBRARY)]) == 0


def test_lint_refuses_an_unknown_tests_id(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, DEMO.replace("tests: [SUB-031]", "tests: [SUB-999]"))
    assert main(["lint", str(path)]) == 2
    assert "unknown requirement ID 'SUB-999'" in capsys.readouterr().err


def test_report_renders_markdown_and_html(tmp_path: Path) -> None:
    report, page, html = tmp_path / "r.json", tmp_path / "p.md", tmp_path / "out" / "p.html"
    assert main(["run", str(write(tmp_path, DEMO)), "--json", str(report)]) == 1
    data = json.loads(report.read_text())
    entry = data["requirements"]["SUB-003"]
    assert entry["verdict"] == "violated" and entry["level"] == "normative"
    assert entry["evidence"][0]["step"] == 3
    assert main(["report", str(report), "--markdown", str(page), "--html", str(html)]) == 0
    text = page.read_text()
    assert "### SUB-003 (normative, violated)" in text and "6665 §3.1.1" in text
    assert "| SUB-031 | not-tested |" in text
    markup = html.read_text()
    assert markup.startswith("<!DOCTYPE html>") and "SUB-003" in markup
    assert "http" not in markup.split("<body>")[0].replace("http-equiv", "")  # no links out


def test_report_of_a_non_report_is_one_line(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "x.json"
    bogus.write_text("[1, 2]")
    assert main(["report", str(bogus)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
