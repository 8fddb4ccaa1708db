"""Behaviour profiles as pure functions and tables: timing, response classes, reasons.

Everything here is a function of its arguments; the random generator is passed in. The
per-subscription state machine (`subscription.py`) asks these functions *what* to do; the
agent (`agent.py`) does it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

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
    if lived >= config.stable_subscription_time:
        quick_restarts = 0
    if quick_restarts == 0:
        return requested, 1
    return max(requested, backoff_delay(config, quick_restarts, rng)), quick_restarts + 1


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
