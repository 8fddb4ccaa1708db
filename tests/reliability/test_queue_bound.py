"""Slow consumers in-process (issue 8 §5): the UDP runtime's queue for a destination nobody
listens to reaches its bound (`queue_bound`) and loses no status silently.

The policy itself (supersede the same subscription's older state, else another subscription's
older state, else grow past the bound and count it) is pinned by tests/reference/test_qsa.py;
this is the end-to-end version: real NOTIFYs over loopback into a runtime whose destination
has no listener, then a listener that arrives late and gets everything that survived.
"""

from __future__ import annotations

import pytest

from reference import StatusMessage
from reference.udp import UdpRuntime
from tests.reference.test_udp import SUBSCRIBER, TinyNotifier, lab_config, run, until

# Every test here runs on both event loops (tests/event_loops.py).
pytestmark = pytest.mark.usefixtures("loop_name")

NOBODY = "nobody-listens"


@pytest.mark.parametrize(("bound", "subscriptions"), [(5, 3), (2, 4)])
def test_queue_without_listener_hits_its_bound_without_silent_loss(
        bound: int, subscriptions: int) -> None:
    rounds = 6

    async def scenario() -> None:
        notifier = TinyNotifier()
        port = await notifier.open()
        runtime = await UdpRuntime.open(lab_config(port, queue_bound=bound), "127.0.0.1", 0)
        try:
            handles = [runtime.subscribe(f"sip:p{i}@lab.test", SUBSCRIBER, NOBODY)
                       for i in range(subscriptions)]
            await until(lambda: runtime.counters.statuses_delivered == subscriptions,
                        what="the first statuses")
            call_ids = list(notifier.dialogs)
            for number in range(rounds):
                basic = "closed" if number % 2 == 0 else "open"
                for call_id in call_ids:
                    notifier.notify(call_id, "active;expires=600", basic)
                expected = subscriptions * (number + 2)
                await until(lambda e=expected: runtime.counters.statuses_delivered == e,  # type: ignore[misc]
                            what=f"round {number}")
            queue = runtime.queue(NOBODY)
            delivered = runtime.counters.statuses_delivered
            assert delivered == subscriptions * (rounds + 1)
            # At the bound, unless every queued message is the only one of its subscription.
            assert len(queue) == max(bound, subscriptions)
            if subscriptions > bound:
                assert queue.stats.over_bound > 0
            assert queue.stats.superseded == delivered - len(queue)
            # Nothing silent: each survivor says how many states it replaced.
            assert sum(1 + m.superseded for m in queue) == delivered
            latest = {m.handle: m for m in queue}
            assert set(latest) == set(handles)  # every subscription's latest state is there
            final_basic = "closed" if (rounds - 1) % 2 == 0 else "open"
            for message in latest.values():
                assert message.document is not None
                assert message.document.basic == final_basic
            assert runtime.stats()["queue_depth"][NOBODY] == len(queue)
            # A listener that comes late gets what waited, oldest first, and the queue empties.
            seen: list[StatusMessage] = []
            runtime.add_listener(NOBODY, seen.append)
            assert sum(1 + m.superseded for m in seen) == delivered
            assert len(runtime.queue(NOBODY)) == 0
            assert [m.at for m in seen] == sorted(m.at for m in seen)
        finally:
            runtime.close()
            notifier.close()

    run(scenario())
