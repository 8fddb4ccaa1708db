"""The SIP parser gives the same result or the same error as the parser before the speed work
of issue 19 (commit LEGACY_COMMIT), on mutated messages.

Rules of this file: the old parser is not kept in the package; it is loaded here from git
(``git show LEGACY_COMMIT:reference/sip/*.py``) as the package ``legacy_sip``. Each message
is seeded from the corpus and realistic presence messages, then mutated (characters of SIP's
grammar inserted, spans deleted or duplicated, lines swapped, names case-flipped or made
compact...); both parsers parse it and every typed accessor is read; the outcomes must be
equal: the message (start line, header items, body, ``to_bytes``) and each accessor's value
(its repr, which shows every field, and its text as written back into a header), or the error
(text, status, whether it carries the message, and that message's start line and headers).
Since then the values are named tuples with read-only params (the dataclass repr kept); the
comparison also writes the top Via back with a ``received`` parameter (what a UAS does).
Runs without git history of that commit are skipped.

The test runs MESSAGES mutated messages; the recorded run (docs/lab.md) used more:

    .venv/bin/python -m tests.reference.sip.test_parser_equivalence --messages 60000
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reference import sip
from reference.sip.message import response_bytes

LEGACY_COMMIT = "9e28fcf14624165363fed26141ab845cf524a528"
MODULES = ("errors", "limits", "grammar", "uri", "headers", "message")
REPO = Path(__file__).resolve().parents[3]
CORPUS = Path(__file__).parent / "corpus"
MESSAGES = 4000

ACCESSORS = ("vias", "top_via", "from_", "to", "call_id", "cseq", "contacts", "routes",
             "record_routes", "expires", "min_expires", "retry_after", "event",
             "subscription_state", "content_type", "max_forwards", "accept")


def load_legacy() -> types.ModuleType:
    """The reference.sip message module of LEGACY_COMMIT, imported as ``legacy_sip.*``."""
    if "legacy_sip.message" in sys.modules:
        return sys.modules["legacy_sip.message"]
    package = types.ModuleType("legacy_sip")
    package.__path__ = []
    sys.modules["legacy_sip"] = package
    for name in MODULES:
        source = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{LEGACY_COMMIT}:reference/sip/{name}.py"],
            capture_output=True, text=True, check=True).stdout
        source = source.replace("reference.sip.", "legacy_sip.")
        spec = importlib.util.spec_from_loader(f"legacy_sip.{name}", loader=None)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        exec(compile(source, f"legacy_sip/{name}.py", "exec"), module.__dict__)
    return sys.modules["legacy_sip.message"]


def _legacy_or_skip() -> types.ModuleType:
    try:
        return load_legacy()
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"commit {LEGACY_COMMIT[:10]} not in this clone's git history: {exc}")


# ---------------------------------------------------------------- messages and mutations


def seeds() -> list[bytes]:
    out = [path.read_bytes() for path in sorted(CORPUS.glob("*.sip"))
           if path.stat().st_size < 4000]
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import parser_bench
    finally:
        sys.path.pop(0)
    for kind in parser_bench.MESSAGES:
        out += [parser_bench.datagram(kind, dialog, dialog * 7) for dialog in range(3)]
    return out


# What mutations insert: the characters SIP's grammar gives a meaning, and a few fragments.
INSERTS = [*' \t;,:=<>"@?&%[]/\\()*.#\x00\xe9', "\r\n", "\n", "\r\n ", "\r", "sip:", "SIP/2.0",
           ";tag=", ";branch=z9hG4bK", ";rport", "<sip:a@b>", '"x"', "%4", "%41", ";;",
           ":5060", ":99999", "[::1]", "tel:+1", "\xff", "Content-Length: 0\r\n",
           "Call-ID: x\r\n", "i: y\r\n", "v: SIP/2.0/UDP h\r\n", "Via: SIP/2.0/TCP h:1\r\n"]
COMPACT = {"Via": "v", "From": "f", "To": "t", "Call-ID": "i", "Contact": "m",
           "Content-Length": "l", "Content-Type": "c", "Event": "o"}


def mutate(data: bytes, rng: random.Random) -> bytes:
    text = data.decode("utf-8", "surrogateescape")
    for _ in range(rng.randint(1, 3)):
        if not text:
            break
        at = rng.randrange(len(text) + 1)
        kind = rng.randrange(8)
        if kind <= 2:
            text = text[:at] + rng.choice(INSERTS) + text[at:]
        elif kind == 3:
            text = text[:at] + text[at + rng.randint(1, 12):]
        elif kind == 4:
            end = min(len(text), at + rng.randint(1, 30))
            text = text[:end] + text[at:end] + text[end:]
        elif kind == 5:
            lines = text.split("\r\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            text = "\r\n".join(lines)
        elif kind == 6:
            name = rng.choice(list(COMPACT))
            text = text.replace(name + ":", rng.choice([COMPACT[name], name.upper(),
                                                        name.lower() + " "]) + ":", 1)
        else:
            text = text[:at] + text[at:at + 20].swapcase() + text[at + 20:]
    return text.encode("utf-8", "surrogateescape")


# ---------------------------------------------------------------- outcomes


def _error(exc: Exception) -> tuple[Any, ...]:
    message = getattr(exc, "message", None)
    shown = None if message is None else (message.start_line(), message.headers.items())
    return ("error", type(exc).__name__, str(exc), getattr(exc, "status", None), shown)


def _attempt(read: Callable[[], Any]) -> Any:
    try:
        return repr(read())
    except Exception as exc:
        return _error(exc)


def _written(value: Any) -> Any:
    """The text a value is written back as (``str``), element by element for a list."""
    if isinstance(value, list):
        return [str(item) for item in value]
    return None if value is None else str(value)


def outcome(parse: Callable[[bytes], Any], check: Callable[[Any], None],
            data: bytes) -> tuple[Any, ...]:
    try:
        message = parse(data)
    except Exception as exc:
        return _error(exc)
    parts: list[Any] = [type(message).__name__, message.start_line(), message.headers.items(),
                        message.body, _attempt(message.to_bytes)]
    parts += [_attempt(lambda name=name: getattr(message, name)) for name in ACCESSORS]
    parts += [_attempt(lambda name=name: _written(getattr(message, name))) for name in ACCESSORS]
    parts += [_attempt(lambda: check(message))]
    parts += [_attempt(lambda: str(message.top_via.with_param("received", "192.0.2.1"))
                       if message.top_via is not None else None)]
    try:
        contacts = message.contacts
    except Exception:
        contacts = []  # the error is in parts already
    for contact in contacts:
        parts += [_attempt(lambda c=contact: (c.q, c.expires))]
        if contact.address is not None:
            parts += [_attempt(contact.address.sip_uri)]
    return tuple(parts)


def compare(count: int, seed: int) -> tuple[int, int, list[tuple[bytes, Any, Any]]]:
    """(messages compared, of which parsed, differences) over ``count`` mutated messages."""
    legacy = load_legacy()
    rng = random.Random(seed)
    bases = seeds()
    parsed = 0
    differences = []
    for _ in range(count):
        data = mutate(rng.choice(bases), rng)
        ours = outcome(sip.parse_message, sip.check_mandatory, data)
        theirs = outcome(legacy.parse_message, legacy.check_mandatory, data)
        parsed += ours[0] != "error"
        if ours != theirs:
            differences.append((data, ours, theirs))
    return count, parsed, differences


# ---------------------------------------------------------------- the test


def test_mutated_messages_parse_as_before() -> None:
    _legacy_or_skip()
    count, parsed, differences = compare(MESSAGES, seed=19)
    assert not differences, differences[:3]
    # The mutations keep many messages parseable (or the accessors would go untested).
    assert parsed > count // 4


def test_check_mandatory_before_any_accessor_as_before() -> None:
    """check_mandatory reads the mandatory values itself (not through the accessors): on a
    fresh message, before any accessor filled a cache, its outcome is the old one too."""
    legacy = _legacy_or_skip()
    rng = random.Random(23)
    bases = seeds()
    check_errors = 0
    for _ in range(MESSAGES):
        data = mutate(rng.choice(bases), rng)
        outcomes = []
        for parser in (sip, legacy):
            try:
                message = parser.parse_message(data)
            except Exception as exc:
                outcomes.append(("parse", _error(exc)))
                continue
            outcomes.append(("check", _attempt(lambda m=message, p=parser: p.check_mandatory(m))))
        assert outcomes[0] == outcomes[1], data
        check_errors += outcomes[0][0] == "check" and outcomes[0][1] != "None"
    assert check_errors > MESSAGES // 10  # (many fail the check: its errors are compared)


def _written_response(request: sip.Request, status: int, reason: str | None,
                      fast: bool) -> Any:
    try:
        if fast:
            return response_bytes(request, status, reason)
        return sip.make_response(request, status, reason).to_bytes()
    except Exception as exc:
        return _error(exc)


def test_response_bytes_is_the_built_response_written() -> None:
    """message.response_bytes (a UAS's answer written from the request without building the
    Response) gives make_response(...).to_bytes(), or its error, for every request that
    parses, whatever its headers (repeated, compact, odd values)."""
    rng = random.Random(29)
    bases = seeds()
    requests = 0
    for _ in range(MESSAGES):
        try:
            message = sip.parse_message(mutate(rng.choice(bases), rng))
        except Exception:
            continue
        if not isinstance(message, sip.Request):
            continue
        requests += 1
        for status, reason in ((200, None), (481, "Subscription does not exist"), (99, None),
                               (700, None), (299, None)):
            assert _written_response(message, status, reason, True) == \
                _written_response(message, status, reason, False)
    assert requests > MESSAGES // 4


def test_sections_with_cache_misses_parse_as_before() -> None:
    """A header section of which some lines are in the parser's line cache and some are not
    (a dialog's From, To and Call-ID miss it on a busy agent), with a bad line (a bare CR or
    LF, no colon, a name with a space) before, between or after the lines that miss, parses
    as before: the lines are looked at in their order whichever of them miss."""
    legacy = _legacy_or_skip()
    bad_lines = ("X-A: 1\rX-B: 2", "X-A: 1\nX-B: 2", "no colon here", "Bad Name: 1")
    compared = 0
    for base in seeds():
        head, blank, body = base.partition(b"\r\n\r\n")
        lines = head.decode("utf-8", "surrogateescape").split("\r\n")
        if not blank or len(lines) < 3:
            continue
        outcome(sip.parse_message, sip.check_mandatory, base)  # its lines cached now
        for at in range(1, len(lines)):
            for missing in ("From", "To", "Call-ID", "Subscription-State"):
                fresh = [line + "9" if line.startswith(missing + ":") else line
                         for line in lines]
                for bad in ("", *bad_lines):
                    variant = fresh[:at] + [bad] * bool(bad) + fresh[at:]
                    data = "\r\n".join(variant).encode("utf-8", "surrogateescape") \
                        + blank + body
                    assert outcome(sip.parse_message, sip.check_mandatory, data) == outcome(
                        legacy.parse_message, legacy.check_mandatory, data), data
                    compared += 1
    assert compared > 1000


def test_the_comparison_sees_a_difference() -> None:
    """The comparison is not blind: a changed outcome is a difference."""
    legacy = _legacy_or_skip()
    data = seeds()[0]
    assert outcome(sip.parse_message, sip.check_mandatory, data) == outcome(
        legacy.parse_message, legacy.check_mandatory, data)
    assert outcome(sip.parse_message, sip.check_mandatory, data) != outcome(
        legacy.parse_message, legacy.check_mandatory, data.replace(b"CSeq: 4", b"CSeq: 5"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=19)
    args = parser.parse_args()
    count, parsed, differences = compare(args.messages, args.seed)
    print(f"{count} mutated messages (seed {args.seed}), {parsed} parsed, "
          f"{len(differences)} differences")
    for data, ours, theirs in differences[:5]:
        print(repr(data), "\n  ours:  ", ours, "\n  before:", theirs)
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
