"""Hash commands. Fields are rows ``kv_hash(id, h, field, value)``, ordered by the field's
hash (HGETALL's order, and HSCAN's cursor)."""

from __future__ import annotations

from litecluster.kv.db import Ctx, KeyRow, key_hash
from litecluster.kv.errors import (
    NAN_OR_INF,
    NOT_A_FLOAT_HASH_VALUE,
    NOT_A_STRING_HASH_VALUE,
    SYNTAX,
    fail,
)
from litecluster.kv.keys import scan_elements
from litecluster.kv.parse import (
    INT64_MAX,
    add_long_double,
    format_long_double,
    incremented,
    parse_long_double,
    to_int,
    to_long_double,
)
from litecluster.kv.registry import command
from litecluster.kv.reply import OK, Map, Pairs, Reply
from litecluster.kv.sampling import random_count, random_one, random_rows
from litecluster.kv.schema import HASH


def _get(ctx: Ctx, row: KeyRow, field: bytes) -> bytes | None:
    rows = ctx.conn.execute(
        "SELECT value FROM kv_hash WHERE id=? AND h=? AND field=?", (row.id, key_hash(field), field)
    ).fetchall()
    return bytes(rows[0][0]) if rows else None


def _put(ctx: Ctx, row: KeyRow, field: bytes, value: bytes) -> bool:
    """Set a field; True if it is new (the caller counts it into ``row.len``)."""
    h = key_hash(field)
    cur = ctx.conn.execute(
        "UPDATE kv_hash SET value=? WHERE id=? AND h=? AND field=?", (value, row.id, h, field)
    )
    if cur.rowcount:
        return False
    ctx.conn.execute(
        "INSERT INTO kv_hash(id, h, field, value) VALUES (?, ?, ?, ?)", (row.id, h, field, value)
    )
    return True


def _hash_for_write(ctx: Ctx, key: bytes) -> KeyRow:
    row = ctx.write_typed(key, HASH)
    return row if row is not None else ctx.new_container(key, HASH)


def _hset(ctx: Ctx, a: list[bytes]) -> int:
    if len(a) % 2 == 1:
        raise fail(f"ERR wrong number of arguments for '{a[0].decode()}' command")
    row = _hash_for_write(ctx, a[1])
    added = 0
    for j in range(2, len(a), 2):
        added += _put(ctx, row, a[j], a[j + 1])
    ctx.added(row, added, "hset")
    return added


@command("hset")
def hset(ctx: Ctx, a: list[bytes]) -> Reply:
    return _hset(ctx, a)


@command("hmset")
def hmset(ctx: Ctx, a: list[bytes]) -> Reply:
    _hset(ctx, a)
    return OK


@command("hsetnx")
def hsetnx(ctx: Ctx, a: list[bytes]) -> Reply:
    row = _hash_for_write(ctx, a[1])
    if not row.new and _get(ctx, row, a[2]) is not None:
        return 0
    _put(ctx, row, a[2], a[3])
    ctx.added(row, 1, "hset")
    return 1


@command("hget")
def hget(ctx: Ctx, a: list[bytes]) -> Reply:
    row = ctx.read_typed(a[1], HASH)
    return None if row is None else _get(ctx, row, a[2])


@command("hmget")
def hmget(ctx: Ctx, a: list[bytes]) -> Reply:
    row = ctx.read_typed(a[1], HASH)
    return [None if row is None else _get(ctx, row, f) for f in a[2:]]


def _all(ctx: Ctx, row: KeyRow | None) -> list[tuple[bytes, bytes]]:
    if row is None:
        return []
    rows = ctx.conn.execute(
        "SELECT field, value FROM kv_hash WHERE id=? ORDER BY h, field", (row.id,)
    ).fetchall()
    return [(bytes(f), bytes(v)) for f, v in rows]


@command("hgetall")
def hgetall(ctx: Ctx, a: list[bytes]) -> Reply:
    pairs: list[tuple[Reply, Reply]] = list(_all(ctx, ctx.read_typed(a[1], HASH)))
    return Map(pairs)


@command("hkeys")
def hkeys(ctx: Ctx, a: list[bytes]) -> Reply:
    return [f for f, _ in _all(ctx, ctx.read_typed(a[1], HASH))]


@command("hvals")
def hvals(ctx: Ctx, a: list[bytes]) -> Reply:
    return [v for _, v in _all(ctx, ctx.read_typed(a[1], HASH))]


@command("hdel")
def hdel(ctx: Ctx, a: list[bytes]) -> Reply:
    row = ctx.write_typed(a[1], HASH)
    if row is None:
        return 0
    removed = 0
    for field in a[2:]:
        cur = ctx.conn.execute(
            "DELETE FROM kv_hash WHERE id=? AND h=? AND field=?", (row.id, key_hash(field), field)
        )
        removed += cur.rowcount
    return ctx.removed(row, removed, "hdel")


@command("hexists")
def hexists(ctx: Ctx, a: list[bytes]) -> Reply:
    row = ctx.read_typed(a[1], HASH)
    return int(row is not None and _get(ctx, row, a[2]) is not None)


@command("hlen")
def hlen(ctx: Ctx, a: list[bytes]) -> Reply:
    return ctx.length(a[1], HASH)


@command("hstrlen")
def hstrlen(ctx: Ctx, a: list[bytes]) -> Reply:
    row = ctx.read_typed(a[1], HASH)
    value = None if row is None else _get(ctx, row, a[2])
    return 0 if value is None else len(value)


@command("hincrby")
def hincrby(ctx: Ctx, a: list[bytes]) -> Reply:
    delta = to_int(a[3])
    row = _hash_for_write(ctx, a[1])
    old = None if row.new else _get(ctx, row, a[2])
    value = incremented(old, delta, NOT_A_STRING_HASH_VALUE)
    ctx.added(row, _put(ctx, row, a[2], b"%d" % value), "hincrby")
    return value


@command("hincrbyfloat")
def hincrbyfloat(ctx: Ctx, a: list[bytes]) -> Reply:
    delta = to_long_double(a[3])
    if not abs(delta) < float("inf"):
        raise fail("ERR value is NaN or Infinity")
    row = _hash_for_write(ctx, a[1])
    old = None if row.new else _get(ctx, row, a[2])
    value = to_long_double(b"0")
    if old is not None:
        parsed = parse_long_double(old)
        if parsed is None:
            raise fail(NOT_A_FLOAT_HASH_VALUE)
        value = parsed
    total = add_long_double(value, delta)
    if total is None:
        raise fail(NAN_OR_INF)
    text = format_long_double(total)
    ctx.added(row, _put(ctx, row, a[2], text), "hincrbyfloat")
    return text


@command("hrandfield")
def hrandfield(ctx: Ctx, a: list[bytes]) -> Reply:
    if len(a) == 2:
        return random_one(ctx, ctx.read_typed(a[1], HASH), "kv_hash", "field")
    count = random_count(a[2])
    if len(a) > 4 or (len(a) == 4 and a[3].upper() != b"WITHVALUES"):
        raise fail(SYNTAX)
    withvalues = len(a) == 4
    if withvalues and not -INT64_MAX // 2 <= count <= INT64_MAX // 2:
        raise fail("ERR value is out of range")
    rows = random_rows(ctx, ctx.read_typed(a[1], HASH), "kv_hash", "field, value", count)
    if withvalues:
        return Pairs([(bytes(f), bytes(v)) for f, v in rows])
    return [bytes(f) for f, _ in rows]


@command("hscan")
def hscan(ctx: Ctx, a: list[bytes]) -> Reply:
    nxt, rows = scan_elements(ctx, a, HASH, "kv_hash", "field, value")
    out: list[Reply] = [bytes(item) for field, value in rows for item in (field, value)]
    return [nxt, out]
