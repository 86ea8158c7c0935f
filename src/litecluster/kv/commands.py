"""The executor: ``execute(conn, db_index, now_ms, args)`` runs one Redis command on SQLite.

Routing: :func:`classify` is the one place that says where a command runs, before it runs:
Redis's exact error for an unknown command or a wrong number of arguments, else a
:class:`~litecluster.kv.registry.Kind`: ``READ`` (any copy answers it: the node's file, a
replica's, an embedded one's, see :mod:`litecluster.kv.reader`), ``WRITE`` (the primary's
writer runs it) or ``SPECIAL`` (the server that receives it answers it: AUTH, SELECT, MULTI,
SUBSCRIBE, PING, ...). :func:`lookup` gives the :class:`Command` itself (its handler, its
catalog entry) with the same errors.

Atomicity: every command runs inside its own ``SAVEPOINT``. An error reply rolls back
whatever the command did before it failed (Redis checks before it changes; a command here
may fail half-way and leave nothing), and a read sees one snapshot even when it reads many
keys. Inside the primary's writer the savepoint nests in the request's and the group's
transaction; on an autocommit connection it is the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import litecluster.kv.hashes
import litecluster.kv.keys
import litecluster.kv.lists
import litecluster.kv.sets
import litecluster.kv.strings
import litecluster.kv.zsets  # noqa: F401  (the families register their handlers)
from litecluster.engine.sqlite import Connection, OperationalError
from litecluster.kv.catalog import CATALOG, REDIS_ONLY
from litecluster.kv.db import Ctx
from litecluster.kv.errors import CommandError
from litecluster.kv.registry import HANDLERS, Command, Kind
from litecluster.kv.reply import Err, Reply
from litecluster.kv.schema import ensure_schema, missing_tables, reading

COMMANDS: Final[dict[bytes, Command]] = {
    name.encode(): Command(info, HANDLERS.get(name))
    for name, info in CATALOG.items()
    if "|" not in name
}
"""Every command litecluster knows, by lower-case name (bytes)."""


@dataclass(slots=True)
class Outcome:
    """What a command did: its reply and the changes to annotate and announce."""

    reply: Reply
    events: list[tuple[str, int, bytes]] = field(default_factory=list)
    """Keyspace events ``(event, db, key)`` with Redis's names (``set``, ``del``, ``lpush``,
    ``expired``, ...), in order."""
    flushed: list[int] = field(default_factory=list)
    """DB indexes FLUSHDB/FLUSHALL emptied (their keys are not listed in ``events``)."""

    @property
    def changed(self) -> set[tuple[int, bytes]]:
        """The ``(db, key)`` pairs the command changed."""
        return {(db, key) for _, db, key in self.events}


def _c_string(arg: bytes, limit: int) -> str:
    """``%.<limit>s`` of a C string: up to the first NUL, at most ``limit`` bytes."""
    nul = arg.find(b"\0")
    if nul >= 0:
        arg = arg[:nul]
    return arg[:limit].decode("utf-8", "surrogateescape")


def unknown_command(args: list[bytes]) -> Err:
    """redis-server's reply to a command it does not know."""
    shown = ""
    for arg in args[1:]:
        if len(shown.encode("utf-8", "surrogateescape")) >= 128:
            break
        room = 128 - len(shown.encode("utf-8", "surrogateescape"))
        shown += f"'{_c_string(arg, room)}' "
    name = _c_string(args[0], 128)
    return Err(f"ERR unknown command '{name}', with args beginning with: {shown}")


def wrong_arity(name: str) -> Err:
    """redis-server's reply to a call of ``name`` with the wrong number of arguments (an EXEC
    refused for any reason answers EXECABORT, even outside MULTI)."""
    text = f"wrong number of arguments for '{name}' command"
    if name == "exec":
        return Err(f"EXECABORT Transaction discarded because of: {text}")
    return Err(f"ERR {text}")


def lookup(args: list[bytes]) -> Command | Err:
    """The command ``args`` names, or the error reply Redis gives for it (unknown command,
    wrong number of arguments, or a Redis command litecluster does not support)."""
    name = args[0].lower()
    cmd = COMMANDS.get(name)
    if cmd is None:
        if name.decode("latin-1") in REDIS_ONLY:
            return Err(
                f"ERR command '{name.decode()}' is not supported by litecluster"
                " (see docs/kv.md for the supported commands)"
            )
        return unknown_command(args)
    if not cmd.arity_ok(len(args)):
        return wrong_arity(cmd.name)
    return cmd


def command_keys(cmd: Command, args: list[bytes]) -> list[bytes]:
    """The keys a call of ``cmd`` names (for WATCH-like checks and routing)."""
    if cmd.name == "sintercard":
        try:
            n = int(args[1])
        except ValueError:
            return []
        return args[2 : 2 + max(0, min(n, len(args) - 2))]
    return [args[i] for i in cmd.info.key_positions(len(args))]


def classify(args: list[bytes]) -> Kind | Err:
    """Where the command ``args`` names runs, or the error reply Redis gives for it (unknown
    command, wrong number of arguments, or a Redis command litecluster does not support)."""
    found = lookup(args)
    return found if isinstance(found, Err) else found.kind


def execute(conn: Connection, db_index: int, now_ms: int, args: list[bytes]) -> Outcome:
    """Run one command (``args[0]`` is its name) on the key/value tables of ``conn``.

    ``db_index`` is the client's selected DB; ``now_ms`` the node's clock (Unix ms), against
    which expiry is judged. Errors Redis would answer are returned as
    :class:`~litecluster.kv.reply.Err` replies; anything else (SQLite I/O errors) raises.
    A read on a database without the key/value tables answers as an empty one does; a write
    creates them.
    """
    if classify(args) is Kind.READ:
        return Outcome(reading(conn, lambda c: run(Ctx(c, db_index, now_ms), args)))
    ctx = Ctx(conn, db_index, now_ms)
    try:
        reply = run(ctx, args)
    except OperationalError as exc:
        if not missing_tables(exc):
            raise
        ensure_schema(conn)
        reply = run(ctx, args)
    return Outcome(reply, ctx.events, ctx.flushed)


def run(ctx: Ctx, args: list[bytes]) -> Reply:
    """Run one command with ``ctx``, in its own savepoint (rolled back on an error reply);
    a read inside the caller's transaction needs none.

    The building block of MULTI/EXEC and pipelines on the primary: several commands share
    one ``ctx`` (its ``events`` then list all their changes) inside the caller's transaction.
    """
    if not args:
        raise ValueError("a command needs at least its name")
    found = lookup(args)
    if isinstance(found, Err):
        return found
    if found.handler is None:
        return Err(f"ERR '{found.name}' is a connection command: the server answers it")
    argv = [found.name.encode(), *args[1:]]
    conn = ctx.conn
    if found.kind is Kind.READ and conn.in_transaction:
        # A read changes nothing, and the caller's transaction already is its snapshot.
        try:
            return found.handler(ctx, argv)
        except CommandError as exc:
            return Err(exc.message)
    mark = (len(ctx.events), len(ctx.flushed))
    conn.execute("SAVEPOINT kv")
    try:
        reply = found.handler(ctx, argv)
    except CommandError as exc:
        conn.execute("ROLLBACK TO kv")
        conn.execute("RELEASE kv")
        del ctx.events[mark[0] :], ctx.flushed[mark[1] :]
        return Err(exc.message)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK TO kv")
            conn.execute("RELEASE kv")
        del ctx.events[mark[0] :], ctx.flushed[mark[1] :]
        raise
    conn.execute("RELEASE kv")
    return reply
