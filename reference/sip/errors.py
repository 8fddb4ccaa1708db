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
    framed but a value is bad, so a UAS can still answer 400 by copying
    Via/From/To/Call-ID/CSeq; otherwise it is None. It is typed ``object`` because this
    module may not know the message classes: callers test it with ``isinstance``.
    """

    def __init__(self, text: str, message: object | None = None) -> None:
        super().__init__(text)
        self.message = message
