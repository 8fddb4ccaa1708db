"""SER verdicts: the rfc6665 expectations against the `ser` agent, and the committed doc."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from conformance import verdicts
from conformance.cli import main
from conformance.runner import FAIL, PASS, XFAIL, run_scenario
from conformance.scenario import load_file
from conformance.targets.sim import SimTarget

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "verdicts" / "ser-presence_b2b.md"


@pytest.fixture(scope="module")
def collected() -> verdicts.VerdictRun:
    return verdicts.collect([ROOT / "scenarios"])


def test_committed_document_is_up_to_date(collected: verdicts.VerdictRun) -> None:
    assert verdicts.markdown(collected) == COMMITTED.read_text(encoding="utf-8"), (
        "docs/verdicts/ser-presence_b2b.md is out of date: run `" + verdicts.REGENERATE + "`")


def test_every_violation_maps_to_a_defect_or_is_explained(
        collected: verdicts.VerdictRun) -> None:
    mapped = {rid for d in verdicts.DEFECTS for rid in d.requirements}
    for rid in collected.violations:
        assert rid in mapped or rid in verdicts.UNMAPPED_NOTES, rid


def test_every_testable_defect_shows_up(collected: verdicts.VerdictRun) -> None:
    for defect in verdicts.DEFECTS:
        if defect.requirements:
            shown = [r for r in defect.requirements if r in collected.violations]
            assert shown, f"{defect.id} ({defect.title}) shows no violation"
        else:
            assert defect.why_untestable


def test_known_defects_found(collected: verdicts.VerdictRun) -> None:
    # A few anchors from presence_b2b.md §7: B2 (terminated ignored), B3 (late refresh),
    # B5 (423), B8 (CSeq order), Timer N (§9).
    for rid in ("SUB-031", "SUB-003", "SUB-057", "SUB-150", "SUB-011"):
        assert rid in collected.violations, rid
    # SER terminates on every refresh error, so SUB-014 holds; SUB-016 does not.
    assert "SUB-014" not in collected.violations and "SUB-016" in collected.violations


def test_agent_profile_runs_rfc_steps_against_ser_agent() -> None:
    [scenario] = load_file(ROOT / "scenarios/conformance/bad-notify/cseq-out-of-order.yaml")
    target = SimTarget()
    assert run_scenario(scenario, "rfc6665", target).verdict == PASS
    as_ser = dataclasses.replace(scenario, agent_profile="ser")
    assert as_ser.agent_params_for("rfc6665")["profile"] == "ser"
    assert as_ser.names_for("rfc6665") == scenario.names_for("rfc6665")
    result = run_scenario(as_ser, "rfc6665", target)
    assert result.verdict == FAIL and "500" in (result.failure or "")


def test_xfail_marks_not_applied_to_another_agent_profile(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("""
kind: scenario
name: t/xf
covers: [SUB-150]
profiles: [rfc6665]
xfail: {reason: demo}
params: {default_expiration: 10, t1: 0.05}
steps:
  - subscribe:
  - expect: {id: s1, method: SUBSCRIBE, within: [0, 0]}
  - expect: {method: SUBSCRIBE, within: [0, 1]}
""", encoding="utf-8")
    [scenario] = load_file(path)
    assert run_scenario(scenario, "rfc6665", SimTarget()).verdict == XFAIL
    other = dataclasses.replace(scenario, agent_profile="ser")
    assert run_scenario(other, "rfc6665", SimTarget()).verdict == FAIL


def test_cli_agent_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", str(ROOT / "scenarios/conformance/bad-notify"), "--profile",
                 "rfc6665", "--agent-profile", "ser", "--no-colour"])
    out = capsys.readouterr().out
    assert code == 1 and "bad-notify/cseq-out-of-order" in out and " fail " in out
