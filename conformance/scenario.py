"""Scenario files: loading, JSON-Schema validation, semantic checks.

A file holds one or more YAML documents. Documents with `kind: scenario` are scenarios; any
other `kind` (e.g. the load workloads' `kind: workload`) is skipped, so `b2b-conform run
scenarios/` can walk the whole tree. Every error names the file, the scenario and the field.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from conformance import expr
from conformance.catalogue import SER_IDS, load_catalogue
from reference.config import AgentConfig, ConfigError

PROFILES = ("ser", "rfc6665")
ACTIONS = (
    "subscribe", "unsubscribe", "expect", "reply", "accept", "notify", "expect_response",
    "expect_no_response", "expect_status", "expect_no_status", "expect_nothing", "wait",
    "fault", "disconnect",
)
STEP_COMMON = ("id", "only", "covers", "tests", "note")
# Steps that assert something about the subscriber: each must say what it `tests` (lint).
ASSERTIONS = ("expect", "expect_response", "expect_no_response", "expect_status",
              "expect_no_status", "expect_nothing", "accept")
# What an `expect_status` checks beside the status value (`match_tests` names their
# requirements when the step tests several).
STATUS_CHECKS = ("basic", "reason", "list_uri", "resource", "registration")
# `tests: [reference]`: the step checks a choice of the reference profile, not an RFC rule.
REFERENCE = "reference"
# Fields of a step whose values are time expressions (checked by `lint`).
TIME_FIELDS = ("expires", "min_expires", "retry_after", "duration", "delay")
WINDOW_FIELDS = ("within", "retry_in", "rfc_within")
# Names only defined while a run plays (not agent parameters): `remaining` = seconds from
# the step's anchor to the expiry of the last grant the peer gave in the current dialog.
RUN_NAMES = ("remaining",)
DEFAULT_RECORD = "sip:alice@{peer}"
DEFAULT_SUBSCRIBER = "sip:bob@lab.test"
SCHEMA_PATH = Path(__file__).with_name("scenario_schema.json")
# Capabilities a target may offer. The first five are served by the built-in targets (`reg`:
# QSA subscriptions to the RFC 3680 `reg` and RFC 4662 `presence-list` packages,
# `subscribe: {package: ...}`, by `sim` and `udp`, not by a SIP-only subscriber triggered
# for presence; `tcp`: the peer and the agent also speak SIP over TCP, RFC 3261 §18,
# scenario `transport: tcp`, by `sim` as a stream model and `udp` over loopback sockets;
# in profile rfc6665 only, as SER had neither); the others name optional
# features of a subscriber (its "PICS"). The reference agent has all of them but `notify-auth`
# in its rfc6665 profile and none in `ser` (SER's presence_b2b had none, issue 18): a built-in
# target declares them per profile (`features_for`).
TARGET_CAPABILITIES = ("status", "faults", "unsubscribe", "reg", "tcp")
OPTIONAL_FEATURES = (
    "notify-auth",      # challenges NOTIFYs (SUB-026)
    "subscribe-auth",   # answers 401/407 with credentials (SUB-058, SUB-129)
    "fetch",            # one-shot SUBSCRIBE with Expires 0 (SUB-052)
    "pres-uri",         # accepts pres: URIs and resolves them (SUB-081)
    "rfc5839",          # understands 204 "no notification" (SUB-018)
    "option-tags",      # sends Require/option tags it can drop on 420 (SUB-130)
)
CAPABILITIES = TARGET_CAPABILITIES + OPTIONAL_FEATURES
# The optional features of the reference agent, per profile (the `sim` and `udp` targets).
# notify-auth is not among them: challenging NOTIFYs needs a secret shared with every
# notifier, which neither SER nor the presence servers of the lab have (docs/conformance.md).
REFERENCE_FEATURES: dict[str, frozenset[str]] = {
    "ser": frozenset(),
    "rfc6665": frozenset({"subscribe-auth", "fetch", "pres-uri", "rfc5839", "option-tags"}),
}
# The credentials the built-in targets give the reference agent (every subscriber, every
# realm), so that a scenario's challenges can be answered; a scenario's peer never checks the
# digest (the Kamailio interop test does, tests/interop/test_kamailio_auth.py).
LAB_USERNAME = "bob"
LAB_PASSWORD = "lab-secret"


class ScenarioError(ValueError):
    """A scenario file is unreadable or invalid; the text names file, scenario and field."""


@dataclass(frozen=True)
class Step:
    index: int
    action: str
    args: Any
    id: str | None = None
    only: tuple[str, ...] = ()
    covers: tuple[str, ...] = ()
    note: str = ""
    tests: tuple[str, ...] = ()

    @property
    def reference_only(self) -> bool:
        """The step checks only a choice of the reference profile."""
        return self.tests == (REFERENCE,)

    @property
    def requirement_ids(self) -> tuple[str, ...]:
        return tuple(t for t in self.tests if t != REFERENCE)

    def applies_to(self, profile: str) -> bool:
        return not self.only or profile in self.only

    @property
    def label(self) -> str:
        name = f" ({self.id})" if self.id else ""
        return f"steps[{self.index}] {self.action}{name}"


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path
    description: str
    covers: tuple[str, ...]
    profiles: tuple[str, ...]
    params: Mapping[str, Any]
    profile_params: Mapping[str, Mapping[str, Any]]
    requires: frozenset[str]
    record: str
    subscriber: str
    steps: tuple[Step, ...]
    xfail_reason: str | None = None
    xfail_profiles: tuple[str, ...] = ()
    all_covers: tuple[str, ...] = field(default=())
    agent_profile: str | None = None
    # "tcp": the agent runs `transports: udp,tcp` and the peer speaks TCP too (RFC 3261
    # §18; NOTIFYs over TCP when the Contact asks for it or they exceed 1300 bytes).
    transport: str = "udp"

    def params_for(self, profile: str) -> dict[str, Any]:
        merged = dict(self.params)
        merged.update(self.profile_params.get(profile, {}))
        merged["profile"] = profile
        return merged

    def agent_params_for(self, profile: str) -> dict[str, Any]:
        """What the target configures the agent with: the scenario's parameters for
        `profile`, but the agent's own profile is `agent_profile` when one is set (the
        expectations of `profile` run against an agent in another profile)."""
        merged = self.params_for(profile)
        if self.agent_profile is not None:
            merged["profile"] = self.agent_profile
        if self.transport == "tcp":
            merged["transports"] = "udp,tcp"
        return merged

    def agent_config_for(self, profile: str) -> AgentConfig:
        return AgentConfig.from_mapping(self.agent_params_for(profile))

    def config_for(self, profile: str) -> AgentConfig:
        return AgentConfig.from_mapping(self.params_for(profile))

    def names_for(self, profile: str) -> dict[str, float]:
        """Names usable in time expressions: every numeric agent parameter."""
        config = self.config_for(profile)
        out: dict[str, float] = {}
        for key, value in config.as_dict().items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[key] = float(value)
        out["transaction_timeout"] = config.effective_transaction_timeout
        return out

    def is_xfail(self, profile: str) -> bool:
        """A documented known failure of the agent in `profile`; not applied when the
        agent runs in another profile (the mark is about the agent's own profile)."""
        if self.agent_profile is not None and self.agent_profile != profile:
            return False
        return self.xfail_reason is not None and (
            not self.xfail_profiles or profile in self.xfail_profiles)


@cache
def schema() -> dict[str, Any]:
    # Next to this module (installed as package data); not importlib.resources, because
    # `scenarios/conformance/` can appear as a namespace package of the same name.
    text = SCHEMA_PATH.read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _validator(action: str | None) -> Any:
    root = schema()
    if action is None:
        return jsonschema.Draft202012Validator(root)
    sub = {"$defs": root["$defs"], "$ref": f"#/$defs/{action}"}
    return jsonschema.Draft202012Validator(sub)


def _path(prefix: str, error: Any) -> str:
    out = prefix
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _schema_errors(validator: Any, data: Any, prefix: str) -> list[str]:
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    return [f"{_path(prefix, e)}: {e.message}" for e in errors]


def _parse_step(index: int, raw: Any, errors: list[str]) -> Step | None:
    where = f"steps[{index}]"
    if not isinstance(raw, dict):
        errors.append(f"{where}: a step must be a mapping")
        return None
    actions = [k for k in raw if k in ACTIONS]
    unknown = [k for k in raw if k not in ACTIONS and k not in STEP_COMMON]
    if unknown:
        errors.append(f"{where}: unknown key(s) {', '.join(map(str, unknown))} "
                      f"(actions: {', '.join(ACTIONS)})")
    if len(actions) != 1:
        errors.append(f"{where}: exactly one action expected, found {actions or 'none'}")
        return None
    action = actions[0]
    args = raw[action]
    if args is None and action in ("subscribe", "unsubscribe", "expect", "accept", "notify",
                                   "expect_no_status", "expect_no_response", "disconnect"):
        args = {}
    if isinstance(args, dict):
        # `id`, `only`, `covers`, `note` may sit inside the action too (reads better).
        lifted = {k: args[k] for k in STEP_COMMON if k in args}
        for key, value in lifted.items():
            if key in raw:
                errors.append(f"{where}: {key!r} given twice")
            raw = {**raw, key: value}
        args = {k: v for k, v in args.items() if k not in STEP_COMMON}
    errors.extend(_schema_errors(_validator(action), args, f"{where}.{action}"))
    only = raw.get("only", [])
    if not isinstance(only, list) or any(p not in PROFILES for p in only):
        errors.append(f"{where}.only: must be a list of profiles {PROFILES}")
        only = []
    covers = raw.get("covers", [])
    if not isinstance(covers, list):
        errors.append(f"{where}.covers: must be a list of requirement IDs")
        covers = []
    tests = raw.get("tests", [])
    if isinstance(tests, str):
        tests = [tests]
    if not isinstance(tests, list):
        errors.append(f"{where}.tests: must be a list of requirement IDs or 'reference'")
        tests = []
    step_id = raw.get("id")
    if step_id is not None and (not isinstance(step_id, str) or step_id == "start"):
        errors.append(f"{where}.id: must be a string other than 'start'")
        step_id = None
    return Step(index, action, args, step_id, tuple(only), tuple(map(str, covers)),
                str(raw.get("note", "")), tuple(map(str, tests)))


def parse_scenario(data: Mapping[str, Any], path: Path) -> Scenario:
    """Validate one document; raises ScenarioError listing every problem found."""
    name = data.get("name") if isinstance(data.get("name"), str) else "?"
    errors = _schema_errors(_validator(None), data, "")
    steps: list[Step] = []
    for index, raw in enumerate(data.get("steps") or []):
        step = _parse_step(index, raw, errors)
        if step is not None:
            steps.append(step)
    errors.extend(unknown_requirements(data.get("covers") or [], steps))
    if errors:
        raise ScenarioError("\n".join(f"{path}: scenario {name!r}: {e}" for e in errors))
    xfail = data.get("xfail") or {}
    all_covers = list(data["covers"])
    for step in steps:
        all_covers.extend(c for c in step.covers if c not in all_covers)
    scenario = Scenario(
        name=data["name"], path=path, description=data.get("description", ""),
        covers=tuple(data["covers"]), profiles=tuple(data["profiles"]),
        params=dict(data.get("params") or {}),
        profile_params={k: dict(v) for k, v in (data.get("profile_params") or {}).items()},
        requires=frozenset(data.get("requires") or ()),
        record=data.get("record", DEFAULT_RECORD),
        subscriber=data.get("subscriber", DEFAULT_SUBSCRIBER), steps=tuple(steps),
        xfail_reason=xfail.get("reason"), xfail_profiles=tuple(xfail.get("profiles") or ()),
        all_covers=tuple(dict.fromkeys(all_covers)),
        transport=str(data.get("transport", "udp")))
    problems = semantic_problems(scenario)
    if problems:
        raise ScenarioError("\n".join(f"{path}: scenario {name!r}: {p}" for p in problems))
    return scenario


@cache
def known_requirements() -> frozenset[str]:
    """Every ID a `covers` may name: the SUB rows of docs/requirements.md and SER_IDS."""
    return frozenset(load_catalogue()) | SER_IDS


def unknown_requirements(covers: Iterable[Any], steps: Iterable[Step]) -> list[str]:
    """One error per `covers` entry (scenario or step level) that names no known ID."""
    known = known_requirements()
    problems = [f"covers[{i}]: unknown requirement ID {rid!r}"
                for i, rid in enumerate(covers) if isinstance(rid, str) and rid not in known]
    for step in steps:
        problems.extend(f"steps[{step.index}].covers[{i}]: unknown requirement ID {rid!r}"
                        for i, rid in enumerate(step.covers) if rid not in known)
        args = step.args if isinstance(step.args, dict) else {}
        named = [("rfc_tests", args.get("rfc_tests") or []),
                 ("uri_tests", args.get("uri_tests") or [])]
        named += [(f"match_tests.{k}", v) for k, v in (args.get("match_tests") or {}).items()]
        for where, ids in named:
            problems.extend(f"steps[{step.index}].{where}[{i}]: unknown requirement ID "
                            f"{rid!r}" for i, rid in enumerate(ids) if rid not in known)
        problems.extend(f"steps[{step.index}].tests[{i}]: unknown requirement ID {rid!r} "
                        f"(a SUB-nnn of docs/requirements.md or {REFERENCE!r})"
                        for i, rid in enumerate(step.tests)
                        if rid != REFERENCE and rid not in known)
    return problems


def untagged_expectations(scenario: Scenario) -> list[str]:
    """`lint`: every assertion step names what it tests (a requirement ID or `reference`)."""
    return [f"{scenario.path}: scenario {scenario.name!r}: steps[{step.index}] "
            f"{step.action}: says nothing about what it tests (add `tests: [SUB-nnn]` "
            f"or `tests: [{REFERENCE}]`)"
            for step in scenario.steps if step.action in ASSERTIONS and not step.tests]


def unattributed_checks(scenario: Scenario) -> list[str]:
    """`lint`: in a step that tests several requirements, every matcher names the one it
    tests (`match_tests`, `uri_tests`), so that its failure blames that requirement only,
    and names only requirements the step tests. The arrival of the request (its method
    and window) and the status of a NOTIFY's answer are the step's own check: they blame
    every requirement in `tests` (an RFC window blames `rfc_tests`)."""
    problems = []
    for step in scenario.steps:
        args = step.args if isinstance(step.args, dict) else {}
        tested = set(step.tests)
        where = f"{scenario.path}: scenario {scenario.name!r}: steps[{step.index}] {step.action}"
        named = {f"match_tests.{k}": v for k, v in (args.get("match_tests") or {}).items()}
        if args.get("uri_tests"):
            named["uri_tests"] = args["uri_tests"]
        for key, ids in named.items():
            stray = [rid for rid in ids if rid not in tested]
            if stray:
                problems.append(f"{where}: {key} names {', '.join(stray)}, which the step "
                                "does not test (add it to `tests`)")
        if step.action not in ("expect", "expect_response", "expect_status") \
                or len(tested) < 2:
            continue
        checks = [f"match_tests.{k}" for k in (args.get("match") or {})]
        checks += ["uri_tests"] if "uri" in args else []
        checks += ["match_tests.body"] if "body" in args else []
        if step.action == "expect_status":  # beside the status value, the step's own check
            checks += [f"match_tests.{k}" for k in STATUS_CHECKS if k in args]
        missing = [c for c in checks if c not in named]
        if missing:
            problems.append(f"{where}: tests {', '.join(step.tests)}: say which one each "
                            f"check tests ({', '.join(missing)})")
    return problems


def semantic_problems(scenario: Scenario) -> list[str]:
    """Checks the schema cannot express: parameters, expressions, step references."""
    problems: list[str] = []
    for profile in scenario.profiles:
        try:
            names = {**scenario.names_for(profile), **dict.fromkeys(RUN_NAMES, 0.0)}
        except ConfigError as exc:
            problems.append(f"params ({profile}): {exc}")
            continue
        seen: set[str] = {"start"}
        for step in scenario.steps:
            where = f"steps[{step.index}].{step.action}"
            if step.id is not None:
                if step.id in seen:
                    problems.append(f"steps[{step.index}].id: duplicate id {step.id!r}")
                seen.add(step.id)
            if not step.applies_to(profile):
                continue
            args = step.args
            if step.action == "wait":
                error = expr.check(args, names)
                if error:
                    problems.append(f"{where}: {error}")
                continue
            if not isinstance(args, dict):
                continue
            for key in TIME_FIELDS:
                if key in args:
                    error = expr.check(args[key], names)
                    if error:
                        problems.append(f"{where}.{key}: {error}")
            for key in WINDOW_FIELDS:
                if isinstance(args.get(key), list):
                    for part in args[key]:
                        if part is None and key == "rfc_within":
                            continue  # an open upper bound
                        error = expr.check(part, names)
                        if error:
                            problems.append(f"{where}.{key}: {error}")
            for key in ("to", "dialog", "after", "retransmit", "of"):
                ref = args.get(key)
                if isinstance(ref, str) and ref not in seen:
                    problems.append(f"{where}.{key}: no earlier step with id {ref!r}")
            matchers = {**(args.get("match") or {}), **(args.get("reference_match") or {})}
            for matcher in matchers.values():
                if isinstance(matcher, dict):
                    for key in ("same_as", "different_from"):
                        ref = matcher.get(key)
                        if isinstance(ref, str) and ref.split(".")[0] not in seen:
                            problems.append(f"{where}.match.{key}: no earlier step "
                                            f"{ref.split('.')[0]!r}")
                    for key in ("eq", "ne", "lt", "le", "gt", "ge"):
                        if key in matcher:
                            error = expr.check(matcher[key], names)
                            if error:
                                problems.append(f"{where}.match.{key}: {error}")
    return list(dict.fromkeys(problems))


def load_file(path: Path) -> list[Scenario]:
    try:
        documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from exc
    out: list[Scenario] = []
    for document in documents:
        if not isinstance(document, dict) or document.get("kind") != "scenario":
            continue  # a workload or other document kind
        out.append(parse_scenario(document, path))
    return out


def scenario_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.yaml") if p.is_file()))
            files.extend(sorted(p for p in path.rglob("*.yml") if p.is_file()))
        else:
            files.append(path)
    return files


def load(paths: Iterable[str | Path], pattern: str | None = None
         ) -> tuple[list[Scenario], list[str]]:
    """Scenarios under `paths` (files or folders), filtered by `-k` glob/substring, and the
    list of errors (one per invalid file)."""
    scenarios: list[Scenario] = []
    errors: list[str] = []
    names: dict[str, Path] = {}
    for path in scenario_files(paths):
        try:
            found = load_file(path)
        except ScenarioError as exc:
            errors.append(str(exc))
            continue
        for scenario in found:
            if scenario.name in names:
                errors.append(f"{path}: scenario {scenario.name!r}: name already used in "
                              f"{names[scenario.name]}")
                continue
            names[scenario.name] = path
            if pattern and not matches_pattern(scenario.name, pattern):
                continue
            scenarios.append(scenario)
    return scenarios, errors


def matches_pattern(name: str, pattern: str) -> bool:
    """`-k`: a glob if it has wildcards, else a substring."""
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatch(name, pattern)
    return pattern in name
