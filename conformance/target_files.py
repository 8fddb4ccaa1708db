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
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from conformance.runner import ScenarioResult, Target, map_runs, run_scenario
from conformance.scenario import OPTIONAL_FEATURES, PROFILES, Scenario
from conformance.targets.udp import SipOnlySession, free_port, with_b2b_agent

PROFILES_DIR = Path(__file__).resolve().parent / "targets" / "profiles"
REPO_ROOT = Path(__file__).resolve().parents[1]
COMMAND_TIMEOUT = 60.0
DEFAULT_JOBS = 6
KEYS = {"kind", "name", "description", "target", "agent_address", "trigger", "untrigger",
        "start", "stop", "profiles", "jobs", "tolerance", "tolerance_ratio", "env",
        "untrigger_on_close", "launch", "config_templates", "trigger_timeout",
        "declarations", "registrar"}
# The target's declared parameters and limits (ETSI's PIXIT / PICS), echoed in the report.
DECLARATION_KEYS = {
    "expires",            # the Expires it asks for (s)
    "t1",                 # its T1 (s): Timer N = 64*T1 in the scenarios' RFC windows
    "status",             # whether it reports status northbound (sip-only: false)
    "unsubscribe",        # how it unsubscribes (text); "none": `unsubscribe` scenarios n/a
    "max_subscriptions",  # how many subscriptions it holds at once
    "features",           # optional features claimed: rfc5839, subscribe-auth, ...
    "artefacts",          # configuration artefacts to discount when reading the verdicts
    "grant",              # what the peer grants: `asked` (default) or `scenario` (below)
}
# `grant: asked`: where a scenario grants the reference's own request, the peer grants the
# Expires the target asked for. `grant: scenario`: the peer grants the scenario's number
# (e.g. 10 s) whatever the target asked, for a target that asks for long subscriptions and
# would otherwise never refresh within a run (pua asked 3600 s refreshes a 10 s grant).
GRANTS = ("asked", "scenario")
LAUNCH_TIMEOUT = 10.0


class TargetFileError(ValueError):
    """The target file is unreadable or invalid; the text names the file and the field."""


@dataclass(frozen=True)
class TargetFile:
    name: str
    path: Path
    trigger: str | None
    agent_address: str | None
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
    launch: str | None = None              # per-run process (started and stopped by runs)
    config_templates: tuple[str, ...] = ()  # files of the target's folder, rendered per run
    trigger_timeout: float = 5.0
    declarations: Mapping[str, Any] = field(default_factory=dict)
    # The peer answers REGISTER 200 (a subscriber that subscribes only once registered).
    registrar: bool = False

    @property
    def target_dir(self) -> Path:
        return self.path.resolve().parent

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
    if not isinstance(data.get("name"), str):
        raise TargetFileError(f"{file}: name: a string is required")
    for key in ("trigger", "untrigger", "agent_address", "launch", "start", "stop"):
        if data.get(key) is not None and not isinstance(data.get(key), str):
            raise TargetFileError(f"{file}: {key}: a string is required")
    if not data.get("trigger") and not data.get("launch"):
        raise TargetFileError(f"{file}: trigger: required unless `launch` starts a "
                              "subscriber that subscribes by itself")
    declarations = data.get("declarations") or {}
    if not isinstance(declarations, dict):
        raise TargetFileError(f"{file}: declarations: a mapping is required")
    unknown_declarations = set(declarations) - DECLARATION_KEYS
    if unknown_declarations:
        raise TargetFileError(f"{file}: declarations: unknown field(s) "
                              f"{', '.join(sorted(unknown_declarations))} (known: "
                              f"{', '.join(sorted(DECLARATION_KEYS))})")
    if declarations.get("grant", "asked") not in GRANTS:
        raise TargetFileError(f"{file}: declarations.grant: choose from {', '.join(GRANTS)}")
    features = declarations.get("features") or []
    if not isinstance(features, list) or any(f not in OPTIONAL_FEATURES for f in features):
        raise TargetFileError(f"{file}: declarations.features: choose from "
                              f"{', '.join(OPTIONAL_FEATURES)}")
    templates = data.get("config_templates") or []
    if not isinstance(templates, list) or not all(isinstance(t, str) for t in templates):
        raise TargetFileError(f"{file}: config_templates: a list of file names is required")
    profiles = tuple(data.get("profiles") or ())
    if any(p not in PROFILES for p in profiles):
        raise TargetFileError(f"{file}: profiles: choose from {', '.join(PROFILES)}")
    env = data.get("env") or {}
    if not isinstance(env, dict):
        raise TargetFileError(f"{file}: env: a mapping is required")
    try:
        for name in templates:
            if not (file.resolve().parent / name).is_file():
                raise TargetFileError(f"{file}: config_templates: no file {name!r} beside "
                                      "the target file")
        return TargetFile(
            name=data["name"], path=file, trigger=data.get("trigger"),
            agent_address=data.get("agent_address"),
            description=str(data.get("description", "")),
            untrigger=data.get("untrigger"), start=data.get("start"), stop=data.get("stop"),
            profiles=profiles, jobs=int(data.get("jobs", DEFAULT_JOBS)),
            tolerance=float(data.get("tolerance", 0.25)),
            tolerance_ratio=float(data.get("tolerance_ratio", 0.02)),
            env={str(k): str(v) for k, v in env.items()},
            untrigger_on_close=bool(data.get("untrigger_on_close", False)),
            launch=data.get("launch"), config_templates=tuple(templates),
            trigger_timeout=float(data.get("trigger_timeout", 5.0)),
            declarations=dict(declarations), registrar=bool(data.get("registrar", False)))
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
    """A sip-only session that unsubscribes what it subscribed when the run ends, and stops
    the process it launched for the run (if any)."""

    untrigger_on_close = False
    process: subprocess.Popen[bytes] | None = None
    run_dir: Path | None = None
    stderr_file: IO[bytes] | None = None

    def launch(self, argv: list[str], run_dir: Path, env: Mapping[str, str]) -> None:
        self.run_dir = run_dir
        self.stderr_file = (run_dir / "stderr.txt").open("w+b")
        try:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL,
                                            stderr=self.stderr_file, env={**os.environ, **env},
                                            cwd=run_dir, start_new_session=True)
        except OSError as exc:
            raise RuntimeError(f"launch: {argv[0]}: {exc.strerror}") from None
        self.untrigger = self.untrigger and self.untrigger.replace("{pid}",
                                                                   str(self.process.pid))

    def stderr_tail(self, limit: int = 600) -> str:
        if self.stderr_file is None:
            return ""
        self.stderr_file.seek(0)
        text = self.stderr_file.read()[-limit:].decode("utf-8", "replace")
        return " ".join(text.split())

    def subscribe(self, record: str, subscriber: str, package: str = "presence") -> Any:
        try:
            return super().subscribe(record, subscriber, package)
        except RuntimeError as exc:
            raise RuntimeError(self._with_stderr(str(exc))) from None

    def _with_stderr(self, text: str) -> str:
        if self.process is not None and self.process.poll() is not None:
            text += f"; the launched process exited with {self.process.returncode}"
        tail = self.stderr_tail()
        return text + (f"; its stderr: {tail}" if tail else "")

    def close(self) -> None:
        try:
            if self.untrigger_on_close and self.untrigger and hasattr(self, "last") and \
                    (self.process is None or self.process.poll() is None):
                # Best effort: the verdict is already made.
                with contextlib.suppress(OSError, subprocess.SubprocessError, RuntimeError):
                    self._run(self.untrigger, *self.last)
        finally:
            try:
                if self.process is not None:
                    # Its own session: the whole group (a wrapper and what it started).
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(timeout=LAUNCH_TIMEOUT)
            finally:
                if self.stderr_file is not None:
                    self.stderr_file.close()
                if self.run_dir is not None:
                    shutil.rmtree(self.run_dir, ignore_errors=True)
                super().close()


def _params_tokens(params: Mapping[str, object]) -> list[str]:
    out: list[str] = []
    for name, value in params.items():
        if name not in ("profile", "expires"):
            out += ["--param", f"{name}={value}"]
    return out


class TemplatedSipOnlyTarget:
    """`sip-only` whose commands get the run's agent parameters filled in; with `launch`,
    one subscriber process per run on a free port."""

    name = "sip-only"

    def __init__(self, spec: TargetFile, places: Mapping[str, str],
                 env: Mapping[str, str] | None = None) -> None:
        self.spec = spec
        self.places = dict(places)
        self.env = dict(env or {})
        declared = spec.declarations
        # `unsubscribe: none`: the untrigger (if any) only cleans up, it is no unsubscribe.
        unsubscribes = spec.untrigger and str(declared.get("unsubscribe", "")) != "none"
        capabilities = {"unsubscribe"} if unsubscribes else set()
        capabilities |= set(declared.get("features") or ())
        self.capabilities = frozenset(capabilities)
        limit = declared.get("max_subscriptions")
        self.max_subscriptions: int | None = int(limit) if limit is not None else None
        self.declared_names = {"t1": float(declared["t1"])} if "t1" in declared else {}
        self.grants_asked = declared.get("grant", "asked") == "asked"

    def open(self, scenario: Scenario, profile: str) -> SipOnlySession:
        params = run_params(scenario, profile)
        values: dict[str, object] = {**self.places, **params, "profile": profile,
                                     "target_dir": str(self.spec.target_dir),
                                     "python": sys.executable}
        address = self.spec.agent_address
        if self.spec.launch:
            port = free_port(socket.SOCK_DGRAM)
            address = f"127.0.0.1:{port}"
            values.update(agent_port=port, agent_address=address)
        if address:
            values.setdefault("agent_address", address)
        untrigger = fill(self.spec.untrigger, values) if self.spec.untrigger else None
        trigger = fill(self.spec.trigger, values) if self.spec.trigger else None
        session = _CleaningSession(trigger, untrigger, address, self.spec.tolerance,
                                   self.spec.tolerance_ratio, env=self.env,
                                   trigger_timeout=self.spec.trigger_timeout)
        session.capabilities = self.capabilities
        session.declared_names = self.declared_names
        session.grants_asked = self.grants_asked
        session.registrar = self.spec.registrar
        session.untrigger_on_close = self.spec.untrigger_on_close
        if self.spec.launch:
            run_dir = Path(tempfile.mkdtemp(prefix="b2b-run-"))
            values.update(config_dir=str(run_dir), peer=session.peer_hostport,
                          record=scenario.record.replace("{peer}", session.peer_hostport),
                          subscriber=scenario.subscriber)
            try:
                for name in self.spec.config_templates:
                    text = (self.spec.target_dir / name).read_text(encoding="utf-8")
                    (run_dir / Path(name).name.removesuffix(".tmpl")).write_text(
                        fill(text, values), encoding="utf-8")
                argv: list[str] = []
                for token in shlex.split(fill(self.spec.launch, values)):
                    argv += _params_tokens(params) if token == "{params}" else [token]
                argv = [t.replace("{record}", scenario.record).replace(
                    "{subscriber}", scenario.subscriber).replace("{peer}", session.peer_hostport)
                    for t in argv]
                session.launch(with_b2b_agent(argv), run_dir, self.env)
            except BaseException:
                shutil.rmtree(run_dir, ignore_errors=True)
                session.close()
                raise
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
    places["target_dir"] = str(spec.target_dir)
    try:
        if spec.start and spec.agent_address and _udp_port_busy(spec.agent_address):
            # Another instance would answer in place of the one we start: refuse.
            raise TargetFileError(f"{spec.name}: udp {spec.agent_address} is already in "
                                  "use; stop the other subscriber first")
        if spec.start:
            _run_command(spec.start, places, env, "start")
        try:
            yield TemplatedSipOnlyTarget(spec, places, env)
        finally:
            if spec.stop:
                _run_command(spec.stop, places, env, "stop")
    finally:
        if own_run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)


def run_target_file(path: str | Path, scenarios: Sequence[Scenario],
                    profiles: Sequence[str] | None = None, jobs: int = 0,
                    progress: Callable[[ScenarioResult], None] | None = None,
                    ) -> tuple[str, list[ScenarioResult], dict[str, Any]]:
    """Every (scenario, profile) run against the target the file describes; profiles
    default to the file's (else every profile a scenario lists). Returns the target's
    name, the results and its declarations (for the report)."""
    spec = load_target_file(path)
    wanted = list(profiles or spec.profiles)
    runs = [(s, p) for s in scenarios for p in s.profiles if not wanted or p in wanted]
    jobs = jobs if jobs > 0 else spec.jobs
    with running(spec) as target:
        def one(run: tuple[Scenario, str]) -> ScenarioResult:
            result = run_scenario(run[0], run[1], target)
            if progress is not None:
                progress(result)
            return result

        return target.name, map_runs(one, runs, jobs), describe(spec)


def describe(spec: TargetFile) -> dict[str, Any]:
    """The file's settings and declarations as a mapping (echoed in the report)."""
    shown = spec.path.resolve()
    if shown.is_relative_to(REPO_ROOT):
        shown = shown.relative_to(REPO_ROOT)
    out: dict[str, Any] = {"name": spec.name, "file": str(shown)}
    for key in ("agent_address", "launch", "trigger", "untrigger"):
        value = getattr(spec, key)
        if value:
            out[key] = " ".join(value.split())
    if spec.registrar:
        out["registrar"] = "the peer answers REGISTER 200"
    out.update({"profiles": list(spec.profiles), "jobs": spec.jobs,
                "tolerance": f"{spec.tolerance:g} s + {spec.tolerance_ratio:g} x window"})
    out.update({f"declared {k}": v for k, v in spec.declarations.items()})
    return out
