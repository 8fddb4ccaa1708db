"""Identifier sources: where the random bits of tags, Call-IDs and Via branches come from.

Rules of this module:

* The core asks an `IdSource` for `hex(nbytes)` and never draws identifiers from anything
  else; the source is injected like the clock (docs/architecture.md).
* On a real network identifiers must be unguessable (RFC 3261 §19.3: tags "cryptographically
  random", §8.1.1.4 Call-IDs, §8.1.1.7 branches): `OsRandomIds` reads the OS CSPRNG. An
  attacker who knows the agent's seed, or has read any number of its earlier identifiers,
  learns nothing about the next one.
* Simulation and the conformance `sim` target replay byte-identically from a seed:
  `SeededIds` is a deterministic stream derived from the seed with SHA-256 and a label, so it
  is independent of the policy generator (jitter, delays) seeded with the same number.
  It is predictable by design and must never face a real network.
* The sizes below are the only ones the core uses (`docs/limits.md`).
"""

from __future__ import annotations

import hashlib
import random
import secrets
from typing import Protocol

CALL_ID_BYTES = 16   # 128 bits
TAG_BYTES = 8        # 64 bits
BRANCH_BYTES = 16    # 128 bits after the z9hG4bK magic cookie
BRANCH_COOKIE = "z9hG4bK"


class IdSource(Protocol):
    """Random bits for identifiers, as lower-case hex (two digits per byte)."""

    def hex(self, nbytes: int) -> str: ...


class OsRandomIds:
    """Identifiers from the operating system's CSPRNG (`secrets`)."""

    def hex(self, nbytes: int) -> str:
        return secrets.token_hex(nbytes)


class SeededIds:
    """A deterministic identifier stream for simulation and tests (predictable by design)."""

    LABEL = "identifiers"

    def __init__(self, seed: int) -> None:
        text = f"{seed}\x1f{self.LABEL}".encode()
        self._rng = random.Random(int.from_bytes(hashlib.sha256(text).digest()[:8], "big"))

    def hex(self, nbytes: int) -> str:
        return f"{self._rng.getrandbits(nbytes * 8):0{nbytes * 2}x}"
