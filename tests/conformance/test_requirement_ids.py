"""Scenario loading rejects requirement IDs that are in neither catalogue."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.catalogue import SER_IDS, load_catalogue
from conformance.scenario import ScenarioError, known_requirements, load, load_file

GOOD = """
kind: scenario
name: demo/ids
covers: [SUB-003, SER-030]
profiles: [rfc6665]
params: {default_expiration: 10, t1: 0.05}
steps:
  - subscribe:
  - expect: {id: s1, method: SUBSCRIBE, within: [0, 0], covers: [SUB-001]}
  - reply: {status: 200, expires: 10}
    covers: [SUB-056]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ids.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_known_ids_load() -> None:
    assert known_requirements() == frozenset(load_catalogue()) | SER_IDS
    assert "SUB-003" in known_requirements() and "SER-030" in known_requirements()


def test_known_ids_accepted(tmp_path: Path) -> None:
    [scenario] = load_file(write(tmp_path, GOOD))
    assert scenario.all_covers == ("SUB-003", "SER-030", "SUB-001", "SUB-056")


@pytest.mark.parametrize(("change", "where", "rid"), [
    (("covers: [SUB-003, SER-030]", "covers: [SUB-003, SUB-999]"), "covers[1]", "SUB-999"),
    (("covers: [SUB-003, SER-030]", "covers: [SER-999]"), "covers[0]", "SER-999"),
    (("covers: [SUB-001]", "covers: [SUB-001, SUB-066]"), "steps[1].covers[1]", "SUB-066"),
    (("covers: [SUB-056]", "covers: [SER-002]"), "steps[2].covers[0]", "SER-002"),
    (("covers: [SUB-056]", "covers: [sub-056]"), "steps[2].covers[0]", "sub-056"),
])
def test_unknown_ids_name_file_scenario_and_id(tmp_path: Path, change: tuple[str, str],
                                               where: str, rid: str) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ScenarioError) as info:
        load_file(path)
    text = str(info.value)
    assert str(path) in text and "'demo/ids'" in text
    assert f"{where}: unknown requirement ID {rid!r}" in text


def test_lint_reports_unknown_ids_per_file(tmp_path: Path) -> None:
    write(tmp_path, GOOD.replace("SUB-003", "SUB-000"))
    scenarios, errors = load([tmp_path])
    assert scenarios == [] and len(errors) == 1 and "SUB-000" in errors[0]


def test_library_names_only_known_ids() -> None:
    root = Path(__file__).resolve().parents[2] / "scenarios"
    scenarios, errors = load([root])
    assert errors == []
    named = {rid for s in scenarios for rid in s.all_covers}
    assert named <= known_requirements()
