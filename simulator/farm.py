"""Farms: presence-server nodes and agent instances, cut into independent shards.

Rules of this file (docs/simulator.md, "Farms", says the same for users):

* A farm has ``servers`` presence-server nodes ``ps-0 .. ps-(N-1)`` and ``agents`` agent
  instances ``b2b-0 .. b2b-(M-1)``. Presentity ``sip:p<i>@<domain>`` lives on node
  ``stable_index(AOR, N)``; watcher ``sip:w<i>@b2b.test`` belongs to agent instance
  ``stable_index(AOR, M)``, where ``stable_index`` is the first 8 bytes of SHA-256 of the
  AOR (UTF-8), big-endian, modulo the count. Never ``hash()``: it changes per process.
* A *shard* is one (agent instance, server node) pair: the subscriptions of that agent's
  watchers to that node's presentities. Shards share nothing while they run, so they can
  run anywhere, in any order: each node's capacity and queue serve only its own shards'
  traffic (with M agents, each of a node's M shards gets 1/M of its capacity: M times the
  ``service_time``, 1/M of the ``queue_limit``, so the longest wait stays the same), the
  links are per shard pair, and a node's faults act on exactly that node's shards.
* Random streams: the population (which watcher watches what, when it starts) comes from
  one stream per agent instance, ``(seed, "farm", "population", agent)``, so the same
  subscriptions exist whatever the number of servers; a node's presence changes come from
  ``(seed, "farm", "node", node, "changes")``, so every shard of a node sees the same
  changes at the same instants; everything else in a shard (links, the agent's identifiers
  and jitter, the node's tags) derives from the shard's own seed ``(seed, "shard", agent,
  node)``. Nothing depends on which process runs a shard, hence byte-identical merged
  outputs whatever the worker count.
* Left out: an agent instance's CPU and memory are not shared between its shards (each
  shard runs its own copy of the agent core), links shared by several shards are not
  modelled, a watcher's subscriptions to different nodes do not influence each other, and
  churn moves a subscription to another presentity of the same node.
"""

from __future__ import annotations

import hashlib
import math
from array import array
from dataclasses import dataclass, replace
from functools import lru_cache

from simulator.rng import derive_seed, stream
from simulator.workload import ContactsSpec, NotifierSpec, Workload

WATCHER_DOMAIN = "b2b.test"


def stable_index(aor: str, count: int) -> int:
    """The farm's assignment rule: SHA-256 of the AOR, first 8 bytes big-endian, mod count."""
    digest = hashlib.sha256(aor.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def watcher_pattern() -> str:
    return "sip:w{}@" + WATCHER_DOMAIN


def record_pattern(domain: str) -> str:
    return "sip:p{}@" + domain


@dataclass(frozen=True)
class Shard:
    """One (agent instance, server node) pair of a farm run."""

    run_seed: int
    agent: int
    node: int
    agents: int
    servers: int

    @property
    def index(self) -> int:
        """Position in the run's shard list (agent-major): the merge order."""
        return self.agent * self.servers + self.node

    @property
    def agent_name(self) -> str:
        return f"b2b-{self.agent}"

    @property
    def node_name(self) -> str:
        return f"ps-{self.node}"

    @property
    def name(self) -> str:
        return f"{self.agent_name}/{self.node_name}"

    @property
    def seed(self) -> int:
        return derive_seed(self.run_seed, "shard", self.agent, self.node)

    @property
    def agent_ip(self) -> str:
        return f"10.1.0.{self.agent + 1}"

    @property
    def node_ip(self) -> str:
        return f"10.2.0.{self.node + 1}"


def shards_of(workload: Workload, seed: int) -> list[Shard]:
    """Every shard of a farm workload, in merge order (agent-major)."""
    return [
        Shard(seed, agent, node, workload.agents, workload.servers)
        for agent in range(workload.agents)
        for node in range(workload.servers)
    ]


def node_spec(spec: NotifierSpec, agents: int) -> NotifierSpec:
    """One shard's copy of a node: 1/agents of its capacity, the same longest wait."""
    if agents == 1 or spec.service_time <= 0:
        return spec
    return replace(
        spec,
        service_time=spec.service_time * agents,
        queue_limit=math.ceil(spec.queue_limit / agents),
    )


def changes_stream_labels(node: int) -> tuple[object, ...]:
    return ("farm", "node", node, "changes")


@dataclass(frozen=True)
class ShardPopulation:
    """What one shard's agent subscribes to: URIs by local index, and the start plan
    (start time, order, local watcher, local record), sorted by (start, order)."""

    watchers: list[str]
    records: list[str]
    plan: list[tuple[float, int, int, int]]


@lru_cache(maxsize=2)
def _assignment(pattern: str, count: int, buckets: int) -> tuple[array[int], array[int]]:
    """(bucket of each index, position of each index within its bucket) for the URIs
    ``pattern.format(i)``; computed once per process."""
    bucket_of = array("H", bytes(2 * count))
    position = array("I", bytes(4 * count))
    filled = [0] * buckets
    for i in range(count):
        bucket = stable_index(pattern.format(i), buckets)
        bucket_of[i] = bucket
        position[i] = filled[bucket]
        filled[bucket] += 1
    return bucket_of, position


def _members(bucket_of: array[int], bucket: int) -> list[int]:
    return [i for i, b in enumerate(bucket_of) if b == bucket]


@lru_cache(maxsize=2)
def _agent_plan(
    run_seed: int,
    agent: int,
    agents: int,
    servers: int,
    watchers: int,
    presentities: int,
    domain: str,
    contacts: ContactsSpec,
    ramp_up: float,
) -> tuple[tuple[array[float], array[int], array[int], array[int]], ...]:
    """Per node: (start, order, local watcher, local record) arrays of one agent's
    subscriptions. One draw of the agent's whole population, shared by its shards that run
    in the same process (shards are listed agent-major, so they usually do)."""
    agent_of, watcher_pos = _assignment(watcher_pattern(), watchers, agents)
    node_of, record_pos = _assignment(record_pattern(domain), presentities, servers)
    rng = stream(run_seed, "farm", "population", agent)
    per_node = [(array("d"), array("q"), array("I"), array("I")) for _ in range(servers)]
    order = 0
    for w in range(watchers):
        if agent_of[w] != agent:
            continue
        k = min(contacts.draw(rng), presentities)
        for record in rng.sample(range(presentities), k):
            start = rng.uniform(0.0, ramp_up)
            starts, orders, local_w, local_r = per_node[node_of[record]]
            starts.append(start)
            orders.append(order)
            local_w.append(watcher_pos[w])
            local_r.append(record_pos[record])
            order += 1
    return tuple(per_node)


def shard_population(workload: Workload, shard: Shard) -> ShardPopulation:
    domain = workload.notifier.domain
    agent_of, _ = _assignment(watcher_pattern(), workload.watchers, shard.agents)
    node_of, _ = _assignment(record_pattern(domain), workload.presentities, shard.servers)
    starts, orders, local_w, local_r = _agent_plan(
        shard.run_seed,
        shard.agent,
        shard.agents,
        shard.servers,
        workload.watchers,
        workload.presentities,
        domain,
        workload.contacts,
        workload.ramp_up,
    )[shard.node]
    plan = sorted(zip(starts, orders, local_w, local_r, strict=True))
    return ShardPopulation(
        [watcher_pattern().format(i) for i in _members(agent_of, shard.agent)],
        [record_pattern(domain).format(i) for i in _members(node_of, shard.node)],
        plan,
    )
