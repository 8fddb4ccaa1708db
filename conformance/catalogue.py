"""The requirement catalogues as data: SUB-nnn rows of docs/requirements.md, SER-nnn ids.

docs/requirements.md is the one place the subscriber requirements are written down; this module
reads its tables so that scenarios, reports and tests can name requirements by id without keeping
a second copy. Only table rows whose first cell is an id are read, so prose, headings and the
counts tables around them can change freely.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_PATH",
    "OBSERVABLES",
    "SER_IDS",
    "SER_PATH",
    "TESTABLE_OBSERVABLES",
    "CatalogueError",
    "Requirement",
    "keyword_tokens",
    "load_catalogue",
    "load_ser_ids",
    "testable_ids",
]

# A checkout reads the repository's docs/; an installed package (no docs/ beside it) reads
# the copy setup.py put into it at build time.
_CHECKOUT_DOCS = Path(__file__).resolve().parents[1] / "docs"
_DOCS = (
    _CHECKOUT_DOCS
    if (_CHECKOUT_DOCS / "requirements.md").is_file()
    else Path(__file__).resolve().parent / "catalogue_docs"
)
DEFAULT_PATH = _DOCS / "requirements.md"
SER_PATH = _DOCS / "ser-requirements.md"

# The only values the Observable column may hold (see "How to read this table").
OBSERVABLES = frozenset({"S", "I", "S+I", "no"})
TESTABLE_OBSERVABLES = frozenset({"S", "I", "S+I"})

# SUB-nnn (RFC rows), AUTH-nnn (digest authentication, issue 18) and REG-nnn, RLS-nnn,
# TCP-nnn (RFC 3680, RFC 4662, RFC 3261 §18; issue 17) share the table shape.
_SUB_ID = re.compile(r"(?:SUB|AUTH|REG|RLS|TCP)-\d{3}")
_SER_ID = re.compile(r"SER-\d{3}")
# Cells are separated by "|" unless escaped as "\|" (markdown's own escape).
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
# Longest alternatives first, so "MUST NOT" is not also counted as "MUST".
_KEYWORD = re.compile(r"\b(MUST NOT|SHOULD NOT|MUST|SHOULD|MAY)\b")
_SUB_COLUMNS = 7  # ID | Source | Keyword | Requirement | Black-box test | Observable | Ver.


class CatalogueError(ValueError):
    """A SUB row that does not have the catalogue's shape (message names the row)."""


@dataclass(frozen=True)
class Requirement:
    """One SUB-nnn row. `withdrawn` rows keep their id but no longer bind anybody."""

    id: str
    source: str
    keyword: str
    text: str
    test: str
    observable: str
    verified: bool
    withdrawn: bool


def _table_cells(line: str) -> list[str] | None:
    """The cells of a markdown table row, or None when the line is not one."""
    stripped = line.strip()
    if not stripped.startswith("|"):
        return None
    inner = stripped[1:-1] if stripped.endswith("|") and len(stripped) > 1 else stripped[1:]
    return [cell.strip().replace("\\|", "|") for cell in _CELL_SPLIT.split(inner)]


def _id_rows(
    markdown: str, id_pattern: re.Pattern[str], *, id_tables_only: bool
) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of every table row whose first cell is exactly an id.

    With `id_tables_only`, only tables whose header starts with an "ID" column count, so a
    table that merely lists ids (such as the change log) is not mistaken for the catalogue.
    """
    header: list[str] | None = None  # header cells of the table being read
    for number, line in enumerate(markdown.splitlines(), start=1):
        cells = _table_cells(line)
        if cells is None:
            header = None
            continue
        if header is None:
            header = cells
            if id_tables_only:
                continue
        elif id_tables_only and header[0] != "ID":
            continue
        if id_pattern.fullmatch(cells[0]):
            yield number, cells


def _requirement(number: int, cells: list[str]) -> Requirement:
    if len(cells) != _SUB_COLUMNS:
        raise CatalogueError(
            f"line {number}: {cells[0]} has {len(cells)} cells, expected {_SUB_COLUMNS}"
        )
    rid, source, keyword, text, test, observable, ver = cells
    if observable not in OBSERVABLES:
        raise CatalogueError(f"line {number}: {rid} has bad Observable {observable!r}")
    if ver not in ("V", "U"):
        raise CatalogueError(f"line {number}: {rid} has bad Ver. {ver!r}")
    return Requirement(
        id=rid,
        source=source,
        keyword=keyword,
        text=text,
        test=test,
        observable=observable,
        verified=ver == "V",
        # Withdrawn rows say so in the Keyword column, with the reason after it.
        withdrawn=keyword.lower().startswith("withdrawn"),
    )


def load_catalogue(path: Path | None = None) -> dict[str, Requirement]:
    """Every SUB row of `path` (default: the repo's docs/requirements.md), in file order.

    Raises CatalogueError on a malformed row or a repeated id, and OSError if the file is
    missing.
    """
    markdown = (path or DEFAULT_PATH).read_text(encoding="utf-8")
    catalogue: dict[str, Requirement] = {}
    for number, cells in _id_rows(markdown, _SUB_ID, id_tables_only=True):
        requirement = _requirement(number, cells)
        if requirement.id in catalogue:
            raise CatalogueError(f"line {number}: {requirement.id} appears twice")
        catalogue[requirement.id] = requirement
    return catalogue


def testable_ids(catalogue: Mapping[str, Requirement] | None = None) -> frozenset[str]:
    """Ids observable on the wire or northbound (S, I, S+I) that are not withdrawn."""
    rows = load_catalogue() if catalogue is None else catalogue
    return frozenset(
        rid
        for rid, req in rows.items()
        if req.observable in TESTABLE_OBSERVABLES and not req.withdrawn
    )


def keyword_tokens(keyword: str) -> frozenset[str]:
    """The RFC 2119 keywords a Keyword cell carries ("SHOULD / MAY" -> {SHOULD, MAY})."""
    return frozenset(_KEYWORD.findall(keyword))


def load_ser_ids(path: Path | None = None) -> frozenset[str]:
    """SER-nnn ids of docs/ser-requirements.md (any table row starting with one).

    Empty when the file does not exist: another part of the project writes it.
    """
    target = path or SER_PATH
    if not target.is_file():
        return frozenset()
    markdown = target.read_text(encoding="utf-8")
    rows = _id_rows(markdown, _SER_ID, id_tables_only=False)
    return frozenset(cells[0] for _, cells in rows)


SER_IDS: frozenset[str] = load_ser_ids()
