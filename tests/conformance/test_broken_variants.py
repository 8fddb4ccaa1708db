"""The library must catch broken subscribers: each variant below is the reference agent with
one deliberate defect, and at least one scenario must fail against it (sim target).

Every variant is built from the agent's injected collaborators, none subclasses `Agent`: a
different action in the action table, a different row in the transition table, a different
rule in the delay arithmetic (`policy.Timing`), a different classifier
(`reference.classify`) or a different identifier source (`reference.ids`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conformance.runner import DIFFERS, FAIL, run_scenario
from conformance.scenario import Scenario, load
from conformance.targets.sim import AgentFactory, SimTarget
from reference import Agent, AgentConfig, policy
from reference.actions import ACTIONS
from reference.classify import CLASSIFIERS, Refusal, check_cseq_order, unknown_dialog
from reference.ids import CALL_ID_BYTES, TAG_BYTES, IdSource, SeededIds
from reference.policy import Profile
from reference.sip import Request
from reference.subscription import TABLES, Action, Event, Row, State, Table

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
def _answer_unknown_dialog_200(profile: Profile, notify: Request) -> Refusal:
    return unknown_dialog(profile, notify)._replace(status=200, reason="OK")


def answers_unknown_dialogs(config: AgentConfig, *, ids: IdSource | None = None) -> Agent:
    """Answers 200 where 481 is due (NOTIFY for no subscription): its classifier's answer to
    an unknown dialog."""
    classifier = CLASSIFIERS[config.profile]
    return Agent(config, ids=ids, classifier=dataclasses.replace(
        classifier, unknown_dialog=_answer_unknown_dialog_200))


def _resend_same_expires(core: Any, sub: Any, facts: Any, delay: float | None) -> None:
    """Answers a 423 by resending the same Expires."""
    sub.min_expires_retried = True
    core.send_in_dialog(sub, sub.requested_expires, facts.now)


class _ReusedCallIds:
    """Identifiers from the seed, except that every Call-ID is the first one it made: a
    Call-ID is the 16-byte draw that follows a From tag's 8-byte draw (a branch follows
    the Call-ID or nothing)."""

    def __init__(self, seed: int) -> None:
        self.ids = SeededIds(seed)
        self.previous = 0
        self.fixed: str | None = None

    def hex(self, nbytes: int) -> str:
        value = self.ids.hex(nbytes)
        if nbytes == CALL_ID_BYTES and self.previous == TAG_BYTES:
            if self.fixed is None:
                self.fixed = value
            value = self.fixed
        self.previous = nbytes
        return value


def reuses_call_id(config: AgentConfig, *, ids: IdSource | None = None) -> Agent:
    """Every new dialog reuses the first Call-ID it ever made."""
    return Agent(config, ids=_ReusedCallIds(config.seed))


def _resurrects_on_unsubscribe_error(table: Table) -> Table:
    """An error answer (or a timeout) to the unsubscribe starts the subscription again."""
    restart = Row((Action.STOP, Action.DROP_DIALOG, Action.SEND_INITIAL), State.UNCONFIRMED)
    return {key: restart if key[0] is State.PREDESTROYED and row.next is State.DESTROYED
            and Action.FREE in row.actions and key[1] not in _NOTIFY_EVENTS else row
            for key, row in table.items()}


_NOTIFY_EVENTS = frozenset({Event.NOTIFY, Event.NOTIFY_TERMINATED, Event.NOTIFY_TERMINATED_NOW,
                            Event.NOTIFY_TERMINATED_LATER, Event.NOTIFY_TERMINATED_FINAL})


def _notify_seen_without_expires(core: Any, sub: Any, facts: Any,
                                 delay: float | None) -> None:
    """Does not reschedule the refresh from a NOTIFY's `expires`."""
    ACTIONS[Action.NOTIFY_SEEN](core, sub, facts._replace(granted=None), delay)


def accepts_old_cseq(config: AgentConfig, *, ids: IdSource | None = None) -> Agent:
    """Never answers 500 to an out-of-order NOTIFY CSeq: its classifier skips that check."""
    classifier = CLASSIFIERS[config.profile]
    return Agent(config, ids=ids, classifier=dataclasses.replace(classifier, notify_checks=tuple(
        check for check in classifier.notify_checks if check is not check_cseq_order)))


def _without_timer_n(table: Table) -> Table:
    """Waits for the first NOTIFY forever (RFC 3265 behaviour, SUB-064): Timer N does
    nothing in any state."""
    return {key: Row((), key[0]) if key[1] is Event.TIMER_N else row
            for key, row in table.items()}


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


def _never_guarded(config: AgentConfig, lived: float, quick_restarts: int) -> bool:
    return False


def _when_without_retry_after(reaction: Any, retry_after: int | None) -> str:
    return policy.resubscribe_when(reaction, None)


ORIGINAL_BACKOFF = policy.backoff_delay
ORIGINAL_RESUBSCRIBE = policy.resubscribe_delay

def _with(*, actions: dict[Action, Any] | None = None,
          table: Callable[[Table], Table] | None = None, **timing: Any) -> AgentFactory:
    """An agent factory with some collaborators replaced."""
    def factory(config: AgentConfig, *, ids: IdSource | None = None) -> Agent:
        return Agent(config, ids=ids, actions={**ACTIONS, **(actions or {})},
                     table=table(TABLES[config.profile]) if table else None,
                     timing=dataclasses.replace(policy.DEFAULT_TIMING, **timing))
    return factory


VARIANTS: dict[str, AgentFactory] = {
    "refresh-at-expiry": _with(refresh_delay=_refresh_at_expiry),
    "ignores-min-expires": _with(actions={Action.SEND_MIN_EXPIRES: _resend_same_expires}),
    "retry-reuses-call-id": reuses_call_id,
    "200-to-unknown-dialog": answers_unknown_dialogs,
    "resurrects-on-unsubscribe-error": _with(table=_resurrects_on_unsubscribe_error),
    "ignores-retry-after": _with(backoff_delay=_backoff_without_retry_after,
                                 resubscribe_delay=_reason_without_retry_after,
                                 resubscribe_when=_when_without_retry_after),
    "ignores-notify-expires": _with(
        actions={Action.NOTIFY_SEEN: _notify_seen_without_expires}),
    "accepts-old-cseq": accepts_old_cseq,
    "no-timer-n": _with(table=_without_timer_n),
    "retries-without-back-off": _with(backoff_delay=_retry_at_once),
    "re-subscribe-storm": _with(restart_delay=_restart_as_asked,
                                restart_guarded=_never_guarded),
}

CAUGHT: dict[str, list[str]] = {}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_broken_variant_is_caught(variant: str, library: list[Scenario]) -> None:
    caught = caught_by(library, VARIANTS[variant])
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
        variant: str, library: list[Scenario]) -> None:
    """Judged as another build (reference choices are only `differs`), every variant still
    fails a run (it breaks a requirement), except those documented as breaking only a
    choice of the reference, which must still come out `differs`."""
    target = SimTarget(agent_factory=VARIANTS[variant], reference=False)
    verdicts = [run_scenario(s, p, target).verdict for s in library for p in s.profiles]
    if variant in REFERENCE_CHOICE_ONLY:
        assert FAIL not in verdicts and DIFFERS in verdicts
    else:
        assert FAIL in verdicts, f"{variant!r} only differs from the reference"
