"""`b2b-conform`: run, list and lint conformance scenarios.

Exit codes: 0 = nothing failed; 1 = a scenario failed or errored; 2 = invalid scenario files
or bad usage; 130 = interrupted (Ctrl-C); 143 = terminated (SIGTERM). Interrupted or
terminated, the runs in progress still close their sessions, so no launched subscriber or
agent process is left behind.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from conformance import coverage, reports, verdict_page
from conformance.runner import ScenarioResult, map_runs, run_scenario
from conformance.scenario import (
    PROFILES,
    Scenario,
    load,
    unattributed_checks,
    untagged_expectations,
)
from conformance.targets import TARGET_NAMES, make_target

Progress = Callable[[ScenarioResult], None]

DEFAULT_PATHS = ["scenarios"]
REAL_TIME_JOBS = 6


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="b2b-conform", description="SIP subscriber conformance suite (YAML scenarios).")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run scenarios against a target")
    run.add_argument("paths", nargs="*", help="scenario files or folders (default: scenarios)")
    run.add_argument("--target", choices=TARGET_NAMES, default="sim")
    run.add_argument("--profile", choices=PROFILES, action="append",
                     help="profile(s) to run (default: every profile a scenario lists)")
    run.add_argument("--agent-profile", choices=PROFILES,
                     help="configure the agent with this profile while playing the "
                     "expectations of --profile (e.g. rfc6665 expectations against the ser "
                     "agent: which RFC requirements SER violates); xfail marks are not "
                     "applied to such runs")
    run.add_argument("--as-other-build", action="store_true",
                     help="sim/udp: judge the agent as another build (reference choices "
                     "are `differs` observations; only violated requirements fail), as "
                     "target files and sip-only are judged")
    run.add_argument("-k", dest="pattern", help="only scenarios whose name contains PATTERN "
                     "(or matches it as a glob)")
    run.add_argument("--junit", type=Path, help="write JUnit XML here")
    run.add_argument("--json", type=Path, help="write a JSON report here")
    run.add_argument("--coverage", type=Path, help="write the requirement coverage (Markdown)")
    run.add_argument("--agent-command", help="udp: command that starts the agent under test; "
                     "{listen} {control} {profile} {params} are filled in "
                     "(default: b2b-agent)")
    run.add_argument("--tolerance", type=float, default=0.25,
                     help="udp/sip-only: absolute timing tolerance in seconds (default 0.25)")
    run.add_argument("--tolerance-ratio", type=float, default=0.02,
                     help="udp/sip-only: relative timing tolerance (default 0.02)")
    run.add_argument("--trigger-command", help="sip-only: command that makes the subscriber "
                     "subscribe; {record} {subscriber} {peer} are filled in")
    run.add_argument("--untrigger-command", help="sip-only: command that makes it unsubscribe")
    run.add_argument("--agent-address",
                     help="sip-only: where the subscriber under test listens (optional: "
                     "replies go where requests come from, NOTIFYs to the Contact)")
    run.add_argument("--target-file", help="a target file (docs/targets.md) or a shipped "
                     "one's name (kamailio-pua): replaces --target and its options")
    run.add_argument("-j", "--jobs", type=int, default=0,
                     help="scenario runs in parallel (default: 1 on sim, 6 on real-time "
                     "targets, whose runs mostly wait)")
    run.add_argument("--no-colour", action="store_true", help="plain console output")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="details of xfails and of differences from the reference too")

    listing = commands.add_parser("list", help="list scenarios")
    listing.add_argument("paths", nargs="*")
    listing.add_argument("-k", dest="pattern")

    lint = commands.add_parser("lint", help="validate scenario files (and that every "
                               "expectation says what it tests)")
    lint.add_argument("paths", nargs="*")

    report = commands.add_parser(
        "report", help="verdict page (Markdown, HTML) from a JSON report",
        description="Render the verdict page of a `run --json` report.",
        epilog="example: b2b-conform report out/pua.json --markdown docs/verdicts/x.md "
               "--html out/x.html")
    report.add_argument("report", type=Path, help="a JSON report of `b2b-conform run`")
    report.add_argument("--markdown", type=Path, help="write the Markdown page here "
                        "(default: standard output when no --html)")
    report.add_argument("--html", type=Path, help="write the self-contained HTML page here")
    report.add_argument("--title", help="page title (default: the target's name)")
    return parser


def run_all(scenarios: Sequence[Scenario], target_name: str,
            profiles: Sequence[str] | None = None, jobs: int = 0,
            progress: Progress | None = None, **options: object) -> list[ScenarioResult]:
    """Every (scenario, profile) run, in input order. Real-time runs are independent (own
    agent process, own sockets), so they may overlap: `jobs` threads."""
    target = make_target(target_name, **options)
    runs = [(scenario, profile) for scenario in scenarios
            for profile in (profiles or scenario.profiles)
            if not profiles or profile in scenario.profiles]
    if jobs <= 0:
        jobs = 1 if target_name == "sim" else REAL_TIME_JOBS

    def one(run: tuple[Scenario, str]) -> ScenarioResult:
        result = run_scenario(run[0], run[1], target)
        if progress is not None:
            progress(result)
        return result

    return map_runs(one, runs, jobs)


@contextmanager
def progress_bar(total: int, enabled: bool) -> Iterator[Progress | None]:
    """A tqdm bar on stderr (a TTY only): one tick per finished run, failures counted."""
    if not enabled or total == 0:
        yield None
        return
    failed = 0
    with tqdm(total=total, unit="run", file=sys.stderr, dynamic_ncols=True,
              leave=False) as bar:
        def tick(result: ScenarioResult) -> None:
            nonlocal failed
            failed += result.verdict in ("fail", "error")
            bar.set_postfix_str(f"{failed} fail/error, last {result.scenario}"[:60])
            bar.update(1)

        yield tick


def render_report(args: argparse.Namespace) -> int:
    try:
        report: dict[str, Any] = json.loads(args.report.read_text(encoding="utf-8"))
        if not isinstance(report.get("requirements"), dict):
            raise ValueError("no requirements")
    except (ValueError, AttributeError):
        print(f"b2b-conform: {args.report}: not a JSON report of `b2b-conform run --json` "
              "(no `requirements`)", file=sys.stderr)
        return 2
    if args.html:
        _folder_for(args.html).write_text(verdict_page.html_page(report, args.title),
                                          encoding="utf-8")
    text = verdict_page.markdown(report, args.title)
    if args.markdown:
        _folder_for(args.markdown).write_text(text, encoding="utf-8")
    elif not args.html:
        sys.stdout.write(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Every error is one line on stderr (never a traceback), exit status as documented."""
    # SIGTERM's default action would end the process at once, orphaning the subscribers that
    # target files launch in their own sessions; as an exception it unwinds like Ctrl-C.
    # (Only the main thread may set a handler: an embedding program keeps its own.)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        code = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except _Terminated:
        print("b2b-conform: terminated", file=sys.stderr)
        return 143
    except BrokenPipeError:
        # The reader went away (`b2b-conform list | head`): stop quietly, like a shell tool.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("b2b-conform: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"b2b-conform: cannot access{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated


def _output(path: Path | None) -> Path | None:
    """A report file: its folder is created (`--junit out/junit.xml` with no `out/`)."""
    return None if path is None else _folder_for(path)


def _folder_for(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "report":
        return render_report(args)
    for name in ("junit", "json", "coverage"):
        setattr(args, name, _output(getattr(args, name, None)))
    paths = args.paths or DEFAULT_PATHS
    scenarios, errors = load(paths, getattr(args, "pattern", None))
    if args.command == "lint":
        for scenario in scenarios:
            untagged = untagged_expectations(scenario) + unattributed_checks(scenario)
            if untagged:
                errors.append("\n".join(untagged))
    for error in errors:
        print(error, file=sys.stderr)
    if args.command == "lint":
        total = len(scenarios)
        print(f"{total} scenario(s) valid, {len(errors)} invalid file(s)")
        return 2 if errors else 0
    if args.command == "list":
        for scenario in scenarios:
            print(f"{scenario.name:<45} {','.join(scenario.profiles):<12} "
                  f"{' '.join(scenario.all_covers)}")
        return 2 if errors else 0
    options = {
        "agent_command": args.agent_command, "tolerance": args.tolerance,
        "tolerance_ratio": args.tolerance_ratio, "trigger_command": args.trigger_command,
        "untrigger_command": args.untrigger_command, "agent_address": args.agent_address,
        "other_build": args.as_other_build,
    }
    declarations: dict[str, Any] = {}
    started = time.monotonic()
    show = sys.stderr.isatty()
    total = sum(1 for s in scenarios for p in (args.profile or s.profiles)
                if p in s.profiles)
    if args.target_file:
        from conformance.target_files import TargetFileError, run_target_file

        try:
            with progress_bar(total, show) as tick:
                args.target, results, declarations = run_target_file(
                    args.target_file, scenarios, args.profile, args.jobs, progress=tick)
        except (TargetFileError, RuntimeError, OSError) as exc:  # bad file, start/stop failed
            print(f"b2b-conform: {' '.join(str(exc).split())[:500]}", file=sys.stderr)
            return 2
    else:
        if args.agent_profile:
            scenarios = [dataclasses.replace(s, agent_profile=args.agent_profile)
                         for s in scenarios]
        try:
            with progress_bar(total, show) as tick:
                results = run_all(scenarios, args.target, args.profile, args.jobs,
                                  progress=tick, **options)
        except ValueError as exc:  # a target option missing or wrong
            print(f"b2b-conform: {exc}", file=sys.stderr)
            return 2
    wall = time.monotonic() - started
    colour = sys.stdout.isatty() and not args.no_colour and "NO_COLOR" not in os.environ
    reports.console(results, sys.stdout, colour=colour, verbose=args.verbose)
    if args.junit:
        reports.junit(results, args.junit, args.target)
    if args.json:
        shown = list(argv if argv is not None else sys.argv[1:])
        reports.write_json(results, args.json, args.target, declarations, wall,
                           "b2b-conform " + shlex.join(shown))
    if args.coverage:
        args.coverage.write_text(coverage.markdown(scenarios, results, args.target),
                                 encoding="utf-8")
    if errors:
        return 2
    return 1 if reports.failed(results) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


class _Terminated(BaseException):
    """SIGTERM arrived. A BaseException, like KeyboardInterrupt, so that no `except
    Exception` turns it into a scenario's `error` verdict."""
