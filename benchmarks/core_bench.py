"""NOTIFY throughput of the sans-IO agent core alone (no sockets, no event loop).

Run: ``.venv/bin/python benchmarks/core_bench.py [--subscriptions 200] [--seconds 2]
[--profile both|ser|rfc6665] [--trace both|0|1] [--profile-top N]``.

For each profile and trace setting: build N established subscriptions (SUBSCRIBE -> 200 ->
initial NOTIFY, all answered), then feed in-dialog NOTIFYs with PIDF bodies round-robin over
the dialogs through ``datagram_received`` and ``drain_effects``, and print NOTIFY/s on one
core. Time is this process's CPU time (``time.process_time``), so other load on a shared
machine does not count against the agent (wall-clock rates would); the best batch rate
(one round over all dialogs) is printed too, as the least disturbed figure. Every NOTIFY
must be answered with exactly one 200 (checked), so a speed-up that drops answers does not
count. Timers never fire here (the clock moves 10 ms per round), so completed server
transactions pile up as they do during Timer J (32 s) in a real run.
``--profile-top N`` runs cProfile over one measurement and prints
the N most expensive functions (by own time).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from reference import Agent, AgentConfig
from reference.effects import Send
from reference.ids import SeededIds
from reference.sip import Request, make_response, parse_message

PEER = ("127.0.0.1", 5070)
PIDF_TEMPLATE = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{entity}">'
    '<tuple id="t1"><status><basic>{basic}</basic></status>'
    "<contact>sip:load@127.0.0.1</contact><note>load {basic}</note></tuple></presence>\n")


class PeerDialog:
    """The notifier's side of one subscription: what it needs to write NOTIFYs."""

    def __init__(self, subscribe: Request, agent_address: str) -> None:
        self.call_id = subscribe.call_id
        self.to_header = subscribe.headers.get("From") or ""
        self.entity = subscribe.to.uri
        self.agent_address = agent_address
        self.cseq = 1
        self.bodies = [PIDF_TEMPLATE.format(entity=self.entity, basic=b).encode()
                       for b in ("open", "closed")]

    def notify(self, branch: int) -> bytes:
        self.cseq += 1
        body = self.bodies[self.cseq % 2]
        return b"".join((
            f"NOTIFY sip:{self.agent_address} SIP/2.0\r\n".encode(),
            f"Via: SIP/2.0/UDP {PEER[0]}:{PEER[1]};branch=z9hG4bKload{branch}\r\n".encode(),
            b"Max-Forwards: 70\r\n",
            f"From: <{self.entity}>;tag=load\r\n".encode(),
            f"To: {self.to_header}\r\n".encode(),
            f"Call-ID: {self.call_id}\r\n".encode(),
            f"CSeq: {self.cseq} NOTIFY\r\n".encode(),
            f"Contact: <sip:{PEER[0]}:{PEER[1]}>\r\n".encode(),
            b"Event: presence\r\n",
            b"Subscription-State: active;expires=3600\r\n",
            b"Content-Type: application/pidf+xml\r\n",
            f"Content-Length: {len(body)}\r\n\r\n".encode(), body))


def _sends(agent: Agent) -> list[Send]:
    return [e for e in agent.drain_effects() if isinstance(e, Send)]


def establish(profile: str, trace: int, subscriptions: int) -> tuple[Agent, list[PeerDialog]]:
    config = AgentConfig.from_mapping({
        "profile": profile, "trace": trace, "default_expiration": 3600,
        "max_subscriptions": max(subscriptions, 1)})
    agent = Agent(config, ids=SeededIds(config.seed))
    now = 0.0
    for number in range(subscriptions):
        agent.subscribe(f"sip:load{number}@lab.test", "sip:bench@lab.test", "bench", now=now)
    dialogs: list[PeerDialog] = []
    for send in _sends(agent):
        subscribe = parse_message(send.data)
        assert isinstance(subscribe, Request) and subscribe.method == "SUBSCRIBE"
        response = make_response(subscribe, 200, to_tag="load", headers=[
            ("Contact", f"<sip:{PEER[0]}:{PEER[1]}>"), ("Expires", "3600")])
        agent.datagram_received(response.to_bytes(), PEER, now=now)
        dialogs.append(PeerDialog(subscribe, config.local_address))
    agent.drain_effects()
    for branch, dialog in enumerate(dialogs):
        agent.datagram_received(dialog.notify(branch), PEER, now=now)
    answers = _sends(agent)
    assert len(answers) == len(dialogs) and all(a.data.startswith(b"SIP/2.0 200") for a in answers)
    return agent, dialogs


def measure(profile: str, trace: int, subscriptions: int, seconds: float,
            profiler: cProfile.Profile | None = None) -> tuple[float, float]:
    agent, dialogs = establish(profile, trace, subscriptions)
    # Pre-build the datagrams so the notifier's own work is not timed.
    batch = [dialog.notify(10_000 + i) for i, dialog in enumerate(dialogs)]
    branch = 10_000 + len(batch)
    count = 0
    elapsed = 0.0
    best = 0.0
    now = 1.0
    while elapsed < seconds:
        if profiler is not None:
            profiler.enable()
        start = time.process_time()
        for data in batch:
            agent.datagram_received(data, PEER, now=now)
            effects = agent.drain_effects()
        spent = time.process_time() - start
        elapsed += spent
        if spent > 0:
            best = max(best, len(batch) / spent)
        if profiler is not None:
            profiler.disable()
        answers = [e for e in effects if isinstance(e, Send)]
        assert len(answers) == 1 and answers[0].data.startswith(b"SIP/2.0 200"), effects
        count += len(batch)
        now += 0.01
        batch = [dialog.notify(branch + i) for i, dialog in enumerate(dialogs)]
        branch += len(batch)
    assert agent.counters.get("rx.parse_errors", 0) == 0
    return count / elapsed, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--subscriptions", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--profile", choices=("both", "ser", "rfc6665"), default="both")
    parser.add_argument("--trace", choices=("both", "0", "1"), default="both")
    parser.add_argument("--profile-top", type=int, default=0,
                        help="cProfile the runs and print this many functions")
    args = parser.parse_args()
    profiles = ("rfc6665", "ser") if args.profile == "both" else (args.profile,)
    traces = (0, 1) if args.trace == "both" else (int(args.trace),)
    for profile in profiles:
        for trace in traces:
            profiler = cProfile.Profile() if args.profile_top else None
            rate, best = measure(profile, trace, args.subscriptions, args.seconds, profiler)
            print(f"{profile:8s} trace={trace}  {rate:10,.0f} NOTIFY/s of CPU time "
                  f"(best batch {best:,.0f}/s)  "
                  f"({args.subscriptions} subscriptions)")
            if profiler is not None:
                pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile_top)


if __name__ == "__main__":
    main()
