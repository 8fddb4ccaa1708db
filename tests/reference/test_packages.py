"""The QSA package table: what each package sends, which profile serves it, clear refusals."""

from __future__ import annotations

import pytest

from reference.packages import PACKAGES, UnknownPackage, lookup, served


def test_rfc6665_serves_all_three_and_ser_presence_only() -> None:
    assert served("rfc6665") == ("presence", "reg", "presence-list")
    assert served("ser") == ("presence",)


def test_rows_carry_the_rfc_headers() -> None:
    reg, lists = PACKAGES["reg"], PACKAGES["presence-list"]
    assert (reg.event, reg.accept) == ("reg", ("application/reginfo+xml",))
    assert lists.event == "presence" and lists.supported == ("eventlist",)
    assert lists.accept == ("multipart/related", "application/rlmi+xml", "application/pidf+xml")
    assert lists.list and not reg.list
    # presence keeps the profile's accept_header rule deciding (behaviour before issue 17)
    assert not PACKAGES["presence"].accept_always


@pytest.mark.parametrize(("name", "profile", "message"), [
    ("dialog", "rfc6665", "package 'dialog' is not served (served: 'presence', 'reg', "
                          "'presence-list')"),
    ("reg", "ser", "package 'reg' is not served by the ser profile (served: 'presence'; "),
    ("presence-list", "ser", "not served by the ser profile"),
    (7, "rfc6665", "package 7 is not served"),
    ("Presence", "rfc6665", "package 'Presence' is not served"),  # RFC 6665 §8.2.1: bytes
])
def test_unknown_or_unserved_packages_are_refused(name: object, profile: str,
                                                  message: str) -> None:
    with pytest.raises(UnknownPackage) as info:
        lookup(name, profile)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)
