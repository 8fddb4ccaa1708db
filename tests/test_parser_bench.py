"""benchmarks/parser_bench.py --quick: every parser row for every message and dialog count,
with positive rates and ratios to sippy that agree with the rates (no timing assertion).

sippy (the ``bench`` extra, also installed with ``test``) is the anchor; the bench itself
refuses to run without it, which this test checks too.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "parser_bench.py"
PARSERS = ["ours parse", "ours full", "sippy lazy", "sippy full"]
MESSAGES = ["NOTIFY", "200-SUBSCRIBE", "SUBSCRIBE"]
ROW = re.compile(r"^(?P<message>\S+)\s+(?P<dialogs>\d+)\s+(?P<parser>(?:ours|sippy) \w+)\s+"
                 r"(?P<rate>[\d,]+)\s+[\d,]+-[\d,]+\s+(?P<lazy>\d+\.\d\d)x\s+(?P<full>\d+\.\d\d)x$")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCH), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)


def test_quick_json_has_every_row_and_consistent_ratios() -> None:
    done = _run("--quick", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert len(result["load_before"]) == 3 and result["cpus"] >= 1
    rows = {(r["message"], r["dialogs"], r["parser"]): r for r in result["rows"]}
    assert set(rows) == {(m, d, p) for m in MESSAGES for d in (1, 1000) for p in PARSERS}
    for (message, dialogs, _), row in rows.items():
        assert 0 < row["min"] <= row["median"] <= row["max"]
        lazy = rows[(message, dialogs, "sippy lazy")]["median"]
        assert abs(row["vs_sippy_lazy"] - row["median"] / lazy) < 0.01
        assert rows[(message, dialogs, "sippy lazy")]["vs_sippy_lazy"] == 1.0


def test_text_output_prints_a_row_per_parser_and_the_load() -> None:
    done = _run("--quick", "--message", "NOTIFY", "--dialogs", "3")
    assert done.returncode == 0, done.stderr
    rows = [m for m in map(ROW.match, done.stdout.splitlines()) if m]
    assert [(m["message"], m["dialogs"], m["parser"]) for m in rows] == [
        ("NOTIFY", "3", parser) for parser in PARSERS]
    assert "load average" in done.stdout.splitlines()[0]
    assert done.stdout.splitlines()[-1].startswith("load average after:")


def test_every_datagram_parses_with_both_parsers() -> None:
    sys.path.insert(0, str(BENCH.parent))
    try:
        import parser_bench
    finally:
        sys.path.pop(0)
    lazy, _ = parser_bench._sippy_parsers()
    for message in MESSAGES:
        cycle = parser_bench.datagrams(message, 50)
        assert len(cycle) == parser_bench.MIN_DATAGRAMS and len(set(cycle)) == len(cycle)
        for data in cycle[:100]:
            parser_bench.ours_full(data)
            assert lazy(data).headers


def test_bad_arguments_are_one_line_errors() -> None:
    done = _run("--repeat", "0")
    assert done.returncode == 2 and "must be positive" in done.stderr
    assert "examples:" in _run("--help").stdout
