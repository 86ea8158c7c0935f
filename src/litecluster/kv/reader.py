"""The one way to run read-only key/value commands on a local SQLite file.

A node reads its own copy of the key/value database (replica or primary) and the Python
client reads its embedded replica's, both through a :class:`LocalReader`: a read-only
connection, one read transaction per batch (a multi-key read sees one state), and the empty
store before the first write. The file may be missing, or exist without the key/value tables
(the database was created by SQL, or the replica has not applied the first key/value write
yet): reads then answer as Redis does on an empty DB and nothing is created.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from litecluster.engine.sqlite import Connection, DatabaseError, connect
from litecluster.kv.commands import lookup, run
from litecluster.kv.db import Ctx
from litecluster.kv.errors import CommandError
from litecluster.kv.registry import Kind
from litecluster.kv.reply import Err, Reply
from litecluster.kv.schema import reading
from litecluster.kv.strings import read_string

log = logging.getLogger("litecluster.kv")


class LocalReader:
    """Read-only commands on the key/value database at ``path`` (which need not exist yet).

    Safe to use from any thread; calls are serialised on the one connection. Commands get
    Redis's replies; a write gets an error reply and runs nothing, as does a command only a
    server answers (MULTI, SUBSCRIBE, ...).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    def _file(self) -> Connection | None:
        """The connection to the file, opened once it exists (None before)."""
        if self._conn is None and self.path.exists():
            self._conn = connect(self.path, readonly=True)
        return self._conn

    def read(self, commands: Sequence[tuple[int, list[bytes]]], now_ms: int) -> list[Reply]:
        """The replies of ``commands`` (``(db_index, args)`` pairs), all read in one read
        transaction; expiry is judged against ``now_ms`` (Unix ms)."""

        def snapshot(conn: Connection) -> list[Reply]:
            conn.execute("BEGIN")
            try:
                return [_read_one(Ctx(conn, db, now_ms), args) for db, args in commands]
            finally:
                conn.execute("COMMIT")

        with self._lock:
            return reading(self._file(), snapshot)

    def get(self, db_index: int, key: bytes, now_ms: int) -> Reply:
        """GET ``key``: the value, None, or the WRONGTYPE error reply.

        The hot path of an embedded replica: one indexed SELECT (a single statement reads
        one consistent state, so no transaction) and no command dispatch."""

        def get(conn: Connection) -> Reply:
            try:
                return read_string(Ctx(conn, db_index, now_ms), key)
            except CommandError as exc:
                return Err(exc.message)

        with self._lock:
            return reading(self._file(), get)

    def select(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one SELECT over the key/value tables (those of an empty store before
        the file has them)."""
        with self._lock:
            return reading(self._file(), lambda conn: conn.execute(sql, params).fetchall())

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _read_one(ctx: Ctx, args: list[bytes]) -> Reply:
    """One command in the caller's read transaction, without the savepoint writes need; a bug
    in a command costs its client an error reply, not the connection (SQLite errors, the
    missing tables included, still propagate)."""
    found = lookup(args)
    if isinstance(found, Err):
        return found
    if found.kind is Kind.WRITE:
        return Err(f"ERR '{found.name}' writes: it runs on the primary, not on a local copy")
    if found.handler is None:
        return run(ctx, args)  # the error reply of a command the server answers
    try:
        return found.handler(ctx, [found.name.encode(), *args[1:]])
    except CommandError as exc:
        return Err(exc.message)
    except DatabaseError:
        raise
    except Exception as exc:
        log.exception("kv.command_failed command=%s", found.name)
        return Err(f"ERR internal error in '{found.name}' ({type(exc).__name__}); see the log")
