"""Workload files (`kind: workload`): loading, JSON-Schema validation, typed view.

Errors name the file and the field, e.g.
``workload.yaml: watchers: -5 is less than the minimum of 1``.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from simulator.network import Latency, LinkSpec


class WorkloadError(ValueError):
    """The workload file is unreadable or invalid; the text names the field."""


@dataclass(frozen=True)
class RejectRule:
    """Reject SUBSCRIBEs whose record matches ``record`` (fnmatch), with ``probability``."""

    code: int
    record: str = "*"
    probability: float = 1.0
    retry_after: int | None = None


@dataclass(frozen=True)
class NotifierSpec:
    domain: str = "lab.test"
    max_expires: int = 3600
    min_expires: int = 60
    response_delay: float = 0.0
    notify_delay: float = 0.0
    service_time: float = 0.0  # seconds of work per request; 0 = infinite capacity
    queue_limit: int = 1000  # requests waiting before 503 + Retry-After
    overload_retry_after: int = 30
    reject: tuple[RejectRule, ...] = ()
    # "tcp": the notifier's Contact says transport=tcp, so the agent (transports udp,tcp)
    # sends its in-dialog requests over TCP and its Contact asks for TCP (issue 17).
    transport: str = "udp"


@dataclass(frozen=True)
class ContactsSpec:
    """How many contacts each watcher has: fixed, uniform [min, max], or Poisson (>= 1)."""

    distribution: str = "fixed"
    value: int = 4
    low: int = 1
    high: int = 4
    mean: float = 4.0

    def draw(self, rng: random.Random) -> int:
        if self.distribution == "fixed":
            return self.value
        if self.distribution == "uniform":
            return rng.randint(self.low, self.high)
        return max(1, _poisson(rng, self.mean))


@dataclass(frozen=True)
class ListSizeSpec:
    """Members per resource list: fixed, uniform [min, max], or lognormal (median, sigma)
    rounded and clamped to [min, max]."""

    distribution: str = "fixed"
    value: int = 8
    low: int = 1
    high: int = 100
    median: float = 8.0
    sigma: float = 0.5

    def draw(self, rng: random.Random) -> int:
        if self.distribution == "fixed":
            return self.value
        if self.distribution == "uniform":
            return rng.randint(self.low, self.high)
        drawn = round(rng.lognormvariate(math.log(self.median), self.sigma))
        return min(self.high, max(self.low, drawn))


@dataclass(frozen=True)
class ListsSpec:
    """Package ``presence-list``: ``count`` lists sip:l<i>@<domain> whose members are drawn
    among the presentities; members change at ``presence_changes_per_hour``."""

    count: int = 100
    size: ListSizeSpec = field(default_factory=ListSizeSpec)


@dataclass(frozen=True)
class RegSpec:
    """Package ``reg``: every presentity is an AOR with ``contacts`` registered contacts at
    the start; per AOR and hour, ``refreshes_per_hour`` re-REGISTERs of one of its active
    contacts (event refreshed) and ``expiries_per_hour`` expiries of one (event expired),
    an expired contact registering again (event registered) ``reregister_after`` seconds
    later. ``register_expires`` is the registrations' Expires."""

    contacts: ContactsSpec = field(default_factory=lambda: ContactsSpec(value=2))
    refreshes_per_hour: float = 1.0
    expiries_per_hour: float = 0.0
    reregister_after: float = 60.0
    register_expires: int = 3600


PACKAGES = ("presence", "reg", "presence-list")


@dataclass(frozen=True)
class Fault:
    kind: str  # outage | partition | terminate | connection_loss
    start: float
    duration: float = 0.0
    state_lost: bool = True
    domain: str | None = None  # which notifier (default: every one)
    node: int | None = None  # farms: which server node (default: every one)
    reason: str = "deactivated"
    retry_after: int | None = None
    fraction: float = 1.0


@dataclass(frozen=True)
class Workload:
    name: str
    duration: float = 3600.0
    topology: str = "single"
    profile: str = "rfc6665"
    parameters: dict[str, Any] = field(default_factory=dict)
    notifier: NotifierSpec = field(default_factory=NotifierSpec)
    watchers: int = 1
    presentities: int = 1
    contacts: ContactsSpec = field(default_factory=ContactsSpec)
    presence_changes_per_hour: float = 0.0
    churn_per_hour: float = 0.0
    # Internal users (e.g. an RLS and a PA module) behind the agent, each asking for the
    # watchers' contacts; every user after the first asks for the same (record, watcher)
    # pair with probability `overlap`, else for a pair of its own (issue 18, sharing).
    internal_users: int = 1
    overlap: float = 0.0
    ramp_up: float = 60.0
    network: LinkSpec = field(default_factory=LinkSpec)
    faults: tuple[Fault, ...] = ()
    servers: int = 1  # farms: presence-server nodes (simulator.farm)
    agents: int = 1  # farms: agent instances
    # Issue 17: the package every internal subscription asks for (presence, reg,
    # presence-list) and its model (simulator.packages_model).
    package: str = "presence"
    reg: RegSpec = field(default_factory=RegSpec)
    lists: ListsSpec = field(default_factory=ListsSpec)
    source: str = "<workload>"

    @property
    def uses_streams(self) -> bool:
        """Whether the run models TCP (simulator.streams): another package than presence,
        an agent running TCP, a notifier asking for it, or a connection_loss fault."""
        return (
            self.package != "presence"
            or "tcp" in str(self.parameters.get("transports", "udp"))
            or self.notifier.transport == "tcp"
            or any(f.kind == "connection_loss" for f in self.faults)
        )

    @property
    def is_farm(self) -> bool:
        """More than one server node or agent instance: run as shards (simulator.farm)."""
        return self.servers > 1 or self.agents > 1

    def replace(self, **changes: Any) -> Workload:
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        values.update(changes)
        return Workload(**values)

    def __reduce__(self) -> tuple[Any, ...]:
        # Workloads travel to Dask workers. In the compiled build (setup.py) LinkSpec and
        # Latency are mypyc native frozen dataclasses, which do not unpickle: send their
        # fields instead.
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        link: LinkSpec = values.pop("network")
        lat = link.latency
        latency = (lat.kind, lat.value, lat.low, lat.high, lat.median, lat.sigma)
        network = (link.loss, link.duplication, link.reorder, link.reorder_delay)
        return (_unpickle_workload, (values, latency, network))


def _unpickle_workload(
    values: dict[str, Any],
    latency: tuple[str, float, float, float, float, float],
    network: tuple[float, float, float, float],
) -> Workload:
    kind, value, low, high, median, sigma = latency
    loss, duplication, reorder, reorder_delay = network
    link = LinkSpec(
        Latency(kind, value, low, high, median, sigma), loss, duplication, reorder, reorder_delay
    )
    return Workload(**values, network=link)


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method is fine for the small means used for contact counts.
    if mean > 30:
        return max(0, round(rng.gauss(mean, mean**0.5)))
    limit, k, product = pow(2.718281828459045, -mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def schema() -> dict[str, Any]:
    text = resources.files("simulator").joinpath("workload_schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _field_path(error: Any) -> str:
    parts: list[str] = []
    for item in error.absolute_path:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def validate(data: object, source: str = "<workload>") -> None:
    """Raise WorkloadError naming the first invalid field (by path order, deterministic)."""
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        error = errors[0]
        # oneOf failures hide the useful message in the sub-errors.
        best = jsonschema.exceptions.best_match([error]) if error.context else error
        raise WorkloadError(f"{source}: {_field_path(best)}: {best.message}")


def load_workload(path: str | Path) -> Workload:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise WorkloadError(f"{path.name}: cannot read: {exc}") from exc
    return workload_from_mapping(data, source=path.name)


def workload_from_mapping(data: object, source: str = "<workload>") -> Workload:
    validate(data, source)
    assert isinstance(data, dict)
    agent = data.get("agent", {})
    notifier = data.get("notifier", {})
    contacts = data.get("contacts", 4)
    network = data.get("network", {})
    presentities = int(data["presentities"] if "presentities" in data else data["watchers"])
    _check_semantics(data, source)
    return Workload(
        name=str(data.get("name", Path(source).stem)),
        duration=float(data.get("duration", 3600)),
        topology=str(data.get("topology", "single")),
        profile=str(agent.get("profile", "rfc6665")),
        parameters=dict(agent.get("parameters", {})),
        notifier=NotifierSpec(
            domain=notifier.get("domain", "lab.test"),
            max_expires=notifier.get("max_expires", 3600),
            min_expires=notifier.get("min_expires", 60),
            response_delay=float(notifier.get("response_delay", 0.0)),
            notify_delay=float(notifier.get("notify_delay", 0.0)),
            service_time=float(notifier.get("service_time", 0.0)),
            queue_limit=notifier.get("queue_limit", 1000),
            overload_retry_after=notifier.get("overload_retry_after", 30),
            transport=str(notifier.get("transport", "udp")),
            reject=tuple(
                RejectRule(
                    code=r["code"],
                    record=r.get("record", "*"),
                    probability=float(r.get("probability", 1.0)),
                    retry_after=r.get("retry_after"),
                )
                for r in notifier.get("reject", [])
            ),
        ),
        watchers=int(data["watchers"]),
        presentities=int(presentities),
        contacts=_contacts(contacts),
        presence_changes_per_hour=float(data.get("presence_changes_per_hour", 0.0)),
        churn_per_hour=float(data.get("churn_per_hour", 0.0)),
        internal_users=int(data.get("internal_users", {}).get("count", 1)),
        overlap=float(data.get("internal_users", {}).get("overlap", 0.0)),
        ramp_up=float(data.get("ramp_up", 60.0)),
        network=_link(network),
        faults=tuple(
            Fault(
                kind=f["kind"],
                start=float(f["start"]),
                duration=float(f.get("duration", 0.0)),
                state_lost=bool(f.get("state_lost", True)),
                domain=f.get("domain"),
                node=f.get("node"),
                reason=str(f.get("reason", "deactivated")),
                retry_after=f.get("retry_after"),
                fraction=float(f.get("fraction", 1.0)),
            )
            for f in data.get("faults", [])
        ),
        servers=int(data.get("servers", 1)),
        agents=int(data.get("agents", 1)),
        package=str(data.get("package", "presence")),
        reg=_reg(data.get("reg", {})),
        lists=_lists(data.get("lists", {})),
        source=source,
    )


def _contacts(value: Any) -> ContactsSpec:
    if isinstance(value, int):
        return ContactsSpec(distribution="fixed", value=value)
    return ContactsSpec(
        distribution=value["distribution"],
        value=value.get("value", 4),
        low=value.get("min", 1),
        high=value.get("max", 4),
        mean=float(value.get("mean", 4.0)),
    )


def _reg(value: dict[str, Any]) -> RegSpec:
    default = RegSpec()
    return RegSpec(
        contacts=_contacts(value["contacts"]) if "contacts" in value else default.contacts,
        refreshes_per_hour=float(value.get("refreshes_per_hour", default.refreshes_per_hour)),
        expiries_per_hour=float(value.get("expiries_per_hour", default.expiries_per_hour)),
        reregister_after=float(value.get("reregister_after", default.reregister_after)),
        register_expires=int(value.get("register_expires", default.register_expires)),
    )


def _lists(value: dict[str, Any]) -> ListsSpec:
    size = value.get("size", 8)
    if isinstance(size, int):
        spec = ListSizeSpec(distribution="fixed", value=size)
    else:
        spec = ListSizeSpec(
            distribution=size["distribution"],
            value=size.get("value", 8),
            low=size.get("min", 1),
            high=size.get("max", 100),
            median=float(size.get("median", 8.0)),
            sigma=float(size.get("sigma", 0.5)),
        )
    return ListsSpec(count=int(value.get("count", 100)), size=spec)


def _link(network: dict[str, Any]) -> LinkSpec:
    lat = network.get("latency", {"kind": "constant", "value": 0.01})
    latency = Latency(
        kind=lat["kind"],
        value=float(lat.get("value", 0.01)),
        low=float(lat.get("low", 0.0)),
        high=float(lat.get("high", 0.0)),
        median=float(lat.get("median", 0.01)),
        sigma=float(lat.get("sigma", 0.5)),
    )
    return LinkSpec(
        latency=latency,
        loss=float(network.get("loss", 0.0)),
        duplication=float(network.get("duplication", 0.0)),
        reorder=float(network.get("reorder", 0.0)),
        reorder_delay=float(network.get("reorder_delay", 0.05)),
    )


def _check_semantics(data: dict[str, Any], source: str) -> None:
    """Cross-field rules JSON Schema cannot say simply."""
    contacts = data.get("contacts")
    if isinstance(contacts, dict):
        dist = contacts["distribution"]
        needed = {"fixed": ["value"], "uniform": ["min", "max"], "poisson": ["mean"]}[dist]
        for name in needed:
            if name not in contacts:
                raise WorkloadError(f"{source}: contacts.{name}: required for {dist} contacts")
        if dist == "uniform" and contacts["min"] > contacts["max"]:
            raise WorkloadError(f"{source}: contacts.min: greater than contacts.max")
    lat = data.get("network", {}).get("latency")
    if lat and lat["kind"] == "uniform" and lat.get("low", 0) > lat.get("high", 0):
        raise WorkloadError(f"{source}: network.latency.low: greater than network.latency.high")
    notifier = data.get("notifier", {})
    if notifier.get("min_expires", 60) > notifier.get("max_expires", 3600):
        raise WorkloadError(f"{source}: notifier.min_expires: greater than notifier.max_expires")
    servers, agents = data.get("servers", 1), data.get("agents", 1)
    farm = servers > 1 or agents > 1
    users = data.get("internal_users", {}).get("count", 1)
    if users > 1 and (data.get("churn_per_hour", 0) > 0 or farm
                      or data.get("topology", "single") != "single"):
        raise WorkloadError(f"{source}: internal_users: more than one internal user needs "
                            "topology single, no farm and churn_per_hour 0")
    if farm and data.get("topology", "single") != "single":
        raise WorkloadError(f"{source}: servers: a farm (servers/agents > 1) needs topology single")
    package = data.get("package", "presence")
    if package != "presence" and (farm or data.get("topology", "single") != "single"
                                  or users > 1):
        raise WorkloadError(f"{source}: package: {package} needs topology single, no farm and "
                            "one internal user")
    for name, wanted in (("reg", "reg"), ("lists", "presence-list")):
        if name in data and package != wanted:
            raise WorkloadError(f"{source}: {name}: only for package {wanted}")
    size = data.get("lists", {}).get("size")
    if isinstance(size, dict):
        dist = size["distribution"]
        needed = {"fixed": ["value"], "uniform": ["min", "max"],
                  "lognormal": ["median", "min", "max"]}[dist]
        for name in needed:
            if name not in size:
                raise WorkloadError(f"{source}: lists.size.{name}: required for {dist} sizes")
        if dist != "fixed" and size["min"] > size["max"]:
            raise WorkloadError(f"{source}: lists.size.min: greater than lists.size.max")
    for index, fault in enumerate(data.get("faults", [])):
        if fault["kind"] in ("outage", "partition") and "duration" not in fault:
            raise WorkloadError(f"{source}: faults[{index}].duration: required for {fault['kind']}")
        if "node" in fault and fault["node"] >= servers:
            raise WorkloadError(
                f"{source}: faults[{index}].node: {fault['node']} is not below servers ({servers})"
            )
