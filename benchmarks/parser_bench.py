"""Our SIP parser (reference.sip) against sippy's, on the same datagrams, in one run.

Rules of this file: a benchmark, not a test. It prints messages/second and the ratios to
sippy (the anchor, https://pypi.org/project/sippy/, the ``bench`` extra) measured in the same
process and the same minutes, and asserts nothing about speed.

Messages (what a presence subscriber receives): a NOTIFY with a PIDF body, the 200 OK to a
SUBSCRIBE, and a SUBSCRIBE (what a notifier receives), as written by a real UA. Rows:

* ``ours parse``: ``parse_message`` only (framing, start line, header index, every check
  that the parser makes before returning).
* ``ours full``: ``parse_message`` plus every typed accessor a subscriber reads (Via list,
  From, To, Call-ID, CSeq, Contact, Max-Forwards, and Event, Subscription-State,
  Content-Type or Accept and Expires): each of those header values fully parsed and checked.
  The values are immutable, and those that recur in a dialog (From, To, Contact, Event,
  Subscription-State, Content-Type, Accept; a Via but for its branch) come from caches keyed
  by their text: ``--dialogs 1`` measures that steady state, ``--dialogs 100000`` a parse
  where no dialog's own values are cached any more (Event and the like still are: every
  dialog has the same).
* ``sippy lazy``: ``SipRequest(buf=...)`` / ``SipResponse(buf=...)``, which splits the
  headers and parses the start line, Content-Length and Content-Type; other header bodies
  are parsed only when asked for. The datagram is decoded to ``str`` in the timed call (sippy
  takes text, ours takes the bytes as received).
* ``sippy full``: the lazy parse plus ``getBody()`` of every header (sippy's full parse).

The target of issue 19 is ``ours full`` >= 2.5x ``sippy lazy``. The timed loop cycles over
max(N, 10,000) datagrams spread round-robin over ``--dialogs N`` dialogs: as on the wire,
every datagram has its own Via branch and CSeq, and the datagrams of different dialogs differ
in Call-ID, tags, Request-URI, From/To/Contact URIs and PIDF entity. So no cache sees a
branch twice within 10,000 messages; ``--dialogs 1`` is one dialog's steady state (its other
values repeat), ``--dialogs 100000`` a busy agent where no dialog value repeats within
100,000 messages.
Rates are messages per CPU second of the benchmark process (``time.process_time``), so time
spent waiting for a core while other processes run does not count; what they still cost
(shared caches, a sibling hyper-thread) slows every row alike. Each row is measured
``--repeat`` times, rows interleaved, and the median printed (with the spread); ratios are
of the medians. The load average before and after is printed.

Examples::

    .venv/bin/python benchmarks/parser_bench.py                    # 1 and 100,000 dialogs
    .venv/bin/python benchmarks/parser_bench.py --repeat 5 --seconds 2
    .venv/bin/python benchmarks/parser_bench.py --dialogs 1 --message NOTIFY
    .venv/bin/python benchmarks/parser_bench.py --quick --json     # smoke run, one JSON line
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

from reference.sip import Request, parse_message
from reference.sip import message as sip_message

PIDF = (
    '<?xml version="1.0" encoding="UTF-8"?>\r\n'
    '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:bob{i}@example.com">\r\n'
    '  <tuple id="t{i}"><status><basic>open</basic></status>'
    "<contact>sip:bob{i}@192.0.2.20</contact></tuple>\r\n"
    "  <note>Online</note>\r\n</presence>\r\n"
)

NOTIFY = (
    "NOTIFY sip:watcher{i}@192.0.2.10:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK776asd{seq}hds;rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:bob{i}@example.com>;tag=19283{i}01774\r\n"
    "To: <sip:watcher{i}@example.com>;tag=a73k{i}szlfl\r\n"
    "Call-ID: a84b4c76e6{i}6710@192.0.2.10\r\n"
    "CSeq: {cseq} NOTIFY\r\n"
    "Contact: <sip:bob{i}@192.0.2.20:5060>\r\n"
    "Event: presence\r\n"
    "Subscription-State: active;expires=3540\r\n"
    "User-Agent: lab-presence/1.0\r\n"
    "Content-Type: application/pidf+xml\r\n"
    "Content-Length: {length}\r\n\r\n{body}"
)

OK_TO_SUBSCRIBE = (
    "SIP/2.0 200 OK\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnas{seq}hds8;rport=5060;received=192.0.2.10\r\n"
    "From: <sip:watcher{i}@example.com>;tag=a73k{i}szlfl\r\n"
    "To: <sip:bob{i}@example.com>;tag=19283{i}01774\r\n"
    "Call-ID: a84b4c76e6{i}6710@192.0.2.10\r\n"
    "CSeq: {cseq} SUBSCRIBE\r\n"
    "Contact: <sip:bob{i}@192.0.2.20:5060>\r\n"
    "Expires: 3600\r\n"
    "Server: lab-presence/1.0\r\n"
    "Content-Length: 0\r\n\r\n"
)

SUBSCRIBE = (
    "SUBSCRIBE sip:bob{i}@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnas{seq}hds8;rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:watcher{i}@example.com>;tag=a73k{i}szlfl\r\n"
    "To: <sip:bob{i}@example.com>\r\n"
    "Call-ID: a84b4c76e6{i}6710@192.0.2.10\r\n"
    "CSeq: {cseq} SUBSCRIBE\r\n"
    "Contact: <sip:watcher{i}@192.0.2.10:5060>\r\n"
    "Event: presence\r\n"
    "Accept: application/pidf+xml\r\n"
    "Expires: 3600\r\n"
    "Content-Length: 0\r\n\r\n"
)

MESSAGES = {"NOTIFY": NOTIFY, "200-SUBSCRIBE": OK_TO_SUBSCRIBE, "SUBSCRIBE": SUBSCRIBE}


# Datagrams per timed cycle at least: no branch repeats within this many messages.
MIN_DATAGRAMS = 10_000


def datagram(kind: str, dialog: int, sequence: int) -> bytes:
    """Datagram number ``sequence`` of ``kind`` in ``dialog``: the dialog's values contain
    ``dialog``, the branch and CSeq contain ``sequence``."""
    body = PIDF.format(i=dialog) if kind == "NOTIFY" else ""
    text = MESSAGES[kind].format(i=dialog, seq=sequence, cseq=sequence % 100_000 + 1,
                                 length=len(body), body=body)
    return text.encode()


def datagrams(kind: str, dialogs: int) -> list[bytes]:
    """max(dialogs, MIN_DATAGRAMS) datagrams of ``kind``, round-robin over the dialogs."""
    return [datagram(kind, n % dialogs, n) for n in range(max(dialogs, MIN_DATAGRAMS))]


# ---------------------------------------------------------------- the parsers timed


def ours_parse(data: bytes) -> None:
    parse_message(data)


def ours_full(data: bytes) -> None:
    message = parse_message(data)
    message.vias  # noqa: B018 - each access parses and checks one header
    message.from_  # noqa: B018
    message.to  # noqa: B018
    message.call_id  # noqa: B018
    message.cseq  # noqa: B018
    message.contacts  # noqa: B018
    if isinstance(message, Request):
        message.max_forwards  # noqa: B018
        message.event  # noqa: B018
        if message.method == "NOTIFY":
            message.subscription_state  # noqa: B018
            message.content_type  # noqa: B018
        else:
            message.accept  # noqa: B018
            message.expires  # noqa: B018
    else:
        message.expires  # noqa: B018


def _sippy_parsers() -> tuple[Callable[[bytes], Any], Callable[[bytes], None]]:
    from sippy.SipRequest import SipRequest  # type: ignore[import-not-found]
    from sippy.SipResponse import SipResponse  # type: ignore[import-not-found]

    def lazy(data: bytes) -> Any:
        text = data.decode()
        if text.startswith("SIP/2.0 "):
            return SipResponse(buf=text)
        return SipRequest(buf=text)

    def full(data: bytes) -> None:
        for header in lazy(data).headers:
            header.getBody()

    return lazy, full


# ---------------------------------------------------------------- measuring


def rate(parse: Callable[[bytes], object], datagrams: Sequence[bytes], seconds: float) -> float:
    """Messages per CPU second of ``parse`` cycling over ``datagrams`` for about ``seconds``
    of this process's CPU time (time the process waits for a core does not count)."""
    count = 0
    n = len(datagrams)
    position = 0
    batch = min(n, 500)
    start = time.process_time()
    end = start + seconds
    while True:
        chunk = datagrams[position : position + batch]
        for data in chunk:
            parse(data)
        count += len(chunk)
        position = (position + len(chunk)) % n
        now = time.process_time()
        if now >= end:
            return count / (now - start)


def measure(kind: str, dialogs: int, parsers: dict[str, Callable[[bytes], object]],
            seconds: float, repeat: int) -> dict[str, list[float]]:
    cycle = datagrams(kind, dialogs)
    for data in cycle[:50]:  # every parser accepts every datagram, before timing
        for parse in parsers.values():
            parse(data)
    rates: dict[str, list[float]] = {name: [] for name in parsers}
    for _ in range(repeat):
        for name, parse in parsers.items():
            rates[name].append(rate(parse, cycle, seconds))
    return rates


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__[__doc__.index("Examples::") :].replace("Examples::", "examples:"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="CPU seconds per row and round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are printed")
    parser.add_argument("--dialogs", type=int, action="append",
                        help="distinct dialogs cycled over (repeatable; default 1 and 100000)")
    parser.add_argument("--message", choices=sorted(MESSAGES), action="append",
                        help="message kind (repeatable; default all)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 0.05 s per row, 1 round, 1 and 1,000 dialogs")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.repeat = 0.05, 1
        args.dialogs = args.dialogs or [1, 1000]
    dialogs = args.dialogs or [1, 100_000]
    if args.repeat < 1 or args.seconds <= 0 or min(dialogs) < 1:
        parser.error("--repeat, --seconds and --dialogs must be positive")
    try:
        sippy_lazy, sippy_full = _sippy_parsers()
    except ImportError:
        print("parser_bench: sippy is not installed (pip install -e '.[bench]')",
              file=sys.stderr)
        return 2
    parsers: dict[str, Callable[[bytes], object]] = {
        "ours parse": ours_parse, "ours full": ours_full,
        "sippy lazy": sippy_lazy, "sippy full": sippy_full,
    }
    header = {
        "python": platform.python_version(),
        # mypyc builds extension modules: the parser's file is then not a .py file.
        "parser": str(sip_message.__file__),
        "compiled": not str(sip_message.__file__).endswith(".py"),
        "sippy": metadata.version("sippy"),
        "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "seconds": args.seconds,
        "repeat": args.repeat,
    }
    if not args.json:
        print(f"parser_bench: {'compiled' if header['compiled'] else 'interpreted'} "
              f"{header['parser']}, python {header['python']}, sippy {header['sippy']}, "
              f"{header['repeat']} round(s) x {header['seconds']} s per row; load average "
              f"{' '.join(map(str, header['load_before']))} ({header['cpus']} CPUs)")
        print(f"{'message':14s} {'dialogs':>8s}  {'parser':11s} {'msg/CPU s':>9s}  "
              f"{'spread':>19s}  {'/sippy lazy':>11s} {'/sippy full':>11s}")
    results = []
    for kind in args.message or list(MESSAGES):
        for count in dialogs:
            rates = measure(kind, count, parsers, args.seconds, args.repeat)
            medians = {name: statistics.median(values) for name, values in rates.items()}
            for name, values in rates.items():
                row = {
                    "message": kind, "dialogs": count, "parser": name,
                    "median": round(medians[name]), "min": round(min(values)),
                    "max": round(max(values)),
                    "vs_sippy_lazy": round(medians[name] / medians["sippy lazy"], 3),
                    "vs_sippy_full": round(medians[name] / medians["sippy full"], 3),
                }
                results.append(row)
                if not args.json:
                    print(f"{kind:14s} {count:8d}  {name:11s} {row['median']:9,d}  "
                          f"{row['min']:9,d}-{row['max']:<9,d}  "
                          f"{row['vs_sippy_lazy']:10.2f}x {row['vs_sippy_full']:10.2f}x")
    header["load_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        print(json.dumps({**header, "rows": results}))
    else:
        print(f"load average after: {' '.join(map(str, header['load_after']))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
