"""Which RFC requirements SER's behaviour violates: the rfc6665 expectations of the scenario
library played against the reference agent configured with profile `ser`.

    python -m conformance.verdicts [--write docs/verdicts/ser-presence_b2b.md] [PATHS]

Three runs on `sim` (virtual time, so the output is deterministic):

SER is judged as another build (`SimTarget(reference=False)`): where the rfc6665 steps pin a
choice of the reference (an exact refresh instant, a back-off) SER only `differs`; a failure
counts against what the failing step `tests`.

* **wire**: rfc6665 steps, agent in `ser`, status steps lenient (they run and let time
  pass, but their failures do not count). Decides the requirements whose observable is S:
  SER's northbound interface is QSA, whose reporting (B1, B20) is not what the rfc6665
  status steps check.
* **full**: the same with status steps. Decides the I part of I and S+I requirements.
* **baseline**: rfc6665 steps against the agent in `rfc6665`; a scenario failing there too is
  a reference problem, not evidence against SER.

A failing run is attributed to the requirements the failing step `tests`;
`EXCLUDED_FAMILIES` are not used.
`DEFECTS` maps the defects of presence_b2b.md §7 (B1..B20)
and the deviations of §9 to the requirement IDs each should violate; the document
cross-checks both directions.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from conformance.catalogue import load_catalogue, testable_ids
from conformance.runner import FAIL, PASS, XFAIL, ScenarioResult, run_scenario
from conformance.scenario import Scenario, load
from conformance.targets.sim import SimTarget

PROFILE = "rfc6665"
AGENT_PROFILE = "ser"
DEFAULT_OUTPUT = Path("docs/verdicts/ser-presence_b2b.md")
REPRODUCE = ("b2b-conform run scenarios/ --target sim --profile rfc6665 --agent-profile ser "
             "--json ser-verdicts.json")
REGENERATE = "python -m conformance.verdicts --write docs/verdicts/ser-presence_b2b.md"


@dataclass(frozen=True)
class Defect:
    """A defect of presence_b2b.md §7 (B-n) or a row of §9 (R-n, in table order)."""

    id: str
    title: str
    requirements: tuple[str, ...]  # SUB ids it should violate; empty = not testable
    why_untestable: str = ""


DEFECTS: tuple[Defect, ...] = (
    Defect("B1", "no failure reporting to QSA", (),
           "northbound reporting is not an RFC requirement (SER-011 covers it)"),
    Defect("B2", "terminated NOTIFY / reason / retry-after / NOTIFY expires ignored",
           # Not SUB-039: re-subscribing at once after `timeout` is only a MAY.
           ("SUB-028", "SUB-029", "SUB-031", "SUB-032", "SUB-033", "SUB-034", "SUB-035",
            "SUB-036", "SUB-037", "SUB-038", "SUB-040", "SUB-041", "SUB-042", "SUB-048",
            "SUB-051", "SUB-060")),
    Defect("B3", "refresh at or after expiry for short grants", ("SUB-003", "SUB-059")),
    # SUB-014 is not among them: tearing down on the listed codes is what it asks.
    Defect("B4", "any refresh error tears the subscription down", ("SUB-016",)),
    Defect("B5", "423 Min-Expires and Retry-After ignored, no back-off, no retry cap",
           ("SUB-008", "SUB-057", "SUB-131")),
    Defect("B6", "redirects: no loop limit, first Contact only, To replaced, P-Hint",
           ("SUB-128",)),
    Defect("B7", "NOTIFY before 2xx does not create the dialog; forks merged", ("SUB-010",)),
    Defect("B8", "no checks on incoming NOTIFY (Event, CSeq order, Subscription-State, ...)",
           ("SUB-023", "SUB-024", "SUB-025", "SUB-027", "SUB-076", "SUB-147", "SUB-149",
            "SUB-150")),
    Defect("B9", "stale responses fed to the current state", (),
           "fixed in both profiles (memory-safety defect, not reproduced)"),
    Defect("B10", "duplicate Content-Length, Contact without user, no Accept", (),
           "malformed output is not reproduced; no Accept is allowed (SUB-004/074)"),
    Defect("B11", "PIDF only, namespace-lenient, Content-Type ignored, bad body dropped "
           "after 200", ("SUB-090", "SUB-092", "SUB-094", "SUB-095", "SUB-096", "SUB-097",
                         "SUB-101", "SUB-148")),
    Defect("B12", "one SIP subscription per QSA handle", (), "internal design"),
    Defect("B13", "no unsubscribe on shutdown", (), "no requirement covers shutdown"),
    Defect("B14", "failover_timeout hard-coded", (), "configuration, not behaviour"),
    # Judged as another build: treating a missing Expires as 0 only makes SER refresh
    # early (at min_resubscribe_time), which the RFC allows; the reference's own instant is
    # a choice (`differs`), not SUB-072's observable.
    Defect("B15", "invalid Expires -> uninitialised variable (A3: treated as 0)", (),
           "on the wire only an early refresh, which the RFC allows (differs, SUB-072 "
           "not violated)"),
    Defect("B16", "RPC trace/test defects", (), "management interface"),
    Defect("B17", "outbound proxy / presence_route quirks; route set from the 2xx",
           ("SUB-049",)),
    Defect("B18", "handle_presence_subscriptions=0 still registers", (), "configuration"),
    Defect("B19", "nothing reported during delays and RETRY waits", (),
           "northbound reporting"),
    Defect("B20", "data_len uninitialised; `rejected` never produced", (),
           "northbound reporting (SUB-038 is judged on the wire)"),
    Defect("R1", "§9 refresh timing may be after expiry", ("SUB-003", "SUB-059")),
    Defect("R2", "§9 requested duration always default_expiration", (),
           "allowed: the RFC leaves the requested duration free"),
    Defect("R3", "§9 423 + Min-Expires not honoured", ("SUB-057",)),
    Defect("R4", "§9 any refresh error drops the dialog", ("SUB-016",)),
    Defect("R5", "§9 NOTIFY before 2xx does not create the dialog", ("SUB-010",)),
    Defect("R6", "§9 forks merged while unconfirmed, 481 afterwards", (),
           "allowed: RFC 6665 lets a subscriber refuse extra forks with 481"),
    Defect("R7", "§9 unknown-dialog NOTIFY answered 481 (by the script)", (),
           "conformant (SUB-022 passes)"),
    Defect("R8", "§9 deactivated ignored", ("SUB-035", "SUB-036")),
    # SER keeps the terminated dialog; re-subscribing later is allowed (SUB-039 is a MAY).
    Defect("R9", "§9 timeout: handled like deactivated (dialog kept)", ("SUB-031",)),
    Defect("R10", "§9 probation retry-after ignored", ("SUB-037",)),
    Defect("R11", "§9 giveup retry-after ignored", ("SUB-040",)),
    Defect("R12", "§9 rejected / noresource / invariant: keeps re-subscribing",
           ("SUB-038", "SUB-041", "SUB-042")),
    Defect("R13", "§9 no / unknown reason", ("SUB-033", "SUB-034", "SUB-060")),
    Defect("R14", "§9 no Timer N", ("SUB-011", "SUB-017")),
    Defect("R15", "§9 unsubscribe: Expires 0 and final NOTIFY", (),
           "conformant (SUB-019/020/021 pass)"),
    Defect("R16", "§9 CSeq out of order accepted", ("SUB-150", "SUB-076")),
    Defect("R17", "§9 Accept not sent", (), "allowed: PIDF is the default (SUB-074)"),
    Defect("R18", "§9 Event not checked in NOTIFY", ("SUB-023", "SUB-024", "SUB-025")),
)


# Violations no §7/§9 entry names, and why (shown under the cross-check table).
_NO_AUTH = ("presence_b2b sends no credentials (spec §4.1; SER-060): a 401/407 is an error "
            "like any other, retried later without credentials; not in §7, which judges "
            "only what the module does")
UNMAPPED_NOTES: dict[str, str] = {
    "SUB-077": "spec §5 (QSA messages: `data` is NULL for an empty body) makes an empty "
               "NOTIFY a status without a document; §7 does not list it as a defect, so "
               "the defect list misses this RFC 3856 §6.8 deviation",
    **{rid: _NO_AUTH for rid in ("AUTH-001", "AUTH-002", "AUTH-003", "AUTH-004",
                                 "AUTH-005", "SUB-058", "SUB-129")},
    "SUB-114": _NO_AUTH + " (the authenticated retry with CSeq + 1 never comes)",
    "SUB-018": "presence_b2b sends no Suppress-If-Match and treats a 204 as a 200 (SER-062): "
               "RFC 5839 is an optional extension the spec does not mention",
}


@dataclass(frozen=True)
class Evidence:
    scenario: str
    run: str          # "wire" or "full"
    observed: str     # one line: failing step, expected, observed


# Families left out of the verdict runs: `mutation-kill/` pins implementation paths of the
# reference agent (mutation testing); its scenario-level `covers` name the requirement area
# rather than what the failing step observes, so a failure there is no evidence against a
# particular requirement. Such a scenario joins the verdicts once its steps carry `covers`.
EXCLUDED_FAMILIES: tuple[str, ...] = ("mutation-kill/",)


def _failing_ids(scenario: Scenario, result: ScenarioResult) -> tuple[str, ...]:
    """What the failing step tests (its `tests`, `reference` left out)."""
    failing = [s for s in result.steps if s.verdict == FAIL]
    if failing:
        return tuple(t for t in failing[-1].tests if t != "reference")
    return scenario.covers


def _one_line(result: ScenarioResult) -> str:
    lines = [line.strip() for line in (result.failure or "").splitlines()]
    parts = [lines[0] if lines else "failed"]
    parts += [line for line in lines[1:] if line.startswith(("expected:", "observed:"))]
    return "; ".join(parts).replace("|", "\\|")


@dataclass
class VerdictRun:
    violations: dict[str, list[Evidence]]       # SUB id -> evidence
    reference_failures: dict[str, list[str]]    # SUB id -> scenarios failing with rfc6665 too
    other_ids: dict[str, list[str]]             # SER ids failing -> scenarios
    judged: list[str]                           # testable SUB ids with a run in rfc6665
    scenarios: int


def collect(paths: Sequence[str | Path] = ("scenarios",)) -> VerdictRun:
    scenarios, errors = load(paths)
    if errors:
        raise ValueError("\n".join(errors))
    chosen = [s for s in scenarios if PROFILE in s.profiles
              and not s.name.startswith(EXCLUDED_FAMILIES)]
    sim = SimTarget()
    # SER is judged as another build: its choices that are not RFC requirements only differ.
    as_other = SimTarget(reference=False)
    catalogue = load_catalogue()
    testable = testable_ids(catalogue)
    violations: dict[str, list[Evidence]] = {}
    reference: dict[str, list[str]] = {}
    others: dict[str, list[str]] = {}
    judged: set[str] = set()
    for scenario in chosen:
        as_ser = dataclasses.replace(scenario, agent_profile=AGENT_PROFILE)
        baseline = run_scenario(scenario, PROFILE, sim)
        runs = {"wire": run_scenario(as_ser, PROFILE, as_other, lenient_status=True),
                "full": run_scenario(as_ser, PROFILE, as_other)}
        for rid in scenario.all_covers:
            if rid in testable and runs["full"].verdict != "n/a":
                judged.add(rid)
        for kind, result in runs.items():
            if result.verdict not in (FAIL, XFAIL):
                continue
            for rid in _failing_ids(scenario, result):
                if rid.startswith("SER-"):
                    if kind == "full":
                        others.setdefault(rid, []).append(scenario.name)
                    continue
                if rid not in testable:
                    continue
                observable = catalogue[rid].observable
                wanted = "wire" if observable == "S" else (
                    "full" if observable == "I" else kind)
                if kind != wanted:
                    continue
                if baseline.verdict != PASS:
                    reference.setdefault(rid, []).append(scenario.name)
                    continue
                violations.setdefault(rid, []).append(
                    Evidence(scenario.name, kind, _one_line(result)))
    return VerdictRun(violations, reference, others, sorted(judged), len(chosen))


def _ids(rids: Sequence[str]) -> str:
    return ", ".join(rids) if rids else "-"


def markdown(run: VerdictRun) -> str:
    catalogue = load_catalogue()
    violated = sorted(run.violations)
    lines: list[str] = [
        "# SER presence_b2b against the RFC requirements (rfc6665 expectations, `ser` agent)",
        "",
        f"Reproduce this document: `{REGENERATE}` (`tests/conformance/test_verdicts.py` "
        "fails when it is out of date).",
        f"The raw runs (status steps strict): `{REPRODUCE}`; the JSON lists every run and "
        "its failing step, which this document attributes to requirements as follows.", "",
        "How it is decided: the rfc6665 steps of every scenario that lists the rfc6665 "
        "profile are played on `sim` against the reference agent configured with "
        "`profile=ser` (SER's behaviour, `docs/behaviour.md`). A requirement whose "
        "observable is S is judged with lenient status steps (they run, their failures do "
        "not count: SER's northbound QSA reporting is not an RFC matter); I and S+I "
        "requirements also by the status steps. SER is judged as another build: where a "
        "step pins a choice of the reference (an exact refresh instant, a back-off), SER "
        "only differs; a failure counts against the requirements the failing step "
        "`tests`. Not used: "
        + ", ".join(f"`{f}`" for f in EXCLUDED_FAMILIES)
        + " (mutation tests of the reference: their scenario-level `covers` name an area, "
        "not what the failing step observes). Scenarios that fail with the `rfc6665` agent "
        "as well are reference problems and listed apart.", "",
        f"**{len(violated)} of {len(run.judged)} judged testable requirements are violated "
        f"by SER** ({run.scenarios} scenarios with rfc6665 expectations).", "",
        "## Violations", "",
        "| Requirement | Keyword | Verdict | Scenario (run) | Observed (first failing step) "
        "| Defect |",
        "|---|---|---|---|---|---|",
    ]
    by_requirement: dict[str, list[str]] = {}
    for defect in DEFECTS:
        for rid in defect.requirements:
            by_requirement.setdefault(rid, []).append(defect.id)
    for rid in violated:
        evidence = sorted(run.violations[rid], key=lambda e: (e.scenario, e.run))
        first = evidence[0]
        shown = "<br>".join(f"`{e.scenario}` ({e.run})" for e in evidence)
        lines.append(f"| {rid} | {catalogue[rid].keyword} | violated | {shown} | "
                     f"{first.observed} | {_ids(by_requirement.get(rid, []))} |")
    passed = [rid for rid in run.judged if rid not in run.violations]
    lines += ["", f"Judged and not violated ({len(passed)}): {_ids(passed)}.", ""]
    if run.reference_failures:
        lines += ["Failing with the rfc6665 agent too (reference problems, not judged): "
                  + "; ".join(f"{rid} ({', '.join(sorted(set(v)))})"
                              for rid, v in sorted(run.reference_failures.items())) + ".", ""]
    if run.other_ids:
        lines += ["SER-nnn rows whose rfc6665 column SER does not follow (profile choices, "
                  "informative): " + ", ".join(sorted(run.other_ids)) + ".", ""]
    lines += [
        "## Cross-check with presence_b2b.md §7 (B1..B20) and §9 (R1..R18, table order)", "",
        "| Defect | What the spec says | Requirements it should violate | Violated here "
        "| Agreement |",
        "|---|---|---|---|---|",
    ]
    for defect in DEFECTS:
        seen = [rid for rid in defect.requirements if rid in run.violations]
        if not defect.requirements:
            agreement = f"not testable: {defect.why_untestable}"
        elif seen:
            missing = [rid for rid in defect.requirements if rid not in run.violations]
            unjudged = [rid for rid in missing if rid in run.reference_failures]
            passed = [rid for rid in missing if rid not in run.reference_failures]
            notes = ([f"not shown: {_ids(passed)}"] if passed else []) + (
                [f"not judged, reference problem: {_ids(unjudged)}"] if unjudged else [])
            agreement = "agree" + (f" ({'; '.join(notes)})" if notes else "")
        else:
            agreement = "**disagree**: no violation observed"
        lines.append(f"| {defect.id} | {defect.title} | {_ids(list(defect.requirements))} | "
                     f"{_ids(seen)} | {agreement} |")
    unmapped = [rid for rid in violated if rid not in by_requirement]
    lines += ["", "Violated requirements mapped to no defect: "
              + (_ids(unmapped) if unmapped else "none") + "."]
    lines += [f"* {rid}: {UNMAPPED_NOTES[rid]}." for rid in unmapped if rid in UNMAPPED_NOTES]
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.verdicts",
                                     description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("paths", nargs="*", default=["scenarios"])
    parser.add_argument("--write", type=Path, help="write the document here (else stdout)")
    args = parser.parse_args(argv)
    text = markdown(collect(args.paths))
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
