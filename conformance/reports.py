"""Verdict aggregation and reports: console table, JUnit XML, JSON, coverage Markdown."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from conformance import judgement
from conformance.runner import DIFFERS, ERROR, FAIL, NA, PASS, XFAIL, ScenarioResult

# Worst first: a requirement's run-level verdict (coverage) is the worst verdict of the runs
# covering it.
SEVERITY = (FAIL, ERROR, XFAIL, DIFFERS, PASS, NA)
COLOURS = {PASS: "32", FAIL: "31", ERROR: "35", NA: "33", XFAIL: "36", DIFFERS: "34"}
RUN_VERDICTS = (PASS, DIFFERS, FAIL, ERROR, NA, XFAIL)


def worst(verdicts: Iterable[str]) -> str:
    found = set(verdicts)
    for verdict in SEVERITY:
        if verdict in found:
            return verdict
    return NA


def failed(results: Sequence[ScenarioResult]) -> bool:
    return any(r.verdict in (FAIL, ERROR) for r in results)


def counts(results: Sequence[ScenarioResult]) -> dict[str, int]:
    out = dict.fromkeys(RUN_VERDICTS, 0)
    for result in results:
        out[result.verdict] += 1
    return out


def requirements(results: Sequence[ScenarioResult]) -> dict[str, dict[str, Any]]:
    """Requirement ID -> {verdict, scenarios: {name: {profile: verdict}}}: the runs naming
    it in `covers` (the coverage view; the verdict per requirement is `judgement.judge`)."""
    table: dict[str, dict[str, Any]] = {}
    for result in results:
        for req in result.covers:
            entry = table.setdefault(req, {"verdict": NA, "scenarios": {}})
            entry["scenarios"].setdefault(result.scenario, {})[result.profile] = result.verdict
    for entry in table.values():
        entry["verdict"] = worst(v for per in entry["scenarios"].values() for v in per.values())
    return dict(sorted(table.items(), key=lambda kv: _req_key(kv[0])))


def _req_key(req: str) -> tuple[str, int]:
    prefix, _, number = req.partition("-")
    return prefix, int(number) if number.isdigit() else 0


def _paint(text: str, verdict: str, colour: bool) -> str:
    return f"\x1b[{COLOURS[verdict]}m{text}\x1b[0m" if colour else text


def console(results: Sequence[ScenarioResult], out: TextIO, *, colour: bool = False,
            verbose: bool = False) -> None:
    """One row per (scenario, profile), then the failure details, then totals."""
    if not results:
        out.write("no scenario selected\n")
        return
    width = max(len(r.scenario) for r in results)
    out.write(f"{'scenario':<{width}}  {'profile':<8} {'verdict':<7} {'wall':>8}\n")
    out.write(f"{'-' * width}  {'-' * 8} {'-' * 7} {'-' * 8}\n")
    for r in results:
        verdict = _paint(f"{r.verdict:<7}", r.verdict, colour)
        note = ""
        if r.verdict == NA and r.failure:
            note = f"  ({r.failure})"
        elif r.verdict == XFAIL:
            note = f"  (xfail: {(r.xfail_reason or '').strip().splitlines()[0]})"
        out.write(f"{r.scenario:<{width}}  {r.profile:<8} {verdict} "
                  f"{r.wall * 1000:7.1f}ms{note}\n")
    for r in results:
        if r.verdict in (FAIL, ERROR) or (verbose and r.verdict == XFAIL):
            out.write(f"\n{_paint(r.verdict.upper(), r.verdict, colour)} {r.scenario} "
                      f"[{r.profile}] on {r.target} ({r.path})\n{r.failure}\n")
            if r.transcript:
                out.write("  transcript (last 15 events):\n")
                for line in r.transcript[-15:]:
                    out.write(f"    {line}\n")
    if verbose:
        for r in results:
            if r.verdict == DIFFERS:
                out.write(f"\n{_paint('DIFFERS', DIFFERS, colour)} {r.scenario} [{r.profile}] "
                          "(reference choices not met; no requirement violated)\n")
                for step in r.steps:
                    for text in step.differences:
                        out.write(f"  steps[{step.index}] {text.splitlines()[0]}\n")
    total = counts(results)
    summary = ", ".join(f"{n} {v}" for v, n in total.items() if n)
    out.write(f"\n{len(results)} runs: {summary}\n")
    table = judgement.judge(results)
    by_verdict = judgement.counts(table)
    shown = ", ".join(f"{n} {v}" for v, n in by_verdict.items() if n)
    if shown:
        out.write(f"requirements: {shown}\n")


def junit(results: Sequence[ScenarioResult], path: Path, target: str) -> None:
    total = counts(results)
    suite = ET.Element("testsuite", {
        "name": f"b2b-conform.{target}", "tests": str(len(results)),
        "failures": str(total[FAIL]), "errors": str(total[ERROR]),
        "skipped": str(total[NA] + total[XFAIL]),
        "time": f"{sum(r.wall for r in results):.3f}"})
    for r in results:
        family = r.scenario.rsplit("/", 1)[0] if "/" in r.scenario else "scenarios"
        case = ET.SubElement(suite, "testcase", {
            "classname": f"{target}.{r.profile}.{family}", "name": f"{r.scenario}[{r.profile}]",
            "time": f"{r.wall:.3f}"})
        ET.SubElement(case, "properties")
        props = case.find("properties")
        assert props is not None
        ET.SubElement(props, "property", {"name": "covers", "value": " ".join(r.covers)})
        text = _clean((r.failure or "") + "\n" + "\n".join(r.transcript[-30:]))
        first = (r.failure or "").splitlines()[0] if r.failure else ""
        if r.verdict == FAIL:
            ET.SubElement(case, "failure", {"message": _clean(first)}).text = text
        elif r.verdict == ERROR:
            ET.SubElement(case, "error", {"message": _clean(first)}).text = text
        elif r.verdict == NA:
            ET.SubElement(case, "skipped", {"message": _clean(f"not applicable: {first}")})
        elif r.verdict == XFAIL:
            ET.SubElement(case, "skipped", {"message": _clean(f"xfail: {r.xfail_reason}")})
    ET.indent(suite)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def _clean(text: str) -> str:
    """XML 1.0 cannot carry most control characters."""
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", "?", text)


def as_json(results: Sequence[ScenarioResult], target: str,
            declarations: dict[str, Any] | None = None,
            wall: float | None = None, command: str = "") -> dict[str, Any]:
    """The JSON report: every run with its steps, transcript and SIP ladder (passes too),
    the per-requirement verdicts (`requirements`) and the run-level coverage table."""
    table = judgement.judge(results)
    return {
        "target": target,
        "command": command,
        "declarations": declarations or {},
        "wall": round(wall if wall is not None else sum(r.wall for r in results), 3),
        "summary": counts(results),
        "requirement_summary": judgement.counts(table),
        "results": [{
            "scenario": r.scenario, "path": r.path, "profile": r.profile, "target": r.target,
            "verdict": r.verdict, "covers": list(r.covers), "wall": round(r.wall, 6),
            "failure": r.failure, "xfail_reason": r.xfail_reason,
            "steps": [{"index": s.index, "action": s.action, "id": s.id, "verdict": s.verdict,
                       "at": s.at, "detail": s.detail, "tests": list(s.tests),
                       "differences": s.differences} for s in r.steps],
            "transcript": r.transcript,
            "ladder": r.ladder,
        } for r in results],
        "requirements": table,
        "runs_by_requirement": requirements(results),
    }


def write_json(results: Sequence[ScenarioResult], path: Path, target: str,
               declarations: dict[str, Any] | None = None,
               wall: float | None = None, command: str = "") -> None:
    report = as_json(results, target, declarations, wall, command)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def coverage_markdown(results: Sequence[ScenarioResult], target: str) -> str:
    lines = [f"# Requirement coverage ({target} target)", "",
             "| Requirement | Verdict | Scenarios (profile: verdict) |", "|---|---|---|"]
    for req, entry in requirements(results).items():
        cells = []
        for name, per in sorted(entry["scenarios"].items()):
            shown = ", ".join(f"{p}: {v}" for p, v in sorted(per.items()))
            cells.append(f"`{name}` ({shown})")
        lines.append(f"| {req} | {entry['verdict']} | {'<br>'.join(cells)} |")
    lines.append("")
    return "\n".join(lines)
