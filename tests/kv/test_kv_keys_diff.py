"""Differential tests of the generic key commands against redis-server."""

from __future__ import annotations

import os
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.kv_harness import Twin
from support.kv_strategies import Cmd, cmd, options, ttl_ms, ttl_s, values

KEYS = [b"s1", b"s2", b"l1", b"h1", b"t1", b"z1", b"k*", b"k?x", b""]
K = st.sampled_from(KEYS)
T0 = int(time.time())
ABS_S = st.sampled_from([T0 + 500, T0 + 1500, T0 + 3000, T0 - 10, 0, -5]).map(lambda n: b"%d" % n)
ABS_MS = st.sampled_from([T0 * 1000 + 700_000, T0 * 1000 + 2_500_000, T0 * 1000 - 1]).map(
    lambda n: b"%d" % n
)
PATTERNS = [b"*", b"s*", b"?1", b"[sl]1", b"[^s]*", b"k\\*", b"k?x", b"*1", b"", b"**", b"[a-z]?",
            b"h[", b"\\", b"[]", b"z\\1", b"*[1-2]"]  # fmt: skip
FLAGS = options("NX", "XX", "GT", "LT", "nx", max_size=2)

MAKE = st.one_of(
    cmd("SET", K, values()), cmd("RPUSH", K, values(), values()), cmd("SADD", K, values()),
    cmd("HSET", K, values(), values()), cmd("ZADD", K, "1", values(), "2", values()),
    cmd("SET", K, values(), "EX", ttl_s()),
)  # fmt: skip
KEY_COMMANDS: st.SearchStrategy[Cmd] = st.one_of(
    MAKE, MAKE,
    cmd("DEL", st.lists(K, min_size=1, max_size=3)), cmd("UNLINK", K, K),
    cmd("EXISTS", st.lists(K, min_size=1, max_size=3)), cmd("TOUCH", K, K),
    cmd("EXPIRE", K, ttl_s(), options("NX", "XX", max_size=1)),
    cmd("PEXPIRE", K, ttl_ms(), options("NX", "XX", max_size=1)),
    cmd("EXPIREAT", K, ABS_S, FLAGS), cmd("PEXPIREAT", K, ABS_MS, FLAGS),
    cmd("EXPIRE", K, "100", "BOGUS"), cmd("EXPIRE", K, st.sampled_from([b"-1", b"0", b"x"])),
    cmd("EXPIRETIME", K), cmd("PEXPIRETIME", K), cmd("TTL", K), cmd("PTTL", K),
    cmd("PERSIST", K), cmd("TYPE", K), cmd("KEYS", st.sampled_from(PATTERNS)),
    cmd("RENAME", K, K), cmd("RENAMENX", K, K),
    cmd("COPY", K, K, options("REPLACE", ("DB", st.sampled_from([b"0", b"1", b"16", b"x"])),
                              max_size=2)),
    cmd("DBSIZE"), cmd("PING"), cmd("PING", values()), cmd("ECHO", values()),
    cmd("PING", "a", "b"), cmd("FLUSHDB", st.sampled_from([b"ASYNC", b"SYNC", b"x"])),
    cmd("DEL"), cmd("RENAME", K), cmd("COPY", K),
    cmd(st.sampled_from([b"nosuch", b"N\x00x", b"A" * 150, b"", b"g\r\net"]),
        st.lists(st.one_of(values(), st.binary(min_size=60, max_size=140)), max_size=4)),
)  # fmt: skip


@settings(
    max_examples=int(os.environ.get("KV_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.one_of(
            KEY_COMMANDS,
            st.tuples(st.just("SCAN*"), st.sampled_from([[], [b"MATCH", b"s*"], [b"COUNT", b"1"],
                      [b"TYPE", b"list"], [b"TYPE", b"STRING", b"COUNT", b"2"], [b"COUNT", b"0"]])),
            st.just(("RANDOMKEY",)), st.sampled_from([("SELECT", 0), ("SELECT", 1)]),
        ),
        min_size=1,
        max_size=30,
    )
)  # fmt: skip
def test_key_commands_match_redis(twin: Twin, commands: list[Cmd]) -> None:
    twin.reset()
    twin.select(0)
    for c in commands:
        if c[0] == "SCAN*":
            twin.check_scan("SCAN", None, c[1])
        elif c[0] == "RANDOMKEY":
            twin.check_random("RANDOMKEY")
        elif c[0] == "SELECT":
            twin.select(c[1])
        else:
            twin.check(*c)
    for db in (0, 1):
        twin.select(db)
        twin.check("KEYS", "*")
        for key in KEYS:
            twin.check("TYPE", key)
            twin.check("PTTL", key)
