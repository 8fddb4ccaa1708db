"""`b2b-conform` end to end on the sim target: exit codes and report files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conformance.cli import main

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "scenarios"


def test_run_library_both_profiles_with_reports(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    junit, report, coverage = tmp_path / "j.xml", tmp_path / "r.json", tmp_path / "c.md"
    code = main(["run", str(LIBRARY), "--junit", str(junit), "--json", str(report),
                 "--coverage", str(coverage), "--no-colour"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "failed/403-initial" in out and " fail " not in out
    data = json.loads(report.read_text())
    assert data["summary"]["fail"] == 0 and data["summary"]["pass"] >= 60
    assert {r["profile"] for r in data["results"]} == {"ser", "rfc6665"}
    assert data["requirements"]["SUB-131"]["verdict"] == "conformant"
    assert data["runs_by_requirement"]["SUB-131"]["verdict"] == "pass"
    assert all(r["ladder"] for r in data["results"] if r["verdict"] == "pass")
    suite = ET.parse(junit).getroot()
    assert suite.get("failures") == "0" and int(suite.get("tests") or 0) == len(data["results"])
    text = coverage.read_text()
    assert "| SUB-014 | pass |" in text and "`failed/481-refresh`" in text


def test_failure_exit_code_and_details(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("""
kind: scenario
name: demo/wrong-expectation
covers: [SUB-003]
profiles: [rfc6665]
params: {default_expiration: 10, t1: 0.05}
steps:
  - subscribe:
  - expect: {method: SUBSCRIBE, within: [0, 0], match: {Expires: 99}}
""", encoding="utf-8")
    assert main(["run", str(path), "--no-colour"]) == 1
    out = capsys.readouterr().out
    assert "Expires does not match" in out and "expected: == 99" in out
    assert "observed: '10'" in out and "[t=0.000] SUBSCRIBE sip:alice@" in out


def test_profile_and_pattern_selection(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(LIBRARY), "--profile", "ser", "-k", "failed/4*", "--no-colour"]) == 0
    out = capsys.readouterr().out
    assert "rfc6665" not in out.split("-\n", 1)[1]
    assert "failed/403-initial" in out and "term-wait" not in out


def test_lint_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", str(LIBRARY)]) == 0
    assert main(["list", str(LIBRARY)]) == 0
    assert "resubscribe/tiny-grant" in capsys.readouterr().out
    (tmp_path / "broken.yaml").write_text("kind: scenario\nname: x\n", encoding="utf-8")
    assert main(["lint", str(tmp_path)]) == 2
    assert "broken.yaml: scenario 'x'" in capsys.readouterr().err


def test_python_dash_m(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "conformance", "list", str(LIBRARY)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0 and "bad-notify/malformed" in done.stdout


def test_pytest_collects_scenarios() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "pytest", "scenarios/", "-q", "-p", "no:cacheprovider",
         "--b2b-profile", "ser", "-k", "403 or 481"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_junit_into_a_missing_folder(tmp_path: Path) -> None:
    junit = tmp_path / "out" / "deeper" / "junit.xml"
    code = main(["run", str(LIBRARY / "conformance" / "failed" / "403-initial.yaml"),
                 "--junit", str(junit), "--no-colour"])
    assert code == 0
    assert ET.parse(junit).getroot().get("tests") == "2"


def test_unwritable_report_is_one_line(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(["run", str(LIBRARY / "conformance" / "failed" / "403-initial.yaml"),
                 "--json", str(blocker / "r.json")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("b2b-conform: ") and err.count("\n") == 1 and "Traceback" not in err


def test_list_into_a_closed_pipe_is_quiet() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "conformance", "list", str(LIBRARY)],
                              stdout=write_end, stderr=subprocess.PIPE, cwd=ROOT, check=False)
    finally:
        os.close(write_end)
    assert done.returncode == 141
    assert done.stderr == b""


def test_every_benchmark_takes_help() -> None:
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                              cwd=ROOT, check=False, timeout=60)
        assert done.returncode == 0 and b"usage" in done.stdout.lower(), script.name
