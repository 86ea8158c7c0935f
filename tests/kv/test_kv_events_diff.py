"""Differential tests of the keyspace events: the executor's change events against the
notifications redis-server publishes for the same commands (``notify-keyspace-events``), in
the same order, per command. Expiry is left out: a read of an expired key deletes it in Redis
(an ``expired`` event) and changes nothing here (docs/kv.md)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from litecluster import kv
from litecluster.kv.reply import Err
from support.kv_harness import RawClient, RedisServer, Twin, args_of, now_ms

SENTINEL = b"__events_done__"

# Every path that changes a container's length, the ones that empty it (a ``del`` after the
# command's own event) and the ones that only change it.
SCRIPT: list[tuple[str, ...]] = [
    ("HSET", "h", "a", "1", "b", "2"), ("HSET", "h", "a", "3"), ("HMSET", "h", "c", "4"),
    ("HSETNX", "h", "a", "x"), ("HSETNX", "h", "d", "5"), ("HINCRBY", "h", "a", "2"),
    ("HINCRBY", "h", "n", "-1"), ("HINCRBYFLOAT", "h", "f", "1.5"), ("HDEL", "h", "zz"),
    ("HDEL", "h", "a", "b"), ("HDEL", "h", "c", "d", "n", "f"),
    ("SADD", "s", "a", "b", "c"), ("SADD", "s", "a"), ("SREM", "s", "x"), ("SREM", "s", "a"),
    ("SMOVE", "s", "t", "b"), ("SMOVE", "s", "t", "c"), ("SMOVE", "t", "t", "b"),
    ("SADD", "u", "1", "2", "3"), ("SPOP", "u"), ("SPOP", "u", "5"), ("SPOP", "u"),
    ("SADD", "v", "b", "q"), ("SINTERSTORE", "w", "t", "v"), ("SUNIONSTORE", "w", "t", "v"),
    ("SDIFFSTORE", "w", "t", "t"), ("SDIFFSTORE", "nothing", "t", "t"),
    ("ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d"), ("ZADD", "z", "XX", "9", "new"),
    ("ZADD", "z", "1", "a"), ("ZINCRBY", "z", "2", "a"), ("ZADD", "z", "INCR", "1", "e"),
    ("ZREM", "z", "nope"), ("ZREM", "z", "e"), ("ZPOPMIN", "z"), ("ZPOPMAX", "z", "1"),
    ("ZREMRANGEBYSCORE", "z", "100", "200"), ("ZREMRANGEBYSCORE", "z", "(2", "3"),
    ("ZADD", "z", "0", "m", "0", "n", "0", "o"), ("ZREMRANGEBYLEX", "z", "[m", "[m"),
    ("ZREMRANGEBYRANK", "z", "5", "9"), ("ZREMRANGEBYRANK", "z", "0", "-1"),
    ("ZADD", "y", "1", "a"), ("ZPOPMIN", "y", "3"),
    ("RPUSH", "l", "a", "b", "a", "c"), ("LPUSH", "l", "z"), ("LPUSHX", "nolist", "a"),
    ("RPUSHX", "l", "y"), ("LINSERT", "l", "BEFORE", "b", "i"), ("LINSERT", "l", "AFTER", "q", "i"),
    ("LSET", "l", "-1", "last"), ("LREM", "l", "0", "a"), ("LREM", "l", "1", "nope"),
    ("LPOP", "l"), ("RPOP", "l", "2"), ("LMOVE", "l", "m", "LEFT", "RIGHT"),
    ("RPOPLPUSH", "l", "m"), ("RPOPLPUSH", "m", "m"), ("LTRIM", "m", "1", "0"),
    ("RPUSH", "l2", "a", "b"), ("LPOP", "l2", "5"),
    ("SET", "k", "1"), ("INCR", "k"), ("DECRBY", "k", "5"), ("INCRBYFLOAT", "k", "0.5"),
    ("APPEND", "k", "x"), ("SETRANGE", "k", "1", "yy"), ("SET", "k", "v", "EX", "100"),
    ("SET", "k", "w", "KEEPTTL"), ("PERSIST", "k"), ("EXPIRE", "k", "100"),
    ("GETEX", "k", "PERSIST"), ("GETEX", "k", "PX", "100000"), ("SETNX", "k", "n"),
    ("GETSET", "k", "g"), ("MSET", "k", "1", "k2", "2"), ("MSETNX", "k", "1", "k3", "3"),
    ("MSETNX", "k3", "3", "k4", "4"), ("RENAME", "k", "k5"), ("RENAMENX", "k5", "k2"),
    ("RENAMENX", "k5", "k6"), ("COPY", "k6", "k7"), ("RPUSH", "cl", "a"), ("COPY", "cl", "c2"),
    ("EXPIRE", "k7", "-1"), ("GETDEL", "k6"), ("DEL", "k2", "nokey", "k3"), ("UNLINK", "k4"),
]  # fmt: skip


@pytest.fixture
def subscriber(redis_server: RedisServer) -> Iterator[RawClient]:
    """A RESP2 connection subscribed to every key-event channel of redis-server."""
    admin = RawClient(redis_server.port)
    admin.call("CONFIG", "SET", "notify-keyspace-events", "Eg$lshz")
    sub = RawClient(redis_server.port)
    sub.call("PSUBSCRIBE", "__keyevent@*__:*")
    try:
        yield sub
    finally:
        sub.close()
        admin.call("CONFIG", "SET", "notify-keyspace-events", "")
        admin.close()


def _published(sub: RawClient) -> list[tuple[str, bytes]]:
    """The events redis-server published up to the sentinel key's ``set``."""
    got: list[tuple[str, bytes]] = []
    while True:
        message, _ = sub.send_raw(b"")
        assert isinstance(message, list), message
        assert message[0] == b"pmessage", message
        channel, key = message[2], message[3]
        assert isinstance(channel, bytes)
        assert isinstance(key, bytes)
        event = channel.split(b":", 1)[1].decode()
        if key == SENTINEL:
            return got
        got.append((event, key))


def test_change_events_match_redis_keyspace_notifications(
    twin: Twin, subscriber: RawClient
) -> None:
    ours: list[tuple[str, bytes]] = []
    for parts in SCRIPT:
        args = args_of(parts)
        theirs = twin.theirs(*parts)
        outcome = kv.execute(twin.conn, 0, now_ms(), args)
        assert not isinstance(theirs, Err), (parts, theirs)
        assert not isinstance(outcome.reply, Err), (parts, outcome.reply)
        ours += [(event, key) for event, _db, key in outcome.events]
    twin.theirs("SET", SENTINEL, "1")
    published = _published(subscriber)
    assert ours == published
    assert {e for e, _ in ours} >= {"hdel", "srem", "zrem", "lrem", "spop", "zpopmin", "del"}
