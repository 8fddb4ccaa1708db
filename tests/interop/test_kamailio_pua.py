"""Kamailio pua (the shipped `kamailio-pua` target file) against the conformance library.

CI runs one scenario per family plus the scenarios behind the findings of
docs/verdicts/kamailio-pua.md (the full library is the documented command; its time is on
that page). The interop test asserts that the run completes in bounded time, gives a verdict
to every applicable run (no harness error), that pua really took part (its SUBSCRIBE is in
the ladder of every run that is not n/a), that every violated requirement comes with
evidence, and that pua's known RFC findings come out as violated requirements, each from
the step of the scenario that shows it (`REQUIRED_VIOLATIONS`). The other tests check the
target-file loader itself (no Kamailio needed).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from conformance import judgement
from conformance.runner import ERROR, NA
from conformance.scenario import Scenario, load
from conformance.target_files import (
    TargetFileError,
    TemplatedSipOnlyTarget,
    fill,
    load_target_file,
    run_params,
    run_target_file,
    running,
)
from tests.interop.conftest import (
    INSTALL_HINT,
    KAMAILIO_MODULES,
    find_lab_dir,
    udp_port_taken,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
PROFILE = REPO_ROOT / "conformance" / "targets" / "profiles" / "kamailio-pua.yaml"
LIBRARY = REPO_ROOT / "scenarios" / "conformance"
PUA_PORT = 5080
# The sample takes about two minutes against pua with 8 parallel runs (the longest runs wait
# for refreshes of 20 s grants); the bound leaves room for a slow CI machine.
WALL_LIMIT = 300.0
FINDINGS = ("uac-transaction/refresh-unanswered", "failed/500-refresh", "failed/481-refresh",
            "terminated/timer-n", "failed/403-initial", "notify-checks/require")
# pua's RFC findings (docs/verdicts/kamailio-pua.md) and the scenario whose failing step is
# their evidence. They show only because the peer grants 10 s where pua asked 3610 s
# (`grant: scenario`): pua then refreshes within the run.
REQUIRED_VIOLATIONS = {
    "SUB-114": "uac-transaction/refresh-unanswered",  # unanswered refresh re-sent, same CSeq
    "SUB-016": "failed/500-refresh",       # 500 to a refresh taken as the end: new Call-ID
    "SUB-015": "failed/481-refresh",       # new subscription sent to the old remote target
    "SUB-011": "terminated/timer-n",       # no Timer N: a late NOTIFY answered 200
    "SUB-147": "notify-checks/require",    # unknown Require answered 200, not 420
}


@pytest.fixture
def lab(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    lab_dir = find_lab_dir()
    if lab_dir is None or not (lab_dir / "kam-pua-start.sh").is_file():
        pytest.skip("lab scripts not found (expected ../shared/lab beside the repository "
                    "or $B2B_LAB_DIR)")
    if not Path("/usr/sbin/kamailio").exists() and shutil.which("kamailio") is None:
        pytest.skip(f"kamailio not found; {INSTALL_HINT}")
    if shutil.which("kamcmd") is None or not (KAMAILIO_MODULES / "pua_rpc.so").exists():
        pytest.skip(f"kamcmd or the pua_rpc module not found; {INSTALL_HINT}")
    if udp_port_taken(PUA_PORT):
        pytest.fail(f"udp 127.0.0.1:{PUA_PORT} is busy: stop the other lab pua first")
    monkeypatch.setenv("B2B_LAB_DIR", str(lab_dir))
    monkeypatch.setenv("LAB_RUN_DIR", str(tmp_path))  # the RPC socket and logs go here
    return lab_dir


def test_profile_describes_a_sip_only_pua_target() -> None:
    spec = load_target_file("kamailio-pua")
    assert spec.path == PROFILE
    assert spec.agent_address == "127.0.0.1:5080"
    assert spec.profiles == ("rfc6665",)
    # pua keeps a subscription for the trigger's expiry: an hour, refreshed under the
    # scenario's shorter grants.
    assert "pua.subscribe {record} {subscriber} presence 3600" in spec.trigger
    assert spec.declarations["grant"] == "scenario"
    assert spec.start and spec.stop and "{lab}" in spec.start


def sample(scenarios: list[Scenario]) -> list[Scenario]:
    """One scenario per family (the first with rfc6665 steps) and the findings'."""
    first: dict[str, str] = {}
    for scenario in scenarios:
        if "rfc6665" in scenario.profiles:
            first.setdefault(scenario.name.split("/", 1)[0], scenario.name)
    names = set(first.values()) | set(FINDINGS)
    return [s for s in scenarios if s.name in names]


@pytest.mark.interop
def test_library_runs_against_kamailio_pua(lab: Path) -> None:
    scenarios, errors = load([LIBRARY])
    assert not errors
    scenarios = sample(scenarios)
    applicable = {(s.name, "rfc6665") for s in scenarios if "rfc6665" in s.profiles}
    started = time.monotonic()
    target_name, results, declarations = run_target_file(PROFILE, scenarios)
    wall = time.monotonic() - started
    assert declarations["declared t1"] == 0.5

    assert target_name == "sip-only"
    assert wall < WALL_LIMIT, f"the pua run took {wall:.0f} s"
    assert {(r.scenario, r.profile) for r in results} == applicable
    errors_seen = [f"{r.scenario}: {r.failure}" for r in results if r.verdict == ERROR]
    assert not errors_seen, "harness/target errors:\n" + "\n".join(errors_seen)
    ran = [r for r in results if r.verdict != NA]
    assert ran, "every run was n/a"
    silent = [r.scenario for r in ran
              if not any(rung["from"] == "subscriber" and rung["message"].startswith(
                  "SUBSCRIBE") for rung in r.ladder)]
    assert not silent, f"pua sent no SUBSCRIBE in: {silent}"
    table = judgement.judge(results)
    broken = judgement.ids_with(table, (judgement.VIOLATED, judgement.WARNING))
    for rid in broken:
        evidence = table[rid]["evidence"][0]
        assert evidence["scenario"] and evidence["detail"], rid
    for rid, scenario in REQUIRED_VIOLATIONS.items():
        assert table[rid]["verdict"] == judgement.VIOLATED, (rid, table[rid])
        found = [e for e in table[rid]["evidence"] if e["scenario"] == scenario]
        assert found and found[0]["detail"], (rid, table[rid]["evidence"])
    # n/a only where the target lacks a capability (faults need the simulator, ...).
    unexplained = [r.scenario for r in results
                   if r.verdict == NA and "lacks" not in (r.failure or "")]
    assert not unexplained, unexplained


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "target.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("text", "message"), [
    ("kind: scenario\n", "kind: target"),
    ("kind: target\nname: x\nagent_address: 127.0.0.1:1\n", "trigger"),
    ("kind: target\nname: x\ntrigger: t\nagent_address: a:1\nbogus: 1\n", "bogus"),
    ("kind: target\nname: x\ntrigger: t\nagent_address: a:1\ntarget: udp\n", "sip-only"),
    ("kind: target\nname: x\ntrigger: t\nagent_address: a:1\nprofiles: [sip]\n",
     "profiles"),
    ("kind: target\nname: x\ntrigger: t\ndeclarations: {grant: all}\n", "grant"),
])
def test_invalid_target_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(TargetFileError, match=message):
        load_target_file(_write(tmp_path, text))


def test_unknown_shipped_name_lists_the_shipped_ones() -> None:
    with pytest.raises(TargetFileError, match="kamailio-pua"):
        load_target_file("no-such-target")


def test_trigger_gets_the_runs_parameters_and_runner_fields() -> None:
    scenarios, _ = load([LIBRARY / "failed" / "403-initial.yaml"])
    params = run_params(scenarios[0], "rfc6665")
    assert params["expires"] == params["default_expiration"] == 10
    assert params["t1"] == 0.05
    assert fill("x {record} {expires} {t1}", params) == "x {record} 10 0.05"


def test_start_trigger_untrigger_and_stop_run_in_order(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake subscriber made of shell commands: the commands run with the right values."""
    log = tmp_path / "log"
    monkeypatch.setenv("LAB_RUN_DIR", str(tmp_path))
    spec = load_target_file(_write(tmp_path, f"""
kind: target
name: fake
target: sip-only
agent_address: 127.0.0.1:{_free_port()}
start: "sh -c 'echo start $LAB_RUN_DIR >> {log}'"
stop: "sh -c 'echo stop >> {log}'"
trigger: "sh -c 'echo trigger {{record}} {{expires}} >> {log}'"
untrigger: "sh -c 'echo untrigger {{record}} >> {log}'"
untrigger_on_close: true
trigger_timeout: 0.5
"""))
    scenarios, _ = load([LIBRARY / "failed" / "403-initial.yaml"])
    with running(spec) as target:
        assert isinstance(target, TemplatedSipOnlyTarget)
        assert target.capabilities == frozenset({"unsubscribe"})
        session = target.open(scenarios[0], "rfc6665")
        # The fake sends no SUBSCRIBE: the clock cannot start (a harness error).
        with pytest.raises(RuntimeError, match="sent nothing"):
            session.subscribe("sip:alice@here", "sip:bob@there")
        session.close()
    assert log.read_text().split("\n")[:4] == [
        f"start {tmp_path}", "trigger sip:alice@here 10", "untrigger sip:alice@here", "stop"]


def test_a_busy_subscriber_address_is_refused(tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        spec = load_target_file(_write(tmp_path, f"""
kind: target
name: fake
agent_address: 127.0.0.1:{port}
start: "true"
trigger: "true"
"""))
        with pytest.raises(TargetFileError, match="already in use"), running(spec):
            pass


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
