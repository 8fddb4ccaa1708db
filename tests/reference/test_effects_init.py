"""The effects' hand-written __init__s (reference/effects.py) build what the dataclass
decorator's generated frozen __init__ would: the same fields in field order, defaults,
keyword calls, equality, hash, repr, immutability and `dataclasses.replace`."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from reference.effects import Deliver, Send, TraceEvent
from reference.qsa import StatusMessage

_MESSAGE = StatusMessage(handle=1, record="sip:a@b", subscriber="s", package="presence",
                         status="active")


def _generated(cls: type[Any]) -> type[Any]:
    """`cls` as the decorator alone makes it (its generated __init__)."""
    namespace = {"__annotations__": dict(cls.__annotations__)}
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING:
            namespace[field.name] = field.default
    plain = type(cls.__name__, (), namespace)
    plain.__module__ = cls.__module__
    return dataclasses.dataclass(frozen=True)(plain)


@pytest.mark.parametrize(("cls", "args", "kwargs"), [
    (Send, (b"x", ("h", 5060)), {}),
    (Send, (b"x", ("h", 5060), True, "tcp"), {}),
    (Send, (), {"data": b"", "destination": ("h", 1), "transport": "tcp"}),
    (Deliver, ("queue", _MESSAGE), {}),
    (Deliver, (), {"message": _MESSAGE, "destination": "q"}),
    (TraceEvent, (1.5, "state", {"handle": 1}), {}),
])
def test_an_effect_equals_the_generated_construction(cls: type[Any], args: tuple[Any, ...],
                                                      kwargs: dict[str, Any]) -> None:
    made = cls(*args, **kwargs)
    reference = _generated(cls)(*args, **kwargs)
    assert list(vars(made).items()) == list(vars(reference).items())
    assert list(vars(made)) == [field.name for field in dataclasses.fields(cls)]
    assert repr(made) == repr(reference)
    assert made == cls(*args, **kwargs)
    if cls is not TraceEvent:  # (a dict field: not hashable either way)
        assert hash(made) == hash(reference)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.kind = "x"
    first = dataclasses.fields(cls)[0].name
    assert getattr(dataclasses.replace(made, **{first: getattr(made, first)}), first) \
        == getattr(made, first)


def test_missing_arguments_still_raise() -> None:
    with pytest.raises(TypeError):
        Send(b"x")  # type: ignore[call-arg]
