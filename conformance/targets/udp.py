"""Real-time targets: `udp` (an agent process with SIP/UDP and the control protocol) and
`sip-only` (an external subscriber triggered by a command; no status observable).

The runner's `poll` blocks on the peer's UDP socket (and the control connection) with
`selectors`, bounded by the step's deadline; times are seconds since the session opened.
Timing windows are widened by `tolerance + tolerance_ratio * window`.

The peer also listens on TCP at its UDP address (`udp` target, capability `tcp`): accepted
and opened connections are framed by Content-Length with the project's
`reference.sip.stream.StreamFramer` (the agent's own parse limits) and labelled `c1`, `c2`,
... in the order they appear; a scenario with `transport: tcp` starts the agent with
`--transport udp,tcp` (it listens on TCP at its SIP port).

The `udp` target authenticates on the control connection when it has a token: the
`control_token` option, else `B2B_CONTROL_TOKEN` from the environment, else (default agent
command only) a fresh random one per session, handed to the agent in that variable.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import IO, Any

from conformance.peer import registrar_reply
from conformance.runner import Datagram, Incoming, Status
from conformance.scenario import LAB_PASSWORD, LAB_USERNAME, REFERENCE_FEATURES, Scenario
from reference.sip.errors import SipParseError
from reference.sip.stream import StreamFramer

STARTUP_TIMEOUT = 10.0
TOKEN_ENV = "B2B_CONTROL_TOKEN"  # as reference/cli.py reads it
REPLY_TIMEOUT = 5.0
DEFAULT_AGENT_COMMAND = (
    "b2b-agent --listen {listen} --control {control} --profile {profile} {params}")


def free_port(kind: int, avoid: frozenset[int] | set[int] = frozenset(),
              attempts: int = 20) -> int:
    """A port the OS says is free now and not in `avoid` (small race with other processes:
    acceptable)."""
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port not in avoid:
            return port
    raise RuntimeError(f"no free port outside {sorted(avoid)} in {attempts} attempts")


def free_udp_tcp_port(attempts: int = 20) -> int:
    """A port free for both UDP and TCP now (the agent listens on both at its SIP port)."""
    for _ in range(attempts):
        port = free_port(socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no port free for both UDP and TCP in {attempts} attempts")


class _Connection:
    """One peer TCP connection: its socket, framer and label."""

    def __init__(self, sock: socket.socket, label: str, remote: tuple[str, int]) -> None:
        self.sock = sock
        self.label = label
        self.remote = remote
        self.framer = StreamFramer()
        self.open = True


def agent_argv(template: str | None, listen: str, control: str, profile: str,
               params: dict[str, Any]) -> list[str]:
    """The agent command line: `{params}` becomes `--param NAME=VALUE` for each parameter."""
    template = template or DEFAULT_AGENT_COMMAND
    argv: list[str] = []
    for token in shlex.split(template):
        if token == "{params}":
            for name, value in params.items():
                if name != "profile":
                    argv.extend(["--param", f"{name}={value}"])
            continue
        argv.append(token.replace("{listen}", listen).replace("{control}", control)
                    .replace("{profile}", profile))
    return with_b2b_agent(argv)


def with_b2b_agent(argv: list[str]) -> list[str]:
    """`b2b-agent` not on PATH (a venv not activated): the same code, by module."""
    if argv and argv[0] == "b2b-agent" and shutil.which("b2b-agent") is None:
        return [sys.executable, "-m", "reference", *argv[1:]]
    return argv


class _RealTimeSession:
    """Peer UDP socket, a real-time clock and the runner interface common to both."""

    capabilities: frozenset[str] = frozenset()
    reference = False
    # Answer REGISTERs 200 at once (a subscriber that subscribes only once registered).
    registrar = False

    def __init__(self, agent_address: tuple[str, int] | None, tolerance: float,
                 tolerance_ratio: float, tcp: bool = False) -> None:
        """`tcp`: the peer listens on TCP at its UDP address too."""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", free_udp_tcp_port() if tcp else 0))
        self.sock.setblocking(False)
        host, port = self.sock.getsockname()
        self.peer_hostport = f"{host}:{port}"
        self.agent_address = agent_address
        self.abs_tolerance = tolerance
        self.ratio = tolerance_ratio
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.sock, selectors.EVENT_READ, "sip")
        self.inbox: list[Incoming] = []
        self.listener: socket.socket | None = None
        self.connections: list[_Connection] = []
        if tcp:
            self.listen_tcp()
        self.last_source: tuple[str, int] | None = None
        self.t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def tolerance(self, seconds: float) -> float:
        return self.abs_tolerance + self.ratio * seconds

    def send(self, data: bytes, to: str = "") -> None:
        """To `to` (host:port), else the configured address, else where the subscriber
        last sent from."""
        self.sock.sendto(data, self._destination(to))

    def _destination(self, to: str) -> tuple[str, int]:
        """`to` (host:port), else the configured agent address, else where the subscriber
        last sent from."""
        if to:
            host, _, port = to.rpartition(":")
            return host, int(port)
        address = self.agent_address or self.last_source
        if address is None:
            raise RuntimeError("nowhere to send: no agent address and nothing received yet")
        return address

    def fault(self, spec: dict[str, Any]) -> None:
        raise RuntimeError("faults need the sim target")

    # -- TCP (capability `tcp`)
    def listen_tcp(self) -> None:
        """Listen on TCP at the peer's UDP address (its Contact and Via name one address)."""
        host, _, port = self.peer_hostport.rpartition(":")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, int(port)))
        listener.listen(16)
        listener.setblocking(False)
        self.listener = listener
        self.selector.register(listener, selectors.EVENT_READ, "accept")

    def _adopt(self, sock: socket.socket, remote: tuple[str, int]) -> _Connection:
        sock.setblocking(False)
        connection = _Connection(sock, f"c{len(self.connections) + 1}", remote)
        self.connections.append(connection)
        self.selector.register(sock, selectors.EVENT_READ, connection)
        return connection

    def send_stream(self, data: bytes, to: str = "", connection: str = "") -> str:
        """On `connection`, else on an open connection to `to` (or the agent's address)
        that the peer opened, else on a new one."""
        if connection:
            found = next((c for c in self.connections if c.label == connection), None)
            if found is None or not found.open:
                raise RuntimeError(f"connection {connection} is closed")
        else:
            address = self._destination(to)
            found = next((c for c in self.connections if c.open and c.remote == address),
                         None)
            if found is None:
                sock = socket.create_connection(address, timeout=REPLY_TIMEOUT)
                found = self._adopt(sock, address)
        # A whole message at once: loopback takes it; blocking only for this write.
        found.sock.setblocking(True)
        try:
            found.sock.sendall(data)
        finally:
            found.sock.setblocking(False)
        return found.label

    def disconnect(self, connection: str = "") -> list[str]:
        closed = [c for c in self.connections if c.open and connection in ("", c.label)]
        for item in closed:
            self._close_connection(item)
        return [c.label for c in closed]

    def _close_connection(self, connection: _Connection) -> None:
        connection.open = False
        self.selector.unregister(connection.sock)
        connection.sock.close()

    def _stream_readable(self, connection: _Connection) -> None:
        try:
            chunk = connection.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._close_connection(connection)
            return
        try:
            messages = connection.framer.feed(chunk)
        except SipParseError:
            self._close_connection(connection)  # unframeable: end the connection (§18.3)
            return
        source = f"{connection.remote[0]}:{connection.remote[1]}"
        for data in messages:
            self.inbox.append(Datagram(data, self.now(), self.peer_hostport, source, b"",
                                       "tcp", connection.label))

    def poll(self, deadline: float) -> Incoming | None:
        while not self.inbox:
            left = deadline - self.now()
            if left <= 0:
                return None
            for key, _ in self.selector.select(timeout=left):
                self._readable(key.data)
        return self.inbox.pop(0)

    def _readable(self, what: Any) -> None:
        if isinstance(what, _Connection):
            self._stream_readable(what)
            return
        if what == "accept" and self.listener is not None:
            try:
                sock, remote = self.listener.accept()
            except BlockingIOError:
                return
            self._adopt(sock, (remote[0], remote[1]))
            return
        if what == "sip":
            while True:
                try:
                    data, source = self.sock.recvfrom(65535)
                except BlockingIOError:
                    return
                if not data.strip(b"\r\n \t\0"):
                    # A keep-alive (CRLF, RFC 5626 §3.5.1 style, or padding): no message.
                    continue
                answered = registrar_reply(data) if self.registrar else None
                if answered is not None:
                    self.sock.sendto(answered, source)
                # One socket: whatever arrives here was sent to the peer's address; the
                # source is the subscriber's sending socket (where replies go).
                self.last_source = (source[0], source[1])
                self.inbox.append(Datagram(data, self.now(), self.peer_hostport,
                                           f"{source[0]}:{source[1]}", answered or b""))

    def close(self) -> None:
        for connection in self.connections:
            if connection.open:
                connection.sock.close()
        if self.listener is not None:
            self.listener.close()
        self.selector.close()
        self.sock.close()


class UdpSession(_RealTimeSession):
    capabilities = frozenset({"status", "unsubscribe", "reg", "tcp"})

    def __init__(self, argv_template: str | None, profile: str, params: dict[str, Any],
                 tolerance: float, tolerance_ratio: float,
                 control_token: str | None = None, reference: bool = True) -> None:
        self.reference = reference
        params = dict(params)
        # `transports` (a scenario with `transport: tcp`): our agent gets --transport, another
        # command line `--param transports=...` through {params}; the peer listens on TCP.
        transports = str(params.get("transports", "udp"))
        if argv_template is None:
            params.pop("transports", None)
        # The peer binds first, so the agent's ports cannot be the peer's; the SIP port is
        # chosen before the control port and both are distinct (a probe of one could
        # otherwise hand out the other's number once it is closed).
        super().__init__(None, tolerance, tolerance_ratio, tcp=transports != "udp")
        peer_port = self.sock.getsockname()[1]  # its TCP listener may open there later
        sip_port = (free_port(socket.SOCK_DGRAM) if transports == "udp"
                    else free_udp_tcp_port())
        control_port = free_port(socket.SOCK_STREAM, avoid={sip_port, peer_port})
        self.agent_address = ("127.0.0.1", sip_port)
        # Kept open for the life of the process (closed in close()).
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        argv = agent_argv(argv_template, f"127.0.0.1:{sip_port}",
                          f"127.0.0.1:{control_port}", profile, params)
        token = control_token or os.environ.get(TOKEN_ENV)
        if token is None and argv_template is None:
            token = secrets.token_hex(16)  # our own agent: nobody else may drive it
        env = dict(os.environ)
        if token is not None:
            env[TOKEN_ENV] = token
        self.credentials_dir: tempfile.TemporaryDirectory[str] | None = None
        if argv_template is None:
            # Our own agent gets the lab credentials (docs/conformance.md), mode 600.
            self.credentials_dir = tempfile.TemporaryDirectory(prefix="b2b-conform-")
            path = os.path.join(self.credentials_dir.name, "credentials.yaml")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump({"credentials": [{"username": LAB_USERNAME,
                                            "password": LAB_PASSWORD}]}, out)
            argv += ["--credentials", path]
            if transports != "udp":
                argv += ["--transport", transports]
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=self.stderr, env=env)
        self.control = self._connect(control_port)
        self.buffer = b""
        self.replies: list[dict[str, Any]] = []
        self.next_id = 0
        self.selector.register(self.control, selectors.EVENT_READ, "control")
        if token is not None:
            self._request({"op": "auth", "token": token})
        self.t0 = time.monotonic()  # scenario time starts once the agent is up

    def _connect(self, port: int) -> socket.socket:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"agent exited with {self.process.returncode}: "
                                   f"{self._stderr_text()}")
            try:
                return socket.create_connection(("127.0.0.1", port), timeout=1.0)
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("agent control port did not open within "
                                       f"{STARTUP_TIMEOUT} s") from None
                time.sleep(0.05)  # bounded start-up poll of a real process

    def _stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()[-2000:].decode("utf-8", "replace")

    def _readable(self, what: Any) -> None:
        if what != "control":
            super()._readable(what)
            return
        chunk = self.control.recv(65536)
        if not chunk:
            raise RuntimeError("agent closed the control connection: " + self._stderr_text())
        self.buffer += chunk
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            if not line.strip():
                continue
            obj = json.loads(line)
            if obj.get("event") == "status":
                document = obj.get("document") or {}
                self.inbox.append(Status({
                    "handle": obj.get("handle"),
                    "status": obj.get("status"), "reason": obj.get("reason"),
                    "retry_at": obj.get("retry_at"), "at": obj.get("at"),
                    "basic": document.get("basic") if isinstance(document, dict) else None,
                    "registration": obj.get("registration"),
                    "list_uri": obj.get("list_uri"), "resource": obj.get("resource"),
                }, self.now()))
            elif "ok" in obj:
                self.replies.append(obj)

    def _request(self, request: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        request["id"] = self.next_id
        self.control.sendall(json.dumps(request).encode() + b"\n")
        deadline = time.monotonic() + REPLY_TIMEOUT
        while True:
            for reply in self.replies:
                if reply.get("id") == self.next_id:
                    self.replies.remove(reply)
                    if not reply.get("ok"):
                        raise RuntimeError(f"control {request['op']}: {reply.get('error')}")
                    return reply
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"control {request['op']}: no reply")
            for key, _ in self.selector.select(timeout=left):
                self._readable(key.data)

    def subscribe(self, record: str, subscriber: str, package: str = "presence") -> Any:
        request = {"op": "subscribe", "record": record, "subscriber": subscriber}
        if package != "presence":
            request["package"] = package
        return self._request(request)["handle"]

    def fetch(self, record: str, subscriber: str) -> Any:
        return self._request({"op": "fetch", "record": record, "subscriber": subscriber})[
            "handle"]

    def unsubscribe(self, handle: Any) -> None:
        self._request({"op": "unsubscribe", "handle": handle})

    def close(self) -> None:
        try:
            self.control.close()
        finally:
            # Killed, not terminated: a graceful shutdown would unsubscribe towards a peer
            # that is gone and only cost time.
            self.process.kill()
            self.process.wait(timeout=5)
            self.stderr.close()
            if self.credentials_dir is not None:
                self.credentials_dir.cleanup()
            super().close()


class UdpTarget:
    name = "udp"
    capabilities = UdpSession.capabilities

    def __init__(self, agent_command: str | None = None, tolerance: float = 0.25,
                 tolerance_ratio: float = 0.02, control_token: str | None = None) -> None:
        self.agent_command = agent_command
        self.control_token = control_token
        self.tolerance = tolerance
        self.tolerance_ratio = tolerance_ratio
        # Our own agent unless another command line is given: then another build.
        self.reference = agent_command is None

    def features_for(self, profile: str) -> frozenset[str]:
        """Our own agent's optional features in this profile; another build declares
        none here (a target file says what it has)."""
        return REFERENCE_FEATURES.get(profile, frozenset()) if self.reference else frozenset()

    def open(self, scenario: Scenario, profile: str) -> UdpSession:
        params = scenario.agent_params_for(profile)
        return UdpSession(self.agent_command, str(params["profile"]), params,
                          self.tolerance, self.tolerance_ratio, self.control_token,
                          self.reference)


def _parse_address(text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    host, _, port = text.rpartition(":")
    return host, int(port)


class SipOnlySession(_RealTimeSession):
    """An external subscriber: subscribe/unsubscribe run configured commands.

    The scenario clock starts at the first request the subscriber sends after the first
    `subscribe` (the trigger may return before the subscriber acts, or it may be started
    for the run and subscribe by itself: then there is no trigger at all). Replies go where
    requests come from and NOTIFYs to the SUBSCRIBE's Contact, so `listen` is only the
    fallback for a subscriber that has sent nothing yet."""

    def __init__(self, trigger: str | None, untrigger: str | None, listen: str | None,
                 tolerance: float, tolerance_ratio: float, *,
                 env: dict[str, str] | None = None,
                 trigger_timeout: float = REPLY_TIMEOUT) -> None:
        super().__init__(_parse_address(listen), tolerance, tolerance_ratio)
        self.trigger = trigger
        self.untrigger = untrigger
        self.env = env or {}
        self.trigger_timeout = trigger_timeout
        self.capabilities = frozenset({"unsubscribe"} if untrigger else set())
        self.clock_started = False
        # Declared values (PIXIT) that replace parameters in time expressions (e.g. t1).
        self.declared_names: dict[str, float] = {}
        # The peer grants what the subscriber asked (declaration `grant: asked`) or the
        # scenario's own number (`grant: scenario`).
        self.grants_asked = True

    def _run(self, template: str, record: str, subscriber: str) -> None:
        argv = [token.replace("{record}", record).replace("{subscriber}", subscriber)
                .replace("{peer}", self.peer_hostport) for token in shlex.split(template)]
        try:
            done = subprocess.run(argv, timeout=self.trigger_timeout,
                                  stdin=subprocess.DEVNULL, capture_output=True,
                                  env={**os.environ, **self.env}, check=False)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"{argv[0]}: no exit within {self.trigger_timeout:g} s "
                               f"(trigger_timeout); stderr: {_tail(exc.stderr)}") from None
        except OSError as exc:
            raise RuntimeError(f"{argv[0]}: cannot run: {exc.strerror}") from None
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: exit status {done.returncode}; "
                               f"stderr: {_tail(done.stderr)}")

    def subscribe(self, record: str, subscriber: str, package: str = "presence") -> Any:
        if package != "presence":  # (scenarios needing it require `reg`, which this lacks)
            raise RuntimeError(f"a SIP-only subscriber is triggered for presence, not {package}")
        self.last = (record, subscriber)
        if self.trigger:
            self._run(self.trigger, record, subscriber)
        if not self.clock_started:
            self._start_clock_at_first_request()
        return self.last

    def _start_clock_at_first_request(self) -> None:
        """t = 0 is the first datagram from the subscriber that the registrar did not
        answer (waits `trigger_timeout`); REGISTERs before it keep their (negative) times."""
        self.clock_started = True
        deadline = self.now() + self.trigger_timeout
        before: list[Incoming] = []
        while True:
            item = self.poll(deadline)
            if item is None:
                raise RuntimeError(f"the subscriber sent nothing within "
                                   f"{self.trigger_timeout:g} s of the trigger "
                                   "(trigger_timeout)" + (
                                       f" but {len(before)} REGISTER(s)" if before else ""))
            if not (isinstance(item, Datagram) and item.answered):
                break
            before.append(item)
        shift = item.at
        self.t0 += shift
        self.inbox[:0] = [*before, item]
        self.inbox = [Datagram(d.data, d.at - shift, d.destination, d.source, d.answered)
                      if isinstance(d, Datagram) else d for d in self.inbox]

    def unsubscribe(self, handle: Any) -> None:
        if self.untrigger is None:
            raise RuntimeError("no --untrigger-command configured")
        self._run(self.untrigger, *handle)


def _tail(data: bytes | str | None, limit: int = 400) -> str:
    if not data:
        return "(empty)"
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return " ".join(text.split())[-limit:]


class SipOnlyTarget:
    name = "sip-only"

    def __init__(self, trigger: str | None, untrigger: str | None, listen: str | None,
                 tolerance: float = 0.25, tolerance_ratio: float = 0.02) -> None:
        if not trigger:
            raise ValueError("the sip-only target needs --trigger-command")
        self.trigger = trigger
        self.untrigger = untrigger
        self.listen = listen
        self.tolerance = tolerance
        self.tolerance_ratio = tolerance_ratio
        self.capabilities = frozenset({"unsubscribe"} if untrigger else set())

    def open(self, scenario: Scenario, profile: str) -> SipOnlySession:
        return SipOnlySession(self.trigger, self.untrigger, self.listen, self.tolerance,
                              self.tolerance_ratio)
