"""`b2b-agent`: usage errors, --help, and a short real run against a tiny notifier."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from reference import loops
from reference.cli import format_status, main
from reference.pidf import build_pidf, parse_pidf
from reference.qsa import StatusMessage
from tests import event_loops
from tests.reference.test_udp import RECORD, SUBSCRIBER, TinyNotifier, run


def test_help_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--subscribe RECORD SUBSCRIBER" in out
    assert "examples:" in out and "presence_route" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--param", "no_such_thing=1"], "unknown parameter 'no_such_thing'"),
    (["--param", "default_expiration=soon"], "must be an integer"),
    (["--param", "default_expiration=0"], "default_expiration must be > 0"),
    (["--param", "justaname"], "--param must be NAME=VALUE"),
    (["--listen", "nowhere"], "--listen must be HOST:PORT"),
    (["--config", "/nonexistent/agent.yaml"], "cannot read"),
    (["--trace", "/nonexistent/dir/trace.jsonl"], "cannot write trace file"),
    (["--transport", "tcp"], "transports must be 'udp' or 'udp,tcp'"),
    (["--package", "dialog", "--subscribe", "sip:a@h", "sip:b@h"],
     "package 'dialog' is not served (served: 'presence', 'reg', 'presence-list')"),
    (["--profile", "ser", "--package", "reg", "--subscribe", "sip:a@h", "sip:b@h"],
     "package 'reg' is not served by the ser profile"),
])
def test_bad_arguments_exit_2_with_one_line(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Later options win, so argv may override the harmless defaults put first.
    assert main(["--no-control", "--listen", "127.0.0.1:0", "--duration", "0", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith("b2b-agent: error:") and message in err


def test_busy_udp_port_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        assert main(["--listen", f"127.0.0.1:{port}", "--no-control", "--duration", "0"]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on udp 127.0.0.1:{port}" in err


def test_busy_tcp_port_exits_2_naming_udp_tcp(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--listen", f"127.0.0.1:{port}", "--transport", "udp,tcp",
                     "--no-control", "--duration", "0"]) == 2
    assert f"cannot listen on udp/tcp 127.0.0.1:{port}" in capsys.readouterr().err


def test_tcp_section_of_the_config_file(tmp_path: object, capsys: pytest.CaptureFixture[str]) \
        -> None:
    from pathlib import Path

    from reference.cli import UsageError, tcp_limits
    path = Path(str(tmp_path)) / "agent.yaml"
    path.write_text("agent:\n  transports: udp,tcp\ntcp:\n  max_connections: 8\n"
                    "  idle_timeout: 30\n")
    limits = tcp_limits(str(path))
    assert limits is not None and (limits.max_connections, limits.idle_timeout) == (8, 30.0)
    path.write_text("agent: {}\ntcp:\n  max_conections: 8\n")
    with pytest.raises(UsageError, match="unknown tcp limit 'max_conections'"):
        tcp_limits(str(path))
    path.write_text("agent: {}\ntcp:\n  idle_timeout: 0\n")
    with pytest.raises(UsageError, match="times must be > 0"):
        tcp_limits(str(path))


def test_busy_control_port_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--listen", "127.0.0.1:0", "--control", f"127.0.0.1:{port}",
                     "--duration", "0"]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on tcp 127.0.0.1:{port} (control)" in err


def test_startup_says_where_it_listens_and_on_which_loop(
        capsys: pytest.CaptureFixture[str], loop_name: str) -> None:
    assert main(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--loop", loop_name,
                 "--duration", "0"]) == 0
    err = capsys.readouterr().err
    assert "SIP on udp 127.0.0.1:" in err
    assert f", loop {loop_name}" in err.splitlines()[0]
    assert "control protocol on tcp 127.0.0.1:" in err and "loopback only" in err


def test_readable_status_line() -> None:
    body = build_pidf(RECORD, basic="open", note="lab open")
    message = StatusMessage(handle=1, record=RECORD, subscriber=SUBSCRIBER, package="presence",
                            status="active", document=parse_pidf(body), body=body)
    line = format_status(message, now=0.0)
    assert line.endswith(f'{RECORD} -> {SUBSCRIBER}: active open "lab open"')
    rejected = StatusMessage(handle=1, record=RECORD, subscriber=SUBSCRIBER,
                             package="presence", status="rejected", reason="403",
                             retry_at=100.0)
    assert "rejected reason=403 retry in 90s" in format_status(rejected, now=10.0)


def test_default_loop_is_uvloop_where_installed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--listen", "127.0.0.1:0", "--no-control", "--duration", "0"]) == 0
    first = capsys.readouterr().err.splitlines()[0]
    assert f", loop {loops.default_loop()}" in first
    if event_loops.UVLOOP_SUPPORTED:  # a dependency there (pyproject.toml)
        assert ", loop uvloop " in first


def test_asking_for_a_missing_uvloop_is_one_line_exit_2() -> None:
    # A real failed import: the child process blocks the module before the CLI looks.
    code = ("import sys; sys.modules['uvloop'] = None; from reference.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "--loop", "uvloop", "--no-control",
                           "--listen", "127.0.0.1:0", "--duration", "0"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("b2b-agent: error: --loop uvloop: uvloop is not installed")
    assert "--loop asyncio" in done.stderr


def test_python_m_reference_prints_json_status_lines(loop_name: str) -> None:
    async def scenario() -> None:
        notifier = TinyNotifier()
        port = await notifier.open()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "reference", "--loop", loop_name,
                "--listen", "127.0.0.1:0", "--no-control",
                "--json", "--duration", "1.5", "--subscribe", RECORD, SUBSCRIBER,
                "--param", f"presence_route=<sip:127.0.0.1:{port};lr>",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            try:
                out, err = await asyncio.wait_for(process.communicate(), 15)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
        finally:
            notifier.close()
        assert process.returncode == 0, err.decode()
        assert f", loop {loop_name}" in err.decode().splitlines()[0]
        lines = [json.loads(line) for line in out.decode().splitlines()]
        assert lines and lines[0]["event"] == "status"
        assert lines[0]["status"] == "active"
        assert lines[0]["document"]["tuples"][0]["basic"] == "open"
        # The graceful shutdown unsubscribed (rfc6665 default profile).
        assert notifier.requests[-1].method == "SUBSCRIBE"
        assert notifier.requests[-1].expires == 0

    run(scenario())


def test_credentials_file_readable_by_others_is_one_line_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    creds = tmp_path / "creds.yaml"
    creds.write_text("credentials:\n  - {username: bob, password: Sekrit-77}\n")
    creds.chmod(0o644)
    assert main(["--no-control", "--listen", "127.0.0.1:0", "--duration", "0",
                 "--credentials", str(creds)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "chmod 600" in err and "Sekrit-77" not in err
    creds.chmod(0o600)
    assert main(["--no-control", "--listen", "127.0.0.1:0", "--duration", "0",
                 "--credentials", str(creds)]) == 0


def test_config_with_credentials_must_be_private(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("profile: rfc6665\ncredentials:\n  - {username: bob, password: x1}\n")
    config.chmod(0o640)
    assert main(["--no-control", "--listen", "127.0.0.1:0", "--duration", "0",
                 "--config", str(config)]) == 2
    assert "accessible by others" in capsys.readouterr().err
