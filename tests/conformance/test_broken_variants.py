"""The library must catch broken subscribers: each variant below is the reference agent with
one deliberate defect, and at least one scenario must fail against it (sim target)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.runner import DIFFERS, FAIL, run_scenario
from conformance.scenario import Scenario, load
from conformance.targets.sim import AgentFactory, SimTarget
from reference import Agent, AgentConfig, policy
from reference.sip import Request
from reference.subscription import State

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios" / "conformance"


@pytest.fixture(scope="module")
def library() -> list[Scenario]:
    scenarios, errors = load([LIBRARY])
    assert not errors
    return scenarios


def caught_by(library: list[Scenario], factory: AgentFactory) -> list[str]:
    target = SimTarget(agent_factory=factory)
    return [f"{s.name}[{p}]" for s in library for p in s.profiles
            if run_scenario(s, p, target).verdict == FAIL]


# ------------------------------------------------------------------ the broken variants
class AnswersUnknownDialogs(Agent):
    """Answers 200 where 481 is due (NOTIFY for no subscription)."""

    def _respond(self, request: Request, destination: Any, status: int, now: float, *,
                 reason: str | None = None, headers: Any = None,
                 stateless: bool = False) -> None:
        if status == 481 and request.method == "NOTIFY":
            status, reason = 200, "OK"
        super()._respond(request, destination, status, now, reason=reason, headers=headers,
                         stateless=stateless)


class IgnoresMinExpires(Agent):
    """Answers a 423 by resending the same Expires."""

    def _do_send_min_expires(self, sub: Any, ctx: Any) -> None:
        sub.min_expires_retried = True
        self._send_in_dialog(sub, sub.requested_expires, ctx.now)


class ReusesCallId(Agent):
    """Every new dialog reuses the first Call-ID it ever made."""

    fixed: str | None = None

    def _new_dialog_request(self, sub: Any, target: str, now: float, *,
                            redirected: bool) -> None:
        original = self.ids
        calls = 0
        agent = self

        class Reusing:
            def hex(self, nbytes: int) -> str:
                nonlocal calls
                calls += 1
                if calls == 2:  # the second draw is the Call-ID (the first is the From tag)
                    if agent.fixed is None:
                        agent.fixed = original.hex(nbytes)
                    return agent.fixed
                return original.hex(nbytes)

        self.ids = Reusing()
        try:
            super()._new_dialog_request(sub, target, now, redirected=redirected)
        finally:
            self.ids = original


class ResurrectsOnUnsubscribeError(Agent):
    """An error answer to the unsubscribe starts the subscription again."""

    def _pass_up(self, handle: int, branch: str, response: Any, now: float) -> None:
        sub = self.subscriptions.get(handle)
        revive = (sub is not None and sub.state is State.PREDESTROYED
                  and sub.tx_branch == branch and (response is None or response.status >= 300))
        super()._pass_up(handle, branch, response, now)
        if revive and sub is not None:
            self.subscribe(sub.record, sub.subscriber, sub.destination, now=now)


class IgnoresNotifyExpires(Agent):
    """Does not reschedule the refresh from a NOTIFY's `expires`."""

    def _do_notify_seen(self, sub: Any, ctx: Any) -> None:
        ctx.granted = None
        super()._do_notify_seen(sub, ctx)


class AcceptsOldCSeq(Agent):
    """Never answers 500 to an out-of-order NOTIFY CSeq."""

    def _check_notify(self, sub: Any, notify: Request, ctx: Any) -> bool:
        dialog = sub.dialog
        saved = dialog.remote_cseq if dialog is not None else None
        if dialog is not None:
            dialog.remote_cseq = None
        try:
            return super()._check_notify(sub, notify, ctx)
        finally:
            if dialog is not None and dialog.remote_cseq is None:
                dialog.remote_cseq = saved


class NoTimerN(Agent):
    """Waits for the first NOTIFY forever (RFC 3265 behaviour, SUB-064)."""

    def timer_fired(self, key: Any, *, now: float) -> None:
        if isinstance(key, tuple) and key and key[0] == "n":
            return
        super().timer_fired(key, now=now)


def _retry_at_once(config: AgentConfig, failures: int, rng: Any,
                   retry_after: int | None = None) -> float:
    return 0.0


def _refresh_at_expiry(config: AgentConfig, granted: int) -> float:
    return float(granted)


def _backoff_without_retry_after(config: AgentConfig, failures: int, rng: Any,
                                 retry_after: int | None = None) -> float:
    return ORIGINAL_BACKOFF(config, failures, rng, None)


def _reason_without_retry_after(reaction: Any, retry_after: int | None, failures: int,
                                config: AgentConfig, rng: Any) -> float | None:
    return ORIGINAL_RESUBSCRIBE(reaction, None, failures, config, rng)


def _restart_as_asked(config: AgentConfig, requested: float, lived: float,
                      quick_restarts: int, rng: Any) -> tuple[float, int]:
    return requested, 1


ORIGINAL_BACKOFF = policy.backoff_delay
ORIGINAL_RESUBSCRIBE = policy.resubscribe_delay

# name -> (agent class, policy patches)
VARIANTS: dict[str, tuple[type[Agent], dict[str, Any]]] = {
    "refresh-at-expiry": (Agent, {"refresh_delay": _refresh_at_expiry}),
    "ignores-min-expires": (IgnoresMinExpires, {}),
    "retry-reuses-call-id": (ReusesCallId, {}),
    "200-to-unknown-dialog": (AnswersUnknownDialogs, {}),
    "resurrects-on-unsubscribe-error": (ResurrectsOnUnsubscribeError, {}),
    "ignores-retry-after": (Agent, {"backoff_delay": _backoff_without_retry_after,
                                    "resubscribe_delay": _reason_without_retry_after}),
    "ignores-notify-expires": (IgnoresNotifyExpires, {}),
    "accepts-old-cseq": (AcceptsOldCSeq, {}),
    "no-timer-n": (NoTimerN, {}),
    "retries-without-back-off": (Agent, {"backoff_delay": _retry_at_once}),
    "re-subscribe-storm": (Agent, {"restart_delay": _restart_as_asked}),
}

CAUGHT: dict[str, list[str]] = {}


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[dict[str, Any]], None]]:
    def apply(patches: dict[str, Any]) -> None:
        for name, function in patches.items():
            monkeypatch.setattr(policy, name, function)
    yield apply


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_broken_variant_is_caught(variant: str, library: list[Scenario],
                                  patched: Callable[[dict[str, Any]], None]) -> None:
    agent_class, patches = VARIANTS[variant]
    patched(patches)
    caught = caught_by(library, agent_class)
    CAUGHT[variant] = caught
    print(f"{variant}: caught by {', '.join(caught) or 'NOTHING'}")
    assert caught, f"no scenario caught the broken variant {variant!r}"


def test_reference_itself_is_not_caught(library: list[Scenario]) -> None:
    assert caught_by(library, Agent) == []


# Variants that break a choice of the reference, no RFC requirement (docs/mutation.md).
REFERENCE_CHOICE_ONLY = {
    # SER-023: after an error answer to the unsubscribe the subscription is over for good;
    # RFC 6665 has no rule against subscribing again.
    "resurrects-on-unsubscribe-error",
    # SER-051: the storm guard backs off re-subscriptions that follow short-lived ones; the
    # RFC asks for an immediate retry after `deactivated` (SUB-035) and allows one after a
    # 481 refresh, so restarting as asked breaks no RFC requirement.
    "re-subscribe-storm",
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_broken_variant_violates_a_requirement_as_another_build(
        variant: str, library: list[Scenario],
        patched: Callable[[dict[str, Any]], None]) -> None:
    """Judged as another build (reference choices are only `differs`), every variant still
    fails a run (it breaks a requirement), except those documented as breaking only a
    choice of the reference, which must still come out `differs`."""
    agent_class, patches = VARIANTS[variant]
    patched(patches)
    target = SimTarget(agent_factory=agent_class, reference=False)
    verdicts = [run_scenario(s, p, target).verdict for s in library for p in s.profiles]
    if variant in REFERENCE_CHOICE_ONLY:
        assert FAIL not in verdicts and DIFFERS in verdicts
    else:
        assert FAIL in verdicts, f"{variant!r} only differs from the reference"
