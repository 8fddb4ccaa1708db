"""StatusMessage and the MessageQueue bound policy: supersede, over_bound, never silent loss."""

from __future__ import annotations

import json

import hypothesis.strategies as st
from hypothesis import given, settings

from reference.pidf import build_pidf, parse_pidf
from reference.qsa import MessageQueue, StatusMessage


def msg(handle: int, n: int = 0, status: str = "active") -> StatusMessage:
    return StatusMessage(handle=handle, record=f"sip:r{handle}@x", subscriber="sip:s@x",
                         package="presence", status=status, at=float(n), reason=str(n))


def test_fifo_below_bound() -> None:
    q = MessageQueue(bound=10)
    for i in range(5):
        q.put(msg(i % 2, i))
    assert [m.at for m in q.pop_all()] == [0, 1, 2, 3, 4]
    assert q.pop() is None
    assert q.stats.delivered == 5 and q.stats.popped == 5 and q.stats.superseded == 0


def test_full_queue_supersedes_same_subscription() -> None:
    q = MessageQueue(bound=2)
    q.put(msg(1, 0))
    q.put(msg(2, 1))
    q.put(msg(1, 2))  # replaces handle 1's older message
    items = list(q)
    assert [(m.handle, m.at) for m in items] == [(2, 1.0), (1, 2.0)]
    assert items[1].superseded == 1
    q.put(msg(1, 3))
    items = list(q)
    assert [(m.handle, m.at, m.superseded) for m in items] == [(2, 1.0, 0), (1, 3.0, 2)]
    assert q.stats.superseded == 2 and q.stats.over_bound == 0


def test_full_queue_supersedes_other_subscription_with_newer_message() -> None:
    q = MessageQueue(bound=3)
    q.put(msg(1, 0))
    q.put(msg(1, 1))
    q.put(msg(2, 2))
    q.put(msg(3, 3))  # handle 3 has nothing queued; handle 1's oldest goes, carried forward
    items = list(q)
    assert [(m.handle, m.at) for m in items] == [(1, 1.0), (2, 2.0), (3, 3.0)]
    assert items[0].superseded == 1
    assert len(q) == 3


def test_over_bound_when_every_message_is_the_latest() -> None:
    q = MessageQueue(bound=2)
    q.put(msg(1))
    q.put(msg(2))
    q.put(msg(3))
    assert len(q) == 3 and q.stats.over_bound == 1
    assert {m.handle for m in q.pop_all()} == {1, 2, 3}


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 5), st.lists(st.integers(0, 4), max_size=60),
       st.lists(st.booleans(), max_size=60))
def test_no_silent_loss(bound: int, handles: list[int], pops: list[bool]) -> None:
    """Every put is popped, still queued, or accounted for in `superseded`; the latest
    message of each subscription is always kept; FIFO per subscription; len bounded by
    bound + over_bound."""
    q = MessageQueue(bound=bound)
    popped: list[StatusMessage] = []
    latest: dict[int, float] = {}
    for n, handle in enumerate(handles):
        q.put(msg(handle, n))
        latest[handle] = float(n)
        if n < len(pops) and pops[n]:
            m = q.pop()
            if m is not None:
                popped.append(m)
        assert len(q) <= bound + q.stats.over_bound
    queued = list(q)
    accounted = len(popped) + len(queued) + q.stats.superseded
    assert accounted == len(handles)
    assert sum(m.superseded for m in popped + queued) == q.stats.superseded
    for handle, at in latest.items():
        assert any(m.handle == handle and m.at == at for m in popped + queued)
    for handle in latest:
        seq = [m.at for m in popped + queued if m.handle == handle]
        assert seq == sorted(seq)


def test_status_message_json() -> None:
    doc = parse_pidf(build_pidf("sip:bob@x", basic="open"))
    m = StatusMessage(handle=3, record="sip:bob@x", subscriber="sip:a@x", package="presence",
                      status="active", document=doc, body=b"<x/>", content_type="t/x",
                      reason=None, retry_at=12.5, subscriber_data=object(), at=1.0)
    data = m.to_json()
    json.dumps(data)  # JSON-safe (subscriber_data is not exported)
    assert data["status"] == "active" and data["retry_at"] == 12.5
    assert data["document"] == doc.to_json() and data["body"] == "<x/>"
    assert "subscriber_data" not in data
