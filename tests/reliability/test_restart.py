"""What a notifier's dialogs become when `b2b-agent` is SIGKILLed and restarted (issue 13 §5).

The agent keeps no state on disk: the new process, on the same SIP port, knows none of the
old dialogs. Each in-dialog NOTIFY the notifier sends for them is answered 481 (statelessly,
like any unknown dialog), which ends the subscription at a notifier that follows RFC 6665
§4.2.2; a dialog the notifier never NOTIFYs again stays at the notifier until its expiry,
because the new process sends nothing for it (no refresh, no unsubscribe). A client that
subscribes again gets a new dialog with a new Call-ID. docs/reliability.md describes it.
"""

from __future__ import annotations

import signal
import socket
import time

import pytest

from benchmarks.flood_bench import MiniNotifier, hold_subscriptions, running_agent
from reference.sip import Response, parse_message

from .test_udp_hostile import Client

HELD = 3
GRANT = 600
REASONS = {"rfc6665": "Subscription does not exist", "ser": "Unable to handle notification"}


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["rfc6665", "ser"])
def test_dialogs_after_sigkill_and_restart(profile: str) -> None:
    listen = f"127.0.0.1:{_free_udp_port()}"
    notifier = MiniNotifier(GRANT)
    try:
        with running_agent({"trace": "0"}, profile, listen=listen) as first:
            hold_subscriptions(first, notifier, HELD)
            first.proc.send_signal(signal.SIGKILL)
            assert first.proc.wait(timeout=10) == -signal.SIGKILL
        old = {call_id: (len(d.subscribes), d) for call_id, d in notifier.dialogs.items()}
        assert len(old) == HELD
        with running_agent({"trace": "0"}, profile, listen=listen) as second:
            assert second.request({"op": "dump"})["subscriptions"] == []
            # The notifier NOTIFYs each old dialog (a state change), from its own socket.
            client = Client(second.sip)
            for call_id, (_, dialog) in old.items():
                dialog.cseq += 1
                client.send((
                    f"NOTIFY sip:{dialog.target[0]}:{dialog.target[1]} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {client.address[0]}:{client.address[1]};"
                    f"branch=z9hG4bKre{dialog.cseq}{dialog.tag};rport\r\n"
                    f"Max-Forwards: 70\r\nFrom: {dialog.our_to}\r\n"
                    f"To: {dialog.subscriber_from}\r\nCall-ID: {call_id}\r\n"
                    f"CSeq: {dialog.cseq} NOTIFY\r\nEvent: presence\r\n"
                    f"Subscription-State: active;expires={GRANT}\r\n"
                    f"Content-Length: 0\r\n\r\n").encode())
            client.collect(quiet=1.0)
            answers = [parse_message(data) for data in client.answers]
            assert all(isinstance(a, Response) for a in answers)
            assert sorted((a.call_id, a.status, a.reason) for a in answers
                          if isinstance(a, Response)) == sorted(
                (call_id, 481, REASONS[profile]) for call_id in old)
            # Unknown-dialog 481s are stateless: no server transaction, no Timer J armed.
            stats = second.stats()
            assert stats["counters"]["rx.notify_unknown_dialog"] == HELD
            assert stats["live_timers"] == 0
            # The new process sends nothing for the old dialogs: a notifier that does not
            # NOTIFY them keeps them until they expire.
            time.sleep(1.0)
            assert all(len(notifier.dialogs[call_id].subscribes) == count
                       for call_id, (count, _) in old.items())
            # Subscribing again makes a new dialog (new Call-ID); the old one stays orphaned.
            hold_subscriptions(second, notifier, 1)
            new = set(notifier.dialogs) - set(old)
            assert len(new) == 1
    finally:
        notifier.close()
