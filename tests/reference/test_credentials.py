"""reference.credentials: file format, lookup order, the ssh-like permission check, and that
no password reaches an error text, repr, trace, dump or status message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reference.config import AgentConfig
from reference.credentials import CredentialsError, CredentialStore, load
from reference.digest import Credentials

SECRET = "s3cret-Pa55"


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    return path


GOOD = f"""
profile: rfc6665
credentials:
  - {{subscriber: "sip:bob@lab.test", realm: lab.test, username: bob, password: {SECRET}}}
  - {{subscriber: "*", realm: lab.test, username: anyone, password: other}}
  - {{subscriber: "<sip:carol@LAB.test>", username: carol, password: c}}
"""


def test_lookup_most_specific_first(tmp_path: Path) -> None:
    store = load(_write(tmp_path / "agent.yaml", GOOD))
    assert len(store) == 3
    bob = store.lookup("<sip:bob@LAB.TEST>", "lab.test")
    assert bob is not None and bob.username == "bob" and bob.password == SECRET
    anyone = store.lookup("sip:dave@lab.test", "lab.test")
    assert anyone is not None and anyone.username == "anyone"
    carol = store.lookup("sip:carol@lab.test", "elsewhere")
    assert carol is not None and carol.username == "carol"
    assert store.lookup("sip:dave@lab.test", "elsewhere") is None
    # The agent configuration in the same file still loads (credentials: is skipped there).
    assert AgentConfig.from_yaml(tmp_path / "agent.yaml").profile == "rfc6665"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o622])
def test_group_or_other_access_is_refused_like_ssh(tmp_path: Path, mode: int) -> None:
    path = _write(tmp_path / "creds.yaml", GOOD, mode)
    with pytest.raises(CredentialsError) as err:
        load(path)
    text = str(err.value)
    assert f"mode {mode:04o}" in text and "chmod 600" in text and "\n" not in text
    assert SECRET not in text


def test_agent_config_without_credentials_may_be_world_readable(tmp_path: Path) -> None:
    path = _write(tmp_path / "agent.yaml", "profile: ser\n", 0o644)
    assert len(load(path, required=False)) == 0
    with pytest.raises(CredentialsError, match="no top-level 'credentials:'"):
        load(path)


@pytest.mark.parametrize(("text", "message"), [
    ("credentials: {a: 1}", "must be a list"),
    ("credentials: [x]", "entry 1: must be a mapping"),
    (f"credentials: [{{username: bob, password: {SECRET}, pasword: x}}]",
     "unknown field 'pasword'"),
    ("credentials: [{username: bob}]", "password must be a non-empty string"),
    (f"credentials: [{{username: bob, password: {SECRET}}}, {{username: b, password: {SECRET}}}]",
     "entry 2: a second entry"),
    (f"credentials: [{{username: '', password: {SECRET}}}]", "username must be"),
    (f"credentials:\n  - password: {SECRET}\n    username: [", "not valid YAML"),
])
def test_bad_files_give_one_line_errors_without_the_password(
        tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CredentialsError) as err:
        load(_write(tmp_path / "c.yaml", text))
    assert message in str(err.value)
    assert SECRET not in str(err.value) and "\n" not in str(err.value)


def test_reprs_hide_passwords(tmp_path: Path) -> None:
    store = load(_write(tmp_path / "c.yaml", GOOD))
    assert SECRET not in repr(store)
    credentials = store.lookup("sip:bob@lab.test", "lab.test")
    assert credentials is not None and SECRET not in repr(credentials)
    assert SECRET not in repr(store.merged(CredentialStore({("*", "*"): Credentials("u", "p")})))
