"""Digest authentication of a UAC (RFC 3261 §22, RFC 7616, RFC 8760): challenges in,
credentials out. Pure functions and one small per-subscription state object; no I/O.

Rules of this file:
* `parse_challenges` reads one `WWW-Authenticate` / `Proxy-Authenticate` header value, which
  may hold several challenges (RFC 7235 §4.1); schemes other than Digest are skipped, a
  Digest challenge without realm or nonce is refused (`DigestError`), never guessed.
* Algorithms: MD5, SHA-256 and their `-sess` forms (RFC 8760 §2.1 adds SHA-256 to SIP). When
  one realm offers several, the strongest wins (RFC 8760 §2.4: SHA-256 before MD5); an
  algorithm we do not know (SHA-512-256, a typo) makes that challenge unanswerable.
* qop: `auth` when offered (a SUBSCRIBE has no body to protect), else `auth-int` over the
  request body, else none (RFC 2069 compatibility, RFC 3261 §22.4 item 8: no nc/cnonce).
* At most one answer per challenge (`DigestSession.answer`): a request that already
  answered a challenge and is challenged again in the same realm has had its credentials
  rejected, unless the new challenge says `stale=true` (RFC 7616 §3.3: the nonce only
  expired; retry with the new nonce, same password). Stale rounds are bounded
  (`MAX_STALE_ROUNDS`) so a server that always says stale cannot loop us.
* The cnonce comes from the injected `IdSource` (reference.ids): the OS CSPRNG on a network,
  a seeded stream in simulation. A nonce count starts at 1 per (realm, nonce) and grows by one
  for every request sent with that nonce (RFC 7616 §3.4: `nc`), refreshes included.
* Passwords never leave `Credentials` except into a hash; `repr` hides them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from reference.ids import IdSource
from reference.sip.grammar import TOKEN_CHARS, end_of_quoted, quote, unquote

# Bytes of random cnonce material (hex, so twice this many characters).
CNONCE_BYTES = 8
# Consecutive stale=true rounds answered for one request chain before giving up.
MAX_STALE_ROUNDS = 3
# Longest header value parsed as challenges (docs/limits.md); longer ones are refused.
MAX_CHALLENGE_BYTES = 4096

_HASHES = {"MD5": "md5", "SHA-256": "sha256"}
# Preference when a realm offers several algorithms, best first (RFC 8760 §2.4).
_PREFERENCE = ("SHA-256-sess", "SHA-256", "MD5-sess", "MD5")
ALGORITHMS = frozenset(_PREFERENCE)


@dataclass(frozen=True)
class Challenge:
    """One Digest challenge of a 401 (`www`) or 407 (`proxy`) response."""

    header: str                  # "WWW-Authenticate" or "Proxy-Authenticate"
    realm: str
    nonce: str
    algorithm: str = "MD5"       # canonical spelling, as in ALGORITHMS when known
    qop: tuple[str, ...] = ()    # offered qop values, lower case
    opaque: str | None = None
    stale: bool = False
    userhash: bool = False

    @property
    def answer_header(self) -> str:
        return "Proxy-Authorization" if self.header == "Proxy-Authenticate" else "Authorization"

    @property
    def supported(self) -> bool:
        """Whether we can answer it: a known algorithm and a qop we know (or none, RFC 2069
        style, except for -sess, whose cnonce RFC 2617 §3.2.2 allows only with a qop)."""
        if self.algorithm not in ALGORITHMS:
            return False
        if not self.qop:
            return not self.algorithm.endswith("-sess")
        return bool({"auth", "auth-int"} & set(self.qop))


@dataclass(frozen=True)
class Credentials:
    """A username and password for one realm (reference.credentials finds them)."""

    username: str
    password: str = field(repr=False)
    realm: str = "*"

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, realm={self.realm!r}, password=***)"


class DigestError(ValueError):
    """A challenge that cannot be read or answered; the text says why."""


# ---------------------------------------------------------------- parsing


def parse_challenges(header: str, value: str) -> list[Challenge]:
    """Every Digest challenge in one header value (other schemes are skipped)."""
    if len(value) > MAX_CHALLENGE_BYTES:
        raise DigestError(f"{header}: longer than {MAX_CHALLENGE_BYTES} bytes")
    out: list[Challenge] = []
    for scheme, params in _split_challenges(value, header):
        if scheme.lower() == "digest":
            out.append(_challenge(header, params))
    return out


def _split_challenges(value: str, header: str) -> list[tuple[str, dict[str, str]]]:
    """[(scheme, {param: unquoted value})]: `scheme p=v, p=v, scheme p=v ...`."""
    challenges: list[tuple[str, dict[str, str]]] = []
    i, n = 0, len(value)
    while i < n:
        while i < n and value[i] in " \t,":
            i += 1
        if i >= n:
            break
        start = i
        while i < n and value[i] in TOKEN_CHARS:
            i += 1
        word = value[start:i]
        j = i
        while j < n and value[j] in " \t":
            j += 1
        if not word:
            raise DigestError(f"bad {header}: unexpected {value[i:i + 10]!r}")
        if j < n and value[j] == "=" and challenges:
            # name=value: a parameter of the current challenge
            j += 1
            while j < n and value[j] in " \t":
                j += 1
            if j < n and value[j] == '"':
                end = end_of_quoted(value, j, header)
                param = unquote(value[j:end])
            else:
                end = j
                while end < n and value[end] not in ", \t":
                    end += 1
                param = value[j:end]
            name = word.lower()
            if name in challenges[-1][1]:
                raise DigestError(f"bad {header}: parameter {name} repeated")
            challenges[-1][1][name] = param
            i = end
            continue
        if j < n and value[j] == "=":
            raise DigestError(f"bad {header}: parameter before the scheme")
        challenges.append((word, {}))
        i = j
    return challenges


def _challenge(header: str, params: dict[str, str]) -> Challenge:
    realm, nonce = params.get("realm"), params.get("nonce")
    if realm is None or nonce is None:
        raise DigestError(f"bad {header}: Digest challenge without "
                          f"{'realm' if realm is None else 'nonce'}")
    algorithm = _canonical_algorithm(params.get("algorithm", "MD5"))
    qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
    return Challenge(header=header, realm=realm, nonce=nonce, algorithm=algorithm, qop=qop,
                     opaque=params.get("opaque"),
                     stale=params.get("stale", "").lower() == "true",
                     userhash=params.get("userhash", "").lower() == "true")


def _canonical_algorithm(text: str) -> str:
    for name in _PREFERENCE:
        if name.lower() == text.lower():
            return name
    return text


# ---------------------------------------------------------------- computing


def _hash(algorithm: str, text: str) -> str:
    name = _HASHES[algorithm.removesuffix("-sess")]
    return hashlib.new(name, text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Answer:
    """The header to add, and the pieces a test or trace may look at (never the password)."""

    header: str
    value: str
    realm: str
    nonce: str
    nc: int


def authorization(challenge: Challenge, credentials: Credentials, *, method: str, uri: str,
                  body: bytes = b"", nc: int = 1, cnonce: str = "") -> Answer:
    """The Authorization / Proxy-Authorization for one challenge (RFC 7616 §3.4)."""
    if not challenge.supported:
        raise DigestError(f"realm {challenge.realm!r}: algorithm {challenge.algorithm} or "
                          f"qop {','.join(challenge.qop)} not supported")
    algorithm = challenge.algorithm
    qop = "auth" if "auth" in challenge.qop else "auth-int" if challenge.qop else None
    if qop is not None and not cnonce:
        raise DigestError("qop needs a cnonce")
    ha1 = _hash(algorithm, f"{credentials.username}:{challenge.realm}:{credentials.password}")
    if algorithm.endswith("-sess"):
        ha1 = _hash(algorithm, f"{ha1}:{challenge.nonce}:{cnonce}")
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 = f"{a2}:{_hash(algorithm, body.decode('utf-8', 'surrogateescape'))}"
    ha2 = _hash(algorithm, a2)
    count = f"{nc:08x}"
    if qop is None:
        response = _hash(algorithm, f"{ha1}:{challenge.nonce}:{ha2}")
    else:
        response = _hash(algorithm, f"{ha1}:{challenge.nonce}:{count}:{cnonce}:{qop}:{ha2}")
    username = credentials.username
    if challenge.userhash:
        username = _hash(algorithm, f"{credentials.username}:{challenge.realm}")
    parts = [f"Digest username={quote(username)}", f"realm={quote(challenge.realm)}",
             f"nonce={quote(challenge.nonce)}", f"uri={quote(uri)}",
             f"response={quote(response)}", f"algorithm={algorithm}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={quote(challenge.opaque)}")
    if qop is not None:
        parts += [f"qop={qop}", f"nc={count}", f"cnonce={quote(cnonce)}"]
    if challenge.userhash:
        parts.append("userhash=true")
    return Answer(challenge.answer_header, ", ".join(parts), challenge.realm,
                  challenge.nonce, nc)


def best_per_realm(challenges: list[Challenge]) -> list[Challenge]:
    """One challenge per (header, realm): the strongest supported algorithm; a realm that
    offers nothing supported keeps its first challenge (so the caller can name it)."""
    chosen: dict[tuple[str, str], Challenge] = {}
    for challenge in challenges:
        key = (challenge.header, challenge.realm)
        old = chosen.get(key)
        if old is None or _rank(challenge) < _rank(old):
            chosen[key] = challenge
    return list(chosen.values())


def _rank(challenge: Challenge) -> int:
    if not challenge.supported:
        return len(_PREFERENCE)
    return _PREFERENCE.index(challenge.algorithm)


# ---------------------------------------------------------------- one subscription's state


class CredentialLookup(Protocol):
    """What `DigestSession` needs from a credential store (reference.credentials)."""

    def lookup(self, subscriber: str, realm: str) -> Credentials | None: ...


@dataclass
class DigestSession:
    """The challenges one subscription answers, cached per realm and reused on refreshes.

    `answer(...)` is called with the challenges of a 401/407 and decides: `None` (retry; the
    headers come from `headers_for`) or a reason string (the failure to report). After a
    2xx, the cached challenges keep being answered pre-emptively on every request, `nc`
    growing, until the server challenges again.
    """

    subscriber: str
    # (header, realm) -> the challenge answered last
    cached: dict[tuple[str, str], Challenge] = field(default_factory=dict)
    # (realm, nonce) -> the last nonce count sent
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    # realms whose credentials the request now in flight carries because it answered a
    # challenge (not pre-emptive reuse); a new non-stale challenge there is a rejection
    answered: set[tuple[str, str]] = field(default_factory=set)
    stale_rounds: int = 0
    retries: int = 0

    def judge(self, challenges: list[Challenge],
              has_credentials: Callable[[str], bool]) -> tuple[str | None, tuple[Challenge, ...]]:
        """Whether the challenges of a 401/407 can be answered, without changing anything:
        (None, the challenges to answer) or (the reason why not, ())."""
        if not challenges:
            return "challenge without a Digest challenge", ()
        usable: list[Challenge] = []
        reasons: list[str] = []
        stale_rounds = self.stale_rounds
        for challenge in best_per_realm(challenges):
            key = (challenge.header, challenge.realm)
            if not challenge.supported:
                reasons.append(f"realm {challenge.realm!r}: algorithm "
                               f"{challenge.algorithm} not supported")
                continue
            if not has_credentials(challenge.realm):
                reasons.append(f"no credentials for realm {challenge.realm!r}")
                continue
            previous = self.cached.get(key)
            if key in self.answered and not challenge.stale:
                same = previous is not None and previous.nonce == challenge.nonce
                reasons.append(f"credentials rejected by realm {challenge.realm!r}"
                               + (" (same nonce)" if same else ""))
                continue
            if challenge.stale:
                stale_rounds += 1
                if stale_rounds > MAX_STALE_ROUNDS:
                    reasons.append(f"realm {challenge.realm!r}: more than "
                                   f"{MAX_STALE_ROUNDS} stale nonces in a row")
                    continue
            usable.append(challenge)
        if reasons or not usable:
            # Answering some realms while another refused would only fail again.
            return "; ".join(reasons) or "no usable challenge", ()
        return None, tuple(usable)

    def adopt(self, challenges: tuple[Challenge, ...]) -> None:
        """Answer these challenges from now on (the request in flight is resent)."""
        for challenge in challenges:
            key = (challenge.header, challenge.realm)
            self.cached[key] = challenge
            self.answered.add(key)
            if challenge.stale:
                self.stale_rounds += 1
        self.retries += 1

    def answer(self, challenges: list[Challenge], store: CredentialLookup) -> str | None:
        """`judge` then `adopt`: None when the challenges are now answered, else why not."""
        reason, usable = self.judge(
            challenges, lambda realm: store.lookup(self.subscriber, realm) is not None)
        if reason is None:
            self.adopt(usable)
        else:
            self.answered.clear()  # the round is over: a later challenge is a new one
        return reason

    def accepted(self) -> None:
        """A final non-challenge response arrived: the cached challenges were good."""
        self.answered.clear()
        self.stale_rounds = 0

    def forget(self) -> None:
        """A new dialog to a possibly other server: nothing cached carries over."""
        self.cached.clear()
        self.counts.clear()
        self.answered.clear()
        self.stale_rounds = 0

    def headers_for(self, store: CredentialLookup, ids: IdSource, *, method: str, uri: str,
                    body: bytes = b"") -> list[tuple[str, str]]:
        """The authorization headers for the next request, one per cached realm."""
        out: list[tuple[str, str]] = []
        for (_, realm), challenge in self.cached.items():
            credentials = store.lookup(self.subscriber, realm)
            if credentials is None:
                continue
            count_key = (realm, challenge.nonce)
            nc = self.counts.get(count_key, 0) + 1
            self.counts[count_key] = nc
            cnonce = ids.hex(CNONCE_BYTES) if challenge.qop else ""
            answer = authorization(challenge, credentials, method=method, uri=uri,
                                   body=body, nc=nc, cnonce=cnonce)
            out.append((answer.header, answer.value))
        return out


def challenges_of(headers_items: list[tuple[str, str]]) -> list[Challenge]:
    """Every Digest challenge of a response's headers (`Headers.items()`), in order.
    Raises DigestError for an unreadable one."""
    out: list[Challenge] = []
    for name, value in headers_items:
        if name in ("WWW-Authenticate", "Proxy-Authenticate"):
            out.extend(parse_challenges(name, value))
    return out
