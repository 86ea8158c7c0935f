"""One request of a group commit never fails another: every kind of bad request, landing in the
same group as good ones, fails alone with its error in its result; the good ones commit once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from litecluster.engine.sqlite import Connection
from litecluster.replication.primary.sqlexec import Statement
from litecluster.replication.primary.writer import (
    MAX_LOSSES,
    Procedure,
    WriteOutcome,
    Writer,
    WriterConfig,
)
from support import Cluster, make_cluster

TIMEOUT = 0.3
SLOW_INSERT = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
    "INSERT INTO t(k) SELECT 'slow' || x FROM c"
)
SLOW_SELECT = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = make_cluster(tmp_path)
    c.writer.execute("CREATE TABLE t(k TEXT PRIMARY KEY, v INTEGER NOT NULL DEFAULT 0)")
    c.writer.execute("CREATE TABLE guarded(k TEXT PRIMARY KEY)")
    c.writer.execute(
        "CREATE TRIGGER no_bad BEFORE INSERT ON guarded WHEN new.k = 'bad' "
        "BEGIN SELECT RAISE(ROLLBACK, 'bad keys roll back'); END"
    )
    c.capture.poll()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def writer(cluster: Cluster) -> Iterator[Writer]:
    w = Writer("main", cluster.capture, WriterConfig(statement_timeout=TIMEOUT, group_seconds=5))
    try:
        yield w
    finally:
        w.close()


def _good(key: str) -> list[Statement]:
    return [Statement("INSERT INTO t(k) VALUES(?)", (key,))]


async def _in_one_group(
    writer: Writer, requests: Sequence[tuple[list[Statement], bool] | Procedure]
) -> list[Any]:
    """Submit ``requests`` (SQL with its transaction flag, or procedures) while the writer is
    busy, so they all land in its next group."""
    busy, release = threading.Event(), threading.Event()

    def hold(conn: Connection) -> tuple[None, bytes]:
        busy.set()
        release.wait(10)
        return None, b""

    blocker = asyncio.ensure_future(writer.call(hold))
    await asyncio.to_thread(busy.wait, 10)
    calls = [
        asyncio.ensure_future(
            writer.call(r) if callable(r) else writer.submit(r[0], transaction=r[1])
        )
        for r in requests
    ]
    await asyncio.sleep(0.05)  # let every submit reach the queue
    release.set()
    await blocker
    return await asyncio.gather(*calls, return_exceptions=True)


BAD: dict[str, tuple[list[Statement], bool, str]] = {
    "several statements in one string": (
        [Statement("INSERT INTO t(k) VALUES('m1'); INSERT INTO t(k) VALUES('m2')")], False,
        "one statement at a time"),
    "syntax error": ([Statement("INSERT INTO t VALUES(1))")], False, "syntax error"),
    "no such table": ([Statement("INSERT INTO missing VALUES(1)")], False, "no such table"),
    "too many parameters": ([Statement("INSERT INTO t(k) VALUES(?)", ("a", "b"))], False,
                            "Incorrect number of bindings"),
    "too few parameters": ([Statement("INSERT INTO t(k, v) VALUES(?, ?)", ("a",))], False,
                           "Incorrect number of bindings"),
    "missing named parameter": ([Statement("INSERT INTO t(k) VALUES(:k)", {"x": 1})], False,
                                "value for binding"),
    "unsupported parameter type": ([Statement("INSERT INTO t(k) VALUES(?)", ([1, 2],))], False,
                                   "type"),
    "integer out of range": ([Statement("INSERT INTO t(k) VALUES(?)", (2**70,))], False,
                             "too large"),
    "null character": ([Statement("INSERT INTO t(k) VALUES('a')\x00")], False, "null character"),
    "COMMIT": ([Statement("COMMIT")], False, "transaction control"),
    "END": ([Statement("  end transaction")], False, "transaction control"),
    "ROLLBACK": ([Statement("ROLLBACK")], False, "transaction control"),
    "BEGIN": ([Statement("BEGIN")], False, "transaction control"),
    "ROLLBACK TO the writer's savepoint": ([Statement("ROLLBACK TO stmt")], False,
                                           "transaction control"),
    "RELEASE the writer's savepoint": ([Statement("RELEASE stmt")], False,
                                       "transaction control"),
    "SAVEPOINT after a comment": ([Statement("/* x */ -- y\n SAVEPOINT s")], False,
                                  "transaction control"),
    "EXPLAIN COMMIT": ([Statement("EXPLAIN COMMIT")], False, "transaction control"),
    "ATTACH": ([Statement("ATTACH ':memory:' AS other")], False, "ATTACH"),
    "VACUUM": ([Statement("VACUUM")], False, "VACUUM"),
    "connection pragma": ([Statement("PRAGMA query_only = 1")], False, "PRAGMA query_only"),
    "checkpoint pragma": ([Statement("PRAGMA wal_checkpoint(TRUNCATE)")], False,
                          "PRAGMA wal_checkpoint"),
    "temporary trigger": ([Statement(
        "CREATE TEMP TRIGGER spoil BEFORE INSERT ON t BEGIN SELECT RAISE(ABORT, 'no'); END")],
        False, "temporary"),
    "temporary table": ([Statement("CREATE TABLE temp.t(k)")], False, "temporary"),
    "unique constraint": ([Statement("INSERT INTO t(k) VALUES('dup')"),
                           Statement("INSERT INTO t(k) VALUES('dup')")], False, "UNIQUE"),
    "not null constraint": ([Statement("INSERT INTO t(k, v) VALUES('nn', NULL)")], False,
                            "NOT NULL"),
    "INSERT OR ROLLBACK": ([Statement("INSERT INTO t(k) VALUES('dup2')"),
                            Statement("INSERT OR ROLLBACK INTO t(k) VALUES('dup2')")], False,
                           "rolled back the node's whole transaction"),
    "RAISE(ROLLBACK) in a trigger": ([Statement("INSERT INTO guarded VALUES('bad')")], False,
                                     "bad keys roll back"),
    "a write past the statement timeout": ([Statement(SLOW_INSERT)], False, "statement timeout"),
    "a read past the statement timeout": ([Statement(SLOW_SELECT)], False, "statement timeout"),
    "transaction with a failing statement": (
        [Statement("INSERT INTO t(k) VALUES('tx1')"), Statement("INSERT INTO nowhere VALUES(1)")],
        True, "no such table"),
    "transaction with OR ROLLBACK": (
        [Statement("INSERT INTO t(k) VALUES('tx2')"),
         Statement("INSERT OR ROLLBACK INTO t(k) VALUES('tx2')")], True, "whole transaction"),
}  # fmt: skip

# What the bad requests may leave behind: statements of a non-transaction request that
# succeeded before the failing one stay applied, as in rqlite.
KEPT = {"unique constraint": ["dup"], "INSERT OR ROLLBACK": ["dup2"]}


@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_request_fails_alone_in_its_group(
    cluster: Cluster, writer: Writer, kind: str
) -> None:
    statements, transaction, fragment = BAD[kind]
    requests = [(_good("before"), False), (statements, transaction), (_good("after"), False)]
    before, bad, after = asyncio.run(_in_one_group(writer, requests))
    assert isinstance(before, WriteOutcome), before
    assert isinstance(after, WriteOutcome), after
    assert isinstance(bad, WriteOutcome), f"the bad request must answer results, not {bad!r}"
    assert before.group_size == 3, "the three requests shared one group"
    assert before.position == after.position == bad.position
    errors = [r.error for r in bad.results if r.error is not None]
    assert len(errors) == 1, bad.results
    assert fragment in errors[0]
    assert bad.results[-1].error is not None, "the failing statement's result is the last"
    keys = sorted(k for (k,) in cluster.writer.execute("SELECT k FROM t").fetchall())
    assert keys == sorted(["before", "after", *KEPT.get(kind, [])])
    assert cluster.writer.execute("SELECT count(*) FROM guarded").fetchone() == (0,)
    # Nothing was left on the connection: the next request runs as the first did.
    again = asyncio.run(writer.submit(_good("next"), transaction=False))
    assert again.results[0].error is None
    assert again.results[0].rows_affected == 1
    temp = writer.conn.execute("SELECT count(*) FROM temp.sqlite_schema").fetchone()
    assert temp == (0,)
    assert writer.conn.execute("PRAGMA query_only").fetchone() == (0,)


def test_a_statement_that_ends_the_transaction_costs_only_itself(
    cluster: Cluster, writer: Writer
) -> None:
    # Statements 1 and 3 of a non-transaction request stay; 2 rolled the group back.
    stmts = [
        Statement("INSERT INTO t(k) VALUES('one')"),
        Statement("INSERT OR ROLLBACK INTO t(k) VALUES('one')"),
        Statement("INSERT INTO t(k) VALUES('three')"),
    ]
    good, bad = asyncio.run(_in_one_group(writer, [(_good("g"), False), (stmts, False)]))
    assert isinstance(good, WriteOutcome)
    assert isinstance(bad, WriteOutcome)
    assert [r.error is None for r in bad.results] == [True, False, True]
    keys = sorted(k for (k,) in cluster.writer.execute("SELECT k FROM t").fetchall())
    assert keys == ["g", "one", "three"]
    assert writer.replays == 1


def test_a_request_that_keeps_ending_the_transaction_is_refused_whole(
    cluster: Cluster, writer: Writer
) -> None:
    stmts = [Statement("INSERT INTO t(k) VALUES('x')")] + [
        Statement("INSERT OR ROLLBACK INTO t(k) VALUES('x')") for _ in range(MAX_LOSSES + 3)
    ]
    good, bad = asyncio.run(_in_one_group(writer, [(_good("g"), False), (stmts, False)]))
    assert isinstance(good, WriteOutcome)
    assert isinstance(bad, WriteOutcome)
    assert all("not run" in (r.error or "") for r in bad.results)
    assert writer.replays == MAX_LOSSES
    keys = [k for (k,) in cluster.writer.execute("SELECT k FROM t").fetchall()]
    assert keys == ["g"]


def test_a_procedure_that_ends_the_transaction_fails_alone(
    cluster: Cluster, writer: Writer
) -> None:
    def spoil(conn: Connection) -> tuple[None, bytes]:
        conn.execute("INSERT INTO t(k) VALUES('p')")
        conn.execute("INSERT OR ROLLBACK INTO t(k) VALUES('p')")
        return None, b""

    requests: list[tuple[list[Statement], bool] | Procedure] = [
        (_good("a"), False), spoil, (_good("b"), False),
    ]  # fmt: skip
    a, failed, b = asyncio.run(_in_one_group(writer, requests))
    assert isinstance(a, WriteOutcome)
    assert isinstance(b, WriteOutcome)
    assert "UNIQUE" in str(failed)
    keys = sorted(k for (k,) in cluster.writer.execute("SELECT k FROM t").fetchall())
    assert keys == ["a", "b"]


def test_a_group_that_ran_out_of_time_leaves_the_rest_to_the_next(cluster: Cluster) -> None:
    writer = Writer("main", cluster.capture, WriterConfig(statement_timeout=5, group_seconds=0.05))
    # About 0.5 s of work: ten times the group's budget (300,000 rows took 0.05 s, the budget
    # itself, on a quiet machine), well under the statement timeout.
    slow = [Statement("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                      "LIMIT 3000000) SELECT count(*) FROM c")]  # fmt: skip
    try:
        got = asyncio.run(
            _in_one_group(writer, [(slow, False), (_good("a"), False), (_good("b"), False)])
        )
    finally:
        writer.close()
    assert all(isinstance(g, WriteOutcome) for g in got), got
    slow_done, a, b = got
    assert slow_done.results[0].values == [[3000000]]
    assert slow_done.group_size == 1, "the slow request's group closed after it"
    assert a.position == b.position != slow_done.position
    keys = sorted(k for (k,) in cluster.writer.execute("SELECT k FROM t").fetchall())
    assert keys == ["a", "b"]
