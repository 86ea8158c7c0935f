"""Set commands. Members are rows ``kv_set(id, h, member)`` ordered by the member's hash;
SINTER/SUNION/SDIFF (and their STORE forms) are one SQL compound SELECT over the sets' rows,
so SQLite does the merging and nothing is materialised in Python."""

from __future__ import annotations

from functools import partial

from litecluster.kv.db import Ctx, KeyRow, key_hash, typed
from litecluster.kv.elements import pop_count
from litecluster.kv.errors import SYNTAX, WRONGTYPE, fail
from litecluster.kv.keys import scan_elements
from litecluster.kv.parse import to_int
from litecluster.kv.registry import command
from litecluster.kv.reply import Reply, SetReply
from litecluster.kv.sampling import random_count, random_one, random_rows, sample
from litecluster.kv.schema import SET

MAX_COMPOUND = 400
"""More distinct sets than this are combined in Python (SQLite allows 500 compound terms)."""


def _is_member(ctx: Ctx, row: KeyRow, member: bytes) -> bool:
    return bool(
        ctx.conn.execute(
            "SELECT 1 FROM kv_set WHERE id=? AND h=? AND member=?",
            (row.id, key_hash(member), member),
        ).fetchall()
    )


def _add(ctx: Ctx, row: KeyRow, member: bytes) -> int:
    cur = ctx.conn.execute(
        "INSERT OR IGNORE INTO kv_set(id, h, member) VALUES (?, ?, ?)",
        (row.id, key_hash(member), member),
    )
    return int(cur.rowcount)


def _remove(ctx: Ctx, row: KeyRow, member: bytes) -> int:
    cur = ctx.conn.execute(
        "DELETE FROM kv_set WHERE id=? AND h=? AND member=?", (row.id, key_hash(member), member)
    )
    return int(cur.rowcount)


def _members(ctx: Ctx, row: KeyRow | None) -> list[bytes]:
    if row is None:
        return []
    rows = ctx.conn.execute(
        "SELECT member FROM kv_set WHERE id=? ORDER BY h, member", (row.id,)
    ).fetchall()
    return [bytes(m) for (m,) in rows]


@command("sadd")
def sadd(ctx: Ctx, a: list[bytes]) -> Reply:
    row = ctx.write_typed(a[1], SET) or ctx.new_container(a[1], SET)
    added = sum(_add(ctx, row, m) for m in a[2:])
    row.len += added
    ctx.save(row)
    if added:
        ctx.notify("sadd", a[1])
    return added


@command("srem")
def srem(ctx: Ctx, a: list[bytes]) -> Reply:
    row = ctx.write_typed(a[1], SET)
    if row is None:
        return 0
    return ctx.removed(row, sum(_remove(ctx, row, m) for m in a[2:]), "srem")


@command("smembers")
def smembers(ctx: Ctx, a: list[bytes]) -> Reply:
    return SetReply(list(_members(ctx, ctx.read_typed(a[1], SET))))


@command("sismember")
def sismember(ctx: Ctx, a: list[bytes]) -> Reply:
    row = ctx.read_typed(a[1], SET)
    return int(row is not None and _is_member(ctx, row, a[2]))


@command("smismember")
def smismember(ctx: Ctx, a: list[bytes]) -> Reply:
    row = ctx.read_typed(a[1], SET)
    return [int(row is not None and _is_member(ctx, row, m)) for m in a[2:]]


@command("scard")
def scard(ctx: Ctx, a: list[bytes]) -> Reply:
    return ctx.length(a[1], SET)


@command("spop")
def spop(ctx: Ctx, a: list[bytes]) -> Reply:
    if len(a) > 3:
        raise fail(SYNTAX)
    count = pop_count(a)
    row = ctx.write_typed(a[1], SET)
    if row is None:
        return None if count is None else SetReply([])
    if count == 0:
        return SetReply([])
    picked = [bytes(m) for (m,) in sample(
        ctx.conn, "kv_set", "member", row.id or 0, row.len, count or 1, distinct=True
    )]  # fmt: skip
    for m in picked:
        _remove(ctx, row, m)
    ctx.removed(row, len(picked), "spop")
    return picked[0] if count is None else SetReply(list(picked))


@command("srandmember")
def srandmember(ctx: Ctx, a: list[bytes]) -> Reply:
    if len(a) > 3:
        raise fail(SYNTAX)
    if len(a) == 2:
        return random_one(ctx, ctx.read_typed(a[1], SET), "kv_set", "member")
    count = random_count(a[2])
    rows = random_rows(ctx, ctx.read_typed(a[1], SET), "kv_set", "member", count)
    return [bytes(m) for (m,) in rows]


def _sources(ctx: Ctx, keys: list[bytes]) -> list[KeyRow | None]:
    """The sets named by ``keys`` (None: missing), WRONGTYPE if any is another type."""
    return [typed(ctx.read(k), SET) for k in keys]


def _combine_sql(op: str, ids: list[int]) -> tuple[str, list[int]]:
    """A compound SELECT of ``h, member`` over sets ``ids`` (``op``: INTERSECT/UNION/EXCEPT)."""
    term = "SELECT h, member FROM kv_set WHERE id=?"
    return f" {op} ".join([term] * len(ids)), ids


def _combine_py(ctx: Ctx, op: str, ids: list[int]) -> list[bytes]:
    sets = [set(_members(ctx, KeyRow(b"", 0, SET, id=i))) for i in ids]
    result = sets[0]
    for s in sets[1:]:
        if op == "INTERSECT":
            result &= s
        elif op == "UNION":
            result |= s
        else:
            result -= s
    return sorted(result, key=lambda m: (key_hash(m), m))


def _operand_ids(op: str, rows: list[KeyRow | None]) -> list[int] | None:
    """The ids to combine (None: the result is empty)."""
    if op == "INTERSECT" and any(r is None for r in rows):
        return None
    if op == "EXCEPT" and rows[0] is None:
        return None
    ids = [r.id for r in rows if r is not None and r.id is not None]
    if not ids:
        return None
    if op != "EXCEPT":
        return list(dict.fromkeys(ids))
    return ids


def combine(ctx: Ctx, op: str, keys: list[bytes]) -> list[bytes]:
    ids = _operand_ids(op, _sources(ctx, keys))
    if ids is None:
        return []
    if len(set(ids)) > MAX_COMPOUND:
        return _combine_py(ctx, op, ids)
    sql, params = _combine_sql(op, ids)
    rows = ctx.conn.execute(f"SELECT member FROM ({sql}) ORDER BY h, member", params).fetchall()
    return [bytes(m) for (m,) in rows]


def _store(ctx: Ctx, a: list[bytes], *, op: str, event: str) -> int:
    """SINTERSTORE, SUNIONSTORE, SDIFFSTORE: ``op`` of the sets ``a[2:]`` into ``a[1]``."""
    dst = a[1]
    ids = _operand_ids(op, _sources(ctx, a[2:]))
    new = ctx.new_container(dst, SET)
    if ids is not None:
        if len(set(ids)) > MAX_COMPOUND:
            for m in _combine_py(ctx, op, ids):
                new.len += _add(ctx, new, m)
        else:
            sql, params = _combine_sql(op, ids)
            cur = ctx.conn.execute(
                f"INSERT INTO kv_set(id, h, member) SELECT ?, h, member FROM ({sql})",
                [new.id, *params],
            )
            new.len = int(cur.rowcount)
    old = ctx.write(dst)
    if old is not None:
        ctx.delete(old)
        if new.len == 0:
            ctx.notify("del", dst)
    if new.len:
        ctx.save(new)
        ctx.notify(event, dst)
    return new.len


def _combination(ctx: Ctx, a: list[bytes], *, op: str) -> Reply:
    """SINTER, SUNION, SDIFF: ``op`` of the sets ``a[1:]``."""
    return SetReply(list(combine(ctx, op, a[1:])))


command("sinter")(partial(_combination, op="INTERSECT"))
command("sunion")(partial(_combination, op="UNION"))
command("sdiff")(partial(_combination, op="EXCEPT"))
command("sinterstore")(partial(_store, op="INTERSECT", event="sinterstore"))
command("sunionstore")(partial(_store, op="UNION", event="sunionstore"))
command("sdiffstore")(partial(_store, op="EXCEPT", event="sdiffstore"))


@command("sintercard")
def sintercard(ctx: Ctx, a: list[bytes]) -> Reply:
    numkeys = to_int(a[1], "ERR numkeys should be greater than 0")
    if numkeys < 1:
        raise fail("ERR numkeys should be greater than 0")
    if numkeys > len(a) - 2:
        raise fail("ERR Number of keys can't be greater than number of args")
    limit = 0
    j = 2 + numkeys
    while j < len(a):
        if a[j].upper() == b"LIMIT" and j + 1 < len(a):
            j += 1
            limit = to_int(a[j], "ERR LIMIT can't be negative")
            if limit < 0:
                raise fail("ERR LIMIT can't be negative")
        else:
            raise fail(SYNTAX)
        j += 1
    ids = _operand_ids("INTERSECT", _sources(ctx, a[2 : 2 + numkeys]))
    if ids is None:
        return 0
    if len(ids) > MAX_COMPOUND:
        n = len(_combine_py(ctx, "INTERSECT", ids))
        return min(n, limit) if limit else n
    sql, params = _combine_sql("INTERSECT", ids)
    lim = limit if limit else -1
    rows = ctx.conn.execute(f"SELECT count(*) FROM ({sql} LIMIT ?)", [*params, lim]).fetchall()
    return int(rows[0][0])


@command("smove")
def smove(ctx: Ctx, a: list[bytes]) -> Reply:
    src = ctx.write(a[1])
    dst = ctx.write(a[2])
    if src is None:
        return 0
    if src.type != SET or (dst is not None and dst.type != SET):
        raise fail(WRONGTYPE)
    if a[1] == a[2]:
        return int(_is_member(ctx, src, a[3]))
    if not _remove(ctx, src, a[3]):
        return 0
    src.len -= 1
    ctx.notify("srem", a[1])
    ctx.save(src)
    target = dst if dst is not None else ctx.new_container(a[2], SET)
    if _add(ctx, target, a[3]):
        ctx.added(target, 1, "sadd")
    return 1


@command("sscan")
def sscan(ctx: Ctx, a: list[bytes]) -> Reply:
    nxt, rows = scan_elements(ctx, a, SET, "kv_set", "member")
    return [nxt, [bytes(m) for (m,) in rows]]
