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

    # The effects' own __init__s (the decorator keeps them) write the fields into the
    # instance's __dict__: the generated frozen __init__ calls object.__setattr__ once per
    # field, about twice the cost of the whole call, and an effect is built for every
    # message sent and every status message. Same signatures, fields in field order
    # (tests/reference/test_effects_init.py holds them equal to the generated ones).
    def __init__(self, data: bytes, destination: Address, error_answer: bool = False,
                 transport: str = "udp") -> None:
        fields = self.__dict__
        fields["data"] = data
        fields["destination"] = destination
        fields["error_answer"] = error_answer
        fields["transport"] = transport


@dataclass(frozen=True)
class Deliver:
    """Put a QSA status message on the destination's queue."""

    destination: str
    message: StatusMessage

    def __init__(self, destination: str, message: StatusMessage) -> None:
        fields = self.__dict__
        fields["destination"] = destination
        fields["message"] = message


@dataclass(frozen=True)
class TraceEvent:
    """A structured trace record (DESIGN §6)."""

    time: float
    kind: str
    fields: dict[str, Any]

    def __init__(self, time: float, kind: str, fields: dict[str, Any]) -> None:
        values = self.__dict__
        values["time"] = time
        values["kind"] = kind
        values["fields"] = fields


Effect = Send | Deliver | TraceEvent
