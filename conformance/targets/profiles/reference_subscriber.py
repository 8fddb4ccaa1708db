"""Wrapper that makes the reference agent a black-box subscriber (reference-sip-only.yaml).

Starts `python -m reference` (b2b-agent) with the given SIP address, profile and
parameters and a control port of its own, subscribes once over the control protocol and
keeps that connection (closing it would unsubscribe). SIGUSR1 unsubscribes; SIGTERM or
SIGINT stops the agent and exits. The conformance runner sees SIP only.

    python reference_subscriber.py --listen 127.0.0.1:5062 --profile rfc6665 \\
        --param t1=0.05 --subscribe sip:alice@127.0.0.1:5070 sip:bob@lab.test
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from conformance.scenario import LAB_PASSWORD, LAB_USERNAME

STARTUP_TIMEOUT = 10.0


def _free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _connect(port: int, agent: subprocess.Popen[bytes]) -> socket.socket:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if agent.poll() is not None:
            raise SystemExit(f"reference_subscriber: the agent exited with {agent.returncode}")
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=STARTUP_TIMEOUT)
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("reference_subscriber: no control port within "
                                 f"{STARTUP_TIMEOUT:g} s") from None
            time.sleep(0.02)  # bounded start-up poll of a real process


def _request(control: socket.socket, request: dict[str, object]) -> dict[str, object]:
    control.sendall(json.dumps(request).encode() + b"\n")
    buffer = b""
    while True:
        chunk = control.recv(65536)
        if not chunk:
            raise SystemExit("reference_subscriber: the agent closed the control connection")
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            reply = json.loads(line)
            if reply.get("id") == request["id"]:
                if not reply.get("ok"):
                    raise SystemExit(f"reference_subscriber: {request['op']}: "
                                     f"{reply.get('error')}")
                return dict(reply)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="SIP address HOST:PORT")
    parser.add_argument("--profile", default="rfc6665")
    parser.add_argument("--param", action="append", default=[], help="NAME=VALUE")
    parser.add_argument("--subscribe", nargs=2, required=True,
                        metavar=("RECORD", "SUBSCRIBER"))
    args = parser.parse_args()
    control_port = _free_tcp_port()
    argv = [sys.executable, "-m", "reference", "--listen", args.listen, "--control",
            f"127.0.0.1:{control_port}", "--profile", args.profile]
    for param in args.param:
        argv += ["--param", param]
    # The lab credentials of docs/conformance.md (feature subscribe-auth), mode 600.
    secrets_dir = tempfile.TemporaryDirectory(prefix="b2b-sip-only-")
    credentials = Path(secrets_dir.name) / "credentials.yaml"
    credentials.touch(mode=0o600)
    credentials.write_text(json.dumps({"credentials": [
        {"username": LAB_USERNAME, "password": LAB_PASSWORD}]}), encoding="utf-8")
    argv += ["--credentials", str(credentials)]
    agent = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        control = _connect(control_port, agent)
        record, subscriber = args.subscribe
        handle = _request(control, {"op": "subscribe", "record": record,
                                    "subscriber": subscriber, "id": 1})["handle"]
        unsubscribe = False

        def on_usr1(signum: int, frame: FrameType | None) -> None:
            nonlocal unsubscribe
            unsubscribe = True

        signal.signal(signal.SIGUSR1, on_usr1)
        control.settimeout(0.05)
        while not stopping and agent.poll() is None:
            if unsubscribe:
                unsubscribe = False
                control.settimeout(STARTUP_TIMEOUT)
                _request(control, {"op": "unsubscribe", "handle": handle, "id": 2})
                control.settimeout(0.05)
            try:
                if not control.recv(65536):  # status events: read and dropped
                    break
            except TimeoutError:
                pass
    finally:
        agent.kill()
        agent.wait()
        secrets_dir.cleanup()


if __name__ == "__main__":
    main()
