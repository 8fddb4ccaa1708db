"""The bounded parse cache of reference/pidf.py: only default-limit parses of bodies up to
CACHED_BODY_BYTES are kept, at most CACHED_BODIES of them, failures never; a hit equals the
uncached parse."""

from __future__ import annotations

import pytest

from reference import pidf
from reference.pidf import (
    CACHED_BODIES,
    CACHED_BODY_BYTES,
    DEFAULT_LIMITS,
    PidfError,
    PidfLimits,
    build_pidf,
    parse_pidf,
)


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    pidf._parse_cached.cache_clear()


def _uncached(body: bytes, lenient: bool) -> pidf.PresenceDocument:
    return pidf._parse(body, lenient, DEFAULT_LIMITS)


@pytest.mark.parametrize("lenient", [False, True])
def test_a_cached_parse_equals_the_uncached_one(lenient: bool) -> None:
    body = build_pidf("sip:alice@lab.test", basic="closed", note="away")
    first = parse_pidf(body, lenient=lenient)
    again = parse_pidf(bytearray(body), lenient=lenient)
    assert again is first and first == _uncached(body, lenient)
    assert pidf._parse_cached.cache_info().hits == 1


def test_the_profiles_are_cached_apart() -> None:
    body = build_pidf("sip:alice@lab.test", basic="open")
    assert parse_pidf(body) is not parse_pidf(body, lenient=True)
    assert pidf._parse_cached.cache_info().currsize == 2


def test_the_cache_is_bounded_in_entries() -> None:
    for n in range(CACHED_BODIES + 50):
        parse_pidf(build_pidf(f"sip:u{n}@lab.test", basic="open"))
    assert pidf._parse_cached.cache_info().currsize == CACHED_BODIES


def test_large_bodies_and_other_limits_are_not_cached() -> None:
    note = "x" * CACHED_BODY_BYTES
    large = build_pidf("sip:alice@lab.test", basic="open", note=note)
    assert len(large) > CACHED_BODY_BYTES
    assert parse_pidf(large) == _uncached(large, False)
    small = build_pidf("sip:alice@lab.test", basic="open")
    parse_pidf(small, limits=PidfLimits(max_elements=100))
    assert pidf._parse_cached.cache_info().currsize == 0


def test_failures_are_not_cached_and_still_raise() -> None:
    for _ in range(2):
        with pytest.raises(PidfError):
            parse_pidf(b"<presence/>")
    assert pidf._parse_cached.cache_info().currsize == 0
