"""Requirement coverage: which testable SUB-nnn the scenario library covers, and how.

Definition (docs/coverage.md states it too): a testable requirement (catalogue Observable
S, I or S+I, not withdrawn) is **covered** when at least one scenario names it in `covers`
and, across the scenarios naming it, the observable the catalogue gives is asserted:

* S   - a step that checks the subscriber's SIP output (`expect`, `expect_response`,
        `expect_no_response`, `expect_nothing`, or `accept`, which expects the 200 to its
        NOTIFY);
* I   - a step that checks the northbound status (`expect_status`, `expect_no_status`);
* S+I - both.

A scenario-level `covers` counts every assertion of the scenario; a step-level `covers`
counts the assertions from that step on (the step is the stimulus, what follows checks it).
Coverage is static (scenario files + catalogue); the verdict of a run is shown beside it
and does not change it: a scenario that is n/a on every built-in target (it `requires` an
optional feature the reference lacks) still covers its IDs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from conformance.catalogue import Requirement, load_catalogue, testable_ids
from conformance.reports import requirements
from conformance.runner import NA, ScenarioResult
from conformance.scenario import Scenario

SIP_ASSERTIONS = frozenset({"expect", "expect_response", "expect_no_response", "expect_nothing",
                            "accept"})
STATUS_ASSERTIONS = frozenset({"expect_status", "expect_no_status"})
REGENERATE = "b2b-conform run scenarios/ --target sim --coverage docs/coverage.md"
SUMMARY = re.compile(r"\*\*Coverage: (\d+) / (\d+) testable requirements \(([\d.]+) %\)\*\*")


@dataclass(frozen=True)
class Entry:
    """One testable requirement: the scenarios naming it and the observables they assert."""

    id: str
    observable: str
    scenarios: tuple[str, ...]
    asserted: frozenset[str]  # subset of {"S", "I"}

    @property
    def covered(self) -> bool:
        return bool(self.scenarios) and set(self.observable.split("+")) <= self.asserted


def _kinds(steps: Iterable[object]) -> set[str]:
    kinds: set[str] = set()
    for step in steps:
        action = getattr(step, "action", "")
        if action in SIP_ASSERTIONS:
            kinds.add("S")
        elif action in STATUS_ASSERTIONS:
            kinds.add("I")
    return kinds


def asserted_for(scenario: Scenario, rid: str) -> set[str]:
    """Observables (S, I) the scenario asserts for requirement `rid`."""
    if rid in scenario.covers:
        return _kinds(scenario.steps)
    kinds: set[str] = set()
    for position, step in enumerate(scenario.steps):
        if rid in step.covers:
            kinds |= _kinds(scenario.steps[position:])
    return kinds


def compute(scenarios: Sequence[Scenario],
            catalogue: Mapping[str, Requirement] | None = None) -> dict[str, Entry]:
    """Testable id -> Entry, sorted by id."""
    rows = load_catalogue() if catalogue is None else catalogue
    out: dict[str, Entry] = {}
    for rid in sorted(testable_ids(rows)):
        naming = sorted(s.name for s in scenarios if rid in s.all_covers)
        asserted: set[str] = set()
        for scenario in scenarios:
            if rid in scenario.all_covers:
                asserted |= asserted_for(scenario, rid)
        out[rid] = Entry(rid, rows[rid].observable, tuple(naming), frozenset(asserted))
    return out


def figure(entries: Mapping[str, Entry]) -> tuple[int, int, float]:
    """(covered, testable, percent rounded to one decimal)."""
    covered = sum(e.covered for e in entries.values())
    total = len(entries)
    return covered, total, round(100.0 * covered / total, 1) if total else 0.0


def parse_summary(markdown: str) -> tuple[int, int, float]:
    """The summary line of a written coverage file; ValueError when there is none."""
    found = SUMMARY.search(markdown)
    if found is None:
        raise ValueError("no coverage summary line")
    return int(found.group(1)), int(found.group(2)), float(found.group(3))


def _cell(per_scenario: Mapping[str, Mapping[str, str]], names: Iterable[str]) -> str:
    cells = []
    for name in names:
        per = per_scenario.get(name, {})
        shown = ", ".join(f"{p}: {v}" for p, v in sorted(per.items())) or "not run"
        cells.append(f"`{name}` ({shown})")
    return "<br>".join(cells) or "-"


def markdown(scenarios: Sequence[Scenario], results: Sequence[ScenarioResult], target: str,
             catalogue: Mapping[str, Requirement] | None = None) -> str:
    """The coverage document: deterministic (sorted, no timings) for a given run."""
    entries = compute(scenarios, catalogue)
    covered, total, percent = figure(entries)
    verdicts = requirements(results)
    lines = [
        f"# Requirement coverage ({target} target)", "",
        f"Generated; regenerate with `{REGENERATE}` "
        "(`tests/conformance/test_coverage.py` fails when this file is out of date or the "
        "coverage drops below the figure below).", "",
        "**Covered** = at least one scenario names the requirement in `covers` (scenario or "
        "step level) and the scenarios naming it assert the observable the catalogue gives "
        "(S: the subscriber's SIP messages or responses - `expect`, `expect_response`, "
        "`expect_no_response`, `expect_nothing`, `accept`; I: `expect_status` / "
        "`expect_no_status`; S+I: both). *Testable* = catalogue Observable S, I or S+I, not "
        "withdrawn. The verdict (worst run of the scenarios naming it, see "
        "docs/conformance.md) is shown separately: `n/a` means every scenario naming it "
        "requires a feature the target does not offer; it still counts as covered.", "",
        f"**Coverage: {covered} / {total} testable requirements ({percent:.1f} %)**", "",
    ]
    tally: dict[str, int] = {}
    for rid, entry in entries.items():
        if entry.covered:
            verdict = verdicts.get(rid, {}).get("verdict", NA)
            tally[verdict] = tally.get(verdict, 0) + 1
    lines.append("Verdicts of the covered requirements: "
                 + ", ".join(f"{n} {v}" for v, n in sorted(tally.items())) + ".")
    lines += ["", "## Catalogue requirements (SUB, AUTH, REG, RLS, TCP)", "",
              "| Requirement | Verdict | Observable | Asserted | Covered | Scenarios "
              "(profile: verdict) |", "|---|---|---|---|---|---|"]
    for rid, entry in entries.items():
        per = verdicts.get(rid, {"verdict": "-", "scenarios": {}})
        asserted = "+".join(k for k in ("S", "I") if k in entry.asserted) or "-"
        lines.append(f"| {rid} | {per['verdict'] if entry.scenarios else '-'} | "
                     f"{entry.observable} | {asserted} | {'yes' if entry.covered else 'no'} | "
                     f"{_cell(per['scenarios'], entry.scenarios)} |")
    missing = [rid for rid, entry in entries.items() if not entry.covered]
    lines += ["", "Not covered: " + (", ".join(missing) if missing else "none") + ".", ""]
    others = sorted((rid for rid in verdicts if rid not in entries),
                    key=lambda r: (r.split("-")[0], r))
    if others:
        lines += ["## Other IDs (SER-nnn, untestable SUB rows)", "",
                  "| Requirement | Verdict | Scenarios (profile: verdict) |", "|---|---|---|"]
        for rid in others:
            per = verdicts[rid]
            lines.append(f"| {rid} | {per['verdict']} | "
                         f"{_cell(per['scenarios'], sorted(per['scenarios']))} |")
        lines.append("")
    return "\n".join(lines)
