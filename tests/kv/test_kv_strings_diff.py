"""Differential tests of the string commands against redis-server."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.kv_harness import Twin
from support.kv_strategies import (
    STRING_KEYS,
    Cmd,
    cmd,
    foreign,
    future_ms,
    future_s,
    ints,
    options,
    past_s,
    ttl_ms,
    ttl_s,
    values,
)

K = st.sampled_from([*STRING_KEYS, b"l1"])
SET_OPTS = options(
    "NX",
    "XX",
    "GET",
    "KEEPTTL",
    ("EX", ttl_s()),
    ("PX", ttl_ms()),
    ("EXAT", future_s()),
    ("PXAT", future_ms()),
    ("EXAT", past_s()),
    "nx",
    "Ex",
)
GETEX_OPTS = options(
    "PERSIST",
    ("EX", ttl_s()),
    ("PX", ttl_ms()),
    ("EXAT", future_s()),
    ("PXAT", future_ms()),
    ("EXAT", past_s()),
    "KEEPTTL",
    max_size=2,
)

STRING_COMMANDS: st.SearchStrategy[Cmd] = st.one_of(
    cmd("SET", K, values(), SET_OPTS), cmd("GET", K), cmd("SETNX", K, values()),
    cmd("SETEX", K, ttl_s(), values()), cmd("PSETEX", K, ttl_ms(), values()),
    cmd("MGET", st.lists(K, min_size=1, max_size=4)),
    cmd("MSET", st.lists(st.tuples(K, values()).map(list), min_size=1, max_size=3)
        .map(lambda ps: [x for p in ps for x in p])),
    cmd("MSETNX", K, values(), K, values()), cmd("MSET", K, values(), K),
    cmd("INCR", K), cmd("DECR", K), cmd("INCRBY", K, ints()), cmd("DECRBY", K, ints()),
    cmd("INCRBYFLOAT", K, values()), cmd("APPEND", K, values()), cmd("STRLEN", K),
    cmd("GETDEL", K), cmd("GETEX", K, GETEX_OPTS), cmd("GETRANGE", K, ints(), ints()),
    cmd("SETRANGE", K, st.integers(-1, 12).map(lambda n: b"%d" % n), values()),
    cmd("GETSET", K, values()), cmd("TTL", K), cmd("PTTL", K), cmd("EXPIRETIME", K),
    cmd("PEXPIRETIME", K), cmd("TYPE", K), cmd("EXISTS", K),
    cmd("GET"), cmd("SET", K), cmd("GETRANGE", K, "0"), cmd("SETNX", K, "a", "b"),
    foreign([b"s3", b"l1"]),
)  # fmt: skip


@settings(
    max_examples=int(os.environ.get("KV_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(STRING_COMMANDS, min_size=1, max_size=25))
def test_string_commands_match_redis(twin: Twin, commands: list[Cmd]) -> None:
    twin.reset()
    for c in commands:
        twin.check(*c)
    for key in STRING_KEYS:
        twin.check("GET", key)
        twin.check("PTTL", key)
