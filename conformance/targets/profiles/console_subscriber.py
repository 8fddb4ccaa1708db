"""Drive a console SIP program (linphonec, twinkle-console) through its stdin, one per run.

Target files start it in launch mode (docs/targets.md): the wrapper starts the program with
its stdin on a pipe it keeps open (a console program quits at end of input), types the
`--send` lines once the program had `--after` seconds to start, types the `--on-usr1` lines
on SIGUSR1 (the target file's `untrigger: kill -USR1 {pid}`: how the program unsubscribes),
and exits with the program. The runner kills the whole process group at the end of the run.

The program's console output goes to `--log` (so a full pipe never blocks it); its stderr
is the wrapper's, which the runner keeps for the report. `--home` becomes HOME, so a program
that keeps its state under ~ (linphone's database, twinkle's ~/.twinkle) keeps it in the
run's own folder; `--mkdir` creates folders there first (linphone opens its database in
~/.local/share/linphone and silently does nothing at all when that folder is missing), and
`--home-as` makes ~/NAME the run folder itself (twinkle reads its files from ~/.twinkle).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0],
        epilog="example: console_subscriber.py --home /tmp/run --mkdir .local/share/linphone "
               "--send 'friend add alice sip:alice@127.0.0.1:5090' --on-usr1 'friend delete 0' "
               "-- linphonec -c /tmp/run/linphonerc")
    parser.add_argument("--home", type=Path, help="HOME for the program (created)")
    parser.add_argument("--mkdir", action="append", default=[],
                        help="folder to create under --home (repeatable)")
    parser.add_argument("--home-as", metavar="NAME",
                        help="make ~/NAME a link to --home itself (twinkle reads ~/.twinkle)")
    parser.add_argument("--log", type=Path, help="file for the program's console output "
                        "(default: --home/console.txt, else discarded)")
    parser.add_argument("--after", type=float, default=1.0,
                        help="seconds between the start and the --send lines (default 1)")
    parser.add_argument("--send", action="append", default=[],
                        help="a console line typed once started (repeatable)")
    parser.add_argument("--on-usr1", action="append", default=[],
                        help="a console line typed on SIGUSR1 (repeatable)")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="-- then the program and its arguments")
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("the program to run is missing (after --)")
    return args


class Console:
    """The program's stdin, written from the main thread and the signal handler alike."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.lock = threading.Lock()

    def type(self, lines: list[str]) -> None:
        if self.process.stdin is None:
            return
        with self.lock:
            try:
                for line in lines:
                    self.process.stdin.write(line.encode() + b"\n")
                self.process.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass  # the program is gone: its exit status tells the runner


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ)
    log_path = args.log
    if args.home is not None:
        args.home.mkdir(parents=True, exist_ok=True)
        for folder in args.mkdir:
            (args.home / folder).mkdir(parents=True, exist_ok=True)
        if args.home_as:
            (args.home / args.home_as).symlink_to(args.home.resolve(), target_is_directory=True)
        env["HOME"] = str(args.home)
        log_path = log_path or args.home / "console.txt"
    output = log_path.open("wb") if log_path else subprocess.DEVNULL
    try:
        process = subprocess.Popen(args.command, stdin=subprocess.PIPE, stdout=output,
                                   stderr=None, env=env)
    except OSError as exc:
        print(f"console_subscriber: {args.command[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    console = Console(process)

    def on_usr1(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=console.type, args=(args.on_usr1,), daemon=True).start()

    signal.signal(signal.SIGUSR1, on_usr1)
    deadline = time.monotonic() + args.after
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if process.poll() is None:
        console.type(args.send)
    return process.wait()


if __name__ == "__main__":
    sys.exit(main())
