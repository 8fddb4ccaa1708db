"""The one effect pump: how the core's effects leave it, for every driver.

Rules of this file:
* Every driver of an ``Agent`` (the asyncio UDP runtime, the simulator's agent host, the
  conformance ``sim`` target, the unit-test harness) calls the agent, then ``pump()``; when
  its one wake-up comes, it calls ``wake(now)``. It adds only its clock and its wire: a
  ``Wire`` with five methods.
* Effects leave in the order the core emitted them. After them the wire is asked to arm its
  one wake-up for ``Agent.next_deadline()`` (a driver with a wake-up already armed at that
  time is not asked again; ``None`` means nothing is armed in the core).
* A wake-up that comes when nothing is due is harmless (``handle_timers`` fires nothing).
* No I/O and no clock here: ``now`` comes from the driver.
"""

from __future__ import annotations

from typing import Protocol

from reference.agent import Agent
from reference.effects import Address, Deliver, Send, TraceEvent
from reference.qsa import StatusMessage


class Wire(Protocol):
    """What a driver supplies: where effects go, and its one wake-up."""

    def send(self, data: bytes, destination: Address, error_answer: bool) -> None: ...

    def send_stream(self, data: bytes, destination: Address, transport: str) -> None:
        """Send one message on a stream transport ("tcp"); only drivers of an agent whose
        configuration enables it see this (``AgentConfig.transports``)."""

    def deliver(self, destination: str, message: StatusMessage) -> None: ...

    def trace(self, event: TraceEvent) -> None: ...

    def arm(self, at: float | None) -> None:
        """(Re)arm the driver's one wake-up for ``at``, replacing the armed one; None
        disarms it."""


class EffectPump:
    """Moves one agent's effects onto one wire and keeps its wake-up armed."""

    __slots__ = ("_armed_at", "agent", "wire")

    def __init__(self, agent: Agent, wire: Wire) -> None:
        self.agent = agent
        self.wire = wire
        self._armed_at: float | None = None

    def pump(self) -> None:
        """Deliver the effects of the calls made since the last pump, then re-arm."""
        wire = self.wire
        for effect in self.agent.drain_effects():
            # Exact-type dispatch: effects are final dataclasses and this runs several
            # times per datagram.
            if type(effect) is Send:
                if effect.transport == "udp":
                    wire.send(effect.data, effect.destination, effect.error_answer)
                else:
                    wire.send_stream(effect.data, effect.destination, effect.transport)
            elif type(effect) is Deliver:
                wire.deliver(effect.destination, effect.message)
            elif type(effect) is TraceEvent:
                wire.trace(effect)
        at = self.agent.next_deadline()
        if at != self._armed_at:
            self._armed_at = at
            wire.arm(at)

    def wake(self, now: float, limit: int | None = None) -> int:
        """The driver's wake-up came: fire what is due at ``now`` (at most ``limit``
        timers; the rest stay due and the wake-up is re-armed for them) and pump. Returns
        the number of timers fired."""
        self._armed_at = None  # consumed: the next pump arms again
        fired = self.agent.handle_timers(now, limit)
        self.pump()
        return fired

    def disarm(self) -> None:
        """Forget the armed wake-up (a driver that closed its clock)."""
        self._armed_at = None
