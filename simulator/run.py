"""Build and run one simulation from a workload: topology, population, drivers, faults.

Topologies:
* ``single``: one agent (``b2b.test``) subscribing for ``watchers`` internal subscribers to
  ``presentities`` records on one notifier (``notifier.domain``).
* ``federation``: two domains ``a.test`` and ``b.test``, each with an agent and a notifier.
  ``watchers`` users are split evenly; each user watches ``contacts`` users of the other
  domain (``presentities`` is ignored: the users of the other domain are the presentities).

Issue 17: a workload's ``package`` (``reg``, ``presence-list``; topology single only) makes
the notifier a ``simulator.packages_model.PackageNotifier`` (for lists, the records are the
lists and the presentities their members), and a run that models TCP
(``Workload.uses_streams``) gets one ``simulator.streams.StreamLayer`` shared by its nodes.

Scale comes from callbacks, not processes: subscription starts, presence changes and churn
are each one chain of delayed calls (``simulator.timers.call_later``: where an
``env.timeout`` callback would run, without the Timeout).
"""

from __future__ import annotations

import gc
import importlib.machinery
import io
import os
import random
import resource
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from heapq import heappop
from pathlib import Path
from typing import BinaryIO, TextIO

import simpy
from simpy.core import EmptySchedule, SimTime, StopSimulation
from simpy.events import EventPriority

from reference import AgentConfig
from reference.timers import float_order
from simulator.farm import (
    WATCHER_DOMAIN,
    Shard,
    changes_stream_labels,
    node_spec,
    shard_population,
    shards_of,
)
from simulator.host import MAX_AGENTS, AgentHost
from simulator.merge import WALL_CLOCK_FIELDS as WALL_CLOCK_FIELDS
from simulator.merge import (
    Part,
    ShardResult,
    merge_pcap,
    merge_results,
    merge_trace,
)
from simulator.merge import RunResult as RunResult
from simulator.metrics import Metrics
from simulator.network import Datagram, Network, Partition
from simulator.notifier import Notifier
from simulator.packages_model import (
    ListModel,
    PackageNotifier,
    RegModel,
    package_figures,
    schedule_package_changes,
)
from simulator.pcap import PcapWriter
from simulator.rng import derive_seed, stream
from simulator.streams import StreamLayer
from simulator.timers import call_later
from simulator.trace import TraceWriter
from simulator.workload import NotifierSpec, Workload

SIP_PORT = 5060


class CountingEnvironment(simpy.Environment):
    """A SimPy environment that knows how many events it has processed, and whose ``now``
    is a plain attribute.

    Every scheduled event takes the next id from ``_eid`` and is processed by exactly one
    ``step``, so processed = ids handed out - events still queued. Counting that way costs
    nothing per event (a counter in ``step`` would cost a little on each one).

    SimPy's ``now`` is a property: a Python call each time the hosts, the notifiers and the
    metrics read the clock, several times per event. ``step``, the only place where time
    moves, sets this attribute beside SimPy's ``_now`` instead (it is SimPy's own ``step``
    with that one line added: the same events in the same order).
    """

    now: SimTime = 0  # a plain attribute over SimPy's read-only property (set per instance)

    def __init__(self, initial_time: SimTime = 0) -> None:
        super().__init__(initial_time)
        self.now = self._now

    def step(self) -> None:
        try:
            self._now, _, _, event = heappop(self._queue)
        except IndexError:
            raise EmptySchedule from None
        self.now = self._now
        callbacks, event.callbacks = event.callbacks, None  # type: ignore[assignment]
        try:
            for callback in callbacks:
                callback(event)
        except StopSimulation:
            # As SimPy: the remaining callbacks run when the simulation resumes.
            event.callbacks = callbacks[callbacks.index(callback) + 1 :]
            self.schedule(event, EventPriority(-1))
            raise
        if not event._ok and not hasattr(event, "_defused"):
            # A failed event nobody defused crashes the run, as in SimPy.
            exc = type(event._value)(*event._value.args)
            exc.__cause__ = event._value
            raise exc

    @property
    def events_processed(self) -> int:
        # itertools.count has no public "peek"; its repr is "count(N)" with N the next id.
        next_id = int(repr(self._eid)[6:-1])
        return next_id - len(self._queue)


# Python's cyclic GC: a large run keeps millions of long-lived objects (agent and notifier
# state) and makes next to no cyclic garbage (the young collections of the 100k bench,
# sim_bench.py, free nothing), yet automatic collection keeps re-traversing the survivors
# as they age through the generations. So automatic collection is paused while a run steps
# and the full collection runs when run() returns. Between steps, a young collection runs
# only when the collector's young count (tracked objects allocated minus freed since the
# last collection) passes YOUNG_LIMIT: the count grows with state that is built up (the
# ramp-up) and with cyclic garbage, which is then at most YOUNG_LIMIT objects; in a steady
# state it stays near zero and no step pays for a collection that frees nothing (one per
# step cost ~4 % of the 10k-subscription hour). Cyclic garbage that survives a young
# collection is freed at the end of the run, not earlier.
# Nested or concurrent runs (threads of one Dask worker) share the pause: the collector is
# re-enabled when the last one ends.
RUN_STEPS = 100
YOUNG_LIMIT = 100_000
_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = True


@contextmanager
def _collector_paused() -> Iterator[None]:
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()
        gc.collect()


@dataclass
class Domain:
    """A population of watchers behind one agent, watching records on one notifier."""

    name: str
    agent: AgentHost
    notifier: Notifier  # the notifier this domain's watchers subscribe to
    watchers: list[str]
    records: list[str]  # the records they may watch

    def __post_init__(self) -> None:
        # Interned: the notifier interns the URIs it reads from SUBSCRIBEs (one copy per
        # record for its dialogs and indexes); interning ours first makes that copy this one.
        self.watchers = [sys.intern(uri) for uri in self.watchers]
        self.records = [sys.intern(uri) for uri in self.records]


# The start plan: (at, order, domain, watcher, record, internal user).
Plan = list[tuple[float, int, Domain, int, int, int]]


@dataclass(slots=True)
class _Subscription:
    domain: Domain
    watcher: int
    record: int
    handle: int


class LiveSubscriptions(Mapping[int, _Subscription]):
    """Live internal subscriptions by subscription id, stored as one int per subscription
    (the latest presence change it has seen, for the metrics' delays, as its float's bits,
    and its watcher and record indexes; the domain and handle follow from the id), with
    ``_Subscription`` views made on access. A dict of small objects cost ~300 B each."""

    def __init__(self, domains: list[Domain]) -> None:
        self._domains = {d.agent.index: d for d in domains}
        self._packed: dict[int, int] = {}

    def add(self, sid: int, watcher: int, record: int, seen: float) -> None:
        self._packed[sid] = float_order(seen) << 64 | watcher << 32 | record

    def see_change(self, sid: int, change: float) -> bool:
        """(simulator.metrics.SeenChanges) Compared as the floats' ordered bits."""
        packed = self._packed.get(sid)
        order = float_order(change)
        if packed is None or order <= packed >> 64:
            return False
        self._packed[sid] = order << 64 | packed & 0xFFFF_FFFF_FFFF_FFFF
        return True

    def _view(self, sid: int, packed: int) -> _Subscription:
        domain = self._domains[sid % MAX_AGENTS]
        return _Subscription(domain, packed >> 32 & 0xFFFFFFFF, packed & 0xFFFFFFFF,
                             sid // MAX_AGENTS)  # fmt: skip

    def pop(self, sid: int) -> _Subscription:
        return self._view(sid, self._packed.pop(sid))

    def __getitem__(self, sid: int) -> _Subscription:
        return self._view(sid, self._packed[sid])

    def __iter__(self) -> Iterator[int]:
        return iter(self._packed)

    def __len__(self) -> int:
        return len(self._packed)


@dataclass
class Simulation:
    workload: Workload
    seed: int
    env: CountingEnvironment
    network: Network
    metrics: Metrics
    domains: list[Domain]
    notifiers: list[Notifier]
    trace: TraceWriter | None = None
    pcap: PcapWriter | None = None
    # Live internal subscriptions by subscription id (see simulator.host.subscription_id).
    live: LiveSubscriptions = field(init=False)
    # Only churn picks live subscriptions at random: a list (and positions) just for it.
    _live_list: list[int] = field(default_factory=list)
    _live_index: dict[int, int] = field(default_factory=dict)
    _contacts: dict[tuple[str, int], set[int]] = field(default_factory=dict)
    planned_subscriptions: int = 0
    # Issue 17: the stream (TCP) layer when the run models it (Workload.uses_streams), and
    # for presence-list runs the presentities that are list members.
    streams: StreamLayer | None = None
    members: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.live = LiveSubscriptions(self.domains)
        self.metrics.seen = self.live

    # -- internal subscriptions -------------------------------------------------------------

    def subscribe(self, domain: Domain, watcher: int, record: int, user: int = 0) -> int:
        """Subscribe a watcher to a record through its domain's agent for internal user
        `user` (its destination: the watcher's URI, `#u<user>` appended after the first);
        returns the id."""
        uri = domain.watchers[watcher]
        destination = uri if user == 0 else f"{uri}#u{user}"
        handle = domain.agent.subscribe(
            domain.records[record], uri, destination, self.workload.package
        )
        sid = domain.agent.subscription_id(handle)
        seen = self.metrics.subscription_started(domain.records[record], self.env.now)
        self.live.add(sid, watcher, record, seen)
        if self.workload.churn_per_hour > 0:  # only churn needs these
            self._live_index[sid] = len(self._live_list)
            self._live_list.append(sid)
            self._contacts.setdefault((domain.name, watcher), set()).add(record)
        return sid

    def unsubscribe(self, sid: int) -> None:
        sub = self.live.pop(sid)
        domain = sub.domain
        domain.agent.unsubscribe(sub.handle)
        self.metrics.subscription_ended(self.env.now)
        # Swap-remove keeps random picks O(1).
        index = self._live_index.pop(sid, None)
        if index is not None:
            last = self._live_list.pop()
            if index < len(self._live_list):
                self._live_list[index] = last
                self._live_index[last] = index
        contacts = self._contacts.get((domain.name, sub.watcher))
        if contacts is not None:
            contacts.discard(sub.record)

    def unsubscribe_all(self) -> None:
        for sid in list(self.live):
            self.unsubscribe(sid)

    # -- running ----------------------------------------------------------------------------

    def run(self, until: float, progress: Callable[[float], None] | None = None) -> None:
        steps = RUN_STEPS
        start = self.env.now
        with _collector_paused():
            for i in range(1, steps + 1):
                target = start + (until - start) * i / steps
                self.env.run(until=target)
                if gc.get_count()[0] > YOUNG_LIMIT:
                    gc.collect(0)
                if progress is not None:
                    progress(self.env.now)

    def call_at(self, at: float, action: Callable[[], None]) -> None:
        call_later(self.env, max(0.0, at - self.env.now), action)


def _agent_config(workload: Workload, seed: int, address: str, name: str,
                  traced: bool) -> AgentConfig:  # fmt: skip
    params = dict(workload.parameters)
    params["profile"] = workload.profile
    params["seed"] = derive_seed(seed, "agent", name) % (2**31)
    params["local_address"] = address
    if not traced:
        # Without a trace writer the host drops every TraceEvent: the agent need not make
        # them (a state change, a delivery and an answer each made one; ~5 % of a run).
        params["trace"] = 0
    return AgentConfig.from_mapping(params)


def build(
    workload: Workload,
    seed: int,
    *,
    shard: Shard | None = None,
    trace: TextIO | None = None,
    pcap: BinaryIO | None = None,
    keep_queues: bool = False,
) -> Simulation:
    """The simulation of a whole (non-farm) workload, or of one ``shard`` of a farm
    (``simulator.farm``: then ``seed`` is the run seed and the shard derives its own)."""
    run_seed = seed
    if shard is not None:
        seed = shard.seed
    env = CountingEnvironment()
    network = Network(env, seed, default_link=workload.network)
    metrics = Metrics(workload.duration)
    network.set_meter(metrics.count)
    trace_writer = None
    if trace is not None:
        trace_writer = TraceWriter(trace, shard=shard.name if shard is not None else None)
        network.add_tap(trace_writer.datagram)
    pcap_writer = PcapWriter(pcap) if pcap is not None else None
    if pcap_writer is not None:
        writer = pcap_writer

        def capture(d: Datagram) -> None:
            source, destination = (d.source_node, d.source), (d.destination_node, d.destination)
            if d.transport == "udp":
                writer.write(d.time, source, destination, d.data)
            else:
                writer.write_tcp(d.time, source, destination, d.data, d.connection)

        network.add_tap(capture)

    streams = StreamLayer(network) if workload.uses_streams else None

    def make_agent(name: str, ip: str, domain: str, index: int) -> AgentHost:
        config = _agent_config(workload, seed, f"{ip}:{SIP_PORT}", name, trace_writer is not None)
        return AgentHost(
            env,
            network,
            name,
            (ip, SIP_PORT),
            config,
            sink=metrics,
            trace=trace_writer,
            keep_queues=keep_queues,
            aliases=(domain,),
            index=index,
            streams=streams,
        )

    members: list[str] = []

    def make_notifier(
        name: str, ip: str, domain: str, spec: NotifierSpec, records: list[str] | None = None
    ) -> Notifier:
        spec = replace(spec, domain=domain)
        if streams is None:
            return Notifier(env, network, name, (ip, SIP_PORT), spec, seed, observer=metrics)
        reg = lists = None
        if workload.package == "reg":
            reg = RegModel(workload.reg, records or [], seed, name)
        elif workload.package == "presence-list":
            lists = ListModel(workload.lists, records or [], members, seed, name)
        return PackageNotifier(
            env, network, name, (ip, SIP_PORT), spec, seed, metrics,
            package=workload.package, streams=streams, reg=reg, lists=lists,
        )  # fmt: skip

    domains: list[Domain] = []
    notifiers: list[Notifier] = []
    plan: Plan | None = None
    if shard is not None:
        population = shard_population(workload, shard)
        ps_domain = workload.notifier.domain
        spec = node_spec(workload.notifier, shard.agents)
        notifier = make_notifier(shard.node_name, shard.node_ip, ps_domain, spec)
        agent = make_agent(shard.agent_name, shard.agent_ip, WATCHER_DOMAIN, 0)
        domain = Domain(shard.agent_name, agent, notifier, population.watchers, population.records)
        domains.append(domain)
        notifiers.append(notifier)
        plan = [(at, order, domain, w, r, 0) for at, order, w, r in population.plan]
    elif workload.topology == "single":
        ps_domain = workload.notifier.domain
        records = [f"sip:p{i}@{ps_domain}" for i in range(workload.presentities)]
        if workload.package == "presence-list":
            # The subscriptions go to the lists; the presentities are their members.
            members.extend(records)
            records = [f"sip:l{i}@{ps_domain}" for i in range(workload.lists.count)]
        notifier = make_notifier("ps", "10.2.0.1", ps_domain, workload.notifier, records)
        agent = make_agent("b2b", "10.1.0.1", WATCHER_DOMAIN, 0)
        watchers = [f"sip:w{i}@{WATCHER_DOMAIN}" for i in range(workload.watchers)]
        domains.append(Domain("b2b", agent, notifier, watchers, records))
        notifiers.append(notifier)
    else:
        half = max(1, workload.watchers // 2)
        users = {d: [f"sip:u{i}@{d}.test" for i in range(half)] for d in ("a", "b")}
        for index, d in enumerate(("a", "b"), start=1):
            notifiers.append(
                make_notifier(f"ps-{d}", f"10.2.0.{index}", f"{d}.test", workload.notifier)
            )
        for index, (d, other) in enumerate((("a", "b"), ("b", "a")), start=1):
            agent = make_agent(f"b2b-{d}", f"10.1.0.{index}", f"b2b.{d}.test", index - 1)
            domains.append(Domain(d, agent, notifiers[1 - (index - 1)], users[d], users[other]))
    sim = Simulation(
        workload, seed, env, network, metrics, domains, notifiers, trace_writer, pcap_writer,
        streams=streams, members=members,
    )  # fmt: skip
    _schedule_plan(sim, plan if plan is not None else _population_plan(sim))
    changes = (
        stream(seed, "changes")
        if shard is None
        else stream(run_seed, *changes_stream_labels(shard.node))
    )
    if workload.package == "presence":
        _schedule_changes(sim, changes)
    else:
        schedule_package_changes(sim, changes)
    _schedule_churn(sim)
    _schedule_faults(sim, 0 if shard is None else shard.node)
    return sim


def _population_plan(sim: Simulation) -> Plan:
    wl = sim.workload
    rng_contacts = stream(sim.seed, "population", "contacts")
    rng_start = stream(sim.seed, "population", "start")
    # Its own stream: a workload with one internal user plans exactly as before.
    rng_users = stream(sim.seed, "population", "internal-users")
    plan: Plan = []
    order = 0
    for domain in sim.domains:
        n_records = len(domain.records)
        for w in range(len(domain.watchers)):
            k = min(wl.contacts.draw(rng_contacts), n_records)
            contacts = rng_contacts.sample(range(n_records), k)
            for record in contacts:
                plan.append((rng_start.uniform(0.0, wl.ramp_up), order, domain, w, record, 0))
                order += 1
            for user in range(1, wl.internal_users):
                for record in _user_pairs(contacts, wl.overlap, n_records, rng_users):
                    plan.append((rng_start.uniform(0.0, wl.ramp_up), order, domain, w,
                                 record, user))
                    order += 1
    plan.sort(key=lambda item: (item[0], item[1]))
    return plan


def _user_pairs(contacts: list[int], overlap: float, n_records: int,
                rng: random.Random) -> list[int]:
    """Another internal user's records for one watcher: as many as the first user's, each
    one of the first user's with probability `overlap`, else one outside that set (when the
    presentities allow it)."""
    taken = set(contacts)
    own: list[int] = []
    for record in contacts:
        if rng.random() < overlap or len(taken) >= n_records:
            own.append(record)
            continue
        other = rng.randrange(n_records)
        while other in taken:
            other = rng.randrange(n_records)
        taken.add(other)
        own.append(other)
    return own


def _schedule_plan(sim: Simulation, plan: Plan) -> None:
    """Start each planned subscription at its time; ``plan`` is sorted by (time, order)."""
    sim.planned_subscriptions = len(plan)
    position = 0

    def next_batch() -> None:
        nonlocal position
        now = sim.env.now
        while position < len(plan) and plan[position][0] <= now:
            _at, _order, domain, w, record, user = plan[position]
            sim.subscribe(domain, w, record, user)
            position += 1
        if position < len(plan):
            sim.call_at(plan[position][0], next_batch)
        else:
            plan.clear()

    if plan:
        sim.call_at(plan[0][0], next_batch)


def _change_targets(sim: Simulation) -> tuple[int, Callable[[int], tuple[Notifier, str]]]:
    """(count, index -> (notifier, record)) over every (notifier, record) pair once, in
    domain order. Domains on distinct notifiers are segments of their own record lists
    (no tuple per record: 64 B per presentity at 100,000); otherwise pairs are deduplicated
    (two domains sharing a notifier's records)."""
    notifiers = [d.notifier for d in sim.domains]
    if len({id(n) for n in notifiers}) == len(notifiers):
        segments = [(d.notifier, d.records) for d in sim.domains]

        def pick(index: int) -> tuple[Notifier, str]:
            for notifier, records in segments:
                if index < len(records):
                    return notifier, records[index]
                index -= len(records)
            raise IndexError(index)

        return sum(len(records) for _n, records in segments), pick
    unique = list(dict.fromkeys((d.notifier, r) for d in sim.domains for r in d.records))
    return len(unique), unique.__getitem__


def _schedule_changes(sim: Simulation, rng: random.Random) -> None:
    wl = sim.workload
    count, pick = _change_targets(sim)
    rate = wl.presence_changes_per_hour * count / 3600.0
    if rate <= 0:
        return

    def change() -> None:
        notifier, record = pick(rng.randrange(count))
        notifier.change_presence(record)
        sim.call_at(sim.env.now + rng.expovariate(rate), change)

    sim.call_at(rng.expovariate(rate), change)


def _schedule_churn(sim: Simulation) -> None:
    wl = sim.workload
    if wl.churn_per_hour <= 0:
        return
    rng = stream(sim.seed, "churn")

    def rate() -> float:
        # Per live subscription; before the ramp-up ends, per planned subscription.
        return wl.churn_per_hour * max(len(sim.live), sim.planned_subscriptions, 1) / 3600.0

    def churn() -> None:
        if sim._live_list:
            sid = sim._live_list[rng.randrange(len(sim._live_list))]
            domain, watcher = sim.live[sid].domain, sim.live[sid].watcher
            sim.unsubscribe(sid)
            taken = sim._contacts[(domain.name, watcher)]
            if len(taken) < len(domain.records):
                record = rng.randrange(len(domain.records))
                while record in taken:
                    record = rng.randrange(len(domain.records))
                sim.subscribe(domain, watcher, record)
        sim.call_at(sim.env.now + rng.expovariate(rate()), churn)

    sim.call_at(wl.ramp_up + rng.expovariate(rate()), churn)


def _schedule_faults(sim: Simulation, node: int) -> None:
    """Faults on the notifiers they name; ``node`` is this simulation's server node in a
    farm (0 otherwise: a workload that is not a farm has one node)."""
    for fault in sim.workload.faults:
        chosen = [n for n in sim.notifiers if fault.domain is None or fault.domain == n.spec.domain]
        if fault.node is not None and fault.node != node:
            chosen = []  # a fault of another node of the farm
        if not chosen:
            continue
        if fault.kind == "outage":
            for notifier in chosen:
                sim.call_at(fault.start, notifier.go_down)
                sim.call_at(
                    fault.start + fault.duration,
                    lambda n=notifier, lost=fault.state_lost: n.come_up(lost),  # type: ignore[misc]
                )
        elif fault.kind == "partition":
            agents = frozenset(d.agent.name for d in sim.domains)
            sim.network.add_partition(
                Partition(
                    agents,
                    frozenset(n.name for n in chosen),
                    fault.start,
                    fault.start + fault.duration,
                )
            )
        elif fault.kind == "connection_loss":
            assert sim.streams is not None  # Workload.uses_streams
            for notifier in chosen:
                sim.call_at(fault.start, _dropper(sim.streams, notifier.name))
        else:  # terminate
            for notifier in chosen:
                sim.call_at(
                    fault.start,
                    lambda n=notifier, f=fault: n.terminate(f.reason, f.retry_after, f.fraction),  # type: ignore[misc]
                )


def _dropper(streams: StreamLayer, node: str) -> Callable[[], None]:
    def drop() -> None:
        streams.drop(node)

    return drop


def collect(
    sim: Simulation, wall_seconds: float, shard: Shard | None = None, cpu_seconds: float = 0.0
) -> ShardResult:
    """The raw figures of a finished simulation (see ``simulator.merge``)."""
    sim.metrics.advance(sim.env.now)
    agent_counters: dict[str, int] = {}
    for domain in sim.domains:
        for name, value in domain.agent.agent.counters.items():
            agent_counters[name] = agent_counters.get(name, 0) + int(value)
    notifier_counters: dict[str, int] = {}
    for notifier in sim.notifiers:
        for name, value in notifier.counters.items():
            notifier_counters[name] = notifier_counters.get(name, 0) + value
    return ShardResult(
        shard=shard.name if shard is not None else None,
        agent=shard.agent_name
        if shard is not None
        else "+".join(d.agent.name for d in sim.domains),
        node=shard.node_name if shard is not None else "+".join(n.name for n in sim.notifiers),
        metrics=sim.metrics.state(),
        agent_counters=agent_counters,
        notifier_counters=notifier_counters,
        network=dict(sim.network.counters),
        events_processed=sim.env.events_processed,
        simulated_seconds=sim.env.now,
        live_at_end=len(sim.live),
        wall_seconds=wall_seconds,
        cpu_seconds=cpu_seconds,
        peak_memory_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        build=build_kind(),
        extra=package_figures(sim),
    )


def finish(sim: Simulation, wall_seconds: float, cpu_seconds: float = 0.0) -> RunResult:
    """Close the books of one simulation: summary.json content and the time series."""
    result = collect(sim, wall_seconds, cpu_seconds=cpu_seconds)
    return merge_results(sim.workload, sim.seed, [result], wall_seconds)


def compiled_modules() -> list[str]:
    """The loaded modules of this project that are compiled extensions (setup.py,
    B2B_COMPILE=1), sorted; empty for the pure-Python package."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return sorted(
        name
        for name, module in list(sys.modules.items())
        if name.split(".")[0] in ("reference", "simulator", "conformance")
        and (getattr(module, "__file__", None) or "").endswith(suffixes)
    )


def build_kind() -> str:
    """'python', or 'mypyc (N modules)' for the compiled build: wall times depend on it."""
    compiled = compiled_modules()
    return f"mypyc ({len(compiled)} modules)" if compiled else "python"


def run_workload(
    workload: Workload,
    seed: int,
    *,
    trace: TextIO | None = None,
    pcap: BinaryIO | None = None,
    progress: Callable[[float], None] | None = None,
    parts_dir: Path | None = None,
) -> RunResult:
    """Run a workload in this process; a farm's shards run one after another (their trace
    and pcap parts in ``parts_dir``, or in memory, until merged)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    if not workload.is_farm:
        sim = build(workload, seed, trace=trace, pcap=pcap)
        sim.run(workload.duration, progress)
        return finish(sim, time.perf_counter() - started, time.process_time() - cpu_started)
    results: list[ShardResult] = []
    traces: list[Part] = []
    pcaps: list[Part] = []
    for index, shard in enumerate(shards_of(workload, seed)):
        offset = index * workload.duration
        shard_progress = None if progress is None else (lambda now, o=offset: progress(o + now))
        result = run_shard(
            workload, shard, trace=trace is not None, pcap=pcap is not None,
            parts_dir=None if parts_dir is None else str(parts_dir), progress=shard_progress,
        )  # fmt: skip
        traces.append(result.trace)
        pcaps.append(result.pcap)
        result.trace = result.pcap = None
        results.append(result)
    if trace is not None:
        merge_trace(traces, trace)
    if pcap is not None:
        merge_pcap(pcaps, pcap)
    for part in traces + pcaps:
        if isinstance(part, str):
            Path(part).unlink(missing_ok=True)
    return merge_results(workload, seed, results, time.perf_counter() - started)


def run_shard(
    workload: Workload,
    shard: Shard,
    *,
    trace: bool = False,
    pcap: bool = False,
    parts_dir: str | None = None,
    progress: Callable[[float], None] | None = None,
) -> ShardResult:
    """Run one farm shard wherever this is called (in-process or on a Dask worker).
    Trace and pcap parts go to files in ``parts_dir`` (a directory this process can
    write and the caller can read), or come back as bytes."""
    started, cpu_started = time.perf_counter(), time.process_time()
    trace_part: Part = None
    pcap_part: Part = None
    with ExitStack() as stack:
        trace_io: TextIO | None = None
        pcap_io: BinaryIO | None = None
        stem = shard.name.replace("/", "_")
        if trace:
            if parts_dir is None:
                trace_io = stack.enter_context(io.StringIO())
            else:
                trace_part = str(Path(parts_dir) / f"{stem}.trace.jsonl")
                trace_io = stack.enter_context(open(trace_part, "w", encoding="utf-8"))
        if pcap:
            if parts_dir is None:
                pcap_io = stack.enter_context(io.BytesIO())
            else:
                pcap_part = str(Path(parts_dir) / f"{stem}.pcap")
                pcap_io = stack.enter_context(open(pcap_part, "wb"))
        sim = build(workload, shard.run_seed, shard=shard, trace=trace_io, pcap=pcap_io)
        sim.run(workload.duration, progress)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        result = collect(sim, wall, shard, cpu)
        if isinstance(trace_io, io.StringIO):
            trace_part = trace_io.getvalue().encode("utf-8")
        if isinstance(pcap_io, io.BytesIO):
            pcap_part = pcap_io.getvalue()
    # A worker runs shard after shard: free this one's cycles before the next one starts.
    del sim
    gc.collect()
    result.trace, result.pcap = trace_part, pcap_part
    return result
