"""List commands. Elements are rows ``kv_list(id, pos, value)`` at contiguous positions
``head .. head+len-1`` (``head`` and ``len`` in the key's row): pushing or popping at either
end, LINDEX, LSET and the start of LRANGE are one b-tree search each. LINSERT and LREM move
the positions of the shorter side (O(n), as in Redis) in two UPDATEs through a scratch range
above every position in use, because SQLite checks the primary key row by row and a direct
``pos = pos + 1`` would collide with the next row."""

from __future__ import annotations

from functools import partial

from litecluster.kv.db import Ctx, KeyRow, typed
from litecluster.kv.elements import index_span, pop_count
from litecluster.kv.errors import INDEX_OUT_OF_RANGE, NO_SUCH_KEY, SYNTAX, fail
from litecluster.kv.parse import to_int
from litecluster.kv.registry import command
from litecluster.kv.reply import NULL_ARRAY, OK, Reply
from litecluster.kv.schema import LIST


def _tail(row: KeyRow) -> int:
    return row.head + row.len - 1


def _values(ctx: Ctx, row: KeyRow, lo: int, hi: int, *, reverse: bool = False) -> list[bytes]:
    """Values at positions lo..hi (inclusive), in order (or reversed)."""
    order = "DESC" if reverse else "ASC"
    rows = ctx.conn.execute(
        f"SELECT value FROM kv_list WHERE id=? AND pos BETWEEN ? AND ? ORDER BY pos {order}",
        (row.id, lo, hi),
    ).fetchall()
    return [bytes(v) for (v,) in rows]


def push(ctx: Ctx, row: KeyRow, values: list[bytes], *, left: bool) -> None:
    if left:
        rows = [(row.id, row.head - 1 - i, v) for i, v in enumerate(values)]
        row.head -= len(values)
    else:
        start = row.head + row.len
        rows = [(row.id, start + i, v) for i, v in enumerate(values)]
    ctx.conn.executemany("INSERT INTO kv_list(id, pos, value) VALUES (?, ?, ?)", rows)
    row.len += len(values)


def pop(ctx: Ctx, row: KeyRow, count: int, *, left: bool) -> list[bytes]:
    """Remove and return up to ``count`` elements from one end (the caller saves ``row``)."""
    count = min(count, row.len)
    if left:
        lo, hi = row.head, row.head + count - 1
    else:
        lo, hi = _tail(row) - count + 1, _tail(row)
    values = _values(ctx, row, lo, hi, reverse=not left)
    ctx.conn.execute("DELETE FROM kv_list WHERE id=? AND pos BETWEEN ? AND ?", (row.id, lo, hi))
    if left:
        row.head += count
    row.len -= count
    return values


def _shift(ctx: Ctx, row: KeyRow, lo: int, hi: int, delta: int, top: int) -> None:
    """Move positions lo..hi by ``delta``; ``top`` is at least every position in use and
    every target position, and the targets not in lo..hi are free."""
    k = top - lo + 1
    ctx.conn.execute(
        "UPDATE kv_list SET pos = pos + ? WHERE id=? AND pos BETWEEN ? AND ?", (k, row.id, lo, hi)
    )
    ctx.conn.execute(
        "UPDATE kv_list SET pos = pos - ? WHERE id=? AND pos > ?", (k - delta, row.id, top)
    )


def _renumber(ctx: Ctx, row: KeyRow, lo: int, hi: int, first: int, top: int) -> None:
    """Give the rows between positions lo..hi (with gaps) the positions first, first+1, ...;
    ``top`` is at least every position in use and the new ones are free or in lo..hi."""
    ctx.conn.execute(
        "UPDATE kv_list SET pos = ? + r.rn FROM (SELECT pos AS p, row_number() OVER"
        " (ORDER BY pos) AS rn FROM kv_list WHERE id=? AND pos BETWEEN ? AND ?) AS r"
        " WHERE kv_list.id=? AND kv_list.pos = r.p",
        (top, row.id, lo, hi, row.id),
    )
    ctx.conn.execute(
        "UPDATE kv_list SET pos = pos - ? WHERE id=? AND pos > ?", (top + 1 - first, row.id, top)
    )


def _list(ctx: Ctx, key: bytes, *, write: bool) -> KeyRow | None:
    return ctx.write_typed(key, LIST) if write else ctx.read_typed(key, LIST)


def _push_command(ctx: Ctx, a: list[bytes], *, left: bool, existing_only: bool) -> Reply:
    row = _list(ctx, a[1], write=True)
    if row is None:
        if existing_only:
            return 0
        row = ctx.new_container(a[1], LIST)
    push(ctx, row, a[2:], left=left)
    ctx.save(row)
    ctx.notify("lpush" if left else "rpush", a[1])
    return row.len


command("lpush")(partial(_push_command, left=True, existing_only=False))
command("rpush")(partial(_push_command, left=False, existing_only=False))
command("lpushx")(partial(_push_command, left=True, existing_only=True))
command("rpushx")(partial(_push_command, left=False, existing_only=True))


def _pop_command(ctx: Ctx, a: list[bytes], *, left: bool) -> Reply:
    if len(a) > 3:
        raise fail(f"ERR wrong number of arguments for '{a[0].decode()}' command")
    count = pop_count(a)
    row = _list(ctx, a[1], write=True)
    if row is None:
        return NULL_ARRAY if count is not None else None
    if count == 0:
        return []
    values = pop(ctx, row, count or 1, left=left)
    ctx.notify("lpop" if left else "rpop", a[1])
    ctx.save(row)
    return values[0] if count is None else list(values)


command("lpop")(partial(_pop_command, left=True))
command("rpop")(partial(_pop_command, left=False))


@command("llen")
def llen(ctx: Ctx, a: list[bytes]) -> Reply:
    return ctx.length(a[1], LIST)


def _position(row: KeyRow, arg: bytes) -> int | None:
    """The position of the element LINDEX's and LSET's index ``arg`` names (a negative one
    counts from the end); None when it is outside the list."""
    index = to_int(arg)
    if index < 0:
        index += row.len
    return row.head + index if 0 <= index < row.len else None


@command("lrange")
def lrange(ctx: Ctx, a: list[bytes]) -> Reply:
    start, end = to_int(a[2]), to_int(a[3])
    row = _list(ctx, a[1], write=False)
    if row is None:
        return []
    span = index_span(start, end, row.len)
    if span is None:
        return []
    return list(_values(ctx, row, row.head + span[0], row.head + span[1]))


@command("lindex")
def lindex(ctx: Ctx, a: list[bytes]) -> Reply:
    row = _list(ctx, a[1], write=False)
    if row is None:
        return None
    pos = _position(row, a[2])
    return None if pos is None else _values(ctx, row, pos, pos)[0]


@command("lset")
def lset(ctx: Ctx, a: list[bytes]) -> Reply:
    row = _list(ctx, a[1], write=True)
    if row is None:
        raise fail(NO_SUCH_KEY)
    pos = _position(row, a[2])
    if pos is None:
        raise fail(INDEX_OUT_OF_RANGE)
    ctx.conn.execute("UPDATE kv_list SET value=? WHERE id=? AND pos=?", (a[3], row.id, pos))
    ctx.notify("lset", a[1])
    return OK


@command("ltrim")
def ltrim(ctx: Ctx, a: list[bytes]) -> Reply:
    start, end = to_int(a[2]), to_int(a[3])
    row = _list(ctx, a[1], write=True)
    if row is None:
        return OK
    span = index_span(start, end, row.len)
    keep_lo, keep_hi = (
        (row.head + span[0], row.head + span[1]) if span else (row.head, row.head - 1)
    )
    ctx.conn.execute(
        "DELETE FROM kv_list WHERE id=? AND (pos < ? OR pos > ?)", (row.id, keep_lo, keep_hi)
    )
    row.head, row.len = keep_lo, keep_hi - keep_lo + 1
    ctx.notify("ltrim", a[1])
    ctx.save(row)
    return OK


@command("linsert")
def linsert(ctx: Ctx, a: list[bytes]) -> Reply:
    where = a[2].upper()
    if where not in (b"BEFORE", b"AFTER"):
        raise fail(SYNTAX)
    row = _list(ctx, a[1], write=True)
    if row is None:
        return 0
    found = ctx.conn.execute(
        "SELECT pos FROM kv_list WHERE id=? AND value=? ORDER BY pos LIMIT 1", (row.id, a[3])
    ).fetchall()
    if not found:
        return -1
    pivot = int(found[0][0])
    at = pivot if where == b"BEFORE" else pivot + 1  # the new element's position, before shifts
    tail = _tail(row)
    if at - row.head < tail + 1 - at:  # fewer elements before: move them left
        if at > row.head:
            _shift(ctx, row, row.head, at - 1, -1, tail)
        row.head -= 1
        pos = at - 1
    else:
        if at <= tail:
            _shift(ctx, row, at, tail, 1, tail + 1)
        pos = at
    ctx.conn.execute("INSERT INTO kv_list(id, pos, value) VALUES (?, ?, ?)", (row.id, pos, a[4]))
    ctx.added(row, 1, "linsert")
    return row.len


@command("lrem")
def lrem(ctx: Ctx, a: list[bytes]) -> Reply:
    count = to_int(a[2])
    row = _list(ctx, a[1], write=True)
    if row is None:
        return 0
    order = "DESC" if count < 0 else "ASC"
    found = ctx.conn.execute(
        f"SELECT pos FROM kv_list WHERE id=? AND value=? ORDER BY pos {order} LIMIT ?",
        (row.id, a[3], abs(count) if count else -1),
    ).fetchall()
    if not found:
        return 0
    positions = sorted(int(p) for (p,) in found)
    ctx.conn.executemany(
        "DELETE FROM kv_list WHERE id=? AND pos=?", [(row.id, p) for p in positions]
    )
    tail, first, last = _tail(row), positions[0], positions[-1]
    removed = len(positions)
    if removed < row.len:
        if tail - first <= last - row.head:  # close the gaps by moving the rows after `first`
            _renumber(ctx, row, first, tail, first, tail)
        else:  # or by moving the rows before `last` to end at `last`
            kept_before = (last - row.head + 1) - removed
            _renumber(ctx, row, row.head, last, last - kept_before + 1, tail)
            row.head = last - kept_before + 1
    return ctx.removed(row, removed, "lrem")


@command("lpos")
def lpos(ctx: Ctx, a: list[bytes]) -> Reply:
    rank, count, maxlen = 1, -1, 0
    j = 3
    while j < len(a):
        opt, more = a[j].upper(), j + 1 < len(a)
        if opt == b"RANK" and more:
            rank = to_int(a[j + 1])
            if rank == 0:
                raise fail(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the"
                    " second ... or use negative to start from the end of the list"
                )
        elif opt == b"COUNT" and more:
            count = to_int(a[j + 1], "ERR COUNT can't be negative")
            if count < 0:
                raise fail("ERR COUNT can't be negative")
        elif opt == b"MAXLEN" and more:
            maxlen = to_int(a[j + 1], "ERR MAXLEN can't be negative")
            if maxlen < 0:
                raise fail("ERR MAXLEN can't be negative")
        else:
            raise fail(SYNTAX)
        j += 2
    row = _list(ctx, a[1], write=False)
    if row is None:
        return [] if count != -1 else None
    reverse = rank < 0
    rank = abs(rank)
    lo, hi = row.head, _tail(row)
    if maxlen:
        if reverse:
            lo = max(lo, hi - maxlen + 1)
        else:
            hi = min(hi, lo + maxlen - 1)
    limit = -1 if count in (-1, 0) else count
    if count == -1:
        limit = 1
    found = ctx.conn.execute(
        "SELECT pos FROM kv_list WHERE id=? AND value=? AND pos BETWEEN ? AND ?"
        f" ORDER BY pos {'DESC' if reverse else 'ASC'} LIMIT ? OFFSET ?",
        (row.id, a[2], lo, hi, limit, rank - 1),
    ).fetchall()
    indexes = [int(p) - row.head for (p,) in found]
    if count == -1:
        return indexes[0] if indexes else None
    return list(indexes)


def _move(ctx: Ctx, src_key: bytes, dst_key: bytes, from_left: bool, to_left: bool) -> Reply:
    src = _list(ctx, src_key, write=True)
    if src is None:
        return None
    dst = src if src_key == dst_key else typed(ctx.write(dst_key), LIST)
    value = pop(ctx, src, 1, left=from_left)[0]
    if dst is None:
        dst = ctx.new_container(dst_key, LIST)
    push(ctx, dst, [value], left=to_left)
    ctx.save(dst)
    ctx.notify("lpush" if to_left else "rpush", dst_key)
    ctx.notify("lpop" if from_left else "rpop", src_key)
    if dst is not src:
        ctx.save(src)
    return value


def _side(arg: bytes) -> bool:
    side = arg.upper()
    if side not in (b"LEFT", b"RIGHT"):
        raise fail(SYNTAX)
    return side == b"LEFT"


@command("lmove")
def lmove(ctx: Ctx, a: list[bytes]) -> Reply:
    from_left, to_left = _side(a[3]), _side(a[4])
    return _move(ctx, a[1], a[2], from_left, to_left)


@command("rpoplpush")
def rpoplpush(ctx: Ctx, a: list[bytes]) -> Reply:
    return _move(ctx, a[1], a[2], False, True)
