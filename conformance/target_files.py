"""Target files: a subscriber under test described once in YAML (`--target-file FILE`).

A target file says how to start and stop the subscriber, where it listens, and the commands
that make it subscribe and unsubscribe. It is what `--target sip-only --trigger-command ...`
says on the command line, plus the life cycle, so that a third-party subscriber (e.g. the
shipped `conformance/targets/profiles/kamailio-pua.yaml`) runs with one option.
docs/targets.md describes the format.

Placeholders: in every command, `{lab}` (the lab scripts folder) and `{run_dir}` (the folder
for runtime files); in `trigger`/`untrigger` also every numeric agent parameter of the run
(`{default_expiration}`, alias `{expires}`; the scenario's value, else the default) and the
runner's `{record} {subscriber} {peer}`.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from conformance.runner import ScenarioResult, Target, run_scenario
from conformance.scenario import PROFILES, Scenario
from conformance.targets.udp import SipOnlySession

PROFILES_DIR = Path(__file__).resolve().parent / "targets" / "profiles"
REPO_ROOT = Path(__file__).resolve().parents[1]
COMMAND_TIMEOUT = 60.0
DEFAULT_JOBS = 6
KEYS = {"kind", "name", "description", "target", "agent_address", "trigger", "untrigger",
        "start", "stop", "profiles", "jobs", "tolerance", "tolerance_ratio", "env",
        "untrigger_on_close"}


class TargetFileError(ValueError):
    """The target file is unreadable or invalid; the text names the file and the field."""


@dataclass(frozen=True)
class TargetFile:
    name: str
    path: Path
    trigger: str
    agent_address: str
    description: str = ""
    untrigger: str | None = None
    start: str | None = None
    stop: str | None = None
    profiles: tuple[str, ...] = ()
    jobs: int = DEFAULT_JOBS
    tolerance: float = 0.25
    tolerance_ratio: float = 0.02
    env: Mapping[str, str] = field(default_factory=dict)
    # Run `untrigger` when a run ends, so that the subscriber stops refreshing towards a
    # peer socket that is gone (and whose port a later run may get).
    untrigger_on_close: bool = False


def find_lab_dir() -> Path | None:
    """$B2B_LAB_DIR, else shared/lab beside the repository (the lab layout of CI)."""
    env = os.environ.get("B2B_LAB_DIR")
    if env and Path(env).is_dir():
        return Path(env)
    beside = REPO_ROOT.parent / "shared" / "lab"
    return beside if beside.is_dir() else None


def resolve(path: str | Path) -> Path:
    """A target file path, or the name of a shipped one (`kamailio-pua`)."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    shipped = PROFILES_DIR / f"{path}.yaml"
    if shipped.is_file():
        return shipped
    raise TargetFileError(f"{path}: no such target file (shipped: "
                          f"{', '.join(sorted(p.stem for p in PROFILES_DIR.glob('*.yaml')))})")


def load_target_file(path: str | Path) -> TargetFile:
    file = resolve(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TargetFileError(f"{file}: {exc}") from exc
    if not isinstance(data, dict) or data.get("kind") != "target":
        raise TargetFileError(f"{file}: not a target file (needs `kind: target`)")
    unknown = set(data) - KEYS
    if unknown:
        raise TargetFileError(f"{file}: unknown field(s) {', '.join(sorted(unknown))}")
    if data.get("target", "sip-only") != "sip-only":
        raise TargetFileError(f"{file}: target: only `sip-only` is supported")
    for key in ("name", "trigger", "agent_address"):
        if not isinstance(data.get(key), str):
            raise TargetFileError(f"{file}: {key}: a string is required")
    profiles = tuple(data.get("profiles") or ())
    if any(p not in PROFILES for p in profiles):
        raise TargetFileError(f"{file}: profiles: choose from {', '.join(PROFILES)}")
    env = data.get("env") or {}
    if not isinstance(env, dict):
        raise TargetFileError(f"{file}: env: a mapping is required")
    try:
        return TargetFile(
            name=data["name"], path=file, trigger=data["trigger"],
            agent_address=data["agent_address"], description=str(data.get("description", "")),
            untrigger=data.get("untrigger"), start=data.get("start"), stop=data.get("stop"),
            profiles=profiles, jobs=int(data.get("jobs", DEFAULT_JOBS)),
            tolerance=float(data.get("tolerance", 0.25)),
            tolerance_ratio=float(data.get("tolerance_ratio", 0.02)),
            env={str(k): str(v) for k, v in env.items()},
            untrigger_on_close=bool(data.get("untrigger_on_close", False)))
    except (TypeError, ValueError) as exc:
        raise TargetFileError(f"{file}: {exc}") from exc


def fill(template: str, values: Mapping[str, object]) -> str:
    """Replace `{name}` for the given names only (others, e.g. `{record}`, stay)."""
    for name, value in values.items():
        template = template.replace("{" + name + "}", str(value))
    return template


def run_params(scenario: Scenario, profile: str) -> dict[str, object]:
    """The run's numeric agent parameters, integral values without `.0` (`{expires}` = 10)."""
    out: dict[str, object] = {}
    for name, value in scenario.config_for(profile).as_dict().items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        out[name] = int(value) if float(value).is_integer() else value
    out["expires"] = out.get("default_expiration", "")
    return out


class _CleaningSession(SipOnlySession):
    """A sip-only session that unsubscribes what it subscribed when the run ends."""

    untrigger_on_close = False

    def close(self) -> None:
        try:
            if self.untrigger_on_close and self.untrigger and hasattr(self, "last"):
                # Best effort: the verdict is already made.
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    self._run(self.untrigger, *self.last)
        finally:
            super().close()


class TemplatedSipOnlyTarget:
    """`sip-only` whose commands get the run's agent parameters filled in."""

    name = "sip-only"

    def __init__(self, spec: TargetFile, places: Mapping[str, str]) -> None:
        self.spec = spec
        self.places = dict(places)
        self.capabilities = frozenset({"unsubscribe"} if spec.untrigger else set())

    def open(self, scenario: Scenario, profile: str) -> SipOnlySession:
        values = {**self.places, **run_params(scenario, profile)}
        untrigger = fill(self.spec.untrigger, values) if self.spec.untrigger else None
        session = _CleaningSession(fill(self.spec.trigger, values), untrigger,
                                   self.spec.agent_address, self.spec.tolerance,
                                   self.spec.tolerance_ratio)
        session.untrigger_on_close = self.spec.untrigger_on_close
        return session


def _run_command(template: str, places: Mapping[str, str], env: Mapping[str, str],
                 what: str) -> None:
    argv = shlex.split(fill(template, places))
    done = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT, check=False, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"{what} command failed ({done.returncode}): {' '.join(argv)}\n"
                           f"{done.stdout[-2000:]}{done.stderr[-2000:]}")


def _udp_port_busy(address: str) -> bool:
    host, _, port = address.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((host, int(port)))
        except OSError:
            return True
    return False


@contextmanager
def running(spec: TargetFile) -> Iterator[Target]:
    """Start the subscriber (if the file says how), yield the target, stop it."""
    lab = find_lab_dir()
    own_run_dir = not os.environ.get("LAB_RUN_DIR")
    run_dir = os.environ.get("LAB_RUN_DIR") or tempfile.mkdtemp(prefix="b2b-target-")
    places = {"lab": str(lab) if lab else "", "run_dir": run_dir}
    if "{lab}" in " ".join(filter(None, (spec.start, spec.stop, spec.trigger))) and not lab:
        raise TargetFileError(f"{spec.path}: needs the lab scripts: set B2B_LAB_DIR")
    env = {"LAB_RUN_DIR": run_dir, **{k: fill(v, places) for k, v in spec.env.items()}}
    try:
        if spec.start and _udp_port_busy(spec.agent_address):
            # Another instance would answer in place of the one we start: refuse.
            raise TargetFileError(f"{spec.name}: udp {spec.agent_address} is already in "
                                  "use; stop the other subscriber first")
        if spec.start:
            _run_command(spec.start, places, env, "start")
        try:
            yield TemplatedSipOnlyTarget(spec, places)
        finally:
            if spec.stop:
                _run_command(spec.stop, places, env, "stop")
    finally:
        if own_run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)


def run_target_file(path: str | Path, scenarios: Sequence[Scenario],
                    profiles: Sequence[str] | None = None,
                    jobs: int = 0) -> tuple[str, list[ScenarioResult]]:
    """Every (scenario, profile) run against the target the file describes; profiles
    default to the file's (else every profile a scenario lists)."""
    spec = load_target_file(path)
    wanted = list(profiles or spec.profiles)
    runs = [(s, p) for s in scenarios for p in s.profiles if not wanted or p in wanted]
    jobs = jobs if jobs > 0 else spec.jobs
    with running(spec) as target:
        def one(run: tuple[Scenario, str]) -> ScenarioResult:
            return run_scenario(run[0], run[1], target)

        if jobs == 1:
            return target.name, [one(run) for run in runs]
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            return target.name, list(pool.map(one, runs))
