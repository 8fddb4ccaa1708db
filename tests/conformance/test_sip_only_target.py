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


# A subscriber started per run: it subscribes 1 s after start from one socket, names
# another socket in its Contact and answers the NOTIFY that arrives there.
LAUNCHED = '''
import os, socket, sys, time
peer, record = sys.argv[1], sys.argv[2]
assert os.environ["B2B_TEST_ENV"] == "reaches"
host, port = peer.rsplit(":", 1)
source = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); source.bind(("127.0.0.1", 0))
contact = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); contact.bind(("127.0.0.1", 0))
cport = contact.getsockname()[1]
time.sleep(1.0)
message = (f"SUBSCRIBE {record} SIP/2.0\\r\\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx1\\r\\n"
           f"Max-Forwards: 70\\r\\nTo: <{record}>\\r\\nFrom: <sip:bob@lab.test>;tag=f1\\r\\n"
           f"Call-ID: c1@lab.test\\r\\nCSeq: 1 SUBSCRIBE\\r\\n"
           f"Contact: <sip:127.0.0.1:{cport}>\\r\\n"
           "Event: presence\\r\\nExpires: 60\\r\\nContent-Length: 0\\r\\n\\r\\n")
source.sendto(message.encode(), (host, int(port)))
source.settimeout(5); contact.settimeout(5)
assert source.recvfrom(65535)[0].startswith(b"SIP/2.0 200")
notify, where = contact.recvfrom(65535)
head = notify.split(b"\\r\\n\\r\\n", 1)[0].split(b"\\r\\n")[1:]
copied = (b"via", b"from", b"to", b"call-id", b"cseq")
keep = [h for h in head if h.split(b":")[0].lower() in copied]
ok = b"SIP/2.0 200 OK\\r\\n" + b"\\r\\n".join(keep)
contact.sendto(ok + b"\\r\\nContent-Length: 0\\r\\n\\r\\n", where)
time.sleep(30)
'''

TARGET = """
kind: target
name: test-launched
launch: "{python} {target_dir}/sub.py {peer} {record}"
env: {B2B_TEST_ENV: reaches}
trigger_timeout: 5
jobs: 2
declarations: {t1: 0.5, max_subscriptions: 1, status: false, artefacts: ["none"]}
"""

ACCEPTED = """
kind: scenario
name: t/launched
covers: [SUB-043]
profiles: [rfc6665]
params: {default_expiration: 60}
steps:
  - subscribe:
  - expect: {method: SUBSCRIBE, within: [0, 0], tests: [SUB-006]}
  - accept: {expires: 60, tests: [SUB-043]}
"""


def test_launch_per_run_contact_routing_clock_and_env(tmp_path: Path) -> None:
    from conformance.target_files import describe, load_target_file, run_target_file

    (tmp_path / "sub.py").write_text(LAUNCHED, encoding="utf-8")
    target_file = tmp_path / "t.yaml"
    target_file.write_text(TARGET, encoding="utf-8")
    path = tmp_path / "s.yaml"
    path.write_text(ACCEPTED, encoding="utf-8")
    two = tmp_path / "two.yaml"
    two.write_text(ACCEPTED.replace("t/launched", "t/two") + "  - subscribe: {handle: second}\n",
                   encoding="utf-8")
    scenarios = load_file(path) + load_file(two)
    _name, results, declarations = run_target_file(target_file, scenarios)
    by_name = {r.scenario: r for r in results}
    launched = by_name["t/launched"]
    # Replies reached the source socket, the NOTIFY the Contact, and the clock started at
    # the SUBSCRIBE (sent 1 s after the process started): [0, 0] holds.
    assert launched.verdict == PASS, launched.failure
    assert by_name["t/two"].verdict == NA and "2 subscriptions" in (by_name["t/two"].failure
                                                                      or "")
    assert declarations["declared max_subscriptions"] == 1
    assert describe(load_target_file(target_file))["declared t1"] == 0.5


def test_trigger_stderr_and_status_reach_the_report(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    [scenario] = load_file(path)
    failing = f"{sys.executable} -c \"import sys; sys.stderr.write('boom'); sys.exit(3)\""
    result = run_scenario(scenario, "rfc6665", SipOnlyTarget(failing, None, None))
    assert result.verdict == "error"
    assert "exit status 3" in (result.failure or "") and "boom" in (result.failure or "")


# A launched subscriber that never subscribes: it records its pid and waits.
IDLE = '''
import os, sys, time
with open(os.environ["B2B_TEST_PIDFILE"], "w") as out:
    out.write(str(os.getpid()))
time.sleep(120)
'''


def test_sigterm_stops_the_launched_subscriber(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import time

    (tmp_path / "idle.py").write_text(IDLE, encoding="utf-8")
    pidfile = tmp_path / "subscriber.pid"
    target_file = tmp_path / "t.yaml"
    target_file.write_text(TARGET.replace("sub.py {peer} {record}", "idle.py")
                           .replace("trigger_timeout: 5", "trigger_timeout: 60")
                           .replace("reaches}", f"reaches, B2B_TEST_PIDFILE: '{pidfile}'}}"),
                           encoding="utf-8")
    (tmp_path / "s.yaml").write_text(ACCEPTED, encoding="utf-8")
    conform = subprocess.Popen([sys.executable, "-m", "conformance", "run",
                                str(tmp_path / "s.yaml"), "--target-file", str(target_file),
                                "-j", "1", "--no-colour"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not pidfile.exists() or not pidfile.read_text():
            assert conform.poll() is None and time.monotonic() < deadline, "never launched"
            time.sleep(0.05)  # polling a real process's start-up
        subscriber = int(pidfile.read_text())
        conform.send_signal(signal.SIGTERM)
        _out, err = conform.communicate(timeout=20)
    finally:
        conform.kill()
    assert conform.returncode == 143, err
    assert err.decode().strip().endswith("b2b-conform: terminated")
    # The launched subscriber (its own session, so SIGTERM did not reach it) is gone.
    try:
        os.kill(subscriber, 0)
    except ProcessLookupError:
        return
    os.kill(subscriber, signal.SIGKILL)
    raise AssertionError("the launched subscriber outlived b2b-conform")
