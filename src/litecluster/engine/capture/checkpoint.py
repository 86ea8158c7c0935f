"""The SQLite side of capture's WAL restart, and when to try it.

:meth:`Capture.checkpoint <litecluster.engine.capture.capture.Capture.checkpoint>` runs the bracket under
capture's locks (see docs/architecture.md, "Restart bracket"); the steps it takes on SQLite, and
the schedule of its attempts, are here:

* :func:`passive_checkpoint` copies the WAL into the database, never past a reader's mark;
* :func:`restart_wal` commits a no-op, which makes SQLite start a fully copied WAL over;
* :class:`CheckpointSchedule` says when the WAL is due, backing off after failed attempts.
"""

from __future__ import annotations

import time

from litecluster.engine import faults
from litecluster.engine.sqlite import Connection, OperationalError, pragma_int


def passive_checkpoint(conn: Connection, busy_ms: int) -> bool:
    """Copy the WAL into the database; True when every frame of it was copied.

    Another process's autocheckpoint may hold the checkpoint lock for a few milliseconds
    (PASSIVE never waits for it). Nobody can add frames while the caller holds the write lock,
    so a short retry here always makes progress.
    """
    deadline = time.monotonic() + busy_ms / 1000
    while True:
        busy, wal_frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
        if busy == 0 or time.monotonic() >= deadline:
            break
        time.sleep(0.001)
    return bool(busy == 0 and wal_frames == done and wal_frames > 0)


def restart_wal(ctl: Connection, busy_timeout_ms: int) -> None:
    """Commit a no-op on ``ctl`` so SQLite restarts the fully copied WAL (unless another writer
    is about to do it: then it restarts the WAL itself, and capture does not wait).

    ``busy_timeout_ms`` is the connection's busy timeout, restored after the one attempt.
    """
    ctl.execute("PRAGMA busy_timeout=0")
    try:
        ctl.execute("BEGIN IMMEDIATE")
    except OperationalError:
        return
    finally:
        ctl.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    try:
        version = pragma_int(ctl, "user_version")
        ctl.execute(f"PRAGMA user_version={version}")
        faults.crashpoint("capture.restart.before_commit")
        ctl.execute("COMMIT")
    except BaseException:
        ctl.execute("ROLLBACK")
        raise


class CheckpointSchedule:
    """When to restart the WAL: once it holds ``frames`` frames, and not soon after a failure.

    Most failures are transient (a writer of another process held the lock or a read mark for a
    moment): the next attempt comes after 5 ms, doubling up to ``retry_max`` seconds for a reader
    that holds an old snapshot for long. A fixed long pause would let a busy writer grow the WAL
    by its whole throughput in the meantime.
    """

    def __init__(self, frames: int, retry_max: float) -> None:
        self.frames = frames
        self.retry_max = retry_max
        self.failures = 0
        self.retry_at = 0.0

    def due(self, wal_frames: int) -> bool:
        return wal_frames >= self.frames and time.monotonic() >= self.retry_at

    def succeeded(self) -> None:
        self.failures = 0

    def failed(self) -> None:
        delay = min(self.retry_max, 0.005 * 2**self.failures)
        self.failures += 1
        self.retry_at = time.monotonic() + delay
