"""benchmarks/lab_bench.py --quick: every row printed with numbers, ratios to Kamailio.

Real Kamailio (Debian package) and SIPp on free ports (never the interop tests' 5070/5080),
real `b2b-agent` runs. Skips (with the bench's own message) only when Kamailio or SIPp is not
installed; in CI (B2B_REQUIRE_INTEROP=1) that skip is a failure (tests/conftest.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NUMBER = r"[\d,]+(?:\.\d+)?|<1"
ROW = re.compile(rf"^(?P<name>(?:kamailio|b2b-agent|python floor,) .+?)\s+(?P<rate>[\d,]+)"
                 rf"\s+(?P<p50>{NUMBER})"
                 rf"\s+(?P<p99>{NUMBER})\s+(?P<cpu>[\d.]+)\s+(?P<lost>\d+)\s+(?P<gen>\d+)%"
                 r"(?P<ratios>(?:\s+\d+\.\d\d){4})")


@pytest.mark.interop
@pytest.mark.slow
def test_quick_run_prints_every_row_with_numbers() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "lab_bench.py"), "--quick"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    missing = re.search(r"skipped: ((?:Kamailio|SIPp) not installed.*)", out)
    if missing:
        pytest.skip(missing.group(1))
    rows = {m["name"]: m for m in map(ROW.match, out.splitlines()) if m}
    kamailio = [name for name in rows if name.startswith("kamailio")]
    agents = [name for name in rows if name.startswith("b2b-agent")]
    assert len(kamailio) == 4, out  # 1 and 2 workers, default allocator and tlsf
    assert agents == ["b2b-agent interpreted, asyncio", "b2b-agent interpreted, uvloop"], out
    # The Python floor runs under SIPp like Kamailio but is not an anchor (4 ratio columns).
    assert "python floor, uvloop (no SIP checks)" in rows, out
    for name, row in rows.items():
        assert float(row["rate"].replace(",", "")) > 100, name
        assert float(row["cpu"]) > 0, name
        assert int(row["lost"]) == 0, name
    # Each Kamailio row is its own anchor: its ratio to itself is 1.00.
    for column, name in enumerate(kamailio):
        assert rows[name]["ratios"].split()[column] == "1.00", name
    assert "b2b-agent compiled, uvloop               skipped: no compiled build" in out
