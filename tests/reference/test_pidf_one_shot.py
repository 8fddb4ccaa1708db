"""The one-shot PIDF parse path (a shared hardened parser, limits measured after parsing)
against the incremental path it must agree with, and the limits it must still enforce."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from reference.pidf import DEFAULT_LIMITS, PidfError, PidfLimits, build_pidf, parse_pidf
from reference.xmlsafe import ONE_SHOT_MAX_BYTES as _ONE_SHOT_MAX_BYTES
from reference.xmlsafe import parse_incremental, parse_one_shot
from tests.reference.test_pidf import PIDF, doc, one_tuple


def outcome(body: bytes, limits: PidfLimits, *, one_shot: bool) -> str:
    """Serialised tree, or "error" for a body the path refuses."""
    if one_shot:
        root = parse_one_shot(body, limits)
        return "error" if root is None else etree.tostring(root).decode()
    try:
        return etree.tostring(parse_incremental(body, limits, PidfError, "PIDF")).decode()
    except PidfError:
        return "error"


FRAGMENTS = st.sampled_from([
    "<a/>", "<b>t</b>", "<!--c-->", "<?pi x?>", "&amp;", "&lt;", "&xxe;", "<![CDATA[<x>]]>",
    "<e:a xmlns:e='urn:e'/>", "<note>n</note>", "</tuple>", "<", "\x00", "<x y='1' y='2'/>",
    "<tuple id='u'><status><basic>closed</basic></status></tuple>", "<d><d><d/></d></d>",
])


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(FRAGMENTS, max_size=12),
       cut=st.none() | st.integers(0, 400),
       max_depth=st.integers(1, 8), max_elements=st.integers(1, 20))
def test_one_shot_and_incremental_paths_agree(parts: list[str], cut: int | None,
                                              max_depth: int, max_elements: int) -> None:
    body = one_tuple(extra="".join(parts))
    if cut is not None:
        body = body[:cut]
    limits = PidfLimits(max_depth=max_depth, max_elements=max_elements)
    assert outcome(body, limits, one_shot=True) == outcome(body, limits, one_shot=False)


@pytest.mark.parametrize(("inner", "limits", "message"), [
    ("<x>" * 40 + "</x>" * 40, DEFAULT_LIMITS, "nesting deeper than 32"),
    ("<a/>" * 2500, DEFAULT_LIMITS, "more than 2000 elements"),
    ("<x><y/></x>", PidfLimits(max_depth=2), "nesting deeper than 2"),
    ("<x/>" * 5, PidfLimits(max_elements=5), "more than 5 elements"),
])
def test_limits_below_the_one_shot_size_keep_their_messages(inner: str, limits: PidfLimits,
                                                            message: str) -> None:
    body = doc(inner)
    assert len(body) <= _ONE_SHOT_MAX_BYTES  # (this is the one-shot path's size range)
    with pytest.raises(PidfError, match=message):
        parse_pidf(body, limits=limits)


def test_wide_shallow_tree_passes_the_depth_walk() -> None:
    # More elements than max_depth (so the depth walk runs) but only depth 3.
    body = doc("<note>n</note>" * 40)
    parsed = parse_pidf(body, limits=PidfLimits(max_depth=3, max_elements=41))
    assert len(parsed.notes) == 40


def test_largest_one_shot_body_of_empty_elements_is_rejected_quickly() -> None:
    inner = "<a/>" * ((_ONE_SHOT_MAX_BYTES - len(doc(""))) // 4)
    body = doc(inner)
    assert len(body) <= _ONE_SHOT_MAX_BYTES
    started = time.perf_counter()
    with pytest.raises(PidfError, match="more than 2000 elements"):
        parse_pidf(body)
    assert time.perf_counter() - started < 0.5


def test_shared_parser_is_not_poisoned_by_a_failure() -> None:
    good = one_tuple()
    for bad in (b"<presence", b"\xff\xfe<x", doc("&xxe;"), b"", doc("<a></b>")):
        with pytest.raises(PidfError):
            parse_pidf(bad)
        assert parse_pidf(good).tuples[0].basic == "open"


def test_doctype_found_after_a_one_shot_parse_is_still_rejected() -> None:
    # The byte scan cannot read UTF-16 without its NULs... it removes them; EBCDIC-like
    # encodings are what the docinfo check is for. Either way the one-shot path refuses.
    body = (f'<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE presence>'
            f'<presence xmlns="{PIDF}" entity="x"/>').encode("utf-16")
    assert parse_one_shot(body, DEFAULT_LIMITS) is None
    with pytest.raises(PidfError, match="DOCTYPE"):
        parse_pidf(body)


def test_parallel_parses_from_threads_give_their_own_documents() -> None:
    bodies = [build_pidf(f"pres:u{n}@example.com", basic="open" if n % 2 else "closed")
              for n in range(8)]
    errors: list[str] = []

    def work(n: int) -> None:
        for _ in range(200):
            parsed = parse_pidf(bodies[n])
            if parsed.entity != f"pres:u{n}@example.com":
                errors.append(parsed.entity)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not errors and not any(thread.is_alive() for thread in threads)
