"""Create a venv with the compiled build (setup.py, ``B2B_COMPILE=1``) in one command.

Run from anywhere: ``python3 scripts/compiled_venv.py [DIR]`` (default ``.venv-fast`` in the
current directory). It checks that a C compiler and the Python headers exist (else one line
on stderr and exit status 2), creates the venv with this interpreter, installs the package
plain with the ``compile`` extra (mypy, whose mypyc does the compiling, and the stubs it
type-checks with), then rebuilds it compiled over itself, as setup.py describes. Last it
checks the result: every module of setup.py's ``COMPILED_MODULES`` is imported from the venv
as a compiled extension, and a compiled agent answers one SUBSCRIBE round (SUBSCRIBE, 200,
NOTIFY answered 200, the status delivered).

The build runs in a temporary copy of the tree, so the source tree gets no ``build/`` or
``*.so`` files (a ``.so`` beside its source would shadow the source in an editable install).
"""

from __future__ import annotations

import argparse
import ast
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = """example:
  python3 scripts/compiled_venv.py            # builds .venv-fast (a few minutes)
  .venv-fast/bin/b2b-agent --help             # the compiled agent
  python3 benchmarks/lab_bench.py --fast-venv .venv-fast
"""

# Run by the venv's interpreter outside the source tree (argv[1:]: the module names): each
# module must come from the venv's site-packages as an extension module.
CHECK_MODULES = """
import importlib, importlib.machinery, sys
suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
for name in sys.argv[1:]:
    path = importlib.import_module(name).__file__ or ""
    if not path.startswith(sys.prefix) or not path.endswith(suffixes):
        sys.exit(f"{name} is not compiled: {path}")
"""

# One SUBSCRIBE round through the sans-IO agent: SUBSCRIBE out, 200 in, NOTIFY in, 200 out.
SMOKE = """
from reference import Agent, AgentConfig
from reference.effects import Deliver, Send
from reference.ids import SeededIds
from reference.pidf import build_pidf
from reference.sip import Response, make_response, parse_message

peer = ("127.0.0.1", 5070)
agent = Agent(AgentConfig.from_mapping({"profile": "rfc6665"}), ids=SeededIds(1))
agent.subscribe("sip:bob@lab.test", "sip:alice@lab.test", "q", now=0.0)
sent = [parse_message(e.data) for e in agent.drain_effects() if isinstance(e, Send)]
assert len(sent) == 1 and not isinstance(sent[0], Response), sent
subscribe = sent[0]
ok = make_response(subscribe, 200, to_tag="srv1",
                   headers=[("Expires", "600"), ("Contact", "<sip:127.0.0.1:5070>")])
agent.datagram_received(ok.to_bytes(), peer, now=1.0)
agent.drain_effects()
body = build_pidf(subscribe.uri, basic="open")
notify = "\\r\\n".join([
    f"NOTIFY sip:{agent.config.local_address} SIP/2.0",
    "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKsmoke1", "Max-Forwards: 70",
    f"From: <{subscribe.to.uri}>;tag=srv1",
    f"To: <{subscribe.from_.uri}>;tag={subscribe.from_.tag}",
    f"Call-ID: {subscribe.call_id}", "CSeq: 1 NOTIFY", "Contact: <sip:127.0.0.1:5070>",
    "Event: presence", "Subscription-State: active;expires=600",
    "Content-Type: application/pidf+xml", f"Content-Length: {len(body)}", "", ""]).encode() + body
agent.datagram_received(notify, peer, now=1.1)
effects = agent.drain_effects()
answers = [parse_message(e.data) for e in effects if isinstance(e, Send)]
assert [a.status for a in answers if isinstance(a, Response)] == [200], answers
assert any(isinstance(e, Deliver) for e in effects), effects
"""


def compiled_modules() -> list[str]:
    """setup.py's COMPILED_MODULES as module names (read, not imported: importing setup.py
    would run setup())."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "COMPILED_MODULES" for t in node.targets):
            return [str(m)[:-3].replace("/", ".") for m in ast.literal_eval(node.value)]
    raise SystemExit("compiled_venv: setup.py has no COMPILED_MODULES")


def missing_toolchain() -> str | None:
    """Why the extensions cannot be built here, or None. The compiler is the one setuptools
    uses: $CC if set, else the one Python was built with."""
    compiler = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    program = shlex.split(compiler)[0] if compiler.strip() else "cc"
    if shutil.which(program) is None:
        return f"no C compiler ({program}); install one (e.g. apt-get install gcc)"
    headers = Path(sysconfig.get_paths()["include"], "Python.h")
    if not headers.exists():
        return (f"no Python headers ({headers}); install them "
                f"(e.g. apt-get install python3-dev)")
    return None


def run(command: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
        label: str | None = None) -> None:
    print("+", label or shlex.join(command), flush=True)
    subprocess.run(command, env=env, cwd=cwd, check=True)


def build(venv: Path) -> None:
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "venv", str(venv)])
    with tempfile.TemporaryDirectory(prefix="compiled-venv-") as tmp:
        tree = Path(tmp, "tree")
        shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
            ".git", ".venv*", "build", "dist", "out", "__pycache__", ".*_cache",
            ".hypothesis", "*.so", "*.egg-info"))
        run([str(python), "-m", "pip", "install", "-q", f"{tree}[compile]"])
        env = {**os.environ, "B2B_COMPILE": "1"}
        run([str(python), "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps",
             "--force-reinstall", str(tree)], env=env)
    modules = compiled_modules()
    # Outside the source tree, so that nothing but the venv can provide the modules.
    run([str(python), "-c", CHECK_MODULES, *modules], cwd=venv,
        label=f"check: the {len(modules)} modules of setup.py are compiled extensions in {venv}")
    run([str(python), "-c", SMOKE], cwd=venv, label="check: the agent answers a SUBSCRIBE round")
    print(f"compiled build ready: {len(modules)} modules compiled in {venv} "
          f"(run {venv / 'bin' / 'b2b-agent'})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Create a venv with the compiled (mypyc) build of the package and check "
                    "it (a C compiler and the Python headers are needed).",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", nargs="?", default=".venv-fast", type=Path,
                        help="the venv to create or update (default: .venv-fast)")
    args = parser.parse_args(argv)
    problem = missing_toolchain()
    if problem is not None:
        print(f"compiled_venv: {problem}", file=sys.stderr)
        return 2
    try:
        build(args.dir.absolute())
    except subprocess.CalledProcessError as exc:
        step = shlex.join(str(c) for c in exc.cmd)[:160].replace("\n", " ")
        print(f"compiled_venv: failed (exit {exc.returncode}): {step}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
