"""String commands: GET/SET and their variants, counters, ranges.

The value lives in the key's row (``kv_keys.value``), so GET is one b-tree search. Redis keeps
a key's expiry across INCR/APPEND/SETRANGE and drops it on SET (unless KEEPTTL); so do these.
"""

from __future__ import annotations

from functools import partial

from litecluster.kv.db import Ctx, KeyRow, set_expiry_ms
from litecluster.kv.errors import (
    NAN_OR_INF,
    NOT_INTEGER,
    STRING_TOO_LONG,
    SYNTAX,
    WRONGTYPE,
    fail,
)
from litecluster.kv.parse import (
    INT64_MIN,
    add_long_double,
    format_long_double,
    incremented,
    to_int,
    to_long_double,
)
from litecluster.kv.registry import command
from litecluster.kv.reply import OK, Reply
from litecluster.kv.schema import STRING

MAX_STRING = 512 * 1024 * 1024
"""proto-max-bulk-len: the longest value APPEND and SETRANGE may build."""


def read_string(ctx: Ctx, key: bytes) -> bytes | None:
    row = ctx.read_typed(key, STRING)
    return None if row is None else row.value


def _string_row(ctx: Ctx, key: bytes) -> KeyRow | None:
    return ctx.write_typed(key, STRING)


@command("get")
def get(ctx: Ctx, a: list[bytes]) -> Reply:
    return read_string(ctx, a[1])


_SET_OPTS = {b"NX", b"XX", b"GET", b"KEEPTTL", b"PERSIST", b"EX", b"PX", b"EXAT", b"PXAT"}
_TIME_OPTS = {"EX", "PX", "EXAT", "PXAT"}


def parse_string_options(
    a: list[bytes], start: int, *, for_set: bool
) -> tuple[set[str], bytes | None]:
    """SET's and GETEX's options exactly as redis-server accepts them (repeats allowed,
    conflicting ones are a syntax error): the flags given and the expiry argument."""
    flags: set[str] = set()
    expire: bytes | None = None
    j = start
    while j < len(a):
        opt = a[j].upper()
        has_next = j + 1 < len(a)
        timed = flags & _TIME_OPTS
        if opt == b"NX" and for_set and "XX" not in flags:
            flags.add("NX")
        elif opt == b"XX" and for_set and "NX" not in flags:
            flags.add("XX")
        elif opt == b"GET" and for_set:
            flags.add("GET")
        elif opt == b"KEEPTTL" and for_set and not timed and "PERSIST" not in flags:
            flags.add("KEEPTTL")
        elif opt == b"PERSIST" and not for_set and not timed and "KEEPTTL" not in flags:
            flags.add("PERSIST")
        elif (
            opt in (b"EX", b"PX", b"EXAT", b"PXAT")
            and has_next
            and not (flags & {"KEEPTTL", "PERSIST"})
            and not (timed - {opt.decode()})
        ):
            flags.add(opt.decode())
            expire = a[j + 1]
            j += 1
        else:
            raise fail(SYNTAX)
        j += 1
    return flags, expire


def _expiry(ctx: Ctx, flags: set[str], expire: bytes | None, cmd: str) -> int | None:
    if expire is None:
        return None
    return set_expiry_ms(
        ctx, expire, seconds=bool(flags & {"EX", "EXAT"}),
        relative=bool(flags & {"EX", "PX"}), cmd=cmd,
    )  # fmt: skip


def _set(
    ctx: Ctx, key: bytes, value: bytes, flags: set[str], expire_at: int | None
) -> tuple[bool, bytes | None]:
    """SET's core: (whether it set, the old value when GET was asked)."""
    old = ctx.write(key)
    old_value = None
    if "GET" in flags and old is not None:
        if old.type != STRING:
            raise fail(WRONGTYPE)
        old_value = old.value
    if ("NX" in flags and old is not None) or ("XX" in flags and old is None):
        return False, old_value
    if expire_at is None and "KEEPTTL" in flags and old is not None:
        expire_at = old.expire_at
    ctx.put_string(key, value, expire_at, old)
    ctx.notify("set", key)
    if expire_at is not None and "KEEPTTL" not in flags:
        ctx.notify("expire", key)
    return True, old_value


@command("set")
def set_(ctx: Ctx, a: list[bytes]) -> Reply:
    flags, expire = parse_string_options(a, 3, for_set=True)
    done, old = _set(ctx, a[1], a[2], flags, _expiry(ctx, flags, expire, "set"))
    if "GET" in flags:
        return old
    return OK if done else None


@command("setnx")
def setnx(ctx: Ctx, a: list[bytes]) -> Reply:
    return int(_set(ctx, a[1], a[2], {"NX"}, None)[0])


@command("setex")
def setex(ctx: Ctx, a: list[bytes]) -> Reply:
    at = set_expiry_ms(ctx, a[2], seconds=True, relative=True, cmd="setex")
    _set(ctx, a[1], a[3], set(), at)
    return OK


@command("psetex")
def psetex(ctx: Ctx, a: list[bytes]) -> Reply:
    at = set_expiry_ms(ctx, a[2], seconds=False, relative=True, cmd="psetex")
    _set(ctx, a[1], a[3], set(), at)
    return OK


@command("getset")
def getset(ctx: Ctx, a: list[bytes]) -> Reply:
    return _set(ctx, a[1], a[2], {"GET"}, None)[1]


@command("getex")
def getex(ctx: Ctx, a: list[bytes]) -> Reply:
    flags, expire = parse_string_options(a, 2, for_set=False)
    row = ctx.write_typed(a[1], STRING)
    if row is None:
        return None
    at = _expiry(ctx, flags, expire, "getex")
    if at is not None and flags & {"EXAT", "PXAT"} and at <= ctx.now:
        ctx.delete(row)
        ctx.notify("del", a[1])
    elif at is not None:
        ctx.set_expire(row, at)
        ctx.notify("expire", a[1])
    elif "PERSIST" in flags and row.expire_at is not None:
        ctx.set_expire(row, None)
        ctx.notify("persist", a[1])
    return row.value


@command("getdel")
def getdel(ctx: Ctx, a: list[bytes]) -> Reply:
    row = ctx.write_typed(a[1], STRING)
    if row is None:
        return None
    ctx.delete(row)
    ctx.notify("del", a[1])
    return row.value


@command("mget")
def mget(ctx: Ctx, a: list[bytes]) -> Reply:
    out: list[Reply] = []
    for key in a[1:]:
        row = ctx.read(key)
        out.append(row.value if row is not None and row.type == STRING else None)
    return out


def _mset(ctx: Ctx, a: list[bytes], *, nx: bool) -> Reply:
    """MSET (OK) and MSETNX (1, or 0 when any of the keys exists and nothing is set)."""
    if len(a) % 2 == 0:
        raise fail(f"ERR wrong number of arguments for '{a[0].decode()}' command")
    if nx and any(ctx.write(a[j]) is not None for j in range(1, len(a), 2)):
        return 0
    for j in range(1, len(a), 2):
        ctx.put_string(a[j], a[j + 1], None, ctx.write(a[j]))
        ctx.notify("set", a[j])
    return 1 if nx else OK


command("mset")(partial(_mset, nx=False))
command("msetnx")(partial(_mset, nx=True))


def _incr(ctx: Ctx, key: bytes, delta: int) -> int:
    row = _string_row(ctx, key)
    value = incremented(None if row is None else row.value or b"", delta, NOT_INTEGER)
    ctx.put_string(key, b"%d" % value, row.expire_at if row else None, row)
    ctx.notify("incrby", key)
    return value


@command("incr")
def incr(ctx: Ctx, a: list[bytes]) -> Reply:
    return _incr(ctx, a[1], 1)


@command("decr")
def decr(ctx: Ctx, a: list[bytes]) -> Reply:
    return _incr(ctx, a[1], -1)


@command("incrby")
def incrby(ctx: Ctx, a: list[bytes]) -> Reply:
    return _incr(ctx, a[1], to_int(a[2]))


@command("decrby")
def decrby(ctx: Ctx, a: list[bytes]) -> Reply:
    delta = to_int(a[2])
    if delta == INT64_MIN:
        raise fail("ERR decrement would overflow")
    return _incr(ctx, a[1], -delta)


@command("incrbyfloat")
def incrbyfloat(ctx: Ctx, a: list[bytes]) -> Reply:
    row = _string_row(ctx, a[1])
    value = to_long_double(row.value or b"") if row is not None else to_long_double(b"0")
    total = add_long_double(value, to_long_double(a[2]))
    if total is None:
        raise fail(NAN_OR_INF)
    text = format_long_double(total)
    ctx.put_string(a[1], text, row.expire_at if row else None, row)
    ctx.notify("incrbyfloat", a[1])
    return text


def _check_length(size: int) -> None:
    if size > MAX_STRING:
        raise fail(STRING_TOO_LONG)


@command("append")
def append(ctx: Ctx, a: list[bytes]) -> Reply:
    row = _string_row(ctx, a[1])
    if row is None:
        value = a[2]
    else:
        _check_length(len(row.value or b"") + len(a[2]))
        value = (row.value or b"") + a[2]
    ctx.put_string(a[1], value, row.expire_at if row else None, row)
    ctx.notify("append", a[1])
    return len(value)


@command("strlen")
def strlen(ctx: Ctx, a: list[bytes]) -> Reply:
    value = read_string(ctx, a[1])
    return 0 if value is None else len(value)


@command("getrange")
def getrange(ctx: Ctx, a: list[bytes]) -> Reply:
    start, end = to_int(a[2]), to_int(a[3])
    value = read_string(ctx, a[1])
    if value is None:
        return b""
    n = len(value)
    if start < 0 and end < 0 and start > end:
        return b""
    if start < 0:
        start += n
    if end < 0:
        end += n
    start, end = max(start, 0), max(end, 0)
    if end >= n:
        end = n - 1
    if start > end or n == 0:
        return b""
    return value[start : end + 1]


@command("setrange")
def setrange(ctx: Ctx, a: list[bytes]) -> Reply:
    offset = to_int(a[2])
    if offset < 0:
        raise fail("ERR offset is out of range")
    piece = a[3]
    row = _string_row(ctx, a[1])
    old = b"" if row is None else (row.value or b"")
    if not piece:
        return len(old)
    _check_length(offset + len(piece))
    if len(old) < offset:
        old += b"\0" * (offset - len(old))
    value = old[:offset] + piece + old[offset + len(piece) :]
    ctx.put_string(a[1], value, row.expire_at if row else None, row)
    ctx.notify("setrange", a[1])
    return len(value)
