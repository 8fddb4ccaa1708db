"""Requirement coverage: the definition, the committed figure, and docs/coverage.md freshness.

CI enforcement: the coverage computed from the scenario files and the catalogue must not be
below the figure committed in docs/coverage.md (nor below 95 %), and docs/coverage.md must
be byte-identical to a fresh `b2b-conform run scenarios/ --target sim --coverage ...`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance import coverage
from conformance.catalogue import load_catalogue
from conformance.cli import main
from conformance.scenario import load, load_file

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "coverage.md"
MINIMUM_PERCENT = 95.0


def test_current_coverage_not_below_committed_figure() -> None:
    scenarios, errors = load([ROOT / "scenarios"])
    assert errors == []
    covered, total, percent = coverage.figure(coverage.compute(scenarios))
    committed = coverage.parse_summary(COMMITTED.read_text(encoding="utf-8"))
    assert total == committed[1], "the catalogue's testable count changed: regenerate"
    assert covered >= committed[0], f"coverage dropped: {covered} < {committed[0]}"
    assert percent >= MINIMUM_PERCENT


def test_committed_coverage_is_up_to_date(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    fresh = tmp_path / "coverage.md"
    code = main(["run", str(ROOT / "scenarios"), "--target", "sim", "--coverage", str(fresh),
                 "--no-colour"])
    capsys.readouterr()
    assert code == 0
    assert fresh.read_bytes() == COMMITTED.read_bytes(), (
        "docs/coverage.md is out of date: run `" + coverage.REGENERATE + "`")


def test_summary_line_round_trip() -> None:
    text = "x\n**Coverage: 118 / 124 testable requirements (95.2 %)**\n"
    assert coverage.parse_summary(text) == (118, 124, 95.2)
    with pytest.raises(ValueError):
        coverage.parse_summary("no summary here")


SCENARIO = """
kind: scenario
name: demo/cov
covers: [SUB-003]
profiles: [rfc6665]
params: {default_expiration: 10, t1: 0.05}
steps:
  - subscribe:
  - expect: {id: s1, method: SUBSCRIBE, within: [0, 0]}
  - expect_status: {status: active, covers: [SUB-012]}
  - notify: {dialog: s1, state: active, covers: [SUB-073]}
"""


def test_covered_needs_the_catalogue_observable(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    scenarios = load_file(path)
    entries = coverage.compute(scenarios, load_catalogue())
    # S requirement named at scenario level, asserted by `expect`: covered.
    assert entries["SUB-003"].covered and entries["SUB-003"].asserted == {"S", "I"}
    # I requirement named on an expect_status step: covered by that step.
    assert entries["SUB-012"].covered and entries["SUB-012"].asserted == {"I"}
    # S+I requirement named on the last step (a stimulus, nothing asserted after it).
    assert not entries["SUB-073"].covered and entries["SUB-073"].asserted == frozenset()
    # Named nowhere.
    assert not entries["SUB-001"].covered and entries["SUB-001"].scenarios == ()


def test_only_i_assertions_do_not_cover_an_s_requirement(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.replace("  - expect: {id: s1, method: SUBSCRIBE, within: [0, 0]}\n",
                                     "  - wait: 0\n").replace("dialog: s1, ", ""),
                    encoding="utf-8")
    entries = coverage.compute(load_file(path))
    assert entries["SUB-003"].asserted == {"I"} and not entries["SUB-003"].covered
