"""Snapshots (:mod:`litecluster.engine.snapshot`): consistent creation on a live primary, verified and
atomic installation."""

from __future__ import annotations

import io
import struct
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import xxhash
import zstandard

from litecluster import Replica, ReplicaConfig
from litecluster.engine.position import Position
from litecluster.engine.snapshot import (
    SnapshotHeader,
    _encode_header,
    create_snapshot,
    install_snapshot,
    iter_snapshot_pages,
    read_snapshot_header,
)
from litecluster.engine.sqlite import connect
from litecluster.errors import LocalWriteError, SnapshotCorruptError, SnapshotError
from support import Cluster, checksum, make_cluster, persisted

HEADER_BYTES = 64
CHUNK_HEADER = struct.Struct(">IIQ")


def fill(conn: Any, table: str, rows: int, size: int = 900, start: int = 0) -> None:
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table}(id INTEGER PRIMARY KEY, v BLOB)")
    conn.execute("BEGIN")
    for i in range(start, start + rows):
        conn.execute(f"INSERT INTO {table}(id, v) VALUES (?, randomblob(?))", (i, size))
    conn.execute("COMMIT")


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = connect(path)
    try:
        return [tuple(r) for r in conn.execute(sql).fetchall()]
    finally:
        conn.close()


def integrity(path: Path) -> str:
    return str(rows(path, "PRAGMA integrity_check")[0][0])


def chunks(data: bytes) -> list[tuple[int, int]]:
    """(offset of the chunk header, compressed length) of each chunk, end marker excluded."""
    out: list[tuple[int, int]] = []
    off = HEADER_BYTES
    while True:
        n, clen, _ = CHUNK_HEADER.unpack_from(data, off)
        if n == 0:
            return out
        out.append((off, clen))
        off += CHUNK_HEADER.size + clen


class Writer:
    """Commits on its own connection, in its own thread, as many transactions as it is allowed.

    Commits happen when the test allows them (no free-running loop: SQLite's lock has no queue,
    and a writer that never pauses could starve capture's write lock for its whole timeout).
    """

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.allowed = 0
        self.commits = 0
        self.cond = threading.Condition()
        self.stopping = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        try:
            while True:
                with self.cond:
                    self.cond.wait_for(lambda: self.stopping or self.allowed > self.commits)
                    if self.stopping:
                        return
                    i = self.commits
                self.conn.execute(
                    "INSERT OR REPLACE INTO kv(k, v) VALUES (?, randomblob(300))", (i % 500,)
                )
                with self.cond:
                    self.commits += 1
                    self.cond.notify_all()
        except BaseException as exc:  # reported by the test
            self.error = exc
            with self.cond:
                self.cond.notify_all()

    def write(self, n: int) -> None:
        """Let the writer commit ``n`` more transactions and wait until it has."""
        with self.cond:
            self.allowed += n
            self.cond.notify_all()
            ok = self.cond.wait_for(
                lambda: self.commits >= self.allowed or self.error is not None, timeout=30
            )
        assert self.error is None, self.error
        assert ok, "writer made no progress"

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self.thread.join()
        assert self.error is None, self.error


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = make_cluster(tmp_path / "c", page_size=1024)
    yield c
    c.close()


def test_snapshot_of_a_live_primary_is_consistent(cluster: Cluster, tmp_path: Path) -> None:
    w = cluster.writer
    w.execute("CREATE TABLE kv(k INTEGER PRIMARY KEY, v BLOB)")
    fill(w, "bulk", 700)  # ~700 pages of 1 KiB: several snapshot chunks
    cluster.capture_all()
    other = cluster.capture.connect_writer()
    made: list[tuple[int, int]] = []
    during: list[int] = []
    snap = tmp_path / "live.snap"
    try:
        with Writer(other) as writer:
            writer.write(20)

            def progress(done: int, total: int) -> None:
                if not made:
                    # Mid-stream, with the snapshot's read view open: the writer commits more.
                    before = writer.commits
                    writer.write(20)
                    during.append(writer.commits - before)
                made.append((done, total))

            header = create_snapshot(cluster.capture, snap, progress)
            writer.write(10)  # and keeps writing after it
    finally:
        other.close()
    assert during == [20]
    assert header.position.txid > 0
    assert len(made) > 1
    assert made[-1] == (header.page_count, header.page_count)
    assert [d for d, _ in made] == sorted(d for d, _ in made)
    assert {t for _, t in made} == {header.page_count}

    # The snapshot is the primary's state at its position, per the log.
    rec = cluster.log.get(header.position.txid)
    assert rec.post_checksum == header.position.checksum
    cluster.capture_all()
    assert cluster.log.last_txid > header.position.txid  # the writes after the snapshot

    installed: list[tuple[int, int]] = []
    rep = Replica(tmp_path / "r.db", ReplicaConfig(durable=False))
    cluster.replicas.append(rep)
    pos = install_snapshot(rep, snap, lambda d, t: installed.append((d, t)))
    assert pos == header.position == rep.position
    assert checksum(rep.db_path) == rec.post_checksum
    assert integrity(rep.db_path) == "ok"
    assert installed[-1] == (header.page_count, header.page_count)
    assert [d for d, _ in installed] == sorted(d for d, _ in installed)
    assert all(0 < d <= t == header.page_count for d, t in installed)

    # Following the log from position + 1 reaches the primary.
    assert cluster.sync() == cluster.log.last_txid - header.position.txid
    assert rep.position == cluster.capture.position
    assert checksum(rep.db_path) == checksum(cluster.primary_path)
    assert rows(rep.db_path, "SELECT k, v FROM kv ORDER BY k") == rows(
        cluster.primary_path, "SELECT k, v FROM kv ORDER BY k"
    )


# ---- damaged snapshots change nothing -------------------------------------------------------------


@pytest.fixture
def damaged_setup(cluster: Cluster, tmp_path: Path) -> tuple[Cluster, Replica, bytes]:
    """A replica following the primary, and a newer multi-chunk snapshot of the primary."""
    w = cluster.writer
    fill(w, "a", 50)
    rep = cluster.add_replica()
    fill(w, "a", 50, start=50)
    cluster.sync()
    fill(w, "b", 400)
    cluster.capture_all()
    snap = tmp_path / "new.snap"
    create_snapshot(cluster.capture, snap)
    return cluster, rep, snap.read_bytes()


def _state(rep: Replica) -> tuple[Position, int, list[tuple[Any, ...]]]:
    return rep.position, checksum(rep.db_path), rows(rep.db_path, "SELECT count(*) FROM a")


def _damages(data: bytes) -> Iterator[tuple[str, bytes]]:
    cs = chunks(data)
    assert len(cs) >= 2
    for off in range(HEADER_BYTES):
        yield f"header byte {off}", _flip(data, off)
    for i, (off, clen) in enumerate(cs):
        for k in range(CHUNK_HEADER.size):
            yield f"chunk {i} header byte {k}", _flip(data, off + k)
        body = off + CHUNK_HEADER.size
        for k in (0, 1, clen // 2, clen - 1):
            yield f"chunk {i} data byte {k}", _flip(data, body + k)
    end = len(data) - CHUNK_HEADER.size
    for k in range(CHUNK_HEADER.size):
        yield f"end marker byte {k}", _flip(data, end + k)
    cuts = {1, HEADER_BYTES - 1, HEADER_BYTES, HEADER_BYTES + 5, len(data) - 1, end}
    for off, clen in cs:
        cuts.update({off + 3, off + CHUNK_HEADER.size + clen // 2})
    for cut in sorted(cuts):
        yield f"cut at {cut}", data[:cut]


def _flip(data: bytes, off: int) -> bytes:
    b = bytearray(data)
    b[off] ^= 0x10
    return bytes(b)


def test_damaged_snapshot_leaves_the_replica_as_it_was(
    damaged_setup: tuple[Cluster, Replica, bytes],
) -> None:
    cluster, rep, data = damaged_setup
    before = _state(rep)
    failures = []
    n = 0
    for what, bad in _damages(data):
        n += 1
        try:
            install_snapshot(rep, io.BytesIO(bad))
        except SnapshotCorruptError:
            pass
        except Exception as exc:
            failures.append(f"{what}: {type(exc).__name__}: {exc}")
        else:
            failures.append(f"{what}: installed")
        if rep.position != before[0] or rep.diverged is not None:
            failures.append(f"{what}: replica position changed to {rep.position}")
            break
    assert n > 100
    assert not failures, "\n".join(failures[:20])
    assert _state(rep) == before
    assert persisted(rep) == before[0]
    assert rep.verify()
    assert integrity(rep.db_path) == "ok"
    # The replica still follows the primary, and the good snapshot still installs.
    fill(cluster.writer, "a", 5, start=1000)
    cluster.sync()
    assert checksum(rep.db_path) == checksum(cluster.primary_path)
    good = install_snapshot(rep, io.BytesIO(data))
    assert checksum(rep.db_path) == good.checksum


def test_failed_install_survives_reopen(
    damaged_setup: tuple[Cluster, Replica, bytes], tmp_path: Path
) -> None:
    cluster, rep, data = damaged_setup
    before = _state(rep)
    last_chunk, clen = chunks(data)[-1]
    with pytest.raises(SnapshotCorruptError):
        install_snapshot(rep, io.BytesIO(_flip(data, last_chunk + CHUNK_HEADER.size + clen // 2)))
    rep.close()
    cluster.replicas.remove(rep)
    again = Replica(rep.db_path, ReplicaConfig(durable=False))
    try:
        assert again.diverged is None
        assert _state(again) == before
    finally:
        again.close()


def test_snapshot_with_wrong_checksum_is_refused(
    damaged_setup: tuple[Cluster, Replica, bytes],
) -> None:
    """A well-formed stream whose pages do not hash to the header's checksum installs nothing."""
    _, rep, data = damaged_setup
    header = read_snapshot_header(io.BytesIO(data))
    p = header.position
    forged = SnapshotHeader(
        header.page_size, header.page_count, Position(p.epoch, p.txid, p.checksum ^ 1), 0
    )
    before = _state(rep)
    with pytest.raises(SnapshotError):
        install_snapshot(rep, io.BytesIO(_encode_header(forged) + data[HEADER_BYTES:]))
    assert _state(rep) == before
    assert persisted(rep) == before[0]


def _bomb_chunk(size: int) -> bytes:
    obj = zstandard.ZstdCompressor(level=1).compressobj(size=size)
    chunk = bytes(1 << 20)
    comp = b"".join(obj.compress(chunk) for _ in range(size // len(chunk))) + obj.flush()
    return CHUNK_HEADER.pack(1, len(comp), xxhash.xxh3_64_intdigest(comp)) + comp


def test_decompression_bomb_chunk_is_refused_without_inflating_it() -> None:
    """A chunk that says one page but inflates to 64 MiB (its frame states that size) must be
    refused without allocating 64 MiB."""
    header = SnapshotHeader(1024, 1, Position(1, 1, 0), 0)
    stream = _encode_header(header) + _bomb_chunk(64 << 20) + CHUNK_HEADER.pack(0, 0, 0)
    f = io.BytesIO(stream)
    h = read_snapshot_header(f)
    tracemalloc.start()
    try:
        with pytest.raises(SnapshotCorruptError):
            list(iter_snapshot_pages(f, h))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"reading a 1-page chunk allocated {peak / 2**20:.0f} MiB"


# ---- installing over existing content -----------------------------------------------------------


@pytest.mark.parametrize("other_rows", [20, 600], ids=["smaller", "larger"])
def test_install_replaces_other_content_atomically(
    cluster: Cluster, tmp_path: Path, other_rows: int
) -> None:
    fill(cluster.writer, "mine", 200)
    rep = cluster.add_replica()
    assert rows(rep.db_path, "SELECT count(*) FROM mine") == [(200,)]
    old_pages = rows(rep.db_path, "PRAGMA page_count")[0][0]

    other = make_cluster(tmp_path / "other", page_size=1024)
    try:
        fill(other.writer, "theirs", other_rows)
        other.capture_all()
        snap = tmp_path / "other.snap"
        header = create_snapshot(other.capture, snap)

        # A reader in a read transaction keeps its view through the install.
        reader = connect(rep.db_path)
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM mine").fetchall() == [(200,)]
        seen_mid: list[list[tuple[Any, ...]]] = []
        before = rep.position
        told_mid: list[Position] = []

        def progress(done: int, total: int) -> None:
            if done < total:  # mid-install: a new reader sees the old database, whole
                seen_mid.append(rows(rep.db_path, "SELECT name FROM sqlite_schema"))
            if done < total and not told_mid:
                # Another thread (a node's event loop) is told the committed position at once,
                # without waiting for the install to let go of the replica.
                asker = threading.Thread(target=lambda: told_mid.append(rep.position))
                asker.start()
                asker.join(5)
                assert told_mid, "reading the position waited for the install"

        install_snapshot(rep, snap, progress)
        assert reader.execute("SELECT count(*) FROM mine").fetchall() == [(200,)]
        reader.execute("ROLLBACK")
        reader.close()
        if other_rows > 256:
            assert seen_mid, "the install was expected to report progress mid-way"
        for names in seen_mid:
            assert names == [("mine",)]
        if other_rows > 256:
            assert told_mid == [before]

        assert rep.position == header.position
        assert checksum(rep.db_path) == header.position.checksum
        assert rows(rep.db_path, "SELECT name FROM sqlite_schema") == [("theirs",)]
        assert rows(rep.db_path, "SELECT id, v FROM theirs ORDER BY id") == rows(
            other.primary_path, "SELECT id, v FROM theirs ORDER BY id"
        )
        assert rows(rep.db_path, "PRAGMA page_count")[0][0] == header.page_count != old_pages
        assert integrity(rep.db_path) == "ok"

        # The replica now follows the other primary.
        cluster.replicas.remove(rep)
        other.replicas.append(rep)
        fill(other.writer, "theirs", 10, start=10_000)
        other.sync()
        assert checksum(rep.db_path) == checksum(other.primary_path)
    finally:
        other.close()


def test_page_size_mismatch_onto_a_non_empty_replica(cluster: Cluster, tmp_path: Path) -> None:
    fill(cluster.writer, "mine", 20)
    big = make_cluster(tmp_path / "big", page_size=4096)
    try:
        fill(big.writer, "x", 5)
        rep = big.add_replica()
        before = _state_generic(rep)
        cluster.capture_all()
        snap = tmp_path / "small-pages.snap"
        create_snapshot(cluster.capture, snap)
        with pytest.raises(SnapshotError):
            install_snapshot(rep, snap)
        assert _state_generic(rep) == before
        assert persisted(rep) == before[0]

        # An empty replica takes the snapshot's page size.
        fresh = Replica(tmp_path / "fresh.db", ReplicaConfig(durable=False))
        try:
            pos = install_snapshot(fresh, snap)
            assert fresh.page_size == 1024
            assert checksum(fresh.db_path) == pos.checksum
        finally:
            fresh.close()
    finally:
        big.close()


def _state_generic(rep: Replica) -> tuple[Position, int]:
    return rep.position, checksum(rep.db_path)


def test_snapshot_header_round_trip() -> None:
    h = SnapshotHeader(4096, 12, Position(3, 99, 2**64 - 1), -5)
    assert read_snapshot_header(io.BytesIO(_encode_header(h))) == h
    assert h.size_bytes == 4096 * 12


def test_local_write_right_after_an_install_is_detected(cluster: Cluster, tmp_path: Path) -> None:
    """A local write that commits just after the install's commit (here from the progress
    callback, which runs after it) must be reported by the next apply, not absorbed."""
    fill(cluster.writer, "a", 30)
    cluster.capture_all()
    snap = tmp_path / "s.snap"
    create_snapshot(cluster.capture, snap)
    rep = Replica(tmp_path / "r.db", ReplicaConfig(durable=False))
    cluster.replicas.append(rep)

    def progress(done: int, total: int) -> None:
        if done == total:
            conn = connect(rep.db_path)
            conn.execute("INSERT INTO a(id, v) VALUES (-1, x'00')")
            conn.close()

    install_snapshot(rep, snap, progress)
    fill(cluster.writer, "a", 5, start=100)
    with pytest.raises(LocalWriteError):
        cluster.sync()
