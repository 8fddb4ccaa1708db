"""The floor under any Python NOTIFY answerer: the least work per NOTIFY, on uvloop.

Run: ``.venv/bin/python benchmarks/notify_floor.py PORT`` (benchmarks/lab_bench.py starts it
for its "python floor" row and drives it with SIPp exactly like the Kamailio rows).

Per datagram it receives the NOTIFY, splits the header section into a dict (no grammar, no
checks), parses the PIDF body with the project's hardened lxml parse
(``reference.xmlsafe.parse_xml``: limits, no DTD) and reads ``<basic>``, then sends a 200
copied from Via, From, To, Call-ID and CSeq. No dialog, no transaction, no CSeq or
Subscription-State check, no status message: an agent that parses every NOTIFY and its PIDF
can only cost more CPU per NOTIFY than this. The point of the row is that bound, which tells
which of issue 19's targets a Python agent can reach on this machine at all.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import cast

import uvloop

from reference.xmlsafe import XmlLimits, parse_xml

PIDF = "{urn:ietf:params:xml:ns:pidf}"
BASIC = f"{PIDF}tuple/{PIDF}status/{PIDF}basic"
LIMITS = XmlLimits()
RESPONSE = ("SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {from_}\r\nTo: {to}\r\nCall-ID: {call_id}"
            "\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n")


class FloorProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.basics: dict[str | None, int] = {}  # what the bodies said (keeps the read live)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport is not a subclass of asyncio.DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        head, _, body = data.partition(b"\r\n\r\n")
        fields: dict[str, str] = {}
        for line in head.decode().split("\r\n")[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        basic = parse_xml(body, LIMITS, ValueError, "PIDF").find(BASIC)
        text = None if basic is None else basic.text
        self.basics[text] = self.basics.get(text, 0) + 1
        assert self.transport is not None
        self.transport.sendto(RESPONSE.format(
            via=fields["via"], from_=fields["from"], to=fields["to"],
            call_id=fields["call-id"], cseq=fields["cseq"]).encode(), addr)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(FloorProtocol, local_addr=("127.0.0.1", port))
    await asyncio.Event().wait()  # until SIGTERM from lab_bench


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="notify_floor.py",
        description="Answer every NOTIFY on 127.0.0.1:PORT with a 200 after the least work "
                    "(header split, hardened PIDF parse); the floor row of lab_bench.",
        epilog="example: .venv/bin/python benchmarks/notify_floor.py 5090  "
               "(then drive it with SIPp; benchmarks/lab_bench.py does both)")
    parser.add_argument("port", type=int, help="UDP port on 127.0.0.1 to listen on")
    args = parser.parse_args(argv)
    uvloop.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
