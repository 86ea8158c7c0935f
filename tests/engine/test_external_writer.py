"""Capture follows a primary written by ANOTHER process with its own SQLite library and its own
autocheckpoint, and loses, reorders and merges nothing, without ever needing a RESET.

The writer (``stdlib_child.py writer``) is an ordinary application: stdlib ``sqlite3`` (SQLite
3.40), default settings, so its autocheckpoint (1000 pages) fires after its large transactions,
while capture restarts the WAL every 50 frames. Transaction ``k`` sets ``meta.last_seq = k`` and
inserts ``ops(seq = k)``, which makes order and completeness checkable record by record. This
process only ever opens the files through the engine's SQLite (sqlean), never the stdlib.
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from litecluster import Capture, CaptureConfig, RecordKind, Replica, ReplicaConfig, TxLog
from litecluster.engine.record import TxRecord
from litecluster.engine.snapshot import create_snapshot, install_snapshot, read_snapshot_header
from litecluster.engine.sqlite import connect
from litecluster.engine.verify import verify_replica
from litecluster.engine.wal import FRAME_HEADER_SIZE, WAL_HEADER_SIZE
from support import checksum, create_primary, wait_for
from support.procs import finish, read_json, reaped, spawn

CHECKPOINT_FRAMES = 50
PAGE_SIZE = 4096
LARGE_BYTES = 4_500_000  # about 1100 overflow pages of 4 KiB: more than the autocheckpoint
# How far past the largest transaction the WAL may grow: the frames before a restart is due,
# plus what the writer commits while capture turns a large transaction into a record and takes
# the write lock (capture holds writers back only after several full rounds in a row). Well
# below what an unbounded WAL reaches with this writer (many thousands).
WAL_SLACK_FRAMES = 12 * CHECKPOINT_FRAMES


@dataclass
class WalWatch:
    """Largest size of the primary's WAL file seen from this process."""

    path: Path
    largest: int = 0

    def sample(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.largest = max(self.largest, self.path.stat().st_size)


def init_schema(db: Path) -> None:
    conn = connect(db)
    conn.execute("CREATE TABLE ops(seq INTEGER PRIMARY KEY, payload BLOB)")
    conn.execute("CREATE TABLE meta(id INTEGER PRIMARY KEY, last_seq INTEGER, n INTEGER)")
    conn.execute("INSERT INTO meta VALUES (1, 0, 0)")
    conn.close()  # the last connection: checkpoints and removes the WAL


def content_digest(path: Path) -> str:
    """The writer's digest of ops and meta (``stdlib_child.content_digest``), via sqlean."""
    conn = connect(path)
    try:
        h = hashlib.sha256()
        for seq, payload in conn.execute("SELECT seq, payload FROM ops ORDER BY seq").fetchall():
            h.update(struct.pack(">QQ", seq, len(payload)))
            h.update(payload)
        for row in conn.execute("SELECT id, last_seq, n FROM meta ORDER BY id").fetchall():
            h.update(repr(tuple(row)).encode())
        return h.hexdigest()
    finally:
        conn.close()


def frames_per_record(records: list[TxRecord]) -> list[int]:
    """WAL frames each record's transaction took (from the WAL marks the records carry)."""
    out: list[int] = []
    prev = None
    for rec in records:
        if prev is not None and (prev.salt1, prev.salt2) == (rec.wal.salt1, rec.wal.salt2):
            out.append(rec.wal.frame - prev.frame)
        else:
            out.append(rec.wal.frame)
        prev = rec.wal
    return out


def writer_args(tmp: Path, db: Path, transactions: int, **extra: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "db": str(db),
        "seed": 7,
        "transactions": transactions,
        "large_every": 150,
        "large_bytes": LARGE_BYTES,
        "pause_every": 5,  # 1 ms of think time every 5 commits: busy, not a benchmark loop
        "pause": 0.001,
        "result": str(tmp / "writer.json"),
    }
    args.update(extra)
    return args


def follow(cap: Capture, watch: WalWatch, done: Callable[[], bool], mode: str) -> None:
    """Run capture (follower thread or a poll loop in this thread) until ``done()``."""
    if mode == "thread":
        cap.start()

        def finished() -> bool:
            watch.sample()
            assert cap.error is None, f"capture thread stopped: {cap.error!r}"
            return done()

        try:
            wait_for(finished, timeout=120, what="the writer process")
        finally:
            cap.stop()
    else:
        deadline = time.monotonic() + 120
        while not done():
            assert time.monotonic() < deadline, "writer process did not finish"
            cap.poll()
            watch.sample()
            cap.maybe_checkpoint()
            time.sleep(0.0005)
    cap.poll()
    watch.sample()
    assert cap.error is None


def check_replay(
    tmp: Path, db: Path, cap: Capture, log: TxLog, base: Path, report: dict[str, Any]
) -> list[TxRecord]:
    """The log after the base snapshot, applied record by record to a replica of that snapshot,
    replays the writer's transactions one record each, in commit order, and ends at the
    primary's content. Returns those records."""
    transactions = report["committed"]
    assert report["count"] == report["last"] == transactions
    assert cap.resets == 0
    with open(base, "rb") as f:
        base_txid = read_snapshot_header(f).position.txid
    records = list(log.read(base_txid + 1))
    assert records, "nothing was captured"
    assert [r.txid for r in records] == list(range(base_txid + 1, base_txid + len(records) + 1))
    assert [r.kind for r in records] == [RecordKind.PAGES] * len(records)

    rep = Replica(tmp / "replica.db", ReplicaConfig(durable=False))
    try:
        assert install_snapshot(rep, base).txid == base_txid
        view = connect(rep.db_path)  # a reader distinct from the applying connection
        try:
            last_seq = 0
            steps = {0: 0, 1: 0}
            for rec in records:
                rep.apply([rec])
                seq, n = view.execute("SELECT last_seq, n FROM meta").fetchall()[0]
                count, top = view.execute(
                    "SELECT count(*), coalesce(max(seq), 0) FROM ops"
                ).fetchall()[0]
                step = seq - last_seq
                assert step in steps, f"txid {rec.txid}: last_seq went from {last_seq} to {seq}"
                steps[step] += 1
                assert count == top == seq == n, (rec.txid, count, top, seq, n)
                last_seq = seq
        finally:
            view.close()
        # Each writer commit is exactly one record; the other records are capture's own no-op
        # commits that restart the WAL.
        assert last_seq == transactions
        assert steps[1] == transactions
        assert steps[0] == len(records) - transactions

        assert rep.position == cap.position
        assert checksum(rep.db_path) == checksum(db) == cap.position.checksum
        result = verify_replica(db, rep.db_path)
        assert result.equal, result
        assert content_digest(rep.db_path) == report["digest"]
    finally:
        rep.close()
    return records


@dataclass
class Run:
    """One writer process run under capture, shared by the tests of one follow mode."""

    tmp: Path
    db: Path
    cap: Capture
    log: TxLog
    base: Path
    report: dict[str, Any]
    largest_wal: int

    def records(self) -> list[TxRecord]:
        """Records captured after the base snapshot (the writer's work)."""
        with open(self.base, "rb") as f:
            base_txid = read_snapshot_header(f).position.txid
        return list(self.log.read(base_txid + 1))


@pytest.fixture(scope="module", params=["thread", "poll_loop"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp(f"external-{request.param}")
    db = tmp / "primary.db"
    create_primary(db, page_size=PAGE_SIZE)
    init_schema(db)
    log = TxLog(tmp / "txlog")
    cap = Capture(db, log, CaptureConfig(checkpoint_frames=CHECKPOINT_FRAMES))
    try:
        base = tmp / "base.snap"
        create_snapshot(cap, base)
        watch = WalWatch(Path(str(db) + "-wal"))
        # 1500 transactions, 10 of them larger than 1000 pages.
        proc = spawn("stdlib_child.py", "writer", writer_args(tmp, db, 1500))
        with reaped(proc):
            follow(cap, watch, lambda: proc.poll() is not None, request.param)
            rc, output = finish(proc, timeout=30)
        assert rc == 0, output
        report = read_json(tmp / "writer.json")
        yield Run(tmp, db, cap, log, base, report, max(watch.largest, report["max_wal_bytes"]))
    finally:
        cap.close()
        log.close()


def test_writer_used_default_autocheckpoint(run: Run) -> None:
    assert run.report["autocheckpoint"] == 1000
    assert run.report["journal_mode"] == "wal"
    # The autocheckpoint runs after every commit that leaves >= 1000 frames in the WAL.
    assert run.report["commits_over_autocheckpoint"] > 0, run.report
    largest_tx = max(frames_per_record(run.records()))
    assert largest_tx > 1000


def test_every_commit_captured_once_in_order_without_reset(run: Run) -> None:
    check_replay(run.tmp, run.db, run.cap, run.log, run.base, run.report)


def test_capture_restarted_the_wal_often(run: Run) -> None:
    generations = {(r.wal.salt1, r.wal.salt2) for r in run.records()}
    assert len(generations) >= 10, len(generations)


def test_wal_stays_bounded(run: Run) -> None:
    """A few restart intervals plus the largest single transaction."""
    largest_tx = max(frames_per_record(run.records()))
    bound = WAL_HEADER_SIZE + (PAGE_SIZE + FRAME_HEADER_SIZE) * (largest_tx + WAL_SLACK_FRAMES)
    largest_wal = run.largest_wal
    assert largest_wal <= bound, (
        f"WAL reached {largest_wal} bytes, bound {bound} (largest transaction "
        f"{largest_tx} frames, {run.cap.checkpoints} restarts by capture)"
    )


def test_capture_attaches_to_a_live_application(tmp_path: Path) -> None:
    """The application ran (and restarted the WAL through its own autocheckpoints) before
    capture attached, and keeps its connection open throughout."""
    transactions = 300
    db = tmp_path / "primary.db"
    create_primary(db, page_size=PAGE_SIZE)
    init_schema(db)
    args = writer_args(
        tmp_path,
        db,
        transactions,
        large_every=100,
        warmup_restarts=3,
        ready=str(tmp_path / "ready.json"),
        go=str(tmp_path / "go"),
    )
    proc = spawn("stdlib_child.py", "writer", args)
    with reaped(proc):
        wait_for(
            lambda: (tmp_path / "ready.json").exists() or proc.poll() is not None,
            timeout=60,
            what="the application's warm-up",
        )
        assert proc.poll() is None, finish(proc, timeout=5)[1]
        assert read_json(tmp_path / "ready.json")["warmup_restarts"] == 3
        log = TxLog(tmp_path / "txlog")
        cap = Capture(db, log, CaptureConfig(checkpoint_frames=CHECKPOINT_FRAMES))
        try:
            base = tmp_path / "base.snap"
            create_snapshot(cap, base)
            (tmp_path / "go").touch()
            watch = WalWatch(Path(str(db) + "-wal"))
            follow(cap, watch, lambda: proc.poll() is not None, "thread")
            rc, output = finish(proc, timeout=30)
            assert rc == 0, output
            report = read_json(tmp_path / "writer.json")
            records = check_replay(tmp_path, db, cap, log, base, report)
            assert len({(r.wal.salt1, r.wal.salt2) for r in records}) >= 3
        finally:
            cap.close()
            log.close()
