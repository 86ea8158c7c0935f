"""Numbers and patterns read and printed as redis-server does: INCRBYFLOAT's long double,
scores, score range bounds, glob patterns."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.kv_harness import Twin

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip

DIGITS = st.text("0123456789", min_size=1, max_size=22)
DECIMAL = st.builds(
    lambda sign, whole, frac, exp: sign + whole + frac + exp,
    st.sampled_from(["", "-", "+"]),
    DIGITS,
    st.one_of(st.just(""), DIGITS.map(lambda d: "." + d), st.just(".")),
    st.one_of(st.just(""), st.integers(-330, 330).map(lambda e: f"e{e}")),
)
NUMBER = st.one_of(
    DECIMAL, DECIMAL, st.floats(allow_nan=False).map(repr),
    st.sampled_from(["inf", "-inf", "Infinity", "nan", "0x1p3", "0x.8", "-0x1P-1074", "1e-400",
                     " 1", "1 ", "", ".", "-", "1e", "0x", "1_0", "\u0661"]),
).map(lambda s: s.encode())  # fmt: skip


@SETTINGS
@given(NUMBER, st.lists(NUMBER, min_size=1, max_size=4))
def test_incrbyfloat_computes_and_prints_like_redis(
    twin: Twin, start: bytes, steps: list[bytes]
) -> None:
    twin.reset()
    twin.check("SET", "f", start)
    twin.check("HSET", "h", "f", start)
    for step in steps:
        twin.check("INCRBYFLOAT", "f", step)
        twin.check("HINCRBYFLOAT", "h", "f", step)
        twin.check("INCRBY", "f", step)


@SETTINGS
@given(st.lists(NUMBER, min_size=1, max_size=4), NUMBER, NUMBER)
def test_scores_and_bounds_parse_like_redis(
    twin: Twin, scores: list[bytes], lo: bytes, hi: bytes
) -> None:
    twin.reset()
    for i, score in enumerate(scores):
        twin.check("ZADD", "z", score, f"m{i}")
        twin.check("ZINCRBY", "z", score, "m0")
    twin.check("ZRANGE", "z", "0", "-1", "WITHSCORES")
    twin.check_scan("ZSCAN", b"z", [])
    for a, b in ((lo, hi), (b"(" + lo, hi), (lo, b"(" + hi)):
        twin.check("ZRANGEBYSCORE", "z", a, b, "WITHSCORES")
        twin.check("ZCOUNT", "z", a, b)


KEYS = [b"hello", b"hallo", b"hxllo", b"hllo", b"heeeello", b"h*llo", b"h?llo", b"h[a]llo",
        b"", b"a", b"-", b"^", b"]", b"\\", b"ab", b"b-a"]  # fmt: skip
PATTERN = st.lists(
    st.sampled_from(
        [b"h", b"e", b"l", b"o", b"a", b"*", b"?", b"[", b"]", b"^", b"-", b"\\", b"b"]
    ),
    max_size=8,
).map(b"".join)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(PATTERN, min_size=1, max_size=10))
def test_glob_patterns_match_like_redis(twin: Twin, patterns: list[bytes]) -> None:
    if not twin.ours("EXISTS", "hello"):
        twin.reset()
        for key in KEYS:
            twin.check("SET", key, "v")
            twin.check("SADD", "members", key)
    for pattern in patterns:
        twin.check("KEYS", pattern)
        twin.check_scan("SSCAN", b"members", [b"MATCH", pattern])
