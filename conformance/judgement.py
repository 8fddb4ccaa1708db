"""Verdicts per requirement, decided only by the steps that test it.

A step names what it tests (`tests: [SUB-nnn]` or `[reference]`). Over every run of a
report, a requirement is

* `violated` when one of its steps failed (`warning` when its level is SHOULD or MAY: the
  RFC asks, it does not bind);
* `conformant` when at least one of its steps was evaluated and none failed;
* `not-tested` when every step testing it was skipped (the run stopped earlier, or the step
  needed a request a reference difference left out);
* `not-applicable` when every step testing it was n/a (the target lacks a capability or
  the scenario does not apply).

The pseudo-requirement `reference` (a choice of the reference profile) is `differs` when
one of its expectations was not met on another build, else `conformant`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conformance.catalogue import Requirement, keyword_tokens, load_catalogue
from conformance.runner import DIFFERS, FAIL, NA, NOT_TESTED, PASS, ScenarioResult

CONFORMANT, VIOLATED, WARNING = "conformant", "violated", "warning"
NOT_APPLICABLE = "not-applicable"
REQUIREMENT_VERDICTS = (VIOLATED, WARNING, DIFFERS, CONFORMANT, NOT_TESTED, NOT_APPLICABLE)
REFERENCE = "reference"
# Evidence entries kept per requirement and verdict kind (the report stays readable).
EVIDENCE_LIMIT = 5
_LEVELS = ("MUST", "SHOULD", "MAY")


def level(requirement: Requirement | None) -> str:
    """MUST / SHOULD / MAY / normative / derived, from the catalogue's Keyword cell. A
    mixed cell takes its binding part: "(normative) / SHOULD" is normative."""
    if requirement is None:
        return "derived"
    keyword = requirement.keyword.strip()
    lowered = keyword.lower()
    if "(derived)" in lowered:
        return "derived"
    if lowered.startswith("(normative"):
        return "normative"
    tokens = keyword_tokens(keyword)
    for word in _LEVELS:  # "SHOULD / MUST": the binding part decides
        if word in tokens or f"{word} NOT" in tokens:
            return word
    return "normative"


@dataclass
class _Tally:
    failed: list[dict[str, Any]] = field(default_factory=list)
    passed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    not_applicable: list[dict[str, Any]] = field(default_factory=list)


def _evidence(result: ScenarioResult, index: int, action: str, detail: str,
              at: float | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"scenario": result.scenario, "profile": result.profile,
                             "step": index, "action": action}
    if at is not None:
        entry["at"] = round(at, 3)
    if detail:
        entry["detail"] = detail
    return entry


def judge(results: Sequence[ScenarioResult],
          catalogue: Mapping[str, Requirement] | None = None) -> dict[str, dict[str, Any]]:
    """Requirement ID (and `reference`) -> {level, verdict, evidence, runs}."""
    rows = load_catalogue() if catalogue is None else catalogue
    tallies: dict[str, _Tally] = {}
    for result in results:
        for step in result.steps:
            for rid in step.tests:
                tally = tallies.setdefault(rid, _Tally())
                if rid == REFERENCE:
                    if step.verdict == DIFFERS or (step.verdict == FAIL):
                        tally.failed.append(_evidence(result, step.index, step.action,
                                                      "\n".join(step.differences)
                                                      or step.detail, step.at))
                    elif step.verdict == PASS:
                        tally.passed.append(_evidence(result, step.index, step.action, "",
                                                      step.at))
                    continue
                if step.verdict == FAIL:
                    tally.failed.append(_evidence(result, step.index, step.action,
                                                  step.detail, step.at))
                elif step.verdict in (PASS, DIFFERS):
                    tally.passed.append(_evidence(result, step.index, step.action, "",
                                                  step.at))
                elif step.verdict == NOT_TESTED:
                    tally.skipped.append(_evidence(result, step.index, step.action,
                                                   step.detail, step.at))
                elif step.verdict == NA:
                    why = step.detail or result.failure or "not applicable"
                    tally.not_applicable.append(_evidence(result, step.index, step.action,
                                                          why, step.at))
            # A step that only differs from the reference also counts for `reference`.
            if step.differences and REFERENCE not in step.tests:
                tallies.setdefault(REFERENCE, _Tally()).failed.append(_evidence(
                    result, step.index, step.action, "\n".join(step.differences), step.at))
    out: dict[str, dict[str, Any]] = {}
    for rid, tally in tallies.items():
        req_level = "reference" if rid == REFERENCE else level(rows.get(rid))
        if rid == REFERENCE:
            verdict = DIFFERS if tally.failed else CONFORMANT
        elif tally.failed:
            verdict = WARNING if req_level in ("SHOULD", "MAY") else VIOLATED
        elif tally.passed:
            verdict = CONFORMANT
        elif tally.skipped:
            verdict = NOT_TESTED
        else:
            verdict = NOT_APPLICABLE
        deciding = {VIOLATED: tally.failed, WARNING: tally.failed, DIFFERS: tally.failed,
                    CONFORMANT: tally.passed, NOT_TESTED: tally.skipped,
                    NOT_APPLICABLE: tally.not_applicable}[verdict]
        entry: dict[str, Any] = {
            "level": req_level, "verdict": verdict,
            "evidence": deciding[:EVIDENCE_LIMIT],
            "counts": {"failed": len(tally.failed), "evaluated": len(tally.passed),
                       "not_tested": len(tally.skipped),
                       "not_applicable": len(tally.not_applicable)},
        }
        requirement = rows.get(rid)
        if requirement is not None:
            entry["source"] = requirement.source
            entry["text"] = requirement.text
        out[rid] = entry
    return dict(sorted(out.items(), key=lambda kv: _order(kv[0])))


def _order(rid: str) -> tuple[int, str, int]:
    if rid == REFERENCE:
        return (1, "", 0)
    prefix, _, number = rid.partition("-")
    return (0, prefix, int(number) if number.isdigit() else 0)


def counts(table: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """How many requirements got each verdict (`reference` left out)."""
    tally = dict.fromkeys(REQUIREMENT_VERDICTS, 0)
    for rid, entry in table.items():
        if rid != REFERENCE:
            tally[entry["verdict"]] += 1
    return tally


def by_level(table: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """level -> verdict -> count (`reference` left out)."""
    out: dict[str, dict[str, int]] = {}
    for rid, entry in table.items():
        if rid == REFERENCE:
            continue
        row = out.setdefault(entry["level"], dict.fromkeys(REQUIREMENT_VERDICTS, 0))
        row[entry["verdict"]] += 1
    return out


def ids_with(table: Mapping[str, Mapping[str, Any]], verdicts: Iterable[str]) -> list[str]:
    wanted = set(verdicts)
    return [rid for rid, entry in table.items() if entry["verdict"] in wanted]
