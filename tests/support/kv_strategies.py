"""Hypothesis strategies: random command sequences per family, on a small key space so that
commands meet each other's keys (and each other's types: WRONGTYPE is exercised too)."""

from __future__ import annotations

import time
from typing import Any

from hypothesis import strategies as st

Cmd = tuple[Any, ...]

# Keys of every type, shared by the families so that WRONGTYPE comes up.
STRING_KEYS = [b"s1", b"s2", b"s3"]
OTHER_KEYS = [b"l1", b"h1", b"t1", b"z1"]
KEYS = STRING_KEYS + OTHER_KEYS + [b"missing"]

VALUES = [
    b"", b"0", b"1", b"-1", b"10", b"007", b"-0", b"+5", b"3.5", b"-2.25", b"1e3", b"0x10",
    b" 1", b"1 ", b"abc", b"x\x00y", b"\xff\xfe", b"9223372036854775807",
    b"-9223372036854775808", b"9223372036854775808", b"0.1", b"inf", b"-inf", b"nan",
    b"1e308", b"1e-320", b"1.5e300",
]  # fmt: skip
INTS = [b"0", b"1", b"2", b"3", b"-1", b"-2", b"-3", b"5", b"100", b"-100", b"x", b"1.5",
        b"9223372036854775807", b"-9223372036854775808", b""]  # fmt: skip


def values() -> st.SearchStrategy[bytes]:
    return st.one_of(st.sampled_from(VALUES), st.binary(max_size=6))


def ints() -> st.SearchStrategy[bytes]:
    return st.one_of(st.sampled_from(INTS), st.integers(-10, 10).map(lambda n: b"%d" % n))


def cmd(*parts: Any) -> st.SearchStrategy[Cmd]:
    """A command whose parts are constants or strategies (a list part is spliced in)."""

    def flatten(items: tuple[Any, ...]) -> Cmd:
        out: list[Any] = []
        for item in items:
            if isinstance(item, list):
                out.extend(item)
            else:
                out.append(item)
        return tuple(out)

    return st.tuples(*(p if isinstance(p, st.SearchStrategy) else st.just(p) for p in parts)).map(
        flatten
    )


def options(*choices: Any, max_size: int = 3) -> st.SearchStrategy[list[Any]]:
    """Zero or more option groups, each a list of parts (constants or strategies)."""
    groups = [
        st.tuples(*(p if isinstance(p, st.SearchStrategy) else st.just(p) for p in c)).map(list)
        if isinstance(c, tuple)
        else c.map(lambda x: [x]) if isinstance(c, st.SearchStrategy) else st.just([c])
        for c in choices
    ]  # fmt: skip
    return st.lists(st.one_of(*groups), max_size=max_size).map(
        lambda gs: [x for g in gs for x in g]
    )


def future_s() -> st.SearchStrategy[bytes]:
    """An absolute time in seconds, 100 to 10,000 s from now (no key expires during a test)."""
    return st.integers(100, 10_000).map(lambda d: b"%d" % (int(time.time()) + d))


def future_ms() -> st.SearchStrategy[bytes]:
    return st.integers(100_000, 10_000_000).map(lambda d: b"%d" % (int(time.time() * 1000) + d))


def past_s() -> st.SearchStrategy[bytes]:
    return st.integers(1, 10_000).map(lambda d: b"%d" % (int(time.time()) - d))


BAD_TTLS = [b"0", b"-1", b"-100", b"x", b"", b"1.5", b"9223372036854775807",
            b"-9223372036854775808", b"9223372036854775"]  # fmt: skip
"""Expiry arguments Redis refuses (or that overflow); valid ones are long, so nothing
expires while a test compares two servers whose clocks are read a moment apart."""


def ttl_s() -> st.SearchStrategy[bytes]:
    return st.one_of(st.integers(100, 10_000).map(lambda n: b"%d" % n), st.sampled_from(BAD_TTLS))


def ttl_ms() -> st.SearchStrategy[bytes]:
    return st.one_of(st.integers(100_000, 10_000_000).map(lambda n: b"%d" % n),
                     st.sampled_from(BAD_TTLS))  # fmt: skip


def foreign(keys: list[bytes]) -> st.SearchStrategy[Cmd]:
    """Commands that put other types under the family's keys."""
    k = st.sampled_from(keys)
    return st.one_of(
        cmd("SET", k, values()), cmd("RPUSH", k, values()), cmd("SADD", k, values()),
        cmd("HSET", k, values(), values()), cmd("ZADD", k, "1", values()), cmd("DEL", k),
    )  # fmt: skip
