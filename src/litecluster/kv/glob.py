"""Redis's glob patterns (KEYS, SCAN MATCH, HSCAN/SSCAN/ZSCAN MATCH), as ``stringmatchlen``.

``*`` any run, ``?`` one byte, ``[abc]``/``[^a-z]`` classes (ranges may be reversed, ``\\``
escapes inside), ``\\x`` a literal ``x``. Redis's quirks are kept: an unclosed ``[`` class runs
to the end of the pattern, and the pattern is a C string past its end (reads beyond it see a
NUL byte). Patterns made only of literals, ``*`` and ``?`` become a compiled regular expression;
the others run through a port of the C matcher.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

Matcher = Callable[[bytes], bool]


def _match(pat: bytes, p: int, s: bytes, i: int, skip: list[bool]) -> bool:
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
                if _match(pat, p + 1, s, i, skip):
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


def stringmatch(pattern: bytes, subject: bytes) -> bool:
    """The C matcher, for any pattern."""
    return _match(pattern, 0, subject, 0, [False])


@lru_cache(maxsize=256)
def compile_glob(pattern: bytes) -> Matcher:
    """A function telling whether a key matches ``pattern`` (``*`` matches everything, even
    the empty key: KEYS and the SCAN family special-case it so)."""
    if pattern == b"*":
        return lambda _s: True
    if b"[" in pattern or b"\\" in pattern or b"\0" in pattern:
        return lambda s: stringmatch(pattern, s)
    parts = []
    for c in pattern:
        if c == 0x2A:
            parts.append(b".*")
        elif c == 0x3F:
            parts.append(b".")
        else:
            parts.append(re.escape(bytes([c])))
    rx = re.compile(b"".join(parts), re.DOTALL)
    # The C matcher never matches an empty subject except with an empty pattern.
    return lambda s: rx.fullmatch(s) is not None if s else not pattern


def literal_prefix(pattern: bytes) -> bytes:
    """The bytes every match starts with (up to the first special character)."""
    for k, c in enumerate(pattern):
        if c in b"*?[\\":
            return pattern[:k]
    return pattern
