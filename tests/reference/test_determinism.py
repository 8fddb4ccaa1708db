"""Same seed + same inputs at the same times -> byte-identical effects, in a fresh interpreter
whatever the hash seed; another seed -> other tags/Call-IDs/branches/jitter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import sys
from tests.reference.harness import Harness

seed = int(sys.argv[1])
out = []
for profile in ("ser", "rfc6665"):
    h = Harness.make(profile, seed=seed, max_subscribe_delay=5)
    for _ in range(3):
        h.subscribe()
    h.advance(6.0)
    subs = h.subscribes()
    h.respond(subs[0], expires=60)
    h.notify(subs[0], state="active;expires=60")
    h.respond(subs[1], status=503, headers=[("Retry-After", "7")])
    h.respond(subs[2], status=302, headers=[("Contact", "<sip:b@r.lab.test>")])
    h.advance(400.0)
    h.notify(subs[0], state="terminated;reason=probation")
    h.unsubscribe(2)
    h.advance(900.0)
    h.close()
    h.advance(1000.0)
    out.append(repr(h.log))
sys.stdout.write("\n".join(out))
"""


def _run(seed: int, hash_seed: str) -> bytes:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(seed)], cwd=ROOT, env=env,
                            capture_output=True, check=True, timeout=60)
    return result.stdout


def test_effects_identical_across_interpreters_and_hash_seeds() -> None:
    first = _run(42, "1")
    second = _run(42, "12345")
    assert first and len(first) > 10_000
    assert first == second


def test_another_seed_changes_the_effects() -> None:
    assert _run(42, "1") != _run(43, "1")
