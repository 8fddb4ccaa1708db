"""Digest credentials of the internal subscribers: where they come from and who sees them.

Rules of this file:
* Credentials are read from a YAML file's `credentials:` list, either the agent
  configuration (`b2b-agent --config FILE`) or a file of their own (`--credentials FILE`).
  Each entry names `subscriber` (a URI, or `*` for every subscriber), `realm` (or `*`),
  `username` and `password`; anything else is refused with a one-line error naming the
  file and entry.
* A file that holds passwords must not be readable by group or others, as ssh refuses a
  private key (`chmod 600 FILE`); the check runs before the file is parsed.
* Lookup: the most specific entry wins: (subscriber, realm), (subscriber, *), (*, realm),
  (*, *). Subscribers compare as bare URIs (without `<>`), scheme and host case-insensitive.
* Passwords never reach a log, trace, dump or error text: `repr` of every object here shows
  counts and usernames only, and errors name entries by index.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from reference.digest import Credentials

ANY = "*"
# Entries at most in one file (docs/limits.md): a typo'd generator cannot make lookups slow.
MAX_ENTRIES = 10_000
_FIELDS = ("subscriber", "realm", "username", "password")


class CredentialsError(ValueError):
    """A credentials file or entry is unusable; the text is one line, without passwords."""


class CredentialStore:
    """(subscriber, realm) -> Credentials, with `*` wildcards (see the rules above)."""

    def __init__(self, entries: Mapping[tuple[str, str], Credentials] | None = None) -> None:
        self._entries: dict[tuple[str, str], Credentials] = {}
        for (subscriber, realm), credentials in (entries or {}).items():
            self._entries[(_subscriber_key(subscriber), realm)] = credentials

    def lookup(self, subscriber: str, realm: str) -> Credentials | None:
        key = _subscriber_key(subscriber)
        for candidate in ((key, realm), (key, ANY), (ANY, realm), (ANY, ANY)):
            found = self._entries.get(candidate)
            if found is not None:
                return found
        return None

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __repr__(self) -> str:
        return f"CredentialStore({len(self._entries)} entries)"

    def merged(self, other: CredentialStore) -> CredentialStore:
        """A store with both sets of entries; `other` wins on the same (subscriber, realm)."""
        store = CredentialStore()
        store._entries = {**self._entries, **other._entries}
        return store

    @classmethod
    def from_list(cls, data: object, source: str) -> CredentialStore:
        """Build from the YAML value of `credentials:` (a list of mappings)."""
        if not isinstance(data, list):
            raise CredentialsError(f"{source}: credentials must be a list of entries")
        if len(data) > MAX_ENTRIES:
            raise CredentialsError(f"{source}: more than {MAX_ENTRIES} credentials entries")
        store = cls()
        for index, entry in enumerate(data, 1):
            where = f"{source}: credentials entry {index}"
            if not isinstance(entry, dict):
                raise CredentialsError(f"{where}: must be a mapping")
            unknown = sorted(str(k) for k in entry if k not in _FIELDS)
            if unknown:
                raise CredentialsError(f"{where}: unknown field {unknown[0]!r}")
            values: dict[str, str] = {}
            for name in _FIELDS:
                value = entry.get(name, ANY if name in ("subscriber", "realm") else None)
                if not isinstance(value, str) or not value:
                    raise CredentialsError(f"{where}: {name} must be a non-empty string")
                if any(c < " " or c == "\x7f" for c in value):
                    raise CredentialsError(f"{where}: {name} holds a control character")
                values[name] = value
            key = (_subscriber_key(values["subscriber"]), values["realm"])
            if key in store._entries:
                raise CredentialsError(f"{where}: a second entry for subscriber "
                                       f"{values['subscriber']!r} and realm {key[1]!r}")
            store._entries[key] = Credentials(values["username"], values["password"],
                                              values["realm"])
        return store


def load(path: str | Path, *, required: bool = True) -> CredentialStore:
    """The `credentials:` list of a YAML file (the agent configuration or a file of its
    own). `required=False`: a file without the key gives an empty store and skips the
    permission check (an agent configuration without passwords may be world-readable)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise CredentialsError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError:
        # The parser's message may quote the offending line, which may be a password.
        raise CredentialsError(f"{path}: not valid YAML") from None
    if not isinstance(data, dict) or "credentials" not in data:
        if required:
            raise CredentialsError(f"{path}: no top-level 'credentials:' list")
        return CredentialStore()
    check_private(file)
    return CredentialStore.from_list(data["credentials"], str(path))


def check_private(file: Path) -> None:
    """Refuse a file that group or others may read or write (ssh's rule for private keys)."""
    try:
        mode = file.stat().st_mode
    except OSError as exc:
        raise CredentialsError(f"{file}: cannot stat: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialsError(f"{file}: holds passwords but is accessible by others "
                               f"(mode {stat.S_IMODE(mode):04o}); run chmod 600 {file}")


def _subscriber_key(uri: str) -> str:
    if uri == ANY:
        return ANY
    text = uri.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    scheme, sep, rest = text.partition(":")
    if not sep:
        return text
    user, at, host = rest.rpartition("@")
    return f"{scheme.lower()}:{user}{at}{host.lower()}"
