"""Deterministic random streams derived from one run seed.

Every consumer of randomness (a link's latency, its loss draws, a notifier's rejection rule,
a workload's change process...) gets its own ``random.Random`` so that adding draws in one
place never shifts the draws of another. Seeds are derived with SHA-256 over the labels, not
with ``hash()``, whose value for strings changes with PYTHONHASHSEED.
"""

from __future__ import annotations

import hashlib
import random


def derive_seed(seed: int, *labels: object) -> int:
    """A 64-bit seed that depends only on ``seed`` and the textual form of ``labels``."""
    text = "\x1f".join([str(seed), *(str(label) for label in labels)])
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def stream(seed: int, *labels: object) -> random.Random:
    """An independent ``random.Random`` for one purpose."""
    return random.Random(derive_seed(seed, *labels))
