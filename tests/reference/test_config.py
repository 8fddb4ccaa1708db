"""AgentConfig: defaults, validation errors that name the parameter, YAML, string params."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference import Agent, AgentConfig, ConfigError


def test_defaults_are_sers() -> None:
    c = AgentConfig()
    assert (c.default_expiration, c.on_error_retry_time, c.wait_for_term_notify,
            c.resubscribe_delta, c.min_resubscribe_time, c.max_subscribe_delay,
            c.handle_presence_subscriptions, c.failover_timeout) == (3600, 120, 30, 30, 30,
                                                                     0, 1, 60)
    assert (c.presence_route, c.presence_outbound_proxy, c.additional_presence_headers) == \
        ("", "", "")
    assert c.profile == "rfc6665" and c.max_retry_time == 3600
    assert (c.t1, c.t2, c.t4) == (0.5, 4.0, 5.0)


def test_transaction_timeout_per_profile() -> None:
    assert AgentConfig(profile="ser").effective_transaction_timeout == 30.0
    assert AgentConfig(profile="rfc6665").effective_transaction_timeout == 32.0
    assert AgentConfig(profile="ser", transaction_timeout=5).effective_transaction_timeout == 5


def test_unknown_parameter_named_with_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"'default_expiraton'.*'default_expiration'"):
        AgentConfig.from_mapping({"default_expiraton": 10})
    with pytest.raises(ConfigError, match="'zzz'"):
        AgentConfig.from_mapping({"zzz": 1})


@pytest.mark.parametrize(("name", "value"), [
    ("default_expiration", "3600"), ("default_expiration", 1.5), ("default_expiration", True),
    ("t1", "fast"), ("presence_route", 5), ("seed", None),
])
def test_ill_typed_parameter_named(name: str, value: object) -> None:
    with pytest.raises(ConfigError, match=repr(name)):
        AgentConfig.from_mapping({name: value})


@pytest.mark.parametrize(("name", "value"), [
    ("default_expiration", 0), ("on_error_retry_time", -1), ("wait_for_term_notify", 0),
    ("min_resubscribe_time", 0), ("t1", 0.0), ("resubscribe_delta", -1),
    ("max_subscribe_delay", -3), ("profile", "kamailio"), ("local_address", "nohost"),
    ("local_address", "h:99999"), ("trace", 2), ("handle_presence_subscriptions", 5),
])
def test_out_of_range_parameter_named(name: str, value: object) -> None:
    with pytest.raises(ConfigError, match=name):
        AgentConfig.from_mapping({name: value})


def test_t2_not_below_t1() -> None:
    with pytest.raises(ConfigError, match="t2"):
        AgentConfig.from_mapping({"t1": 5.0, "t2": 4.0})


def test_int_accepted_for_float() -> None:
    assert AgentConfig.from_mapping({"t1": 1}).t1 == 1.0


def test_yaml_loading(tmp_path: Path) -> None:
    f = tmp_path / "a.yaml"
    f.write_text("profile: ser\ndefault_expiration: 600\npresence_route: '<sip:p;lr>'\n")
    c = AgentConfig.from_yaml(f)
    assert c.profile == "ser" and c.default_expiration == 600
    assert c.presence_route == "<sip:p;lr>"
    nested = tmp_path / "b.yaml"
    nested.write_text("agent:\n  seed: 9\nother: {x: 1}\n")
    assert AgentConfig.from_yaml(nested).seed == 9
    empty = tmp_path / "c.yaml"
    empty.write_text("")
    assert AgentConfig.from_yaml(empty) == AgentConfig()


def test_yaml_errors_name_file_and_parameter(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("default_expiration: soon\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*'default_expiration'"):
        AgentConfig.from_yaml(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        AgentConfig.from_yaml(broken)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        AgentConfig.from_yaml(listy)
    with pytest.raises(ConfigError, match="cannot read"):
        AgentConfig.from_yaml(tmp_path / "missing.yaml")


def test_with_params_strings() -> None:
    c = AgentConfig().with_params({"default_expiration": "60", "t1": "0.25",
                                   "profile": "ser", "presence_route": "<sip:x;lr>"})
    assert (c.default_expiration, c.t1, c.profile, c.presence_route) == \
        (60, 0.25, "ser", "<sip:x;lr>")
    with pytest.raises(ConfigError, match="'default_expiration' must be an integer"):
        AgentConfig().with_params({"default_expiration": "1h"})
    with pytest.raises(ConfigError, match="'t1' must be a number"):
        AgentConfig().with_params({"t1": "x"})
    with pytest.raises(ConfigError, match="'nope'"):
        AgentConfig().with_params({"nope": "1"})
    with pytest.raises(ConfigError, match="default_expiration must be > 0"):
        AgentConfig().with_params({"default_expiration": "0"})


def test_replace_validates_and_config_is_immutable() -> None:
    c = AgentConfig()
    assert c.replace(seed=5).seed == 5 and c.seed == 0
    with pytest.raises(ConfigError):
        c.replace(seed=-1)
    with pytest.raises(AttributeError):
        c.seed = 3  # type: ignore[misc]


@pytest.mark.parametrize(("name", "value"), [
    ("additional_presence_headers", "not a header line"),
    ("presence_route", "<sip:unterminated"),
    ("presence_outbound_proxy", "not a uri at all"),
])
def test_bad_string_parameters_named_when_the_agent_starts(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Agent(AgentConfig.from_mapping({name: value}))
