"""Sorted set commands. Members are rows ``kv_zset(id, h, member, score)`` (a member's score
is one b-tree search away by its hash) and the index ``kv_zset_score(id, score, member)``
holds Redis's order (score, then member bytes) for ranges by rank, score and lex. A rank is a
count over that index (O(rank) in SQLite, O(log n) in Redis's skiplist)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

from litecluster.kv.db import Ctx, KeyRow, key_hash
from litecluster.kv.elements import index_span, pop_count
from litecluster.kv.errors import MIN_MAX_NOT_FLOAT, MIN_MAX_NOT_LEX, SYNTAX, fail
from litecluster.kv.keys import scan_elements
from litecluster.kv.parse import strtod, to_double, to_int
from litecluster.kv.registry import command
from litecluster.kv.reply import Double, Pairs, Reply
from litecluster.kv.schema import ZSET

_ORDER = {False: "ORDER BY score, member", True: "ORDER BY score DESC, member DESC"}


def _score_of(ctx: Ctx, row: KeyRow, member: bytes) -> float | None:
    rows = ctx.conn.execute(
        "SELECT score FROM kv_zset WHERE id=? AND h=? AND member=?",
        (row.id, key_hash(member), member),
    ).fetchall()
    return float(rows[0][0]) if rows else None


def _set_score(ctx: Ctx, row: KeyRow, member: bytes, score: float, new: bool) -> None:
    if new:
        ctx.conn.execute(
            "INSERT INTO kv_zset(id, h, member, score) VALUES (?, ?, ?, ?)",
            (row.id, key_hash(member), member, score),
        )
    else:
        ctx.conn.execute(
            "UPDATE kv_zset SET score=? WHERE id=? AND h=? AND member=?",
            (score, row.id, key_hash(member), member),
        )


def _delete_members(ctx: Ctx, row: KeyRow, members: list[bytes]) -> int:
    cur = ctx.conn.executemany(
        "DELETE FROM kv_zset WHERE id=? AND h=? AND member=?",
        [(row.id, key_hash(m), m) for m in members],
    )
    return int(cur.rowcount)


def _zadd(ctx: Ctx, a: list[bytes], *, incr_command: bool) -> Reply:
    flags: set[bytes] = {b"INCR"} if incr_command else set()
    ch = False
    idx = 2
    while idx < len(a):
        opt = a[idx].upper()
        if opt in (b"NX", b"XX", b"INCR", b"GT", b"LT"):
            flags.add(opt)
        elif opt == b"CH":
            ch = True
        else:
            break
        idx += 1
    elements = len(a) - idx
    if elements % 2 or not elements:
        raise fail(SYNTAX)
    nx, xx, gt, lt, incr = (o in flags for o in (b"NX", b"XX", b"GT", b"LT", b"INCR"))
    if nx and xx:
        raise fail("ERR XX and NX options at the same time are not compatible")
    if (gt and nx) or (lt and nx) or (gt and lt):
        raise fail("ERR GT, LT, and/or NX options at the same time are not compatible")
    if incr and elements > 2:
        raise fail("ERR INCR option supports a single increment-element pair")
    pairs = [(to_double(a[j]), a[j + 1]) for j in range(idx, len(a), 2)]
    row = ctx.write_typed(a[1], ZSET)
    added = updated = processed = 0
    score = 0.0
    if row is None and not xx:
        row = ctx.new_container(a[1], ZSET)
    if row is not None:
        for score, member in pairs:
            current = None if row.new and row.len == 0 else _score_of(ctx, row, member)
            if current is not None:
                if nx:
                    continue
                if incr:
                    score += current
                    if math.isnan(score):
                        raise fail("ERR resulting score is not a number (NaN)")
                if (lt and score >= current) or (gt and score <= current):
                    continue
                if score != current:
                    _set_score(ctx, row, member, score, new=False)
                    updated += 1
                processed += 1
            elif not xx:
                _set_score(ctx, row, member, score, new=True)
                row.len += 1
                added += 1
                processed += 1
        ctx.save(row)
        if added or updated:
            ctx.notify("zincr" if incr else "zadd", a[1])
    if incr:
        return Double(score) if processed else None
    return added + updated if ch else added


command("zadd")(partial(_zadd, incr_command=False))
command("zincrby")(partial(_zadd, incr_command=True))


@command("zrem")
def zrem(ctx: Ctx, a: list[bytes]) -> Reply:
    row = ctx.write_typed(a[1], ZSET)
    if row is None:
        return 0
    return ctx.removed(row, _delete_members(ctx, row, list(dict.fromkeys(a[2:]))), "zrem")


@command("zscore")
def zscore(ctx: Ctx, a: list[bytes]) -> Reply:
    row = ctx.read_typed(a[1], ZSET)
    score = None if row is None else _score_of(ctx, row, a[2])
    return None if score is None else Double(score)


@command("zmscore")
def zmscore(ctx: Ctx, a: list[bytes]) -> Reply:
    row = ctx.read_typed(a[1], ZSET)
    out: list[Reply] = []
    for member in a[2:]:
        score = None if row is None else _score_of(ctx, row, member)
        out.append(None if score is None else Double(score))
    return out


@command("zcard")
def zcard(ctx: Ctx, a: list[bytes]) -> Reply:
    return ctx.length(a[1], ZSET)


# ---- ranges ---------------------------------------------------------------------------------


def _range_bound(arg: bytes) -> tuple[float, bool]:
    """A ZRANGEBYSCORE bound: (value, exclusive), read with plain strtod as Redis does."""
    exclusive = arg[:1] == b"("
    value = strtod(arg[1:] if exclusive else arg)
    if value is None:
        raise fail(MIN_MAX_NOT_FLOAT)
    return value, exclusive


def score_range(lo: bytes, hi: bytes) -> tuple[str, list[Any]]:
    (mn, mnx), (mx, mxx) = _range_bound(lo), _range_bound(hi)
    sql = f"score {'>' if mnx else '>='} ? AND score {'<' if mxx else '<='} ?"
    return sql, [mn, mx]


def _lex_bound(arg: bytes, *, is_min: bool) -> tuple[str, list[Any]]:
    if arg == b"-":
        return ("1" if is_min else "0"), []
    if arg == b"+":
        return ("0" if is_min else "1"), []
    if arg[:1] not in (b"(", b"["):
        raise fail(MIN_MAX_NOT_LEX)
    op = (">" if is_min else "<") if arg[:1] == b"(" else (">=" if is_min else "<=")
    return f"member {op} ?", [arg[1:]]


def lex_range(lo: bytes, hi: bytes) -> tuple[str, list[Any]]:
    (s1, p1), (s2, p2) = _lex_bound(lo, is_min=True), _lex_bound(hi, is_min=False)
    return f"{s1} AND {s2}", p1 + p2


def _select(
    ctx: Ctx, row: KeyRow, where: str, params: list[Any], *, reverse: bool,
    offset: int = 0, limit: int = -1,
) -> list[tuple[bytes, float]]:  # fmt: skip
    if offset < 0 or limit == 0:
        return []
    rows = ctx.conn.execute(
        f"SELECT member, score FROM kv_zset WHERE id=? AND {where} {_ORDER[reverse]}"
        " LIMIT ? OFFSET ?",
        [row.id, *params, limit if limit > 0 else -1, offset],
    ).fetchall()
    return [(bytes(m), float(s)) for m, s in rows]


@dataclass(frozen=True, slots=True)
class _Range:
    """A range of ZRANGE and its kin: ``ranks`` (start, end) for a range by rank, else the
    WHERE clause over score or member with its parameters."""

    ranks: tuple[int, int] | None
    where: str = "1"
    params: tuple[Any, ...] = ()


def _parse_range(kind: str, lo: bytes, hi: bytes) -> _Range:
    """The bounds ``lo``, ``hi`` of a range by ``kind`` (RANK, BYSCORE or BYLEX), refused
    with redis-server's error before the key is looked at."""
    if kind == "RANK":
        return _Range((to_int(lo), to_int(hi)))
    where, params = score_range(lo, hi) if kind == "BYSCORE" else lex_range(lo, hi)
    return _Range(None, where, tuple(params))


def _in_range(
    ctx: Ctx, row: KeyRow, span: _Range, *, reverse: bool, offset: int = 0, limit: int = -1
) -> list[tuple[bytes, float]]:
    """The members of ``row`` in ``span``, in order or reversed; ``offset`` and ``limit``
    (LIMIT's) apply to ranges by score and lex only."""
    if span.ranks is None:
        params = list(span.params)
        return _select(ctx, row, span.where, params, reverse=reverse, offset=offset, limit=limit)
    ranks = index_span(*span.ranks, row.len)
    if ranks is None:
        return []
    first, last = ranks
    return _select(ctx, row, "1", [], reverse=reverse, offset=first, limit=last - first + 1)


def _reply(items: list[tuple[bytes, float]], withscores: bool) -> Reply:
    if withscores:
        return Pairs([(m, Double(s)) for m, s in items])
    return [m for m, _ in items]


def _zrange(ctx: Ctx, a: list[bytes], *, kind: str | None, reverse: bool | None) -> Reply:
    """ZRANGE and its older forms; ``kind`` and ``reverse`` fixed by the command or None."""
    withscores, offset, limit = False, 0, -1
    j = 4
    while j < len(a):
        opt, left = a[j].upper(), len(a) - j - 1
        if opt == b"WITHSCORES":
            withscores = True
        elif opt == b"LIMIT" and left >= 2:
            offset, limit = to_int(a[j + 1]), to_int(a[j + 2])
            j += 2
        elif reverse is None and opt == b"REV":
            reverse = True
        elif kind is None and opt in (b"BYLEX", b"BYSCORE"):
            kind = opt.decode()
        else:
            raise fail(SYNTAX)
        j += 1
    reverse = bool(reverse)
    kind = kind or "RANK"
    if limit != -1 and kind == "RANK":
        raise fail(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
        )
    if withscores and kind == "BYLEX":
        raise fail("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
    lo, hi = (a[3], a[2]) if reverse and kind != "RANK" else (a[2], a[3])
    span = _parse_range(kind, lo, hi)
    row = ctx.read_typed(a[1], ZSET)
    if row is None:
        return []
    items = _in_range(ctx, row, span, reverse=reverse, offset=offset, limit=limit)
    return _reply(items, withscores)


command("zrange")(partial(_zrange, kind=None, reverse=None))
command("zrevrange")(partial(_zrange, kind="RANK", reverse=True))
command("zrangebyscore")(partial(_zrange, kind="BYSCORE", reverse=False))
command("zrevrangebyscore")(partial(_zrange, kind="BYSCORE", reverse=True))
command("zrangebylex")(partial(_zrange, kind="BYLEX", reverse=False))
command("zrevrangebylex")(partial(_zrange, kind="BYLEX", reverse=True))


def _count(ctx: Ctx, a: list[bytes], *, kind: str) -> Reply:
    """ZCOUNT (``kind`` BYSCORE) and ZLEXCOUNT (BYLEX)."""
    span = _parse_range(kind, a[2], a[3])
    row = ctx.read_typed(a[1], ZSET)
    if row is None:
        return 0
    rows = ctx.conn.execute(
        f"SELECT count(*) FROM kv_zset WHERE id=? AND {span.where}", [row.id, *span.params]
    ).fetchall()
    return int(rows[0][0])


command("zcount")(partial(_count, kind="BYSCORE"))
command("zlexcount")(partial(_count, kind="BYLEX"))


def _rank(ctx: Ctx, a: list[bytes], *, reverse: bool) -> Reply:
    row = ctx.read_typed(a[1], ZSET)
    if row is None:
        return None
    score = _score_of(ctx, row, a[2])
    if score is None:
        return None
    rows = ctx.conn.execute(
        "SELECT count(*) FROM kv_zset WHERE id=? AND (score < ? OR (score = ? AND member < ?))",
        (row.id, score, score, a[2]),
    ).fetchall()
    rank = int(rows[0][0])
    return row.len - 1 - rank if reverse else rank


command("zrank")(partial(_rank, reverse=False))
command("zrevrank")(partial(_rank, reverse=True))


def _pop(ctx: Ctx, a: list[bytes], *, maximum: bool) -> Reply:
    if len(a) > 3:
        raise fail(SYNTAX)
    count = pop_count(a)
    row = ctx.write_typed(a[1], ZSET)
    if row is None or count == 0:
        return []
    items = _select(ctx, row, "1", [], reverse=maximum, limit=count or 1)
    _delete_members(ctx, row, [m for m, _ in items])
    ctx.removed(row, len(items), "zpopmax" if maximum else "zpopmin")
    if count is None:
        return [items[0][0], Double(items[0][1])]
    return Pairs([(m, Double(s)) for m, s in items])


command("zpopmin")(partial(_pop, maximum=False))
command("zpopmax")(partial(_pop, maximum=True))


def _remove_range(ctx: Ctx, a: list[bytes], *, kind: str, event: str) -> Reply:
    span = _parse_range(kind, a[2], a[3])
    row = ctx.write_typed(a[1], ZSET)
    if row is None:
        return 0
    items = _in_range(ctx, row, span, reverse=False)
    removed = _delete_members(ctx, row, [m for m, _ in items]) if items else 0
    return ctx.removed(row, removed, event)


command("zremrangebyscore")(partial(_remove_range, kind="BYSCORE", event="zremrangebyscore"))
command("zremrangebyrank")(partial(_remove_range, kind="RANK", event="zremrangebyrank"))
command("zremrangebylex")(partial(_remove_range, kind="BYLEX", event="zremrangebylex"))


def format_scan_score(score: float) -> bytes:
    """A score as ZSCAN prints it for small sorted sets (Redis's ``d2string``)."""
    if math.isinf(score):
        return b"inf" if score > 0 else b"-inf"
    if abs(score) <= float(2**62) and score == int(score):  # double2ll's safe range: LLONG_MAX/2
        return b"%d" % int(score)
    return b"%.17g" % score


@command("zscan")
def zscan(ctx: Ctx, a: list[bytes]) -> Reply:
    nxt, rows = scan_elements(ctx, a, ZSET, "kv_zset", "member, score")
    out: list[Reply] = []
    for member, score in rows:
        out += [bytes(member), format_scan_score(float(score))]
    return [nxt, out]
