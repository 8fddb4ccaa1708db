"""Packaged softphones as subscribers under test: `linphone-cli` (linphonec) and
`twinkle-console`, through the shipped target files (one process per run on a free port,
driven through its console by console_subscriber.py, registered at the run's peer).

CI runs one scenario per family on each (the full library is the documented command; its
time is on docs/verdicts/linphone-cli.md and docs/verdicts/twinkle-console.md). Each run
must get a verdict (no harness error, n/a only for a capability the target lacks), the
softphone must really take part (it registered and sent a SUBSCRIBE in every run that is
not n/a), and every violated requirement must come with its evidence. The softphones are
not required to pass anything.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from conformance import judgement
from conformance.runner import ERROR, NA
from conformance.scenario import Scenario, load
from conformance.target_files import load_target_file, run_target_file

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios" / "conformance"
INSTALL_HINT = ("install the softphones: apt-get install -y --no-install-recommends "
                "linphone-cli twinkle-console (CI does this in .ci/run)")
# Per target, with 8 runs at a time; the longest sampled runs wait ~40 s (open windows).
WALL_LIMIT = 150.0
TARGETS = {"linphone-cli": "linphonec", "twinkle-console": "twinkle-console"}


def sample(scenarios: list[Scenario]) -> list[Scenario]:
    """One scenario per family: the first with rfc6665 steps and no optional feature."""
    chosen: dict[str, str] = {}
    for scenario in scenarios:
        if "rfc6665" in scenario.profiles and not scenario.requires:
            chosen.setdefault(scenario.name.split("/", 1)[0], scenario.name)
    return [s for s in scenarios if s.name in set(chosen.values())]


def _sent(result_ladder: list[dict[str, str]], method: str) -> bool:
    return any(rung["from"] == "subscriber" and rung["message"].startswith(method + " ")
               for rung in result_ladder)


@pytest.mark.interop
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_softphone_gets_a_verdict_for_every_run(target: str) -> None:
    if shutil.which(TARGETS[target]) is None:
        pytest.skip(f"{TARGETS[target]} not found; {INSTALL_HINT}")
    spec = load_target_file(target)
    assert spec.registrar and spec.launch and spec.declarations["t1"] == 0.5
    scenarios, errors = load([LIBRARY])
    assert not errors
    chosen = sample(scenarios)
    assert len(chosen) >= 10
    started = time.monotonic()
    name, results, declarations = run_target_file(target, chosen)
    wall = time.monotonic() - started
    assert name == "sip-only" and declarations["name"] == target
    assert wall < WALL_LIMIT, f"{target}: the sample took {wall:.0f} s"
    assert {(r.scenario, r.profile) for r in results} == {(s.name, "rfc6665") for s in chosen}
    errors_seen = [f"{r.scenario}: {r.failure}" for r in results if r.verdict == ERROR]
    assert not errors_seen, "harness/target errors:\n" + "\n".join(errors_seen)
    unexplained = [r.scenario for r in results
                   if r.verdict == NA and "lacks" not in (r.failure or "")]
    assert not unexplained, unexplained
    judged = [r for r in results if r.verdict != NA]
    assert len(judged) >= 8
    silent = [r.scenario for r in judged
              if not (_sent(r.ladder, "REGISTER") and _sent(r.ladder, "SUBSCRIBE"))]
    assert not silent, f"{target} did not register and subscribe in: {silent}"
    table = judgement.judge(results)
    for rid in judgement.ids_with(table, (judgement.VIOLATED, judgement.WARNING)):
        evidence = table[rid]["evidence"][0]
        assert evidence["scenario"] and evidence["detail"], rid
    assert judgement.ids_with(table, (judgement.CONFORMANT,)), "nothing conformant at all"
