"""`b2b-agent`: run the reference presence agent on a real UDP socket.

Exit codes: 0 after a clean shutdown, 2 for a usage error (bad parameter, busy port), 1 for
anything unexpected.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from reference import credentials
from reference.config import PROFILES, AgentConfig, ConfigError
from reference.control import DEFAULT_CONTROL, ControlServer
from reference.credentials import CredentialStore
from reference.loops import LOOPS, LoopUnavailable, default_loop, describe
from reference.loops import run as run_on_loop
from reference.packages import UnknownPackage, lookup
from reference.qsa import StatusMessage
from reference.tcp import TcpLimits
from reference.udp import UdpRuntime

log = logging.getLogger("reference.cli")

CLI_DESTINATION = "cli"
# Where the control token may come from besides --control-token-file (docs/control-protocol.md).
TOKEN_ENV = "B2B_CONTROL_TOKEN"

EXAMPLES = """\
examples:
  # watch alice through the lab Kamailio (docs/lab.md)
  b2b-agent --subscribe sip:alice@lab.test sip:bob@lab.test \\
            --param presence_route='<sip:127.0.0.1:5070;lr>'

  # the standard asyncio loop instead of uvloop (the default where it is installed)
  b2b-agent --loop asyncio --subscribe sip:alice@lab.test sip:bob@lab.test

  # SER behaviour, short subscriptions, JSON lines on stdout, a trace file
  b2b-agent --profile ser --param default_expiration=60 --json --trace agent.jsonl \\
            --subscribe sip:alice@lab.test sip:bob@lab.test

  # registration state (RFC 3680) and a buddy list (RFC 4662) over UDP and TCP
  b2b-agent --listen 127.0.0.1:5062 --transport udp,tcp --package reg \
            --subscribe 'sip:alice@lab.test;transport=tcp' sip:bob@lab.test \
            --param presence_route='<sip:127.0.0.1:5075;lr;transport=tcp>'

  # digest credentials for a presence server that challenges (chmod 600 creds.yaml):
  #   credentials:
  #     - {subscriber: "sip:bob@lab.test", realm: lab.test, username: bob, password: ...}
  b2b-agent --credentials creds.yaml --subscribe sip:alice@lab.test sip:bob@lab.test \
            --param presence_route='<sip:127.0.0.1:5071;lr>'

  # no initial subscriptions: drive it over the control protocol (docs/control-protocol.md)
  b2b-agent --listen 127.0.0.1:5062 --control 127.0.0.1:5199
  echo '{"op":"subscribe","record":"sip:alice@lab.test","subscriber":"sip:bob@lab.test"}' \\
      | nc -q 5 127.0.0.1 5199

  # control reachable from the lab network: a token is then required
  python3 -c 'import secrets; print(secrets.token_hex(32))' > control.token
  b2b-agent --control 0.0.0.0:5199 --control-token-file control.token
  (printf '{"op":"auth","token":"%s"}\\n' "$(cat control.token)"; \\
   echo '{"op":"dump","all":true}') | nc -q 2 192.0.2.10 5199
"""


class UsageError(Exception):
    """Reported as one line on stderr with exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="b2b-agent",
        description="Reference presence B2BUA (SER presence_b2b done right) on UDP. "
                    "Subscribes to presence on behalf of internal subscribers and prints "
                    "their status messages.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", metavar="HOST:PORT", default="127.0.0.1:5060",
                        help="SIP UDP address (default %(default)s; port 0 = any free port)")
    parser.add_argument("--control", metavar="HOST:PORT",
                        default=f"{DEFAULT_CONTROL[0]}:{DEFAULT_CONTROL[1]}",
                        help="control protocol TCP address (default %(default)s, loopback)")
    parser.add_argument("--no-control", action="store_true", help="no control server")
    parser.add_argument("--control-token-file", metavar="FILE",
                        help="shared secret every control connection must send first "
                             '({"op":"auth","token":...}; also from the environment variable '
                             f"{TOKEN_ENV}); required when --control is not loopback. "
                             "First line of FILE, never logged")
    parser.add_argument("--control-token", metavar="TOKEN",
                        help="the same secret given inline (visible to local users in ps: "
                             "prefer --control-token-file or the environment variable)")
    parser.add_argument("--profile", choices=PROFILES,
                        help="behaviour profile (default: from --config, else rfc6665)")
    parser.add_argument("--config", metavar="FILE.yaml",
                        help="agent parameters from YAML (a 'credentials:' list in it is read "
                             "too; the file must then be mode 600)")
    parser.add_argument("--credentials", metavar="FILE.yaml",
                        help="digest credentials per subscriber and realm ('credentials:' "
                             "list; mode 600 like an ssh key; never logged)")
    parser.add_argument("--param", metavar="NAME=VALUE", action="append", default=[],
                        help="set an agent parameter by its SER name (repeatable; wins over "
                             "--config and --profile); local_address defaults to --listen")
    parser.add_argument("--subscribe", metavar=("RECORD", "SUBSCRIBER"), nargs=2,
                        action="append", default=[], help="subscribe at startup (repeatable)")
    parser.add_argument("--package", default="presence",
                        help="QSA package of the --subscribe subscriptions: presence, reg or "
                             "presence-list (default %(default)s; ser serves presence only)")
    parser.add_argument("--transport", metavar="udp|udp,tcp",
                        help="transports to run (RFC 3261 §18; default udp): udp,tcp also "
                             "listens on TCP at the --listen address and sends SUBSCRIBEs "
                             "over TCP when the next hop says transport=tcp or they exceed "
                             "udp_max_bytes; the config file's tcp: section sets its limits")
    parser.add_argument("--json", action="store_true",
                        help="status messages as JSON lines on stdout")
    parser.add_argument("--trace", metavar="FILE", help="append a JSON-lines trace to FILE")
    parser.add_argument("--log-level", default="warning",
                        choices=("debug", "info", "warning", "error"),
                        help="log level on stderr (default %(default)s)")
    parser.add_argument("--duration", metavar="SECONDS", type=float,
                        help="run this long, then shut down gracefully")
    parser.add_argument("--loop", choices=LOOPS,
                        help="event loop (default: uvloop where it is installed, else "
                             "asyncio); the start-up line says which runs")
    return parser


def parse_hostport(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"{what} must be HOST:PORT, not {text!r}")
    return host, int(port)


def control_token(args: argparse.Namespace) -> str | None:
    """The control token from --control-token, --control-token-file or the environment."""
    if args.control_token is not None and args.control_token_file is not None:
        raise UsageError("give --control-token or --control-token-file, not both")
    token: str | None = args.control_token
    if args.control_token_file is not None:
        try:
            text = Path(args.control_token_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
            raise UsageError(f"cannot read --control-token-file "
                             f"{args.control_token_file}: {reason}") from None
        token = text.splitlines()[0] if text.strip() else ""
    elif token is None:
        token = os.environ.get(TOKEN_ENV)
    if token is not None and not token.strip():
        raise UsageError("the control token is empty")
    return token


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_config(args: argparse.Namespace) -> tuple[AgentConfig, bool]:
    """The agent configuration and whether local_address was given explicitly."""
    try:
        config = AgentConfig.from_yaml(args.config) if args.config else AgentConfig()
        explicit_local = bool(args.config) and config.local_address != AgentConfig.local_address
        if args.profile:
            config = config.replace(profile=args.profile)
        if args.transport:
            config = config.replace(transports=args.transport)
        params: dict[str, str] = {}
        for item in args.param:
            name, sep, value = item.partition("=")
            if not sep or not name.strip():
                raise UsageError(f"--param must be NAME=VALUE, not {item!r}")
            params[name.strip()] = value
        if params:
            config = config.with_params(params)
        explicit_local = explicit_local or "local_address" in params
        if "seed" not in params and not _yaml_sets(args.config, "seed"):
            # Identifiers come from the OS CSPRNG whatever the seed; the seed drives only the
            # jitter, and a fixed default would give every agent of a fleet the same draws
            # (retries in step after a shared outage).
            config = config.replace(seed=secrets.randbits(31))
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    return config, explicit_local


TCP_LIMIT_TYPES: dict[str, type] = {"max_connections": int, "idle_timeout": float,
                                     "max_write_buffer": int, "connect_timeout": float}


def tcp_limits(path: str | None) -> TcpLimits | None:
    """The `tcp:` section of the config file (beside `agent:`) as TcpLimits, or None."""
    if not path:
        return None
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    section = data.get("tcp") if isinstance(data, dict) and "agent" in data else None
    if section is None:
        return None
    if not isinstance(section, dict):
        raise UsageError(f"{path}: tcp: must be a mapping of limits")
    values: dict[str, Any] = {}
    for name, value in section.items():
        kind = TCP_LIMIT_TYPES.get(name)
        if kind is None:
            raise UsageError(f"{path}: unknown tcp limit {name!r} (known: "
                             f"{', '.join(TCP_LIMIT_TYPES)})")
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                (kind is int and not isinstance(value, int)):
            raise UsageError(f"{path}: tcp limit {name!r} must be a number, not {value!r}")
        values[name] = kind(value)
    try:
        return TcpLimits(**values)
    except ValueError as exc:
        raise UsageError(f"{path}: tcp: {exc}") from None


def load_credentials(args: argparse.Namespace) -> CredentialStore:
    """Credentials of --config (if it has a `credentials:` list) and --credentials (which
    wins for the same subscriber and realm); errors are one line, without passwords."""
    try:
        store = credentials.load(args.config, required=False) if args.config \
            else CredentialStore()
        if args.credentials:
            store = store.merged(credentials.load(args.credentials))
    except credentials.CredentialsError as exc:
        raise UsageError(str(exc)) from None
    return store


def _yaml_sets(path: str | None, name: str) -> bool:
    """Whether the YAML config file names this parameter (already validated by then)."""
    if not path:
        return False
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if isinstance(data, dict) and isinstance(data.get("agent"), dict):
        data = data["agent"]
    return isinstance(data, dict) and name in data


def format_status(message: StatusMessage, now: float) -> str:
    """One readable line: `12:00:01 sip:alice@lab.test -> sip:bob@lab.test: active open "note"`."""
    parts = [time.strftime("%H:%M:%S"), f"{message.record} -> {message.subscriber}:",
             message.status]
    document = message.document
    if document is not None:
        parts.append(document.basic or "(no tuple)")
        notes = [n.text for t in document.tuples for n in t.notes] + \
                [n.text for n in document.notes]
        if notes:
            parts.append(json.dumps(notes[0], ensure_ascii=False))
    elif message.status in ("active", "pending") and not message.body:
        parts.append("(no document)")
    if message.resource is not None:
        parts.insert(2, f"[{message.resource} in {message.list_uri}]")
    registration = message.registration
    if registration is not None:
        contacts = ", ".join(f"{c.uri} {c.state}/{c.event}"
                             + (f" expires={c.expires}" if c.expires is not None else "")
                             for c in registration.contacts)
        parts.append(f"registration {registration.aor} {registration.state}: "
                     f"{contacts or 'no contacts'}")
    if message.reason:
        parts.append(f"reason={message.reason}")
    if message.retry_at is not None:
        parts.append(f"retry in {max(0.0, message.retry_at - now):.0f}s")
    if message.superseded:
        parts.append(f"({message.superseded} older state(s) superseded)")
    return " ".join(parts)


def make_printer(as_json: bool, out: TextIO) -> Callable[[StatusMessage], None]:
    def show(message: StatusMessage) -> None:
        line = (json.dumps({"event": "status", **message.to_json()}, default=str)
                if as_json else format_status(message, asyncio.get_running_loop().time()))
        out.write(line + "\n")
        out.flush()
    return show


async def run(args: argparse.Namespace, out: TextIO) -> int:
    config, explicit_local = build_config(args)
    listen = parse_hostport(args.listen, "--listen")
    control_at = None if args.no_control else parse_hostport(args.control, "--control")
    token = control_token(args)
    if not explicit_local and listen[1] != 0:
        try:
            host = f"[{listen[0]}]" if ":" in listen[0] else listen[0]
            config = config.replace(local_address=f"{host}:{listen[1]}")
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
    if args.subscribe:
        try:
            lookup(args.package, config.profile)
        except UnknownPackage as exc:
            raise UsageError(f"--package: {exc}") from None
    if args.trace:
        try:
            Path(args.trace).open("a", encoding="utf-8").close()
        except OSError as exc:
            raise UsageError(f"cannot write trace file {args.trace}: {exc.strerror}") from None
    credentials = load_credentials(args)
    try:
        runtime = await UdpRuntime.open(config, listen[0], listen[1],
                                        advertise_bound_address=not explicit_local,
                                        trace_path=args.trace, credentials=credentials,
                                        tcp_limits=tcp_limits(args.config))
    except OSError as exc:
        where = "udp" if config.transports == "udp" else "udp/tcp"
        raise UsageError(f"cannot listen on {where} {args.listen}: {exc.strerror or exc}") from None
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    stop = asyncio.Event()
    control: ControlServer | None = None
    try:
        if control_at is not None:
            control = ControlServer(runtime, on_shutdown=stop.set, token=token)
            try:
                await control.start(*control_at)
            except OSError as exc:
                raise UsageError(
                    f"cannot listen on tcp {args.control} (control): {exc.strerror or exc}"
                ) from None
            if token is None and not is_loopback(control.address[0]):
                raise UsageError(
                    f"--control {args.control} is not loopback: anyone who can reach it could "
                    f"subscribe and shut the agent down; give --control-token-file FILE "
                    f"(or {TOKEN_ENV})")
        runtime.add_listener(CLI_DESTINATION, make_printer(args.json, out))
        sip = f"{runtime.local_address[0]}:{runtime.local_address[1]}"
        if runtime.tcp is not None:
            sip += " and tcp"
        print(f"b2b-agent: SIP on udp {sip} (profile {runtime.agent.config.profile}, "
              f"Contact {runtime.agent.config.local_address}, "
              f"loop {describe(asyncio.get_running_loop())})", file=sys.stderr)
        if control is not None:
            where = f"{control.address[0]}:{control.address[1]}"
            scope = ("loopback only" if is_loopback(control.address[0])
                     else "NOT loopback: reachable from the network")
            auth = "token required" if token is not None else "no token"
            print(f"b2b-agent: control protocol on tcp {where} ({scope}, {auth})",
                  file=sys.stderr)
        else:
            print("b2b-agent: no control server", file=sys.stderr)
        for record, subscriber in args.subscribe:
            try:
                runtime.subscribe(record, subscriber, CLI_DESTINATION, args.package)
            except ValueError as exc:
                raise UsageError(f"--subscribe {record} {subscriber}: {exc}") from None
        runtime.install_signal_handlers()
        waiters = [asyncio.ensure_future(stop.wait()),
                   asyncio.ensure_future(runtime.wait_closed())]
        if args.duration is not None:
            waiters.append(asyncio.ensure_future(asyncio.sleep(args.duration)))
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        await runtime.shutdown()
    finally:
        if control is not None:
            await control.close()
        if not runtime.closed:
            runtime.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.duration is not None and args.duration < 0:
        print("b2b-agent: error: --duration must be >= 0", file=sys.stderr)
        return 2
    try:
        return run_on_loop(run(args, sys.stdout), args.loop or default_loop())
    except (UsageError, LoopUnavailable) as exc:
        print(f"b2b-agent: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
