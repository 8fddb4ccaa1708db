"""Framing SIP messages on a stream transport (TCP) by Content-Length (RFC 3261 §18.3).

Rules of this file:

* :class:`StreamFramer` turns received byte chunks into whole messages (bytes, each one a
  message ``parse_message`` then reads with the same ``ParseLimits`` as a datagram). It
  never holds more than ``max_message_bytes`` of an unfinished message: beyond that the
  stream is broken.
* CRLFs between messages are skipped (RFC 3261 §7.5); a double CRLF there is a keep-alive
  ping (RFC 5626 §3.5.1), counted in ``pings`` so the transport can answer the single-CRLF
  pong.
* On a stream a message without ``Content-Length`` cannot be framed (RFC 3261 §18.3 makes it
  mandatory there), nor can one with a bad, repeated-and-different or oversized value. The
  framer then raises :class:`SipParseError` and stays broken: the transport closes the
  connection, because the next message boundary is unknown.
* Imports only ``sip.errors`` and ``sip.limits``.
"""

from __future__ import annotations

from reference.sip.errors import SipParseError
from reference.sip.limits import DEFAULT_LIMITS, MAX_NUMBER_DIGITS, ParseLimits

__all__ = ["StreamFramer"]

_LENGTH_NAMES = (b"content-length", b"l")


class StreamFramer:
    """Content-Length framing of one connection's byte stream."""

    __slots__ = ("_broken", "_buffer", "limits", "pings")

    def __init__(self, limits: ParseLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._buffer = bytearray()
        self._broken: str | None = None
        self.pings = 0

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished message held (bounded by ``max_message_bytes``)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """The messages ``data`` completed, in order; ``SipParseError`` when the stream
        cannot be framed any more (then every later call raises it again)."""
        if self._broken is not None:
            raise SipParseError(self._broken)
        self._buffer += data
        out: list[bytes] = []
        try:
            while True:
                message = self._next()
                if message is None:
                    break
                out.append(message)
        except SipParseError as exc:
            self._broken = str(exc)
            self._buffer.clear()
            raise
        return out

    def _next(self) -> bytes | None:
        buffer = self._buffer
        skipped = 0
        while skipped < len(buffer) and buffer[skipped] in (0x0D, 0x0A):
            skipped += 1
        if skipped:
            if bytes(buffer[:skipped]).count(b"\r\n\r\n") or bytes(buffer[:skipped]) == b"\n\n":
                self.pings += 1
            del buffer[:skipped]
        if not buffer:
            return None
        limit = self.limits.max_message_bytes
        crlf = buffer.find(b"\r\n\r\n")
        lf = buffer.find(b"\n\n")
        if crlf >= 0 and (lf < 0 or crlf < lf):
            head_end, body_start = crlf, crlf + 4
        elif lf >= 0:
            head_end, body_start = lf, lf + 2
        else:
            if len(buffer) > limit:
                raise SipParseError(f"message too large: no end of headers within {limit} bytes")
            return None
        length = _content_length(bytes(buffer[:head_end]))
        total = body_start + length
        if total > limit:
            raise SipParseError(f"message too large: {total} bytes (limit {limit})")
        if len(buffer) < total:
            return None
        message = bytes(buffer[:total])
        del buffer[:total]
        return message


def _content_length(head: bytes) -> int:
    found: bytes | None = None
    for raw in head.split(b"\n")[1:]:
        name, colon, value = raw.partition(b":")
        if not colon or name[:1] in (b" ", b"\t"):
            continue
        if name.strip().lower() in _LENGTH_NAMES:
            text = value.strip()
            if found is not None and text != found:
                raise SipParseError("bad Content-Length: two different values on a stream")
            found = text
    if found is None:
        raise SipParseError("missing header: Content-Length (mandatory on a stream transport)")
    if not found.isdigit() or len(found.lstrip(b"0")) > MAX_NUMBER_DIGITS:
        raise SipParseError(f"bad Content-Length: {found.decode('latin-1')!r}")
    return int(found)
