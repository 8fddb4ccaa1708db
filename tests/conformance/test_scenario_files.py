"""Loading and validation: errors name file, scenario and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.scenario import ScenarioError, load, load_file

GOOD = """
kind: scenario
name: demo/ok
covers: [SUB-001]
profiles: [ser]
params: {default_expiration: 10}
steps:
  - subscribe:
  - expect: {id: s1, method: SUBSCRIBE, within: [0, default_expiration - 1]}
  - reply: {status: 200, expires: 10}
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_loads_and_lifts_step_keys(tmp_path: Path) -> None:
    [scenario] = load_file(write(tmp_path, GOOD))
    assert scenario.name == "demo/ok"
    assert scenario.steps[1].id == "s1"
    assert scenario.steps[1].args == {"method": "SUBSCRIBE",
                                      "within": [0, "default_expiration - 1"]}


def test_skips_other_kinds(tmp_path: Path) -> None:
    path = write(tmp_path, "kind: workload\nname: x\n---\n" + GOOD)
    assert [s.name for s in load_file(path)] == ["demo/ok"]


@pytest.mark.parametrize(("change", "field"), [
    (("status: 200", "status: abc"), "steps[2].reply.status"),
    (("method: SUBSCRIBE,", "method: SUBSCRIBE, colour: red,"), "steps[1].expect"),
    (("covers: [SUB-001]", "covers: [SUB-1]"), "covers[0]"),
    (("default_expiration - 1", "default_expiraton - 1"), "steps[1].expect.within"),
    (("{default_expiration: 10}", "{default_expiraton: 10}"), "params (ser)"),
    (("  - reply:", "  - frobnicate:"), "steps[2]"),
    (("profiles: [ser]", "profiles: [sip]"), "profiles[0]"),
])
def test_errors_name_file_scenario_and_field(tmp_path: Path, change: tuple[str, str],
                                             field: str) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ScenarioError) as info:
        load_file(path)
    text = str(info.value)
    assert str(path) in text
    assert "'demo/ok'" in text
    assert field in text


def test_reference_to_unknown_step(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "  - reply: {to: nope, status: 200}\n")
    with pytest.raises(ScenarioError, match="no earlier step with id 'nope'"):
        load_file(path)


def test_duplicate_names_and_pattern(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, GOOD, "b.yaml")
    scenarios, errors = load([tmp_path])
    assert len(scenarios) == 1 and len(errors) == 1 and "already used" in errors[0]
    assert load([tmp_path / "a.yaml"], "demo/*")[0]
    assert not load([tmp_path / "a.yaml"], "other")[0]


def test_library_is_valid() -> None:
    root = Path(__file__).resolve().parents[2] / "scenarios"
    scenarios, errors = load([root])
    assert errors == []
    families = {s.name.split("/")[0] for s in scenarios}
    assert {"failed", "term-wait", "resubscribe", "bad-notify"} <= families
    count = {f: sum(s.name.startswith(f + "/") for s in scenarios) for f in families}
    assert count["failed"] >= 9 and count["term-wait"] >= 6 and count["resubscribe"] >= 7
