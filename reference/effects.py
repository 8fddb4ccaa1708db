"""Effects: what the sans-IO core asks its driver to do (docs/architecture.md).

Timers are not effects: the core owns them (``reference.timers``) and a driver reads
``Agent.next_deadline()``; ``reference.pump.EffectPump`` moves these effects onto a wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reference.qsa import StatusMessage

Address = tuple[str, int]


@dataclass(frozen=True)
class Send:
    """Send `data` as one message to `destination` (a host name is resolved by the runtime):
    one UDP datagram when `transport` is "udp", else on the runtime's stream connection to
    `destination` ("tcp": reused, or opened; an answer to a request that came over TCP goes
    on the connection it came on, whose peer address is `destination`). `error_answer` marks
    a 400 or 481 answer (and its retransmissions): a runtime may rate-limit those without
    reading the bytes (a flood of NOTIFYs for unknown dialogs must not make the agent a
    reflector)."""

    data: bytes
    destination: Address
    error_answer: bool = False
    transport: str = "udp"


@dataclass(frozen=True)
class Deliver:
    """Put a QSA status message on the destination's queue."""

    destination: str
    message: StatusMessage


@dataclass(frozen=True)
class TraceEvent:
    """A structured trace record (DESIGN §6)."""

    time: float
    kind: str
    fields: dict[str, Any]


Effect = Send | Deliver | TraceEvent
