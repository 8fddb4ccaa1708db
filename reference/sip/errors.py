"""The one error type of the SIP layer.

Rules of this file: it sits at the bottom of ``reference.sip`` and imports nothing from the
project, so every other module (grammar, URIs, headers, framing) may raise it without an
import circle.
"""

from __future__ import annotations


class SipParseError(ValueError):
    """A SIP message, header value or URI could not be parsed.

    The text names the offending part (``bad CSeq: 'abc'``). ``message`` holds the framed
    message (a ``Request`` or ``Response``) when the start line and header section were
    framed but a value is bad, so a UAS can still answer by copying
    Via/From/To/Call-ID/CSeq; otherwise it is None. It is typed ``object`` because this
    module may not know the message classes: callers test it with ``isinstance``.
    ``status`` is the answer that fits the problem: 400, or 505 for a SIP version other than
    2.0 (RFC 3261 §21.5.7).
    """

    def __init__(self, text: str, message: object | None = None, *,
                 status: int = 400) -> None:
        super().__init__(text)
        self.message = message
        self.status = status
