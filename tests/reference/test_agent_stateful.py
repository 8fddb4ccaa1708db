"""Random interleavings of every input the agent takes, in both profiles (hypothesis).

Invariants after every step:
* nothing raises;
* no timer without its owner: a live subscription timer / Timer N belongs to a live
  subscription, a transaction timer to a live transaction;
* no subscription without a way forward: each live subscription has its timer armed, or a
  SUBSCRIBE transaction outstanding, or is in `terminated` (rfc6665: waits for the internal
  subscriber);
* an unsubscribed handle is gone within `failover_timeout + wait_for_term_notify` of agent
  time, and nothing is delivered for it after the unsubscribe.
"""

from __future__ import annotations

import os
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from reference.sip import Request
from reference.subscription import State
from reference.timers import TimerKey, TimerKind
from reference.ua import HOUSEKEEPING_SLACK

from .harness import Harness, sub_timer

# 200 weighted up: most interesting paths start with a success.
CODES = [200, 200, 200, 100, 180, 200, 202, 301, 302, 400, 403, 404, 408, 423, 480, 481, 489,
         500, 503, 603, 699]
STATES = ["active", "pending", "active;expires=1", "active;expires=20", "active;expires=600",
          "pending;expires=40", "terminated", "terminated;reason=deactivated",
          "terminated;reason=timeout", "terminated;reason=probation;retry-after=30",
          "terminated;reason=giveup", "terminated;reason=rejected",
          "terminated;reason=noresource", "terminated;reason=invariant",
          "terminated;reason=x-new;retry-after=5", "Terminated", ""]
EPS = 1e-6


class AgentMachine(RuleBasedStateMachine):
    profile = "rfc6665"
    params: dict[str, Any] = {}  # read-only, per class

    def __init__(self) -> None:
        super().__init__()
        self.h = Harness.make(self.profile, seed=11, **self.params)
        self.handles: list[int] = []
        self.unsub_at: dict[int, float] = {}
        self.delivered_seen = 0
        self.last_notify: bytes | None = None
        self.cseq = 10
        self.gone_at: dict[int, float] = {}
        self.h.after_input.append(self._check_unsubscribed)

    def _check_unsubscribed(self) -> None:
        """After every single input (timers included): unsubscribed handles vanish in time."""
        cfg = self.h.config
        bound = cfg.failover_timeout + cfg.wait_for_term_notify
        for handle, at in self.unsub_at.items():
            if handle in self.gone_at:
                continue
            if handle not in self.h.agent.subscriptions:
                self.gone_at[handle] = self.h.now
            assert self.h.now <= at + bound + EPS, (
                handle, at, self.h.now, self.h.agent.subscriptions.get(handle))

    # ------------------------------------------------------------------ inputs
    @precondition(lambda self: len(self.h.agent.subscriptions) < 4
                  and not self.h.agent.closing)
    @rule()
    def subscribe(self) -> None:
        self.handles.append(self.h.subscribe())

    @precondition(lambda self: bool(self.handles))
    @rule(data=st.data())
    def unsubscribe(self, data: st.DataObject) -> None:
        handle = data.draw(st.sampled_from(self.handles))
        if handle in self.h.agent.subscriptions and handle not in self.unsub_at:
            self.unsub_at[handle] = self.h.now
        self.h.unsubscribe(handle)

    def _pick_request(self, data: st.DataObject) -> Request | None:
        subs = self.h.subscribes()
        if not subs:
            return None
        # Mostly the newest request (the one the agent waits for), sometimes an older one.
        back = data.draw(st.sampled_from([1, 1, 1, 2, 3, 4]))
        return subs[-min(back, len(subs))]

    @rule(data=st.data(), code=st.sampled_from(CODES),
          expires=st.sampled_from([None, "0", "1", "20", "600", "3600", "x"]),
          min_expires=st.sampled_from([None, "1800", "7200"]),
          contacts=st.sampled_from([0, 1, 2]),
          retry_after=st.sampled_from([None, "5", "100"]),
          to_tag=st.sampled_from(["srv1", "srv2", None]),
          record_route=st.booleans())
    def respond(self, data: st.DataObject, code: int, expires: str | None,
                min_expires: str | None, contacts: int, retry_after: str | None,
                to_tag: str | None, record_route: bool) -> None:
        request = self._pick_request(data)
        if request is None:
            return
        headers: list[tuple[str, str]] = []
        if expires is not None:
            headers.append(("Expires", expires))
        if min_expires is not None:
            headers.append(("Min-Expires", min_expires))
        if retry_after is not None:
            headers.append(("Retry-After", retry_after))
        for i in range(contacts):
            headers.append(("Contact", f"<sip:bob@r{i}.lab.test>;q=0.{i + 1}"))
        if record_route:
            headers.append(("Record-Route", "<sip:rr.lab.test;lr>"))
        self.h.respond(request, code, to_tag=to_tag, headers=headers, expires=None)

    @rule(data=st.data(), state=st.sampled_from(STATES),
          from_tag=st.sampled_from(["srv1", "srv2"]),
          body=st.sampled_from(["pidf", "empty", "garbage"]),
          cseq_step=st.sampled_from([1, 1, 1, 0, -1]))
    def notify(self, data: st.DataObject, state: str, from_tag: str, body: str,
               cseq_step: int) -> None:
        request = self._pick_request(data)
        if request is None:
            return
        self.cseq += cseq_step
        raw_body = {"pidf": None, "empty": b"", "garbage": b"<presence"}[body]
        self.last_notify = self.h.notify_bytes(request, state=state, from_tag=from_tag,
                                               cseq=self.cseq, body=raw_body)
        self.h.feed(self.last_notify)

    @precondition(lambda self: self.last_notify is not None)
    @rule()
    def retransmit_notify(self) -> None:
        assert self.last_notify is not None
        self.h.feed(self.last_notify)

    @rule(delta=st.sampled_from([0.1, 1.0, 5.0, 31.0, 31.0, 33.0, 60.0, 130.0, 600.0, 4000.0]))
    def advance(self, delta: float) -> None:
        self.h.advance_by(delta)

    @precondition(lambda self: bool(self.h.timers))
    @rule()
    def fire_next_timer(self) -> None:
        at = min(self.h.timers.values())
        self.h.advance(at)

    @rule()
    def close(self) -> None:
        for handle in self.h.agent.subscriptions:
            self.unsub_at.setdefault(handle, self.h.now)
        self.h.close()

    # ------------------------------------------------------------------ invariants
    @invariant()
    def timers_have_owners(self) -> None:
        agent = self.h.agent
        for key in self.h.timers:
            if key.kind in (TimerKind.SUBSCRIPTION, TimerKind.TIMER_N):
                assert key.handle in agent.subscriptions, f"orphan timer {key}"
            elif key.kind is TimerKind.CLIENT_TX:
                assert key.branch in agent.ua.clients, f"orphan transaction timer {key}"
            else:
                assert agent.ua.server_deadlines or agent.ua.client_deadlines, \
                    "housekeeping timer without Timer J or K deadlines"
        # Every completed client transaction waits for its Timer K under housekeeping.
        waiting = {branch for _, branch in agent.ua.client_deadlines}
        for branch, entry in agent.ua.clients.items():
            if entry.tx.state == "completed":
                assert branch in waiting and self.h.timers, branch
        for handle, sub in agent.subscriptions.items():
            assert (sub.timer_kind is not None) == (sub_timer(handle) in self.h.timers), \
                (handle, sub.state, sub.timer_kind)
            if sub.timer_kind is not None:
                assert self.h.timers[sub_timer(handle)] == sub.timer_at

    @invariant()
    def every_subscription_has_a_way_forward(self) -> None:
        agent = self.h.agent
        for handle, sub in agent.subscriptions.items():
            outstanding = sub.tx_branch is not None and sub.tx_branch in agent.ua.clients
            assert sub_timer(handle) in self.h.timers or outstanding \
                or sub.state is State.TERMINATED, (handle, sub.state)
            assert sub.state is not State.DESTROYED

    @invariant()
    def indexes_are_consistent(self) -> None:
        agent = self.h.agent
        for call_id, handle in agent.core.by_dialog.items():
            sub = agent.subscriptions.get(handle)
            assert sub is not None and sub.dialog is not None, (call_id, handle)
            assert sub.dialog.call_id == call_id
        for handle, sub in agent.subscriptions.items():
            if sub.dialog is not None:
                assert agent.core.by_dialog.get(sub.dialog.call_id) == handle
        # At most one live (unanswered) SUBSCRIBE per subscription, and it is the awaited one.
        live: dict[int, int] = {}
        for branch, entry in agent.ua.clients.items():
            if entry.tx.state in ("trying", "proceeding"):
                live[entry.owner] = live.get(entry.owner, 0) + 1
                sub = agent.subscriptions.get(entry.owner)
                assert sub is not None and sub.tx_branch == branch, (branch, entry.owner)
        assert all(n == 1 for n in live.values())
        # Every completed server transaction is waiting for its Timer J: the housekeeping
        # timer is armed at most its slack after the earliest deadline, and no transaction
        # has outlived its deadline by more than that slack.
        deadlines = dict((key, at) for at, key in agent.ua.server_deadlines)
        assert set(agent.ua.servers) <= set(deadlines)
        if agent.ua.servers:
            armed_at = self.h.timers[TimerKey(TimerKind.SERVER_TX)]
            assert armed_at <= min(deadlines.values()) + HOUSEKEEPING_SLACK + EPS
            assert all(at > self.h.now - HOUSEKEEPING_SLACK - EPS
                       for at in deadlines.values())

    @invariant()
    def unsubscribed_handles_go_away(self) -> None:
        cfg = self.h.config
        bound = cfg.failover_timeout + cfg.wait_for_term_notify
        for handle, at in self.unsub_at.items():
            if self.h.now > at + bound + EPS:
                assert handle not in self.h.agent.subscriptions, \
                    (handle, self.h.agent.subscriptions[handle].state, at, self.h.now)

    @invariant()
    def nothing_delivered_after_unsubscribe(self) -> None:
        new = self.h.delivered[self.delivered_seen:]
        self.delivered_seen = len(self.h.delivered)
        for message in new:
            assert message.handle not in self.unsub_at or message.at < self.unsub_at[
                message.handle], message


class SerMachine(AgentMachine):
    profile = "ser"


class DelayedMachine(AgentMachine):
    """Both profiles' DELAY path and a short grant policy, rfc6665 with odd timer values."""

    params = {"max_subscribe_delay": 5, "resubscribe_delta": 5, "min_resubscribe_time": 1,
              "default_expiration": 60, "wait_for_term_notify": 10}


class SerDelayedMachine(DelayedMachine):
    profile = "ser"


# AGENT_FUZZ_EXAMPLES=2000 for a longer hunt; the default keeps the suite fast.
SETTINGS: dict[str, Any] = dict(
    max_examples=int(os.environ.get("AGENT_FUZZ_EXAMPLES", "200")), stateful_step_count=40,
    deadline=None, suppress_health_check=[HealthCheck.too_slow])

TestRfc6665Machine = AgentMachine.TestCase
TestRfc6665Machine.settings = settings(**SETTINGS)
TestSerMachine = SerMachine.TestCase
TestSerMachine.settings = settings(**SETTINGS)
TestDelayedMachine = DelayedMachine.TestCase
TestDelayedMachine.settings = settings(
    **{**SETTINGS, "max_examples": SETTINGS["max_examples"] // 2})
TestSerDelayedMachine = SerDelayedMachine.TestCase
TestSerDelayedMachine.settings = settings(
    **{**SETTINGS, "max_examples": SETTINGS["max_examples"] // 2})
