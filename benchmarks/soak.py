"""Soak run in simulation (issue 8 §1): a lossy day with outages and a partition.

Run the documented long version (24 simulated hours, 3,000 subscriptions, both profiles):

    .venv/bin/python benchmarks/soak.py --subscriptions 3000 --hours 24

`tests/reliability/test_soak.py` runs the same engine small (a few hundred subscriptions,
a few simulated hours). The network drops 20 % of the datagrams in each direction, duplicates
5 % and holds back 5 % by 0.3 s. Faults, placed at fixed fractions of the run:

* 25 %: the notifier is down for 10 minutes and comes back **without** its dialogs;
* 50 %: down for 10 minutes, comes back **with** them;
* 75 %: a 5-minute partition between the agent and the notifier.

Checked (`SoakReport.problems` lists every violation; empty = pass):

* after each fault heals, every internal subscription that was live throughout is active again
  within the recovery bound (`max_retry_time` + two transaction timeouts + Timer N + margin);
  "active" means the agent holds it in a confirmed state with an unexpired grant **and** the
  notifier holds the same dialog (ground truth from the notifier, not the agent's belief);
* at the end: the agent holds exactly one subscription timer per live subscription and no
  timer, dialog or subscription of an unsubscribed one (the core's own list of armed
  timers); the dialog count equals the live dialogs;
* memory per subscription (a deep size of the agent object) does not grow between 20 % of the
  run and its end;
* after `unsubscribe_all` and the unsubscribe bound plus Timer K/J, nothing is left: no
  subscription, dialog, transaction or timer.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reference import TimerKey, TimerKind
from reference.agent import Agent
from simulator.host import AgentHost
from simulator.notifier import Notifier
from simulator.run import Simulation, build
from simulator.workload import Workload, workload_from_mapping

ACTIVE_STATES = ("confirmed", "resubscription")
OUTAGE = 600.0
PARTITION = 300.0
SAMPLE_EVERY = 2.0  # seconds between recovery samples after a fault heals
MAX_RETRY_TIME = 900  # back-off ceiling of the soak (default 3600 would make the bound 1 h)
EXPIRATION = 600


@dataclass
class FaultRecovery:
    name: str
    start: float
    healed: float
    recovery_seconds: float | None = None  # None: not all recovered within the bound
    messages: int = 0  # datagrams sent from fault start until recovery
    not_recovered: list[int] = field(default_factory=list)


@dataclass
class SoakReport:
    profile: str
    subscriptions: int
    hours: float
    faults: list[FaultRecovery]
    messages_total: int
    network: dict[str, int]
    unsubscribed: int
    live_at_end: int
    bytes_per_subscription: dict[str, float]
    wall_seconds: float
    problems: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "subscriptions": self.subscriptions,
            "hours": self.hours,
            "faults": [f.__dict__ for f in self.faults],
            "messages_total": self.messages_total,
            "network": self.network,
            "unsubscribed": self.unsubscribed,
            "live_at_end": self.live_at_end,
            "bytes_per_subscription": self.bytes_per_subscription,
            "wall_seconds": round(self.wall_seconds, 1),
            "problems": self.problems,
        }


class TimerLedger:
    """The agent's armed timers, from the core's own query (nothing of the agent is
    patched)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    @property
    def live(self) -> dict[TimerKey, float]:
        return self.agent.timer_deadlines()

    def handles_of(self, kind: TimerKind) -> set[int]:
        return {key.handle for key in self.live if key.kind is kind}


def deep_size(root: object) -> int:
    """Bytes reachable from `root` (containers and instances; types and code excluded)."""
    seen: set[int] = set()
    stack = [root]
    total = 0
    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
            types.MethodType, types.CodeType)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def notifier_call_ids(notifier: Notifier) -> set[str]:
    # Gap: the Notifier has no public "dialogs" view; its dialogs are keyed by its tag.
    dialogs: dict[str, Any] = notifier._dialogs
    return {dialog.call_id for dialog in dialogs.values()}


def make_workload(subscriptions: int, hours: float, profile: str) -> Workload:
    duration = hours * 3600.0
    watchers = max(1, subscriptions // 4)
    return workload_from_mapping({
        "kind": "workload",
        "name": "soak",
        "duration": duration,
        "agent": {"profile": profile, "parameters": {
            "default_expiration": EXPIRATION, "max_retry_time": MAX_RETRY_TIME, "trace": 0}},
        "notifier": {"max_expires": EXPIRATION, "min_expires": 60},
        "watchers": watchers,
        "presentities": watchers * 2,
        "contacts": 4,
        "presence_changes_per_hour": 1,
        "churn_per_hour": 0.05,
        "ramp_up": 300,
        "network": {"latency": {"kind": "lognormal", "median": 0.02, "sigma": 0.4},
                    "loss": 0.2, "duplication": 0.05, "reorder": 0.05, "reorder_delay": 0.3},
        "faults": [
            {"kind": "outage", "start": 0.25 * duration, "duration": OUTAGE, "state_lost": True},
            {"kind": "outage", "start": 0.50 * duration, "duration": OUTAGE,
             "state_lost": False},
            {"kind": "partition", "start": 0.75 * duration, "duration": PARTITION},
        ],
    })


def recovery_bound(agent: Agent) -> float:
    """Longest a live subscription may stay inactive after the network heals.

    A notifier that lost a dialog silently (restart without state, or a NOTIFY that timed
    out during the fault, RFC 6665 §4.2.2) is only discovered by the next refresh, so one
    full grant comes first; then the profile's retry bound."""
    config = agent.config
    grant = float(config.default_expiration)
    tx = config.effective_transaction_timeout
    timer_n = 64 * config.t1
    if config.is_ser:
        # SER: refresh failure -> new dialog after on_error_retry_time; each try costs a
        # 30 s transaction timeout; a try may fail on loss, so allow three rounds.
        return grant + 3 * (config.on_error_retry_time + tx) + timer_n + 60.0
    return grant + config.max_retry_time + 2 * tx + timer_n + 60.0


def run_soak(subscriptions: int, hours: float, profile: str, seed: int = 1,
             progress: Callable[[str], None] | None = None) -> SoakReport:
    started = time.perf_counter()
    workload = make_workload(subscriptions, hours, profile)
    sim: Simulation = build(workload, seed)
    domain = sim.domains[0]
    host: AgentHost = domain.agent
    agent = host.agent
    notifier = sim.notifiers[0]
    ledger = TimerLedger(agent)
    unsubscribed: dict[int, float] = {}  # handle -> time
    original_unsubscribe = sim.unsubscribe

    def unsubscribe(sid: int) -> None:
        handle = sim.live[sid].handle
        original_unsubscribe(sid)
        unsubscribed[handle] = sim.env.now

    sim.unsubscribe = unsubscribe  # type: ignore[method-assign]
    problems: list[str] = []
    duration = workload.duration
    bound = recovery_bound(agent)

    def active_handles() -> set[int]:
        now = sim.env.now
        ids = notifier_call_ids(notifier)
        return {row["handle"] for row in agent.dump()
                if row["state"] in ACTIVE_STATES and row["call_id"] in ids
                and (row["expires_at"] is None or row["expires_at"] > now)}

    def live_handles() -> set[int]:
        return {s.handle for s in sim.live.values()}

    recoveries: list[FaultRecovery] = []

    def watch(rec: FaultRecovery) -> None:
        """Sample every SAMPLE_EVERY s after the heal until all owed subscriptions are
        active (recovery time, messages since the fault began) or the bound has passed."""
        sent_at_start = 0
        pending: set[int] = set()

        def at_start() -> None:
            nonlocal sent_at_start
            sent_at_start = sim.network.counters["sent"]

        def sample() -> None:
            pending.difference_update(active_handles())
            pending.intersection_update(live_handles())  # churned away: no longer owed
            now = sim.env.now
            if not pending:
                rec.recovery_seconds = round(now - rec.healed, 1)
                rec.messages = sim.network.counters["sent"] - sent_at_start
                return
            if now - rec.healed > bound:
                rec.not_recovered = sorted(pending)[:20]
                problems.append(f"{rec.name}: {len(pending)} subscription(s) not active "
                                f"{bound:.0f} s after the network healed")
                return
            sim.call_at(now + SAMPLE_EVERY, sample)

        def at_heal() -> None:
            pending.update(live_handles())
            sample()

        sim.call_at(rec.start, at_start)
        sim.call_at(rec.healed, at_heal)

    for fault in workload.faults:
        name = f"{fault.kind}" + (
            f" (state {'lost' if fault.state_lost else 'kept'})" if fault.kind == "outage"
            else "")
        rec = FaultRecovery(name, fault.start, fault.start + fault.duration)
        recoveries.append(rec)
        watch(rec)

    sizes: dict[str, float] = {}

    def measure(label: str) -> None:
        n = len(agent.subscriptions)
        sizes[label] = round(deep_size(agent) / max(n, 1), 1)

    early = 0.2 * duration
    sim.call_at(early, lambda: measure(f"at {early / 3600:.1f} h"))
    step = max(duration / 20, 60.0)
    t = 0.0
    while t < duration:
        t = min(duration, t + step)
        sim.env.run(until=t)
        if progress is not None:
            progress(f"{profile}: {t / 3600:.1f} of {hours} h")
    measure(f"at {duration / 3600:.1f} h")

    # -- end of the day: the state the agent holds must be exactly the live state ----------
    live = live_handles()
    held = set(agent.subscriptions)
    unsub_bound: float = agent.config.failover_timeout + agent.config.wait_for_term_notify
    if agent.config.is_ser:
        unsub_bound = 3 * agent.config.effective_transaction_timeout + 1
    settled = {h for h, at in unsubscribed.items() if at <= sim.env.now - unsub_bound}
    if held & settled:
        problems.append(f"{len(held & settled)} unsubscribed subscription(s) still held")
    if not live <= held:
        problems.append(f"{len(live - held)} live subscription(s) lost by the agent")
    sub_timers = ledger.handles_of(TimerKind.SUBSCRIPTION)
    n_timers = ledger.handles_of(TimerKind.TIMER_N)
    no_timer = [h for h in live if h not in sub_timers
                and agent.subscriptions[h].state.name.lower() != "terminated"]
    if no_timer:
        problems.append(f"{len(no_timer)} live subscription(s) without a timer")
    for h in sub_timers | n_timers:
        if h not in held:
            problems.append(f"timer left for freed handle {h}")
            break
    if (sub_timers & settled) or (n_timers & settled):
        problems.append("timer armed for a settled unsubscribed subscription")
    if agent.live_timer_count() != len(sub_timers) + len(n_timers):
        problems.append(f"live_timer_count {agent.live_timer_count()} != armed subscription "
                        f"and Timer N keys {len(sub_timers) + len(n_timers)}")
    with_dialog = sum(1 for row in agent.dump() if row["call_id"] is not None)
    if agent.dialog_count != with_dialog:
        problems.append(f"dialog_count {agent.dialog_count} != subscriptions with a dialog "
                        f"{with_dialog}")
    first, last = list(sizes.values())
    if last > first * 1.15:
        problems.append(f"memory per subscription grew: {sizes}")
    live_at_end = len(live)
    inactive_now = live - active_handles()
    if len(inactive_now) > max(2, live_at_end // 50):
        problems.append(f"{len(inactive_now)} of {live_at_end} live subscriptions inactive "
                        "at the end")

    # -- unsubscribe everything: nothing may be left ---------------------------------------
    sim.unsubscribe_all()
    tx_linger = 64 * agent.config.t1 + 5.0  # Timer J / K
    sim.env.run(until=sim.env.now + unsub_bound + tx_linger + 1.0)
    if agent.subscriptions:
        problems.append(f"{len(agent.subscriptions)} subscription(s) left after unsubscribe")
    if agent.dialog_count or agent.transaction_count:
        problems.append(f"left after unsubscribe: {agent.dialog_count} dialog(s), "
                        f"{agent.transaction_count} transaction(s)")
    if ledger.live or agent.live_timer_count():
        problems.append(f"{len(ledger.live)} timer(s) left after unsubscribe")
    return SoakReport(
        profile=profile, subscriptions=sim.planned_subscriptions, hours=hours,
        faults=recoveries, messages_total=sim.network.counters["sent"],
        network=dict(sim.network.counters), unsubscribed=len(unsubscribed),
        live_at_end=live_at_end, bytes_per_subscription=sizes,
        wall_seconds=time.perf_counter() - started, problems=problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--subscriptions", type=int, default=3000)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", choices=("ser", "rfc6665", "both"), default="both")
    args = parser.parse_args(argv)
    profiles = ("ser", "rfc6665") if args.profile == "both" else (args.profile,)
    failed = False
    for profile in profiles:
        report = run_soak(args.subscriptions, args.hours, profile, args.seed,
                          progress=lambda text: print(text, file=sys.stderr, flush=True))
        print(json.dumps(report.as_dict(), indent=2))
        failed = failed or bool(report.problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
