"""NOTIFY answering side by side on this machine: Kamailio (Debian package) and `b2b-agent`.

Run: ``.venv/bin/python benchmarks/lab_bench.py [--seconds 5] [--window 64]
[--fast-venv .venv-fast] [--quick]``.

Rows:

* Kamailio from the Debian package (/usr/sbin/kamailio), with this file's lean config: it
  answers every NOTIFY with a stateless 200 from the routing script (`sl`). One and two UDP
  workers (`children`), each with the default shared-memory allocator and with ``-x tlsf``.
  SIPp (Debian's sip-tester) sends the load: NOTIFYs of the same shape and size as the agent
  gets (in-dialog headers, Event, Subscription-State, a PIDF body), `window` outstanding,
  a new one for every 200 (``-l window``), never retransmitted in the run's few seconds.
  Kamailio does not track these dialogs: it answers the shape, not the dialog.
* The Python floor: benchmarks/notify_floor.py under the same SIPp load. On uvloop it splits
  the header section into a dict, parses the PIDF (the project's hardened lxml parse) and
  sends a 200, nothing else: a bound under the CPU per NOTIFY of any Python agent that
  parses every NOTIFY and its PIDF (not an anchor: no ratio column of its own).
* `b2b-agent` interpreted on the asyncio loop, interpreted on uvloop, and compiled on uvloop
  when ``--fast-venv`` names a venv with the compiled build (``scripts/compiled_venv.py DIR``).
  benchmarks/udp_bench.py drives it with real dialogs: the agent subscribes, the notifier
  accepts, then keeps `window` in-dialog NOTIFYs outstanding; the agent checks each fully
  (dialog, CSeq, Subscription-State) and parses its PIDF before the 200.

Printed per row: answered NOTIFY/s (closed loop: every NOTIFY answered, loss shown, a row with
loss is marked), p50/p99 NOTIFY->200 latency seen by the load generator (SIPp reports whole
milliseconds), the server's CPU microseconds per answered NOTIFY (all its processes, over the
load phase), and the ratio of the rate to each Kamailio row's rate. The load generator shares
the machine's cores with the server: on a 2-core machine both are measured as they are.

Ports: free ones picked at run time (never 5070/5080, which the interop tests use);
processes are started and stopped by PID; runtime files live in a temporary directory.
Without Kamailio or SIPp the Kamailio rows are skipped with a message.

Example (docs/lab.md)::

    .venv/bin/python benchmarks/lab_bench.py --seconds 5 --fast-venv .venv-fast
    .venv/bin/python benchmarks/lab_bench.py --quick    # a smoke run, ~1 s per row
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from udp_bench import PIDF_TEMPLATE  # run as a script: benchmarks/ is on sys.path

ROOT = Path(__file__).resolve().parents[1]
UDP_BENCH = ROOT / "benchmarks" / "udp_bench.py"
FLOOR = ROOT / "benchmarks" / "notify_floor.py"
FLOOR_NAME = "python floor, uvloop (no SIP checks)"
KAMAILIO = "/usr/sbin/kamailio"
KAMAILIO_MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules"
RESERVED_PORTS = {5060, 5070, 5080}  # the default and the interop tests' fixed ports
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 20.0

KAMAILIO_CFG = """#!KAMAILIO
# presence-b2b lab_bench: answer every NOTIFY with a stateless 200, nothing else.
debug=0
log_stderror=yes
fork=yes
children={children}
auto_aliases=no
listen=udp:127.0.0.1:{port}
disable_tcp=yes
mpath="{modules}/"
loadmodule "sl.so"
request_route {{
    if (method == "NOTIFY") {{
        sl_send_reply("200", "OK");
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}
"""

# The NOTIFY of benchmarks/udp_bench.py (notify_bytes, PIDF_TEMPLATE), as a SIPp scenario.
SIPP_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="lab-bench NOTIFY load">
  <send start_rtd="1"><![CDATA[
NOTIFY sip:bench@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
Max-Forwards: 70
From: <sip:load[call_number]@lab.test>;tag=load
To: <sip:bench@lab.test>;tag=bench[call_number]
Call-ID: [call_id]
CSeq: 2 NOTIFY
Contact: <sip:[local_ip]:[local_port]>
Event: presence
Subscription-State: active;expires=3600
Content-Type: application/pidf+xml
Content-Length: [len]

{body}]]></send>
  <recv response="200" rtd="1"/>
</scenario>
""".format(body=PIDF_TEMPLATE.format(entity="sip:load[call_number]@lab.test", basic="open"))


@dataclass
class Row:
    name: str
    rate: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    cpu_us: float = 0.0
    sent: int = 0
    answered: int = 0
    kamailio: bool = False
    skipped: str = ""  # why there are no numbers
    whole_ms: bool = False  # SIPp measures latency in whole milliseconds
    generator_cpu: float = 0.0  # the load generator's share of one core

    @property
    def lost(self) -> int:
        return self.sent - self.answered


# ---------------------------------------------------------------- Kamailio + SIPp


def free_udp_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port not in RESERVED_PORTS:
            return port


def kamailio_missing() -> str | None:
    if not os.path.exists(KAMAILIO) or not os.path.exists(f"{KAMAILIO_MODULES}/sl.so"):
        return f"Kamailio not installed ({KAMAILIO}, {KAMAILIO_MODULES}/sl.so)"
    if shutil.which("sipp") is None:
        return "SIPp not installed (Debian package sip-tester)"
    return None


def process_tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of `root` and every process below it."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        times[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0.0)
        stack.extend(children.get(pid, []))
    return total


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, name: str) -> None:
    """Until something is bound to udp `port` (the server is up), or fail."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited: "
                               f"{log.read_text(errors='replace')[-500:]}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return
        time.sleep(0.1)  # bounded start-up poll of a real process
    raise RuntimeError(f"{name} did not bind udp {port} within {START_TIMEOUT} s")


def kamailio_row(children: int, allocator: str | None, args: argparse.Namespace,
                 workdir: Path) -> Row:
    name = f"kamailio {children} worker{'s' if children > 1 else ''}, " \
           f"{'tlsf' if allocator else 'default allocator'}"
    rundir = Path(tempfile.mkdtemp(prefix="kam-", dir=workdir))
    port = free_udp_port()
    cfg = rundir / "kamailio.cfg"
    cfg.write_text(KAMAILIO_CFG.format(children=children, port=port, modules=KAMAILIO_MODULES))
    command = [KAMAILIO, "-f", str(cfg), "-DD", "-E", "-P", str(rundir / "kamailio.pid"),
               "-Y", str(rundir), "-m", "64", "-M", "8"]
    if allocator:
        command += ["-x", allocator]
    return sipp_load_row(name, command, port, rundir, args, anchor=True)


def floor_row(args: argparse.Namespace, workdir: Path) -> Row:
    """benchmarks/notify_floor.py (the least a Python server does per NOTIFY), under SIPp's
    load exactly as the Kamailio rows: not an anchor, a bound for the agent rows."""
    rundir = Path(tempfile.mkdtemp(prefix="floor-", dir=workdir))
    port = free_udp_port()
    command = [sys.executable, str(FLOOR), str(port)]
    return sipp_load_row(FLOOR_NAME, command, port, rundir, args, anchor=False)


def sipp_load_row(name: str, command: list[str], port: int, rundir: Path,
                  args: argparse.Namespace, anchor: bool) -> Row:
    """Start `command` (a server on udp `port`), drive it with SIPp's NOTIFY load, stop it."""
    sipp_port = free_udp_port()
    scenario = rundir / "notify.xml"
    scenario.write_text(SIPP_SCENARIO)
    log = rundir / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                  cwd=rundir)
    try:
        wait_for_port(port, server, log, Path(command[0]).name)
        cpu_before = process_tree_cpu(server.pid)
        children_before = _children_cpu()
        wall_before = time.monotonic()
        sipp = subprocess.run(
            ["sipp", f"127.0.0.1:{port}", "-sf", str(scenario), "-i", "127.0.0.1",
             "-p", str(sipp_port), "-l", str(args.window), "-r", "1000000", "-rp", "1000",
             "-timeout", f"{args.seconds}s", "-nostdin", "-trace_rtt", "-rtt_freq", "1",
             "-trace_stat", "-fd", "1", "-stf", str(rundir / "stat.csv")],
            cwd=rundir, capture_output=True, timeout=args.seconds + 60, check=False)
        cpu = process_tree_cpu(server.pid) - cpu_before
        generator = (_children_cpu() - children_before) / (time.monotonic() - wall_before)
        if sipp.returncode not in (0, 1):
            raise RuntimeError(f"sipp exited {sipp.returncode}: "
                               f"{sipp.stdout.decode(errors='replace')[-400:]}")
        row = sipp_row(name, rundir, cpu, anchor)
        row.generator_cpu = generator
        return row
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


def _children_cpu() -> float:
    """CPU seconds of this process's waited-for children (SIPp, once it has exited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sipp_row(name: str, rundir: Path, cpu: float, anchor: bool) -> Row:
    """From SIPp's statistics (last line of its stat file) and per-call response times."""
    lines = (rundir / "stat.csv").read_text().splitlines()
    stats = dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))
    sent = int(stats["OutgoingCall(C)"])
    answered = int(stats["SuccessfulCall(C)"])
    rtt_files = sorted(rundir.glob("*_rtt.csv"))
    samples: list[tuple[float, float]] = []
    for path in rtt_files:
        for line in path.read_text().splitlines()[1:]:
            at, rtt, _ = line.split(";")
            samples.append((float(at), float(rtt)))
    if len(samples) < 2:
        return Row(name, sent=sent, answered=answered, kamailio=anchor,
                   skipped="no answers measured")
    first, last = min(s[0] for s in samples), max(s[0] for s in samples)
    seconds = max((last - first) / 1000.0, 1e-3)
    latencies = sorted(s[1] for s in samples)
    return Row(name, rate=len(samples) / seconds, p50_ms=quantile(latencies, 0.50),
               p99_ms=quantile(latencies, 0.99),
               cpu_us=cpu / answered * 1e6 if answered else 0.0,
               sent=sent, answered=answered, kamailio=anchor, whole_ms=True)


def quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


# ---------------------------------------------------------------- b2b-agent via udp_bench


def agent_row(name: str, python: str, loop: str, args: argparse.Namespace,
              expect_compiled: bool) -> Row:
    done = subprocess.run(
        [python, str(UDP_BENCH), "--loop", loop, "--json", "--seconds", str(args.seconds),
         "--window", str(args.window), "--subscriptions", str(args.subscriptions)],
        cwd=ROOT / "benchmarks", capture_output=True, text=True,
        timeout=args.seconds + 180, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return Row(name, skipped=f"udp_bench failed ({done.returncode}): "
                                 f"{done.stderr.strip().splitlines()[-1:]}")
    result = json.loads(lines[-1])
    if bool(result["compiled"]) != expect_compiled:
        build = "compiled" if result["compiled"] else "interpreted"
        return Row(name, skipped=f"{python} runs the {build} build")
    return Row(name, rate=result["rate"], p50_ms=result["p50_ms"], p99_ms=result["p99_ms"],
               cpu_us=result["agent_cpu_us_per_notify"], sent=result["sent"],
               answered=result["answered"], generator_cpu=result["notifier_cpu_share"])


# ---------------------------------------------------------------- table


def print_table(rows: list[Row]) -> None:
    anchors = [r for r in rows if r.kamailio and not r.skipped and r.rate]
    header = (f"{'row':<40} {'NOTIFY/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU us':>7} "
              f"{'lost':>5} {'gen':>5}")
    print(header + "".join(f"  x{n + 1}" .rjust(7) for n in range(len(anchors))))
    for row in rows:
        if row.skipped:
            print(f"{row.name:<40} skipped: {row.skipped}")
            continue
        ratios = "".join(f"{row.rate / anchor.rate:7.2f}" for anchor in anchors)
        mark = "  (LOSS)" if row.lost else ""
        print(f"{row.name:<40} {row.rate:9,.0f} {_ms(row.p50_ms, row.whole_ms)} "
              f"{_ms(row.p99_ms, row.whole_ms)} {row.cpu_us:7.1f} {row.lost:5d} "
              f"{row.generator_cpu:5.0%}{ratios}{mark}")
    print("  CPU us: the server's CPU per answered NOTIFY; gen: the load generator's share "
          "of one core (near 100%: the generator, not the server, set the rate)")
    for number, anchor in enumerate(anchors, 1):
        print(f"  x{number}: rate / {anchor.name}")


def _ms(value: float, whole: bool) -> str:
    if whole:
        return "     <1" if value < 1 else f"{value:7.0f}"
    return f"{value:7.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lab_bench.py", description=(__doc__ or "").splitlines()[0],
        epilog="example:\n  .venv/bin/python benchmarks/lab_bench.py --seconds 5 "
               "--fast-venv .venv-fast\n  .venv/bin/python benchmarks/lab_bench.py --quick",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="load per row (default 5)")
    parser.add_argument("--window", type=int, default=64,
                        help="NOTIFYs outstanding (default 64)")
    parser.add_argument("--subscriptions", type=int, default=200,
                        help="dialogs the agent holds (default 200)")
    parser.add_argument("--fast-venv", metavar="DIR",
                        help="a venv with the compiled build, for the compiled/uvloop row")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 s per row, 20 dialogs")
    parser.add_argument("--no-kamailio", action="store_true", help="agent rows only")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.subscriptions = 1.0, 20
    if args.seconds <= 0 or args.window <= 0 or args.subscriptions <= 0:
        parser.error("--seconds, --window and --subscriptions must be > 0")
    print(f"lab_bench {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}, {args.seconds:g} s per row, "
          f"window {args.window}", flush=True)
    rows: list[Row] = []
    missing = "--no-kamailio" if args.no_kamailio else kamailio_missing()
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        for children in (1, 2):
            for allocator in (None, "tlsf"):
                if missing:
                    rows.append(Row(f"kamailio {children} worker(s), "
                                    f"{allocator or 'default allocator'}",
                                    kamailio=True, skipped=missing))
                    continue
                try:
                    rows.append(kamailio_row(children, allocator, args, Path(tmp)))
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                    rows.append(Row(f"kamailio {children} worker(s), {allocator or 'default'}",
                                    kamailio=True, skipped=str(exc)))
        if shutil.which("sipp") is None:
            rows.append(Row(FLOOR_NAME, skipped="SIPp not installed (Debian package sip-tester)"))
        else:
            try:
                rows.append(floor_row(args, Path(tmp)))
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                rows.append(Row(FLOOR_NAME, skipped=str(exc)))
    rows.append(agent_row("b2b-agent interpreted, asyncio", sys.executable, "asyncio", args,
                          expect_compiled=False))
    rows.append(agent_row("b2b-agent interpreted, uvloop", sys.executable, "uvloop", args,
                          expect_compiled=False))
    fast_python = Path(args.fast_venv or "", "bin", "python").absolute()
    if args.fast_venv and fast_python.exists():
        rows.append(agent_row("b2b-agent compiled, uvloop", str(fast_python), "uvloop", args,
                              expect_compiled=True))
    else:
        rows.append(Row("b2b-agent compiled, uvloop",
                        skipped=f"no compiled build: {fast_python} not found (make one: "
                        f"python3 scripts/compiled_venv.py {args.fast_venv})" if args.fast_venv
                        else "no compiled build given (--fast-venv DIR; make one: "
                        "python3 scripts/compiled_venv.py DIR)"))
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
