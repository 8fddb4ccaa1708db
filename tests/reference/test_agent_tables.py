"""The state tables themselves: total, every action implemented, diagrams printable."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from reference.actions import ACTIONS
from reference.subscription import (
    EVENTS,
    RFC6665_TABLE,
    SER_TABLE,
    STATES,
    TABLES,
    Action,
    DuplicateRow,
    Event,
    State,
    Table,
    _rfc_table,
    _rows,
    _ser_table,
    mermaid,
    table_markdown,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("profile", ["ser", "rfc6665"])
def test_table_is_total(profile: str) -> None:
    table = TABLES[profile]
    expected = {(s, e) for s in STATES[profile] for e in EVENTS[profile]}
    assert set(table) == expected


def test_every_action_is_bound_once_in_the_action_table() -> None:
    used = {a for table in (SER_TABLE, RFC6665_TABLE) for row in table.values()
            for a in row.actions}
    assert set(ACTIONS) == set(Action) and used <= set(ACTIONS)
    assert all(callable(function) for function in ACTIONS.values())
    # Each function binds one action: a copy-paste slip would show as a shared function.
    assert len({id(function) for function in ACTIONS.values()}) == len(ACTIONS)
    assert used <= set(Action)


def test_ser_never_enters_terminated_and_rfc_terminated_is_quiet() -> None:
    assert all(row.next is not State.TERMINATED for row in SER_TABLE.values())
    for event in EVENTS["rfc6665"]:
        row = RFC6665_TABLE[(State.TERMINATED, event)]
        sends = {Action.SEND_INITIAL, Action.SEND_REFRESH, Action.SEND_REDIRECT,
                 Action.SEND_UNSUBSCRIBE, Action.SEND_MIN_EXPIRES}
        assert not sends & set(row.actions)
        assert row.next in (State.TERMINATED, State.DESTROYED)


def test_destroy_states_never_send_anything_but_an_unsubscribe() -> None:
    """After the internal unsubscribe nothing may resurrect the subscription."""
    destroy_states = (State.UNCONFIRMED_DESTROY, State.RESUBSCRIPTION_DESTROY,
                      State.PREDESTROYED, State.WAITING_FOR_TERMINATION, State.DESTROYED)
    for table in (SER_TABLE, RFC6665_TABLE):
        for (state, _event), row in table.items():
            if state in destroy_states:
                assert Action.DELIVER not in row.actions
                assert Action.REPORT_FAILURE not in row.actions
                assert not {Action.SEND_INITIAL, Action.SEND_REDIRECT, Action.SEND_REFRESH,
                            Action.START_RETRY} & set(row.actions)
                assert row.next in destroy_states


def test_mermaid_and_markdown() -> None:
    for profile in ("ser", "rfc6665"):
        text = mermaid(profile)
        assert text.startswith("stateDiagram-v2")
        assert "unconfirmed --> confirmed: 2xx" in text
        md = table_markdown(profile)
        assert md.count("\n") == len(TABLES[profile]) + 2
    assert "--> terminated" not in mermaid("ser")
    assert "--> terminated" in mermaid("rfc6665")


def test_module_prints_the_diagrams() -> None:
    result = subprocess.run([sys.executable, "-m", "reference.subscription"], cwd=ROOT,
                            capture_output=True, text=True, check=True, timeout=60)
    assert "```mermaid" in result.stdout and "### `rfc6665` transition table" in result.stdout


def test_event_values_are_unique() -> None:
    assert len({e.value for e in Event}) == len(Event)


def test_behaviour_doc_generated_section_is_current() -> None:
    """docs/behaviour.md embeds the tables; regenerate with
    `python -m reference.subscription --write docs/behaviour.md`."""
    from pathlib import Path

    from reference.subscription import GENERATED_BEGIN, GENERATED_END, generated_section

    text = (Path(__file__).resolve().parents[2] / "docs" / "behaviour.md").read_text()
    start = text.index(GENERATED_BEGIN)
    end = text.index(GENERATED_END) + len(GENERATED_END)
    assert text[start:end] == generated_section()


def test_a_table_builder_fails_on_a_second_row_for_one_key() -> None:
    table: Table = {}
    _rows(table, State.CONFIRMED, (Event.TICK,), (), State.CONFIRMED)
    with pytest.raises(DuplicateRow, match=r"\(CONFIRMED, TICK\)"):
        _rows(table, State.CONFIRMED, (Event.R1XX, Event.TICK), (), State.WAITING)


@pytest.mark.parametrize("build", [_ser_table, _rfc_table])
def test_the_shipped_tables_have_no_overwritten_row(build: Callable[[], Table]) -> None:
    # The builders raise DuplicateRow, so building is the check; the rows that used to be
    # overwritten keep the behaviour of the later (winning) row.
    table = build()
    if build is _rfc_table:
        unsubscribe = (Action.STOP, Action.SEND_UNSUBSCRIBE)
        for key in ((State.UNCONFIRMED_DESTROY, Event.R_TIMEOUT_DIALOG_UP),
                    (State.RESUBSCRIPTION_DESTROY, Event.R_FAIL),
                    (State.RESUBSCRIPTION_DESTROY, Event.R423)):
            assert table[key].actions == unsubscribe and table[key].next is State.PREDESTROYED
