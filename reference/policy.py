"""Behaviour profiles as pure functions and tables: timing, response classes, reasons.

Rules of this file:
* Everything here is a function of its arguments; the random generator is passed in.
* Decisions are separate from draws: the classifier (`classify.py`) decides a table event
  with the pure predicates (`resubscribe_when`, `restart_guarded`) and never draws; the
  action dispatcher (`actions.py`) draws the delays (`resubscribe_delay`, `restart_delay`,
  `backoff_delay`) once per input. A property test pins each predicate to its draw.
* The state machine (`subscription.py`) knows nothing of this module: its rows are
  unconditional. `Timing` bundles the injectable arithmetic, `Rules` the named profile
  differences, `Profile` what the classifier and the actions read of a profile.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

from reference.config import AgentConfig

# ---------------------------------------------------------------- response classes

# RFC 6665 §4.1.2.2: a refresh answered with one of these ends the subscription (481 is
# handled on its own: the subscription is gone, so a new one starts at once).
REFRESH_TERMINATING = frozenset({404, 405, 410, 416, 480, 482, 483, 484, 485, 489, 501, 604})

# Failures after which retrying soon is pointless: the status becomes `rejected` and the
# next attempt waits `max_retry_time` (profile decision, rfc6665_profile.md).
PERMANENT = frozenset({403, 404, 405, 410, 416, 489, 501, 603, 604, 606})

# Status codes this agent understands; any other code is treated as the x00 of its class
# (RFC 3261 §8.1.3.2, SUB-126).
KNOWN_CODES = frozenset({
    100, 180, 181, 182, 183, 199, 200, 202, 204,
    300, 301, 302, 305, 380,
    400, 401, 402, 403, 404, 405, 406, 407, 408, 410, 412, 413, 414, 415, 416, 417, 420, 421,
    422, 423, 428, 429, 430, 433, 436, 437, 438, 439, 440, 469, 470, 480, 481, 482, 483, 484,
    485, 486, 487, 488, 489, 491, 493, 494,
    500, 501, 502, 503, 504, 505, 513, 555, 580,
    600, 603, 604, 606, 607, 608,
})


def effective_code(status: int) -> int:
    """Map an unknown status code onto the x00 code of its class (SUB-126)."""
    return status if status in KNOWN_CODES else (status // 100) * 100


# ---------------------------------------------------------------- timing


def refresh_delay(config: AgentConfig, granted: int) -> float:
    """Seconds from the 2xx (or a NOTIFY `expires`) to the refresh SUBSCRIBE.

    `ser`: R(E) = max(E - resubscribe_delta, min_resubscribe_time), even when that is at or
    after expiry (defect B3, reproduced). `rfc6665`: the same, but never at or after expiry:
    if R >= E the refresh goes at E/2. (No floor: a floor of 1 s put the refresh of a 1 s
    grant at its expiry. A zero grant gives 0: the tick finds the grant run out, which is a
    failure with back-off, so it cannot spin.)
    """
    delay = float(max(granted - config.resubscribe_delta, config.min_resubscribe_time))
    if config.is_ser:
        return delay
    if delay >= granted:
        delay = max(granted, 0) / 2
    return delay


def backoff_delay(config: AgentConfig, failures: int, rng: random.Random,
                  retry_after: int | None = None) -> float:
    """Delay before the next attempt after `failures` consecutive failures (>= 1).

    `ser`: always `on_error_retry_time`, no jitter, Retry-After ignored (B5).
    `rfc6665`: b = min(on_error_retry_time * 2**(n-1), max_retry_time), drawn uniformly
    from [0.8 b, b]; never below a Retry-After.
    """
    if config.is_ser:
        return float(config.on_error_retry_time)
    exponent = min(max(failures, 1) - 1, 62)  # cap: avoids huge ints; max_retry_time bounds it
    ceiling = float(min(config.on_error_retry_time * 2 ** exponent, config.max_retry_time))
    delay = rng.uniform(0.8 * ceiling, ceiling)
    if retry_after is not None:
        delay = max(delay, float(retry_after))
    return delay


# ---------------------------------------------------------------- terminated reasons


@dataclass(frozen=True)
class ReasonReaction:
    """What `rfc6665` does after a NOTIFY `terminated;reason=...` (profile table)."""

    reason: str
    # "now": new initial SUBSCRIBE at once; "retry_after_or_backoff"; "retry_after_or_now";
    # "never": no new SUBSCRIBE (until the internal subscriber subscribes again).
    resubscribe: str
    status: str = "terminated"


REASON_TABLE: dict[str, ReasonReaction] = {
    "deactivated": ReasonReaction("deactivated", "now"),
    "timeout": ReasonReaction("timeout", "now"),
    "probation": ReasonReaction("probation", "retry_after_or_backoff"),
    "giveup": ReasonReaction("giveup", "retry_after_or_now"),
    "rejected": ReasonReaction("rejected", "never", status="rejected"),
    "noresource": ReasonReaction("noresource", "never"),
    "invariant": ReasonReaction("invariant", "never"),
}
UNKNOWN_REASON = ReasonReaction("", "retry_after_or_backoff")


def reason_reaction(reason: str | None) -> ReasonReaction:
    return REASON_TABLE.get((reason or "").lower(), UNKNOWN_REASON)


RESTART_AT_ONCE = ReasonReaction("481", "now")
"""The restart after a 481 to a refresh: the subscription is gone, a new one starts at once
(unless the storm guard holds it back)."""

NEVER, NOW, LATER = "never", "now", "later"


def resubscribe_when(reaction: ReasonReaction, retry_after: int | None) -> str:
    """When `resubscribe_delay` will ask for the next initial SUBSCRIBE, without drawing:
    NEVER (it returns None), NOW (0) or LATER (> 0; a back-off is never 0, every timing
    parameter being > 0)."""
    kind = reaction.resubscribe
    if kind in (NEVER, NOW):
        return kind
    if retry_after is not None:
        return LATER if retry_after > 0 else NOW
    return NOW if kind == "retry_after_or_now" else LATER


def resubscribe_delay(reaction: ReasonReaction, retry_after: int | None, failures: int,
                      config: AgentConfig, rng: random.Random) -> float | None:
    """Seconds until the next initial SUBSCRIBE after a terminated NOTIFY; None = never."""
    kind = reaction.resubscribe
    if kind == "never":
        return None
    if kind == "now":
        return 0.0
    if retry_after is not None:
        return float(retry_after)
    if kind == "retry_after_or_now":
        return 0.0
    return backoff_delay(config, failures, rng)


# ---------------------------------------------------------------- re-subscribe storms


def restart_delay(config: AgentConfig, requested: float, lived: float, quick_restarts: int,
                  rng: random.Random) -> tuple[float, int]:
    """`rfc6665`: the delay before the new subscription that replaces one the notifier ended
    (NOTIFY `terminated` with a reason that allows a retry, or 481 to a refresh), and the new
    count of quick restarts.

    `requested` is what the reason asks for (0 = at once), `lived` how long the ended
    subscription existed (from its initial SUBSCRIBE). One that lived at least
    `stable_subscription_time` clears the count. The first quick restart gets what was asked;
    the n-th after it waits at least the failure back-off `backoff_delay(n)`, so a notifier
    that ends every new subscription at once gets one immediate retry, then a SUBSCRIBE per
    0.8·on_error_retry_time, doubling up to max_retry_time (RFC 6665 §4.1.3 asks for an
    immediate retry after `deactivated`, not for an endless loop: docs/behaviour.md).
    """
    if not restart_guarded(config, lived, quick_restarts):
        return requested, 1
    return max(requested, backoff_delay(config, quick_restarts, rng)), quick_restarts + 1


def restart_guarded(config: AgentConfig, lived: float, quick_restarts: int) -> bool:
    """Whether the storm guard holds back this restart (`restart_delay` then waits at least
    a back-off, which is > 0): the ended subscription lived less than
    `stable_subscription_time` and it is not the first quick restart."""
    return lived < config.stable_subscription_time and quick_restarts > 0


# ---------------------------------------------------------------- QSA status


def ser_status(subscription_state_raw: str | None) -> str:
    """SER's rule (spec §5.3): case-sensitive substring search, terminated > active > pending."""
    if subscription_state_raw is None:
        return "pending"
    for status in ("terminated", "active", "pending"):
        if status in subscription_state_raw:
            return status
    return "pending"


def ser_is_terminating(subscription_state_raw: str | None) -> bool:
    """SER's test for ending an unsubscribe (spec §5.4): first token exactly `terminated`."""
    if subscription_state_raw is None:
        return False
    return subscription_state_raw.split(";", 1)[0].strip() == "terminated"


def rfc_status(state_token: str) -> str:
    """RFC 6665 substate value (tokens compare case-insensitively); unknown -> pending."""
    token = state_token.lower()
    return token if token in ("active", "pending", "terminated") else "pending"


# ---------------------------------------------------------------- the agent's collaborator


@dataclass(frozen=True)
class Timing:
    """The delay arithmetic the agent asks for, as one injectable collaborator:
    ``Agent(config, timing=Timing(backoff_delay=...))`` swaps one rule (the conformance
    suite's self-test builds broken subscribers this way). The defaults are the functions
    above; the agent calls nothing else of this module through it."""

    refresh_delay: Callable[[AgentConfig, int], float] = refresh_delay
    backoff_delay: Callable[[AgentConfig, int, random.Random, int | None], float] = \
        backoff_delay
    resubscribe_delay: Callable[
        [ReasonReaction, int | None, int, AgentConfig, random.Random], float | None] = \
        resubscribe_delay
    restart_delay: Callable[
        [AgentConfig, float, float, int, random.Random], tuple[float, int]] = restart_delay
    # The draw-free decisions the classifier takes with the arithmetic above (a variant
    # that swaps an arithmetic rule swaps its decision with it).
    resubscribe_when: Callable[[ReasonReaction, int | None], str] = resubscribe_when
    restart_guarded: Callable[[AgentConfig, float, int], bool] = restart_guarded


DEFAULT_TIMING = Timing()


# ---------------------------------------------------------------- profile rules


@dataclass(frozen=True)
class Rules:
    """Every difference between the profiles that is neither a row of the transition tables
    nor an arithmetic rule above, by name. The agent reads these; it never asks which
    profile it runs. SER letters refer to presence_b2b.md, SUB numbers to the requirements.
    """

    bounded_unsubscribe: bool  # an unsubscribe ends within failover + wait_for_term_notify
    close_forgets: bool  # close() forgets subscriptions without a message (SER B13)
    expiry_event: bool  # a tick past the grant is EXPIRED, not a refresh point
    fine_failures: bool  # failures split into 423/481/refresh-terminating/...; else R4XX
    missing_expires_is_zero: bool  # a 2xx without a valid Expires grants 0 (SER A3)
    long_expires_invalid: bool  # an Expires of more than 10 characters is invalid (SER §2.1)
    first_contact_redirect: bool  # a 3xx follows its first Contact, q ignored (SER B6)
    notify_checks: bool  # Max-Forwards required, checks 3-6, RFC 6665 Subscription-State
    keep_preloaded_route: bool  # the 2xx keeps a preloaded route set (SER)
    notify_creates_dialog: bool  # a NOTIFY before the 2xx creates the dialog (SUB-010)
    notify_route_set: bool  # the first NOTIFY sets the route set (SUB-049), CSeq is checked
    keep_last_pidf: bool  # an empty NOTIFY keeps the last document (SUB-077)
    drop_bad_pidf: bool  # a NOTIFY with a bad PIDF is answered 200 and dropped (SER B11)
    permanent_waits_max_retry: bool  # a permanent failure retries after max_retry_time
    verbatim_uris: bool  # QSA strings as From/To as given, To = Contact after 3xx (SER B6)
    accept_header: bool  # SUBSCRIBE carries Accept: application/pidf+xml
    timer_n: bool  # Timer N after each SUBSCRIBE that asks for a subscription
    # Issue 18: what SER's presence_b2b never did. `ser` stays exact (it sent no
    # credentials, no Require, no Suppress-If-Match, no fetch, took pres: URIs verbatim and
    # kept one dialog per internal subscription); docs/ser-requirements.md, "Profile rules".
    authenticate: bool  # 401/407 answered with digest credentials (AUTH-001..)
    drop_refused_option_tags: bool  # 420: resend once without the Unsupported tags (SUB-130)
    conditional_notify: bool  # RFC 5839: Suppress-If-Match on refreshes, 204 stops Timer N
    fetch: bool  # QSA fetch: one SUBSCRIBE with Expires 0, one status message (SUB-052)
    resolve_pres_uri: bool  # a pres: record becomes a sip: Request-URI (SUB-081)
    share_subscriptions: bool  # share_subscriptions=1 is allowed (else a ConfigError)


_SER_RULES = Rules(
    bounded_unsubscribe=False, close_forgets=True, expiry_event=False, fine_failures=False,
    missing_expires_is_zero=True, long_expires_invalid=True, first_contact_redirect=True,
    notify_checks=False,
    keep_preloaded_route=True, notify_creates_dialog=False, notify_route_set=False,
    keep_last_pidf=False, drop_bad_pidf=True, permanent_waits_max_retry=False,
    verbatim_uris=True, accept_header=False, timer_n=False, authenticate=False,
    drop_refused_option_tags=False, conditional_notify=False, fetch=False,
    resolve_pres_uri=False, share_subscriptions=False)
RULES: dict[str, Rules] = {
    "ser": _SER_RULES,
    # asdict, not vars(): a compiled (mypyc) Rules has no instance __dict__.
    "rfc6665": Rules(**{name: not value for name, value in asdict(_SER_RULES).items()}),
}


# ---------------------------------------------------------------- what the core reads


class CredentialLookup(Protocol):
    """Whether credentials exist for a subscriber and realm (reference.credentials)."""

    def lookup(self, subscriber: str, realm: str) -> object | None: ...


@dataclass(frozen=True)
class Profile:
    """A running profile as the classifier and the actions see it: the configuration, its
    named rules, the (injectable) delay arithmetic, and the credential store the classifier
    asks whether a challenge can be answered (issue 18; its values never reach policy)."""

    config: AgentConfig
    rules: Rules
    timing: Timing
    credentials: CredentialLookup | None = None
