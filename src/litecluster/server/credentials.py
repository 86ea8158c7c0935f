"""Who may do what on a node's front doors: the cluster tokens and the users file.

Two kinds of credentials (docs/security.md):

- a **cluster token** (``Authorization: Bearer TOKEN`` on HTTP, ``AUTH default TOKEN`` or
  ``AUTH TOKEN`` on RESP) is what nodes, tools and the client library present; it may do
  everything (permission ``all``);
- a **user** of the users file (``users_file``, rqlite's ``-auth`` shape) presents a name and
  a password (HTTP Basic, or RESP ``AUTH user password``) and may do what its permissions say.

The users file is a JSON list of ``{"username": ..., "password": ..., "perms": [...]}``.
Passwords are bcrypt hashes (``litecluster hash-password`` makes one), never plain text: a
leaked file does not hand over the passwords. bcrypt is slow on purpose (a quarter of a second
or more at the default cost), so a verified password is remembered as a keyed digest (HMAC with a secret of
this process) and later requests of the same user with the same password are checked against
that digest in constant time; a failed attempt always pays the full bcrypt cost, an unknown
user included (checked against a dummy hash, so timing tells no name apart), and at most
:data:`MAX_HASHING` hashes run at once, in threads, so a flood of wrong passwords cannot stall
the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt

from litecluster.errors import ConfigError
from litecluster.replication.tokens import Tokens

log = logging.getLogger("litecluster.credentials")

PERMISSIONS = frozenset({
    "all", "execute", "query", "load", "backup", "status", "ready", "admin", "join",
    "join-read-only", "remove", "snapshot",
})  # fmt: skip
"""Permissions a users file may grant: rqlite's names (so an rqlite file loads) and ``admin``.
litecluster checks ``execute`` (writes), ``query`` (reads), ``status`` (/status, /metrics,
/nodes), ``ready`` (/readyz, /health when they are not open) and ``admin`` (switchover,
promote, follow); ``all`` grants every one."""

MAX_HASHING = 2
"""bcrypt checks running at once (each takes a core for a fraction of a second)."""

DEFAULT_ROUNDS = 12
_HASH_PREFIXES = (b"$2a$", b"$2b$", b"$2y$")
_DUMMY = b"$2b$12$PxG4cSCrSzPIJLCoGcsr9.aqf.Ni1qqXEPhQB8c4ji9Xn.yRS2.L2"
"""A hash at the default cost, checked for unknown users (its password is nobody's)."""


def hash_password(password: str, rounds: int = DEFAULT_ROUNDS) -> str:
    """A bcrypt hash of ``password`` for the users file."""
    if not password:
        raise ConfigError("a password must not be empty")
    if len(password.encode()) > 72:
        raise ConfigError("bcrypt uses at most 72 bytes of a password", hint="use a shorter one")
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode()


@dataclass(frozen=True)
class Identity:
    """Who a request comes from, and what it may do."""

    name: str
    """A user's name, or ``token`` for a cluster token holder."""
    perms: frozenset[str]
    forward: str | None = None
    """The ``Authorization`` value a replica sends on with this caller's forwarded requests
    (the caller's own credentials, so that the primary checks them again); None: the node's
    own token (the caller held a cluster token)."""

    def may(self, perm: str) -> bool:
        return "all" in self.perms or perm in self.perms


TOKEN_HOLDER = Identity("token", frozenset({"all"}))
ANYONE = Identity("anonymous", frozenset({"all"}))
"""Every request when authentication is off."""


@dataclass(frozen=True)
class User:
    username: str
    hashed: bytes
    perms: frozenset[str]


def parse_users(text: str, *, where: str) -> dict[str, User]:
    """The users of a users file's ``text``, checked (``where`` names it in errors)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"users file is not valid JSON: {exc}", field="users_file",
                          value=where) from None  # fmt: skip
    if not isinstance(data, list):
        raise ConfigError("users file must be a JSON list of users", field="users_file",
                          value=where)  # fmt: skip
    users: dict[str, User] = {}
    for i, entry in enumerate(data):
        ctx: dict[str, Any] = {"field": "users_file", "value": where, "entry": i}
        if not isinstance(entry, dict):
            raise ConfigError("each user is an object", **ctx)
        name, password, perms = entry.get("username"), entry.get("password"), entry.get("perms")
        if not isinstance(name, str) or not name or ":" in name or name == "default":
            raise ConfigError("username must be a non-empty string without ':' (and not "
                              "'default', the cluster token's RESP user)", **ctx)  # fmt: skip
        if name in users:
            raise ConfigError(f"user {name!r} is listed twice", **ctx)
        if not isinstance(password, str) or not password.encode().startswith(_HASH_PREFIXES):
            raise ConfigError(
                f"user {name!r}: password must be a bcrypt hash, not the password itself",
                hint="make one with: litecluster hash-password", **ctx,
            )  # fmt: skip
        if not isinstance(perms, list) or not all(isinstance(p, str) for p in perms):
            raise ConfigError(f"user {name!r}: perms must be a list of strings", **ctx)
        unknown = sorted(set(perms) - PERMISSIONS)
        if unknown:
            raise ConfigError(f"user {name!r}: unknown permission {unknown[0]!r}",
                              hint="known: " + ", ".join(sorted(PERMISSIONS)), **ctx)  # fmt: skip
        users[name] = User(name, password.encode(), frozenset(perms))
    return users


def read_users_file(path: Path) -> dict[str, User]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the users file: {exc.strerror}", field="users_file",
                          value=str(path)) from None  # fmt: skip
    return parse_users(text, where=str(path))


def basic_header(username: str, password: str) -> str:
    """The ``Authorization`` value of HTTP Basic for ``username`` and ``password``."""
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class Credentials:
    """The cluster tokens and the users of one node, reloadable (:meth:`reload`, on SIGHUP).

    ``users_file`` None: only the cluster tokens are accepted."""

    def __init__(self, tokens: Tokens, users_file: Path | None = None) -> None:
        self.tokens = tokens
        self.users_file = users_file
        self._users = read_users_file(users_file) if users_file is not None else {}
        self._key = secrets.token_bytes(32)
        self._verified: dict[str, bytes] = {}
        """Username -> keyed digest of the password last verified for it."""
        self._lock = threading.Lock()
        self._hashing: asyncio.Semaphore | None = None

    @property
    def users(self) -> dict[str, User]:
        return self._users

    def bearer(self, token: str) -> Identity | None:
        """The identity of a cluster token, None for any other string."""
        return TOKEN_HOLDER if self.tokens.accepts(token) else None

    def _digest(self, username: str, password: str) -> bytes:
        return hmac.new(self._key, f"{username}\0{password}".encode(), hashlib.sha256).digest()

    def _remembered(self, username: str, password: str) -> Identity | None:
        user = self._users.get(username)
        seen = self._verified.get(username)
        if user is None or seen is None:
            return None
        if not hmac.compare_digest(seen, self._digest(username, password)):
            return None
        return Identity(username, user.perms, basic_header(username, password))

    def check_password(self, username: str, password: str) -> Identity | None:
        """The user's identity when ``password`` is theirs (bcrypt; blocking: see
        :meth:`user`)."""
        got = self._remembered(username, password)
        if got is not None:
            return got
        user = self._users.get(username)
        raw = password.encode()
        if user is None or len(raw) > 72:
            bcrypt.checkpw(raw[:72], _DUMMY)  # the same time as a wrong password
            return None
        if not bcrypt.checkpw(raw, user.hashed):
            return None
        with self._lock:
            if self._users.get(username) is user:  # not replaced by a reload meanwhile
                self._verified[username] = self._digest(username, password)
        return Identity(username, user.perms, basic_header(username, password))

    async def user(self, username: str, password: str) -> Identity | None:
        """:meth:`check_password` off the event loop (at most :data:`MAX_HASHING` at once)."""
        got = self._remembered(username, password)
        if got is not None:
            return got
        if self._hashing is None:
            self._hashing = asyncio.Semaphore(MAX_HASHING)
        async with self._hashing:
            return await asyncio.to_thread(self.check_password, username, password)

    async def replica_login(self, username: str, password: str) -> bool:
        """An embedded replica's login on the replication port: a user that may join."""
        who = await self.user(username, password)
        return who is not None and (who.may("join-read-only") or who.may("join"))

    def reload(self) -> None:
        """Read the token file and the users file again. A file that does not load raises
        :class:`~litecluster.errors.ConfigError` and changes nothing."""
        users = read_users_file(self.users_file) if self.users_file is not None else {}
        self.tokens.reload()
        with self._lock:
            if users != self._users:
                log.warning("credentials.users_reloaded file=%s users=%d", self.users_file,
                            len(users))  # fmt: skip
            self._users = users
            self._verified = {}
