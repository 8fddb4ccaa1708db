"""docs/requirements.md parses, and its Counts section agrees with its rows."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.catalogue import (
    DEFAULT_PATH,
    OBSERVABLES,
    SER_IDS,
    SER_PATH,
    CatalogueError,
    Requirement,
    keyword_tokens,
    load_catalogue,
    load_ser_ids,
)
from conformance.catalogue import (
    testable_ids as ids_worth_testing,
)

HEADER = (
    "| ID | Source | Keyword | Requirement (paraphrase) | Black-box test | Observable | Ver. |\n"
    "|---|---|---|---|---|---|---|\n"
)


def _row(rid: str, keyword: str = "MUST", test: str = "**S**: x", obs: str = "S") -> str:
    return f"| {rid} | 6665 §1 | {keyword} | text | {test} | {obs} | U |\n"


def _counts_tables() -> dict[str, dict[str, list[str]]]:
    """Tables of the Counts section, keyed by first header cell, then by first cell of a row."""
    text = DEFAULT_PATH.read_text(encoding="utf-8")
    section = text.split("\n## Counts\n", 1)[1].split("\n## ", 1)[0]
    tables: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in section.splitlines():
        if not line.startswith("|"):
            current = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if set(cells[0]) <= {"-"}:
            continue
        if current is None:
            current = tables.setdefault(cells[0], {})
        else:
            current[cells[0].strip("*")] = cells[1:]
    return tables


def _number(cell: str) -> int:
    return int(cell.strip("*"))


CATALOGUE = load_catalogue()
COUNTS = _counts_tables()


def test_catalogue_has_the_documented_number_of_rows() -> None:
    total = _number(COUNTS["Group"]["Total"][0])
    assert total == 169
    assert len(CATALOGUE) == total
    assert all(re.fullmatch(r"(SUB|AUTH|REG|RLS|TCP)-\d{3}", rid) for rid in CATALOGUE)


def test_group_counts_match_their_id_ranges() -> None:
    covered: set[str] = set()
    for name, cells in COUNTS["Group"].items():
        if name == "Total":
            continue
        (prefix, first), (_, last) = re.findall(r"(SUB|AUTH|REG|RLS|TCP)-(\d{3})", cells[1])
        in_range = {rid for rid in CATALOGUE if rid.startswith(prefix + "-")
                    and int(first) <= int(rid[-3:]) <= int(last)}
        assert len(in_range) == _number(cells[0]), name
        covered |= in_range
    assert covered == set(CATALOGUE)  # every row belongs to exactly one listed group


def test_every_observable_is_valid_and_matches_the_test_marks() -> None:
    for rid, req in CATALOGUE.items():
        assert req.observable in OBSERVABLES, rid
        marks = ("**S**" in req.test, "**I**" in req.test)
        expected = {(True, True): "S+I", (True, False): "S", (False, True): "I"}.get(marks, "no")
        assert req.observable == expected, rid


def test_observable_counts_match_the_table() -> None:
    table = COUNTS["Observable"]
    seen = Counter(req.observable for req in CATALOGUE.values())
    for value in sorted(OBSERVABLES):
        assert _number(table[value][0]) == seen[value], value
    testable = next(v for k, v in table.items() if k.startswith("testable"))
    assert _number(testable[0]) == len(ids_worth_testing(CATALOGUE))


def test_keyword_counts_match_the_table() -> None:
    table = COUNTS["Keyword"]
    seen: Counter[str] = Counter()
    bare = 0
    for req in CATALOGUE.values():
        tokens = keyword_tokens(req.keyword)
        seen.update(tokens)
        bare += not tokens
    for keyword in ("MUST", "MUST NOT", "SHOULD", "SHOULD NOT", "MAY"):
        assert _number(table[keyword][0]) == seen[keyword], keyword
    none_row = next(v for k, v in table.items() if k.startswith("none"))
    assert _number(none_row[0]) == bare


def test_verification_counts_match_the_table() -> None:
    table = COUNTS["Ver."]
    verified = sum(req.verified for req in CATALOGUE.values())
    assert _number(table["V"][0]) == verified
    assert _number(table["U"][0]) == len(CATALOGUE) - verified
    assert _number(table["withdrawn"][0]) == sum(r.withdrawn for r in CATALOGUE.values())


def test_known_corrections_are_in_place() -> None:
    # Spot checks of the proof-read: these are the rows the old catalogue had wrong.
    assert CATALOGUE["SUB-054"].keyword == "SHOULD NOT"
    assert CATALOGUE["SUB-081"].source.startswith("3856 §5")
    assert CATALOGUE["SUB-099"].source == "3863 §4.1.7"
    assert "501" in CATALOGUE["SUB-156"].test
    assert "fresh final response" in CATALOGUE["SUB-142"].test  # not the old "→ 500"
    assert CATALOGUE["SUB-014"].verified and CATALOGUE["SUB-011"].verified


def test_keyword_tokens_do_not_double_count_negations() -> None:
    assert keyword_tokens("MUST NOT") == {"MUST NOT"}
    assert keyword_tokens("SHOULD / MAY") == {"SHOULD", "MAY"}
    assert keyword_tokens("(normative) / MUST NOT") == {"MUST NOT"}
    assert keyword_tokens("(derived)") == frozenset()


def test_testable_ids_skip_no_and_withdrawn(tmp_path: Path) -> None:
    doc = tmp_path / "req.md"
    doc.write_text(
        "# t\n\n"
        + HEADER
        + _row("SUB-001")
        + _row("SUB-002", test="**I**: y", obs="I")
        + _row("SUB-003", test="see SUB-001", obs="no")
        + _row("SUB-004", keyword="withdrawn: duplicate of SUB-001")
        + "\n| Observable | Rows |\n|---|---|\n| S | 2 |\n",
        encoding="utf-8",
    )
    rows = load_catalogue(doc)
    assert list(rows) == ["SUB-001", "SUB-002", "SUB-003", "SUB-004"]
    assert rows["SUB-004"].withdrawn and not rows["SUB-001"].withdrawn
    assert ids_worth_testing(rows) == {"SUB-001", "SUB-002"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_row("SUB-001") + _row("SUB-001"), "twice"),
        ("| SUB-001 | a | b | c | d | S |\n", "cells"),
        (_row("SUB-001", obs="maybe"), "Observable"),
        ("| SUB-001 | a | b | c | d | S | yes |\n", "Ver."),
    ],
)
def test_malformed_rows_are_refused(tmp_path: Path, body: str, message: str) -> None:
    doc = tmp_path / "req.md"
    doc.write_text(HEADER + body, encoding="utf-8")
    with pytest.raises(CatalogueError, match=message):
        load_catalogue(doc)


_CELL_TEXT = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="|\\"
    ),
    max_size=20,
).map(str.strip)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.dictionaries(
        st.integers(min_value=1, max_value=999).map(lambda n: f"SUB-{n:03d}"),
        st.tuples(_CELL_TEXT, _CELL_TEXT, st.sampled_from(sorted(OBSERVABLES)), st.booleans()),
        max_size=8,
    )
)
def test_rows_round_trip_through_the_markdown(
    tmp_path_factory: pytest.TempPathFactory,
    rows: dict[str, tuple[str, str, str, bool]],
) -> None:
    # Pipes inside a cell are written escaped, as markdown requires, and read back whole.
    lines = [
        f"| {rid} | src | {kw} | a \\| b | {test} | {obs} | {'V' if ver else 'U'} |\n"
        for rid, (kw, test, obs, ver) in rows.items()
    ]
    doc = tmp_path_factory.mktemp("cat") / "req.md"
    doc.write_text("intro\n\n" + HEADER + "".join(lines), encoding="utf-8")
    parsed = load_catalogue(doc)
    assert list(parsed) == list(rows)
    for rid, (kw, test, obs, ver) in rows.items():
        assert parsed[rid] == Requirement(
            id=rid,
            source="src",
            keyword=kw,
            text="a | b",
            test=test,
            observable=obs,
            verified=ver,
            withdrawn=kw.lower().startswith("withdrawn"),
        )


def test_ser_ids_are_read_from_any_table(tmp_path: Path) -> None:
    doc = tmp_path / "ser.md"
    doc.write_text(
        "| ID | What |\n|---|---|\n| SER-001 | a |\n| SER-042 | b |\n"
        "text SER-999 outside a table\n| not SER-003 | c |\n\n| SER-010 | x | y |\n",
        encoding="utf-8",
    )
    assert load_ser_ids(doc) == {"SER-001", "SER-042", "SER-010"}
    assert load_ser_ids(tmp_path / "absent.md") == frozenset()


def test_module_level_ser_ids_follow_the_project_file() -> None:
    assert load_ser_ids() == SER_IDS
    if SER_PATH.is_file():
        assert SER_IDS and all(re.fullmatch(r"SER-\d{3}", sid) for sid in SER_IDS)
