"""The glob matcher of KEYS, SCAN MATCH and PSUBSCRIBE (kv/glob.py) against a line-by-line
port of redis-server's ``stringmatchlen`` (below, the matcher litecluster used before, exact
but exponential on some patterns), and on the patterns that made that one hang."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from litecluster.kv.glob import compile_glob, stringmatch


def _reference(pat: bytes, p: int, s: bytes, i: int, skip: list[bool]) -> bool:
    plen, slen = len(pat), len(s)

    def pc(k: int) -> int:
        return pat[k] if k < plen else 0

    while p < plen and i < slen:
        c = pat[p]
        if c == 0x2A:  # '*'
            while p < plen and pc(p + 1) == 0x2A:
                p += 1
            if p == plen - 1:
                return True
            while i < slen:
                if _reference(pat, p + 1, s, i, skip):
                    return True
                if skip[0]:
                    return False
                i += 1
            skip[0] = True
            return False
        if c == 0x3F:  # '?'
            i += 1
        elif c == 0x5B:  # '['
            p += 1
            negate = pc(p) == 0x5E
            if negate:
                p += 1
            matched = False
            while True:
                if pc(p) == 0x5C and plen - p >= 2:
                    p += 1
                    if pat[p] == s[i]:
                        matched = True
                elif pc(p) == 0x5D:
                    break
                elif p >= plen:
                    p -= 1
                    break
                elif plen - p >= 3 and pat[p + 1] == 0x2D:
                    lo, hi = sorted((pat[p], pat[p + 2]))
                    p += 2
                    if lo <= s[i] <= hi:
                        matched = True
                elif pat[p] == s[i]:
                    matched = True
                p += 1
            if negate:
                matched = not matched
            if not matched:
                return False
            i += 1
        else:
            if c == 0x5C and plen - p >= 2:
                p += 1
            if pat[p] != s[i]:
                return False
            i += 1
        p += 1
        if i == slen:
            while pc(p) == 0x2A:
                p += 1
            break
    return p >= plen and i == slen


def reference(pattern: bytes, subject: bytes) -> bool:
    return _reference(pattern, 0, subject, 0, [False])


patterns = st.binary(max_size=10).map(lambda b: bytes(b"ab*?[]^-\\c"[x % 10] for x in b))
subjects = st.binary(max_size=8).map(lambda b: bytes(b"abc-^]\\*"[x % 8] for x in b))


@settings(max_examples=400, deadline=None)
@given(patterns, subjects)
def test_every_pattern_matches_as_redis_does(pattern: bytes, subject: bytes) -> None:
    assert stringmatch(pattern, subject) == reference(pattern, subject)
    if pattern != b"*":
        assert compile_glob(pattern)(subject) == reference(pattern, subject)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("stars", [10, 40, 2000])
def test_patterns_that_backtrack_exponentially_elsewhere_answer_at_once(stars: int) -> None:
    # 12 stars took 66 s with the regular expression; here each is a few microseconds.
    key = b"a" * 40
    assert not stringmatch(b"a*" * stars + b"b", key)
    assert stringmatch(b"a*" * stars, b"a" * stars)
    assert not compile_glob(b"*a" * stars + b"[b]")(b"a" * 1000)
