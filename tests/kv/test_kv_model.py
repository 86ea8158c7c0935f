"""The data model's own guarantees: expiry by each node's clock, bounded background
deletion, lazy freeing, SCAN's cursor, atomic commands, replica reads, change events."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from litecluster import kv
from litecluster.engine.sqlite import Connection, connect
from litecluster.kv.db import EVENT_CLASSES
from litecluster.kv.reply import Err, Reply, SetReply
from support.kv_harness import Twin, args_of

NOW = 1_700_000_000_000


@pytest.fixture
def conn(tmp_path: Path) -> Connection:
    c = connect(tmp_path / "kv.db")
    c.execute("PRAGMA journal_mode=WAL")
    return c


def ex(conn: Connection, *parts: Any, now: int = NOW, db: int = 0) -> Reply:
    return kv.execute(conn, db, now, args_of(parts)).reply


def count(conn: Connection, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])


def test_expired_keys_are_invisible_to_every_read_at_once(conn: Connection) -> None:
    ex(conn, "SET", "s", "v", "PX", 1000)
    ex(conn, "SADD", "t", "a", "b")
    ex(conn, "PEXPIRE", "t", 1000)
    for now, alive in [(NOW + 999, True), (NOW + 1000, True), (NOW + 1001, False)]:
        assert ex(conn, "GET", "s", now=now) == (b"v" if alive else None)
        assert ex(conn, "EXISTS", "s", "t", now=now) == (2 if alive else 0)
        assert ex(conn, "SCARD", "t", now=now) == (2 if alive else 0)
        assert ex(conn, "DBSIZE", now=now) == (2 if alive else 0)
        assert sorted(ex(conn, "KEYS", "*", now=now)) == ([b"s", b"t"] if alive else [])  # type: ignore[type-var]
        assert ex(conn, "PTTL", "s", now=now) == (NOW + 1000 - now if alive else -2)
    # Reads changed nothing: the rows are still there for the primary to delete.
    assert count(conn, "kv_keys") == 2


def test_a_write_on_an_expired_key_starts_from_nothing(conn: Connection) -> None:
    ex(conn, "SADD", "t", "old1", "old2")
    ex(conn, "PEXPIRE", "t", 10)
    out = kv.execute(conn, 0, NOW + 11, args_of(["SADD", "t", "new"]))
    assert out.reply == 1
    assert ("expired", 0, b"t") in out.events
    assert ex(conn, "SMEMBERS", "t", now=NOW + 11) == SetReply([b"new"])
    assert ex(conn, "PTTL", "t", now=NOW + 11) == -1


def test_expire_cycle_deletes_in_bounded_batches(conn: Connection) -> None:
    for i in range(25):
        ex(conn, "SET", f"k{i}", "v", "PX", 100 + i)
    ex(conn, "SET", "forever", "v")
    assert kv.expire_cycle(conn, NOW + 50, limit=10) == []
    first = kv.expire_cycle(conn, NOW + 200, limit=10)
    assert first == [(0, b"k%d" % i) for i in range(10)]  # oldest expiry first
    second = kv.expire_cycle(conn, NOW + 200, limit=10)
    third = kv.expire_cycle(conn, NOW + 200, limit=10)
    assert len(second) == 10
    assert len(third) == 5
    assert ex(conn, "KEYS", "*", now=NOW) == [b"forever"]


def test_big_containers_are_freed_lazily_and_in_bounded_steps(conn: Connection) -> None:
    ex(conn, "SADD", "big", *range(500))
    ex(conn, "RPUSH", "list", *range(300))
    assert ex(conn, "DEL", "big", "list") == 2
    assert count(conn, "kv_set") == 500  # the rows wait for the background cycle
    assert count(conn, "kv_garbage") == 2
    rounds = 0
    while count(conn, "kv_garbage"):
        kv.expire_cycle(conn, NOW, limit=100)
        rounds += 1
        assert rounds < 20
    assert count(conn, "kv_set") == count(conn, "kv_list") == 0
    assert rounds >= 8  # 800 rows, 100 per cycle


def test_a_failing_command_leaves_nothing_behind(conn: Connection) -> None:
    ex(conn, "ZADD", "z", "inf", "a")
    out = kv.execute(conn, 0, NOW, args_of(["ZADD", "z", "INCR", "-inf", "a"]))
    assert out.reply == Err("ERR resulting score is not a number (NaN)")
    assert out.events == []
    ctx = kv.Ctx(conn, 0, NOW)
    assert kv.run(ctx, args_of(["SET", "x", "1"])) is not None
    assert kv.run(ctx, args_of(["LPUSH", "x", "a"])) == Err(
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    )
    assert ctx.events == [("set", 0, b"x")]  # MULTI-style: earlier commands keep their effect


def test_change_events_name_keys_and_causes(conn: Connection) -> None:
    ex(conn, "SET", "a", "1")
    out = kv.execute(conn, 3, NOW, args_of(["RENAME", "a", "b"]))
    assert isinstance(out.reply, Err)  # 'a' is in DB 0, not 3
    out = kv.execute(conn, 0, NOW, args_of(["RENAME", "a", "b"]))
    assert out.events == [("rename_from", 0, b"a"), ("rename_to", 0, b"b")]
    assert out.changed == {(0, b"a"), (0, b"b")}
    out = kv.execute(conn, 0, NOW, args_of(["COPY", "b", "c", "DB", "5"]))
    assert out.changed == {(5, b"c")}
    out = kv.execute(conn, 5, NOW, args_of(["FLUSHDB"]))
    assert out.flushed == [5]
    assert kv.execute(conn, 0, NOW, args_of(["GET", "b"])).events == []


def test_reads_work_on_a_read_only_connection_and_before_any_write(tmp_path: Path) -> None:
    path = tmp_path / "replica.db"
    primary = connect(path)
    primary.execute("PRAGMA journal_mode=WAL")
    replica = connect(path, readonly=True)
    # No key/value tables yet: reads answer like an empty database, writes create the tables.
    assert ex(replica, "GET", "k") is None
    assert ex(replica, "SCAN", "0") == [b"0", []]
    assert not kv.has_schema(replica)
    assert ex(primary, "SET", "k", "v") is not None
    assert kv.has_schema(primary)
    assert ex(replica, "MGET", "k", "x") == [b"v", None]
    with pytest.raises(Exception, match="readonly"):
        ex(replica, "SET", "k", "w")
    assert ex(replica, "GET", "k") == b"v"


def test_unknown_unsupported_and_connection_commands() -> None:
    assert kv.lookup(args_of(["BLPOP", "k", "0"])) == Err(
        "ERR command 'blpop' is not supported by litecluster (see docs/kv.md for the supported"
        " commands)"
    )
    long_args = args_of(["nope", "a" * 100, "b\x00c" * 20, "d"])
    assert kv.lookup(long_args) == Err(
        "ERR unknown command 'nope', with args beginning with: '" + "a" * 100 + "' 'b' 'd' "
    )
    cmd = kv.lookup(args_of(["MULTI"]))
    assert not isinstance(cmd, Err)
    assert cmd.handler is None
    get = kv.lookup(args_of(["get", "k"]))
    assert not isinstance(get, Err)
    assert get.info.readonly
    mset = kv.lookup(args_of(["MSET", "a", "1", "b", "2"]))
    assert not isinstance(mset, Err)
    assert kv.command_keys(mset, args_of(["MSET", "a", "1", "b", "2"])) == [b"a", b"b"]


# ---- SCAN: every key present for the whole scan is returned -----------------------------


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 20))
def test_scan_returns_every_key_present_throughout(seed: int, count: int) -> None:
    rng = random.Random(seed)
    c = connect(":memory:")
    stable = {b"k%d" % i for i in range(rng.randint(0, 60))}
    for k in stable:
        ex(c, "SET", k, "v")
    seen: set[bytes] = set()
    cursor = b"0"
    churn = 0
    while True:
        cursor, keys = ex(c, "SCAN", cursor, "COUNT", count)  # type: ignore[misc]
        seen.update(keys)
        for _ in range(rng.randint(0, 5)):  # other keys come and go between the calls
            churn += 1
            if rng.random() < 0.5:
                ex(c, "SET", b"tmp%d" % churn, "v")
            else:
                ex(c, "DEL", b"tmp%d" % rng.randint(0, churn))
        if cursor == b"0":
            break
    assert stable <= seen


# ---- lists with long middles, against redis-server --------------------------------------

LIST_OPS = st.one_of(
    st.tuples(st.just("LINSERT"), st.sampled_from(["BEFORE", "AFTER"]), st.integers(0, 9)),
    st.tuples(st.just("LREM"), st.integers(-3, 3), st.integers(0, 9)),
    st.tuples(st.just("LSET"), st.integers(-250, 250), st.integers(0, 9)),
    st.tuples(st.just("LPOP"), st.integers(1, 30)), st.tuples(st.just("RPOP"), st.integers(1, 30)),
    st.tuples(st.just("LTRIM"), st.integers(-5, 20), st.integers(-20, 300)),
    st.tuples(st.just("LPUSH"), st.integers(0, 9)), st.tuples(st.just("RPUSH"), st.integers(0, 9)),
)  # fmt: skip


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(LIST_OPS, min_size=1, max_size=25), st.integers(0, 2**32))
def test_long_lists_keep_their_order_through_middle_edits(
    twin: Twin, ops: list[tuple[Any, ...]], seed: int
) -> None:
    rng = random.Random(seed)
    twin.reset()
    twin.check("RPUSH", "L", *(rng.randint(0, 9) for _ in range(200)))
    for op in ops:
        name = op[0]
        if name == "LINSERT":
            twin.check("LINSERT", "L", op[1], op[2], "new")
        elif name == "LREM":
            twin.check("LREM", "L", op[1], op[2])
        elif name == "LSET":
            twin.check("LSET", "L", op[1], op[2])
        elif name in ("LPOP", "RPOP"):
            twin.check(name, "L", op[1])
        elif name == "LTRIM":
            twin.check("LTRIM", "L", op[1], op[2])
        else:
            twin.check(name, "L", op[1])
        twin.check("LINDEX", "L", rng.randint(-50, 50))
    twin.check("LRANGE", "L", "0", "-1")


def test_set_algebra_over_many_keys_and_big_samples(twin: Twin) -> None:
    keys = [f"set{i}" for i in range(450)]  # more than SQLite's compound select allows
    for i, key in enumerate(keys):
        twin.check("SADD", key, "common", f"m{i}", f"m{i + 1}")
    for name in ("SINTER", "SUNION", "SDIFF"):
        twin.check(name, *keys)
    twin.check("SINTERSTORE", "dst", *keys)
    twin.check("SINTERCARD", len(keys), *keys, "LIMIT", "0")
    twin.check("SUNIONSTORE", "big", *keys)
    twin.check("SADD", "big", *(f"x{i}" for i in range(1200)))  # sampled by seeking, not whole
    for count in (5, -7, 2000, 451, 1000):
        twin.check_random("SRANDMEMBER", "big", count)
    twin.check_random("SRANDMEMBER", "big")
    for count in (10, 300, 1):
        twin.check_random("SPOP", "big", count)
    twin.check_random("SPOP", "big")
    twin.check("SMEMBERS", "big")
    twin.check("HSET", "hash", *(f"f{i // 2}" if i % 2 == 0 else str(i) for i in range(3000)))
    for hargs in ((3,), (-4,), (2, "WITHVALUES"), (-3, "WITHVALUES"), ()):
        twin.check_random("HRANDFIELD", "hash", *hargs)


def test_every_event_has_a_notification_class(conn: Connection) -> None:
    script = [
        ["SET", "s", "1", "EX", "100"], ["INCR", "s"], ["INCRBYFLOAT", "s", "1"], ["APPEND", "s", "x"],
        ["SETRANGE", "s", "0", "9"], ["PERSIST", "s"], ["EXPIRE", "s", "100"], ["COPY", "s", "c"],
        ["RENAME", "c", "d"], ["DEL", "d"], ["RPUSH", "l", "a", "b", "c"], ["LPUSH", "l", "z"],
        ["LINSERT", "l", "BEFORE", "a", "y"], ["LSET", "l", "0", "q"], ["LREM", "l", "1", "b"],
        ["LTRIM", "l", "0", "10"], ["LMOVE", "l", "l2", "LEFT", "RIGHT"], ["RPOP", "l", "10"],
        ["SADD", "t", "a", "b"], ["SREM", "t", "a"], ["SPOP", "t"], ["SADD", "t", "x"],
        ["SINTERSTORE", "u", "t"], ["SUNIONSTORE", "u", "t"], ["SDIFFSTORE", "u", "t", "none"],
        ["HSET", "h", "f", "1"], ["HINCRBY", "h", "f", "1"], ["HINCRBYFLOAT", "h", "f", "1"],
        ["HDEL", "h", "f"], ["ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d"],
        ["ZINCRBY", "z", "1", "a"], ["ZREM", "z", "a"], ["ZPOPMIN", "z"], ["ZPOPMAX", "z"],
        ["ZADD", "z", "0", "a", "0", "b"], ["ZREMRANGEBYLEX", "z", "[a", "[a"],
        ["ZREMRANGEBYRANK", "z", "0", "0"], ["ZADD", "z", "5", "e"], ["ZREMRANGEBYSCORE", "z", "5", "5"],
    ]  # fmt: skip
    seen: set[str] = set()
    for args in script:
        out = kv.execute(conn, 0, NOW, args_of(args))
        assert not isinstance(out.reply, Err), (args, out.reply)
        seen.update(event for event, _, _ in out.events)
    ex(conn, "SADD", "gone", "m")
    ex(conn, "PEXPIRE", "gone", 1)
    seen.update(
        e for e, _, _ in kv.execute(conn, 0, NOW + 5, args_of(["SADD", "gone", "n"])).events
    )
    assert seen == set(EVENT_CLASSES)


def test_keys_expire_for_real_on_both_sides(twin: Twin) -> None:
    """Short expiries, a real wait, and every kind of access to the expired keys."""
    twin.check("SET", "s", "v", "PX", "30")
    twin.check("RPUSH", "l", "a", "b")
    twin.check("PEXPIRE", "l", "30")
    twin.check("HSET", "h", "f", "v")
    twin.check("PEXPIREAT", "h", str(int(time.time() * 1000) + 30))
    twin.check("SET", "keep", "v")
    time.sleep(0.1)
    for args in (["GET", "s"], ["EXISTS", "s", "l", "h", "keep"], ["TTL", "l"], ["PTTL", "h"],
                 ["DBSIZE"], ["KEYS", "*"], ["TYPE", "l"], ["LRANGE", "l", "0", "-1"],
                 ["HGETALL", "h"], ["RENAME", "s", "t"], ["LPUSHX", "l", "x"], ["RPUSH", "l", "c"],
                 ["LRANGE", "l", "0", "-1"], ["HSETNX", "h", "g", "w"], ["HGETALL", "h"],
                 ["SETNX", "s", "new"], ["GET", "s"], ["DBSIZE"], ["PERSIST", "l"]):  # fmt: skip
        twin.check(*args)
    twin.check_scan("SCAN", None, [])
