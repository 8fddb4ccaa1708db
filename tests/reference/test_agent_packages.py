"""The agent serving `reg` (RFC 3680) and `presence-list` (RFC 4662) through QSA: the
SUBSCRIBE headers, status messages per registration / per resource, versions (stale, gap ->
refresh for full state), bad bodies; and `presence` unchanged."""

from __future__ import annotations

import pytest

from reference.pidf import build_pidf
from reference.reginfo import RegContact, Registration, build_reginfo
from reference.rlmi import Instance, Resource, build_list_body
from tests.reference.harness import Harness

AOR = "sip:bob@lab.test"
REGINFO = "application/reginfo+xml"


def reginfo(version: int, state: str, *contacts: RegContact, reg_state: str = "active") -> bytes:
    return build_reginfo(version, state, [Registration(AOR, "r1", reg_state, contacts)])


def contact(cid: str, expires: int = 3600, state: str = "active",
            event: str = "registered") -> RegContact:
    return RegContact(cid, state, event, f"sip:bob@10.0.0.{len(cid)}", expires=expires, q="1.0")


def reg_notify(h: Harness, body: bytes, **kwargs: object) -> int:
    kwargs.setdefault("content_type", REGINFO)
    return h.notify(body=body, event="reg", **kwargs).status  # type: ignore[arg-type]


def reg_harness() -> tuple[Harness, int]:
    h = Harness.make("rfc6665")
    handle = h.subscribe(AOR, package="reg")
    h.advance_by(0.1)
    h.respond(expires=600)
    return h, handle


def test_subscribe_headers_per_package_and_presence_unchanged() -> None:
    h = Harness.make("rfc6665")
    h.subscribe()
    h.subscribe(AOR, package="reg")
    h.subscribe("sip:friends@lab.test", package="presence-list")
    presence, reg, lists = h.subscribes()
    assert presence.headers.get("Event") == "presence"
    assert presence.headers.get("Accept") == "application/pidf+xml"
    assert "Supported" not in presence.headers
    assert (reg.headers.get("Event"), reg.headers.get("Accept")) == ("reg", REGINFO)
    assert lists.headers.get("Event") == "presence"
    assert lists.headers.get("Supported") == "eventlist"
    assert lists.headers.get("Accept") == (
        "multipart/related, application/rlmi+xml, application/pidf+xml")
    ser = Harness.make("ser")
    ser.subscribe()
    assert "Accept" not in ser.last_subscribe().headers  # SER's SUBSCRIBE, as before


@pytest.mark.parametrize("package", ["reg", "presence-list"])
def test_ser_profile_serves_presence_only(package: str) -> None:
    h = Harness.make("ser")
    with pytest.raises(ValueError, match=f"package '{package}' is not served by the ser"):
        h.agent.subscribe(AOR, "sip:alice@lab.test", "q1", package, now=0.0)
    assert h.agent.subscription_count == 0 and not h.sent


def test_reg_full_then_partial_gives_a_status_per_registration() -> None:
    h, _ = reg_harness()
    assert reg_notify(h, b"") == 200  # no body yet: the neutral state
    assert reg_notify(h, reginfo(0, "full", contact("c1"))) == 200
    assert reg_notify(h, reginfo(1, "partial", contact("c22", expires=60, event="created"))) \
        == 200
    empty, full, partial = h.delivered
    assert empty.registration is None and empty.status == "active"
    assert full.registration is not None and full.registration.aor == AOR
    assert [c.uri for c in full.registration.contacts] == ["sip:bob@10.0.0.2"]
    assert partial.registration is not None
    assert [(c.id, c.expires) for c in partial.registration.contacts] == [
        ("c1", 3600), ("c22", 60)]
    assert partial.to_json()["registration"]["contacts"][1]["event"] == "created"
    # Per AOR its state, and every contact's state, event, expires, q and uri (issue 17 §2).
    wire = partial.to_json()["registration"]
    assert (wire["aor"], wire["state"]) == (AOR, "active")
    assert [{k: c[k] for k in ("state", "event", "expires", "q", "uri")}
            for c in wire["contacts"]] == [
        {"state": "active", "event": "registered", "expires": 3600, "q": "1.0",
         "uri": "sip:bob@10.0.0.2"},
        {"state": "active", "event": "created", "expires": 60, "q": "1.0",
         "uri": "sip:bob@10.0.0.3"}]
    assert h.agent.counters["reg.applied"] == 2


def test_reg_stale_version_is_answered_and_ignored() -> None:
    h, _ = reg_harness()
    reg_notify(h, reginfo(3, "full", contact("c1")))
    before = len(h.delivered)
    assert reg_notify(h, reginfo(2, "partial", contact("c9"))) == 200
    assert len(h.delivered) == before and h.agent.counters["reg.stale"] == 1


def test_reg_version_gap_refreshes_at_once_and_full_state_recovers() -> None:
    h, _ = reg_harness()
    reg_notify(h, reginfo(0, "full", contact("c1")))
    subscribes = len(h.subscribes())
    delivered = len(h.delivered)
    assert reg_notify(h, reginfo(2, "partial", contact("c5"))) == 200
    # RFC 3680 §5.2: the gapped document is processed and reported (c1 and c5).
    assert len(h.delivered) == delivered + 1
    gapped = h.delivered[-1].registration
    assert gapped is not None and [c.id for c in gapped.contacts] == ["c1", "c5"]
    h.advance_by(0.0)
    refresh = h.last_subscribe()
    assert len(h.subscribes()) == subscribes + 1
    assert refresh.to.tag == "srv1" and refresh.headers.get("Event") == "reg"  # same dialog
    h.respond(refresh, expires=600)
    reg_notify(h, reginfo(3, "full", contact("c1"), contact("c5")))
    last = h.delivered[-1].registration
    assert last is not None and [c.id for c in last.contacts] == ["c1", "c5"]
    assert h.agent.counters["reg.refresh_for_full_state"] == 1


def test_bad_reginfo_gets_400_and_a_status_naming_the_error() -> None:
    h, _ = reg_harness()
    assert reg_notify(h, b"<reginfo xmlns='urn:ietf:params:xml:ns:reginfo'/>") == 400
    assert h.delivered[-1].reason is not None
    assert h.delivered[-1].reason.startswith("bad-reg: reginfo has no version")


def test_a_pidf_body_on_reg_is_415_naming_reginfo() -> None:
    h, _ = reg_harness()
    answer = h.notify(body=build_pidf(AOR, basic="open"), event="reg")
    assert answer.status == 415 and answer.headers.get("Accept") == REGINFO


# ------------------------------------------------------------------ resource lists

LIST = "sip:friends@lab.test"


def list_notify(h: Harness, version: int, full: bool, states: dict[str, tuple[str, str | None]],
                *, drop: str | None = None, require: str = "eventlist") -> int:
    resources, documents = [], {}
    for user, (state, reason) in states.items():
        uri = f"sip:{user}@lab.test"
        cid = f"{user}.{version}@lab.test" if state == "active" else None
        resources.append(Resource(uri, (user,), (Instance(f"i-{user}", state, reason, cid),)))
        if cid is not None and user != drop:
            documents[cid] = build_pidf(uri, basic="open")
    body, content_type = build_list_body(LIST, version, full, resources, documents)
    return h.notify(body=body, content_type=content_type,
                    extra=[("Require", require)]).status


def list_harness() -> Harness:
    h = Harness.make("rfc6665")
    h.subscribe(LIST, package="presence-list")
    h.advance_by(0.1)
    h.respond(expires=600)
    return h


def test_list_notify_gives_one_status_per_changed_resource() -> None:
    h = list_harness()
    assert list_notify(h, 1, True, {"carol": ("active", None), "dave": ("pending", None)}) == 200
    assert [(m.resource, m.status, m.list_uri, m.package) for m in h.delivered] == [
        ("sip:carol@lab.test", "active", LIST, "presence-list"),
        ("sip:dave@lab.test", "pending", LIST, "presence-list")]
    assert h.delivered[0].document is not None and h.delivered[0].document.basic == "open"
    assert list_notify(h, 2, False, {"dave": ("terminated", "rejected")}) == 200
    last = h.delivered[-1]
    assert (last.resource, last.status, last.reason) == ("sip:dave@lab.test", "terminated",
                                                         "rejected")
    assert h.state() == "confirmed"  # a resource's end is not the list subscription's


def test_list_notify_may_require_eventlist_but_nothing_else() -> None:
    h = list_harness()
    assert list_notify(h, 1, True, {"carol": ("active", None)}) == 200
    assert list_notify(h, 2, False, {"carol": ("pending", None)}, require="eventlist, foo") == 420
    assert h.last_response().headers.get("Unsupported") == "foo"
    reg, _ = reg_harness()
    assert reg.notify(body=b"", event="reg", extra=[("Require", "eventlist")]).status == 420


def test_list_unresolved_cid_is_400_and_keeps_the_version() -> None:
    h = list_harness()
    list_notify(h, 1, True, {"carol": ("active", None)})
    assert list_notify(h, 2, False, {"erin": ("active", None)}, drop="erin") == 400
    assert "which no body part has" in (h.delivered[-1].reason or "")
    # Version 2 was not taken: the notifier's version 3 is a gap -> refresh for full state.
    assert list_notify(h, 3, False, {"erin": ("pending", None)}) == 200
    h.advance_by(0.0)
    assert h.agent.counters["presence-list.refresh_for_full_state"] == 1


def test_list_full_state_without_changes_reports_nothing() -> None:
    h = list_harness()
    list_notify(h, 1, True, {"carol": ("pending", None)})
    before = len(h.delivered)
    assert list_notify(h, 2, True, {"carol": ("pending", None)}) == 200
    assert len(h.delivered) == before


def test_a_terminating_notify_is_reported_even_with_a_stale_document() -> None:
    h, _ = reg_harness()
    reg_notify(h, reginfo(4, "full", contact("c1")))
    assert reg_notify(h, reginfo(2, "full", contact("c1")),
                      state="terminated;reason=noresource") == 200
    last = h.delivered[-1]
    assert (last.status, last.reason, last.registration) == ("terminated", "noresource", None)
