"""scripts/mutation.py: mutants are generated, applied in a copy only, and scored."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutation_script", REPO / "scripts" /
                                                  "mutation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


mutation = _load_script()


def _digest() -> dict[str, str]:
    return {f: hashlib.sha256((REPO / f).read_bytes()).hexdigest()
            for f in mutation.TARGET_FILES}


def test_every_mutant_is_valid_python_and_changes_the_source() -> None:
    mutants = mutation.generate()
    assert len(mutants) > 200
    assert len({m.id for m in mutants}) == len(mutants)
    sources = {f: (REPO / f).read_text(encoding="utf-8") for f in mutation.TARGET_FILES}
    for mutant in mutants:
        mutated = mutation.apply(sources[mutant.file], mutant)  # parses, or raises
        assert ast.dump(ast.parse(mutated)) != ast.dump(ast.parse(sources[mutant.file])), \
            mutant.description


def test_generator_covers_table_rows_constants_and_comparisons() -> None:
    descriptions = [m.description for m in mutation.generate()]
    assert any(d.startswith("REFRESH_TERMINATING: drop") for d in descriptions)
    assert any("row (S.RESUBSCRIPTION, (E.R481,)): next" in d for d in descriptions)
    assert any("row (S.CONFIRMED, (E.TICK,)): drop A.SEND_REFRESH" in d for d in descriptions)
    assert any(d.startswith("refresh_delay(): `delay >= granted` -> `delay > granted`")
               for d in descriptions)
    # The `destroyed` rows are unreachable by design: no mutants for them.
    assert not any("row (S.DESTROYED" in d for d in descriptions)


def test_apply_replaces_exactly_the_span() -> None:
    source = "X = frozenset({1, 2})  # é\ny = 3\n"
    mutant = mutation.Mutant(1, "f.py", 1, "drop 1", (1, 14), (1, 20), "{2}")
    assert mutation.apply(source, mutant) == "X = frozenset({2})  # é\ny = 3\n"


@pytest.mark.slow
def test_sample_run_kills_an_obvious_mutant_and_leaves_the_tree_alone() -> None:
    before = _digest()
    mutants = mutation.generate()
    # Obvious: without SEND_REFRESH on the confirmed tick no refresh is ever sent.
    obvious = next(m for m in mutants
                   if "rfc6665 row (S.CONFIRMED, (E.TICK,)): drop A.SEND_REFRESH" in
                   m.description)
    timing = next(m for m in mutants
                  if m.description.startswith("refresh_delay(): `delay >= granted`"))
    reason = next(m for m in mutants if "reason 'deactivated': resubscribe" in m.description)
    baseline, outcomes = mutation.run_mutants([obvious, timing, reason], jobs=2,
                                              library=[mutation.LIBRARY])
    assert baseline and all(v in ("pass", "xfail", "n/a") for v in baseline.values())
    by_id = {o.mutant.id: o for o in outcomes}
    assert by_id[obvious.id].status == "killed"
    assert any("resubscribe/" in run for run in by_id[obvious.id].killed_by)
    assert all(o.status in ("killed", "survived", "timeout", "crashed") for o in outcomes)
    assert mutation.score(outcomes) >= 100 / 3
    assert _digest() == before  # mutants were written to a temporary copy only


def test_cli_lists_and_selects(capsys: pytest.CaptureFixture[str]) -> None:
    assert mutation.main(["--list", "-k", "REFRESH_TERMINATING", "--limit", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert all("REFRESH_TERMINATING: drop" in line for line in lines)
