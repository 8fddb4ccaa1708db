"""Optional compiled build (everything else about the package is in pyproject.toml).

By default the package is pure Python. With ``B2B_COMPILE=1`` the modules below are compiled
with mypyc (part of mypy: the same source, type-checked, turned into C extension modules),
which makes large simulations about 1.35x faster and the agent cheaper per NOTIFY; behaviour
and traces are identical (``tests/test_compiled_build.py`` builds a copy and checks both). It
needs a C compiler, the Python headers, and mypy with the stubs in the installing environment
(the ``compile`` extra), so the package is installed plain first, then rebuilt compiled over
itself. ``scripts/compiled_venv.py [DIR]`` does both and checks the result (the recommended
install for labs, README "Faster runs"); by hand::

    python3 -m venv .venv-fast && .venv-fast/bin/pip install -q '.[compile]'
    B2B_COMPILE=1 .venv-fast/bin/pip install -q --no-build-isolation --no-deps --force-reinstall .

Only modules that nothing subclasses or patches at run time are compiled (a native class
refuses an interpreted subclass, and compiled code calls functions directly, past a patched
module attribute):

* the SIP and PIDF parsers (``reference.sip``, ``xmlsafe``, ``pidf``): every datagram;
* the agent (the facade ``reference.agent``, ``classify``, ``core``, ``actions``, the UA
  layer ``ua``, the profile rules and delay arithmetic ``policy``, ``effects``, ``qsa``,
  ``sharing``, ``packages``, ``resend``, ``ids``) with its timers and effect pump
  (``timers``, ``pump``): every input. The conformance suite's broken variants are built
  from injected collaborators (a classifier, an action table, a transition table, a
  ``policy.Timing``, an identifier source), never from subclasses, and tools watch the agent
  through public hooks;
* the UDP runtime (``reference.udp``): every datagram of ``b2b-agent``;
* the simulator's hot paths (network, timers, sipscan, metrics, the notifier and its
  package subclass, streams, host).

The rest stays interpreted: configuration, command line and control (run once or rarely),
the TCP transport and the bodies of the other packages (``reginfo``, ``rlmi``,
``multipart``), which are off the NOTIFY path of the lab benchmarks and not tried yet, and
the conformance suite, whose tests build variants from the reference's collaborators.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

COMPILED_MODULES = [
    "reference/sip/errors.py",
    "reference/sip/limits.py",
    "reference/sip/grammar.py",
    "reference/sip/uri.py",
    "reference/sip/headers.py",
    "reference/sip/message.py",
    "reference/sip/transaction.py",
    "reference/sip/dialog.py",
    "reference/xmlsafe.py",
    "reference/pidf.py",
    "reference/timers.py",
    "reference/pump.py",
    "reference/classify.py",
    "reference/core.py",
    "reference/actions.py",
    "reference/agent.py",
    "reference/ua.py",
    "reference/policy.py",
    "reference/effects.py",
    "reference/qsa.py",
    "reference/sharing.py",
    "reference/packages.py",
    "reference/resend.py",
    "reference/ids.py",
    "reference/udp.py",
    "simulator/timers.py",
    "simulator/network.py",
    "simulator/sipscan.py",
    "simulator/metrics.py",
    "simulator/notifier.py",
    "simulator/streams.py",
    "simulator/packages_model.py",
    "simulator/host.py",
]

ext_modules = []
if os.environ.get("B2B_COMPILE") == "1":
    from mypyc.build import mypycify

    ext_modules = mypycify(COMPILED_MODULES, opt_level="3")

# The requirement catalogue is written once, in docs/ (conformance/catalogue.py reads it there
# in a checkout); a built package (a wheel, the compiled venv) carries a copy of it inside
# ``conformance``, which the catalogue falls back to when there is no checkout around it.
CATALOGUE_FILES = ("requirements.md", "ser-requirements.md")


class BuildPyWithCatalogue(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "conformance" / "catalogue_docs"
        target.mkdir(parents=True, exist_ok=True)
        for name in CATALOGUE_FILES:
            shutil.copyfile(Path(__file__).resolve().parent / "docs" / name, target / name)


setup(ext_modules=ext_modules, cmdclass={"build_py": BuildPyWithCatalogue})
