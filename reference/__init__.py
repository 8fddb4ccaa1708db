"""The reference presence B2BUA: a sans-IO core (SIP, PIDF, QSA, behaviour profiles).

Public API (docs/architecture.md): `Agent`, `AgentConfig`, the effects `Send`, `StartTimer`,
`CancelTimer`, `Deliver`, `TraceEvent`, and the QSA types `StatusMessage`, `MessageQueue`.
"""

from reference.agent import Agent
from reference.config import AgentConfig, ConfigError
from reference.effects import (
    Address,
    CancelTimer,
    Deliver,
    Effect,
    Send,
    StartTimer,
    TimerKey,
    TraceEvent,
)
from reference.qsa import MessageQueue, StatusMessage

__all__ = [
    "Address",
    "Agent",
    "AgentConfig",
    "CancelTimer",
    "ConfigError",
    "Deliver",
    "Effect",
    "MessageQueue",
    "Send",
    "StartTimer",
    "StatusMessage",
    "TimerKey",
    "TraceEvent",
]
