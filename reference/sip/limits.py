"""Input limits for the SIP parser (bytes and counts).

Every limit exists so that untrusted bytes cannot make the parser use unbounded memory or
time: the parser checks them before doing work proportional to the input. This module
imports nothing from the project (the error type is in ``errors.py``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Upper bounds applied by ``parse_message`` (bytes or counts).

    Defaults: a UDP datagram cannot exceed 65535 bytes, real SIP headers are far below 8 KiB,
    and 256 header lines is well beyond any legitimate request.
    """

    max_message_bytes: int = 65535  # whole datagram, head and body
    max_start_line: int = 8192  # request line / status line, in bytes
    max_header_line: int = 8192  # one header after unfolding, name included, in bytes
    max_headers: int = 256  # header fields (after unfolding), Content-Length included
    max_nesting: int = 32  # depth of nested comments "( ( ) )" in typed values


DEFAULT_LIMITS = ParseLimits()

# Typed header values are parsed lazily, after parse_message returned, so they use this
# module-level bound for comment nesting (the only nested construct we parse).
MAX_COMMENT_DEPTH = DEFAULT_LIMITS.max_nesting

# Python refuses int() on very long digit strings (ValueError), and SIP numbers are at most
# 32-bit anyway: digit strings longer than this are handled without calling int().
MAX_NUMBER_DIGITS = 10
