"""The `sip-only` target: the subscriber is triggered by a command; status steps are n/a."""

from __future__ import annotations

import sys
from pathlib import Path

from conformance.runner import NA, PASS, run_scenario
from conformance.scenario import load_file
from conformance.targets.udp import SipOnlyTarget

# A minimal external "subscriber": sends one SUBSCRIBE to the peer and exits.
TRIGGER = '''
import socket, sys
peer, record = sys.argv[1], sys.argv[2]
host, port = peer.rsplit(":", 1)
message = (f"SUBSCRIBE {record} SIP/2.0\\r\\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx1\\r\\n"
           f"Max-Forwards: 70\\r\\nTo: <{record}>\\r\\nFrom: <sip:bob@lab.test>;tag=f1\\r\\n"
           "Call-ID: c1@lab.test\\r\\nCSeq: 1 SUBSCRIBE\\r\\nContact: <sip:127.0.0.1:9>\\r\\n"
           "Event: presence\\r\\nExpires: 60\\r\\nContent-Length: 0\\r\\n\\r\\n")
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.sendto(message.encode(), (host, int(port)))
'''

SCENARIO = """
kind: scenario
name: t/sip-only
covers: [SUB-002]
profiles: [rfc6665]
steps:
  - subscribe:
  - expect: {method: SUBSCRIBE, within: [0, 3], match: {Expires: 60, to_tag: {absent: true}}}
  - reply: {status: 403}
  - expect_status: {status: rejected}
"""


def test_trigger_command_and_status_steps_not_applicable(tmp_path: Path) -> None:
    script = tmp_path / "trigger.py"
    script.write_text(TRIGGER, encoding="utf-8")
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    [scenario] = load_file(path)
    target = SipOnlyTarget(f"{sys.executable} {script} {{peer}} {{record}}", None,
                           "127.0.0.1:9")
    result = run_scenario(scenario, "rfc6665", target)
    assert result.verdict == PASS, result.failure
    assert [s.verdict for s in result.steps] == [PASS, PASS, PASS, NA]


def test_unsubscribe_needs_the_untrigger_command(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO + "  - unsubscribe:\n", encoding="utf-8")
    [scenario] = load_file(path)
    result = run_scenario(scenario, "rfc6665", SipOnlyTarget("true", None, None))
    assert result.verdict == NA and "unsubscribe" in (result.failure or "")
