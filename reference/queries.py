"""What the agent reports about itself: the per-subscription dump and the grouped counters.

Rules of this file:
* Read-only views of the core for people and tools (the control protocol's `dump` and
  `stats`, the CLI); nothing here changes state, reads time or counts anything.
* The grouping of the dotted counter names (`rx.request.`, `tx.response.`, ...) lives here,
  next to the one place that reads them by name.
"""

from __future__ import annotations

from typing import Any

from reference.core import Core


def dump(core: Core) -> list[dict[str, Any]]:
    """Per subscription: what SER's `presence_b2b.trace` RPC should have printed."""
    return [{
        "handle": handle,
        "record": sub.record,
        "subscriber": sub.subscriber,
        "state": sub.state.name.lower(),
        "state_number": sub.state.value,
        "call_id": sub.dialog.call_id if sub.dialog else None,
        "timer": sub.timer_kind,
        "timer_at": sub.timer_at,
        "expires_at": sub.expires_at,
        "failures": sub.failures,
        "unsubscribed": sub.unsubscribed,
        "fetch": sub.fetch,
        "members": [m.handle for m in sub.members] if sub.members is not None else None,
    } for handle, sub in sorted(core.subscriptions.items())]


def stats(core: Core) -> dict[str, Any]:
    """The counters grouped by method and status, the headline figures, and the raw ones."""
    counters = dict(core.counters)
    tx_responses = _counter_group(counters, "tx.response.")
    return {
        "subscriptions": len(core.subscriptions),
        "rx_requests_by_method": _counter_group(counters, "rx.request."),
        "rx_responses_by_status": _counter_group(counters, "rx.response."),
        "tx_responses_by_status": tx_responses,
        "tx_subscribe": counters.get("tx.SUBSCRIBE", 0),
        "parse_errors": counters.get("rx.parse_errors", 0),
        "sent_481": tx_responses.get("481", 0),
        "live_timers": len(core.timers),
        "counters": counters,
    }


def _counter_group(counters: dict[str, int], prefix: str) -> dict[str, int]:
    return {name[len(prefix):]: value for name, value in sorted(counters.items())
            if name.startswith(prefix)}
