"""RFC 4662 list bodies: RLMI parsing, multipart/related with PIDF parts, cid resolution and
the subscriber's per-list version/full/partial bookkeeping (ListState)."""

from __future__ import annotations

import pytest

from reference.multipart import Part, build_multipart
from reference.pidf import build_pidf
from reference.rlmi import (
    Instance,
    ListState,
    Resource,
    RlmiError,
    build_list_body,
    build_rlmi,
    parse_list_body,
    parse_rlmi,
)

LIST = "sip:friends@lab.test"


def params_of(content_type: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for item in content_type.split(";")[1:]:
        name, _, value = item.partition("=")
        out[name.strip().lower()] = value.strip()
    return out


def body(version: int, full: bool, states: dict[str, str], *, reason: str | None = None,
         drop_part: str | None = None) -> tuple[bytes, dict[str, str | None]]:
    resources = []
    documents = {}
    for n, (user, state) in enumerate(states.items()):
        uri = f"sip:{user}@lab.test"
        cid = f"{user}{version}@lab.test" if state == "active" else None
        resources.append(Resource(uri, (user.title(),), (
            Instance(f"i{n}", state, reason if state == "terminated" else None, cid),)))
        if cid is not None and user != drop_part:
            documents[cid] = build_pidf(uri, basic="open")
    data, content_type = build_list_body(LIST, version, full, resources, documents)
    return data, params_of(content_type)


def apply(state: ListState, version: int, full: bool, states: dict[str, str], **kw: str) -> \
        tuple[str, list[tuple[str, str]]]:
    data, params = body(version, full, states, **kw)
    result = state.apply(parse_list_body(data, params))
    return result.outcome, [(c.uri.split(":")[1].split("@")[0], c.state) for c in result.changed]


def test_list_body_parses_rlmi_and_each_pidf_part() -> None:
    data, params = body(1, True, {"bob": "active", "carol": "pending"})
    notification = parse_list_body(data, params)
    assert notification.rlmi.uri == LIST and notification.rlmi.full_state
    assert notification.rlmi.resources[0].names == ("Bob",)
    [document] = notification.documents.values()
    assert document.entity == "sip:bob@lab.test" and document.basic == "open"


def test_full_then_partial_reports_only_changed_resources() -> None:
    state = ListState()
    assert apply(state, 1, True, {"bob": "active", "carol": "pending"}) == (
        "applied", [("bob", "active"), ("carol", "pending")])
    assert apply(state, 2, False, {"carol": "active"}) == ("applied", [("carol", "active")])
    assert set(state.resources) == {"sip:bob@lab.test", "sip:carol@lab.test"}


def test_terminated_instance_is_the_resources_termination_with_its_reason() -> None:
    state = ListState()
    apply(state, 1, True, {"bob": "active"})
    data, params = body(2, False, {"bob": "terminated"}, reason="rejected")
    [change] = state.apply(parse_list_body(data, params)).changed
    assert (change.state, change.reason, change.list_uri) == ("terminated", "rejected", LIST)
    assert state.resources == {}


def test_full_state_that_drops_a_resource_reports_it_removed() -> None:
    state = ListState()
    apply(state, 1, True, {"bob": "active", "carol": "active"})
    data, params = body(2, True, {"bob": "active"})
    result = state.apply(parse_list_body(data, params))
    assert [(c.uri, c.state, c.reason) for c in result.changed] == [
        ("sip:carol@lab.test", "terminated", "removed-from-list")]  # bob's state is unchanged


def test_versions_stale_and_gap() -> None:
    state = ListState()
    apply(state, 5, True, {"bob": "active"})
    assert apply(state, 5, False, {"bob": "pending"})[0] == "stale"
    # RFC 4662 §5.6.2 (RLS-010): a gap is processed, the version jumps, full state wanted.
    assert apply(state, 7, False, {"bob": "pending"}) == ("gap", [("bob", "pending")])
    assert state.version == 7
    assert apply(state, 9, True, {"bob": "active"}) == ("applied", [("bob", "active")])
    assert apply(ListState(), 0, False, {"bob": "active"}) == ("gap", [("bob", "active")])


def test_an_unresolved_cid_refuses_the_whole_body() -> None:
    data, params = body(1, True, {"bob": "active"}, drop_part="bob")
    with pytest.raises(RlmiError, match=r"names cid <bob1@lab\.test>, which no body part has"):
        parse_list_body(data, params)


def test_root_must_be_rlmi_and_parts_must_be_good_pidf() -> None:
    data = build_multipart([Part("application/pidf+xml", build_pidf("sip:a@h"), "a")], "b")
    with pytest.raises(RlmiError, match="root part is application/pidf"):
        parse_list_body(data, {"boundary": "b"})
    rlmi = build_rlmi(LIST, 1, True, [Resource("sip:a@h", (), (Instance("i", "active", None,
                                                                        "p"),))])
    data = build_multipart([Part("application/rlmi+xml", rlmi, "r"),
                            Part("application/pidf+xml", b"<presence/>", "p")], "b")
    with pytest.raises(RlmiError, match="part <p> of sip:a@h"):
        parse_list_body(data, {"boundary": "b"})
    with pytest.raises(RlmiError, match="no closing delimiter"):
        parse_list_body(data[:-10], {"boundary": "b"})


@pytest.mark.parametrize(("xml", "message"), [
    (b"<list xmlns='urn:ietf:params:xml:ns:rlmi' version='1' fullState='true'/>", "no uri"),
    (b"<list xmlns='urn:ietf:params:xml:ns:rlmi' uri='sip:l@h' version='x' fullState='true'/>",
     "bad list version"),
    (b"<list xmlns='urn:ietf:params:xml:ns:rlmi' uri='sip:l@h' version='1' fullState='yes'/>",
     "bad list fullState"),
    (b"<list xmlns='urn:ietf:params:xml:ns:rlmi' uri='sip:l@h' version='1' fullState='true'>"
     b"<resource uri='sip:a@h'><instance id='i' state='gone'/></resource></list>",
     "bad instance state"),
    (b"<list xmlns='urn:ietf:params:xml:ns:rlmi' uri='sip:l@h' version='1' fullState='true'>"
     b"<resource uri='sip:a@h'/><resource uri='sip:a@h'/></list>", "listed twice"),
    (b"<list uri='sip:l@h' version='1' fullState='true'/>", "root element must be"),
    (b"<!DOCTYPE l><list/>", "DOCTYPE not allowed in RLMI"),
])
def test_bad_rlmi_is_refused(xml: bytes, message: str) -> None:
    with pytest.raises(RlmiError, match=message):
        parse_rlmi(xml)
