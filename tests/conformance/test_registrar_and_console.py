"""Softphone support without a softphone: the peer's minimal registrar (`registrar: true`),
keep-alives dropped, and console_subscriber.py typing lines into a console program.

A fake subscriber started in launch mode registers first (as linphonec and twinkle do),
sends a CRLF keep-alive, then subscribes: the REGISTER is answered and shown in the ladder
but neither expected nor the start of the scenario clock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conformance.peer import registrar_reply
from conformance.runner import PASS, run_scenario
from conformance.scenario import load_file
from conformance.target_files import PROFILES_DIR, load_target_file, running
from reference.sip import Response, parse_message

REGISTER = ("REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKr1\r\n"
            "Max-Forwards: 70\r\nTo: <sip:bob@127.0.0.1>\r\nFrom: <sip:bob@127.0.0.1>;tag=r1\r\n"
            "Call-ID: r1@lab.test\r\nCSeq: 1 REGISTER\r\n{contact}Content-Length: 0\r\n\r\n")


def _reply(contact: str) -> Response:
    data = registrar_reply(REGISTER.format(contact=contact).encode())
    assert data is not None
    response = parse_message(data)
    assert isinstance(response, Response) and response.status == 200
    return response


def test_registrar_grants_the_binding_it_was_asked() -> None:
    asked = _reply("Contact: <sip:bob@127.0.0.1:9>\r\nExpires: 600\r\n")
    assert asked.headers.get("Contact") == "<sip:bob@127.0.0.1:9>;expires=600"
    assert asked.headers.get("Expires") == "600"
    assert "tag=" in (asked.headers.get("To") or "")
    in_contact = _reply("Contact: <sip:bob@127.0.0.1:9>;expires=0\r\n")  # twinkle's removal
    assert in_contact.headers.get("Contact") is None and in_contact.headers.get("Expires") == "0"
    default = _reply("Contact: <sip:bob@127.0.0.1:9>\r\n")
    assert default.headers.get("Expires") == "3600"
    assert registrar_reply(b"SUBSCRIBE sip:a@b SIP/2.0\r\n\r\n") is None
    assert registrar_reply(b"\r\n\r\n") is None


# Registers, sends a keep-alive, subscribes once the registration is answered, answers
# the NOTIFY, and writes what it got to registered.txt.
SUBSCRIBER = '''
import socket, sys
port, peer, record = int(sys.argv[1]), sys.argv[2], sys.argv[3]
host, peer_port = peer.rsplit(":", 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", port))
s.settimeout(10)
head = lambda m, b, t: (f"{m} SIP/2.0\\r\\n"
    f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{b}\\r\\nMax-Forwards: 70\\r\\n"
    f"To: <{t}>\\r\\nFrom: <sip:bob@127.0.0.1>;tag=f{b}\\r\\n"
    f"Call-ID: {b}@lab.test\\r\\nContact: <sip:bob@127.0.0.1:{port}>\\r\\n")
s.sendto((head(f"REGISTER sip:{host}", "r1", "sip:bob@127.0.0.1") + "CSeq: 1 REGISTER\\r\\n"
          "Expires: 600\\r\\nContent-Length: 0\\r\\n\\r\\n").encode(), (host, int(peer_port)))
answer, _ = s.recvfrom(65535)
open("registered.txt", "wb").write(answer)
s.sendto(b"\\r\\n\\r\\n", (host, int(peer_port)))
s.sendto((head(f"SUBSCRIBE {record}", "s1", record) + "CSeq: 1 SUBSCRIBE\\r\\n"
          "Event: presence\\r\\nExpires: 10\\r\\nContent-Length: 0\\r\\n\\r\\n").encode(),
         (host, int(peer_port)))
while True:
    data, source = s.recvfrom(65535)
    if data.startswith(b"NOTIFY"):
        lines = data.decode().split("\\r\\n")
        keep = [l for l in lines if l.split(":", 1)[0] in ("Via", "From", "To", "Call-ID", "CSeq")]
        reply = "SIP/2.0 200 OK\\r\\n" + "\\r\\n".join(keep)
        s.sendto((reply + "\\r\\nContent-Length: 0\\r\\n\\r\\n").encode(), source)
'''

SCENARIO = """
kind: scenario
name: t/registered-subscriber
covers: [SUB-006]
profiles: [rfc6665]
params: {default_expiration: 10, t1: 0.05}
steps:
  - subscribe:
  - expect: {method: SUBSCRIBE, within: [0, 0], match: {to_tag: {absent: true}}, tests: [SUB-006]}
  - accept: {expires: 10, tests: [SUB-043]}
  - expect_nothing: {duration: 0.5, tests: [reference]}
"""


def test_a_subscriber_that_registers_first(tmp_path: Path) -> None:
    (tmp_path / "subscriber.py").write_text(SUBSCRIBER, encoding="utf-8")
    (tmp_path / "s.yaml").write_text(SCENARIO, encoding="utf-8")
    (tmp_path / "target.yaml").write_text(f"""
kind: target
name: registering
registrar: true
launch: "{{python}} {tmp_path}/subscriber.py {{agent_port}} {{peer}} {{record}}"
trigger_timeout: 10
declarations: {{t1: 0.05}}
""", encoding="utf-8")
    [scenario] = load_file(tmp_path / "s.yaml")
    with running(load_target_file(tmp_path / "target.yaml")) as target:
        result = run_scenario(scenario, "rfc6665", target)
    assert result.verdict in (PASS, "differs"), result.failure
    ladder = [(rung["from"], rung["message"].split("\n", 1)[0]) for rung in result.ladder]
    assert ladder[:3] == [("subscriber", "REGISTER sip:127.0.0.1 SIP/2.0"),
                          ("peer", "SIP/2.0 200 OK"),
                          ("subscriber", ladder[2][1])]
    assert ladder[2][1].startswith("SUBSCRIBE ")
    # t = 0 is the SUBSCRIBE, not the REGISTER before it; no keep-alive in the ladder.
    assert result.ladder[0]["t"] <= 0 and result.ladder[2]["t"] == 0
    assert all(rung["message"].strip() for rung in result.ladder)


# A console program: echoes each line typed into it to typed.txt, quits on "quit".
CONSOLE = '''
import sys
with open("typed.txt", "a") as out:
    for line in sys.stdin:
        out.write(line); out.flush()
        if line.strip() == "quit":
            sys.exit(3)
'''


def test_console_subscriber_types_lines_and_reacts_to_usr1(tmp_path: Path) -> None:
    (tmp_path / "console.py").write_text(CONSOLE, encoding="utf-8")
    home = tmp_path / "home"
    process = subprocess.Popen(
        [sys.executable, str(PROFILES_DIR / "console_subscriber.py"), "--home", str(home),
         "--mkdir", ".local/share/x", "--home-as", ".dot", "--after", "0.2",
         "--send", "friend add alice sip:a@b", "--on-usr1", "quit", "--",
         sys.executable, str(tmp_path / "console.py")], cwd=tmp_path)
    typed = tmp_path / "typed.txt"
    deadline = time.monotonic() + 10
    while not (typed.exists() and typed.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert typed.read_text() == "friend add alice sip:a@b\n"
    assert (home / ".local" / "share" / "x").is_dir()
    assert (home / ".dot").resolve() == home.resolve()
    os.kill(process.pid, signal.SIGUSR1)
    assert process.wait(timeout=10) == 3  # the program's own exit status
    assert typed.read_text().splitlines() == ["friend add alice sip:a@b", "quit"]
