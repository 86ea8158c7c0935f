"""Splitting a string of several statements: against SQLite's own sqlite3_complete() and
against SQLite preparing the pieces."""

from __future__ import annotations

import re
import time

import pytest
import sqlean
from hypothesis import given, settings
from hypothesis import strategies as st

from litecluster.errors import RequestError
from litecluster.replication.primary.sqlexec import Statement, expand_statements
from litecluster.replication.primary.sqlsplit import needs_split, split_sql


@pytest.mark.parametrize(
    ("sql", "pieces"),
    [
        ("INSERT INTO t VALUES(1); INSERT INTO t VALUES(2)",
         ["INSERT INTO t VALUES(1);", "INSERT INTO t VALUES(2)"]),
        ("SELECT ';' ; SELECT \"a;b\", `c;d`, [e;f];",
         ["SELECT ';' ;", 'SELECT "a;b", `c;d`, [e;f];']),
        ("SELECT 'it''s; fine'; SELECT 2", ["SELECT 'it''s; fine';", "SELECT 2"]),
        ("SELECT 1 -- a comment; not a statement\n; SELECT 2 /* ; */",
         ["SELECT 1 -- a comment; not a statement\n;", "SELECT 2 /* ; */"]),
        ("  ;; SELECT 1;;  -- trailing; comment", ["SELECT 1;"]),
        ("CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO u VALUES(1); "
         "UPDATE u SET a = CASE WHEN 1 THEN 2 END; END; SELECT 1",
         ["CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO u VALUES(1); "
          "UPDATE u SET a = CASE WHEN 1 THEN 2 END; END;", "SELECT 1"]),
        ("create temporary trigger tr before delete on t begin select raise(abort, 'x;y'); end",
         ["create temporary trigger tr before delete on t begin select raise(abort, 'x;y'); end"]),
        ("EXPLAIN CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END; SELECT 2",
         ["EXPLAIN CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END;", "SELECT 2"]),
        # "end" and "trigger" as parts of longer words, or as names, change nothing.
        ("CREATE TABLE triggers(ending); SELECT 1", ["CREATE TABLE triggers(ending);", "SELECT 1"]),
        ("SELECT 'open; SELECT 2", ["SELECT 'open; SELECT 2"]),
        ("SELECT 4/2; SELECT 3-1; /* open", ["SELECT 4/2;", "SELECT 3-1;"]),
        ("SELECT 'é;ü'; SELECT ü", ["SELECT 'é;ü';", "SELECT ü"]),
        ("-- only a comment", []),
    ],
)  # fmt: skip
def test_split_examples(sql: str, pieces: list[str]) -> None:
    assert split_sql(sql) == pieces
    for piece in pieces[:-1]:
        assert sqlean.complete_statement(piece), piece


def test_needs_split_is_cheap_and_conservative() -> None:
    assert not needs_split("INSERT INTO t VALUES(1)")
    assert not needs_split("INSERT INTO t VALUES(1);  \n")
    assert needs_split("INSERT INTO t VALUES(1); INSERT INTO t VALUES(2)")
    assert needs_split("SELECT ';' ")  # a semicolon in a string: split_sql decides
    assert split_sql("SELECT ';' ") == ["SELECT ';'"]


# ---- differential: arbitrary text against sqlite3_complete() -----------------------------------

_GAP = re.compile(r"(?:[ \t\n\v\f\r;]|--[^\n]*(?:\n|\Z)|/\*.*?(?:\*/|\Z))*", re.DOTALL)
_FRAGMENTS = [
    "SELECT 1", "x", ";", " ", "\n", "'", '"', "`", "[", "]", "--", "/*", "*/", "-", "/",
    "CREATE", "TEMP", "TEMPORARY", "TRIGGER", "BEGIN", "END", "EXPLAIN", "end", "é", "(", "$",
    "CREATE TRIGGER tr AFTER INSERT ON t BEGIN ", "create temp trigger ", "EXPLAIN CREATE ",
    "; END", "; end;", "END;", " BEGIN SELECT 1;", "'a;b'", "-- c;\n", "/* d; */",
]  # fmt: skip
# No NUL: SQLite's C strings end there (and the API refuses SQL holding one).
_chars = st.text(st.characters(blacklist_characters="\x00"), max_size=3)
_texts = st.lists(st.sampled_from(_FRAGMENTS) | _chars, max_size=40).map(
    lambda parts: "".join(parts)
)


@settings(max_examples=600, deadline=None)
@given(_texts)
def test_pieces_end_where_sqlite3_complete_says(sql: str) -> None:
    pieces = split_sql(sql)
    pos = 0
    for k, piece in enumerate(pieces):
        at = sql.find(piece, pos)
        assert at >= 0, (piece, sql)
        gap = sql[pos:at]
        assert _GAP.fullmatch(gap), f"content between pieces was dropped: {gap!r}"
        pos = at + len(piece)
        last = k == len(pieces) - 1
        if not last or piece.endswith(";"):
            # Complete at its end, and at no semicolon before it.
            for i, ch in enumerate(piece[:-1]):
                if ch == ";":
                    assert not sqlean.complete_statement(piece[: i + 1]), (piece[: i + 1], sql)
        if not last:
            assert sqlean.complete_statement(piece), (piece, sql)
    assert _GAP.fullmatch(sql[pos:]) or not sqlean.complete_statement(sql[pos:] + ";")


# ---- SQLite prepares each piece as exactly one statement ---------------------------------------

_names = st.sampled_from(["a", "b", "[c;d]", '"e;f"', "`g;h`"])
_values = st.sampled_from(["1", "'x;y'", "'it''s'", "NULL", "-2", "4/2", "X'00'"])
_comments = st.sampled_from([" ", "\n", " -- note; here\n", " /* ; */ "])


@st.composite
def _statement(draw: st.DrawFn, n: int) -> str:
    kind = draw(st.sampled_from(["insert", "select", "trigger", "update"]))
    c = draw(_comments)
    if kind == "insert":
        return f"INSERT INTO t{c}VALUES({draw(_values)}, {draw(_values)})"
    if kind == "select":
        return f"SELECT {draw(_values)} AS {draw(_names)}{c}FROM t"
    if kind == "update":
        return f"UPDATE t SET a = CASE WHEN a IS NULL THEN {draw(_values)} END{c}"
    body = "; ".join(
        f"INSERT INTO u VALUES({draw(_values)}){draw(_comments)}"
        for _ in range(draw(st.integers(1, 3)))
    )
    when = draw(st.sampled_from(["AFTER INSERT", "BEFORE UPDATE", "AFTER DELETE"]))
    return f"CREATE TRIGGER tr{n}{c}{when} ON t BEGIN {body}; END"


@st.composite
def _script(draw: st.DrawFn) -> list[str]:
    return [draw(_statement(n)) for n in range(draw(st.integers(1, 6)))]


@settings(max_examples=200, deadline=None)
@given(_script(), st.sampled_from([";", "; ", ";\n", " ;;\n", "; -- x;\n"]))
def test_sqlite_prepares_each_piece_as_one_statement(statements: list[str], sep: str) -> None:
    sql = sep.join(statements)
    pieces = split_sql(sql)
    # A piece keeps the comments before it (as SQLite's text of the statement would).
    bare = [p[_GAP.match(p).end() :].rstrip(";").rstrip() for p in pieces]  # type: ignore[union-attr]
    assert bare == [s.strip() for s in statements]
    conn = sqlean.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t(a, b)")
    conn.execute("CREATE TABLE u(x)")
    for piece in pieces:
        # Several statements in one call raise sqlean.Warning: each piece is exactly one.
        conn.execute(piece).fetchall()


# ---- expansion of a request's statements --------------------------------------------------------


def test_expand_marks_the_statements_of_a_string_and_shares_named_parameters() -> None:
    got = expand_statements(
        [Statement("SELECT 1"), Statement("SELECT :a; SELECT :a + 1", {"a": 5})],
        max_statements=10,
    )
    assert got == [
        Statement("SELECT 1"),
        Statement("SELECT :a;", {"a": 5}),
        Statement("SELECT :a + 1", {"a": 5}, continues=True),
    ]


def test_expand_refuses_positional_parameters_and_counts_every_statement() -> None:
    with pytest.raises(RequestError, match="positional parameters"):
        expand_statements([Statement("SELECT ?; SELECT ?", (1, 2))], max_statements=10)
    with pytest.raises(RequestError, match="too many statements"):
        expand_statements([Statement("SELECT 1;" * 11)], max_statements=10)


def test_splitting_is_linear_in_the_size_of_the_string() -> None:
    small = "INSERT INTO t VALUES('a;b'); " * 2_000
    t0 = time.perf_counter()
    split_sql(small)
    t_small = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert len(split_sql(small * 20)) == 40_000
    t_big = time.perf_counter() - t0
    assert t_big < 60 * max(t_small, 1e-3), (t_small, t_big)  # 20x the text, not 400x
    # A limit stops the scan early.
    t0 = time.perf_counter()
    assert len(split_sql(small * 200, limit=10)) == 11
    assert time.perf_counter() - t0 < 0.5
