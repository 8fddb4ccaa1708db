"""benchmarks/notify_profile.py: functions are charged to the right part, C functions to their
callers' part, and the shares of a real profile add up to one (no timing assertion)."""

from __future__ import annotations

import cProfile
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import notify_profile  # noqa: E402

sys.path.pop(0)


def test_parts_by_file_and_function() -> None:
    part = notify_profile.part_of
    assert part(("/x/reference/sip/message.py", 1, "parse_message")) == "SIP parse"
    assert part(("/x/reference/sip/message.py", 1, "make_response")) == "response build"
    assert part(("/x/reference/sip/transaction.py", 1, "f")) == "transaction / UA"
    assert part(("/x/reference/ua.py", 1, "f")) == "transaction / UA"
    assert part(("/x/reference/agent.py", 1, "f")) == "agent"
    assert part(("/x/reference/pidf.py", 1, "f")) == "PIDF"
    assert part(("/x/reference/xmlsafe.py", 1, "parse_xml")) == "PIDF"
    for core in ("core.py", "classify.py", "actions.py"):  # the agent core since its redesign
        assert part((f"/x/reference/{core}", 1, "f")) == "agent"
    assert part(("<string>", 2, "__init__")) is None  # dataclass code: charged to callers
    assert part(("/x/reference/udp.py", 1, "f")) == "runtime (udp.py)"
    assert part(("/usr/lib/python3.11/asyncio/events.py", 1, "f")) == "event loop"
    assert part(("~", 0, "<method 'sendto' of '_socket.socket' objects>")) is None
    # Socket and polling calls are timed by the wall clock: left out of the shares.
    assert notify_profile.is_kernel_call(("~", 0, "<method 'sendto' of '_socket.socket' objects>"))
    assert notify_profile.is_kernel_call(("~", 0, "<method 'poll' of 'select.epoll' objects>"))
    assert not notify_profile.is_kernel_call(("~", 0, "<built-in method builtins.len>"))


def test_shares_of_a_real_profile(tmp_path: Path) -> None:
    from reference.sip import make_response, parse_message

    data = (b"NOTIFY sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
            b"Max-Forwards: 70\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>;tag=2\r\n"
            b"Call-ID: c\r\nCSeq: 1 NOTIFY\r\nContent-Length: 0\r\n\r\n")
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(200):
        message = parse_message(data)
        assert message.cseq.number == 1
        make_response(message, 200).to_bytes()  # type: ignore[arg-type]
    profiler.disable()
    stats = tmp_path / "p.pstats"
    profiler.dump_stats(stats)
    shares = notify_profile.shares(str(stats))
    assert set(shares) == set(notify_profile.PARTS)
    assert abs(sum(shares.values()) - 1) < 1e-9
    assert shares["SIP parse"] > 0.2 and shares["response build"] > 0.05
    assert shares["kernel (socket calls)"] == 0  # from the plain run's system time
