"""The sans-IO core loads no socket, asyncio, threading, select(ors) or time-reading module,
and its source never reads the clock or the global random generator."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_FILES = {"udp.py", "tcp.py", "control.py", "cli.py", "loops.py", "__main__.py"}
FORBIDDEN_MODULES = ("socket", "asyncio", "threading", "select", "selectors", "_thread")
CLOCK_CALLS = {"time", "monotonic", "perf_counter", "time_ns", "monotonic_ns",
               "perf_counter_ns", "process_time", "now", "utcnow", "today"}


def _core_files() -> list[Path]:
    files = sorted((ROOT / "reference").glob("*.py")) + sorted(
        (ROOT / "reference" / "sip").glob("*.py"))
    return [f for f in files if f.name not in RUNTIME_FILES]


def test_importing_the_core_loads_no_io_or_clock_module() -> None:
    code = ("import sys, json; before = set(sys.modules); import reference.agent; "
            "import reference.config, reference.policy, reference.qsa, reference.subscription; "
            "print(json.dumps(sorted(set(sys.modules) - before)))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            check=True, timeout=60, env={"PYTHONPATH": str(ROOT)})
    loaded = set(json.loads(result.stdout))
    for name in (*FORBIDDEN_MODULES, "time"):
        assert name not in loaded, f"reference.agent imports {name}"
    # `datetime` does come in (through a third-party dependency); whether the core's own
    # sources read the clock is checked by the AST scan below.


def test_core_sources_never_read_the_clock_or_global_random() -> None:
    offenders: list[str] = []
    for path in _core_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in ("time", *FORBIDDEN_MODULES):
                        offenders.append(f"{path.name}: import {alias.name}")
            elif isinstance(node, ast.ImportFrom):
                mod = (node.module or "").split(".")[0]
                if mod in ("time", *FORBIDDEN_MODULES):
                    offenders.append(f"{path.name}: from {node.module} import ...")
                if mod == "random" and any(a.name != "Random" for a in node.names):
                    offenders.append(f"{path.name}: from random import global function")
                if mod == "datetime":
                    offenders.append(f"{path.name}: from datetime import ...")
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id == "time" and node.attr in CLOCK_CALLS:
                    offenders.append(f"{path.name}:{node.lineno}: time.{node.attr}")
                if node.value.id in ("datetime", "date") and node.attr in CLOCK_CALLS:
                    offenders.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
                if node.value.id == "random" and node.attr != "Random":
                    offenders.append(f"{path.name}:{node.lineno}: random.{node.attr}")
    assert offenders == []


def test_the_scan_sees_the_core() -> None:
    names = {p.name for p in _core_files()}
    assert {"agent.py", "policy.py", "subscription.py", "qsa.py", "config.py",
            "effects.py", "transaction.py"} <= names


def test_only_the_identifier_source_reads_the_os_csprng() -> None:
    """Identifiers are the one thing drawn from the OS (issue 13), behind `IdSource`: no other
    core module may reach for `secrets` or `os.urandom` and so bypass the injection."""
    users = set()
    for path in _core_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            imports = (isinstance(node, ast.Import)
                       and any(a.name == "secrets" for a in node.names))
            imports_from = isinstance(node, ast.ImportFrom) and node.module == "secrets"
            urandom = isinstance(node, ast.Attribute) and node.attr == "urandom"
            if imports or imports_from or urandom:
                users.add(path.name)
    assert users == {"ids.py"}
