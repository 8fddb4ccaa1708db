"""Fixtures for the interop tests: the lab Kamailio, SIPp runs and an in-process agent.

Every interop test is marked `interop`. Without the Debian packages the tests skip with an
install hint; with B2B_REQUIRE_INTEROP=1 (CI) a skip fails (tests/conftest.py). Processes are
started only through the lab scripts or as our own children and stopped by their PID in
finalizers; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reference import AgentConfig, StatusMessage
from reference.udp import UdpRuntime

REPO_ROOT = Path(__file__).resolve().parents[2]
SIPP_DIR = Path(__file__).resolve().parent / "sipp"
KAMAILIO_PORT = 5070
# The issue-17 server (tests/interop/kamailio/kamailio-reg.cfg): udp and tcp, its own port.
REG_PORT = 5075
REG_CONFIG = Path(__file__).resolve().parent / "kamailio" / "kamailio-reg.cfg"
# The resource-list trial (kamailio-rls.cfg): udp and tcp, beside the reg server.
RLS_PORT = 5076
RLS_CONFIG = Path(__file__).resolve().parent / "kamailio" / "kamailio-rls.cfg"
RLS_SERVICES = 1 << 3  # Kamailio's xcap doc_type of an rls-services document
KAMAILIO_BIN = "/usr/sbin/kamailio"
KAMAILIO_SQL = Path("/usr/share/kamailio/db_sqlite")
KAMAILIO_DBTEXT = Path("/usr/share/kamailio/dbtext/kamailio")
KAMAILIO_MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
INSTALL_HINT = (
    "install the lab packages: apt-get install -y --no-install-recommends kamailio "
    "kamailio-presence-modules kamailio-sqlite-modules sip-tester sqlite3 "
    "(see shared/lab/README.md; CI does this in .ci/run)")
# Kamailio rejects SUBSCRIBE/PUBLISH expiries below this (lab cfg define, passed with -A).
MIN_EXPIRES = 5


def find_lab_dir() -> Path | None:
    """shared/lab beside the repository (how CI lays it out), else $B2B_LAB_DIR."""
    beside = REPO_ROOT.parent / "shared" / "lab"
    if (beside / "kam-presence-start.sh").is_file():
        return beside
    env = os.environ.get("B2B_LAB_DIR")
    if env and (Path(env) / "kam-presence-start.sh").is_file():
        return Path(env)
    return None


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def udp_port_bound(port: int) -> bool:
    """Whether some process has bound this UDP port (read from /proc: probing by binding
    could steal the port from a child that is about to bind it)."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local = line.split()[1]
            if int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False


def udp_port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def require_kamailio(modules: Sequence[str], port: int) -> None:
    """Skip without Kamailio, one of `modules` or sqlite3 (every lab keeps its state in
    sqlite); fail when another interop Kamailio holds `port`."""
    if shutil.which("kamailio") is None and not Path(KAMAILIO_BIN).exists():
        pytest.skip(f"kamailio not found; {INSTALL_HINT}")
    for module in modules:
        if not (KAMAILIO_MODULES / module).exists():
            pytest.skip(f"kamailio module {module} not found; {INSTALL_HINT}")
    if shutil.which("sqlite3") is None:
        pytest.skip(f"sqlite3 not found; {INSTALL_HINT}")
    if udp_port_taken(port):
        pytest.fail(f"udp 127.0.0.1:{port} is busy: another interop Kamailio runs")


@pytest.fixture(scope="session")
def sipp_bin() -> str:
    path = shutil.which("sipp")
    if path is None:
        pytest.skip(f"SIPp not found; {INSTALL_HINT}")
    return path


@dataclass
class KamailioLab:
    lab_dir: Path
    run_dir: Path
    sipp: str

    async def publish(self, user: str, basic: str, expires: int = 3600) -> None:
        """PUBLISH a PIDF (basic open/closed) for sip:USER@lab.test with the lab's SIPp UAC."""
        await sipp_publish(self.sipp, self.lab_dir / "sipp" / "publish.xml", KAMAILIO_PORT,
                           self.run_dir, user, basic, expires)


async def sipp_publish(sipp: str, scenario: Path, port: int, run_dir: Path, user: str,
                       basic: str, expires: int = 3600) -> None:
    """One PUBLISH of a PIDF (basic open/closed) for sip:USER@lab.test to 127.0.0.1:PORT,
    sent over UDP by SIPp with `scenario` (the lab's publish.xml or tests/interop/sipp's)."""
    process = await asyncio.create_subprocess_exec(
        sipp, "-sf", str(scenario), f"127.0.0.1:{port}", "-i", "127.0.0.1",
        "-p", str(free_udp_port()), "-m", "1", "-s", user, "-key", "basic", basic,
        "-key", "expires", str(expires), "-nostdin", "-timeout", "10s", "-timeout_error",
        cwd=run_dir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out = await finish(process, 15)
    assert process.returncode == 0, f"sipp PUBLISH failed: {out[-2000:]}"


async def finish(process: asyncio.subprocess.Process, timeout: float) -> str:
    """Wait for a child to exit (kill it at the deadline); its output as text."""
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        out, _ = await process.communicate()
        pytest.fail(f"child did not finish in {timeout}s: {out.decode(errors='replace')[-2000:]}")
    return out.decode(errors="replace") if out else ""


@pytest.fixture(scope="session")
def kamailio(sipp_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KamailioLab]:
    """The lab's Kamailio presence server on udp 127.0.0.1:5070, min_expires 5 s."""
    lab_dir = find_lab_dir()
    if lab_dir is None:
        pytest.skip("lab scripts not found (expected ../shared/lab beside the repository "
                    "or $B2B_LAB_DIR)")
    require_kamailio(["presence.so"], KAMAILIO_PORT)
    run_dir = tmp_path_factory.mktemp("lab")
    env = {**os.environ, "LAB_RUN_DIR": str(run_dir)}
    started = subprocess.run(
        [str(lab_dir / "kam-presence-start.sh"), "-A", f"MIN_EXPIRES={MIN_EXPIRES}"],
        env=env, capture_output=True, text=True, timeout=60, check=False)
    try:
        if started.returncode != 0:
            pytest.fail(f"kam-presence-start.sh failed:\n{started.stdout}\n{started.stderr}")
        yield KamailioLab(lab_dir, run_dir, sipp_bin)
    finally:
        subprocess.run([str(lab_dir / "kam-presence-stop.sh")], env=env, capture_output=True,
                       timeout=30, check=False)


@dataclass
class RegLab:
    """The issue-17 Kamailio: registrar + pua_reginfo/presence_reginfo (`reg`) and
    presence_xml (`presence`), udp and tcp on 127.0.0.1:5075."""

    run_dir: Path
    sipp: str
    log: Path

    async def register(self, user: str, expires: int, port: int | None = None) -> None:
        """REGISTER sip:USER@lab.test (Contact at SIPp's address) with SIPp."""
        process = await asyncio.create_subprocess_exec(
            self.sipp, "-sf", str(SIPP_DIR / "register.xml"), f"127.0.0.1:{REG_PORT}",
            "-i", "127.0.0.1", "-p", str(port or free_udp_port()), "-m", "1", "-s", user,
            "-key", "expires", str(expires), "-nostdin", "-timeout", "10s", "-timeout_error",
            cwd=self.run_dir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out = await finish(process, 15)
        assert process.returncode == 0, f"sipp REGISTER failed: {out[-2000:]}"

    async def publish(self, lab_dir: Path, user: str, basic: str) -> None:
        """PUBLISH presence for sip:USER@lab.test with the lab's publish.xml (UDP)."""
        await sipp_publish(self.sipp, lab_dir / "sipp" / "publish.xml", REG_PORT,
                           self.run_dir, user, basic)


def start_kamailio(config: Path, run_dir: Path, port: int, sql: Sequence[str],
                   defines: Sequence[str] = (),
                   databases: Sequence[str] = ("presence.sqlite",)) -> subprocess.Popen[bytes]:
    """Check and start Kamailio with `config` as our child (fresh sqlite DBs from the Debian
    schema files `sql`); return it once it listens on udp `port`."""
    schema = "".join((KAMAILIO_SQL / name).read_text() for name in sql)
    for name in databases:
        db = run_dir / name
        subprocess.run(["sqlite3", str(db)], input=schema, text=True, check=True, timeout=30)
        subprocess.run(["sqlite3", str(db), "PRAGMA journal_mode=WAL;"], capture_output=True,
                       check=True, timeout=30)
    base = [KAMAILIO_BIN, "-f", str(config), f"--subst=!RUNDIR!{run_dir}!g",
            "-L", str(KAMAILIO_MODULES), *[arg for d in defines for arg in ("-A", d)]]
    check = subprocess.run([*base, "-c"], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        pytest.fail(f"kamailio -c {config.name} failed:\n{check.stdout}\n{check.stderr}")
    log = (run_dir / "kamailio.log").open("wb")
    process = subprocess.Popen([*base, "-DD", "-E", "-Y", str(run_dir), "-m", "64", "-M", "8"],
                               stdout=log, stderr=subprocess.STDOUT, cwd=run_dir)
    log.close()
    for _ in range(100):
        if udp_port_bound(port):
            return process
        if process.poll() is not None:
            break
        time.sleep(0.1)
    stop_process(process)
    pytest.fail(f"kamailio ({config.name}) did not listen on udp {port}:\n"
                + (run_dir / "kamailio.log").read_text(errors="replace")[-3000:])


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM our child by its PID, SIGKILL it after 5 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="session")
def reg_lab(sipp_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegLab]:
    """Kamailio with tests/interop/kamailio/kamailio-reg.cfg on udp+tcp 127.0.0.1:5075."""
    require_kamailio(["presence_reginfo.so", "pua_reginfo.so", "registrar.so"], REG_PORT)
    run_dir = tmp_path_factory.mktemp("reg-lab")
    process = start_kamailio(REG_CONFIG, run_dir, REG_PORT,
                             ["standard-create.sql", "presence-create.sql"])
    try:
        yield RegLab(run_dir, sipp_bin, run_dir / "kamailio.log")
    finally:
        stop_process(process)


@dataclass
class RlsLab:
    """Kamailio's rls (kamailio-rls.cfg) on udp+tcp 127.0.0.1:5076; lists live in the xcap
    table of rls.sqlite (integrated XCAP server), keyed by the watcher's user and domain;
    rls's own tables are db_text files in dbtext/ (docs/lab.md says why)."""

    run_dir: Path
    log: Path
    sipp: str

    async def publish(self, user: str, basic: str) -> None:
        """PUBLISH presence (PIDF basic open/closed) for sip:USER@lab.test to the rls server,
        with SIPp (tests/interop/sipp/publish.xml, UDP)."""
        await sipp_publish(self.sipp, SIPP_DIR / "publish.xml", RLS_PORT, self.run_dir,
                           user, basic)

    def add_list(self, watcher_user: str, service_uri: str, members: Sequence[str]) -> None:
        entries = "".join(f'<rl:entry uri="{uri}"/>' for uri in members)
        doc = ('<?xml version="1.0" encoding="UTF-8"?><rls-services '
               'xmlns="urn:ietf:params:xml:ns:rls-services" '
               'xmlns:rl="urn:ietf:params:xml:ns:resource-lists">'
               f'<service uri="{service_uri}"><list>{entries}</list>'
               '<packages><package>presence</package></packages></service></rls-services>')
        with sqlite3.connect(self.run_dir / "rls.sqlite") as db:
            db.execute("insert into xcap (username, domain, doc, doc_type, etag, source, "
                       "doc_uri, port) values (?, ?, ?, ?, ?, ?, ?, ?)",
                       (watcher_user, "lab.test", doc.encode(), RLS_SERVICES, "e1", 1,
                        f"/rls-services/users/{watcher_user}@lab.test/index", 0))


def dbtext_tables(directory: Path, tables: Sequence[str]) -> None:
    """A db_text database in `directory` with Debian's empty `tables` and the version rows
    that Kamailio checks for them."""
    directory.mkdir()
    header, *rows = (KAMAILIO_DBTEXT / "version").read_text().splitlines()
    kept = [row for row in rows if row.split(":")[1] in tables]
    (directory / "version").write_text("\n".join([header, *kept]) + "\n")
    for table in tables:
        shutil.copyfile(KAMAILIO_DBTEXT / table, directory / table)


@pytest.fixture(scope="session")
def rls_lab(sipp_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RlsLab]:
    """Kamailio with tests/interop/kamailio/kamailio-rls.cfg on udp+tcp 127.0.0.1:5076."""
    require_kamailio(["rls.so", "db_text.so"], RLS_PORT)
    run_dir = tmp_path_factory.mktemp("rls-lab")
    dbtext_tables(run_dir / "dbtext", ["rls_watchers", "rls_presentity"])
    process = start_kamailio(RLS_CONFIG, run_dir, RLS_PORT,
                             ["standard-create.sql", "presence-create.sql"],
                             databases=("presence.sqlite", "rls.sqlite"))
    try:
        yield RlsLab(run_dir, run_dir / "kamailio.log", sipp_bin)
    finally:
        stop_process(process)


_SEEDS = itertools.count(int.from_bytes(os.urandom(3), "big"))


@dataclass
class AgentUnderTest:
    """The reference agent on its own UDP port, collecting its status messages."""

    runtime: UdpRuntime
    statuses: list[StatusMessage] = field(default_factory=list)
    cursor: int = 0

    @classmethod
    async def start(cls, **params: Any) -> AgentUnderTest:
        # A fresh seed per agent: equal seeds give equal Call-IDs and tags, and the one
        # Kamailio of the session remembers earlier tests' dialogs.
        params.setdefault("seed", next(_SEEDS))
        runtime = await UdpRuntime.open(AgentConfig.from_mapping(params), "127.0.0.1", 0)
        agent = cls(runtime)
        runtime.add_listener("test", agent.statuses.append)
        return agent

    def subscribe(self, record: str, subscriber: str = "sip:bob@lab.test",
                  package: str = "presence") -> int:
        return self.runtime.subscribe(record, subscriber, "test", package)

    def counter(self, name: str) -> int:
        return self.runtime.agent.counters.get(name, 0)

    async def next_status(self, predicate: Callable[[StatusMessage], bool] = lambda m: True,
                          timeout: float = 5.0, what: str = "a status") -> StatusMessage:
        """The next status message (after earlier matches) that satisfies `predicate`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            while self.cursor < len(self.statuses):
                message = self.statuses[self.cursor]
                self.cursor += 1
                if predicate(message):
                    return message
            if loop.time() > deadline:
                seen = [(m.status, m.reason, basic(m)) for m in self.statuses]
                pytest.fail(f"timed out after {timeout}s waiting for {what}; seen: {seen}")
            await asyncio.sleep(0.01)

    def close(self) -> None:
        self.runtime.close()


def basic(message: StatusMessage) -> str | None:
    return message.document.basic if message.document is not None else None


# ---------------------------------------------------------------- Kamailio with digest auth
KAMAILIO_AUTH_PORT = 5071
KAMAILIO_AUTH_CFG = Path(__file__).resolve().parent / "kamailio-auth.cfg"
SQL_DIR = Path("/usr/share/kamailio/db_sqlite")
AUTH_USER, AUTH_REALM, AUTH_PASSWORD = "bob", "lab.test", "interop-Secret-1"


@dataclass
class KamailioAuth:
    """Kamailio presence + auth_db on udp 127.0.0.1:5071 (tests/interop/kamailio-auth.cfg)."""

    run_dir: Path
    log: Path

    def accepted_authorizations(self) -> list[str]:
        """The Proxy-Authorization of every SUBSCRIBE Kamailio accepted, in order."""
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return [line.split("AUTH-OK ", 1)[1] for line in text.splitlines() if "AUTH-OK " in line]

    def challenges(self) -> int:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return text.count("AUTH-CHALLENGE")


@pytest.fixture(scope="session")
def kamailio_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KamailioAuth]:
    """Kamailio that challenges every SUBSCRIBE; subscriber bob@lab.test in a sqlite table."""
    require_kamailio(["presence.so", "auth_db.so", "db_sqlite.so"], KAMAILIO_AUTH_PORT)
    kamailio_bin = shutil.which("kamailio") or KAMAILIO_BIN
    run_dir = tmp_path_factory.mktemp("kam-auth")
    schema = "".join((SQL_DIR / name).read_text() for name in (
        "standard-create.sql", "presence-create.sql", "auth_db-create.sql"))
    schema += (f"INSERT INTO subscriber (username, domain, password) VALUES "
               f"('{AUTH_USER}', '{AUTH_REALM}', '{AUTH_PASSWORD}');\n"
               "PRAGMA journal_mode=WAL;\n")
    subprocess.run(["sqlite3", str(run_dir / "presence.sqlite")], input=schema, text=True,
                   check=True, capture_output=True, timeout=30)
    base = [kamailio_bin, "-f", str(KAMAILIO_AUTH_CFG), f"--subst=!RUNDIR!{run_dir}!g",
            "-L", str(KAMAILIO_MODULES)]
    checked = subprocess.run([*base, "-c"], capture_output=True, text=True, timeout=30,
                             check=False)
    if checked.returncode != 0:
        pytest.fail(f"kamailio-auth.cfg does not check:\n{checked.stderr[-3000:]}")
    log = run_dir / "kamailio.log"
    with log.open("wb") as out:
        process = subprocess.Popen([*base, "-DD", "-E", "-Y", str(run_dir), "-m", "64",
                                    "-M", "8"], stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    try:
        deadline = 100
        while not udp_port_bound(KAMAILIO_AUTH_PORT):
            deadline -= 1
            if deadline <= 0 or process.poll() is not None:
                pytest.fail("kamailio-auth did not bind udp 5071:\n"
                            + log.read_text(errors="replace")[-3000:])
            time.sleep(0.1)  # bounded start-up poll of a real process
        yield KamailioAuth(run_dir, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
