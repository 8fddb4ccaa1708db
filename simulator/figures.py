"""The raw figures of one simulation, as a farm shard sends them back to be merged.

Kept out of ``simulator.metrics`` on purpose: the compiled build (setup.py) compiles that
module with mypyc, and mypyc's native classes do not pickle; this one must (Dask).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass


@dataclass
class MetricsState:
    """The raw figures a summary and a time series derive from: what a farm shard sends
    back (small: counts per 10-second bin and label, one count per simulated second, minute
    integrals, and the propagation-delay samples, 8 bytes each)."""

    traffic: dict[tuple[int, bool, bytes, str], int]
    per_second: list[int]
    bins: dict[int, tuple[int, float, float]]  # minute -> (deliveries, live, subscriptions)
    deliveries: dict[str, int]
    delays: array[float]
    subscribe_retransmissions: int
    initial_subscribes: int
    subscribe_calls: int
    unsubscribe_calls: int
    live_area: float
    subs_area: float
