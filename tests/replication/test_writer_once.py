"""Queued entries in the writer (``Once``): applied at most once however often they are sent,
recorded in the transaction of their statements, their records pruned, the reserved table
closed to requests, and a broken record failing its entry alone."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from litecluster.engine.sqlite import Connection
from litecluster.errors import QueueBookkeepingError
from litecluster.replication.primary.applied import DUPLICATE, TABLE, Once
from litecluster.replication.primary.sqlexec import Statement
from litecluster.replication.primary.writer import WriteOutcome, Writer, WriterConfig
from support import Cluster, make_cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = make_cluster(tmp_path)
    c.writer.execute("CREATE TABLE t(k TEXT PRIMARY KEY)")
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
    w = Writer("main", cluster.capture, WriterConfig(group_seconds=5))
    try:
        yield w
    finally:
        w.close()


def _insert(key: str, table: str = "t") -> list[Statement]:
    return [Statement(f"INSERT INTO {table}(k) VALUES(?)", (key,))]


def _rows(cluster: Cluster, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in cluster.writer.execute(sql).fetchall()]


async def _one_group(writer: Writer, entries: list[tuple[list[Statement], Once]]) -> list[Any]:
    """Submit ``entries`` while the writer is busy, so they land in one group."""
    busy, release = threading.Event(), threading.Event()

    def hold(conn: Connection) -> tuple[None, bytes]:
        busy.set()
        release.wait(10)
        return None, b""

    blocker = asyncio.ensure_future(writer.call(hold))
    await asyncio.to_thread(busy.wait, 10)
    calls = [asyncio.ensure_future(writer.submit(s, transaction=False, once=o))
             for s, o in entries]  # fmt: skip
    await asyncio.sleep(0.05)
    release.set()
    await blocker
    return await asyncio.gather(*calls, return_exceptions=True)


def test_an_entry_sent_again_is_applied_once(cluster: Cluster, writer: Writer) -> None:
    async def go() -> list[WriteOutcome]:
        first = await writer.submit(_insert("a"), transaction=False, once=Once("n1/q", 1))
        again = await writer.submit(_insert("a"), transaction=False, once=Once("n1/q", 1))
        # The same seq from another queue is another entry.
        other = await writer.submit(_insert("b"), transaction=False, once=Once("n2/q", 1))
        return [first, again, other]

    first, again, other = asyncio.run(go())
    assert first.value is None
    assert first.results[0].error is None
    assert again.value == DUPLICATE
    assert again.results == []
    assert again.position >= first.position  # the write is in the database at its position
    assert other.value is None
    assert _rows(cluster, "SELECT k FROM t ORDER BY k") == [("a",), ("b",)]
    assert _rows(cluster, f"SELECT origin, seq FROM {TABLE} ORDER BY origin") == [
        ("n1/q", 1), ("n2/q", 1),
    ]  # fmt: skip


def test_a_failing_entry_is_recorded_as_applied_and_out_of_order_entries_are_not_skipped(
    cluster: Cluster, writer: Writer
) -> None:
    async def go() -> list[WriteOutcome]:
        later = await writer.submit(_insert("late"), transaction=False, once=Once("o", 5))
        bad = await writer.submit([Statement("INSERT INTO nope VALUES(1)")], transaction=False,
                                  once=Once("o", 3))  # fmt: skip
        bad_again = await writer.submit([Statement("INSERT INTO nope VALUES(1)")],
                                        transaction=False, once=Once("o", 3))  # fmt: skip
        return [later, bad, bad_again]

    later, bad, bad_again = asyncio.run(go())
    # Seq 3 after seq 5: a record per entry, not a mark, so an earlier seq still runs.
    assert bad.value is None
    assert "no such table" in (bad.results[0].error or "")
    assert bad_again.value == DUPLICATE, "an entry that failed as SQL is done, never rerun"
    assert later.value is None


def test_entries_in_a_group_replayed_after_a_rollback_are_recorded_once(
    cluster: Cluster, writer: Writer
) -> None:
    got = asyncio.run(_one_group(writer, [
        (_insert("x1"), Once("o", 1)),
        (_insert("bad", "guarded"), Once("o", 2)),  # rolls the whole group back: replayed
        (_insert("x2"), Once("o", 3)),
    ]))  # fmt: skip
    assert all(isinstance(g, WriteOutcome) for g in got), got
    assert "bad keys roll back" in (got[1].results[0].error or "")
    assert _rows(cluster, "SELECT k FROM t ORDER BY k") == [("x1",), ("x2",)]
    assert _rows(cluster, f"SELECT seq FROM {TABLE} ORDER BY seq") == [(1,), (2,), (3,)]


def test_records_below_done_below_are_pruned(cluster: Cluster, writer: Writer) -> None:
    async def go() -> None:
        for seq in range(1, 6):
            await writer.submit(_insert(f"k{seq}"), transaction=False, once=Once("o", seq))
        await writer.submit(_insert("k6"), transaction=False, once=Once("o", 6, done_below=5))

    asyncio.run(go())
    assert _rows(cluster, f"SELECT seq FROM {TABLE} ORDER BY seq") == [(5,), (6,)]


@pytest.mark.parametrize("sql", [
    f"DELETE FROM {TABLE}",
    f"INSERT INTO {TABLE} VALUES ('o', 99)",
    f"UPDATE {TABLE} SET seq = 0",
    f"DROP TABLE {TABLE}",
    f"ALTER TABLE {TABLE} RENAME TO mine",
    f"CREATE TRIGGER tr AFTER INSERT ON {TABLE} BEGIN DELETE FROM t; END",
    "CREATE TRIGGER tr2 AFTER INSERT ON t BEGIN DELETE FROM " + TABLE + "; END",
])  # fmt: skip
def test_requests_cannot_change_the_reserved_table(
    cluster: Cluster, writer: Writer, sql: str
) -> None:
    async def go() -> tuple[WriteOutcome, WriteOutcome]:
        await writer.submit(_insert("a"), transaction=False, once=Once("o", 1))
        bad = await writer.submit([Statement(sql)], transaction=False)
        read = await writer.submit([Statement(f"SELECT seq FROM {TABLE}")], transaction=False)
        return bad, read

    bad, read = asyncio.run(go())
    if sql.startswith("CREATE TRIGGER tr2"):
        # The trigger itself may be created; what it would do is refused when it fires.
        got = asyncio.run(writer.submit(_insert("b"), transaction=False))
        assert "litecluster's own" in (got.results[0].error or ""), got.results
    else:
        assert "litecluster's own" in (bad.results[0].error or ""), bad.results
    assert read.results[0].values == [[1]], "reading it is allowed"
    assert _rows(cluster, f"SELECT origin, seq FROM {TABLE}") == [("o", 1)]


def test_a_broken_record_fails_its_entry_alone(cluster: Cluster, writer: Writer) -> None:
    cluster.writer.execute(f"CREATE TABLE {TABLE}(x)")  # not the table the writer expects
    got = asyncio.run(_one_group(writer, [(_insert("q1"), Once("o", 1))]))
    assert isinstance(got[0], QueueBookkeepingError), got

    async def plain() -> WriteOutcome:
        return await writer.submit(_insert("plain"), transaction=False)

    assert plain_ok(asyncio.run(plain()))
    assert _rows(cluster, "SELECT k FROM t") == [("plain",)], "the entry was rolled back"


def plain_ok(outcome: WriteOutcome) -> bool:
    return outcome.results[0].error is None
