"""The event loop the runtime tests run on (issue 19: every runtime test on both loops).

The `loop_name` fixture (tests/conftest.py) parametrizes a test over `LOOPS` and sets
`selected` for its duration; `tests.reference.test_udp.run` starts its loop from it and
checks that the loop running is the one selected. Tests that spawn `b2b-agent` pass the
fixture's value as `--loop`. Outside such a test `run` uses the runtime's default.
"""

from __future__ import annotations

import sys

from reference.loops import LOOPS, default_loop

__all__ = ["LOOPS", "UVLOOP_SUPPORTED", "selected"]

selected: str = default_loop()

# Where uvloop is a dependency (pyproject.toml's marker): there it must be installed, and a
# uvloop variant that cannot start is a failure, not a skip.
UVLOOP_SUPPORTED = sys.platform != "win32" and sys.implementation.name == "cpython"
