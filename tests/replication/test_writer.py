"""The primary's writer: procedures in the group transaction, and their annotations on the
txlog record of exactly their commit."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from litecluster.engine.sqlite import Connection
from litecluster.errors import IndeterminateWriteError, is_indeterminate
from litecluster.replication.primary.sqlexec import Statement
from litecluster.replication.primary.writer import Writer, decode_annotations
from support import Cluster, make_cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = make_cluster(tmp_path)
    c.writer.execute("CREATE TABLE kv(k TEXT PRIMARY KEY, v INTEGER)")
    c.capture.poll()
    try:
        yield c
    finally:
        c.close()


def _incr(key: str) -> Any:
    def proc(conn: Connection) -> tuple[int, bytes]:
        conn.execute("INSERT INTO kv VALUES(?, 1) ON CONFLICT(k) DO UPDATE SET v = v + 1", (key,))
        (value,) = conn.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return value, key.encode()

    return proc


def _fail_after_write(conn: Connection) -> tuple[int, bytes]:
    conn.execute("INSERT INTO kv VALUES('doomed', 1)")
    raise ValueError("WRONGTYPE Operation against a key holding the wrong kind of value")


def test_procedures_share_a_group_and_a_failing_one_is_rolled_back_alone(
    cluster: Cluster,
) -> None:
    writer = Writer("main", cluster.capture)

    async def run() -> list[Any]:
        calls = [writer.call(_incr("a")), writer.call(_fail_after_write), writer.call(_incr("a"))]
        return await asyncio.gather(*calls, return_exceptions=True)

    try:
        first, failed, second = asyncio.run(run())
    finally:
        writer.close()
    assert isinstance(failed, ValueError)
    assert sorted([first.value, second.value]) == [1, 2]
    rows = dict(cluster.writer.execute("SELECT k, v FROM kv").fetchall())
    assert rows == {"a": 2}, "the failing procedure's write was rolled back, the others kept"
    # Every annotation is on the record of the commit that carried it, none elsewhere.
    notes = [n for r in cluster.log.read(1) for n in decode_annotations(r.annotations)]
    assert notes == [b"a", b"a"]


def test_annotations_do_not_stick_to_an_earlier_external_commit(cluster: Cluster) -> None:
    # Another connection commits just before; capture has not read it yet.
    cluster.writer.execute("INSERT INTO kv VALUES('external', 0)")
    writer = Writer("main", cluster.capture)
    try:
        outcome = asyncio.run(writer.call(_incr("mine")))
    finally:
        writer.close()
    records = list(cluster.log.read(1))
    by_txid = {r.txid: decode_annotations(r.annotations) for r in records}
    assert by_txid[outcome.position.txid] == [b"mine"]
    assert [t for t, notes in by_txid.items() if notes] == [outcome.position.txid]


def test_decode_annotations_ignores_foreign_bytes() -> None:
    assert decode_annotations(b"") == []
    assert decode_annotations(b"\xc1not msgpack") == []


@pytest.mark.parametrize("annotated", [False, True], ids=["plain", "annotated"])
def test_a_commit_the_txlog_cannot_hold_is_indeterminate_not_failed(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, annotated: bool
) -> None:
    # SQLite committed, capture could not make the record durable (disk full): a later poll
    # may still capture and replicate it, so a client must not be told it simply failed.
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cluster.capture.txlog, "append", full)
    writer = Writer("main", cluster.capture)
    try:
        if annotated:
            call = writer.call(_incr("k"))
        else:
            call = writer.submit([Statement("INSERT INTO kv VALUES('k', 1)")], transaction=False)
        with pytest.raises(IndeterminateWriteError) as info:
            asyncio.run(call)
    finally:
        writer.close()
    assert is_indeterminate(info.value)
    assert writer.disk_full
    assert cluster.writer.execute("SELECT v FROM kv WHERE k = 'k'").fetchone() == (1,)
