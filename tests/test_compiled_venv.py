"""scripts/compiled_venv.py: one command makes a venv with the compiled build, checked; a
missing compiler is one line on stderr and exit status 2, before anything is created.

The build needs a C compiler and the Python headers (marker `compiler`: without them the
test skips, except in CI where a skip is a failure, tests/conftest.py).
"""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "compiled_venv.py"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "B2B_COMPILE")}
    return {**env, **extra}


def _built_in_tree() -> list[Path]:
    return sorted(p for package in ("reference", "simulator", "conformance")
                  for p in (ROOT / package).glob("**/*.so"))


def test_missing_compiler_is_one_line_and_exit_2(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    done = subprocess.run([sys.executable, str(SCRIPT), str(venv)], capture_output=True,
                          text=True, timeout=60, env=_env(CC=str(tmp_path / "no-such-cc")))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "no C compiler" in done.stderr
    assert not venv.exists()


def test_help_has_an_example() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True,
                          text=True, timeout=60, check=True)
    assert "example:" in done.stdout and "compiled_venv.py" in done.stdout


@pytest.mark.compiler
@pytest.mark.slow
def test_script_builds_a_checked_compiled_venv(tmp_path: Path) -> None:
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}) to build the compiled variant")
    if not Path(sysconfig.get_paths()["include"], "Python.h").exists():
        pytest.skip("no Python headers (Python.h) to build the compiled variant")
    venv = tmp_path / "fast"
    built_before = _built_in_tree()
    done = subprocess.run([sys.executable, str(SCRIPT), str(venv)], capture_output=True,
                          text=True, timeout=1800, env=_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "compiled build ready" in done.stdout
    # The installed agent module is the compiled one, and the console script exists.
    python = venv / "bin" / "python"
    agent = subprocess.run([str(python), "-c", "import reference.agent as a; print(a.__file__)"],
                           capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path)
    assert agent.stdout.strip().endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    assert agent.stdout.startswith(str(venv))
    assert (venv / "bin" / "b2b-agent").exists()
    # The installed suite finds its requirement catalogue without a checkout around it (the
    # copy setup.py packs), and it is the same text as docs/.
    listed = subprocess.run([str(venv / "bin" / "b2b-conform"), "list", str(ROOT / "scenarios")],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "SUB-123" in listed.stdout
    where = subprocess.run([str(python), "-c", "import conformance.catalogue as c; "
                            "print(c.DEFAULT_PATH)"], capture_output=True, text=True,
                           timeout=60, check=True, cwd=tmp_path)
    packed = Path(where.stdout.strip())
    assert packed.is_relative_to(venv)
    assert packed.read_bytes() == (ROOT / "docs" / "requirements.md").read_bytes()
    # Nothing was built into the source tree (the build runs in a copy).
    assert _built_in_tree() == built_before
