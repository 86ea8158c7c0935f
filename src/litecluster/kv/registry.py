"""The command table: each command's handler next to its :mod:`~litecluster.kv.catalog` entry.

Family modules register their handlers with ``@command("name")``; a handler receives the
command's :class:`~litecluster.kv.db.Ctx` and its arguments (``args[0]`` is the command's
lower-case name, as Redis's error texts use it) and returns a reply or raises
:class:`~litecluster.kv.errors.CommandError`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from litecluster.kv.catalog import CATALOG, CommandInfo
from litecluster.kv.db import Ctx
from litecluster.kv.reply import Reply

Handler = Callable[[Ctx, list[bytes]], Reply]


class Kind(enum.Enum):
    """Where a command runs, from its catalog flags (Redis's own ``readonly`` / ``write``)."""

    READ = "read"
    """Flagged ``readonly``: any copy answers it, a replica's or an embedded one's."""
    WRITE = "write"
    """Flagged ``write``: it runs on the primary."""
    SPECIAL = "special"
    """Neither: connection state, transactions, pub/sub, introspection, PING and ECHO. The
    server that receives it answers it (the executor has handlers for PING and ECHO only)."""


@dataclass(frozen=True, slots=True)
class Command:
    info: CommandInfo
    handler: Handler | None
    """None for the commands the server answers itself (connection state, pub/sub, MULTI)."""

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def kind(self) -> Kind:
        if self.info.readonly:
            return Kind.READ
        return Kind.WRITE if self.info.write else Kind.SPECIAL

    def arity_ok(self, argc: int) -> bool:
        arity = self.info.arity
        return argc == arity if arity > 0 else argc >= -arity


HANDLERS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of ``name`` (which must be catalogued)."""
    if name not in CATALOG:
        raise KeyError(f"{name!r} is not in the command catalog")

    def register(fn: Handler) -> Handler:
        if name in HANDLERS:
            raise KeyError(f"{name!r} registered twice")
        HANDLERS[name] = fn
        return fn

    return register
