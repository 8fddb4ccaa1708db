"""pytest plugin: scenario YAML files become test items (`pytest scenarios/`).

Options: `--b2b-target sim|udp` (default sim), `--b2b-profile ser|rfc6665` (repeatable;
default: every profile a scenario lists), `--b2b-agent-command` (udp). Not-applicable runs
are skipped, documented xfails are xfailed, failures show expected vs observed and the
transcript. `scenarios/conftest.py` imports these hooks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.runner import ERROR, FAIL, NA, XFAIL, ScenarioResult, Target, run_scenario
from conformance.scenario import PROFILES, Scenario, ScenarioError, load_file
from conformance.targets import make_target


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("b2b-conform", "conformance scenarios")
    group.addoption("--b2b-target", default="sim", choices=("sim", "udp"),
                    help="target the scenarios run against (default: sim)")
    group.addoption("--b2b-profile", action="append", choices=PROFILES,
                    help="profile(s) to run (default: every profile a scenario lists)")
    group.addoption("--b2b-agent-command", default=None,
                    help="udp target: command that starts the agent under test")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix in (".yaml", ".yml"):
        collector: pytest.Collector = ScenarioFile.from_parent(parent, path=file_path)
        return collector
    return None


class ScenarioFailed(Exception):
    def __init__(self, result: ScenarioResult) -> None:
        super().__init__(result.failure)
        self.result = result


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        try:
            scenarios = load_file(self.path)
        except ScenarioError as exc:
            yield InvalidScenario.from_parent(self, name="invalid", error=str(exc))
            return
        wanted = self.config.getoption("--b2b-profile")
        for scenario in scenarios:
            for profile in scenario.profiles:
                if wanted and profile not in wanted:
                    continue
                yield ScenarioItem.from_parent(self, name=f"{scenario.name}[{profile}]",
                                               scenario=scenario, profile=profile)


class InvalidScenario(pytest.Item):
    def __init__(self, *, error: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error = error

    def runtest(self) -> None:
        raise ScenarioError(self.error)

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        return self.error


def _target(config: pytest.Config) -> Target:
    cached: Target | None = getattr(config, "_b2b_target", None)
    if cached is None:
        cached = make_target(config.getoption("--b2b-target"),
                             agent_command=config.getoption("--b2b-agent-command"))
        config._b2b_target = cached  # type: ignore[attr-defined]
    return cached


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: Scenario, profile: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.profile = profile
        for req in scenario.all_covers:
            self.user_properties.append(("covers", req))

    def runtest(self) -> None:
        result = run_scenario(self.scenario, self.profile, _target(self.config))
        if result.verdict == NA:
            pytest.skip(f"not applicable: {result.failure}")
        if result.verdict == XFAIL:
            pytest.xfail(result.xfail_reason or "xfail")
        if result.verdict in (FAIL, ERROR):
            raise ScenarioFailed(result)

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        if isinstance(excinfo.value, ScenarioFailed):
            result = excinfo.value.result
            lines = [f"{result.verdict.upper()} {result.scenario} [{result.profile}] on "
                     f"{result.target}", str(result.failure), "transcript (last 15):"]
            lines.extend(f"  {line}" for line in result.transcript[-15:])
            return "\n".join(lines)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"scenario {self.name}"
