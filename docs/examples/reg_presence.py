"""Presence while registered: subscribe to a user's presence when the user registers.

SER's presence_b2b was to serve users "capable to process SUBSCRIBE/NOTIFY but not using
PUBLISH". This program does it with the public runtime API (``UdpRuntime``, QSA ``subscribe``
and ``unsubscribe``, one listener per destination; docs/architecture.md): it subscribes to
``reg`` (RFC 3680) for one AOR, subscribes to the AOR's ``presence`` as soon as a status
message shows an active contact, and unsubscribes that presence subscription when the
registration ends (its state ``terminated``, or no active contact left). It prints one line
per event; ``--duration`` ends it gracefully (unsubscribing everything).

Walkthrough against the project's Kamailio (docs/lab.md, "Example: subscribe to a user's
presence when the user registers")::

    python docs/examples/reg_presence.py sip:carol@lab.test \\
        --route '<sip:127.0.0.1:5075;lr>' --duration 30

Rules of this file: an adapter over the public API only; the decision (when to subscribe,
when to unsubscribe) is in :meth:`PresenceWhileRegistered.on_reg`, nothing else decides.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from reference import AgentConfig, StatusMessage
from reference.udp import UdpRuntime


class PresenceWhileRegistered:
    """One AOR: a ``reg`` subscription that drives a ``presence`` subscription."""

    def __init__(self, runtime: UdpRuntime, aor: str, watcher: str) -> None:
        self.runtime, self.aor, self.watcher = runtime, aor, watcher
        self.presence: int | None = None  # the presence handle while the AOR is registered
        runtime.add_listener("reg", self.on_reg)
        runtime.add_listener("presence", self.on_presence)
        self.reg = runtime.subscribe(aor, watcher, "reg", package="reg")

    def on_reg(self, message: StatusMessage) -> None:
        registration = message.registration
        if registration is None:  # no document (nobody registered yet), or the reg
            say(f"reg: {message.status}" + (f" ({message.reason})" if message.reason else ""))
            if message.status == "terminated":  # subscription itself ended: stop watching
                self.stop_presence()
            return
        active = [c for c in registration.contacts if c.state == "active"]
        contacts = ", ".join(f"{c.uri} {c.state}/{c.event} expires={c.expires}"
                             for c in registration.contacts)
        say(f"reg: {registration.aor} {registration.state}: {contacts or 'no contacts'}")
        if registration.state == "active" and active:
            if self.presence is None:
                self.presence = self.runtime.subscribe(self.aor, self.watcher, "presence")
                say("presence: subscribed")
        else:
            self.stop_presence()

    def stop_presence(self) -> None:
        if self.presence is not None:
            self.runtime.unsubscribe(self.presence)
            self.presence = None
            say("presence: unsubscribed")

    def on_presence(self, message: StatusMessage) -> None:
        document = message.document
        shown = document.basic if document is not None else "(no document)"
        say(f"presence: {message.status} {shown}"
            + (f" ({message.reason})" if message.reason else ""))


def say(line: str) -> None:
    print(line, flush=True)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Subscribe to a user's presence while the user is registered (reg).",
        epilog="example: %(prog)s sip:carol@lab.test --route '<sip:127.0.0.1:5075;lr>'")
    parser.add_argument("aor", help="the user's address-of-record")
    parser.add_argument("--watcher", default="sip:pa@lab.test",
                        help="the internal subscriber (default sip:pa@lab.test)")
    parser.add_argument("--route", required=True,
                        help="presence_route: the server that serves reg and presence")
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (default any port)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    config = AgentConfig(profile="rfc6665", presence_route=args.route,
                         default_expiration=600)
    runtime = await UdpRuntime.open(config, host, int(port))
    say(f"agent on udp {runtime.local_address[0]}:{runtime.local_address[1]}")
    PresenceWhileRegistered(runtime, args.aor, args.watcher)
    await asyncio.sleep(args.duration)
    await runtime.shutdown()  # unsubscribes reg and presence, waits for the final NOTIFYs
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
