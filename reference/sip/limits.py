"""Input limits for the SIP parser and the single error type it raises.

Every limit exists so that untrusted bytes cannot make the parser use unbounded memory or
time: the parser checks them before doing work proportional to the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reference.sip.message import Request, Response


class SipParseError(ValueError):
    """A SIP message, header value or URI could not be parsed.

    The text names the offending part (``bad CSeq: 'abc'``). ``message`` holds the framed
    message when the start line and header section were framed but a value is bad (so a
    UAS can still answer by copying Via/From/To/Call-ID/CSeq); otherwise it is None.
    ``status`` is the answer that fits the problem: 400, or 505 for a SIP version other than
    2.0 (RFC 3261 §21.5.7).
    """

    def __init__(self, text: str, message: Request | Response | None = None, *,
                 status: int = 400) -> None:
        super().__init__(text)
        self.message = message
        self.status = status


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
