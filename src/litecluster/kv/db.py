"""One command's view of the key space: key rows, types, expiry, deletion, change events.

A :class:`Ctx` is made per command with the connection, the DB index and the node's clock.
Reads never change anything: a key whose expiry has passed is simply absent (each node
compares with its own clock). Writes that meet such a key delete it first, as Redis's
``lookupKeyWrite`` does, so a new value never inherits an expired one's elements. Every change
records a keyspace event ``(event, db, key)`` with Redis's event names; the executor returns
them so that the primary can annotate its txlog record and notify watchers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import xxhash

from litecluster.engine.sqlite import Connection
from litecluster.kv.errors import WRONGTYPE, fail
from litecluster.kv.schema import CHILD_TABLES, LIST, STRING

DATABASES = 16
"""DB indexes 0..15, redis-server's default ``databases`` (SELECT and COPY ... DB check it)."""

LAZY_FREE_MIN = 64
"""Containers with more elements are deleted lazily (their rows by :func:`expire_cycle`)."""


def key_hash(data: bytes) -> int:
    """The 63-bit hash that orders keys and elements (and is the SCAN cursor)."""
    return xxhash.xxh3_64_intdigest(data) >> 1


EVENT_CLASSES = {
    **dict.fromkeys(("del", "expire", "persist", "rename_from", "rename_to", "copy_to"), "g"),
    **dict.fromkeys(("set", "setrange", "incrby", "incrbyfloat", "append"), "$"),
    **dict.fromkeys(("lpush", "rpush", "lpop", "rpop", "linsert", "lset", "lrem", "ltrim"), "l"),
    **dict.fromkeys(("sadd", "srem", "spop", "sinterstore", "sunionstore", "sdiffstore"), "s"),
    **dict.fromkeys(("hset", "hdel", "hincrby", "hincrbyfloat"), "h"),
    **dict.fromkeys(("zadd", "zincr", "zrem", "zpopmin", "zpopmax", "zremrangebyscore",
                     "zremrangebyrank", "zremrangebylex"), "z"),
    "expired": "x",
}  # fmt: skip
"""The class letter of each keyspace event, as in ``notify-keyspace-events`` (g generic,
$ string, l list, s set, h hash, z sorted set, x expired)."""

_SELECT_KEY = (
    "SELECT type, expire_at, value, id, len, head FROM kv_keys WHERE db=? AND h=? AND key=?"
)


@dataclass(slots=True)
class KeyRow:
    key: bytes
    h: int
    type: int
    expire_at: int | None = None
    value: bytes | None = None
    id: int | None = None
    len: int = 0
    head: int = 0
    new: bool = False
    """Not in the table yet (a container being created): :meth:`Ctx.save` inserts it."""


def typed(row: KeyRow | None, type_: int) -> KeyRow | None:
    """``row`` itself, or the WRONGTYPE error if it is a key of another type."""
    if row is not None and row.type != type_:
        raise fail(WRONGTYPE)
    return row


@dataclass(slots=True)
class Ctx:
    conn: Connection
    db: int
    now: int
    """The node's clock, Unix time in ms: keys with ``expire_at < now`` are gone."""
    events: list[tuple[str, int, bytes]] = field(default_factory=list)
    flushed: list[int] = field(default_factory=list)
    """DB indexes emptied by FLUSHDB (their keys are not listed one by one)."""

    def other_db(self, db: int) -> Ctx:
        """The same command working on another DB index (COPY ... DB n)."""
        return Ctx(self.conn, db, self.now, self.events, self.flushed)

    def notify(self, event: str, key: bytes) -> None:
        self.events.append((event, self.db, key))

    # ---- reading --------------------------------------------------------------------------

    def _fetch(self, key: bytes, h: int) -> KeyRow | None:
        rows = self.conn.execute(_SELECT_KEY, (self.db, h, key)).fetchall()
        if not rows:
            return None
        t, exp, value, id_, n, head = rows[0]
        return KeyRow(key, h, t, exp, value, id_, n or 0, head or 0)

    def _expired(self, row: KeyRow) -> bool:
        return row.expire_at is not None and row.expire_at < self.now

    def read(self, key: bytes) -> KeyRow | None:
        """The live key (None if absent or expired)."""
        row = self._fetch(key, key_hash(key))
        return None if row is None or self._expired(row) else row

    def read_typed(self, key: bytes, type_: int) -> KeyRow | None:
        """:meth:`read`, WRONGTYPE if the key holds another type."""
        return typed(self.read(key), type_)

    def write(self, key: bytes) -> KeyRow | None:
        """The live key, for a command about to change it: an expired one is deleted now."""
        row = self._fetch(key, key_hash(key))
        if row is not None and self._expired(row):
            self.delete(row)
            self.notify("expired", key)
            return None
        return row

    def write_typed(self, key: bytes, type_: int) -> KeyRow | None:
        """:meth:`write`, WRONGTYPE if the key holds another type."""
        return typed(self.write(key), type_)

    def length(self, key: bytes, type_: int) -> int:
        """How many elements container ``key`` holds (0: no such key; WRONGTYPE if it is
        another type): HLEN, SCARD, ZCARD, LLEN."""
        row = self.read_typed(key, type_)
        return 0 if row is None else row.len

    def exists(self, key: bytes) -> bool:
        return self.read(key) is not None

    # ---- writing --------------------------------------------------------------------------

    def new_container(self, key: bytes, type_: int) -> KeyRow:
        """A container row for ``key`` (inserted by :meth:`save` once it has elements)."""
        rows = self.conn.execute(
            "UPDATE kv_meta SET value = value + 1 WHERE name='next_id' RETURNING value - 1"
        ).fetchall()
        return KeyRow(key, key_hash(key), type_, id=int(rows[0][0]), new=True)

    def save(self, row: KeyRow) -> None:
        """Store a container's new length (and head); an empty container is deleted."""
        if row.len <= 0:
            if not row.new:
                self.conn.execute(
                    "DELETE FROM kv_keys WHERE db=? AND h=? AND key=?", (self.db, row.h, row.key)
                )
                self.notify("del", row.key)
            return
        if row.new:
            self.conn.execute(
                "INSERT INTO kv_keys(db, h, key, type, expire_at, id, len, head)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (self.db, row.h, row.key, row.type, row.expire_at, row.id, row.len,
                 row.head if row.type == LIST else None),
            )  # fmt: skip
            row.new = False
        else:
            self.conn.execute(
                "UPDATE kv_keys SET len=?, head=? WHERE db=? AND h=? AND key=?",
                (row.len, row.head if row.type == LIST else None, self.db, row.h, row.key),
            )

    def added(self, row: KeyRow, count: int, event: str) -> None:
        """Account for a change of container ``row`` that added ``count`` elements (0: it
        changed some): store the new length (a new container is inserted) and record
        ``event``."""
        row.len += count
        self.save(row)
        self.notify(event, row.key)

    def removed(self, row: KeyRow, count: int, event: str) -> int:
        """Account for ``count`` elements just deleted from container ``row``: if any were,
        record ``event`` and store the new length (an emptied container is deleted, its
        ``del`` event after ``event``, as Redis orders them). Returns ``count``."""
        if count:
            row.len -= count
            self.notify(event, row.key)
            self.save(row)
        return count

    def put_string(
        self, key: bytes, value: bytes, expire_at: int | None, old: KeyRow | None
    ) -> None:
        """Set ``key`` to a string (``old``: what :meth:`write` returned for it)."""
        if old is not None and old.type != STRING:
            self._free_elements(old)
        self.conn.execute(
            "INSERT INTO kv_keys(db, h, key, type, expire_at, value) VALUES (?, ?, ?, 0, ?, ?)"
            " ON CONFLICT DO UPDATE SET type=0, expire_at=excluded.expire_at,"
            " value=excluded.value, id=NULL, len=NULL, head=NULL",
            (self.db, key_hash(key), key, expire_at, value),
        )

    def set_expire(self, row: KeyRow, expire_at: int | None) -> None:
        self.conn.execute(
            "UPDATE kv_keys SET expire_at=? WHERE db=? AND h=? AND key=?",
            (expire_at, self.db, row.h, row.key),
        )
        row.expire_at = expire_at

    def delete(self, row: KeyRow) -> None:
        """Delete a key and its elements (no event: the caller names the cause)."""
        if row.new:
            return
        self.conn.execute(
            "DELETE FROM kv_keys WHERE db=? AND h=? AND key=?", (self.db, row.h, row.key)
        )
        self._free_elements(row)

    def _free_elements(self, row: KeyRow) -> None:
        if row.type == STRING or row.id is None:
            return
        if row.len > LAZY_FREE_MIN:
            self.conn.execute("INSERT INTO kv_garbage(id, type) VALUES (?, ?)", (row.id, row.type))
        else:
            self.conn.execute(f"DELETE FROM {CHILD_TABLES[row.type]} WHERE id=?", (row.id,))

    def insert_row(self, row: KeyRow) -> None:
        """Insert a key row as it is (RENAME, COPY: the elements already exist under its id)."""
        self.conn.execute(
            "INSERT INTO kv_keys(db, h, key, type, expire_at, value, id, len, head)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (self.db, row.h, row.key, row.type, row.expire_at, row.value,
             row.id, row.len if row.id is not None else None,
             row.head if row.type == LIST else None),
        )  # fmt: skip


def expire_cycle(conn: Connection, now_ms: int, limit: int = 200) -> list[tuple[int, bytes]]:
    """Delete up to ``limit`` keys whose expiry is before ``now_ms`` and up to ``limit``
    element rows of lazily deleted containers. For the primary, inside its write transaction;
    returns the expired ``(db, key)`` pairs (for annotations and ``expired`` events)."""
    rows = conn.execute(
        "SELECT db, h, key, type, id, len FROM kv_keys"
        " WHERE expire_at IS NOT NULL AND expire_at < ? ORDER BY expire_at LIMIT ?",
        (now_ms, limit),
    ).fetchall()
    gone: list[tuple[int, bytes]] = []
    for db, h, key, type_, id_, n in rows:
        ctx = Ctx(conn, db, now_ms)
        ctx.delete(KeyRow(key, h, type_, id=id_, len=n or 0))
        gone.append((db, key))
    budget = limit
    for id_, type_ in conn.execute("SELECT id, type FROM kv_garbage LIMIT 16").fetchall():
        if budget <= 0:
            break
        budget -= _reclaim(conn, id_, type_, budget)
    return gone


def _reclaim(conn: Connection, id_: int, type_: int, budget: int) -> int:
    table = CHILD_TABLES[type_]
    cols = "pos" if type_ == LIST else "h, member" if table != "kv_hash" else "h, field"
    cur = conn.execute(
        f"DELETE FROM {table} WHERE id=? AND ({cols}) IN"
        f" (SELECT {cols} FROM {table} WHERE id=? LIMIT ?)",
        (id_, id_, budget),
    )
    deleted = int(cur.rowcount)
    if deleted < budget:
        conn.execute("DELETE FROM kv_garbage WHERE id=?", (id_,))
    return max(deleted, 1)


def set_expiry_ms(ctx: Ctx, arg: bytes, *, seconds: bool, relative: bool, cmd: str) -> int:
    """The absolute expiry (ms) of SET/GETEX's EX/PX/EXAT/PXAT argument, as Redis checks it."""
    from litecluster.kv.parse import INT64_MAX, to_int

    ms = to_int(arg)
    if ms <= 0 or (seconds and ms > INT64_MAX // 1000):
        raise fail(f"ERR invalid expire time in '{cmd}' command")
    if seconds:
        ms *= 1000
    if relative:
        ms += ctx.now
    if ms > INT64_MAX:
        raise fail(f"ERR invalid expire time in '{cmd}' command")
    return ms
