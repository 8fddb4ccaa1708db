"""Hardened multipart/related parsing: boundary rules, limits, Content-IDs, the root part."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.multipart import (
    MultipartError,
    MultipartLimits,
    Part,
    build_multipart,
    parse_multipart,
)

PARTS = [Part("application/rlmi+xml", b"<list/>", "root@x"),
         Part("application/pidf+xml", b"<presence/>\r\n--not-a-delimiter", "p1@x")]
PARAMS = {"boundary": '"b1"', "type": '"application/rlmi+xml"', "start": '"<root@x>"'}


def test_build_then_parse_round_trips_parts_and_root() -> None:
    body = build_multipart(PARTS, "b1")
    related = parse_multipart(body, PARAMS)
    assert [(p.content_type, p.content_id, p.body) for p in related.parts] == [
        (p.content_type, p.content_id, p.body) for p in PARTS]
    assert related.root.content_id == "root@x"
    assert set(related.by_cid()) == {"root@x", "p1@x"}


def test_preamble_epilogue_and_lf_line_ends_are_accepted() -> None:
    body = (b"preamble\n--b1\nContent-Type: text/plain\nContent-ID: <a>\n\nhello\n"
            b"--b1--\nepilogue")
    related = parse_multipart(body, {"boundary": "b1"})
    assert related.root.body == b"hello" and related.root.content_id == "a"


def test_start_parameter_picks_the_root() -> None:
    body = build_multipart(list(reversed(PARTS)), "b1")
    assert parse_multipart(body, PARAMS).root.content_id == "root@x"


@pytest.mark.parametrize(("body", "params", "message"), [
    (b"--b1\r\nContent-Type: a/b\r\n\r\nx\r\n--b1--", {}, "no boundary parameter"),
    (b"", {"boundary": "x" * 71}, "bad multipart boundary"),
    (b"", {"boundary": "ends in space "}, "bad multipart boundary"),
    (b"no delimiter here", {"boundary": "b1"}, "no boundary delimiter"),
    (b"--b1\r\nContent-Type: a/b\r\n\r\nx", {"boundary": "b1"}, "no closing delimiter"),
    (b"--b1\r\nContent-Type: a/b\r\n\r\nx\r\n--b1--", {"boundary": "b1", "start": "<zz>"},
     "start parameter names no part"),
    (b"--b1\r\nContent-Type: a/b\r\n\r\nx\r\n--b1--", {"boundary": "b1", "type": "c/d"},
     "root part is a/b"),
    (b"--b1\r\nContent-ID: <a>\r\n\r\nx\r\n--b1--", {"boundary": "b1"}, "no Content-Type"),
    (b"--b1\r\nContent-Type: a/b\r\nContent-Transfer-Encoding: base64\r\n\r\neA==\r\n--b1--",
     {"boundary": "b1"}, "not supported"),
    (b"--b1\r\nContent-Type: a/b\r\nContent-ID: <a>\r\n\r\nx\r\n--b1\r\nContent-Type: a/b\r\n"
     b"Content-ID: <a>\r\n\r\ny\r\n--b1--", {"boundary": "b1"}, "two parts with Content-ID"),
    (b"--b1 junk\r\nContent-Type: a/b\r\n\r\nx\r\n--b1--", {"boundary": "b1"},
     "text after a boundary"),
    (b"--b1\r\nContent-Type: a/b\r\nx\r\n\r\ny\r\n--b1--", {"boundary": "b1"}, "bad header line"),
    (b"--b1\r\nContent-Type: a/b\r\nx\r\n--b1--", {"boundary": "b1"}, "no blank line"),
])
def test_bad_bodies_are_refused_with_the_reason(body: bytes, params: dict[str, str | None],
                                                message: str) -> None:
    with pytest.raises(MultipartError, match=message):
        parse_multipart(body, params)


def test_limits_bound_size_parts_and_headers() -> None:
    body = build_multipart([Part("a/b", b"x" * 100, f"c{i}") for i in range(5)], "b1")
    params = {"boundary": "b1"}
    with pytest.raises(MultipartError, match="too large"):
        parse_multipart(body, params, limits=MultipartLimits(max_bytes=50))
    with pytest.raises(MultipartError, match="more than 3 parts"):
        parse_multipart(body, params, limits=MultipartLimits(max_parts=3))
    with pytest.raises(MultipartError, match="part 1 too large"):
        parse_multipart(body, params, limits=MultipartLimits(max_part_bytes=99))
    with pytest.raises(MultipartError, match="more than 1 header lines"):
        parse_multipart(body, params, limits=MultipartLimits(max_part_headers=1))


def test_builder_refuses_a_boundary_inside_a_part() -> None:
    with pytest.raises(ValueError, match="inside part"):
        build_multipart([Part("a/b", b"--b1--", "x")], "b1")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_no_input_escapes_as_anything_but_multipart_error(data: bytes) -> None:
    with contextlib.suppress(MultipartError):
        parse_multipart(b"--b1\r\n" + data, {"boundary": "b1"})
