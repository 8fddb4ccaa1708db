"""No re-subscribe storm against a hostile notifier, over real UDP (issue 13 §2).

The peer accepts every SUBSCRIBE (200) and ends the new dialog at once with a NOTIFY
`terminated` whose reason asks for an immediate new subscription. Before the fix the agent
answered each with a new SUBSCRIBE at once, for ever (1,400-1,600 SUBSCRIBE/s per
subscription); now the first retry is immediate and the next waits the failure back-off
(at least 0.8 x on_error_retry_time = 96 s with the defaults), so a few seconds see two.
"""

from __future__ import annotations

import time
from collections import Counter

from benchmarks.flood_bench import SubscribePeer, running_agent
from reference.sip import Request, make_response

WATCH = 3.0
# user part of the record -> the Subscription-State the peer ends each dialog with
REASONS = {
    "deactivated": "terminated;reason=deactivated",
    "timeout": "terminated;reason=timeout",
    "probation0": "terminated;reason=probation;retry-after=0",
    "giveup": "terminated;reason=giveup",
}


class HostileNotifier(SubscribePeer):
    """Accepts every SUBSCRIBE, then terminates the dialog at once (one UDP socket)."""

    def __init__(self) -> None:
        self.subscribes: Counter[str] = Counter()
        super().__init__("hostile-notifier")

    def on_subscribe(self, request: Request, source: tuple[str, int], now: float) -> None:
        self._seq += 1
        user = (request.uri.split("@", 1)[0]).removeprefix("sip:")
        self.subscribes[user] += 1
        tag = request.to.tag or f"h{self._seq}"
        self.sock.sendto(make_response(request, 200, to_tag=tag, headers=[
            ("Expires", "600"),
            ("Contact", f"<sip:{self.address[0]}:{self.address[1]}>")]).to_bytes(), source)
        notify = (f"NOTIFY sip:{source[0]}:{source[1]} SIP/2.0\r\n"
                  f"Via: SIP/2.0/UDP {self.address[0]}:{self.address[1]};"
                  f"branch=z9hG4bKhostile{self._seq}\r\nMax-Forwards: 70\r\n"
                  f"From: {request.headers.get('To')};tag={tag}\r\n"
                  f"To: {request.headers.get('From')}\r\nCall-ID: {request.call_id}\r\n"
                  f"CSeq: 1 NOTIFY\r\nEvent: presence\r\n"
                  f"Subscription-State: {REASONS[user]}\r\n"
                  f"Contact: <sip:{self.address[0]}:{self.address[1]}>\r\n"
                  f"Content-Length: 0\r\n\r\n")
        self.sock.sendto(notify.encode(), source)


def test_notifier_that_ends_every_subscription_gets_a_bounded_subscribe_count(
        loop_name: str) -> None:
    notifier = HostileNotifier()
    try:
        with running_agent({"trace": "0"}, loop=loop_name) as agent:
            for user in REASONS:
                reply = agent.request({"op": "subscribe", "record": notifier.record(user),
                                       "subscriber": f"sip:w-{user}@b2b.test"})
                assert reply.get("ok"), reply
            time.sleep(WATCH)
            counts = dict(notifier.subscribes)
            # The agent still answers promptly (the storm took a core before the fix).
            started = time.monotonic()
            stats = agent.stats()
            answered_in = time.monotonic() - started
    finally:
        notifier.close()
    for user in REASONS:
        # the first SUBSCRIBE and the one immediate retry; the next is >= 96 s away
        assert counts.get(user, 0) == 2, counts
    assert answered_in < 2.0, answered_in
    assert stats
