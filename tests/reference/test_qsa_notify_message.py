"""reference.qsa.notify_message builds the StatusMessage its constructor would: every
field, equality, hash, repr, immutability and `dataclasses.replace`."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.pidf import PresenceDocument, build_pidf, parse_pidf
from reference.qsa import StatusMessage, notify_message

_DOCUMENT = parse_pidf(build_pidf("sip:alice@lab.test", basic="open"))


@settings(max_examples=200, deadline=None)
@given(handle=st.integers(), text=st.text(max_size=5), document=st.sampled_from([None, _DOCUMENT]),
       body=st.binary(max_size=5), optional=st.none() | st.text(max_size=5),
       retry_at=st.none() | st.floats(allow_nan=False), data=st.none() | st.integers(),
       at=st.floats(allow_nan=False))
def test_notify_message_equals_the_constructed_one(handle: int, text: str,
                                                   document: PresenceDocument | None,
                                                   body: bytes,
                                                   optional: str | None,
                                                   retry_at: float | None, data: object,
                                                   at: float) -> None:
    made = notify_message(handle, text, text + "s", "presence", "active", document, body,
                          optional, optional, retry_at, data, at)
    constructed = StatusMessage(
        handle=handle, record=text, subscriber=text + "s", package="presence",
        status="active", document=document, body=body, content_type=optional,
        reason=optional, retry_at=retry_at, subscriber_data=data, at=at)
    assert made == constructed and hash(made) == hash(constructed)
    assert repr(made) == repr(constructed)
    assert vars(made) == vars(constructed)
    assert list(vars(made)) == [field.name for field in dataclasses.fields(StatusMessage)]


def test_notify_message_is_frozen_and_replaceable() -> None:
    made = notify_message(1, "r", "s", "presence", "active", None, b"", None, None, None,
                          None, 0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.status = "terminated"  # type: ignore[misc]
    assert dataclasses.replace(made, superseded=2).superseded == 2
    assert made.to_json()["superseded"] == 0
