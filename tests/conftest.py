"""Project-wide pytest hooks.

Interop tests (marker `interop`) skip when Kamailio or SIPp is not installed, and the
compiled-build tests (marker `compiler`) when there is no C compiler. In CI (`.ci/run`
exports B2B_REQUIRE_INTEROP=1) such a skip would hide a broken lab or build, so there a
skipped test of either kind is reported as a failure instead.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

REQUIRE_INTEROP = "B2B_REQUIRE_INTEROP"


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
