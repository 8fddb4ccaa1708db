"""Parse and serialise rates of reference.sip for two typical presence messages.

Run: ``.venv/bin/python benchmarks/sip_bench.py [--seconds 1.0]``. Prints messages/second on
one core for: parse only, parse + the accessors a subscriber reads, and to_bytes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from reference.sip import Request, parse_message

PIDF = (
    b'<?xml version="1.0" encoding="UTF-8"?>\r\n'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:bob@example.com">\r\n'
    b'  <tuple id="t1"><status><basic>open</basic></status>'
    b"<contact>sip:bob@192.0.2.20</contact></tuple>\r\n"
    b"  <note>Online</note>\r\n</presence>\r\n"
)

NOTIFY = (
    b"NOTIFY sip:watcher@192.0.2.10:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:bob@example.com>;tag=1928301774\r\n"
    b"To: <sip:watcher@example.com>;tag=a73kszlfl\r\n"
    b"Call-ID: a84b4c76e66710@192.0.2.10\r\n"
    b"CSeq: 7 NOTIFY\r\n"
    b"Contact: <sip:bob@192.0.2.20:5060>\r\n"
    b"Event: presence\r\n"
    b"Subscription-State: active;expires=3540\r\n"
    b"Content-Type: application/pidf+xml\r\n"
    b"Content-Length: " + str(len(PIDF)).encode() + b"\r\n\r\n" + PIDF
)

SUBSCRIBE = (
    b"SUBSCRIBE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds8;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:watcher@example.com>;tag=a73kszlfl\r\n"
    b"To: <sip:bob@example.com>\r\n"
    b"Call-ID: a84b4c76e66710@192.0.2.10\r\n"
    b"CSeq: 1 SUBSCRIBE\r\n"
    b"Contact: <sip:watcher@192.0.2.10:5060>\r\n"
    b"Event: presence\r\n"
    b"Accept: application/pidf+xml\r\n"
    b"Expires: 3600\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def _rate(fn: Callable[[], object], seconds: float) -> float:
    count = 0
    batch = 200
    start = time.perf_counter()
    end = start + seconds
    while True:
        for _ in range(batch):
            fn()
        count += batch
        now = time.perf_counter()
        if now >= end:
            return count / (now - start)


def _touch(data: bytes) -> None:
    message = parse_message(data)
    message.vias  # noqa: B018
    message.from_  # noqa: B018
    message.to  # noqa: B018
    message.call_id  # noqa: B018
    message.cseq  # noqa: B018
    message.event  # noqa: B018
    message.contacts  # noqa: B018
    if isinstance(message, Request) and message.method == "NOTIFY":
        message.subscription_state  # noqa: B018
        message.content_type  # noqa: B018
    else:
        message.expires  # noqa: B018


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args()
    for name, data in (("NOTIFY+PIDF", NOTIFY), ("SUBSCRIBE", SUBSCRIBE)):
        message = parse_message(data)
        parse = _rate(lambda d=data: parse_message(d), args.seconds)  # type: ignore[misc]
        touch = _rate(lambda d=data: _touch(d), args.seconds)  # type: ignore[misc]
        serialise = _rate(message.to_bytes, args.seconds)
        print(
            f"{name:12s} parse {parse:10,.0f}/s  parse+accessors {touch:10,.0f}/s  "
            f"to_bytes {serialise:10,.0f}/s  ({len(data)} bytes)"
        )


if __name__ == "__main__":
    main()
