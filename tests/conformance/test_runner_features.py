"""Runner features the requirement families need: NOTIFY retransmission, forged top Via on
replies, `any_of`, `count:`/`all:` header fields, response fields, lenient status steps."""

from __future__ import annotations

from pathlib import Path

from conformance.runner import FAIL, NA, PASS, ScenarioResult, copied_headers, run_scenario
from conformance.scenario import load_file
from conformance.targets.sim import SimTarget
from reference.sip import Request, make_response, parse_message

HEAD = """
kind: scenario
name: t/features
covers: [SUB-003]
profiles: [ser, rfc6665]
params: {default_expiration: 10, resubscribe_delta: 3, min_resubscribe_time: 2, t1: 0.05}
steps:
  - subscribe:
  - expect: {id: s1, method: SUBSCRIBE, within: [0, 0]}
"""
ACCEPTED = "  - accept: {id: a1, expires: 10}\n  - expect_status: {status: active}\n"


def run(tmp_path: Path, steps: str, profile: str = "rfc6665", **kw: bool) -> ScenarioResult:
    path = tmp_path / "x.yaml"
    path.write_text(HEAD + steps, encoding="utf-8")
    [scenario] = load_file(path)
    return run_scenario(scenario, profile, SimTarget(), **kw)


def test_header_count_all_and_any_of(tmp_path: Path) -> None:
    ok = run(tmp_path, "  - wait: 0\n")
    assert ok.verdict == PASS
    for match, verdict in [
        ("{count:Event: 1, count:Accept: 1}", PASS),
        ("{count:Event: 2}", FAIL),
        ("{all:Accept: {contains: pidf}}", PASS),
        ("{Accept: {any_of: [{absent: true}, {contains: application/pidf+xml}]}}", PASS),
        ("{Accept: {any_of: [{absent: true}, {contains: text/plain}]}}", FAIL),
        ("{size: {le: 1300}}", PASS),
        ("{size: {lt: 100}}", FAIL),
        ("{body_type: none}", PASS),
        ("{body_type: application/pidf+xml}", FAIL),
    ]:
        steps = f"  - subscribe: {{handle: b}}\n  - expect: {{method: SUBSCRIBE, match: {match}}}\n"
        assert run(tmp_path, steps).verdict == verdict, match


def test_retransmitted_notify_gets_the_same_answer_once(tmp_path: Path) -> None:
    steps = ACCEPTED + (
        "  - notify: {id: n1, state: active, expires: 10, body: closed}\n"
        "  - expect_response: {to: n1, status: 200}\n"
        "  - notify: {id: n1r, retransmit: n1}\n"
        "  - expect_response: {to: n1r, status: 200, match: {to_tag: {same_as: n1.to_tag},"
        " count: 1, copied_headers: ok, destination: '{peer}'}}\n"
        "  - expect_status: {status: active, basic: closed}\n"
        "  - expect_no_status: {duration: 0.5}\n")
    assert run(tmp_path, steps).verdict == PASS
    # The retransmission must not be processed twice: a second status would fail here.
    twice = steps.replace("  - expect_no_status: {duration: 0.5}\n",
                          "  - expect_status: {status: active, within: [0, 0.5]}\n")
    assert run(tmp_path, twice).verdict == FAIL


def test_forged_top_via_is_not_applied(tmp_path: Path) -> None:
    steps = ("  - reply: {status: 200, expires: 10, "
             "top_via: 'SIP/2.0/UDP {sent_by};branch=z9hG4bKforged;rport'}\n"
             "  - expect_nothing: {duration: 3}\n")
    assert run(tmp_path, steps, "ser").verdict == PASS
    forged_then_refresh = steps.replace("  - expect_nothing: {duration: 3}\n",
                                        "  - expect: {method: SUBSCRIBE, after: s1, "
                                        "within: [7, 7]}\n")
    assert run(tmp_path, forged_then_refresh, "ser").verdict == FAIL
    # With the real branch ({branch}) the same reply is applied: the refresh comes at 7 s.
    real = ("  - reply: {status: 200, expires: 10, "
            "top_via: 'SIP/2.0/UDP {sent_by};branch={branch};rport'}\n"
            "  - expect: {method: SUBSCRIBE, after: s1, within: [7, 7]}\n")
    assert run(tmp_path, real, "ser").verdict == PASS


def test_cancel_with_last_branch(tmp_path: Path) -> None:
    steps = ACCEPTED + (
        "  - notify: {id: n1, state: active, expires: 10}\n"
        "  - expect_response: {to: n1, status: 200}\n"
        "  - notify:\n      id: c1\n      raw: |+\n"
        "        CANCEL {target} SIP/2.0\n"
        "        Via: SIP/2.0/UDP {peer};branch={last_branch};rport\n"
        "        Max-Forwards: 70\n        From: <{record}>;tag={peer_tag}\n"
        "        To: {subscriber_from}\n        Call-ID: {call_id}\n"
        "        CSeq: 2 CANCEL\n        Content-Length: 0\n\n"
        "  - expect_response: {to: c1, status: 200, match: {CSeq: {contains: CANCEL}}}\n")
    assert run(tmp_path, steps).verdict == PASS


def test_lenient_status_keeps_time_and_ignores_status_failures(tmp_path: Path) -> None:
    steps = ACCEPTED + ("  - expect_status: {status: rejected, within: [0, 1]}\n"
                        "  - expect: {method: SUBSCRIBE, after: a1, within: [7, 7]}\n")
    strict = run(tmp_path, steps)
    assert strict.verdict == FAIL and "status" in (strict.failure or "")
    lenient = run(tmp_path, steps, lenient_status=True)
    assert lenient.verdict == PASS
    assert [s.verdict for s in lenient.steps if s.action == "expect_status"][-1] == NA


def test_copied_headers_detects_changes() -> None:
    raw = (b"NOTIFY sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKx;rport\r\n"
           b"Via: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKy\r\nMax-Forwards: 70\r\n"
           b"From: <sip:p@h>;tag=1\r\nTo: <sip:a@h>;tag=2\r\nCall-ID: c\r\n"
           b"CSeq: 3 NOTIFY\r\nContent-Length: 0\r\n\r\n")
    request = parse_message(raw)
    assert isinstance(request, Request)
    good = make_response(request, 200, top_via="SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKx;"
                         "rport=5070;received=127.0.0.1")
    assert copied_headers(raw, good) == "ok"
    dropped = make_response(request, 200)
    dropped.headers.remove("Via")
    dropped.headers.add("Via", "SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKx;rport")
    assert copied_headers(raw, dropped) == "differs: Via"
    retagged = make_response(request, 200)
    retagged.headers.set("To", "<sip:a@h>;tag=other")
    assert copied_headers(raw, retagged) == "differs: To"


def test_schema_capabilities_match_the_documented_list() -> None:
    from conformance.scenario import CAPABILITIES, OPTIONAL_FEATURES, schema

    assert tuple(schema()["$defs"]["capability"]["enum"]) == CAPABILITIES
    # No built-in target offers an optional feature: scenarios needing one are n/a.
    assert not set(OPTIONAL_FEATURES) & set(SimTarget.capabilities)
