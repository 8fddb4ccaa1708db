"""Effects: what the sans-IO core asks its runtime to do (docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from reference.qsa import StatusMessage

Address = tuple[str, int]
# Opaque to runtimes: they hand it back to `Agent.timer_fired` unchanged.
TimerKey = Hashable


@dataclass(frozen=True)
class Send:
    """Send `data` as one UDP datagram to `destination` (a host name is resolved by the
    runtime)."""

    data: bytes
    destination: Address


@dataclass(frozen=True)
class StartTimer:
    """Arm a one-shot timer; replaces a live timer of the same key."""

    key: TimerKey
    at: float


@dataclass(frozen=True)
class CancelTimer:
    """Disarm the timer of this key; a key with no live timer is ignored."""

    key: TimerKey


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


Effect = Send | StartTimer | CancelTimer | Deliver | TraceEvent
