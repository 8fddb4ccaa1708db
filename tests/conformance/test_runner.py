"""Runner semantics on the sim target: timing windows, retransmissions, strictness."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.runner import FAIL, NA, PASS, ScenarioResult, run_scenario
from conformance.scenario import load_file
from conformance.targets.sim import SimTarget

HEAD = """
kind: scenario
name: t/x
covers: [SUB-003]
profiles: [ser, rfc6665]
params: {default_expiration: 10, resubscribe_delta: 3, min_resubscribe_time: 2, t1: 0.05,
         on_error_retry_time: 2, transaction_timeout: 2}
steps:
  - subscribe:
  - expect: {id: s1, method: SUBSCRIBE, within: [0, 0]}
"""


def run(tmp_path: Path, steps: str, profile: str = "rfc6665") -> ScenarioResult:
    path = tmp_path / "x.yaml"
    path.write_text(HEAD + steps, encoding="utf-8")
    [scenario] = load_file(path)
    return run_scenario(scenario, profile, SimTarget())


def test_exact_refresh_window(tmp_path: Path) -> None:
    ok = run(tmp_path, "  - accept: {expires: 10}\n"
                       "  - expect: {method: SUBSCRIBE, within: [7, 7]}\n")
    assert ok.verdict == PASS
    early = run(tmp_path, "  - accept: {expires: 10}\n"
                          "  - expect: {method: SUBSCRIBE, within: [7.5, 8]}\n")
    assert early.verdict == FAIL and "too early" in (early.failure or "")
    assert "expected:" in (early.failure or "") and "SUBSCRIBE sip:" in (early.failure or "")
    late = run(tmp_path, "  - accept: {expires: 10}\n"
                         "  - expect: {method: SUBSCRIBE, within: [0, 6]}\n")
    assert late.verdict == FAIL and "no SUBSCRIBE" in (late.failure or "")


def test_retransmissions_are_absorbed_and_reanswered(tmp_path: Path) -> None:
    # Silence for 1 s: Timer E retransmits (absorbed); the reply then stops them.
    result = run(tmp_path, "  - wait: 1\n  - reply: {status: 200, expires: 10}\n"
                           "  - notify: {state: active}\n  - expect_response: {status: 200}\n"
                           "  - expect_nothing: {duration: 5}\n")
    assert result.verdict == PASS
    assert any("retransmission absorbed" in line for line in result.transcript)


def test_unexpected_request_fails(tmp_path: Path) -> None:
    result = run(tmp_path, "  - reply: {status: 500}\n  - expect_nothing: {duration: 5}\n")
    assert result.verdict == FAIL and "unexpected SUBSCRIBE" in (result.failure or "")
    leftover = run(tmp_path, "  - reply: {status: 500}\n  - wait: 5\n")
    assert leftover.verdict == FAIL and "end of scenario" in (leftover.failure or "")


def test_matchers(tmp_path: Path) -> None:
    good = run(tmp_path, "  - reply: {status: 500}\n  - expect:\n      method: SUBSCRIBE\n"
                         "      within: [1.6, 2]\n      match:\n"
                         "        call_id: {different_from: s1.call_id}\n"
                         "        Expires: {ge: default_expiration, lt: 11}\n"
                         "        Event: {regex: '^presence$'}\n        To: {contains: alice}\n"
                         "        Route: {absent: true}\n        cseq: {same_as: s1.cseq}\n")
    assert good.verdict == PASS, good.failure
    bad = run(tmp_path, "  - reply: {status: 500}\n  - expect:\n      within: [1.6, 2]\n"
                        "      match: {call_id: {same_as: s1.call_id}}\n")
    assert bad.verdict == FAIL and "call_id does not match" in (bad.failure or "")


def test_status_steps(tmp_path: Path) -> None:
    good = run(tmp_path, "  - reply: {status: 503, retry_after: 5}\n"
                         "  - expect_status: {status: terminated, retry_in: [5, 5]}\n"
                         "  - expect: {within: [5, 5]}\n")
    assert good.verdict == PASS, good.failure
    wrong = run(tmp_path, "  - reply: {status: 503, retry_after: 5}\n"
                          "  - expect_status: {status: terminated, retry_in: [1, 2]}\n")
    assert wrong.verdict == FAIL and "retry_at outside" in (wrong.failure or "")


def test_fault_drop_and_capability(tmp_path: Path) -> None:
    # The 200 is dropped: the subscriber retransmits, the peer re-sends its stored reply.
    result = run(tmp_path, "  - fault: {kind: drop, direction: to_agent, count: 1}\n"
                           "  - reply: {status: 200, expires: 10}\n  - wait: 0.2\n"
                           "  - notify: {state: active}\n  - expect_response: {status: 200}\n"
                           "  - expect: {method: SUBSCRIBE, after: s1, within: [7.05, 7.05]}\n")
    assert result.verdict == PASS, result.failure
    assert any("re-sent reply" in line for line in result.transcript)

    class NoFaults(SimTarget):
        capabilities = frozenset({"status", "unsubscribe"})

    path = tmp_path / "x.yaml"
    [scenario] = load_file(path)
    assert run_scenario(scenario, "rfc6665", NoFaults()).verdict == NA


def test_fault_delay_shifts_arrival(tmp_path: Path) -> None:
    result = run(tmp_path, "  - accept: {expires: 10}\n"
                           "  - fault: {kind: delay, direction: from_agent, delay: 0.5,"
                           " duration: 100, method: SUBSCRIBE}\n"
                           "  - expect: {method: SUBSCRIBE, after: s1, within: [7.5, 7.5]}\n")
    assert result.verdict == PASS, result.failure


def test_an_interrupt_cancels_the_runs_not_started() -> None:
    import signal
    import threading
    import time

    from conformance.runner import map_runs

    finished: list[int] = []

    def one(run: int) -> ScenarioResult:
        time.sleep(0.3)  # a run in progress, which is let finish (it closes its session)
        finished.append(run)
        return ScenarioResult(str(run), "", "rfc6665", "sim", PASS, ())

    # A real SIGINT to the main thread, waiting for the first result, as Ctrl-C would be.
    main = threading.main_thread().ident
    assert main is not None
    threading.Timer(0.1, signal.pthread_kill, (main, signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        map_runs(one, list(range(10)), jobs=2)
    assert sorted(finished) == [0, 1]
