"""The reference presence B2BUA: a sans-IO core (SIP, PIDF, QSA, behaviour profiles).

Public API (docs/architecture.md): `Agent`, `AgentConfig`, the effects `Send`, `Deliver`,
`TraceEvent`, the timer key `TimerKey`, the shared driver loop `EffectPump` / `Wire`, and the
QSA types `StatusMessage`, `MessageQueue`. Timers are the core's own: a driver arms one
wake-up for `Agent.next_deadline()` and calls `Agent.handle_timers(now)`.
"""

from reference.agent import Agent
from reference.config import AgentConfig, ConfigError
from reference.effects import Address, Deliver, Effect, Send, TraceEvent
from reference.pump import EffectPump, Wire
from reference.qsa import MessageQueue, StatusMessage
from reference.timers import TimerKey, TimerKind

__all__ = [
    "Address",
    "Agent",
    "AgentConfig",
    "ConfigError",
    "Deliver",
    "Effect",
    "EffectPump",
    "MessageQueue",
    "Send",
    "StatusMessage",
    "TimerKey",
    "TimerKind",
    "TraceEvent",
    "Wire",
]
