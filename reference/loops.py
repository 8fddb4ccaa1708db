"""Which event loop runs the asyncio runtime: the standard library's or uvloop.

The runtime (`udp.py`, `control.py`) uses only the asyncio API, so either loop runs it
unchanged; the choice is made here, by whoever starts the loop (the CLI, a benchmark, a
test), never inside the runtime. uvloop (libuv behind the asyncio API) costs a fraction of
the standard loop per datagram (issue 19: ~7 us against ~38 us on the lab machine), so it is
the default wherever it is installed; it is a dependency on the platforms it supports
(CPython, not Windows), and the standard loop is the fallback everywhere else.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

ASYNCIO = "asyncio"
UVLOOP = "uvloop"
LOOPS = (ASYNCIO, UVLOOP)

T = TypeVar("T")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def available(name: str) -> bool:
    """Whether the loop `name` can run here (uvloop: whether it imports)."""
    try:
        loop_factory(name)
    except LoopUnavailable:
        return False
    return True


def default_loop() -> str:
    """uvloop where it imports, else the standard loop."""
    return UVLOOP if available(UVLOOP) else ASYNCIO


def loop_factory(name: str) -> LoopFactory:
    """A function making a new loop of kind `name` (for `asyncio.Runner(loop_factory=...)`).
    Raises LoopUnavailable for an unknown name or a uvloop that does not import."""
    if name == ASYNCIO:
        return asyncio.new_event_loop
    if name == UVLOOP:
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError as exc:
            raise LoopUnavailable(
                f"--loop uvloop: uvloop is not installed here ({exc}); "
                "install it (pip install uvloop) or use --loop asyncio") from None
        factory: LoopFactory = uvloop.new_event_loop
        return factory
    raise LoopUnavailable(f"unknown event loop {name!r} (choose from {', '.join(LOOPS)})")


def run(main: Coroutine[Any, Any, T], loop: str) -> T:
    """Run `main` to completion on a new loop of kind `loop` (like `asyncio.run`)."""
    try:
        factory = loop_factory(loop)
    except LoopUnavailable:
        main.close()  # never awaited: say so quietly rather than warn
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """Which kind of loop this is, from the object itself (for start-up lines and tests)."""
    return UVLOOP if type(loop).__module__.split(".")[0] == UVLOOP else ASYNCIO


def describe(loop: asyncio.AbstractEventLoop) -> str:
    """`uvloop 0.21.0` or `asyncio`: the loop that actually runs, with uvloop's version."""
    if loop_name(loop) == UVLOOP:
        version = getattr(importlib.import_module("uvloop"), "__version__", "")
        return f"{UVLOOP} {version}".strip()
    return ASYNCIO


class LoopUnavailable(Exception):
    """The event loop asked for cannot run here; the message is one line for a user."""
