"""The docs' welcome example (docs/examples/reg_presence.py, docs/lab.md "Example: subscribe to a
user's presence when the user registers") run as printed against the issue-17 Kamailio: the
user registers (SIPp) → the example subscribes to its presence; the user PUBLISHes open →
reported; the user unregisters → the presence subscription is ended."""

from __future__ import annotations

import asyncio
import sys

import pytest

from tests.interop.conftest import REG_PORT, REPO_ROOT, RegLab, find_lab_dir
from tests.reference.test_udp import run

pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("loop_name")]

EXAMPLE = REPO_ROOT / "docs" / "examples" / "reg_presence.py"


class Lines:
    """The example's stdout, line by line, with waits that fail with what was seen."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.seen: list[str] = []

    async def until(self, prefix: str, timeout: float = 15.0) -> str:
        assert self.process.stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            try:
                raw = await asyncio.wait_for(self.process.stdout.readline(), max(left, 0.01))
            except TimeoutError:
                raw = b""
            if not raw:
                pytest.fail(f"no line starting {prefix!r} within {timeout}s; saw {self.seen}")
            line = raw.decode().rstrip("\n")
            self.seen.append(line)
            if line.startswith(prefix):
                return line


def test_the_example_follows_registration_with_a_presence_subscription(
        reg_lab: RegLab, loop_name: str) -> None:
    lab_dir = find_lab_dir()
    if lab_dir is None:
        pytest.skip("lab scripts not found (publish.xml of ../shared/lab)")
    user = f"carol-{loop_name}"
    aor = f"sip:{user}@lab.test"

    async def scenario() -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(EXAMPLE), aor, "--route", f"<sip:127.0.0.1:{REG_PORT};lr>",
            "--duration", "12", cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        lines = Lines(process)
        try:
            await lines.until("agent on udp 127.0.0.1:")
            assert await lines.until("reg: ") == "reg: active"  # nobody registered yet
            await reg_lab.register(user, 120, port=REG_PORT + 101)
            registered = await lines.until(f"reg: {aor} active: ")
            assert f"sip:{user}@127.0.0.1:{REG_PORT + 101} active/" in registered
            await lines.until("presence: subscribed")
            await lines.until("presence: active")
            await reg_lab.publish(lab_dir, user, "open")
            await lines.until("presence: active open")
            await reg_lab.register(user, 0, port=REG_PORT + 101)
            ended = await lines.until(f"reg: {aor} ")
            assert "terminated/unregistered" in ended
            await lines.until("presence: unsubscribed")
            assert process.stdout is not None
            rest, _ = await asyncio.wait_for(process.communicate(), 30)  # --duration, then exit
            assert process.returncode == 0, rest.decode(errors="replace")
            assert b"Traceback" not in rest
        finally:
            if process.returncode is None:
                process.terminate()
            await process.wait()
    run(scenario(), timeout=60)
