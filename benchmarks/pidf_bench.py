"""Parse throughput of reference.pidf for a typical two-tuple PIDF document.

Run: ``.venv/bin/python benchmarks/pidf_bench.py [SECONDS]`` (default 2 s per case;
``--help`` for the options).
Prints parses per second for the strict and lenient profiles (a typical two-tuple RPID
document, then the small one-tuple body udp_bench sends) and builds per second.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from reference.pidf import Note, PresenceTuple, build_pidf, parse_pidf

TYPICAL_DOCUMENT = b"""<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
          xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
          xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
          entity="pres:alice@example.com">
  <tuple id="sg89ae">
    <status><basic>open</basic></status>
    <contact priority="0.8">sip:alice@192.0.2.10:5060</contact>
    <note xml:lang="en">At my desk</note>
    <timestamp>2026-11-26T14:00:00Z</timestamp>
  </tuple>
  <tuple id="mobile1">
    <status><basic>closed</basic></status>
    <contact priority="0.2">sip:alice@198.51.100.7</contact>
  </tuple>
  <dm:person id="p1">
    <rpid:activities><rpid:meeting/></rpid:activities>
  </dm:person>
  <note>Available</note>
</presence>
"""

# The one-tuple body of every NOTIFY in benchmarks/udp_bench.py.
NOTIFY_DOCUMENT = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:load1@lab.test">'
    b'<tuple id="t1"><status><basic>open</basic></status>'
    b"<contact>sip:load@127.0.0.1</contact><note>load open</note></tuple></presence>\n"
)

TUPLES = (
    PresenceTuple(
        id="a",
        basic="open",
        contact="sip:alice@192.0.2.10",
        priority=0.8,
        notes=(Note("At my desk", "en"),),
    ),
    PresenceTuple(id="b", basic="closed", contact="sip:alice@198.51.100.7", priority=0.2),
)


def rate(action: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``action`` over about ``seconds`` of wall-clock time."""
    calls = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(100):
            action()
        calls += 100
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - started)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Parse and build throughput of reference.pidf.",
        epilog="example: python benchmarks/pidf_bench.py 0.5")
    parser.add_argument("seconds", nargs="?", type=_positive, default=2.0,
                        help="measuring time per case in seconds (default 2)")
    seconds = parser.parse_args().seconds
    print(f"document: {len(TYPICAL_DOCUMENT)} bytes, 2 tuples, 1 RPID person")
    print(f"parse strict : {rate(lambda: parse_pidf(TYPICAL_DOCUMENT), seconds):10.0f} /s")
    print(
        "parse lenient: "
        f"{rate(lambda: parse_pidf(TYPICAL_DOCUMENT, lenient=True), seconds):10.0f} /s"
    )
    print(f"small document: {len(NOTIFY_DOCUMENT)} bytes, 1 tuple (udp_bench's NOTIFY body)")
    print(f"parse strict : {rate(lambda: parse_pidf(NOTIFY_DOCUMENT), seconds):10.0f} /s")
    print(
        "parse lenient: "
        f"{rate(lambda: parse_pidf(NOTIFY_DOCUMENT, lenient=True), seconds):10.0f} /s"
    )
    builds = rate(lambda: build_pidf("pres:alice@example.com", TUPLES), seconds)
    print(f"build        : {builds:10.0f} /s")


if __name__ == "__main__":
    main()
