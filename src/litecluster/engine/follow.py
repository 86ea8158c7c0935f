"""A replica that follows a local transaction log (same host, no network).

Used by the demo and benchmarks, and as the model for the network follower of the node: read
durable records after the replica's position, apply them in batches, wake up when told.
"""

from __future__ import annotations

import logging

from litecluster.engine.apply import Replica
from litecluster.engine.txlog import TxLog
from litecluster.engine.worker import BackgroundLoop
from litecluster.errors import LiteclusterError

log = logging.getLogger("litecluster.follow")


class LocalFollower(BackgroundLoop):
    """Keeps ``replica`` applying what ``txlog`` holds, in a background thread."""

    def __init__(
        self, replica: Replica, txlog: TxLog, *, batch: int = 512, idle_wait: float = 0.002
    ) -> None:
        self.replica = replica
        self.txlog = txlog
        self.batch = batch
        self.idle_wait = idle_wait
        self.error: Exception | None = None
        """Why the loop stopped: a typed LiteclusterError, or anything SQLite or the OS raised."""
        super().__init__()
        self.thread_name = f"follow:{replica.db_path.name}"

    def step(self) -> int:
        """Apply up to one batch of pending records; returns how many were applied."""
        start = self.replica.position.txid + 1
        records = list(self.txlog.read(start, start + self.batch - 1))
        if records:
            self.replica.apply(records)
        return len(records)

    def catch_up(self) -> int:
        total = 0
        while n := self.step():
            total += n
        return total

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.step():
                    continue
            except LiteclusterError as exc:
                self.error = exc
                log.error("follow.stopped db=%s error=%s", self.replica.db_path, exc)
                return
            except Exception as exc:  # surfaced to the owner through .error, never lost
                self.error = exc
                log.exception("follow.stopped db=%s", self.replica.db_path)
                return
            self._wake.wait(self.idle_wait)
            self._wake.clear()
