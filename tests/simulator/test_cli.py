"""b2b-sim CLI: run writes its files, compare prints both runs, bad input exits 2."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.pcap import read_pcap

WORKLOAD = """\
kind: workload
name: tiny
duration: 400
watchers: 4
presentities: 6
contacts: 2
presence_changes_per_hour: 30
ramp_up: 5
agent: {profile: rfc6665, parameters: {default_expiration: 120}}
notifier: {max_expires: 120}
"""


@pytest.fixture
def workload(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(WORKLOAD)
    return path


def test_run_writes_outputs(
    workload: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["run", str(workload), "--seed", "3", "--out", str(out), "--trace", "--pcap",
                 "--no-progress", "--duration", "300"]) == 0  # fmt: skip
    for name in ("summary.json", "timeseries.csv", "message_rate.png", "availability.png",
                 "delay_cdf.png", "trace.jsonl", "traffic.pcap"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["simulated_seconds"] == 300
    rows = list(csv.DictReader((out / "timeseries.csv").open()))
    assert len(rows) == 5  # 300 s = five simulated minutes
    assert sum(int(r["subscribe"]) for r in rows) == summary["messages"]["requests"]["SUBSCRIBE"]
    packets = list(read_pcap(out / "traffic.pcap"))
    assert len(packets) == summary["messages"]["total"]
    assert all(json.loads(line)["t"] <= 300 for line in (out / "trace.jsonl").open())
    if shutil.which("tshark"):
        result = subprocess.run(
            ["tshark", "-r", str(out / "traffic.pcap"), "-Y", "sip.Method == \"NOTIFY\""],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert result.stdout.count("NOTIFY") == summary["messages"]["requests"]["NOTIFY"]
    assert "tiny:" in capsys.readouterr().out


def test_compare_prints_both(
    workload: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for profile in ("ser", "rfc6665"):
        assert main(["run", str(workload), "--profile", profile, "--out",
                     str(tmp_path / profile), "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "ser"), str(tmp_path / "rfc6665")]) == 0
    text = capsys.readouterr().out
    assert "ser" in text and "rfc6665" in text and "availability" in text
    assert (tmp_path / "rfc6665" / "compare.png").exists()


def test_invalid_workload_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("kind: workload\nwatchers: -5\n")
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "bad.yaml: watchers: -5 is less than the minimum of 1" in capsys.readouterr().err


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "b2b-sim compare" in capsys.readouterr().out
