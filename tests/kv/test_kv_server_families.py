"""Every command family through redis-py against a litecluster replica node (its writes are
forwarded to the primary) and against redis-server, in RESP2 and RESP3: the same replies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from litecluster.cli.localcluster import free_port
from support import wait_for
from support.kv_harness import RedisServer
from support.nodes import Nodes

SCRIPT: list[tuple[str, ...]] = [
    # strings
    ("SET", "s", "10"), ("GET", "s"), ("INCRBY", "s", "5"), ("INCRBYFLOAT", "s", "1.5"),
    ("APPEND", "s2", "ab"), ("APPEND", "s2", "cd"), ("STRLEN", "s2"), ("GETRANGE", "s2", "1", "2"),
    ("SETRANGE", "s2", "1", "XY"), ("MSET", "m1", "a", "m2", "b"), ("MGET", "m1", "m2", "nope"),
    ("SETNX", "m1", "z"), ("MSETNX", "m3", "c", "m1", "d"), ("GETDEL", "m2"), ("DECR", "cnt"),
    ("SET", "s3", "v", "NX", "GET"), ("GETEX", "s3", "PERSIST"),
    # keys
    ("EXISTS", "s", "m1", "nope"), ("TYPE", "s2"), ("RENAME", "m1", "m4"), ("RENAMENX", "m4", "s"),
    ("COPY", "m4", "m5"), ("EXPIRE", "m5", "100"), ("TTL", "m5"), ("PERSIST", "m5"),
    ("TTL", "m5"), ("DEL", "m5", "nope"), ("UNLINK", "m4"), ("KEYS", "m*"),
    # hashes
    ("HSET", "h", "a", "1", "b", "2"), ("HSETNX", "h", "a", "9"), ("HGET", "h", "a"),
    ("HMGET", "h", "a", "x"), ("HINCRBY", "h", "a", "4"), ("HINCRBYFLOAT", "h", "b", "0.5"),
    ("HGETALL", "h"), ("HLEN", "h"), ("HSTRLEN", "h", "b"), ("HDEL", "h", "a"), ("HEXISTS", "h", "a"),
    ("HKEYS", "h"), ("HVALS", "h"),
    # sets
    ("SADD", "st", "a", "b", "c"), ("SADD", "st2", "b", "c", "d"), ("SREM", "st", "a"),
    ("SISMEMBER", "st", "b"), ("SMISMEMBER", "st", "a", "b"), ("SCARD", "st"),
    ("SMEMBERS", "st"), ("SINTER", "st", "st2"), ("SUNION", "st", "st2"), ("SDIFF", "st2", "st"),
    ("SINTERSTORE", "st3", "st", "st2"), ("SUNIONSTORE", "st4", "st", "st2"),
    ("SDIFFSTORE", "st5", "st2", "st"), ("SMEMBERS", "st4"),
    # lists
    ("RPUSH", "l", "a", "b", "c"), ("LPUSH", "l", "z"), ("LPUSHX", "nol", "x"),
    ("RPUSHX", "l", "d"), ("LLEN", "l"), ("LRANGE", "l", "0", "-1"), ("LINDEX", "l", "1"),
    ("LSET", "l", "1", "A"), ("LINSERT", "l", "BEFORE", "b", "ins"), ("LPOS", "l", "b"),
    ("LREM", "l", "1", "ins"), ("LMOVE", "l", "l2", "LEFT", "RIGHT"), ("LPOP", "l", "2"),
    ("RPOP", "l"), ("LTRIM", "l", "0", "0"), ("LRANGE", "l", "0", "-1"), ("LRANGE", "l2", "0", "-1"),
    # sorted sets
    ("ZADD", "z", "1", "a", "2", "b", "3", "c"), ("ZADD", "z", "XX", "CH", "5", "a"),
    ("ZADD", "z", "NX", "INCR", "1", "d"), ("ZSCORE", "z", "a"), ("ZMSCORE", "z", "a", "x"),
    ("ZINCRBY", "z", "2", "b"), ("ZCARD", "z"), ("ZCOUNT", "z", "2", "4"),
    ("ZRANGE", "z", "0", "-1", "WITHSCORES"), ("ZRANGE", "z", "(1", "+inf", "BYSCORE", "LIMIT", "0", "2"),
    ("ZRANGE", "z", "0", "-1", "REV"), ("ZRANK", "z", "c"), ("ZREVRANK", "z", "c"),
    ("ZRANGEBYSCORE", "z", "-inf", "4"), ("ZPOPMIN", "z"), ("ZPOPMAX", "z"),
    ("ZREM", "z", "b"), ("ZREMRANGEBYSCORE", "z", "0", "100"), ("ZCARD", "z"),
    # errors
    ("LPUSH", "s", "x"), ("INCR", "s2"), ("ZADD", "z", "NX", "XX", "1", "a"),
    ("DBSIZE",),
]  # fmt: skip

UNORDERED = {"KEYS", "SMEMBERS", "SINTER", "SUNION", "SDIFF", "HKEYS", "HVALS"}


def _run(client: redis.Redis, cmd: tuple[str, ...]) -> Any:
    try:
        got = client.execute_command(*cmd)
    except redis.ResponseError as exc:
        return ("error", str(exc))
    if cmd[0] in UNORDERED and isinstance(got, list | set):
        return sorted(got)
    return got


@pytest.fixture(scope="module")
def node_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    n = Nodes(tmp_path_factory.mktemp("families"))
    pport, rport = free_port(), free_port()
    try:
        p = n.node("p", args=["--resp", f"127.0.0.1:{pport}"])
        n.node("r", p, args=["--resp", f"127.0.0.1:{rport}"])
        token = n.token_file.read_text()
        redis.Redis(port=pport, password=token).set("warmup", 1)
        replica = redis.Redis(port=rport, password=token)
        wait_for(lambda: replica.get("warmup") == b"1", 30, "the replica")
        replica.delete("warmup")
        yield rport, token
    finally:
        n.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_every_family_answers_like_redis_server(
    node_port: tuple[int, str], redis_server: RedisServer, protocol: int, tmp_path: Path
) -> None:
    port, token = node_port
    ours = redis.Redis(port=port, password=token, protocol=protocol)
    theirs = redis.Redis(port=redis_server.port, protocol=protocol)
    ours.flushall()
    theirs.flushall()
    for cmd in SCRIPT:
        assert _run(ours, cmd) == _run(theirs, cmd), f"{' '.join(cmd)} (RESP{protocol})"
