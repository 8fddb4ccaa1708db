"""Unguessable dialog identifiers over real UDP (issue 13 §1, RFC 3261 §19.3, §8.1.1.4/7).

A `b2b-agent` process with a known seed subscribes to a socket this test owns. Before the fix
its From tags, Call-IDs and branches were the first draws of `random.Random(seed)`, so anyone
who knew (or recovered) the seed could predict the next subscription's identifiers and win the
race with a forged dialog-creating NOTIFY. The tests reproduce that prediction exactly as the
old code drew it and show it now misses, that two runs with the same seed share no
identifier, and that the sizes meet the RFC's bit counts.
"""

from __future__ import annotations

import random
import re
import select
import socket
import time

from benchmarks.flood_bench import AgentProcess, running_agent
from reference.sip import Request, Response, make_response, parse_message

SEED = 7
RUNS = 2
PER_RUN = 3
HEX = re.compile(r"^[0-9a-f]+$")


class Peer:
    """A UDP socket on loopback that plays a notifier (or an attacker) by hand."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address: tuple[str, int] = self.sock.getsockname()

    def record(self, name: str) -> str:
        return f"sip:{name}@{self.address[0]}:{self.address[1]}"

    def receive(self, timeout: float = 5.0) -> tuple[Request | Response, tuple[str, int]]:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        assert ready, "nothing received"
        data, source = self.sock.recvfrom(65535)
        return parse_message(data), source

    def subscribe_request(self, timeout: float = 5.0) -> tuple[Request, tuple[str, int]]:
        while True:
            message, source = self.receive(timeout)
            if isinstance(message, Request) and message.method == "SUBSCRIBE":
                return message, source

    def close(self) -> None:
        self.sock.close()


def _identifiers(request: Request) -> tuple[str, str, str]:
    branch = request.vias[0].branch or ""
    return request.call_id, request.from_.tag or "", branch


def _old_prediction(seed: int, count: int, host: str) -> list[tuple[str, str, str]]:
    """What the pre-fix agent sent for its first `count` subscriptions: tag (64 bits),
    Call-ID (128 bits), branch (128 bits), each `getrandbits` of one `random.Random(seed)`
    (no other draw happens with `max_subscribe_delay` 0 and every SUBSCRIBE answered)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        tag = f"{rng.getrandbits(64):016x}"
        call_id = f"{rng.getrandbits(128):032x}@{host}"
        branch = "z9hG4bK" + f"{rng.getrandbits(128):032x}"
        out.append((call_id, tag, branch))
    return out


def _collect(agent: AgentProcess, peer: Peer, count: int) -> list[tuple[str, str, str]]:
    seen = []
    for i in range(count):
        reply = agent.request({"op": "subscribe", "record": peer.record(f"bob{i}"),
                               "subscriber": f"sip:w{i}@b2b.test"})
        assert reply.get("ok"), reply
        request, source = peer.subscribe_request()
        peer.sock.sendto(make_response(request, 403).to_bytes(), source)
        seen.append(_identifiers(request))
    return seen


def test_identifiers_are_not_a_function_of_the_seed() -> None:
    runs = []
    for _ in range(RUNS):
        peer = Peer()
        try:
            with running_agent({"seed": str(SEED), "trace": "0"}) as agent:
                runs.append(_collect(agent, peer, PER_RUN))
        finally:
            peer.close()
    first, second = runs
    for call_id, tag, branch in first + second:
        random_part = call_id.split("@", 1)[0]
        assert HEX.match(random_part) and len(random_part) * 4 >= 128, call_id
        assert HEX.match(tag) and len(tag) * 4 >= 64, tag
        assert branch.startswith("z9hG4bK")
        assert HEX.match(branch[7:]) and len(branch[7:]) * 4 >= 64, branch
    # Same seed, same inputs: no identifier repeats between the two runs.
    for kind in range(3):
        assert not {ids[kind] for ids in first} & {ids[kind] for ids in second}
    # And none is what the seed used to give.
    predicted = _old_prediction(SEED, PER_RUN, "127.0.0.1")
    for kind in range(3):
        assert not {ids[kind] for ids in predicted} & {ids[kind] for ids in first + second}


def _forged_notify(agent: tuple[str, int], attacker: tuple[str, int], call_id: str,
                   victim_tag: str) -> bytes:
    body = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
            b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:bob@evil.test">'
            b'<tuple id="t"><status><basic>open</basic></status></tuple></presence>')
    head = (f"NOTIFY sip:{agent[0]}:{agent[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {attacker[0]}:{attacker[1]};branch=z9hG4bKforged1\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:bob@evil.test>;tag=forged\r\n"
            f"To: <sip:victim@b2b.test>;tag={victim_tag}\r\nCall-ID: {call_id}\r\n"
            f"CSeq: 1 NOTIFY\r\nEvent: presence\r\nSubscription-State: active;expires=3600\r\n"
            f"Contact: <sip:{attacker[0]}:{attacker[1]}>\r\n"
            f"Content-Type: application/pidf+xml\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def test_attacker_who_knows_the_seed_cannot_hijack_the_next_dialog() -> None:
    """The issue's off-path attack: knowing the seed (here given on the command line; in the
    field recovered from ~600 observed outputs), predict the victim's next Call-ID and From
    tag and send the dialog-creating NOTIFY before the real notifier answers. On the old code
    the prediction was exact and the forged NOTIFY got 200 (SUB-010 lets a NOTIFY create the
    dialog); now the prediction misses and the forgery gets 481."""
    notifier, attacker = Peer(), Peer()
    try:
        with running_agent({"seed": str(SEED), "trace": "0"}) as agent:
            call_id, tag, branch = _old_prediction(SEED, 1, agent.sip[0])[0]
            reply = agent.request({"op": "subscribe", "record": notifier.record("bob"),
                                   "subscriber": "sip:victim@b2b.test"})
            assert reply.get("ok"), reply
            request, source = notifier.subscribe_request()   # the real notifier holds it
            attacker.sock.sendto(_forged_notify(agent.sip, attacker.address, call_id, tag),
                                 agent.sip)
            answer, _ = attacker.receive()
            assert isinstance(answer, Response)
            assert answer.status == 481, "the forged NOTIFY was taken as dialog-creating"
            actual = _identifiers(request)
            assert actual[0] != call_id and actual[1] != tag and actual[2] != branch
            # The real notifier's dialog is unharmed: its 200 and NOTIFY are accepted.
            notifier.sock.sendto(make_response(request, 200, to_tag="real",
                                               headers=[("Expires", "600")]).to_bytes(),
                                 source)
            real = _forged_notify(agent.sip, notifier.address, actual[0], actual[1])
            real = real.replace(b"tag=forged", b"tag=real").replace(b"forged1", b"real1")
            notifier.sock.sendto(real, agent.sip)
            deadline = time.monotonic() + 5
            while True:
                message, _ = notifier.receive(max(deadline - time.monotonic(), 0.1))
                if isinstance(message, Response) and message.cseq.method == "NOTIFY":
                    assert message.status == 200
                    break
    finally:
        notifier.close()
        attacker.close()
