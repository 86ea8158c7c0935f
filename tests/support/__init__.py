"""Shared test machinery: a primary with capture and a txlog, and replicas that follow it.

Replicas follow the *transaction log* (the real data path), not the return value of
``Capture.poll``, because checkpoints also capture records.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litecluster import Capture, CaptureConfig, Replica, ReplicaConfig, TxLog, TxlogConfig
from litecluster.engine.position import Position, PositionFile
from litecluster.engine.snapshot import create_snapshot, install_snapshot
from litecluster.engine.sqlite import connect
from litecluster.engine.verify import database_checksum


def create_primary(path: Path, *, page_size: int = 4096, auto_vacuum: str = "NONE") -> None:
    """A new primary database file with the given page size and auto_vacuum mode, in WAL mode."""
    conn = connect(path)
    conn.execute(f"PRAGMA page_size={page_size}")
    conn.execute(f"PRAGMA auto_vacuum={auto_vacuum}")
    conn.execute("PRAGMA journal_mode=WAL").fetchall()
    conn.execute("CREATE TABLE IF NOT EXISTS _init(x)")
    conn.execute("DROP TABLE _init")
    conn.close()


@dataclass
class Cluster:
    """One primary (capture + txlog + writer connection) and any number of replicas."""

    root: Path
    log: TxLog
    capture: Capture
    writer: Any
    replicas: list[Replica] = field(default_factory=list)

    @property
    def primary_path(self) -> Path:
        return self.capture.db_path

    def add_replica(self, name: str = "replica", config: ReplicaConfig | None = None) -> Replica:
        """A new replica bootstrapped from a snapshot of the live primary."""
        snap = self.root / f"{name}.snap"
        create_snapshot(self.capture, snap)
        rep = Replica(self.root / f"{name}.db", config or ReplicaConfig(durable=False))
        install_snapshot(rep, snap)
        self.replicas.append(rep)
        return rep

    def capture_all(self) -> None:
        self.capture.poll()
        self.capture.maybe_checkpoint()

    def pending(self, rep: Replica) -> list[Any]:
        return list(self.log.read(rep.position.txid + 1))

    def sync(
        self, *, one_by_one: bool = False, check: Callable[[Replica, Any], None] | None = None
    ) -> int:
        """Capture, then bring every replica up to the log's end. Returns records applied."""
        self.capture_all()
        n = 0
        for rep in self.replicas:
            recs = self.pending(rep)
            if one_by_one:
                for rec in recs:
                    rep.apply([rec])
                    if check:
                        check(rep, rec)
            elif recs:
                rep.apply(recs)
            n += len(recs)
        return n

    def close(self) -> None:
        for rep in self.replicas:
            rep.close()
        self.writer.close()
        self.capture.close()
        self.log.close()


def make_cluster(
    root: Path,
    *,
    page_size: int = 4096,
    auto_vacuum: str = "NONE",
    checkpoint_frames: int = 1000,
    txlog: TxlogConfig | None = None,
) -> Cluster:
    root.mkdir(parents=True, exist_ok=True)
    create_primary(root / "primary.db", page_size=page_size, auto_vacuum=auto_vacuum)
    log = TxLog(root / "txlog", txlog or TxlogConfig(fsync=False))
    cap = Capture(root / "primary.db", log, CaptureConfig(checkpoint_frames=checkpoint_frames))
    return Cluster(root, log, cap, cap.connect_writer())


def wait_for(cond: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``cond`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def persisted(rep: Replica) -> Position:
    """The position a replica's position file records (asserting no intent is pending)."""
    pf = PositionFile(str(rep.db_path) + ".lcpos", fsync=False)
    try:
        assert pf.state is not None
        assert pf.state.pending is None
        return pf.state.committed
    finally:
        pf.close()


def checksum(path: Path | str) -> int:
    return database_checksum(os.fspath(path)).checksum
