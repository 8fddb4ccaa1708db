"""Project-wide pytest hooks.

Interop tests (marker `interop`) skip when Kamailio or SIPp is not installed, and the
compiled-build tests (marker `compiler`) when there is no C compiler.
The `loop_name` fixture runs a runtime test once per event loop (asyncio, uvloop). In CI (`.ci/run`
exports B2B_REQUIRE_INTEROP=1) such a skip would hide a broken lab or build, so there a
skipped test of either kind is reported as a failure instead.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator

import pytest

from tests import event_loops

REQUIRE_INTEROP = "B2B_REQUIRE_INTEROP"


@pytest.fixture(params=event_loops.LOOPS)
def loop_name(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once per event loop (tests/event_loops.py): `run` uses it, and a test
    that spawns `b2b-agent` passes it as `--loop`."""
    name: str = request.param
    if name == "uvloop" and not event_loops.UVLOOP_SUPPORTED:
        pytest.skip("uvloop does not support this platform")
    before, event_loops.selected = event_loops.selected, name
    try:
        yield name
    finally:
        event_loops.selected = before


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
        item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if (report.skipped and os.environ.get(REQUIRE_INTEROP) == "1"
            and (item.get_closest_marker("interop") is not None
                 or item.get_closest_marker("compiler") is not None)):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (f"interop/compiler test skipped although {REQUIRE_INTEROP}=1 "
                           f"(the lab and the build must run here): {reason}")
