"""The key/value tables.

One row per key in ``kv_keys``; the elements of hashes, sets, sorted sets and lists live in one
table per type, under the key's integer ``id`` (so RENAME moves one row, and the element rows
do not repeat long key names). Every Redis DB index shares the tables: ``db`` leads the primary
key of ``kv_keys``, so one database's keys are one contiguous range of the b-tree, FLUSHDB is
one range delete, and sixteen (or a thousand) DB indexes cost nothing until used. (A table set
per index would need DDL on first use of an index, i.e. schema changes on the write path, and
multiply the schema every reader parses.)

Keys are ordered by ``h``, a 63-bit hash of the key, then the key: a point lookup computes
``h`` first and is still one b-tree search, and SCAN walks the keys in hash order, so its
cursor is just the next hash value (a number, as clients expect), needs no state on the node,
and survives inserts and deletes: every key present for the whole scan is returned, whichever
node serves each call. Hashes, sets and sorted sets order their elements the same way for
HSCAN/SSCAN/ZSCAN. Sorted sets add an index on ``(id, score, member)`` for ranks, score and
lex ranges. Lists keep contiguous integer positions ``head .. head+len-1`` (``head`` and
``len`` in ``kv_keys``): both ends and any index are one b-tree search.

``len`` holds every container's size (SQLite's ``count(*)`` walks the rows; LLEN/SCARD/HLEN/
ZCARD must not). ``kv_keys_expire`` indexes the keys that have an expiry, for the primary's
background deletion. Big containers are deleted lazily: their id moves to ``kv_garbage`` and
:func:`litecluster.kv.expire_cycle` removes their rows in bounded batches.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final, TypeVar

from litecluster.engine.sqlite import Connection, OperationalError, connect
from litecluster.kv.errors import SchemaError

SCHEMA_VERSION: Final = 1

STRING: Final = 0
LIST: Final = 1
SET: Final = 2
ZSET: Final = 3
HASH: Final = 4
TYPE_NAMES: Final = {STRING: "string", LIST: "list", SET: "set", ZSET: "zset", HASH: "hash"}
CHILD_TABLES: Final = {LIST: "kv_list", SET: "kv_set", ZSET: "kv_zset", HASH: "kv_hash"}

DDL: Final = (
    "CREATE TABLE IF NOT EXISTS kv_meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL)"
    " WITHOUT ROWID",
    """CREATE TABLE IF NOT EXISTS kv_keys(
        db INTEGER NOT NULL,      -- the Redis DB index
        h INTEGER NOT NULL,       -- key_hash(key): SCAN order and cursor
        key BLOB NOT NULL,
        type INTEGER NOT NULL,    -- 0 string, 1 list, 2 set, 3 zset, 4 hash
        expire_at INTEGER,        -- absolute Unix time in ms; NULL: no expiry
        value BLOB,               -- strings: the value
        id INTEGER,               -- containers: the id of their element rows
        len INTEGER,              -- containers: the number of elements
        head INTEGER,             -- lists: the position of the first element
        PRIMARY KEY(db, h, key)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS kv_keys_expire ON kv_keys(expire_at) WHERE expire_at IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS kv_hash(
        id INTEGER NOT NULL, h INTEGER NOT NULL, field BLOB NOT NULL, value BLOB NOT NULL,
        PRIMARY KEY(id, h, field)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS kv_set(
        id INTEGER NOT NULL, h INTEGER NOT NULL, member BLOB NOT NULL,
        PRIMARY KEY(id, h, member)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS kv_zset(
        id INTEGER NOT NULL, h INTEGER NOT NULL, member BLOB NOT NULL, score REAL NOT NULL,
        PRIMARY KEY(id, h, member)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS kv_zset_score ON kv_zset(id, score, member)",
    """CREATE TABLE IF NOT EXISTS kv_list(
        id INTEGER NOT NULL, pos INTEGER NOT NULL, value BLOB NOT NULL,
        PRIMARY KEY(id, pos)) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS kv_garbage(id INTEGER PRIMARY KEY, type INTEGER NOT NULL)",
)


T = TypeVar("T")


def has_schema(conn: Connection) -> bool:
    rows = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='kv_keys'"
    ).fetchall()
    return bool(rows[0][0])


def schema_version(conn: Connection) -> int | None:
    """The version of the key/value tables in this database (None: there are none)."""
    try:
        rows = conn.execute("SELECT value FROM kv_meta WHERE name='schema_version'").fetchall()
    except OperationalError:
        return None
    return int(rows[0][0]) if rows else None


def ensure_schema(conn: Connection) -> bool:
    """Create the tables if missing (on the primary, inside its write transaction); True if
    they were created. Refuses a database holding another version."""
    version = schema_version(conn)
    if version == SCHEMA_VERSION:
        return False
    if version is not None:
        raise SchemaError(
            f"the key/value tables are version {version}, this litecluster reads {SCHEMA_VERSION}",
            found=version,
        )
    for stmt in DDL:
        conn.execute(stmt)
    conn.execute(
        "INSERT OR IGNORE INTO kv_meta(name, value) VALUES ('schema_version', ?), ('next_id', 1)",
        (SCHEMA_VERSION,),
    )
    return True


_EMPTY = threading.local()


def empty_store() -> Connection:
    """An in-memory database holding the key/value tables and nothing else (one per thread)."""
    conn: Connection | None = getattr(_EMPTY, "conn", None)
    if conn is None:
        conn = connect(":memory:")
        ensure_schema(conn)
        _EMPTY.conn = conn
    return conn


def missing_tables(exc: OperationalError) -> bool:
    """Whether ``exc`` says the database has no key/value tables."""
    return "no such table: kv_" in str(exc)


def reading(conn: Connection | None, read: Callable[[Connection], T]) -> T:
    """``read(conn)``; or ``read`` of :func:`empty_store` when there is no database yet
    (``conn`` is None) or it has no key/value tables.

    Before the first key/value write reaches a copy, its file is missing or holds other
    tables only: a read then answers exactly as Redis does on an empty DB, without creating
    anything (a replica's file is the primary's to write). A ``read`` that fails half-way on
    the missing tables changed nothing, so running it again on the empty store is safe.
    """
    if conn is not None:
        try:
            return read(conn)
        except OperationalError as exc:
            if not missing_tables(exc):
                raise
    return read(empty_store())
