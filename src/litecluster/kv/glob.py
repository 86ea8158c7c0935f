"""Redis's glob patterns (KEYS, SCAN MATCH, HSCAN/SSCAN/ZSCAN MATCH, PSUBSCRIBE), with
``stringmatchlen``'s semantics and in time linear in the pattern times the subject.

``*`` any run, ``?`` one byte, ``[abc]``/``[^a-z]`` classes (ranges may be reversed, ``\\``
escapes inside), ``\\x`` a literal ``x``. Redis's quirks are kept: an unclosed ``[`` class runs
to the end of the pattern, and an empty subject matches only the empty pattern (KEYS and the
SCAN family special-case ``*``).

A pattern compiles once into tokens, each matching exactly one byte (a 256-entry table) or a
run (``*``), and a subject is matched by the classic greedy scan that, on a mismatch, resumes
after the last ``*`` one byte further on. With tokens of one byte each that scan is exact, and
it never backtracks further than the last star: a pattern such as ``a*a*a*...*b`` costs at most
len(pattern) x len(subject) steps (a backtracking matcher, or a regular expression with
``.*``, takes exponential time on it and would hold the event loop for minutes).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

Matcher = Callable[[bytes], bool]
_STAR = None
_ANY = bytes([1]) * 256
Token = bytes | None
"""A 256-byte table (nonzero: the byte matches), or None for ``*``."""


def _class(pat: bytes, p: int) -> tuple[bytes, int]:
    """The class starting at ``pat[p] == '['``: its table and the index of its last byte."""
    plen = len(pat)

    def pc(k: int) -> int:
        return pat[k] if k < plen else 0

    p += 1
    negate = pc(p) == 0x5E
    if negate:
        p += 1
    members = bytearray(256)
    while True:
        if pc(p) == 0x5C and plen - p >= 2:
            p += 1
            members[pat[p]] = 1
        elif pc(p) == 0x5D:
            break
        elif p >= plen:
            p -= 1  # unclosed: the class ran to the end of the pattern
            break
        elif plen - p >= 3 and pat[p + 1] == 0x2D:
            lo, hi = sorted((pat[p], pat[p + 2]))
            p += 2
            members[lo : hi + 1] = b"\x01" * (hi - lo + 1)
        else:
            members[pat[p]] = 1
        p += 1
    if negate:
        members = bytearray(0 if m else 1 for m in members)
    return bytes(members), p


def _literal(c: int) -> bytes:
    table = bytearray(256)
    table[c] = 1
    return bytes(table)


@lru_cache(maxsize=1024)
def _tokens(pattern: bytes) -> tuple[Token, ...]:
    out: list[Token] = []
    p, plen = 0, len(pattern)
    while p < plen:
        c = pattern[p]
        if c == 0x2A:
            if not out or out[-1] is not _STAR:  # a run of stars is one star
                out.append(_STAR)
        elif c == 0x3F:
            out.append(_ANY)
        elif c == 0x5B:
            table, p = _class(pattern, p)
            out.append(table)
        else:
            if c == 0x5C and plen - p >= 2:
                p += 1
            out.append(_literal(pattern[p]))
        p += 1
    return tuple(out)


def _match(tokens: tuple[Token, ...], s: bytes) -> bool:
    if not s:
        return not tokens
    n, slen = len(tokens), len(s)
    t = i = 0
    star, resume = -1, 0
    while i < slen:
        tok = tokens[t] if t < n else _ANY
        if t < n and tok is not _STAR and tok[s[i]]:
            t += 1
            i += 1
        elif t < n and tok is _STAR:
            star, resume = t, i
            t += 1
        elif star >= 0:
            resume += 1
            t, i = star + 1, resume
        else:
            return False
    while t < n and tokens[t] is _STAR:
        t += 1
    return t == n


def stringmatch(pattern: bytes, subject: bytes) -> bool:
    """Whether ``subject`` matches ``pattern`` (any pattern)."""
    return _match(_tokens(pattern), subject)


@lru_cache(maxsize=256)
def compile_glob(pattern: bytes) -> Matcher:
    """A function telling whether a key matches ``pattern`` (``*`` matches everything, even
    the empty key: KEYS and the SCAN family special-case it so)."""
    if pattern == b"*":
        return lambda _s: True
    tokens = _tokens(pattern)
    return lambda s: _match(tokens, s)


def literal_prefix(pattern: bytes) -> bytes:
    """The bytes every match starts with (up to the first special character)."""
    for k, c in enumerate(pattern):
        if c in b"*?[\\":
            return pattern[:k]
    return pattern
