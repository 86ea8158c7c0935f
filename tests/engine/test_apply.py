"""Applying records on a replica (:mod:`litecluster.engine.apply`): every check happens before a byte is
written, and writes by anyone else are divergence."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from litecluster import Replica, ReplicaConfig
from litecluster.engine import faults
from litecluster.engine.position import Position
from litecluster.engine.record import RecordKind, TxRecord
from litecluster.engine.sqlite import connect
from litecluster.errors import (
    DivergenceError,
    LocalWriteError,
    ReplicaError,
    SnapshotRequiredError,
)
from support import Cluster, checksum, make_cluster, persisted


def write(cluster: Cluster, n: int, start: int = 0) -> None:
    w = cluster.writer
    w.execute("CREATE TABLE IF NOT EXISTS kv(k INTEGER PRIMARY KEY, v BLOB)")
    for i in range(start, start + n):
        w.execute("INSERT OR REPLACE INTO kv(k, v) VALUES (?, randomblob(?))", (i % 40, 50 + i))


def pending(cluster: Cluster, rep: Replica) -> list[TxRecord]:
    cluster.capture_all()
    return cluster.pending(rep)


def state(rep: Replica) -> tuple[Position, Position, int, int]:
    """Everything that must not move when an apply is refused."""
    return rep.position, persisted(rep), checksum(rep.db_path), rep.hashes.checksum


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = connect(path)
    try:
        return [tuple(r) for r in conn.execute(sql).fetchall()]
    finally:
        conn.close()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Cluster, Replica]]:
    c = make_cluster(tmp_path / "c", page_size=1024)
    write(c, 30)
    rep = c.add_replica()
    try:
        yield c, rep
    finally:
        c.close()


def flip_page(rec: TxRecord, index: int = -1) -> TxRecord:
    pages = list(rec.pages)
    pgno, data = pages[index]
    b = bytearray(data)
    b[len(b) // 2] ^= 0x01
    pages[index] = (pgno, bytes(b))
    return dataclasses.replace(rec, pages=tuple(pages))


def move_page(rec: TxRecord) -> TxRecord:
    """The same bytes written to another page of the database."""
    written = {p for p, _ in rec.pages}
    other = next(p for p in range(2, rec.db_size + 1) if p not in written)
    pages = ((other, rec.pages[-1][1]), *rec.pages[:-1])
    return dataclasses.replace(rec, pages=tuple(sorted(pages)))


# ---- divergence: refused before anything is written ----------------------------------------------


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda r: dataclasses.replace(r, pre_checksum=r.pre_checksum ^ 1), id="pre"),
        pytest.param(
            lambda r: dataclasses.replace(r, post_checksum=r.post_checksum ^ 1), id="post"
        ),
        pytest.param(flip_page, id="page-content"),
        pytest.param(lambda r: flip_page(r, 0), id="first-page-content"),
        pytest.param(
            lambda r: dataclasses.replace(r, pages=r.pages[:-1]) if len(r.pages) > 1 else None,
            id="page-missing",
        ),
        pytest.param(move_page, id="page-moved"),
        pytest.param(lambda r: dataclasses.replace(r, db_size=r.db_size + 1), id="db-size"),
    ],
)
def test_tampered_record_is_divergence_and_writes_nothing(
    setup: tuple[Cluster, Replica], tamper: Any
) -> None:
    cluster, rep = setup
    for i in range(10):  # rows with overflow pages: every record writes several pages
        cluster.writer.execute("INSERT INTO kv(k, v) VALUES (?, randomblob(2500))", (100 + i,))
    recs = pending(cluster, rep)
    assert len(recs) == 10
    victim = recs[4]
    bad = tamper(victim)
    if bad is None:
        pytest.fail("precondition: the record was expected to have several pages")
    assert bad != victim
    before = state(rep)
    batch = [*recs[:4], bad, *recs[5:]]
    with pytest.raises(DivergenceError) as info:
        rep.apply(batch)
    assert info.value.context["txid"] == victim.txid
    assert state(rep) == before  # not even the good records before it
    assert rep.verify()
    with pytest.raises(DivergenceError):
        rep.apply([*recs[:4], bad])
    assert state(rep) == before
    # The refused record did not poison the replica: the genuine ones apply.
    assert rep.apply(recs) == cluster.capture.position
    assert checksum(rep.db_path) == checksum(cluster.primary_path)


def test_first_record_not_matching_the_replica_is_divergence(
    setup: tuple[Cluster, Replica],
) -> None:
    cluster, rep = setup
    write(cluster, 3, start=100)
    recs = pending(cluster, rep)
    before = state(rep)
    with pytest.raises(DivergenceError) as info:
        rep.apply([dataclasses.replace(recs[0], pre_checksum=recs[0].pre_checksum + 1)])
    assert info.value.context["txid"] == recs[0].txid
    assert state(rep) == before


@pytest.mark.parametrize("offset", [2, 5])
def test_non_consecutive_txid_requires_a_snapshot(
    setup: tuple[Cluster, Replica], offset: int
) -> None:
    cluster, rep = setup
    write(cluster, 8, start=100)
    recs = pending(cluster, rep)
    before = state(rep)
    with pytest.raises(SnapshotRequiredError):
        rep.apply(recs[offset - 1 :])  # starts after position + 1
    assert state(rep) == before
    with pytest.raises(SnapshotRequiredError):
        rep.apply([recs[0], recs[2]])  # a hole inside the batch
    assert state(rep) == before
    with pytest.raises(SnapshotRequiredError):
        rep.apply([cluster.log.get(rep.position.txid)])  # already applied
    assert state(rep) == before
    assert rep.apply(recs) == cluster.capture.position


def test_reset_record_applies_what_came_before_then_requires_a_snapshot(
    setup: tuple[Cluster, Replica],
) -> None:
    cluster, rep = setup
    write(cluster, 4, start=100)
    recs = pending(cluster, rep)
    reset = TxRecord(
        epoch=recs[-1].epoch,
        txid=recs[-1].txid + 1,
        page_size=recs[-1].page_size,
        db_size=recs[-1].db_size,
        pre_checksum=recs[-1].post_checksum,
        post_checksum=recs[-1].post_checksum ^ 0xABC,
        timestamp_ns=0,
        pages=(),
        kind=RecordKind.RESET,
    )
    after = dataclasses.replace(recs[-1], txid=reset.txid + 1)
    with pytest.raises(SnapshotRequiredError) as info:
        rep.apply([*recs, reset, after])
    assert info.value.context["txid"] == reset.txid
    want = Position(recs[-1].epoch, recs[-1].txid, recs[-1].post_checksum)
    assert rep.position == want
    assert persisted(rep) == want
    assert checksum(rep.db_path) == recs[-1].post_checksum == checksum(cluster.primary_path)
    # Alone, the reset record still requires a snapshot and changes nothing.
    with pytest.raises(SnapshotRequiredError):
        rep.apply([reset])
    assert rep.position == want


def test_reset_first_in_batch_applies_nothing(setup: tuple[Cluster, Replica]) -> None:
    _, rep = setup
    before = state(rep)
    reset = TxRecord(
        rep.position.epoch, rep.position.txid + 1, 1024, 1, 0, 0, 0, (), kind=RecordKind.RESET
    )
    with pytest.raises(SnapshotRequiredError):
        rep.apply([reset])
    assert state(rep) == before


def test_record_with_other_page_size_is_refused(setup: tuple[Cluster, Replica]) -> None:
    cluster, rep = setup
    write(cluster, 2, start=100)
    recs = pending(cluster, rep)
    before = state(rep)
    with pytest.raises(ReplicaError):
        rep.apply([dataclasses.replace(recs[0], page_size=4096)])
    assert state(rep) == before


def test_record_from_an_older_epoch_is_refused(setup: tuple[Cluster, Replica]) -> None:
    cluster, rep = setup
    write(cluster, 2, start=100)
    recs = pending(cluster, rep)
    rep.apply(recs[:1])
    before = state(rep)
    with pytest.raises(ReplicaError):
        rep.apply([dataclasses.replace(recs[1], epoch=recs[0].epoch - 1)])
    assert state(rep) == before


# ---- writes by others ---------------------------------------------------------------------------


def test_local_write_is_detected_and_the_replica_refuses_to_go_on(
    setup: tuple[Cluster, Replica],
) -> None:
    cluster, rep = setup
    write(cluster, 5, start=100)
    cluster.sync()
    assert rep.position == cluster.capture.position

    intruder = connect(rep.db_path)
    intruder.execute("INSERT INTO kv(k, v) VALUES (1000, x'00')")
    intruder.close()

    write(cluster, 3, start=200)
    recs = pending(cluster, rep)
    with pytest.raises(LocalWriteError):
        rep.apply(recs)
    assert rep.diverged is not None
    assert query(rep.db_path, "SELECT count(*) FROM kv WHERE k = 1000") == [(1,)]
    with pytest.raises(LocalWriteError):
        rep.apply(recs)
    with pytest.raises(LocalWriteError):
        rep.apply(recs[:1])
    # A snapshot is the way back.
    cluster.replicas.remove(rep)
    rep2 = cluster.add_replica("again")
    assert checksum(rep2.db_path) == checksum(cluster.primary_path)


def test_local_write_detected_online_is_still_divergence_after_reopen(
    setup: tuple[Cluster, Replica],
) -> None:
    """Detecting a local write must not rewrite the recorded position: after a restart the
    replica still knows it diverged (and still knows where it was)."""
    cluster, rep = setup
    write(cluster, 5, start=100)
    cluster.sync()
    recorded = rep.position
    intruder = connect(rep.db_path)
    intruder.execute("INSERT INTO kv(k, v) VALUES (1000, x'00')")
    intruder.close()
    write(cluster, 3, start=200)
    with pytest.raises(LocalWriteError):
        cluster.sync()
    assert persisted(rep) == recorded
    rep.close()
    cluster.replicas.remove(rep)
    again = Replica(rep.db_path, ReplicaConfig(durable=False))
    try:
        assert isinstance(again.diverged, DivergenceError)
        with pytest.raises(DivergenceError):
            again.apply(list(cluster.log.read(recorded.txid + 1)))
    finally:
        again.close()


def test_local_write_of_identical_content_is_not_divergence(
    setup: tuple[Cluster, Replica],
) -> None:
    """A write that changes nothing but page 1's per-copy fields (a no-op commit) is harmless."""
    cluster, rep = setup
    conn = connect(rep.db_path)
    version = conn.execute("PRAGMA user_version").fetchall()[0][0]
    conn.execute(f"PRAGMA user_version={version}")
    conn.close()
    write(cluster, 3, start=300)
    cluster.sync()
    assert rep.diverged is None
    assert checksum(rep.db_path) == checksum(cluster.primary_path)


def test_checkpoint_by_another_connection_is_not_a_local_write(
    setup: tuple[Cluster, Replica],
) -> None:
    cluster, rep = setup
    for round_ in range(3):
        write(cluster, 10, start=400 + 10 * round_)
        cluster.sync()
        wal = Path(f"{rep.db_path}-wal")
        assert wal.stat().st_size > 0
        main_before = rep.db_path.read_bytes()
        other = connect(rep.db_path)
        busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()[0]
        other.close()
        assert busy == 0
        # The checkpoint did copy the applied pages into the file, and emptied the WAL.
        assert rep.db_path.read_bytes() != main_before
        assert wal.stat().st_size == 0
        write(cluster, 5, start=500 + 10 * round_)
        cluster.sync()  # must not raise
        assert rep.diverged is None
        assert rep.position == cluster.capture.position
        assert checksum(rep.db_path) == checksum(cluster.primary_path)


def test_reopened_replica_modified_offline_reports_diverged(
    setup: tuple[Cluster, Replica],
) -> None:
    cluster, rep = setup
    write(cluster, 5, start=600)
    cluster.sync()
    path = rep.db_path
    recorded = rep.position
    rep.close()
    cluster.replicas.remove(rep)

    conn = connect(path)
    conn.execute("UPDATE kv SET v = x'ff' WHERE k = 3")
    conn.close()

    again = Replica(path, ReplicaConfig(durable=False))
    try:
        assert isinstance(again.diverged, DivergenceError)
        write(cluster, 2, start=700)
        cluster.capture_all()
        assert again.position != recorded
        recs = list(cluster.log.read(recorded.txid + 1))
        assert recs
        with pytest.raises(DivergenceError):
            again.apply(recs)
    finally:
        again.close()


def test_reopened_replica_untouched_is_not_diverged(setup: tuple[Cluster, Replica]) -> None:
    cluster, rep = setup
    write(cluster, 5, start=800)
    cluster.sync()
    before = rep.position
    rep.close()
    cluster.replicas.remove(rep)
    again = Replica(rep.db_path, ReplicaConfig(durable=False))
    cluster.replicas.append(again)
    assert again.diverged is None
    assert again.position == before
    write(cluster, 5, start=900)
    cluster.sync()
    assert checksum(again.db_path) == checksum(cluster.primary_path)


@pytest.mark.parametrize("window", ["before-write", "after-commit"])
def test_local_write_racing_an_apply_is_detected(
    setup: tuple[Cluster, Replica], monkeypatch: pytest.MonkeyPatch, window: str
) -> None:
    """A local write that commits while an apply is under way (just before its write transaction,
    or just after its commit) is divergence too: it must be reported by this apply or the next,
    never absorbed into the replica's idea of its own file."""
    cluster, rep = setup
    done: list[bool] = []

    def intrude() -> None:
        if not done:
            done.append(True)
            conn = connect(rep.db_path)
            conn.execute("INSERT INTO kv(k, v) VALUES (5000, x'01')")
            conn.close()

    if window == "after-commit":
        original = faults.crashpoint

        def crashpoint(name: str) -> None:
            if name == "apply.after_commit":
                intrude()
            original(name)

        monkeypatch.setattr(faults, "crashpoint", crashpoint)
    else:
        write_pos = rep.posfile.write

        def posfile_write(committed: Position, page_size: int, pending: Any = None) -> None:
            write_pos(committed, page_size, pending)
            if pending is not None:  # the intent, written right before the write transaction
                intrude()

        monkeypatch.setattr(rep.posfile, "write", posfile_write)

    def apply_twice() -> None:
        write(cluster, 3, start=1000)
        cluster.sync()  # the intruder commits during this apply
        assert done
        monkeypatch.undo()
        write(cluster, 3, start=1100)
        cluster.sync()

    with pytest.raises(LocalWriteError):
        apply_twice()
    assert rep.diverged is not None
    assert query(rep.db_path, "SELECT count(*) FROM kv WHERE k = 5000") == [(1,)]


def test_adopt_takes_only_a_position_whose_checksum_is_the_files(
    setup: tuple[Cluster, Replica],
) -> None:
    """A former primary names its file's position from its txlog; a wrong claim is refused."""
    cluster, rep = setup
    write(cluster, 5, start=100)
    cluster.sync()
    before = state(rep)
    wrong = Position(9, rep.position.txid + 3, rep.position.checksum ^ 1)
    assert not rep.adopt(wrong)
    assert state(rep) == before
    claimed = Position(9, rep.position.txid + 3, rep.position.checksum)
    assert rep.adopt(claimed)
    assert rep.position == claimed == persisted(rep)


def test_set_aside_keeps_a_consistent_copy_named_after_its_position(
    setup: tuple[Cluster, Replica], tmp_path: Path
) -> None:
    from litecluster.engine.snapshot import set_aside

    cluster, rep = setup
    write(cluster, 5, start=100)
    cluster.sync()
    kept = set_aside(rep, tmp_path / "diverged", "a test")
    assert kept.name.startswith(f"{rep.db_path.stem}.epoch{rep.position.epoch}.txid")
    assert query(kept, "SELECT count(*) FROM kv") == query(rep.db_path, "SELECT count(*) FROM kv")
    assert query(kept, "PRAGMA integrity_check") == [("ok",)]
    assert query(kept, "PRAGMA journal_mode") == [("delete",)]
    assert "a test" in kept.with_name(kept.name + ".why").read_text()
