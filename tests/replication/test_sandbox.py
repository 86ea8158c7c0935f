"""The SQL sandbox on real SQLite files: what a request may run on the writer's connection and
on a read connection, the refusal messages, and that the writer's own SQL is not refused."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from litecluster.engine.sqlite import Connection, connect
from litecluster.replication.primary.sandbox import Sandbox, sandbox
from litecluster.replication.primary.sqlexec import (
    Result,
    Statement,
    first_keyword,
    is_transaction_control,
    refusal,
    run_statement,
)
from litecluster.replication.primary.writer import Writer, WriterConfig
from support import Cluster, make_cluster

# (statement, words the refusal names); ``{dir}`` is the test's directory.
ATTACKS = [
    ("ATTACH '{dir}/attached.db' AS x", "ATTACH"),
    ("ATTACH DATABASE 'file:{dir}/uri.db?mode=rwc' AS y", "ATTACH"),
    ("VACUUM INTO '{dir}/copy.db'", "VACUUM"),
    ("SELECT load_extension('{dir}/ext')", "load_extension"),
    ("SELECT LOAD_EXTENSION('{dir}/ext', 'init')", "load_extension"),
    ("PRAGMA journal_mode=DELETE", "PRAGMA journal_mode"),
    ("PRAGMA main.journal_mode = OFF", "PRAGMA journal_mode"),
    ("PRAGMA writable_schema=1", "PRAGMA writable_schema"),
    ("PRAGMA schema_version=1", "PRAGMA schema_version"),
    ("PRAGMA foreign_keys=ON", "PRAGMA foreign_keys"),
    ("PRAGMA wal_checkpoint(TRUNCATE)", "PRAGMA wal_checkpoint"),
    ("PRAGMA optimize", "PRAGMA optimize"),
    ("PRAGMA database_list", "PRAGMA database_list"),
    ("CREATE TEMP TABLE scratch(x)", ""),
    ("CREATE TEMP TRIGGER spy AFTER INSERT ON t BEGIN SELECT 1; END", ""),
    # Named in the temp schema instead: temp.t would hide t from every later request.
    ("CREATE TABLE temp.t(x)", "temporary"),
    ("CREATE VIEW temp.v AS SELECT 1", "temporary"),
    ("CREATE TRIGGER temp.spy2 AFTER INSERT ON t BEGIN SELECT 1; END", ""),
    ("SELECT data FROM sqlite_dbpage WHERE pgno = 1", "sqlite_dbpage"),
    ("UPDATE sqlite_dbpage SET data = zeroblob(4096) WHERE pgno = 2", "sqlite_dbpage"),
    ("SELECT * FROM (SELECT load_extension('x'))", "load_extension"),
    ("WITH a AS (SELECT 1) SELECT load_extension('x') FROM a", "load_extension"),
]

READS = [
    "PRAGMA table_info(t)",
    "PRAGMA main.table_xinfo('t')",
    "PRAGMA index_list(t)",
    "PRAGMA foreign_key_list(t)",
    "PRAGMA journal_mode",
    "PRAGMA user_version",
    "PRAGMA integrity_check",
    "SELECT name FROM pragma_table_info('t')",
    "SELECT count(*) FROM t",
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 3) SELECT n FROM c",
    "SELECT json_extract('{\"a\": 1}', '$.a'), upper('x'), sqlite_version()",
]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "main.db"
    conn = connect(path)
    conn.execute("PRAGMA journal_mode=WAL").fetchall()
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("CREATE INDEX t_v ON t(v)")
    conn.execute("INSERT INTO t(v) VALUES ('a')")
    conn.close()
    return path


def _err(result: Result | None) -> str:
    """The result's error (it must have one)."""
    assert result is not None
    assert result.error is not None, result
    return result.error


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _boxed(path: Path, *, read_only: bool, allow: frozenset[str] = frozenset()) -> tuple[Connection, Sandbox]:  # fmt: skip
    conn = connect(path, readonly=read_only)
    return conn, sandbox(conn, read_only=read_only, allow_pragmas=allow)


@pytest.mark.parametrize("read_only", [False, True], ids=["writer", "reader"])
def test_every_attack_is_refused_with_its_reason_and_creates_no_file(
    db: Path, read_only: bool
) -> None:
    # Outside a transaction, so that SQLite gets as far as the authorizer for VACUUM (the
    # node also refuses it by its first keyword: see refusal()).
    conn, box = _boxed(db, read_only=read_only)
    conn.execute("SELECT count(*) FROM t").fetchall()  # the WAL and its index exist now
    before = _files(db.parent)
    for sql, names in ATTACKS:
        res = run_statement(conn, Statement(sql.format(dir=db.parent)), box)
        assert _err(res).startswith("not authorized: "), sql
        assert names in _err(res), sql
    assert _files(db.parent) == before, "no statement created a file"
    # Nothing is left attached or defined on the connection for the next request.
    res = run_statement(conn, Statement("SELECT * FROM x.sqlite_master"), box)
    assert res.error == "no such table: x.sqlite_master"
    assert run_statement(conn, Statement("SELECT * FROM scratch"), box).error is not None
    conn.set_authorizer(None)  # to read the connection's settings the sandbox hides
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA writable_schema").fetchone() == (0,)
    assert conn.execute("PRAGMA foreign_keys").fetchone() == (0,)
    # SQLite opens the (empty) temp schema when a refused statement names it; nothing is in it.
    assert [r[1] for r in conn.execute("PRAGMA database_list")] in (["main"], ["main", "temp"])
    assert conn.execute("SELECT count(*) FROM temp.sqlite_master").fetchone() == (0,)


@pytest.mark.parametrize("read_only", [False, True], ids=["writer", "reader"])
def test_read_only_pragmas_and_ordinary_sql_run(db: Path, read_only: bool) -> None:
    conn, box = _boxed(db, read_only=read_only)
    for sql in READS:
        res = run_statement(conn, Statement(sql), box)
        assert res.error is None, (sql, res.error)
        assert res.columns, sql


def test_a_read_connection_cannot_write_or_control_its_transaction(db: Path) -> None:
    conn, box = _boxed(db, read_only=True)
    for sql in ("INSERT INTO t(v) VALUES ('b')", "UPDATE t SET v = 'b'", "DELETE FROM t",
                "CREATE TABLE u(x)", "DROP INDEX t_v", "ALTER TABLE t ADD COLUMN w",
                "CREATE VIEW w AS SELECT 1", "REINDEX", "ANALYZE"):  # fmt: skip
        res = run_statement(conn, Statement(sql), box)
        assert res.error == "not authorized: a query request cannot write; use /db/execute", sql
    conn.execute("BEGIN")
    # The authorizer refuses transaction control in a request's statement; the node's own
    # BEGIN above was prepared outside one and is cached: the same text from a request is
    # reused unauthorized, which is why the node checks the first keyword as well.
    for sql in ("COMMIT", " ;COMMIT", "ROLLBACK", "SAVEPOINT s", "END"):
        res = run_statement(conn, Statement(sql), box)
        assert "transaction control" in _err(res), sql
        assert conn.in_transaction, f"{sql} ended the read's snapshot"
    # run_statement checks it before SQLite sees the text.
    cached = run_statement(conn, Statement("BEGIN"), box)
    assert "transaction control" in _err(cached)
    assert refusal("BEGIN") is not None
    conn.execute("ROLLBACK")
    assert connect(db).execute("SELECT v FROM t").fetchall() == [("a",)]


def test_an_operator_allowed_pragma_runs_and_sets(db: Path) -> None:
    conn, box = _boxed(db, read_only=False, allow=frozenset({"USER_VERSION"}))
    assert run_statement(conn, Statement("PRAGMA user_version = 7"), box).error is None
    assert conn.execute("PRAGMA user_version").fetchone() == (7,)
    res = run_statement(conn, Statement("PRAGMA application_id = 7"), box)
    assert "--sql-allow-pragma application_id" in _err(res)


def test_a_refusal_does_not_leak_into_the_next_statement(db: Path) -> None:
    conn, box = _boxed(db, read_only=False)
    assert run_statement(conn, Statement("PRAGMA writable_schema=1"), box).error
    assert run_statement(conn, Statement("SELEKT 1"), box).error == 'near "SELEKT": syntax error'


@pytest.mark.parametrize(
    ("sql", "word"),
    [(";COMMIT", "COMMIT"), (" ;\n ; rollback to x", "ROLLBACK"), ("-- c\n/* d */END", "END"),
     ("/* unclosed COMMIT", ""), ("-- only", ""), ("SELECT 1; COMMIT", "SELECT"),
     ("Commit_log", "COMMIT_LOG")],
)  # fmt: skip
def test_first_keyword_skips_what_sqlite_skips(sql: str, word: str) -> None:
    assert first_keyword(sql) == word


def test_statements_refused_by_their_first_keyword_say_why() -> None:
    for sql in ("VACUUM", "vacuum INTO '/tmp/x'", "ATTACH 'x' AS y", "/* */ DETACH y"):
        assert "ATTACH, DETACH and VACUUM" in _err(refusal(sql)), sql
    for sql in ("BEGIN", ";COMMIT", "END", "RELEASE s", "SAVEPOINT s", "ROLLBACK TO s"):
        assert "transaction control" in _err(refusal(sql)), sql
    assert refusal("SELECT 1") is None


def test_the_keyword_check_is_linear_on_comment_runs() -> None:
    # A regular expression with a repeated comment group took seconds on 25 comments.
    assert not is_transaction_control("/**/" * 200_000 + "x")
    assert is_transaction_control("/**/" * 200_000 + "BEGIN")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = make_cluster(tmp_path)
    c.writer.execute("CREATE TABLE kv(k TEXT PRIMARY KEY, v INTEGER)")
    c.capture.poll()
    try:
        yield c
    finally:
        c.close()


def test_a_refused_request_fails_alone_in_its_group_and_internal_sql_still_runs(
    cluster: Cluster,
) -> None:
    writer = Writer("main", cluster.capture, WriterConfig())
    started, gate = threading.Event(), threading.Event()

    def hold(conn: Connection) -> tuple[Any, bytes]:
        # The writer's own SQL (procedures, savepoints, COMMIT) passes the sandbox.
        conn.execute("INSERT INTO kv VALUES('held', 1)")
        started.set()
        gate.wait(10)
        return None, b"held"

    async def run() -> list[Any]:
        first = asyncio.ensure_future(writer.call(hold))
        # The held group runs alone; the requests below queue up for the next group.
        assert await asyncio.to_thread(started.wait, 10)
        calls = [
            writer.submit([Statement("INSERT INTO kv VALUES('a', 1)")], transaction=False),
            writer.submit([Statement(f"ATTACH '{cluster.root}/evil.db' AS e"),
                           Statement("INSERT INTO kv VALUES('b', 1)")], transaction=False),
            writer.submit([Statement("PRAGMA journal_mode=DELETE")], transaction=True),
            writer.submit([Statement(";COMMIT"), Statement(f"VACUUM INTO '{cluster.root}/v.db'")],
                          transaction=False),
            writer.submit([Statement("INSERT INTO kv VALUES('c', 1)")], transaction=True),
        ]  # fmt: skip
        tasks = [asyncio.ensure_future(c) for c in calls]
        await asyncio.sleep(0)  # each task puts its request in the queue
        gate.set()
        return [await first, *await asyncio.gather(*tasks)]

    try:
        _, ok_a, mixed, pragma, commit, ok_c = asyncio.run(run())
    finally:
        writer.close()
    assert {o.group_size for o in (ok_a, mixed, pragma, commit, ok_c)} == {5}, "one group"
    assert ok_a.results[0].error is None
    assert ok_c.results[0].error is None
    assert "ATTACH" in _err(mixed.results[0])
    assert mixed.results[1].error is None, "the request's other statement ran"
    assert "journal_mode" in _err(pragma.results[0])
    assert "transaction control" in _err(commit.results[0])
    assert "VACUUM" in _err(commit.results[1])
    rows = dict(cluster.writer.execute("SELECT k, v FROM kv").fetchall())
    assert rows == {"held": 1, "a": 1, "b": 1, "c": 1}
    assert not (cluster.root / "evil.db").exists()
    assert not (cluster.root / "v.db").exists()
    assert cluster.writer.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_the_connections_own_set_up_statements_are_authorized_again(db: Path) -> None:
    # connect() ran exactly this text before the sandbox; set_authorizer expired the cached
    # statement, so a request sending the same text is prepared again, and refused.
    conn, box = _boxed(db, read_only=True)
    for sql in ("PRAGMA busy_timeout=5000", "PRAGMA query_only=ON"):
        res = run_statement(conn, Statement(sql), box)
        assert _err(res).startswith("not authorized: PRAGMA"), sql
