"""NOTIFY throughput of the agent on real UDP (asyncio runtime, one core).

Run: ``.venv/bin/python benchmarks/udp_bench.py [--subscriptions 200] [--seconds 5]
[--window 64] [--profile rfc6665] [--repeat 1] [--loop asyncio|uvloop] [--json]
[--cprofile FILE]``.

The agent (this process, `UdpRuntime`, traces off) holds N established subscriptions to a
load-generating notifier in a child process. The notifier keeps `window` in-dialog NOTIFYs
(PIDF bodies, round-robin over the dialogs) outstanding: every 200 it receives releases the
next NOTIFY. It never retransmits, so a NOTIFY without its 200 at the end (after a short
drain) counts as lost. Printed: answered NOTIFY/s, p50/p99 NOTIFY->200 latency seen by the
notifier, loss, the agent's CPU share of one core and its CPU time per answered NOTIFY
(both measured over the load phase only, which the notifier announces), and the notifier's
CPU share (near 100% means the load generator, not the agent, was the limit).

CPU microseconds per NOTIFY is the steadier figure on a shared machine: the rate drops when
another process takes the agent's core, the CPU cost per NOTIFY hardly moves. With
``--repeat N`` the runs are repeated and the best and median of each figure printed; any
loss in any run is reported. ``--loop`` picks the agent's event loop (default: uvloop where
installed, as `b2b-agent`); ``--json`` prints each run as one JSON object instead
(benchmarks/lab_bench.py reads it), with whether the SIP parser runs compiled.
``--cprofile FILE`` runs the agent under cProfile during the load phase (its CPU figures are
then the profiler's, not the agent's) and writes the stats to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import select
import socket
import statistics
import sys
import time
from typing import Any

from reference import AgentConfig, StatusMessage, loops
from reference.sip import message as sip_message
from reference.udp import UdpRuntime

PIDF_TEMPLATE = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{entity}">'
    '<tuple id="t1"><status><basic>{basic}</basic></status>'
    "<contact>sip:load@127.0.0.1</contact><note>load {basic}</note></tuple></presence>\n")


# ---------------------------------------------------------------- the notifier (child process)


class Dialog:
    def __init__(self, call_id: bytes, to_header: bytes, entity: str,
                 agent: tuple[str, int]) -> None:
        self.call_id = call_id
        self.to_header = to_header
        self.entity = entity
        self.agent = agent
        self.cseq = 1
        self.bodies = [PIDF_TEMPLATE.format(entity=entity, basic=b).encode()
                       for b in ("open", "closed")]


def header(data: bytes, name: bytes) -> bytes:
    start = data.find(b"\r\n" + name + b":")
    if start < 0:
        raise ValueError(f"no {name!r} header")
    start += len(name) + 3
    end = data.find(b"\r\n", start)
    return data[start:end].strip()


def notify_bytes(dialog: Dialog, port: int, branch: int, state: bytes) -> bytes:
    dialog.cseq += 1
    body = dialog.bodies[dialog.cseq % 2]
    return b"".join((
        b"NOTIFY sip:%s:%d SIP/2.0\r\n" % (dialog.agent[0].encode(), dialog.agent[1]),
        b"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKload%d\r\n" % (port, branch),
        b"Max-Forwards: 70\r\n",
        b"From: <%s>;tag=load\r\n" % dialog.entity.encode(),
        b"To: ", dialog.to_header, b"\r\n",
        b"Call-ID: ", dialog.call_id, b"\r\n",
        b"CSeq: %d NOTIFY\r\n" % dialog.cseq,
        b"Contact: <sip:127.0.0.1:%d>\r\n" % port,
        b"Event: presence\r\n",
        b"Subscription-State: ", state, b"\r\n",
        b"Content-Type: application/pidf+xml\r\n",
        b"Content-Length: %d\r\n\r\n" % len(body), body))


def branch_of(response: bytes) -> int | None:
    at = response.find(b"branch=z9hG4bKload")
    if at < 0:
        return None
    at += len(b"branch=z9hG4bKload")
    end = at
    while end < len(response) and response[end:end + 1].isdigit():
        end += 1
    return int(response[at:end])


def notifier_main(subscriptions: int, seconds: float, window: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    print(json.dumps({"port": port}), flush=True)
    dialogs: list[Dialog] = []
    outstanding: dict[int, float] = {}
    branch = 0
    # Phase 1: accept N subscriptions (200 + an initial NOTIFY each).
    deadline = time.monotonic() + 60
    while len(dialogs) < subscriptions or outstanding:
        if time.monotonic() > deadline:
            print(json.dumps({"error": f"only {len(dialogs)} subscriptions"}), flush=True)
            return
        if not select.select([sock], [], [], 1.0)[0]:
            continue
        data, source = sock.recvfrom(65535)
        if data.startswith(b"SUBSCRIBE"):
            call_id = header(data, b"Call-ID")
            to_value = header(data, b"From")
            vias = [line for line in data.split(b"\r\n") if line.startswith(b"Via:")]
            reply = b"".join((
                b"SIP/2.0 200 OK\r\n", b"\r\n".join(vias), b"\r\n",
                b"From: ", to_value, b"\r\n",
                b"To: ", header(data, b"To"), b";tag=load\r\n",
                b"Call-ID: ", call_id, b"\r\n",
                b"CSeq: ", header(data, b"CSeq"), b"\r\n",
                b"Contact: <sip:127.0.0.1:%d>\r\n" % port,
                b"Expires: 3600\r\nContent-Length: 0\r\n\r\n"))
            sock.sendto(reply, source)
            record = header(data, b"To").strip(b"<>").decode()
            dialog = Dialog(call_id, to_value, record, (source[0], source[1]))
            dialogs.append(dialog)
            branch += 1
            outstanding[branch] = time.monotonic()
            sock.sendto(notify_bytes(dialog, port, branch, b"active;expires=3600"), source)
        elif data.startswith(b"SIP/2.0 200"):
            number = branch_of(data)
            if number is not None:
                outstanding.pop(number, None)
    # Phase 2: load. Round-robin over dialogs, `window` NOTIFYs in flight. The agent
    # starts its CPU clock when it reads this line.
    print(json.dumps({"load": True}), flush=True)
    latencies: list[float] = []
    sent = answered = other = 0
    next_dialog = 0
    cpu_start = time.process_time()
    start = time.monotonic()
    stop = start + seconds

    def send_one() -> None:
        nonlocal branch, next_dialog, sent
        dialog = dialogs[next_dialog]
        next_dialog = (next_dialog + 1) % len(dialogs)
        branch += 1
        outstanding[branch] = time.monotonic()
        sock.sendto(notify_bytes(dialog, port, branch, b"active;expires=3600"), dialog.agent)
        sent += 1

    for _ in range(window):
        send_one()
    sock.setblocking(False)
    end = stop + 2.0  # drain: answers to the last NOTIFYs
    while True:
        now = time.monotonic()
        if now > end or (now > stop and not outstanding):
            break
        if not select.select([sock], [], [], 0.2)[0]:
            continue
        while True:
            try:
                data = sock.recv(65535)
            except BlockingIOError:
                break
            received = time.monotonic()
            number = branch_of(data)
            sent_at = outstanding.pop(number, None) if number is not None else None
            if sent_at is None or not data.startswith(b"SIP/2.0 200"):
                other += 1
                continue
            answered += 1
            latencies.append(received - sent_at)
            if received < stop:
                send_one()
    elapsed = min(time.monotonic(), stop) - start
    notifier_cpu = time.process_time() - cpu_start
    wall = time.monotonic() - start
    latencies.sort()

    def quantile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0

    print(json.dumps({
        "sent": sent, "answered": answered, "lost": len(outstanding), "other": other,
        "seconds": elapsed, "rate": answered / elapsed if elapsed else 0.0,
        "p50_ms": quantile(0.50) * 1000, "p99_ms": quantile(0.99) * 1000,
        "max_ms": (latencies[-1] * 1000) if latencies else 0.0,
        "notifier_cpu_share": notifier_cpu / wall if wall else 0.0,
    }), flush=True)


# ---------------------------------------------------------------- the agent (this process)


async def agent_main(args: argparse.Namespace) -> dict[str, Any]:
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--notifier", "--subscriptions", str(args.subscriptions),
        "--seconds", str(args.seconds), "--window", str(args.window),
        stdout=asyncio.subprocess.PIPE)
    assert child.stdout is not None
    first = json.loads(await asyncio.wait_for(child.stdout.readline(), 10))
    config = AgentConfig.from_mapping({
        "profile": args.profile, "trace": 0, "default_expiration": 3600,
        "presence_route": f"<sip:127.0.0.1:{first['port']};lr>",
        "max_subscriptions": max(args.subscriptions, 1)})
    runtime = await UdpRuntime.open(config, "127.0.0.1", 0)
    runtime.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    delivered = 0

    def count(message: StatusMessage) -> None:
        nonlocal delivered
        delivered += 1

    runtime.add_listener("bench", count)
    try:
        for number in range(args.subscriptions):
            runtime.subscribe(f"sip:load{number}@lab.test", "sip:bench@lab.test", "bench")
        line = await asyncio.wait_for(child.stdout.readline(), 90)
        if not line or "load" not in json.loads(line):
            return json.loads(line) if line else {"error": "notifier died"}
        profiler = cProfile.Profile() if args.cprofile else None
        cpu_before = time.process_time()
        times_before = os.times()
        wall_before = time.monotonic()
        if profiler is not None:
            profiler.enable()
        line = await asyncio.wait_for(child.stdout.readline(), args.seconds + 90)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.cprofile)
        cpu = time.process_time() - cpu_before
        times_after = os.times()
        user = times_after.user - times_before.user
        system = times_after.system - times_before.system
        wall = time.monotonic() - wall_before
        result: dict[str, Any] = json.loads(line) if line else {"error": "notifier died"}
        answered = int(result.get("answered", 0))
        result.update({
            "subscriptions": args.subscriptions, "window": args.window,
            "profile": args.profile, "statuses_delivered": delivered,
            "agent_cpu_share": cpu / wall if wall else 0.0,
            "agent_cpu_us_per_notify": cpu / answered * 1e6 if answered else 0.0,
            # The split: user space (Python, the loop) and the kernel (the socket calls;
            # on loopback a sendto also runs the receiving side's network stack).
            "agent_user_us_per_notify": user / answered * 1e6 if answered else 0.0,
            "agent_system_us_per_notify": system / answered * 1e6 if answered else 0.0,
            "agent_notify_received": runtime.agent.counters.get("rx.request.NOTIFY", 0),
            "agent_parse_errors": runtime.agent.counters.get("rx.parse_errors", 0),
            "loop": loops.describe(asyncio.get_running_loop()),
            # mypyc builds extension modules: the parser's file is then not a .py file.
            "compiled": not str(sip_message.__file__).endswith(".py"),
        })
        return result
    finally:
        runtime.close()
        if child.returncode is None:
            child.kill()
        await child.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--subscriptions", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--profile", choices=("ser", "rfc6665"), default="rfc6665")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs; with more than one, best and median are printed too")
    parser.add_argument("--loop", choices=loops.LOOPS, default=loops.default_loop(),
                        help="the agent's event loop (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="one JSON object per run")
    parser.add_argument("--cprofile", metavar="FILE",
                        help="profile the agent over the load phase, pstats written to FILE "
                             "(benchmarks/notify_profile.py reads it)")
    parser.add_argument("--notifier", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.notifier:
        notifier_main(args.subscriptions, args.seconds, args.window)
        return 0
    results: list[dict[str, Any]] = []
    for _ in range(max(args.repeat, 1)):
        try:
            result = loops.run(agent_main(args), args.loop)
        except loops.LoopUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if "error" in result:
            print(f"error: {result['error']}", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            print_run(result)
        results.append(result)
    if len(results) > 1 and not args.json:
        print_summary(results)
    return 0 if all(r["lost"] == 0 for r in results) else 2


def print_run(result: dict[str, Any]) -> None:
    print(f"profile {result['profile']}, loop {result['loop']}, "
          f"{'compiled' if result['compiled'] else 'interpreted'}, "
          f"{result['subscriptions']} subscriptions, "
          f"window {result['window']}, {result['seconds']:.1f} s")
    print(f"  answered NOTIFY/s : {result['rate']:,.0f}")
    print(f"  NOTIFY->200 p50   : {result['p50_ms']:.2f} ms   p99: {result['p99_ms']:.2f} ms"
          f"   max: {result['max_ms']:.2f} ms")
    print(f"  sent {result['sent']}, answered {result['answered']}, lost {result['lost']}, "
          f"unexpected {result['other']}")
    print(f"  agent CPU         : {result['agent_cpu_share']:.0%} of one core, "
          f"{result['agent_cpu_us_per_notify']:.1f} us per NOTIFY "
          f"(user {result['agent_user_us_per_notify']:.1f}, "
          f"kernel {result['agent_system_us_per_notify']:.1f}); "
          f"notifier CPU {result['notifier_cpu_share']:.0%}")
    print(f"  statuses delivered {result['statuses_delivered']}")


def print_summary(results: list[dict[str, Any]]) -> None:
    rates = sorted(r["rate"] for r in results)
    costs = sorted(r["agent_cpu_us_per_notify"] for r in results)
    lost = sum(r["lost"] for r in results)
    print(f"{len(results)} runs ({results[0]['profile']}): "
          f"NOTIFY/s best {rates[-1]:,.0f}, median {statistics.median(rates):,.0f}; "
          f"agent us/NOTIFY best {costs[0]:.1f}, median {statistics.median(costs):.1f}; "
          f"lost {lost} in all")


if __name__ == "__main__":
    sys.exit(main())
