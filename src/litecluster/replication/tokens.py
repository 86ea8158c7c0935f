"""The cluster tokens a node accepts, and the one it presents, reloadable for rotation.

A token file holds one token per line (blank lines and ``#`` comments are skipped). The first
token is the one this node presents when it connects (replica to primary, forwarded HTTP
requests, tools); every token of the file is accepted from others. Rotating the token without
downtime is then three reloads on every node (docs/security.md): add the new token as a second
line (everyone accepts both), move it first (everyone presents it), drop the old one.

Comparisons are constant time (:func:`hmac.compare_digest`) and check every accepted token,
so how long a refusal takes says nothing about which token came close.
"""

from __future__ import annotations

import hmac
import logging
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

from litecluster.errors import ConfigError

log = logging.getLogger("litecluster.tokens")

MIN_TOKEN = 16
"""Characters a token has at least: anything shorter is guessable over the network."""


def parse_tokens(text: str, *, where: str) -> tuple[str, ...]:
    """The tokens of a token file's ``text``, in order, checked; ``where`` names the setting
    in errors."""
    tokens: list[str] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) < MIN_TOKEN:
            raise ConfigError(
                f"cluster token is too short (at least {MIN_TOKEN} characters)",
                field=where, line=n,
            )  # fmt: skip
        if any(c.isspace() for c in line):
            raise ConfigError("a cluster token has no spaces (one token per line)",
                              field=where, line=n)  # fmt: skip
        if line not in tokens:
            tokens.append(line)
    if not tokens:
        raise ConfigError(
            "no cluster token", field=where,
            hint="create one (openssl rand -hex 32 > token; chmod 600 token) and pass "
            "--token-file token, or set LITECLUSTER_TOKEN, on every node",
        )  # fmt: skip
    return tuple(tokens)


def read_token_file(path: Path) -> tuple[str, ...]:
    """The tokens of the file at ``path`` (a warning when others may read it)."""
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the token file: {exc.strerror}",
                          field="token_file", value=str(path)) from None  # fmt: skip
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("config.token_file_readable_by_others file=%s mode=%o", path, mode & 0o777)
    return parse_tokens(text, where="token_file")


class Tokens:
    """The accepted tokens (the first is presented); :meth:`reload` swaps them atomically.

    ``path`` is the token file reloaded on SIGHUP (None: the tokens are fixed, e.g. given in
    the environment or to an embedded replica)."""

    def __init__(self, tokens: Iterable[str], path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._tokens = self._check(tuple(tokens))
        self.path = path

    @staticmethod
    def _check(tokens: tuple[str, ...]) -> tuple[str, ...]:
        if not tokens or not all(tokens):
            raise ConfigError("no cluster token", field="token_file")
        return tokens

    @classmethod
    def from_file(cls, path: Path) -> Tokens:
        return cls(read_token_file(path), path)

    @property
    def current(self) -> str:
        """The token this node presents."""
        return self._tokens[0]

    @property
    def all(self) -> tuple[str, ...]:
        return self._tokens

    def accepts(self, candidate: str | bytes) -> bool:
        """Whether ``candidate`` is one of the accepted tokens (constant time per token, and
        every token compared)."""
        # surrogateescape: an HTTP header's bytes that are not UTF-8 arrive as lone surrogates
        # (aiohttp decodes them so); they are some other token's bytes, not an error.
        given = (
            candidate.encode("utf-8", "surrogateescape")
            if isinstance(candidate, str)
            else candidate
        )
        tokens = self._tokens
        found = False
        for token in tokens:
            found |= hmac.compare_digest(token.encode(), given)
        return found

    def reload(self) -> bool:
        """Read the token file again; True when the tokens changed. A file that cannot be
        read or holds no valid token raises :class:`~litecluster.errors.ConfigError` and
        leaves the tokens as they were."""
        if self.path is None:
            return False
        fresh = read_token_file(self.path)
        with self._lock:
            changed = fresh != self._tokens
            self._tokens = fresh
        if changed:
            log.warning("tokens.reloaded file=%s accepted=%d", self.path, len(fresh))
        return changed
