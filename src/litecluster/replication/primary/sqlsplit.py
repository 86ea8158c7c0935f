"""Splitting a SQL string that holds several statements into one string per statement.

rqlite clients send ``"INSERT ...; INSERT ..."`` as one statement; SQLite's Python API runs one
statement per call. The split follows the rules of SQLite's own ``sqlite3_complete()`` (its
public-domain state machine, here over a regex tokenizer): a semicolon ends a statement unless
it is inside a string, a quoted identifier or a comment, or inside the ``BEGIN ... END`` body of
a ``CREATE TRIGGER``. ``tests/replication/test_sqlsplit.py`` checks the pieces against
``sqlite3_complete()`` itself and against SQLite preparing them.

The work is linear in the length of the string: inside a statement the scanner jumps from one
semicolon to the next with one regex match, and looks at words only where a statement begins
and after the semicolons of a trigger body.
"""

from __future__ import annotations

import re

from litecluster.errors import RequestError

# Token kinds of sqlite3_complete().
_SEMI, _WS, _OTHER, _EXPLAIN, _CREATE, _TEMP, _TRIGGER, _END = range(8)
# Its states (INVALID, the state before any token, behaves as START for splitting).
_START, _NORMAL, _EXPLAINING, _CREATING, _IN_TRIGGER, _AFTER_SEMI, _AFTER_END = range(1, 8)

# _MOVES[state][token] -> next state: sqlite3_complete()'s transition table.
_MOVES: dict[int, tuple[int, ...]] = {
    #               SEMI         WS           OTHER        EXPLAIN      CREATE     TEMP         TRIGGER      END
    _START:        (_START,      _START,      _NORMAL,     _EXPLAINING, _CREATING, _NORMAL,     _NORMAL,     _NORMAL),
    _NORMAL:       (_START,      _NORMAL,     _NORMAL,     _NORMAL,     _NORMAL,   _NORMAL,     _NORMAL,     _NORMAL),
    _EXPLAINING:   (_START,      _EXPLAINING, _EXPLAINING, _NORMAL,     _CREATING, _NORMAL,     _NORMAL,     _NORMAL),
    _CREATING:     (_START,      _CREATING,   _NORMAL,     _NORMAL,     _NORMAL,   _CREATING,   _IN_TRIGGER, _NORMAL),
    _IN_TRIGGER:   (_AFTER_SEMI, _IN_TRIGGER, _IN_TRIGGER, _IN_TRIGGER, _IN_TRIGGER, _IN_TRIGGER, _IN_TRIGGER, _IN_TRIGGER),
    _AFTER_SEMI:   (_AFTER_SEMI, _AFTER_SEMI, _IN_TRIGGER, _IN_TRIGGER, _IN_TRIGGER, _IN_TRIGGER, _IN_TRIGGER, _AFTER_END),
    _AFTER_END:    (_START,      _AFTER_END,  _IN_TRIGGER, _IN_TRIGGER, _IN_TRIGGER, _IN_TRIGGER, _IN_TRIGGER, _IN_TRIGGER),
}  # fmt: skip

_KEYWORDS = {
    "explain": _EXPLAIN, "create": _CREATE, "temp": _TEMP, "temporary": _TEMP,
    "trigger": _TRIGGER, "end": _END,
}  # fmt: skip

# SQLite's whitespace is ASCII only; identifier characters are letters, digits, _ and $ and
# every character beyond ASCII. A string, quoted identifier or block comment left open runs
# to the end (SQLite then reports the error when it prepares the piece).
_QUOTED = r"'[^']*(?:'|\Z)|\"[^\"]*(?:\"|\Z)|`[^`]*(?:`|\Z)|\[[^\]]*(?:\]|\Z)"
_COMMENT = r"--[^\n]*|/\*.*?(?:\*/|\Z)"
_TOKEN = re.compile(
    rf"(?P<ws>[ \t\n\v\f\r]+|{_COMMENT})|(?P<semi>;)|(?P<word>[A-Za-z0-9_$\x80-\U0010ffff]+)"
    rf"|(?P<other>{_QUOTED}|.)",
    re.DOTALL,
)
# Everything up to the next semicolon that ends or may end something, in one match.
_TO_SEMI = re.compile(rf"(?:[^;'\"`\[\-/]+|{_QUOTED}|{_COMMENT}|[-/])*", re.DOTALL)
_SPACE = " \t\n\v\f\r"


def split_sql(sql: str, limit: int = 0) -> list[str]:
    """The statements of ``sql``, each with its terminating semicolon (the last one may have
    none), without the whitespace around them; empty statements (``;;``, comments only) are
    dropped. With ``limit``, the scan stops once it found more than ``limit`` statements."""
    pieces: list[str] = []
    start = pos = 0
    state = _START
    content = False  # the current piece has a token other than whitespace and semicolons
    n = len(sql)
    while pos < n:
        if state in (_NORMAL, _IN_TRIGGER):
            pos = _TO_SEMI.match(sql, pos).end()  # type: ignore[union-attr]
            if pos >= n:
                break
            kind, end = _SEMI, pos + 1
        else:
            m = _TOKEN.match(sql, pos)
            assert m is not None  # the last alternative matches any character
            end = m.end()
            group = m.lastgroup
            if group == "ws":
                pos = end
                continue
            if group == "semi":
                kind = _SEMI
            elif group == "word":
                kind = _KEYWORDS.get(m.group().lower(), _OTHER)
            else:
                kind = _OTHER
            if kind != _SEMI:
                content = True
        state = _MOVES[state][kind]
        pos = end
        if kind == _SEMI and state == _START:
            if content:
                pieces.append(sql[start:end].strip(_SPACE))
                if limit and len(pieces) > limit:
                    return pieces
            start, content = end, False
    if content:
        pieces.append(sql[start:].strip(_SPACE))
    return pieces


def needs_split(sql: str) -> bool:
    """Whether ``sql`` may hold more than one statement (cheap: no semicolon, or only a
    trailing one, means no)."""
    first = sql.find(";")
    return first >= 0 and bool(sql[first + 1 :].strip(_SPACE))


def positional_refusal(index: int) -> RequestError:
    return RequestError(
        "positional parameters cannot go with a string of several statements",
        index=index,
        hint="send each statement as its own element with its parameters, or use named "
        "parameters (every statement of the string gets them)",
    )
