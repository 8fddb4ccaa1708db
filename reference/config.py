"""Agent parameters: SER presence_b2b names and defaults, plus this project's own.

`AgentConfig` is immutable. Build it from a mapping (`from_mapping`), a YAML file
(`from_yaml`) or command-line strings (`parse_param`). Unknown or ill-typed parameters raise
`ConfigError` naming the parameter, so a typo in a lab config never silently falls back to a
default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

PROFILES = ("ser", "rfc6665")
TRANSPORTS = ("udp", "tcp")
# RFC 3261 §25.1 token characters (an option tag is a token).
_TOKEN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")


class ConfigError(ValueError):
    """A parameter is unknown, has the wrong type, or is out of range."""


@dataclass(frozen=True)
class AgentConfig:
    """Every parameter of the agent. SER's names and defaults first (spec §2), then ours."""

    # --- SER presence_b2b module parameters (seconds where a time) ---
    default_expiration: int = 3600
    on_error_retry_time: int = 120
    wait_for_term_notify: int = 30
    resubscribe_delta: int = 30
    min_resubscribe_time: int = 30
    presence_route: str = ""
    presence_outbound_proxy: str = ""
    additional_presence_headers: str = ""
    max_subscribe_delay: int = 0
    handle_presence_subscriptions: int = 1
    # --- this project's parameters ---
    profile: str = "rfc6665"
    seed: int = 0
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    # SER's hard-coded FAILOVER guard (B14), now a parameter.
    failover_timeout: int = 60
    # rfc6665 back-off ceiling; also how long a permanent rejection waits.
    max_retry_time: int = 3600
    # Final-response timeout of the SUBSCRIBE client transaction. 0 = profile default:
    # SER tm's fr_timer of 30 s in `ser`, RFC 3261 Timer F (64*T1) in `rfc6665`.
    transaction_timeout: float = 0.0
    # Where this agent is reachable: Via sent-by and Contact host:port.
    local_address: str = "127.0.0.1:5060"
    # rfc6665: redirects followed per attempt before the chain counts as a failure.
    max_redirects: int = 5
    # rfc6665: a subscription that lived this long when a NOTIFY `terminated` (or a 481 to a
    # refresh) ended it may be replaced at once again; one that ended sooner makes the next
    # such retry wait the failure back-off (policy.restart_delay, docs/behaviour.md).
    stable_subscription_time: int = 60
    # Bound of each destination's MessageQueue (see docs/limits.md).
    queue_bound: int = 10000
    # Live internal subscriptions at most; beyond it Agent.subscribe raises ValueError.
    max_subscriptions: int = 1_000_000
    # 1: emit TraceEvent effects (JSON-lines traces); 0: none (large simulations).
    trace: int = 1
    # Transports the agent runs (RFC 3261 §18): "udp", or "udp,tcp" (the runtime then
    # listens on TCP too, and SUBSCRIBEs go over TCP when the next hop's URI says
    # transport=tcp or the request is larger than `udp_max_bytes`).
    transports: str = "udp"
    # RFC 3261 §18.1.1: requests larger than this go over TCP when TCP runs (1300 = a path
    # MTU of 1500 minus 200 bytes of margin).
    udp_max_bytes: int = 1300
    # rfc6665 only (issue 18): 1 = internal subscriptions with the same (record, subscriber,
    # package) share one SIP dialog; `ser` refuses 1 (SER kept one dialog each).
    share_subscriptions: int = 0
    # rfc6665 only: option tags sent in `Require` on every SUBSCRIBE (comma-separated); a
    # 420 drops the tags its Unsupported lists and the SUBSCRIBE is resent once.
    require_option_tags: str = ""

    # ------------------------------------------------------------------ building
    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> AgentConfig:
        """Build from a mapping of parameter names to values (YAML types)."""
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for name, value in values.items():
            if name not in known:
                raise ConfigError(f"unknown parameter {name!r}" + _suggest(str(name), known))
            kwargs[name] = _coerce(name, known[name].type, value)
        config = cls(**kwargs)
        config.validate()
        return config

    @classmethod
    def from_yaml(cls, path: str | Path) -> AgentConfig:
        """Load a YAML file whose top level is a mapping of parameters.

        A top-level key `agent:` holding that mapping is accepted too, so one file can carry
        other sections; a top-level `credentials:` list is skipped here (reference.credentials
        reads it).
        """
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if data is None:
            data = {}
        if isinstance(data, dict) and isinstance(data.get("agent"), dict):
            data = data["agent"]
        elif isinstance(data, dict):
            # Read by reference.credentials (with its permission check), not a parameter.
            data = {k: v for k, v in data.items() if k != "credentials"}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping of parameters")
        try:
            return cls.from_mapping(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc

    def replace(self, **changes: Any) -> AgentConfig:
        """A copy with some parameters changed (validated like `from_mapping`)."""
        merged = dataclasses.asdict(self)
        merged.update(changes)
        return AgentConfig.from_mapping(merged)

    def with_params(self, params: Mapping[str, str]) -> AgentConfig:
        """A copy with parameters given as strings (`--param NAME=VALUE`)."""
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for name, text in params.items():
            if name not in known:
                raise ConfigError(f"unknown parameter {name!r}" + _suggest(name, known))
            changes[name] = _from_text(name, known[name].type, text)
        return self.replace(**changes)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        if self.profile not in PROFILES:
            raise ConfigError(f"profile must be one of {', '.join(PROFILES)}, not {self.profile!r}")
        positive = (
            "default_expiration", "on_error_retry_time", "wait_for_term_notify",
            "min_resubscribe_time", "failover_timeout", "max_retry_time", "t1", "t2", "t4",
            "queue_bound", "max_subscriptions", "stable_subscription_time",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                # SER would arm zero/negative timers (undefined behaviour, spec §2.1).
                raise ConfigError(f"{name} must be > 0, not {getattr(self, name)!r}")
        non_negative = ("resubscribe_delta", "max_subscribe_delay", "transaction_timeout",
                        "max_redirects", "seed")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, not {getattr(self, name)!r}")
        if self.t2 < self.t1:
            raise ConfigError(f"t2 ({self.t2}) must not be below t1 ({self.t1})")
        wanted = self.transports.split(",")
        if not wanted or "udp" not in wanted or not set(wanted) <= set(TRANSPORTS) \
                or len(set(wanted)) != len(wanted):
            raise ConfigError(f"transports must be 'udp' or 'udp,tcp', not {self.transports!r}")
        if self.udp_max_bytes < 500:
            raise ConfigError(f"udp_max_bytes must be >= 500, not {self.udp_max_bytes!r}")
        if self.trace not in (0, 1):
            raise ConfigError("trace must be 0 or 1")
        if self.handle_presence_subscriptions not in (0, 1):
            raise ConfigError("handle_presence_subscriptions must be 0 or 1")
        if self.share_subscriptions not in (0, 1):
            raise ConfigError("share_subscriptions must be 0 or 1")
        if self.is_ser and self.share_subscriptions:
            # SER's presence_b2b kept one dialog per internal subscription (spec §1,
            # "left for future optimalizations"): the ser profile stays exact.
            raise ConfigError("share_subscriptions=1 is not available in profile ser")
        if self.is_ser and self.require_option_tags:
            raise ConfigError("require_option_tags is not available in profile ser")
        for tag in self.option_tags:
            if not tag or any(c not in _TOKEN for c in tag):
                raise ConfigError(f"require_option_tags: {tag!r} is not an option tag")
        host, sep, port = self.local_address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"local_address must be HOST:PORT, not {self.local_address!r}")

    # ------------------------------------------------------------------ derived values
    @property
    def is_ser(self) -> bool:
        return self.profile == "ser"

    @property
    def effective_transaction_timeout(self) -> float:
        if self.transaction_timeout > 0:
            return self.transaction_timeout
        return 30.0 if self.is_ser else 64 * self.t1

    @property
    def option_tags(self) -> tuple[str, ...]:
        """`require_option_tags` as a tuple (empty: no Require header)."""
        if not self.require_option_tags.strip():
            return ()
        return tuple(t.strip() for t in self.require_option_tags.split(","))

    @property
    def local_host(self) -> str:
        return self.local_address.rpartition(":")[0]



def _suggest(name: str, known: Mapping[str, object]) -> str:
    import difflib  # local: only needed on the error path

    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _coerce(name: str, type_name: object, value: Any) -> Any:
    """Check a YAML-typed value against the field's type; ints are accepted for floats."""
    if type_name == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"parameter {name!r} must be an integer, not {value!r}")
        return value
    if type_name == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"parameter {name!r} must be a number, not {value!r}")
        return float(value)
    if type_name == "str":
        if not isinstance(value, str):
            raise ConfigError(f"parameter {name!r} must be a string, not {value!r}")
        return value
    raise ConfigError(f"parameter {name!r} has an unsupported type")  # pragma: no cover


def _from_text(name: str, type_name: object, text: str) -> Any:
    try:
        if type_name == "int":
            return int(text)
        if type_name == "float":
            return float(text)
    except ValueError:
        kind = "an integer" if type_name == "int" else "a number"
        raise ConfigError(f"parameter {name!r} must be {kind}, not {text!r}") from None
    return text
