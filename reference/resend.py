"""Which failure responses the agent can fix by sending the same SUBSCRIBE again (issue 18).

Rules of this file:
* Pure functions of a response and the subscription's small state: they decide, the agent's
  classification turns the decision into the table event `R_RESEND` (resend, CSeq + 1) or a
  failure with the reason given here. Only the `rfc6665` profile asks (`policy.Rules.
  authenticate`, `drop_refused_option_tags`); `ser` treats these codes as any 4xx.
* 401/407 (RFC 3261 §22.2/§22.3, RFC 7616): answered when every challenged realm can be
  answered (`reference.digest.DigestSession.judge` holds the answer-once rules). A refused
  challenge is a failure that retrying soon cannot fix (wrong or missing password): reported
  `rejected` and retried after `max_retry_time`, like a 403, so a wrong password does not
  hammer the server (and lock the account) every few seconds.
* 420 (RFC 3261 §8.1.3.5, SUB-130): the option tags that the Unsupported header lists are
  dropped and the request resent, once per subscription; a 420 that names none of the tags
  we sent, or a second 420, is an ordinary failure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reference.digest import Challenge, DigestError, DigestSession, challenges_of
from reference.sip import Response, SipParseError


@dataclass(frozen=True, slots=True)
class ResendDecision:
    """`resend`: send the request again; else `reason` is the failure to report and
    `permanent` says whether it is one that waits `max_retry_time` (status `rejected`)."""

    resend: bool
    reason: str | None = None
    permanent: bool = False
    option_tags: tuple[str, ...] | None = None  # the tags to send from now on (420 only)
    challenges: tuple[Challenge, ...] = ()  # to answer from now on (401/407 only)


def answer_challenge(response: Response, session: DigestSession | None, subscriber: str,
                     has_credentials: Callable[[str], bool]) -> ResendDecision:
    """A 401 or 407: resend with credentials (`challenges` to adopt), or the failure that
    says why not. Changes nothing (the classifier is pure; the RESEND action adopts)."""
    try:
        challenges = challenges_of(response.headers.items())
    except DigestError as exc:
        return ResendDecision(False, f"{response.status}: {exc}", permanent=True)
    judge = (session if session is not None else DigestSession(subscriber)).judge
    reason, usable = judge(challenges, has_credentials)
    if reason is None:
        return ResendDecision(True, challenges=usable)
    return ResendDecision(False, reason, permanent=True)


def drop_option_tags(response: Response, sent: tuple[str, ...],
                     already_dropped: bool) -> ResendDecision:
    """A 420: resend without the tags its Unsupported lists, once."""
    try:
        unsupported = [t.strip() for t in response.headers.get_all("Unsupported")]
    except SipParseError:  # pragma: no cover - get_all splits text, it does not parse
        unsupported = []
    refused = {t.lower() for t in unsupported if t}
    remaining = tuple(t for t in sent if t.lower() not in refused)
    if already_dropped or remaining == sent:
        shown = ", ".join(unsupported) or "no Unsupported header"
        return ResendDecision(False, f"420 Bad Extension ({shown})")
    return ResendDecision(True, option_tags=remaining)
