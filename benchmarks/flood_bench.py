"""Floods over real UDP against a running `b2b-agent` process (issue 8 §2).

Run: ``.venv/bin/python benchmarks/flood_bench.py [--count 100000] [--subscriptions 5]``.

The agent runs as a subprocess (`python -m reference`, control protocol on an ephemeral
loopback port). A small notifier in this process (`MiniNotifier`, a thread) holds a few
subscriptions with short grants (4 s, so the agent refreshes every 2 s) and records when each
refresh arrives. Then two floods are sent at full speed from one socket:

1. `count` NOTIFYs for dialogs that do not exist (each must get a 481, or be dropped by the
   runtime's documented rate limit and counted in `answers_rate_limited`);
2. `count` well-formed 200 responses to SUBSCRIBEs the agent never sent (counted as
   `rx.unmatched_responses`, never answered).

Printed per flood: datagrams sent, handled by the agent, dropped by the kernel when the
socket's receive buffer overflowed (from /proc/net/udp), handled rate, 481s received,
answers rate-limited, the longest gap between two refreshes of the held subscriptions, and
the agent's RSS (VmRSS) before, at the peak, and after the transactions the flood created
have expired (Timer J).
`tests/reliability/test_floods.py` runs a small version and asserts on the same numbers.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reference.sip import Request, parse_message

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 15.0


# ---------------------------------------------------------------------------- the agent
class AgentProcess:
    """A `b2b-agent` subprocess on ephemeral loopback ports, with a control connection."""

    def __init__(self, params: dict[str, str], profile: str = "rfc6665", *,
                 listen: str = "127.0.0.1:0", loop: str | None = None) -> None:
        args = [sys.executable, "-m", "reference", "--listen", listen,
                "--control", "127.0.0.1:0", "--profile", profile, "--json"]
        if loop is not None:  # else the agent's default (uvloop where installed)
            args += ["--loop", loop]
        for name, value in params.items():
            args += ["--param", f"{name}={value}"]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.sip: tuple[str, int] = ("", 0)
        self.control: tuple[str, int] = ("", 0)
        self.startup_lines: list[str] = []
        self._read_startup()
        self.sock = socket.create_connection(self.control, timeout=10)
        self._buffer = b""
        self.events: list[dict[str, Any]] = []

    def _read_startup(self) -> None:
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        deadline = time.monotonic() + START_TIMEOUT
        pending = b""
        while not (self.sip[1] and self.control[1]):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"agent did not start: {self.startup_lines}")
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            pending += os.read(fd, 4096)
            while b"\n" in pending:
                raw, pending = pending.split(b"\n", 1)
                line = raw.decode(errors="replace").strip()
                self.startup_lines.append(line)
                words = line.split()
                if line.startswith("b2b-agent: SIP on udp"):
                    self.sip = _hostport(words[4])
                elif line.startswith("b2b-agent: control protocol on tcp"):
                    self.control = _hostport(words[5])

    def request(self, obj: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """Send one request, return its reply (events received meanwhile are kept)."""
        self.sock.sendall(json.dumps(obj).encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                message: dict[str, Any] = json.loads(line)
                if "event" in message:
                    self.events.append(message)
                else:
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply to {obj}")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("control connection closed")
            self._buffer += chunk

    def stats(self) -> dict[str, Any]:
        reply = self.request({"op": "stats"})
        stats: dict[str, Any] = reply["stats"]
        return stats

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> int:
        try:
            if self.proc.poll() is None:
                self.request({"op": "shutdown"}, timeout=5)
        except (OSError, TimeoutError, ValueError):
            pass
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=5)
        finally:
            self.sock.close()
            if self.proc.stderr is not None:
                self.proc.stderr.close()


def kernel_drops(port: int) -> int:
    """Datagrams the kernel dropped for the UDP socket bound to `port` (receive buffer
    full), from /proc/net/udp; 0 when not found."""
    try:
        with open("/proc/net/udp") as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    return int(fields[-1])
    except (OSError, ValueError, IndexError, StopIteration):
        pass
    return 0


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


@contextmanager
def running_agent(params: dict[str, str], profile: str = "rfc6665", *,
                  listen: str = "127.0.0.1:0", loop: str | None = None
                  ) -> Iterator[AgentProcess]:
    agent = AgentProcess(params, profile, listen=listen, loop=loop)
    try:
        yield agent
    finally:
        agent.stop()


# ---------------------------------------------------------------------------- notifier
@dataclass
class _Dialog:
    call_id: str
    tag: str
    subscriber_from: str
    our_to: str
    target: tuple[str, int]
    cseq: int = 0
    subscribes: list[float] = field(default_factory=list)


class SubscribePeer:
    """A notifier peer on one loopback UDP socket, served by a thread: every SUBSCRIBE that
    arrives goes to `on_subscribe`; anything else (and anything unparsable) is ignored."""

    def __init__(self, name: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address: tuple[str, int] = self.sock.getsockname()
        self._seq = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def record(self, name: str) -> str:
        return f"sip:{name}@{self.address[0]}:{self.address[1]}"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def on_subscribe(self, request: Request, source: tuple[str, int], now: float) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if not ready:
                continue
            data, source = self.sock.recvfrom(65535)
            try:
                message = parse_message(data)
            except ValueError:
                continue
            if isinstance(message, Request) and message.method == "SUBSCRIBE":
                self.on_subscribe(message, source, time.monotonic())


class MiniNotifier(SubscribePeer):
    """A presence server good enough for refresh checks: 200 + NOTIFY for every SUBSCRIBE.

    Grants min(requested, `grant`) seconds. NOTIFYs are sent once (loopback does not lose
    them); their 200s are ignored. `refresh_gaps(since)` gives per dialog the longest time
    between two SUBSCRIBEs seen after `since`.
    """

    def __init__(self, grant: int) -> None:
        self.grant = grant
        self.dialogs: dict[str, _Dialog] = {}
        self._lock = threading.Lock()
        super().__init__("mini-notifier")

    def on_subscribe(self, request: Request, source: tuple[str, int], now: float) -> None:
        self._seq += 1
        call_id = request.call_id
        requested = request.expires if request.expires is not None else self.grant
        granted = min(requested, self.grant)
        with self._lock:
            dialog = self.dialogs.get(call_id)
            if dialog is None:
                contact = (request.contacts[0].uri or "") if request.contacts else ""
                target = _uri_address(contact) or source
                dialog = _Dialog(call_id, f"n{self._seq}", str(request.from_),
                                 f"{request.to}", target)
                self.dialogs[call_id] = dialog
            dialog.subscribes.append(now)
        to_value = dialog.our_to if request.to.tag else f"{request.to};tag={dialog.tag}"
        via = "\r\n".join(f"Via: {v}" for v in request.headers.get_all("Via"))
        response = (f"SIP/2.0 200 OK\r\n{via}\r\nFrom: {request.headers.get('From')}\r\n"
                    f"To: {to_value}\r\nCall-ID: {call_id}\r\n"
                    f"CSeq: {request.headers.get('CSeq')}\r\nExpires: {granted}\r\n"
                    f"Contact: <sip:ps@{self.address[0]}:{self.address[1]}>\r\n"
                    f"Content-Length: 0\r\n\r\n")
        self.sock.sendto(response.encode(), source)
        dialog.our_to = to_value
        dialog.cseq += 1
        state = f"active;expires={granted}" if granted else "terminated;reason=timeout"
        notify = (f"NOTIFY sip:{dialog.target[0]}:{dialog.target[1]} SIP/2.0\r\n"
                  f"Via: SIP/2.0/UDP {self.address[0]}:{self.address[1]};"
                  f"branch=z9hG4bKmn{self._seq}\r\nMax-Forwards: 70\r\n"
                  f"From: {to_value}\r\nTo: {dialog.subscriber_from}\r\nCall-ID: {call_id}\r\n"
                  f"CSeq: {dialog.cseq} NOTIFY\r\nEvent: presence\r\n"
                  f"Subscription-State: {state}\r\n"
                  f"Contact: <sip:ps@{self.address[0]}:{self.address[1]}>\r\n"
                  f"Content-Length: 0\r\n\r\n")
        self.sock.sendto(notify.encode(), dialog.target)

    def refresh_gaps(self, since: float, until: float) -> dict[str, float]:
        """Per dialog: the longest stretch in [since, until] without a SUBSCRIBE."""
        gaps: dict[str, float] = {}
        with self._lock:
            for call_id, dialog in self.dialogs.items():
                times = [since] + [t for t in dialog.subscribes if since <= t <= until] + [until]
                gaps[call_id] = max(b - a for a, b in itertools.pairwise(times))
        return gaps


def _uri_address(uri: str) -> tuple[str, int] | None:
    # sip:host:port (what the agent puts in Contact)
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    rest = rest.split(";", 1)[0].split("@")[-1]
    host, _, port = rest.rpartition(":")
    return (host, int(port)) if host and port.isdigit() else None


# ---------------------------------------------------------------------------- floods
def unknown_notify(i: int, source: tuple[str, int], agent: tuple[str, int]) -> bytes:
    return (f"NOTIFY sip:{agent[0]}:{agent[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {source[0]}:{source[1]};branch=z9hG4bKflood{i}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:ghost{i}@flood.test>;tag=f{i}\r\n"
            f"To: <sip:w@b2b.test>;tag=t{i}\r\nCall-ID: flood-{i}@flood.test\r\n"
            f"CSeq: 1 NOTIFY\r\nEvent: presence\r\nSubscription-State: active;expires=600\r\n"
            f"Content-Length: 0\r\n\r\n").encode()


def unsolicited_200(i: int, source: tuple[str, int], agent: tuple[str, int]) -> bytes:
    return (f"SIP/2.0 200 OK\r\n"
            f"Via: SIP/2.0/UDP {agent[0]}:{agent[1]};branch=z9hG4bKnever{i};rport\r\n"
            f"From: <sip:w@b2b.test>;tag=u{i}\r\nTo: <sip:p@flood.test>;tag=v{i}\r\n"
            f"Call-ID: unsolicited-{i}@b2b.test\r\nCSeq: {i + 1} SUBSCRIBE\r\nExpires: 600\r\n"
            f"Content-Length: 0\r\n\r\n").encode()


@dataclass
class FloodResult:
    kind: str
    sent: int
    handled: int  # reached the agent's core
    kernel_dropped: int  # dropped by the kernel before the agent could read them
    seconds: float
    answers: dict[str, int]
    rate_limited: int
    max_refresh_gap: float
    rss_before_kib: int
    rss_peak_kib: int
    rss_after_kib: int
    timers_before: int  # the runtime's live timers (transactions' timers included)
    timers_after: int

    @property
    def rate(self) -> float:
        return self.handled / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["handled_per_second"] = round(self.rate)
        out["seconds"] = round(self.seconds, 2)
        out["max_refresh_gap"] = round(self.max_refresh_gap, 2)
        return out


def _counter(stats: dict[str, Any], name: str) -> int:
    value = stats["counters"].get(name, 0)
    assert isinstance(value, int)
    return value


def flood(agent: AgentProcess, notifier: MiniNotifier, kind: str, count: int,
          make: Callable[[int, tuple[str, int], tuple[str, int]], bytes],
          handled_counter: str, settle: float, rate: float = 0.0) -> FloodResult:
    """Send `count` datagrams at full speed (or `rate` per second); count the answers; wait
    for the agent to settle."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    source = sock.getsockname()
    answers: dict[str, int] = {}
    done = threading.Event()

    def receive() -> None:
        while not done.is_set():
            ready, _, _ = select.select([sock], [], [], 0.05)
            while ready:
                try:
                    data = sock.recv(65535, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                status = data[8:11].decode(errors="replace")
                answers[status] = answers.get(status, 0) + 1

    before = agent.stats()
    drops_before = kernel_drops(agent.sip[1])
    rss_before = agent.rss_kib()
    peaks = [rss_before]

    def sample_rss() -> None:
        while not done.is_set():
            peaks.append(agent.rss_kib())
            time.sleep(0.1)

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    started = time.monotonic()
    datagrams = [make(i, source, agent.sip) for i in range(count)]
    for number, data in enumerate(datagrams):
        sock.sendto(data, agent.sip)
        if rate > 0 and number % 100 == 99:
            ahead = started + (number + 1) / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    # Wait until the agent has worked through what the kernel kept (bounded).
    peak = max(peaks)
    last = -1
    handled = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.2)
        peak = max(peak, agent.rss_kib())
        now_stats = agent.stats()
        handled = _counter(now_stats, handled_counter) - _counter(before, handled_counter)
        if handled == last or handled >= count:
            break
        last = handled
    seconds = time.monotonic() - started
    time.sleep(0.3)  # last answers in flight on loopback
    done.set()
    receiver.join(timeout=5)
    sampler.join(timeout=5)
    peak = max(peak, *peaks)
    sock.close()
    flood_end = time.monotonic()
    # Let the transactions the flood created expire (Timer J), then measure again.
    settle_end = flood_end + settle
    while time.monotonic() < settle_end:
        time.sleep(0.2)
        peak = max(peak, agent.rss_kib())
    after = agent.stats()
    gaps = notifier.refresh_gaps(started, time.monotonic())
    limited = after["answers_rate_limited"] - before["answers_rate_limited"]
    dropped = kernel_drops(agent.sip[1]) - drops_before
    return FloodResult(kind, count, handled, dropped, seconds, answers, limited,
                       max(gaps.values()) if gaps else 0.0, rss_before, peak,
                       agent.rss_kib(), before["live_timers"], after["live_timers"])


def hold_subscriptions(agent: AgentProcess, notifier: MiniNotifier, n: int) -> list[int]:
    handles = []
    for i in range(n):
        reply = agent.request({"op": "subscribe", "record": notifier.record(f"held{i}"),
                               "subscriber": f"sip:w{i}@b2b.test"})
        if not reply.get("ok"):
            raise RuntimeError(f"subscribe failed: {reply}")
        handles.append(int(reply["handle"]))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        dump = agent.request({"op": "dump"})["subscriptions"]
        if sum(1 for row in dump if row["state"] == "confirmed") == n:
            return handles
        time.sleep(0.05)
    raise RuntimeError("held subscriptions did not become active")


def run(count: int, subscriptions: int, t1: float, warmup: int,
        profile: str = "rfc6665", rate: float = 0.0, repeat: int = 1) -> list[FloodResult]:
    """Both floods against one agent; the transactions linger 64*t1 after each."""
    grant = 4
    params = {"default_expiration": str(grant), "t1": str(t1), "t2": str(max(t1, 4.0)),
              "trace": "0"}
    notifier = MiniNotifier(grant)
    results = []
    try:
        with running_agent(params, profile) as agent:
            hold_subscriptions(agent, notifier, subscriptions)
            settle = 64 * t1 + 2.0
            if warmup:
                # Python's allocator keeps some arenas after the first burst: measure the
                # steady state, not the interpreter warming up.
                results.append(flood(agent, notifier, "warm-up NOTIFY", warmup,
                                     unknown_notify, "rx.notify_unknown_dialog", settle, rate))
            for _ in range(repeat):  # repeated floods show whether memory keeps growing
                results.append(flood(agent, notifier, "unknown-dialog NOTIFY", count,
                                     unknown_notify, "rx.notify_unknown_dialog", settle, rate))
            results.append(flood(agent, notifier, "unsolicited 200", count, unsolicited_200,
                                 "rx.unmatched_responses", settle, rate))
    finally:
        notifier.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="UDP floods against b2b-agent")
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--subscriptions", type=int, default=5)
    parser.add_argument("--t1", type=float, default=0.5,
                        help="agent T1: transactions linger 64*T1 (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=5000)
    parser.add_argument("--profile", default="rfc6665", choices=("ser", "rfc6665"))
    parser.add_argument("--rate", type=float, default=0.0,
                        help="datagrams per second (default 0: full speed)")
    parser.add_argument("--repeat", type=int, default=1, help="NOTIFY floods in a row")
    args = parser.parse_args(argv)
    for result in run(args.count, args.subscriptions, args.t1, args.warmup, args.profile,
                      args.rate, args.repeat):
        print(json.dumps(result.as_dict()))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
