"""The optional compiled build (setup.py, ``B2B_COMPILE=1``): built in place in a copy of the
tree, it compiles every listed module, passes the core and simulator tests, and runs lossy
workloads of both profiles to the same summary, trace and pcap bytes as the pure package.

Needs a C compiler, the Python headers and mypyc (installed with mypy, a test dependency);
without them the tests skip, except in CI where a skip is a failure (tests/conftest.py).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.compiler, pytest.mark.slow]

# Runs one small lossy workload per profile and prints what must not depend on the build.
RUN_SCRIPT = """
import io, json, sys
from simulator.run import WALL_CLOCK_FIELDS, build_kind, run_workload
from simulator.workload import workload_from_mapping
out = {"build": build_kind()}
for profile in ("rfc6665", "ser"):
    workload = workload_from_mapping({
        "kind": "workload", "name": "compiled-check", "duration": 1800, "watchers": 8,
        "presentities": 10, "contacts": 3, "presence_changes_per_hour": 30, "ramp_up": 10,
        "agent": {"profile": profile, "parameters": {"default_expiration": 300}},
        "notifier": {"max_expires": 300},
        "network": {"latency": {"kind": "lognormal", "median": 0.02, "sigma": 0.5},
                    "loss": 0.05, "duplication": 0.02},
        "faults": [{"kind": "outage", "start": 600, "duration": 200}],
    }, "compiled-check")
    trace, pcap = io.StringIO(), io.BytesIO()
    result = run_workload(workload, 7, trace=trace, pcap=pcap)
    stable = {k: v for k, v in result.summary.items() if k not in WALL_CLOCK_FIELDS}
    out[profile] = {"summary": stable, "trace": trace.getvalue(), "pcap": pcap.getvalue().hex()}
json.dump(out, sys.stdout, sort_keys=True)
"""


def _compiled_modules() -> list[str]:
    """COMPILED_MODULES from setup.py (read, not imported: importing would run setup())."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "COMPILED_MODULES" for t in node.targets):
            value = ast.literal_eval(node.value)
            assert isinstance(value, list)
            return [str(v) for v in value]
    raise AssertionError("setup.py has no COMPILED_MODULES")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["B2B_COMPILE"] = "1"
    return env


@pytest.fixture(scope="module")
def compiled_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        import mypyc  # noqa: F401
    except ImportError:
        pytest.skip("mypyc is not installed (pip install mypy)")
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}) to build the compiled variant")
    if not Path(sysconfig.get_paths()["include"], "Python.h").exists():
        pytest.skip("no Python headers (Python.h) to build the compiled variant")
    tree = tmp_path_factory.mktemp("compiled") / "main"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "out", "__pycache__", ".*_cache", ".hypothesis",
        "*.so", "*.egg-info"))
    # The tests read the lab scripts beside the project (../shared), as in the source tree.
    shared = ROOT.parent / "shared"
    if shared.exists():
        (tree.parent / "shared").symlink_to(shared)
    done = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tree,
                          env=_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return tree


def test_every_listed_module_is_compiled_and_loaded(compiled_tree: Path) -> None:
    modules = _compiled_modules()
    assert modules
    for module in modules:
        source = compiled_tree / module
        built = list(source.parent.glob(source.stem + ".*.so"))
        assert len(built) == 1, f"{module}: {built}"
    names = [m[:-3].replace("/", ".") for m in modules]
    # Every listed module imported (the runtime's udp, say, is not imported by the simulator).
    done = subprocess.run(
        [sys.executable, "-c", "import importlib, sys, simulator.run as r; "
         "[importlib.import_module(n) for n in sys.argv[1:]]; print(r.build_kind()); "
         "print(*r.compiled_modules())", *names],
        cwd=compiled_tree, env=_env(), capture_output=True, text=True, timeout=120, check=True)
    kind, loaded = done.stdout.splitlines()
    assert kind == f"mypyc ({len(modules)} modules)"
    assert sorted(loaded.split()) == sorted(names)


def test_compiled_build_passes_the_core_and_simulator_tests(compiled_tree: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
         "tests/reference", "tests/simulator"],
        cwd=compiled_tree, env=_env(), capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_compiled_and_pure_runs_are_byte_identical(compiled_tree: Path) -> None:
    outputs = []
    for tree in (compiled_tree, ROOT):
        done = subprocess.run([sys.executable, "-c", RUN_SCRIPT], cwd=tree, env=_env(),
                              capture_output=True, text=True, timeout=600, check=True)
        outputs.append(done.stdout)
    compiled, pure = (json.loads(o) for o in outputs)
    assert compiled.pop("build").startswith("mypyc (") and pure.pop("build") == "python"
    for profile in ("rfc6665", "ser"):
        # Faults and loss really happened, so the comparison covers retries and recovery.
        assert pure[profile]["summary"]["messages"]["by_fate"].get("lost", 0) > 0
        assert pure[profile]["summary"]["faults"]
        for part in ("summary", "trace", "pcap"):
            assert compiled[profile][part] == pure[profile][part], (profile, part)
