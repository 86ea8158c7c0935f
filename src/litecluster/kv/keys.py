"""Generic key commands (DEL, EXISTS, expiry, TYPE, KEYS, SCAN, RENAME, COPY, RANDOMKEY) and
the database-wide ones (DBSIZE, FLUSHDB, FLUSHALL, PING, ECHO)."""

from __future__ import annotations

import random
import re
from functools import partial
from typing import Any

from litecluster.engine.sqlite import Connection
from litecluster.kv.db import DATABASES, Ctx, KeyRow, key_hash
from litecluster.kv.errors import NO_SUCH_KEY, NOT_INTEGER, SYNTAX, fail
from litecluster.kv.glob import compile_glob
from litecluster.kv.parse import INT64_MAX, INT64_MIN, to_int
from litecluster.kv.registry import command
from litecluster.kv.reply import OK, PONG, Reply, Simple
from litecluster.kv.schema import CHILD_TABLES, HASH, LIST, SET, STRING, TYPE_NAMES, ZSET

_LIVE = "(expire_at IS NULL OR expire_at >= ?)"


@command("unlink")
@command("del")
def del_(ctx: Ctx, a: list[bytes]) -> Reply:
    n = 0
    for key in a[1:]:
        row = ctx.write(key)
        if row is not None:
            ctx.delete(row)
            ctx.notify("del", key)
            n += 1
    return n


@command("touch")
@command("exists")
def exists(ctx: Ctx, a: list[bytes]) -> Reply:
    return sum(1 for key in a[1:] if ctx.read(key) is not None)


def _expire(ctx: Ctx, a: list[bytes], *, seconds: bool, relative: bool) -> Reply:
    """EXPIRE, PEXPIRE (``relative``: from now), EXPIREAT and PEXPIREAT; ``seconds``: the
    time is in seconds, else in ms."""
    flags: set[bytes] = set()
    for opt in a[3:]:
        up = opt.upper()
        if up not in (b"NX", b"XX", b"GT", b"LT"):
            raise fail("ERR Unsupported option " + opt.decode("utf-8", "surrogateescape"))
        flags.add(up)
    if b"NX" in flags and flags & {b"XX", b"GT", b"LT"}:
        raise fail("ERR NX and XX, GT or LT options at the same time are not compatible")
    if flags >= {b"GT", b"LT"}:
        raise fail("ERR GT and LT options at the same time are not compatible")
    when = to_int(a[2])
    invalid = f"ERR invalid expire time in '{a[0].decode()}' command"
    if seconds:
        if when > INT64_MAX // 1000 or when < -(INT64_MIN // -1000):
            raise fail(invalid)
        when *= 1000
    base = ctx.now if relative else 0
    if when > INT64_MAX - base:
        raise fail(invalid)
    when += base
    row = ctx.write(a[1])
    if row is None:
        return 0
    current = row.expire_at
    if (
        (b"NX" in flags and current is not None)
        or (b"XX" in flags and current is None)
        or (b"GT" in flags and (current is None or when <= current))
        or (b"LT" in flags and current is not None and when >= current)
    ):
        return 0
    if when <= ctx.now:
        ctx.delete(row)
        ctx.notify("del", a[1])
    else:
        ctx.set_expire(row, when)
        ctx.notify("expire", a[1])
    return 1


command("expire")(partial(_expire, seconds=True, relative=True))
command("pexpire")(partial(_expire, seconds=False, relative=True))
command("expireat")(partial(_expire, seconds=True, relative=False))
command("pexpireat")(partial(_expire, seconds=False, relative=False))


def _ttl(ctx: Ctx, a: list[bytes], *, ms: bool, absolute: bool) -> int:
    """TTL and PTTL (the time left), EXPIRETIME and PEXPIRETIME (``absolute``: the Unix
    time); ``ms``: in milliseconds, else seconds. -2: no such key, -1: no expiry."""
    row = ctx.read(a[1])
    if row is None:
        return -2
    if row.expire_at is None:
        return -1
    ttl = max(row.expire_at if absolute else row.expire_at - ctx.now, 0)
    return ttl if ms else (ttl + 500) // 1000


command("ttl")(partial(_ttl, ms=False, absolute=False))
command("pttl")(partial(_ttl, ms=True, absolute=False))
command("expiretime")(partial(_ttl, ms=False, absolute=True))
command("pexpiretime")(partial(_ttl, ms=True, absolute=True))


@command("persist")
def persist(ctx: Ctx, a: list[bytes]) -> Reply:
    row = ctx.write(a[1])
    if row is None or row.expire_at is None:
        return 0
    ctx.set_expire(row, None)
    ctx.notify("persist", a[1])
    return 1


@command("type")
def type_(ctx: Ctx, a: list[bytes]) -> Reply:
    row = ctx.read(a[1])
    return Simple("none" if row is None else TYPE_NAMES[row.type])


@command("keys")
def keys(ctx: Ctx, a: list[bytes]) -> Reply:
    match = compile_glob(a[1])
    rows = ctx.conn.execute(
        f"SELECT key FROM kv_keys WHERE db=? AND {_LIVE}", (ctx.db, ctx.now)
    ).fetchall()
    return [k for (k,) in rows if match(k)]


_CURSOR = re.compile(rb"([+-]?)([0-9]+)|")


def parse_cursor(arg: bytes) -> int:
    """SCAN's cursor as ``strtoul`` reads it (a negative one wraps, as in C)."""
    m = _CURSOR.fullmatch(arg)
    if m is None:
        raise fail("ERR invalid cursor")
    if not m.group(2):
        return 0
    value = int(m.group(2))
    if value > 2**64 - 1:
        raise fail("ERR invalid cursor")
    return (-value) % 2**64 if m.group(1) == b"-" else value


def scan_options(
    a: list[bytes], start: int, *, allow_type: bool
) -> tuple[int, bytes | None, bytes | None]:
    """COUNT, MATCH (None for ``*``) and TYPE of a SCAN-family command."""
    count, pattern, type_name = 10, None, None
    i = start
    while i < len(a):
        opt, more = a[i].upper(), len(a) - i >= 2
        if opt == b"COUNT" and more:
            count = to_int(a[i + 1])
            if count < 1:
                raise fail(SYNTAX)
        elif opt == b"MATCH" and more:
            pattern = None if a[i + 1] == b"*" else a[i + 1]
        elif opt == b"TYPE" and more and allow_type:
            type_name = a[i + 1]
        else:
            raise fail(SYNTAX)
        i += 2
    return count, pattern, type_name


def scan_page(
    conn: Connection, sql: str, params: tuple[Any, ...], cursor: int, count: int
) -> tuple[int, list[Any]]:
    """One page of a hash-ordered table: rows with ``h >= cursor``, at least ``count`` of them
    when there are, plus every further row sharing the last one's ``h``; and the next cursor
    (0 at the end). ``sql`` selects ``h`` first and ends with ``h >= ?``."""
    if cursor > INT64_MAX:
        return 0, []
    rows: list[Any] = conn.execute(sql + " ORDER BY h LIMIT ?", (*params, cursor, count)).fetchall()
    if len(rows) < count:
        return 0, rows
    last = rows[-1][0]
    rest = conn.execute(sql.replace("h >= ?", "h = ?"), (*params, last)).fetchall()
    seen = {tuple(r) for r in rows if r[0] == last}
    rows.extend(r for r in rest if tuple(r) not in seen)
    return (last + 1 if last < INT64_MAX else 0), rows


def scan_elements(
    ctx: Ctx, a: list[bytes], type_: int, table: str, cols: str
) -> tuple[bytes, list[Any]]:
    """HSCAN, SSCAN and ZSCAN (``a``: key, cursor, options) over container ``table`` of
    ``type_``: the next cursor and the page's rows of ``cols`` whose first column (the field
    or member) matches MATCH. A missing key is cursor 0 and no rows."""
    cursor = parse_cursor(a[2])
    count, pattern, _ = scan_options(a, 3, allow_type=False)
    row = ctx.read_typed(a[1], type_)
    if row is None:
        return b"0", []
    sql = f"SELECT h, {cols} FROM {table} WHERE id=? AND h >= ?"
    nxt, rows = scan_page(ctx.conn, sql, (row.id,), cursor, count)
    match = compile_glob(pattern) if pattern is not None else None
    return b"%d" % nxt, [r[1:] for r in rows if match is None or match(r[1])]


@command("scan")
def scan(ctx: Ctx, a: list[bytes]) -> Reply:
    cursor = parse_cursor(a[1])
    count, pattern, type_name = scan_options(a, 2, allow_type=True)
    nxt, rows = scan_page(
        ctx.conn, "SELECT h, key, type, expire_at FROM kv_keys WHERE db=? AND h >= ?",
        (ctx.db,), cursor, count,
    )  # fmt: skip
    match = compile_glob(pattern) if pattern is not None else None
    wanted = type_name.lower() if type_name is not None else None
    out: list[Reply] = []
    for _h, key, t, exp in rows:
        if match is not None and not match(key):
            continue
        if wanted is not None and TYPE_NAMES[t].encode() != wanted:
            continue
        if exp is not None and exp < ctx.now:
            continue
        out.append(key)
    return [b"%d" % nxt, out]


def _move(ctx: Ctx, src: KeyRow, dst: Ctx, newkey: bytes) -> None:
    ctx.conn.execute("DELETE FROM kv_keys WHERE db=? AND h=? AND key=?", (ctx.db, src.h, src.key))
    moved = KeyRow(newkey, key_hash(newkey), src.type, src.expire_at, src.value, src.id,
                   src.len, src.head)  # fmt: skip
    dst.insert_row(moved)


def _rename(ctx: Ctx, a: list[bytes], *, nx: bool) -> Reply:
    """RENAME (OK) and RENAMENX (1, or 0 when the new name exists)."""
    row = ctx.write(a[1])
    if row is None:
        raise fail(NO_SUCH_KEY)
    if a[1] == a[2]:
        return 0 if nx else OK
    target = ctx.write(a[2])
    if target is not None:
        if nx:
            return 0
        ctx.delete(target)
    _move(ctx, row, ctx, a[2])
    ctx.notify("rename_from", a[1])
    ctx.notify("rename_to", a[2])
    return 1 if nx else OK


command("rename")(partial(_rename, nx=False))
command("renamenx")(partial(_rename, nx=True))


def copy_elements(ctx: Ctx, src: KeyRow, dst: KeyRow) -> None:
    table = CHILD_TABLES[src.type]
    cols = {LIST: "pos, value", SET: "h, member", ZSET: "h, member, score", HASH: "h, field, value"}
    ctx.conn.execute(
        f"INSERT INTO {table}(id, {cols[src.type]})"
        f" SELECT ?, {cols[src.type]} FROM {table} WHERE id=?",
        (dst.id, src.id),
    )


@command("copy")
def copy(ctx: Ctx, a: list[bytes]) -> Reply:
    replace, dst_db = False, ctx.db
    j = 3
    while j < len(a):
        opt = a[j].upper()
        if opt == b"REPLACE":
            replace = True
        elif opt == b"DB" and j + 1 < len(a):
            dst_db = to_int(a[j + 1])
            if not -(2**31) <= dst_db < 2**31:
                raise fail(NOT_INTEGER)
            if not 0 <= dst_db < DATABASES:
                raise fail("ERR DB index is out of range")
            j += 1
        else:
            raise fail(SYNTAX)
        j += 1
    if dst_db == ctx.db and a[1] == a[2]:
        raise fail("ERR source and destination objects are the same")
    src = ctx.read(a[1])
    if src is None:
        return 0
    dst_ctx = ctx if dst_db == ctx.db else ctx.other_db(dst_db)
    old = dst_ctx.write(a[2])
    if old is not None:
        if not replace:
            return 0
        dst_ctx.delete(old)
    if src.type == STRING:
        dst_ctx.put_string(a[2], src.value or b"", src.expire_at, None)
    else:
        new = dst_ctx.new_container(a[2], src.type)
        copy_elements(ctx, src, new)
        new.len, new.head, new.expire_at = src.len, src.head, src.expire_at
        dst_ctx.save(new)
    dst_ctx.notify("copy_to", a[2])
    return 1


@command("randomkey")
def randomkey(ctx: Ctx, a: list[bytes]) -> Reply:
    start = random.getrandbits(63)
    for lo in (start, 0):
        rows = ctx.conn.execute(
            f"SELECT key FROM kv_keys WHERE db=? AND h >= ? AND {_LIVE} ORDER BY h LIMIT 1",
            (ctx.db, lo, ctx.now),
        ).fetchall()
        if rows:
            return bytes(rows[0][0])
    return None


@command("dbsize")
def dbsize(ctx: Ctx, a: list[bytes]) -> Reply:
    rows = ctx.conn.execute(
        f"SELECT count(*) FROM kv_keys WHERE db=? AND {_LIVE}", (ctx.db, ctx.now)
    ).fetchall()
    return int(rows[0][0])


def _flush_options(a: list[bytes]) -> None:
    if len(a) > 2 or (len(a) == 2 and a[1].upper() not in (b"SYNC", b"ASYNC")):
        raise fail(SYNTAX)


def flush(ctx: Ctx, db: int | None) -> None:
    where, params = ("WHERE db=?", (db,)) if db is not None else ("", ())
    dbs = [db] if db is not None else [
        r[0] for r in ctx.conn.execute("SELECT DISTINCT db FROM kv_keys").fetchall()
    ]  # fmt: skip
    ctx.conn.execute(
        "INSERT INTO kv_garbage(id, type) SELECT id, type FROM kv_keys "
        + (where + " AND" if where else "WHERE")
        + " id IS NOT NULL",
        params,
    )
    ctx.conn.execute("DELETE FROM kv_keys " + where, params)
    ctx.flushed.extend(dbs)


@command("flushdb")
def flushdb(ctx: Ctx, a: list[bytes]) -> Reply:
    _flush_options(a)
    flush(ctx, ctx.db)
    return OK


@command("flushall")
def flushall(ctx: Ctx, a: list[bytes]) -> Reply:
    _flush_options(a)
    flush(ctx, None)
    return OK


@command("ping")
def ping(ctx: Ctx, a: list[bytes]) -> Reply:
    if len(a) > 2:
        raise fail("ERR wrong number of arguments for 'ping' command")
    return PONG if len(a) == 1 else a[1]


@command("echo")
def echo(ctx: Ctx, a: list[bytes]) -> Reply:
    return a[1]
