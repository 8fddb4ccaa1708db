"""Issue 17 in the simulator: the notifier model serving `reg` and resource lists, and the
stream (TCP) transport of the network model, on small populations with counted checks."""

from __future__ import annotations

import io
import ipaddress
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from reference.reginfo import parse_reginfo
from reference.rlmi import parse_list_body
from reference.sip import Request, parse_message
from simulator.network import Datagram
from simulator.packages_model import UDP_LIMIT, PackageNotifier
from simulator.pcap import read_pcap
from simulator.run import WALL_CLOCK_FIELDS, build, run_workload
from simulator.workload import Workload, WorkloadError, load_workload, workload_from_mapping

ROOT = Path(__file__).resolve().parents[2]
QUIET = {"latency": {"kind": "constant", "value": 0.01}}


def _workload(**overrides: Any) -> Workload:
    data: dict[str, Any] = {
        "kind": "workload",
        "name": "small",
        "duration": 900,
        "watchers": 6,
        "presentities": 8,
        "contacts": 3,
        "ramp_up": 10,
        "agent": {"profile": "rfc6665",
                  "parameters": {"default_expiration": 600, "transports": "udp,tcp"}},
        "notifier": {"max_expires": 600},
        "network": QUIET,
    }
    data.update(overrides)
    return workload_from_mapping(data, "test.yaml")


def _reg(**overrides: Any) -> Workload:
    base: dict[str, Any] = {
        "package": "reg",
        "reg": {"contacts": 2, "refreshes_per_hour": 0, "expiries_per_hour": 0,
                "reregister_after": 30},
    }
    base.update(overrides)
    return _workload(**base)


def _lists(size: Any = 4, **overrides: Any) -> Workload:
    base: dict[str, Any] = {
        "package": "presence-list",
        "presentities": 30,
        "lists": {"count": 5, "size": size},
    }
    base.update(overrides)
    return _workload(**base)


class _Notifies:
    """Taps the NOTIFYs sent (with transport) and their bodies."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Request]] = []

    def __call__(self, record: Datagram) -> None:
        if record.data.startswith(b"NOTIFY "):
            message = parse_message(record.data)
            assert isinstance(message, Request)
            self.sent.append((record.transport, message))


def _watching(sim: Any, record: int) -> int:
    return sum(1 for s in sim.live.values() if s.record == record)


def test_reg_notifies_are_initial_plus_changes_with_rising_versions() -> None:
    sim = build(_reg(), 3, keep_queues=True)
    tap = _Notifies()
    sim.network.add_tap(tap)
    notifier = sim.notifiers[0]
    assert isinstance(notifier, PackageNotifier)
    domain = sim.domains[0]
    expected_partial: list[int] = []

    def event(record: int, kind: str) -> None:
        expected_partial.append(_watching(sim, record))
        notifier.registration_event(domain.records[record], kind)

    plan = [(100.0, 0, "refresh"), (150.0, 1, "expire"), (200.0, 0, "expire"),
            (300.0, 5, "refresh"), (320.0, 7, "expire")]  # fmt: skip
    for at, record, kind in plan:
        sim.call_at(at, lambda r=record, k=kind: event(r, k))  # type: ignore[misc]
    sim.run(500.0)
    subs = sim.metrics.subscribe_calls
    assert subs == 6 * 3
    # Each expiry re-registers 30 s later: one more partial NOTIFY per watcher then.
    expirations = [n for (_at, _r, kind), n in zip(plan, expected_partial, strict=True)
                   if kind == "expire"]  # fmt: skip
    partial = sum(expected_partial) + sum(expirations)
    assert partial > 0
    summary = sim.metrics.summary()
    assert summary["messages"]["requests"]["NOTIFY"] == subs + partial
    assert notifier.counters["notify_full"] == subs
    assert notifier.counters["notify_partial"] == partial
    # One status message per registration per NOTIFY, each naming the AOR.
    assert summary["status_deliveries"] == {"active": subs + partial}
    messages = [m for q in domain.agent.queues.values() for m in q.pop_all()]
    assert {m.registration.aor for m in messages if m.registration} <= set(domain.records)
    assert all(m.package == "reg" and m.registration is not None for m in messages)
    # Per dialog: version 0 full, then partial versions 1, 2, ...
    versions: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for _transport, notify in tap.sent:
        assert notify.headers.get("Event") == "reg"
        document = parse_reginfo(notify.body)
        versions[notify.call_id].append((document.version, document.state))
    for sequence in versions.values():
        assert sequence[0] == (0, "full")
        assert [v for v, _s in sequence] == list(range(len(sequence)))
        assert all(state == "partial" for _v, state in sequence[1:])
    # The expired contact is reported terminated, then active again.
    record1 = domain.records[1]
    reported = [c for m in messages if m.registration and m.registration.aor == record1
                for c in m.registration.contacts]  # fmt: skip
    if _watching(sim, 1):
        assert [c.event for c in reported if c.state == "terminated"] != []
        assert reported[-1].event == "registered" and reported[-1].state == "active"


def test_list_notifies_full_then_one_resource_per_change_and_big_ones_over_tcp() -> None:
    sim = build(_lists(size=6), 4, keep_queues=True)
    tap = _Notifies()
    sim.network.add_tap(tap)
    notifier = sim.notifiers[0]
    assert isinstance(notifier, PackageNotifier) and notifier.lists is not None
    lists = notifier.lists
    domain = sim.domains[0]
    partial_expected: list[int] = []

    def change(member: str) -> None:
        holders = lists.holding.get(member, [])
        partial_expected.append(sum(_watching(sim, domain.records.index(u)) for u in holders))
        notifier.change_presence(member)

    members = [m for m in sim.members if lists.holding.get(m)][:4]
    for index, member in enumerate(members):
        sim.call_at(100.0 + 50 * index, lambda m=member: change(m))  # type: ignore[misc]
    sim.run(400.0)
    subs = sim.metrics.subscribe_calls
    partial = sum(partial_expected)
    assert partial > 0
    summary = sim.metrics.summary()
    assert summary["messages"]["requests"]["NOTIFY"] == subs + partial
    full = [n for _t, n in tap.sent if b'fullState="true"' in n.body]
    assert len(full) == subs
    # Status messages: every member of the list on full state, one resource per change.
    assert summary["status_deliveries"]["active"] == 6 * subs + partial
    messages = [m for q in domain.agent.queues.values() for m in q.pop_all()]
    assert all(m.list_uri in lists.members and m.resource in lists.members[m.list_uri]
               for m in messages)  # fmt: skip
    # Transport: exactly the NOTIFYs over UDP_LIMIT went over TCP (none of the partial ones).
    for transport, notify in tap.sent:
        big = len(notify.to_bytes()) > UDP_LIMIT
        assert transport == ("tcp" if big else "udp")
        assert notify.top_via is not None and notify.top_via.transport == transport.upper()
        body = parse_list_body(notify.body, notify.content_type.params)  # type: ignore[union-attr]
        assert len(body.rlmi.resources) == (6 if body.rlmi.full_state else 1)
    tcp_notifies = sum(1 for t, _n in tap.sent if t == "tcp")
    assert tcp_notifies == len(full) > 0
    # The agent answered each on its connection.
    assert domain.agent.agent.counters["rx.tcp_messages"] == tcp_notifies
    assert sim.streams is not None
    assert sim.streams.by_type == {"NOTIFY": tcp_notifies, "200 NOTIFY": tcp_notifies}
    assert sim.streams.counters["connections_opened"] == 1


def test_summary_reports_tcp_and_udp_messages_and_package_deliveries() -> None:
    result = run_workload(_lists(size=6, duration=300), 2)
    summary = result.summary
    transport = summary["transport"]
    tcp = sum(summary["tcp_messages_by_type"].values())
    assert transport["tcp_messages"] == tcp > 0
    assert transport["udp_messages"] + tcp == summary["messages"]["total"]
    # Half of them are NOTIFYs over UDP_LIMIT bytes, the other half their 200s.
    assert transport["tcp_bytes"] > UDP_LIMIT * tcp / 2
    assert summary["package"] == "presence-list"
    by_package = summary["status_deliveries_by_package"]
    assert by_package == {f"presence-list {k}": v for k, v in summary["status_deliveries"].items()}


def test_connection_loss_fails_the_notify_in_flight_and_the_next_opens_a_new_one() -> None:
    wl = _lists(size=6, watchers=1, contacts=1, ramp_up=0,
                network={"latency": {"kind": "constant", "value": 0.2}})  # fmt: skip
    sim = build(wl, 1)
    notifier = sim.notifiers[0]
    streams = sim.streams
    assert streams is not None
    # The SUBSCRIBE leaves at 0, arrives at 0.2; the 200 and the full-state NOTIFY leave
    # then, the NOTIFY on a new connection (one round trip of handshake first).
    sim.call_at(0.5, lambda: streams.drop("ps"))
    sim.run(1.0)
    assert streams.counters["lost_in_flight"] == 1
    assert notifier.counters["notify_transport_lost"] == 1
    assert notifier.dialog_count == 0  # RFC 6665 §4.2.2: the subscription ended
    # A new subscription's full-state NOTIFY opens a new connection and gets through.
    domain = sim.domains[0]
    sim.call_at(2.0, lambda: sim.subscribe(domain, 0, (sim.live[next(iter(sim.live))].record
                                                       + 1) % 5))  # fmt: skip
    sim.run(5.0)
    assert streams.counters["connections_opened"] == 2
    assert streams.counters["delivered"] >= 2
    assert notifier.dialog_count == 1


def test_connection_loss_fails_the_agents_subscribe_in_flight_as_a_503() -> None:
    # Presence over TCP: the notifier's Contact asks for TCP, so refreshes go over it.
    wl = _workload(watchers=1, contacts=1, presentities=1, ramp_up=0,
                   notifier={"max_expires": 120, "transport": "tcp"},
                   agent={"profile": "rfc6665",
                          "parameters": {"default_expiration": 120, "transports": "udp,tcp",
                                         "resubscribe_delta": 30}},
                   network={"latency": {"kind": "constant", "value": 0.2}})  # fmt: skip
    trace = io.StringIO()
    sim = build(wl, 1, trace=trace)
    streams = sim.streams
    assert streams is not None
    sends: list[float] = []

    def first_tcp_subscribe(d: Datagram) -> None:
        # Drop the connection while the first SUBSCRIBE over TCP (the refresh) is in flight.
        if d.transport == "tcp" and d.data.startswith(b"SUBSCRIBE "):
            sends.append(d.time)
            if len(sends) == 1:
                sim.call_at(d.time + 0.1, lambda: streams.drop("ps"))

    sim.network.add_tap(first_tcp_subscribe)
    sim.run(400.0)
    assert sends and 80.0 < sends[0] < 100.0  # the refresh, 30 s before expiry, over TCP
    agent = sim.domains[0].agent.agent
    assert agent.counters["tx.transport_lost"] == 1
    assert streams.counters["lost_in_flight"] == 1
    assert streams.counters["connections_opened"] >= 2
    # The subscription came back (a later refresh or a new dialog got its 200).
    assert sim.notifiers[0].dialog_count == 1
    assert any('"kind": "send"' in line and line and json.loads(line)["t"] > sends[0] + 0.1
               for line in trace.getvalue().splitlines())  # fmt: skip


def test_package_runs_replay_byte_identically_with_tcp_in_the_pcap(tmp_path: Path) -> None:
    wl = _lists(size={"distribution": "lognormal", "median": 5, "sigma": 0.8, "min": 1,
                      "max": 20},
                presence_changes_per_hour=30, watchers=10, contacts=1,
                network={"latency": {"kind": "uniform", "low": 0.005, "high": 0.05},
                         "loss": 0.05},
                faults=[{"kind": "connection_loss", "start": 400}])  # fmt: skip
    outputs = []
    for seed in (5, 5, 6):
        trace, pcap = io.StringIO(), io.BytesIO()
        result = run_workload(wl, seed, trace=trace, pcap=pcap)
        stable = {k: v for k, v in result.summary.items() if k not in WALL_CLOCK_FIELDS}
        outputs.append((json.dumps(stable, sort_keys=True), trace.getvalue(), pcap.getvalue()))
    assert outputs[0] == outputs[1]
    assert outputs[0][0] != outputs[2][0] and outputs[0][2] != outputs[2][2]
    summary = json.loads(outputs[0][0])
    assert summary["transport"]["tcp_messages"] > 0
    assert summary["transport"]["connections_lost"] == 1
    assert len([line for line in outputs[0][1].splitlines() if '"transport": "tcp"' in line]) \
        == summary["transport"]["tcp_messages"]


def test_pcap_tcp_segments_reassemble_to_the_messages_sent(tmp_path: Path) -> None:
    wl = _lists(size=8, watchers=4, contacts=2, presence_changes_per_hour=60, duration=300,
                faults=[{"kind": "connection_loss", "start": 100}])  # fmt: skip
    pcap = io.BytesIO()
    sim = build(wl, 7, pcap=pcap)
    sent: dict[tuple[bytes, int, bytes, int], bytes] = defaultdict(bytes)
    datagrams = 0

    def tap(d: Datagram) -> None:
        nonlocal datagrams
        if d.transport == "tcp":
            key = (ipaddress.IPv4Address(d.source[0]).packed, d.source[1],
                   ipaddress.IPv4Address(d.destination[0]).packed, d.destination[1])
            sent[key] += d.data
        else:
            datagrams += 1

    sim.network.add_tap(tap)
    sim.call_at(200.0, lambda: sim.subscribe(sim.domains[0], 0, 4))
    sim.run(300.0)
    path = tmp_path / "traffic.pcap"
    path.write_bytes(pcap.getvalue())
    captured: dict[tuple[bytes, int, bytes, int], bytes] = defaultdict(bytes)
    udp = 0
    for _t, src, dst, sport, dport, payload in read_pcap(path):  # checksums checked
        if 40000 <= sport < 60000 or 40000 <= dport < 60000:
            captured[(src, sport, dst, dport)] += payload
        else:
            udp += 1
    assert sim.streams is not None and sim.streams.counters["connections_opened"] == 2
    assert len(sent) == 4  # two connections, both directions
    assert dict(captured) == dict(sent)
    assert udp == datagrams


def test_presence_workloads_build_no_stream_layer() -> None:
    sim = build(_workload(agent={"profile": "rfc6665"}), 1)
    assert sim.streams is None
    assert not isinstance(sim.notifiers[0], PackageNotifier)
    assert "transport" not in run_workload(_workload(agent={"profile": "rfc6665"},
                                                     duration=120), 1).summary


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"package": "reg", "servers": 2}, "package: reg needs topology single"),
        ({"lists": {"count": 3}}, "lists: only for package presence-list"),
        ({"package": "presence-list",
          "lists": {"size": {"distribution": "lognormal", "median": 4}}},
         "lists.size.min: required for lognormal sizes"),
        ({"package": "presence-list", "lists": {"size": 101}}, "lists.size"),
        ({"faults": [{"kind": "connection_loss", "start": 5, "bogus": 1}]}, "faults[0]"),
    ],
)
def test_workload_errors_name_the_field(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(WorkloadError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _workload(**overrides)


@pytest.mark.parametrize("name", ["reg-10k", "list-1k"])
def test_shipped_package_workloads_load_and_use_tcp(name: str) -> None:
    wl = load_workload(ROOT / "scenarios" / "load" / f"{name}.yaml")
    assert wl.uses_streams and wl.package in ("reg", "presence-list")
    small = wl.replace(watchers=40, duration=120, faults=())
    if wl.package == "reg":
        small = small.replace(presentities=400)
    else:
        small = small.replace(presentities=400, lists=wl.lists.__class__(40, wl.lists.size))
    summary = run_workload(small, 1).summary
    assert summary["transport"]["tcp_messages"] > 0
    assert summary["notifier_counters"]["notify_full"] == summary["retries"]["initial_subscribes"]


def test_b2b_sim_runs_the_list_workload_as_documented(tmp_path: Path) -> None:
    out = tmp_path / "list"
    done = subprocess.run(
        [sys.executable, "-m", "simulator", "run", "scenarios/load/list-1k.yaml", "--seed", "1",
         "--duration", "60", "--no-progress", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["package"] == "presence-list"
    assert summary["transport"]["tcp_messages"] > 0


def test_list_subscription_without_eventlist_gets_421_and_reg_notifier_refuses_presence() -> None:
    sim = build(_lists(watchers=1, contacts=1), 1)
    host = sim.domains[0].agent
    # A plain presence SUBSCRIBE (no Supported: eventlist) to a list URI.
    sim.call_at(20.0, lambda: host.subscribe("sip:l0@lab.test", "sip:x@b2b.test", "x"))
    sim.run(30.0)
    assert sim.notifiers[0].counters["response_421"] == 1
    reg = build(_reg(watchers=1, contacts=1), 1)
    reg_host = reg.domains[0].agent
    reg.call_at(20.0, lambda: reg_host.subscribe("sip:p0@lab.test", "sip:x@b2b.test", "x"))
    reg.run(30.0)
    assert reg.notifiers[0].counters["response_489"] == 1


def test_compare_adds_transport_rows_only_for_runs_that_model_tcp(tmp_path: Path) -> None:
    from simulator.report import compare, write_outputs

    lists = run_workload(_lists(size=6, duration=120), 1)
    presence = run_workload(_workload(agent={"profile": "rfc6665"}, duration=120), 1)
    for name, result in (("lists", lists), ("presence", presence)):
        (tmp_path / name).mkdir()
        write_outputs(result, tmp_path / name)
    table = compare(tmp_path / "presence", tmp_path / "lists", tmp_path / "cmp")
    tcp_row = next(line for line in table.splitlines() if line.startswith("TCP messages"))
    assert tcp_row.split()[-2:] == ["-", str(lists.summary["transport"]["tcp_messages"])]
    plain = compare(tmp_path / "presence", tmp_path / "presence", tmp_path / "cmp")
    assert "TCP" not in plain
