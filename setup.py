"""Optional compiled build (everything else about the package is in pyproject.toml).

By default the package is pure Python. With ``B2B_COMPILE=1`` the modules below are compiled
with mypyc (part of mypy: the same source, type-checked, turned into C extension modules),
which makes large simulations about 1.35x faster; behaviour and traces are identical (the test
``tests/test_compiled_build.py`` builds a copy and checks both). It needs a C compiler, the
Python headers, and mypy with the stubs in the installing environment (the ``compile``
extra), so the package is installed plain first, then rebuilt compiled over itself::

    python3 -m venv .venv-fast && .venv-fast/bin/pip install -q '.[compile]'
    B2B_COMPILE=1 .venv-fast/bin/pip install -q --no-build-isolation --no-deps --force-reinstall .

Only modules that nothing subclasses or patches at run time are compiled: the SIP and PIDF
parsers, the agent core (the facade ``reference.agent``, ``classify``, ``core``, ``actions``;
the conformance suite's broken variants are built from injected collaborators, and tools
watch the agent through public hooks) and the simulator's hot paths. ``reference.ua`` stays
interpreted: one broken variant (a 200 to a NOTIFY of an unknown dialog) passes its own
subclass of ``UserAgent``, which a native class would refuse.
"""

from __future__ import annotations

import os

from setuptools import setup

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

setup(ext_modules=ext_modules)
