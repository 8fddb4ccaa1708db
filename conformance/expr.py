"""A small, safe arithmetic language for scenario times (no `eval`).

Grammar (whitespace ignored)::

    expr    := term (('+' | '-') term)*
    term    := factor (('*' | '/') factor)*
    factor  := ('+' | '-') factor | NUMBER | NAME | NAME '(' expr (',' expr)* ')' | '(' expr ')'

Names are agent parameters (resolved from the scenario's effective `AgentConfig`); the only
functions are `min` and `max`. A YAML number is accepted as is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|([A-Za-z_][A-Za-z0-9_]*)|(.))")
FUNCTIONS = {"min": min, "max": max}


class ExprError(ValueError):
    """The text is not a valid expression, or names an unknown parameter."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:  # pragma: no cover - the pattern matches any character
            raise ExprError(f"cannot read {text[pos:]!r}")
        number, name, other = match.groups()
        if number is not None:
            out.append(("num", number))
        elif name is not None:
            out.append(("name", name))
        elif other is not None:
            if other not in "+-*/(),":
                raise ExprError(f"unexpected character {other!r} in {text!r}")
            out.append(("op", other))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str, names: Mapping[str, float]) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0
        self.names = names

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            want = f"{value!r}" if value else "a value"
            raise ExprError(f"expected {want} in {self.text!r}")
        self.pos += 1
        return token

    def parse(self) -> float:
        value = self.expr()
        if self.peek() is not None:
            raise ExprError(f"unexpected {self.peek()[1]!r} in {self.text!r}")  # type: ignore[index]
        return value

    def expr(self) -> float:
        value = self.term()
        while (token := self.peek()) is not None and token[1] in "+-" and token[0] == "op":
            self.pos += 1
            right = self.term()
            value = value + right if token[1] == "+" else value - right
        return value

    def term(self) -> float:
        value = self.factor()
        while (token := self.peek()) is not None and token[1] in "*/" and token[0] == "op":
            self.pos += 1
            right = self.factor()
            if token[1] == "*":
                value *= right
            else:
                if right == 0:
                    raise ExprError(f"division by zero in {self.text!r}")
                value /= right
        return value

    def factor(self) -> float:
        kind, text = self.take()
        if kind == "op" and text in "+-":
            value = self.factor()
            return value if text == "+" else -value
        if kind == "num":
            return float(text)
        if kind == "op" and text == "(":
            value = self.expr()
            self.take(")")
            return value
        if kind == "name":
            token = self.peek()
            if token is not None and token[1] == "(":
                if text not in FUNCTIONS:
                    raise ExprError(f"unknown function {text!r} in {self.text!r}")
                self.pos += 1
                args = [self.expr()]
                while (token := self.peek()) is not None and token[1] == ",":
                    self.pos += 1
                    args.append(self.expr())
                self.take(")")
                return float(FUNCTIONS[text](args))
            if text not in self.names:
                raise ExprError(f"unknown parameter {text!r} in {self.text!r}")
            return float(self.names[text])
        raise ExprError(f"unexpected {text!r} in {self.text!r}")


def evaluate(value: object, names: Mapping[str, float]) -> float:
    """A YAML number, or an expression string, as seconds."""
    if isinstance(value, bool):
        raise ExprError(f"expected a number or expression, not {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise ExprError(f"expected a number or expression, not {value!r}")
    return _Parser(value, names).parse()


def check(value: object, names: Mapping[str, float]) -> str | None:
    """None if `value` evaluates; otherwise the error text (used by `lint`)."""
    try:
        evaluate(value, names)
    except ExprError as exc:
        return str(exc)
    return None
