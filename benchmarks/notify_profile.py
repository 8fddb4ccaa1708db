"""Where the agent's CPU time per NOTIFY goes in the real UDP runtime, in microseconds.

Rules of this file: a measurement tool, it asserts nothing. It runs
``benchmarks/udp_bench.py`` twice in child processes on the same load (real UDP on loopback,
a notifier process keeping a window of in-dialog NOTIFYs with PIDF bodies outstanding): once
plain, for the agent's CPU microseconds per answered NOTIFY split into user space and kernel,
and once with ``--cprofile``, for the share of the agent's user-space time in each part. The
kernel part is the plain run's system CPU time (the socket calls; on loopback a ``sendto``
also runs the receiving side's network stack). The shares (self time of each function, C
functions charged to the part that called them) times the plain run's user-space
microseconds give the microseconds per NOTIFY of each other part. The socket and polling
calls (``sendto``, ``recvfrom``, ``epoll``...) are left out of the shares: cProfile times
them by the wall clock, which counts the kernel's work (already the kernel part), waiting for
datagrams and, on a busy machine, the time the agent is preempted when its ``sendto`` wakes
the notifier (measured at ~120 us per ``sendto`` on the 2-core lab machine under load, where
the whole NOTIFY costs ~110 us of CPU).

* ``kernel (socket calls)``: system CPU time of the plain run;
* ``event loop``: asyncio's Python code and selectors, or uvloop's methods called from Python;
* ``runtime (udp.py)``: the UDP runtime's glue (read batches, outbox, effect dispatch);
* ``SIP parse``: ``parse_message`` and the typed header accessors (reference/sip);
* ``response build``: ``make_response``, ``to_bytes`` and the header writing they use;
* ``transaction / UA``: server transactions and the user agent core (sip/transaction.py,
  ua.py);
* ``dialog``: sip/dialog.py;
* ``agent``: the agent core (core.py, classify.py, actions.py, agent.py), the subscription
  state machine, policy, effects, queues and timers;
* ``PIDF``: reference/pidf.py, its XML hardening (xmlsafe.py) and lxml (with the other
  bodies' parsers: reginfo, RLMI, multipart);
* ``other``: anything else (the profiler's own hooks show up here).

The profiler slows Python functions more than C ones, so the shares lean towards the Python
parts: read them as where to look, the plain run's total as the cost.

Examples::

    .venv/bin/python benchmarks/notify_profile.py                 # asyncio/uvloop default
    .venv/bin/python benchmarks/notify_profile.py --loop asyncio --seconds 10
    .venv/bin/python benchmarks/notify_profile.py --repeat 3 --json
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PARTS = ("kernel (socket calls)", "event loop", "runtime (udp.py)", "SIP parse", "response build",
         "transaction / UA", "dialog", "agent", "PIDF", "other")
# Functions of reference/sip that write rather than read a message.
BUILD_FUNCTIONS = frozenset({
    "make_response", "to_bytes", "_header_block", "start_line", "reason_phrase", "add", "set",
    "_append_trusted", "_changed", "format_params", "__str__", "quote", "split_list",
})
# The agent core: the facade and the core of the redesign (core, classify, actions) with what
# they use per NOTIFY.
AGENT_FILES = frozenset({"agent.py", "core.py", "classify.py", "actions.py", "sharing.py",
                         "shared_dialogs.py", "queries.py", "resend.py", "packages.py",
                         "credentials.py", "digest.py", "subscription.py", "policy.py",
                         "effects.py", "qsa.py", "timers.py", "ids.py", "pump.py",
                         "subscribe_input.py", "config.py", "control.py"})
# The PIDF parser and the XML hardening it goes through (and the other bodies' parsers).
BODY_FILES = frozenset({"pidf.py", "xmlsafe.py", "reginfo.py", "rlmi.py", "multipart.py"})

Function = tuple[str, int, str]
# C functions whose profiled (wall-clock) time is the kernel's or waiting, not user CPU.
KERNEL_CALLS = ("sendto", "recvfrom", "recv_into", "select", "epoll", "poll")


def part_of(function: Function) -> str | None:
    """The part a Python function belongs to; None for a C function (charged to callers)."""
    filename, _, name = function
    if filename == "~" or filename.startswith("<") or filename.endswith("/enum.py"):
        return None  # C functions, dataclass-generated code, enum lookups: their callers
    path = filename.replace("\\", "/")
    base = path.rsplit("/", 1)[-1]
    if "/reference/sip/" in path:
        if base in ("transaction.py",):
            return "transaction / UA"
        if base == "dialog.py":
            return "dialog"
        return "response build" if name in BUILD_FUNCTIONS else "SIP parse"
    if "/reference/" in path:
        if base in ("udp.py", "tcp.py"):
            return "runtime (udp.py)"
        if base == "ua.py":
            return "transaction / UA"
        if base in BODY_FILES:
            return "PIDF"
        if base == "loops.py":
            return "event loop"
        if base in AGENT_FILES:
            return "agent"
        return "other"
    if "/asyncio/" in path or "uvloop" in path or base in ("selectors.py", "socket.py"):
        return "event loop"
    if "lxml" in path:
        return "PIDF"
    return "other"


def _c_part(function: Function) -> str | None:
    """C functions whose part their name tells (uvloop's loop, lxml)."""
    name = function[2]
    if "lxml" in name:
        return "PIDF"
    if "uvloop" in name:
        return "event loop"
    return None


def is_kernel_call(function: Function) -> bool:
    """A socket or polling call (a C function): its profiled time is not user CPU."""
    return function[0] == "~" and any(word in function[2] for word in KERNEL_CALLS)


def shares(stats_file: str) -> dict[str, float]:
    """Share of the profiled user-space time in each part (self time; C functions by
    caller; socket and polling calls left out, see above). The kernel part is 0 here: it
    comes from the plain run's system time."""
    stats: dict[Function, Any] = pstats.Stats(stats_file).stats  # type: ignore[attr-defined]
    seconds: dict[str, float] = defaultdict(float)

    def charge(function: Function, amount: float, depth: int = 0) -> None:
        part = part_of(function) or _c_part(function)
        if part is not None or depth > 5:
            seconds[part or "other"] += amount
            return
        callers = stats[function][4]
        total = sum(entry[2] for entry in callers.values())
        if not callers or total <= 0:
            seconds["other"] += amount
            return
        for caller, entry in callers.items():
            charge(caller, amount * entry[2] / total, depth + 1)

    for function, (_, _, tottime, _, _) in stats.items():
        if not is_kernel_call(function):
            charge(function, tottime)
    grand = sum(seconds.values()) or 1.0
    return {part: seconds.get(part, 0.0) / grand for part in PARTS}


def run_bench(args: argparse.Namespace, cprofile: str | None) -> dict[str, Any]:
    command = [sys.executable, str(HERE / "udp_bench.py"), "--json",
               "--seconds", str(args.seconds), "--subscriptions", str(args.subscriptions),
               "--window", str(args.window), "--profile", args.profile]
    if args.loop:
        command += ["--loop", args.loop]
    if cprofile:
        command += ["--cprofile", cprofile]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode not in (0, 2) or not lines:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip()
                           else f"udp_bench exited {done.returncode}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(
        description=doc.split("\n\n")[0],
        epilog=doc[doc.index("Examples::"):].replace("Examples::", "examples:"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="load phase per run")
    parser.add_argument("--subscriptions", type=int, default=200)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--profile", choices=("ser", "rfc6665"), default="rfc6665")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"),
                        help="the agent's event loop (default: udp_bench's)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="pairs of runs (plain, profiled); medians are printed")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.seconds <= 0:
        parser.error("--repeat and --seconds must be positive")
    load_before = [round(x, 2) for x in os.getloadavg()]
    plain: list[dict[str, Any]] = []
    profiled: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for number in range(args.repeat):
            try:
                plain.append(run_bench(args, None))
                stats_file = str(Path(tmp) / f"run{number}.pstats")
                run_bench(args, stats_file)
            except RuntimeError as exc:
                print(f"notify_profile: {exc}", file=sys.stderr)
                return 1
            profiled.append(shares(stats_file))
    cost = statistics.median(r["agent_cpu_us_per_notify"] for r in plain)
    kernel = statistics.median(r["agent_system_us_per_notify"] for r in plain)
    user = max(cost - kernel, 0.0)
    share = {part: statistics.median(s[part] for s in profiled) for part in PARTS}
    total = sum(share.values()) or 1.0
    micros = {part: user * share[part] / total for part in PARTS}
    micros["kernel (socket calls)"] = kernel
    result = {
        "loop": plain[0]["loop"], "compiled": plain[0]["compiled"], "profile": args.profile,
        "runs": args.repeat, "seconds": args.seconds,
        "rate_median": statistics.median(r["rate"] for r in plain),
        "lost": sum(r["lost"] for r in plain),
        "agent_cpu_us_per_notify": cost, "agent_user_us_per_notify": user,
        "agent_kernel_us_per_notify": kernel, "parts_us": micros,
        "cpus": os.cpu_count(), "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"notify_profile: loop {result['loop']}, "
          f"{'compiled' if result['compiled'] else 'interpreted'}, profile {args.profile}, "
          f"{args.repeat} run pair(s) x {args.seconds} s; load average "
          f"{' '.join(map(str, load_before))} ({result['cpus']} CPUs)")
    print(f"  answered NOTIFY/s (plain run, median): {result['rate_median']:,.0f}; "
          f"lost {result['lost']}")
    print(f"  agent CPU per NOTIFY (plain run, median): {cost:.1f} us "
          f"(user {user:.1f}, kernel {kernel:.1f})")
    for part in PARTS:
        print(f"  {part:22s} {micros[part]:6.1f} us  {micros[part] / (cost or 1.0):6.1%}")
    print(f"load average after: {' '.join(map(str, result['load_after']))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
