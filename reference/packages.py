"""The event packages the agent serves through QSA: one table, the single source.

Rules of this file:

* ``PACKAGES`` maps the QSA ``package`` value (what ``Agent.subscribe``, the control
  protocol's ``package`` field and the configuration name) to a frozen :class:`Package`:
  the ``Event`` header it sends, the ``Accept`` and ``Supported`` values of its SUBSCRIBEs,
  the NOTIFY body types it reads and the profiles that serve it.
* **Decision: a resource list is its own QSA package value, ``presence-list``**, not a
  ``list=True`` flag on ``presence``. On the wire it is ``Event: presence`` with
  ``Supported: eventlist`` (RFC 4662 §4.1); inside, a separate value keeps every QSA
  signature, the control protocol and the status messages (which name their package) as
  they are, and a consumer tells list updates from single-presentity ones by the package.
* ``presence`` is the package the agent always served; its row reproduces the SUBSCRIBE
  headers exactly as before (``Accept: application/pidf+xml`` only where the profile's rule
  asks for it). The ``ser`` profile serves ``presence`` only: SER's ``presence_b2b`` never
  had ``reg`` or resource lists ("in the future it will do ...", presence_b2b.md).
* :func:`lookup` refuses an unknown package, or one the profile does not serve, with
  :class:`UnknownPackage` (a ``ValueError``) whose text names the packages that are served.
* A leaf: imports nothing of the project.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "PACKAGES",
    "PIDF_TYPE",
    "REGINFO_TYPE",
    "RLMI_TYPE",
    "Package",
    "UnknownPackage",
    "lookup",
    "served",
]

PIDF_TYPE = "application/pidf+xml"
REGINFO_TYPE = "application/reginfo+xml"
RLMI_TYPE = "application/rlmi+xml"
MULTIPART_RELATED = "multipart/related"


@dataclass(frozen=True, slots=True)
class Package:
    """One QSA package: how its SUBSCRIBEs look and which NOTIFY bodies it reads.

    ``accept`` is always sent when ``accept_always`` (RFC 3680 §4.3, RFC 4662 §4.1 ask for
    it); for ``presence`` the profile's ``accept_header`` rule decides, as before.
    ``list`` marks RFC 4662 list subscriptions (status messages per resource).
    """

    name: str
    event: str
    accept: tuple[str, ...]
    body_types: tuple[str, ...]
    supported: tuple[str, ...] = ()
    accept_always: bool = False
    profiles: frozenset[str] = frozenset({"rfc6665"})
    list: bool = False


PACKAGES: dict[str, Package] = {
    "presence": Package("presence", "presence", (PIDF_TYPE,), (PIDF_TYPE,),
                        profiles=frozenset({"ser", "rfc6665"})),
    "reg": Package("reg", "reg", (REGINFO_TYPE,), (REGINFO_TYPE,), accept_always=True),
    "presence-list": Package(
        "presence-list", "presence", (MULTIPART_RELATED, RLMI_TYPE, PIDF_TYPE),
        (MULTIPART_RELATED, PIDF_TYPE), supported=("eventlist",), accept_always=True,
        list=True),
}


def served(profile: str) -> tuple[str, ...]:
    """The package values ``profile`` serves, in table order."""
    return tuple(name for name, package in PACKAGES.items() if profile in package.profiles)


def lookup(name: object, profile: str) -> Package:
    """The package ``name`` if ``profile`` serves it, else :class:`UnknownPackage`."""
    package = PACKAGES.get(name) if isinstance(name, str) else None
    if package is not None and profile in package.profiles:
        return package  # (before the served names, which only an error message needs)
    names = ", ".join(repr(n) for n in served(profile))
    if package is None:
        raise UnknownPackage(f"package {name!r} is not served (served: {names})")
    raise UnknownPackage(
        f"package {name!r} is not served by the {profile} profile (served: {names}; "
        "SER's presence_b2b had presence only)")


class UnknownPackage(ValueError):
    """A QSA subscribe named a package the agent (or its profile) does not serve."""
