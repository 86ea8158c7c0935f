"""Differential tests of the hash, set and list commands against redis-server."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.kv_harness import Twin
from support.kv_strategies import Cmd, cmd, ints, options, values

EXAMPLES = int(os.environ.get("KV_EXAMPLES", "60"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

FIELDS = st.sampled_from([b"a", b"b", b"c", b"1", b"10", b"", b"f\x00"])
NUMBERS = st.sampled_from([b"1", b"-2", b"0", b"10.5", b"abc", b"1e3", b"9223372036854775807",
                           b"inf", b"-inf", b"0x1p-2", b" 2", b"5.0e-1"])  # fmt: skip
COUNTS = st.sampled_from([b"0", b"1", b"2", b"5", b"-1", b"-3", b"x", b"-9223372036854775808",
                          b"4611686018427387904"])  # fmt: skip

HK = st.sampled_from([b"h1", b"h2", b"s1"])
HASH_COMMANDS = st.one_of(
    cmd("HSET", HK, st.lists(st.tuples(FIELDS, st.one_of(values(), NUMBERS)).map(list),
                             min_size=1, max_size=3).map(lambda ps: [x for p in ps for x in p])),
    cmd("HMSET", HK, FIELDS, values()), cmd("HSET", HK, FIELDS), cmd("HSETNX", HK, FIELDS, values()),
    cmd("HGET", HK, FIELDS), cmd("HMGET", HK, FIELDS, FIELDS), cmd("HGETALL", HK),
    cmd("HDEL", HK, FIELDS, FIELDS), cmd("HEXISTS", HK, FIELDS), cmd("HLEN", HK),
    cmd("HKEYS", HK), cmd("HVALS", HK), cmd("HINCRBY", HK, FIELDS, ints()),
    cmd("HINCRBYFLOAT", HK, FIELDS, NUMBERS), cmd("HSTRLEN", HK, FIELDS),
    cmd("SET", "s1", values()), cmd("DEL", HK),
)  # fmt: skip

SK = st.sampled_from([b"t1", b"t2", b"t3", b"s1"])
MEMBERS = st.sampled_from([b"a", b"b", b"c", b"d", b"1", b"2", b"10", b"-1", b""])
SET_COMMANDS = st.one_of(
    cmd("SADD", SK, st.lists(MEMBERS, min_size=1, max_size=4)),
    cmd("SREM", SK, st.lists(MEMBERS, min_size=1, max_size=3)), cmd("SMEMBERS", SK),
    cmd("SISMEMBER", SK, MEMBERS), cmd("SMISMEMBER", SK, MEMBERS, MEMBERS), cmd("SCARD", SK),
    cmd("SINTER", st.lists(SK, min_size=1, max_size=3)),
    cmd("SUNION", st.lists(SK, min_size=1, max_size=3)),
    cmd("SDIFF", st.lists(SK, min_size=1, max_size=3)),
    cmd("SINTERSTORE", SK, st.lists(SK, min_size=1, max_size=3)),
    cmd("SUNIONSTORE", SK, st.lists(SK, min_size=1, max_size=3)),
    cmd("SDIFFSTORE", SK, st.lists(SK, min_size=1, max_size=3)),
    cmd("SINTERCARD", st.sampled_from([b"1", b"2", b"0", b"5", b"x"]), SK, SK,
        options(("LIMIT", st.sampled_from([b"0", b"1", b"-1", b"x"])), max_size=1)),
    cmd("SMOVE", SK, SK, MEMBERS), cmd("SET", "s1", values()), cmd("DEL", SK),
)  # fmt: skip

LK = st.sampled_from([b"l1", b"l2", b"s1"])
ITEMS = st.sampled_from([b"a", b"b", b"c", b"1", b""])
IDX = st.sampled_from([b"0", b"1", b"2", b"-1", b"-2", b"5", b"-6", b"x", b"100"])
LIST_COMMANDS = st.one_of(
    cmd("LPUSH", LK, st.lists(ITEMS, min_size=1, max_size=4)),
    cmd("RPUSH", LK, st.lists(ITEMS, min_size=1, max_size=4)),
    cmd("LPUSHX", LK, ITEMS), cmd("RPUSHX", LK, ITEMS, ITEMS),
    cmd("LPOP", LK), cmd("RPOP", LK), cmd("LPOP", LK, COUNTS), cmd("RPOP", LK, COUNTS),
    cmd("LPOP", LK, "1", "2"), cmd("LLEN", LK), cmd("LRANGE", LK, IDX, IDX),
    cmd("LINDEX", LK, IDX), cmd("LSET", LK, IDX, ITEMS), cmd("LREM", LK, IDX, ITEMS),
    cmd("LTRIM", LK, IDX, IDX),
    cmd("LINSERT", LK, st.sampled_from([b"BEFORE", b"after", b"x"]), ITEMS, ITEMS),
    cmd("LPOS", LK, ITEMS, options(("RANK", IDX), ("COUNT", COUNTS), ("MAXLEN", COUNTS))),
    cmd("LMOVE", LK, LK, st.sampled_from([b"LEFT", b"RIGHT", b"up"]),
        st.sampled_from([b"LEFT", b"right"])),
    cmd("RPOPLPUSH", LK, LK), cmd("SET", "s1", values()), cmd("DEL", LK),
)  # fmt: skip


@SETTINGS
@given(
    st.lists(
        st.one_of(
            HASH_COMMANDS,
            cmd("HRANDFIELD*", HK, options(COUNTS, max_size=1)),
            cmd("HRANDFIELD*", HK, COUNTS, st.sampled_from([b"WITHVALUES", b"x"])),
            st.tuples(st.just("HSCAN*"), HK, st.sampled_from([[], [b"MATCH", b"[ab]"],
                                                               [b"COUNT", b"1"]])),
        ),
        min_size=1, max_size=30,
    )
)  # fmt: skip
def test_hash_commands_match_redis(twin: Twin, commands: list[Cmd]) -> None:
    twin.reset()
    run(twin, commands)
    for key in (b"h1", b"h2"):
        twin.check("HGETALL", key)


@SETTINGS
@given(
    st.lists(
        st.one_of(
            SET_COMMANDS,
            cmd("SPOP*", SK, options(COUNTS, max_size=1)),
            cmd("SRANDMEMBER*", SK, options(COUNTS, max_size=1)),
            st.tuples(st.just("SSCAN*"), SK, st.sampled_from([[], [b"MATCH", b"?"],
                                                              [b"COUNT", b"2"]])),
        ),
        min_size=1, max_size=30,
    )
)  # fmt: skip
def test_set_commands_match_redis(twin: Twin, commands: list[Cmd]) -> None:
    twin.reset()
    run(twin, commands)
    for key in (b"t1", b"t2", b"t3"):
        twin.check("SMEMBERS", key)


@SETTINGS
@given(st.lists(LIST_COMMANDS, min_size=1, max_size=40))
def test_list_commands_match_redis(twin: Twin, commands: list[Cmd]) -> None:
    twin.reset()
    run(twin, commands)
    for key in (b"l1", b"l2"):
        twin.check("LRANGE", key, "0", "-1")


def run(twin: Twin, commands: list[Cmd]) -> None:
    for c in commands:
        name = c[0]
        if name.endswith("SCAN*"):
            twin.check_scan(name[:-1], c[1], c[2])
        elif name.endswith("*"):
            twin.check_random(name[:-1], *c[1:])
        else:
            twin.check(*c)
