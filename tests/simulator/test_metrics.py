"""The run metrics' meter (``Metrics.count``) reads what ``classify`` reads.

The meter reads each datagram's label in place and remembers what it can of the first bytes
(``_heads``, ``_codes``, ``_methods``) and counts the current 10-second bin's datagrams per
label slot; these tests feed it datagrams of every shape, one meter for a whole sequence
(so the remembered readings are used), and compare every figure with the plain reading:
``classify`` for the labels, the first Via's branch and the first To's tag from copies of
their lines for the SUBSCRIBE retransmissions.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.metrics import BIN_SECONDS, FINE_BIN_SECONDS, Metrics, _cseq_method, classify

PIECES = [
    b"SIP/2.0 ", b"SIP/2.0", b"SIP/2.0 200 OK", b"200", b"20", b"2\r\n", b"4\r", b"\r\n",
    b"\r", b"\n", b" ", b"  ", b"NOTIFY", b"NOTIFY sip:a SIP/2.0", b"SUBSCRIBE", b"REGISTER",
    b"UNSUBSCRIBE ", b"\r\nCSeq: 1 NOTIFY", b"\r\nCSeq:  2  SUBSCRIBE \r\n", b"\r\nCSeq: 3",
    b"\r\nCSeq:", b"x", b"\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa", b";branch=b2", b",",
    b";", b"\r\nVia:", b"\r\nTo: <sip:a>", b";tag=1", b"\r\nTo:", b"Content-Length: 0\r\n\r\n",
]  # fmt: skip
FATES = ["delivered", "delivered", "delivered", "lost", "duplicated", "partitioned", "odd"]
_BRANCH = re.compile(rb"branch=([^;, ]*)")


def _classified(data: bytes) -> tuple[str, str]:
    """What ``classify`` reads, written out with slices up to find()'s answers."""
    end = data.find(b"\r\n")
    line = data[: end if end >= 0 else len(data)]
    if line.startswith(b"SIP/2.0 "):
        code = line[8:11].decode("ascii", "replace")
        start = data.find(b"\r\nCSeq:")
        method = "?"
        if start >= 0:
            parts = data[start + 7 : data.find(b"\r\n", start + 2)].split()
            if len(parts) == 2:
                method = parts[1].decode("ascii", "replace")
        return "response", f"{code} {method}"
    space = line.find(b" ")
    return "request", line[: space if space > 0 else len(line)].decode("ascii", "replace")


def _line(data: bytes, name: bytes) -> bytes:
    start = data.find(b"\r\n" + name)
    return b"" if start < 0 else data[start + 2 : data.find(b"\r\n", start + 2)]


def _datagram() -> st.SearchStrategy[bytes]:
    return st.lists(st.sampled_from(PIECES), max_size=10).map(b"".join)


_STEPS = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.001, 0.4, 1.0, 7.5, 35.0, 70.0]),
        st.one_of(_datagram(), _datagram().map(lambda d: b"SUBSCRIBE " + d)),
        st.sampled_from(FATES),
    ),
    min_size=1,
    max_size=40,
)


def _expected(steps: list[tuple[float, bytes, str]]) -> dict[str, object]:
    requests: Counter[str] = Counter()
    responses: Counter[str] = Counter()
    fates: Counter[str] = Counter()
    fine: dict[int, Counter[str]] = {}
    per_second: Counter[int] = Counter()
    retransmissions = initial = 0
    seen: dict[bytes, int] = {}  # branch -> window epoch it was last new in
    for now, data, fate in steps:
        kind, label = _classified(data)
        assert classify(data) == (kind, label)
        (responses if kind == "response" else requests)[label] += 1
        fates[fate] += 1
        per_second[int(now)] += 1
        column = label[0] + "xx" if kind == "response" else label
        fine.setdefault(int(now) // FINE_BIN_SECONDS, Counter())[column] += 1
        if kind == "request" and label == "SUBSCRIBE":
            match = _BRANCH.search(_line(data, b"Via:"))
            branch = b"" if match is None else match.group(1)
            epoch = int(now // 64.0)
            if seen.get(branch, -9) >= epoch - 1:
                retransmissions += 1
                continue
            seen[branch] = epoch
            initial += b";tag=" not in _line(data, b"To:")
    return {
        "requests": requests,
        "responses": responses,
        "fates": fates,
        "fine": fine,
        "per_second": per_second,
        "retries": (retransmissions, initial),
    }


FIGURES: dict[str, Callable[[Metrics], object]] = {
    "requests": lambda m: m.requests,
    "responses": lambda m: m.responses,
    "fates": lambda m: m.fates,
    "fine": lambda m: m.fine,
    "per_second": lambda m: m.per_second,
    "retries": lambda m: (m.subscribe_retransmissions, m.initial_subscribes),
}


def _measured(metrics: Metrics, first: str) -> dict[str, object]:
    """Every figure, ``first`` read first (each must see the counts not yet in the table)."""
    figures = {first: FIGURES[first](metrics)}
    figures.update((name, read(metrics)) for name, read in FIGURES.items() if name != first)
    return figures


@settings(max_examples=600, deadline=None)
@given(_STEPS, st.integers(min_value=0, max_value=40), st.sampled_from(sorted(FIGURES)))
def test_meter_reads_what_classify_reads(
    steps: list[tuple[float, bytes, str]], cut: int, first: str
) -> None:
    metrics = Metrics(3600.0)
    now = 0.0
    timed = []
    for step, data, fate in steps:
        now += step
        kind, label = classify(data)
        if kind == "response" and label.startswith(" "):
            continue  # no code: Metrics.fine fails on it (its column is the code's digit)
        timed.append((now, data, fate))
    for index, (at, data, fate) in enumerate(timed):
        if index == cut:  # figures read part-way: the counts so far, then counting goes on
            assert _measured(metrics, first) == _expected(timed[:index])
        metrics.count(at, data, fate)
    assert _measured(metrics, first) == _expected(timed)


def test_meter_remembers_first_bytes_that_tell_the_label_only() -> None:
    metrics = Metrics(3600.0)
    metrics.count(0.5, b"NOTIFY sip:a SIP/2.0\r\n\r\n", "delivered")
    metrics.count(0.5, b"SIP/2.0 200 OK\r\nCSeq: 1 NOTIFY\r\n\r\n", "delivered")
    metrics.count(0.5, b"SIP/2.0 4\r\n", "delivered")  # no whole code: not remembered
    metrics.count(0.5, b"UNSUBSCRIBE sip:a SIP/2.0\r\n", "delivered")  # token too long
    assert set(metrics._heads) == {b"NOTIFY sip:", b"SIP/2.0 200"}
    # The same first bytes with other labels after them.
    metrics.count(0.5, b"NOTIFY sip:b SIP/2.0\r\n\r\n", "lost")
    metrics.count(0.5, b"SIP/2.0 200 OK\r\nCSeq: 2 SUBSCRIBE\r\n\r\n", "delivered")
    assert metrics.requests == Counter({"NOTIFY": 2, "UNSUBSCRIBE": 1})
    assert metrics.responses == Counter({"200 NOTIFY": 1, "200 SUBSCRIBE": 1, "4 ?": 1})
    assert metrics.fates == Counter({"delivered": 5, "lost": 1})


def test_counts_of_a_bin_reach_the_minute_rows_when_the_bin_ends() -> None:
    metrics = Metrics(2 * BIN_SECONDS)
    for second in (1.0, 12.0, 59.5, 61.0):
        metrics.count(second, b"NOTIFY sip:a SIP/2.0\r\n\r\n", "delivered")
    rows = metrics.timeseries_rows()
    assert [row["notify"] for row in rows] == [3, 1]
    assert metrics.summary()["messages"]["total"] == 4


def test_cseq_method_is_classifys() -> None:
    for data in (
        b"SIP/2.0 200 OK\r\nCSeq: 1 NOTIFY\r\n",
        b"SIP/2.0 200 OK\r\nCSeq: 1 NOTIFYx",
        b"SIP/2.0 200\r\nCSeq: 1\r\n",
        b"SIP/2.0 200\r\n",
        b"SIP/2.0 200\r\nCSeq:",
        b"SIP/2.0 200\r\nCSeq:x",
        b"SIP/2.0 200\r\nCSeq: 1 A",
    ):
        assert f"200 {_cseq_method(data).decode()}" == classify(data)[1] == _classified(data)[1]


class _NothingSeen:
    def see_change(self, sid: int, change: float) -> bool:
        return False


def test_deliveries_land_in_the_minute_bin_of_their_time() -> None:
    # Metrics.delivered keeps the last delivery's bin and span; a delivery must still land
    # in bin int(now // BIN_SECONDS), at the edges of the spans too, in any time order.
    times = [0, 0.0, 1e-300, 59.99999999999999, 60.0, 60.00000000000001, 119.99999999999999,
             120.0, 30.0, 7 * BIN_SECONDS - 5e-15, 7 * BIN_SECONDS, 3599.9999999999995,
             3600.0, 61.5, 0.5]  # fmt: skip
    times += [i * 0.37 + j * 1e-13 for i in range(2000) for j in (-1, 0, 1) if i * 0.37 > 1e-12]
    metrics = Metrics(3600.0)
    metrics.seen = _NothingSeen()
    expected: Counter[int] = Counter()
    for now in times:
        metrics.delivered(1, "sip:r@x", "active", now)
        expected[int(now // BIN_SECONDS)] += 1
    assert {i: b.deliveries for i, b in metrics.bins.items()} == expected
