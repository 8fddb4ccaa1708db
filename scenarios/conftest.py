"""Lets `pytest scenarios/` collect the YAML scenarios (hooks from conformance.pytest_plugin).

pyproject's testpaths is ["tests"], so run it explicitly:
`pytest scenarios/ [--b2b-target sim|udp] [--b2b-profile ser|rfc6665]`.
"""

from conformance.pytest_plugin import pytest_addoption, pytest_collect_file

__all__ = ["pytest_addoption", "pytest_collect_file"]
