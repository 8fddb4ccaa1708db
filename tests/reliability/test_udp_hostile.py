"""Hostile datagrams over real UDP to a running `b2b-agent` process (issue 8 §3).

`test_hostile_datagrams.py` covers the core in-process; this side sends the same kinds of
abuse through the kernel to the runtime: datagrams up to the IPv4 UDP maximum (65,507 bytes),
NUL bytes, huge Content-Length, header bombs, over-long lines, deep nesting, responses that
match nothing, and a few hundred seeded mutations of real messages. The process survives, the
subscriptions it holds keep being refreshed, and the malformed-but-answerable requests get a
400 whose reason names the problem.
"""

from __future__ import annotations

import random
import select
import socket
import time

import pytest

from benchmarks.flood_bench import MiniNotifier, hold_subscriptions, running_agent

GRANT = 4
MAX_UDP_IPV4 = 65507


def _notify(branch: str, target: tuple[str, int], source: tuple[str, int], *,
            extra: str = "", content_length: str = "0", body: bytes = b"") -> bytes:
    head = (f"NOTIFY sip:{target[0]}:{target[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {source[0]}:{source[1]};branch=z9hG4bK{branch}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:x@evil.test>;tag=a{branch}\r\n"
            f"To: <sip:w@b2b.test>;tag=b{branch}\r\nCall-ID: {branch}@evil.test\r\n"
            f"CSeq: 1 NOTIFY\r\nEvent: presence\r\nSubscription-State: active\r\n{extra}"
            f"Content-Length: {content_length}\r\n\r\n")
    return head.encode() + body


def _oversize(target: tuple[str, int], source: tuple[str, int]) -> bytes:
    """A well-formed NOTIFY of exactly 65,507 bytes (the largest IPv4 UDP payload)."""
    probe = _notify("big", target, source, extra="Content-Type: application/pidf+xml\r\n",
                    content_length="00000")
    body = b"x" * (MAX_UDP_IPV4 - len(probe))
    data = _notify("big", target, source, extra="Content-Type: application/pidf+xml\r\n",
                   content_length=f"{len(body):05d}", body=body)
    assert len(data) == MAX_UDP_IPV4
    return data


class Client:
    """One UDP socket that sends and collects the answers by Call-ID."""

    def __init__(self, agent: tuple[str, int]) -> None:
        self.agent = agent
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.address: tuple[str, int] = self.sock.getsockname()
        self.answers: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.agent)

    def collect(self, quiet: float = 0.5, limit: float = 10.0) -> None:
        """Read answers until none came for `quiet` seconds (bounded by `limit`)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.sock], [], [], quiet)
            if not ready:
                return
            self.answers.append(self.sock.recv(65535))

    def answer_for(self, call_id: str) -> list[str]:
        return [a.split(b"\r\n", 1)[0].decode() for a in self.answers
                if f"Call-ID: {call_id}".encode() in a]


@pytest.mark.slow
def test_hostile_datagrams_over_udp() -> None:
    notifier = MiniNotifier(GRANT)
    try:
        with running_agent({"default_expiration": str(GRANT), "trace": "0"}) as agent:
            held = 2
            hold_subscriptions(agent, notifier, held)
            started = time.monotonic()
            before = agent.stats()
            client = Client(agent.sip)
            me = client.address
            to = agent.sip
            answerable = {
                # call-id -> what the 400's reason must name
                "hugecl": ("huge Content-Length",
                           _notify("hugecl", to, me, content_length="4294967296000"),
                           "content-length"),
                "shortbody": ("Content-Length beyond the datagram",
                              _notify("shortbody", to, me, content_length="60000"),
                              "content-length"),
                "badcseq": ("bad CSeq",
                            _notify("badcseq", to, me).replace(b"CSeq: 1 NOTIFY",
                                                               b"CSeq: x NOTIFY"), "cseq"),
                "nocallid": ("no Call-ID", _notify("nocallid", to, me), "call-id"),
            }
            nocallid = answerable["nocallid"][1].replace(b"Call-ID: nocallid@evil.test\r\n", b"")
            answerable["nocallid"] = ("no Call-ID", nocallid, "call-id")
            for _name, data, _problem in answerable.values():
                client.send(data)
            unanswered = [
                _oversize(to, me),  # well-formed but 481 (unknown dialog) - answered below
                b"\x00" * MAX_UDP_IPV4,
                bytes(random.Random(1).getrandbits(8) for _ in range(MAX_UDP_IPV4)),
                _notify("bomb", to, me, extra="X-Bomb: y\r\n" * 3000),
                _notify("longline", to, me, extra="X-Long: " + "a" * 20000 + "\r\n"),
                b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP %s:%d;branch=z9hG4bKnothing\r\n"
                b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: stray\r\n"
                b"CSeq: 1 SUBSCRIBE\r\nContent-Length: 0\r\n\r\n" % (to[0].encode(), to[1]),
                b"SIP/2.0 404 Not Found\r\nVia: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKzz\r\n"
                b"Content-Length: 0\r\n\r\n",
            ]
            for data in unanswered:
                client.send(data)
            client.send(_notify("nul", to, me, extra="Subject: a\x00b\r\n"))
            client.send(_notify("nest", to, me,
                                extra="User-Agent: " + "(" * 200 + ")" * 200 + "\r\n"))
            # Seeded mutations of a real NOTIFY: flips, cuts, inserted junk.
            rng = random.Random(8)
            seed = _notify("mut", to, me)
            for i in range(300):
                mutated = bytearray(seed.replace(b"mut", f"m{i}".encode()))
                for _ in range(rng.randint(1, 8)):
                    pos = rng.randrange(len(mutated))
                    choice = rng.random()
                    if choice < 0.5:
                        mutated[pos] = rng.getrandbits(8)
                    elif choice < 0.75:
                        del mutated[pos:pos + rng.randint(1, 40)]
                    else:
                        mutated[pos:pos] = bytes(rng.getrandbits(8) for _ in range(20))
                client.send(bytes(mutated))
            client.collect()
            after = agent.stats()
            # The held subscriptions kept being refreshed while this went on.
            time.sleep(GRANT / 2 + 0.5)
            gaps = notifier.refresh_gaps(started, time.monotonic())
            dump = agent.request({"op": "dump"})["subscriptions"]
            assert agent.proc.poll() is None, "the agent survived"
    finally:
        notifier.close()

    for call_id, (what, _data, problem) in answerable.items():
        lines = client.answer_for(f"{call_id}@evil.test") or client.answer_for(call_id)
        if call_id == "nocallid":
            lines = [a.split(b"\r\n", 1)[0].decode() for a in client.answers
                     if b"branch=z9hG4bKnocallid" in a]
        assert len(lines) == 1, f"{what}: {lines}"
        assert lines[0].startswith("SIP/2.0 400 "), f"{what}: {lines[0]}"
        assert problem in lines[0].lower(), f"{what}: {lines[0]}"
    # Well-formed oddities for an unknown dialog get the ordinary 481.
    for call_id in ("big", "nul", "nest"):
        assert client.answer_for(f"{call_id}@evil.test") == [
            "SIP/2.0 481 Subscription does not exist"], call_id
    # Nothing answers a response; framing-limit violations are dropped (counted).
    assert not client.answer_for("stray")
    assert not client.answer_for("bomb@evil.test")
    assert not client.answer_for("longline@evil.test")
    # Mutations answer 400 (naming the problem), 405/501 (a mangled method), 416 (a mangled
    # Request-URI scheme), 505 (a mangled version, naming it) or 481, nothing else.
    first_lines = [a.split(b"\r\n", 1)[0].decode() for a in client.answers]
    odd = [line for line in first_lines
           if not line.startswith(("SIP/2.0 400 Bad Request (", "SIP/2.0 405 ", "SIP/2.0 416 ",
                                   "SIP/2.0 481 ", "SIP/2.0 501 ",
                                   "SIP/2.0 505 Version Not Supported ("))]
    assert not odd
    counters_before, counters_after = before["counters"], after["counters"]
    assert counters_after["rx.parse_errors"] - counters_before.get("rx.parse_errors", 0) >= 8
    assert counters_after["rx.unmatched_responses"] - counters_before.get(
        "rx.unmatched_responses", 0) >= 1
    assert max(gaps.values()) < GRANT - 0.5
    assert sum(1 for row in dump if row["state"] in ("confirmed", "resubscription")) == held
