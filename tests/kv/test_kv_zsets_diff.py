"""Differential tests of the sorted set commands against redis-server.

Lex ranges are asked only of ``zl``, whose members all have score 0: Redis leaves them
unspecified when scores differ (documented in docs/kv.md)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.kv_harness import Twin
from support.kv_strategies import Cmd, cmd, options

ZK = st.sampled_from([b"z1", b"z2", b"s1"])
LK = st.sampled_from([b"zl", b"s1"])
MEMBERS = st.sampled_from([b"a", b"b", b"c", b"d", b"aa", b"", b"1", b"\xff"])
SCORES = st.sampled_from([b"1", b"2", b"1.5", b"-1", b"0", b"inf", b"-inf", b"+inf", b"1e300",
                          b"0.1", b"-0", b"3", b"x", b"nan", b"(1", b" 1", b"1e400", b"0x10"])  # fmt: skip
BOUNDS = st.sampled_from([b"-inf", b"+inf", b"inf", b"(1", b"1", b"(0.5", b"2", b"x", b"(", b"",
                          b" 1", b"1e400", b"(-inf", b"0.1", b"nan", b"(2"])  # fmt: skip
LEX = st.sampled_from([b"-", b"+", b"[a", b"(a", b"[b", b"(c", b"[aa", b"a", b"[", b"(", b"[\xff"])
RANKS = st.sampled_from([b"0", b"1", b"-1", b"2", b"-2", b"10", b"x", b"-100"])
COUNTS = st.sampled_from([b"0", b"1", b"3", b"-1", b"x"])
LIMIT = options(("LIMIT", st.sampled_from([b"0", b"1", b"-1", b"2"]), st.sampled_from(
    [b"1", b"2", b"-1", b"0", b"x"])), max_size=1)  # fmt: skip
ZADD_FLAGS = options("NX", "XX", "GT", "LT", "CH", "INCR", "ch", max_size=3)

ZSET_COMMANDS: st.SearchStrategy[Cmd] = st.one_of(
    cmd("ZADD", ZK, ZADD_FLAGS, st.lists(st.tuples(SCORES, MEMBERS).map(list), min_size=1,
        max_size=3).map(lambda ps: [x for p in ps for x in p])),
    cmd("ZADD", ZK, "1"), cmd("ZADD", "zl", options("NX", "XX", "CH"), "0", MEMBERS),
    cmd("ZINCRBY", ZK, SCORES, MEMBERS), cmd("ZREM", ZK, MEMBERS, MEMBERS),
    cmd("ZSCORE", ZK, MEMBERS), cmd("ZMSCORE", ZK, MEMBERS, MEMBERS), cmd("ZCARD", ZK),
    cmd("ZCOUNT", ZK, BOUNDS, BOUNDS), cmd("ZRANK", ZK, MEMBERS), cmd("ZREVRANK", ZK, MEMBERS),
    cmd("ZRANGE", ZK, RANKS, RANKS, options("WITHSCORES", "REV", "withscores")),
    cmd("ZRANGE", ZK, BOUNDS, BOUNDS, "BYSCORE", options("WITHSCORES", "REV", LIMIT)),
    cmd("ZRANGE", ZK, RANKS, RANKS, "LIMIT", "0", "1"),
    cmd("ZRANGE", LK, LEX, LEX, "BYLEX", options("REV", LIMIT, "WITHSCORES")),
    cmd("ZRANGE", ZK, RANKS, RANKS, "BYSCORE", "BYLEX"),
    cmd("ZREVRANGE", ZK, RANKS, RANKS, options("WITHSCORES", max_size=1)),
    cmd("ZRANGEBYSCORE", ZK, BOUNDS, BOUNDS, options("WITHSCORES", LIMIT, "REV")),
    cmd("ZREVRANGEBYSCORE", ZK, BOUNDS, BOUNDS, options("WITHSCORES", LIMIT)),
    cmd("ZRANGEBYLEX", LK, LEX, LEX, LIMIT), cmd("ZREVRANGEBYLEX", LK, LEX, LEX, LIMIT),
    cmd("ZLEXCOUNT", LK, LEX, LEX),
    cmd("ZPOPMIN", ZK, options(COUNTS, max_size=1)), cmd("ZPOPMAX", ZK, options(COUNTS, max_size=1)),
    cmd("ZPOPMIN", ZK, "1", "2"),
    cmd("ZREMRANGEBYSCORE", ZK, BOUNDS, BOUNDS), cmd("ZREMRANGEBYRANK", ZK, RANKS, RANKS),
    cmd("ZREMRANGEBYLEX", LK, LEX, LEX), cmd("SET", "s1", "v"), cmd("DEL", ZK),
)  # fmt: skip


@settings(
    max_examples=int(os.environ.get("KV_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.one_of(
            ZSET_COMMANDS,
            st.tuples(st.just("ZSCAN*"), ZK, st.sampled_from([[], [b"MATCH", b"?"],
                                                              [b"COUNT", b"1"]])),
        ),
        min_size=1, max_size=30,
    )
)  # fmt: skip
def test_sorted_set_commands_match_redis(twin: Twin, commands: list[Cmd]) -> None:
    twin.reset()
    for c in commands:
        if c[0] == "ZSCAN*":
            twin.check_scan("ZSCAN", c[1], c[2])
        else:
            twin.check(*c)
    for key in (b"z1", b"z2", b"zl"):
        twin.check("ZRANGE", key, "0", "-1", "WITHSCORES")
