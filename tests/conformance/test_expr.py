from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.expr import ExprError, evaluate

NAMES = {"expires": 60.0, "resubscribe_delta": 30.0, "t1": 0.5}


@pytest.mark.parametrize(("text", "value"), [
    ("expires - resubscribe_delta", 30.0),
    ("64 * t1", 32.0),
    ("(expires + 4) / 2", 32.0),
    ("max(expires - 50, resubscribe_delta) + -1", 29.0),
    ("min(1, 2, 3)", 1.0),
    ("-t1 * -2", 1.0),
    (".5 + 1.", 1.5),
    (7, 7.0),
])
def test_evaluates(text: object, value: float) -> None:
    assert evaluate(text, NAMES) == value


@pytest.mark.parametrize("text", [
    "expires -", "unknown + 1", "__import__('os')", "1 / 0", "sum(1)", "(1", "1 2",
    "expires ** 2", "", "min()",
])
def test_rejects(text: str) -> None:
    with pytest.raises(ExprError):
        evaluate(text, NAMES)


def test_rejects_non_numbers() -> None:
    with pytest.raises(ExprError):
        evaluate(True, NAMES)
    with pytest.raises(ExprError):
        evaluate([1], NAMES)


@given(st.integers(-10**6, 10**6), st.integers(-10**6, 10**6), st.integers(1, 1000))
def test_matches_python_arithmetic(a: int, b: int, c: int) -> None:
    assert evaluate(f"{a} + {b} * ({a} - {b}) / {c}", {}) == pytest.approx(a + b * (a - b) / c)
    assert evaluate(f"max({a}, {b}) - min({a}, {b})", {}) == abs(a - b)


@given(st.text(alphabet="0123456789+-*/() .maxinexpires,", max_size=30))
def test_never_raises_anything_but_expr_error(text: str) -> None:
    with contextlib.suppress(ExprError):
        evaluate(text, NAMES)
