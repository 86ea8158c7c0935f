"""One database of a primary node: its capture thread, and what its streams need from it.

Capture turns commits into the database's txlog in a thread; this class hands durable txids to
the event loop (waking every stream of the database), remembers when each became durable (for
lag in milliseconds), answers "is this position in my history?" for a connecting replica, and
encodes each batch of records once for all the replicas that ask for it.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from litecluster.engine.capture.capture import Capture, CaptureConfig
from litecluster.engine.position import Position
from litecluster.engine.txlog import TxLog, TxlogConfig
from litecluster.errors import TxidNotFoundError
from litecluster.replication.config import ReplicationConfig
from litecluster.replication.history import EpochHistory, history_path
from litecluster.replication.protocol import Records, encode_message

LAG_HISTORY = 1 << 16
BATCH_RECORDS = 512
BATCH_CACHE = 8


class PrimaryDb:
    """One database of the primary: its capture thread and when each txid became durable."""

    def __init__(
        self,
        name: str,
        config: ReplicationConfig,
        epoch: int,
        on_durable: Callable[[str, int], None] | None = None,
        start_txid: int = 0,
        promoted_at: Position | None = None,
    ) -> None:
        """``promoted_at``: the file's position when this node was promoted, if it was."""
        self.name = name
        self._on_durable = on_durable
        self.path = config.data_dir / "db" / f"{name}.db"
        self.txlog = TxLog(
            config.data_dir / "txlog" / name,
            TxlogConfig(
                segment_bytes=config.segment_bytes,
                retention_bytes=config.retention_bytes,
                retention_seconds=config.retention_seconds,
            ),
        )
        try:
            self.capture = Capture(
                self.path,
                self.txlog,
                CaptureConfig(
                    epoch=epoch,
                    checkpoint_frames=config.checkpoint_frames,
                    retention_interval=config.retention_interval,
                    start_txid=start_txid,
                ),
            )
        except BaseException:
            self.txlog.close()
            raise
        try:
            self.history = EpochHistory.load(history_path(config.data_dir, name))
            # Written before the first write of this epoch can be accepted.
            self.history.begin(epoch, promoted_at or self._last_position())
        except BaseException:
            with contextlib.suppress(Exception):  # the history's error is the one to report
                self.capture.close()
            self.txlog.close()
            raise
        self._durable: deque[tuple[int, float]] = deque(maxlen=LAG_HISTORY)
        self._batches: OrderedDict[int, tuple[int, bytes]] = OrderedDict()
        self._waiters: set[asyncio.Event] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _last_position(self) -> Position:
        """The file's position with the epoch of the record that made it (capture's own
        position carries the epoch it writes in)."""
        last = self.txlog.last()
        if last is not None:
            return Position(last.epoch, last.txid, last.post_checksum)
        return self.capture.published

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.capture.listeners.append(self._from_capture)
        self.capture.start()

    def _from_capture(self, durable: int) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._durable_now, durable, time.monotonic())

    def _durable_now(self, txid: int, at: float) -> None:
        self._durable.append((txid, at))
        self.wake()
        if self._on_durable is not None:
            self._on_durable(self.name, txid)

    def wake(self) -> None:
        """Wake every stream of this database (new records, or a snapshot was asked for)."""
        for event in self._waiters:
            event.set()

    def waiter(self) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters.add(event)
        return event

    def forget(self, event: asyncio.Event) -> None:
        self._waiters.discard(event)

    def batch(self, from_txid: int) -> tuple[int, bytes]:
        """The encoded RECORDS frame of the records from ``from_txid`` and how many it holds.

        Replicas in step ask for the same batches: each is read and encoded once and sent to
        all of them (records never change once durable, so a cached batch stays valid).
        """
        hit = self._batches.get(from_txid)
        if hit is not None and (hit[0] >= BATCH_RECORDS or from_txid + hit[0] > self.head):
            return hit
        raws = self.txlog.read_raw(from_txid, max_records=BATCH_RECORDS)
        if not raws:
            return 0, b""
        out = (len(raws), encode_message(Records(self.name, b"".join(raws))))
        self._batches[from_txid] = out
        while len(self._batches) > BATCH_CACHE:
            self._batches.popitem(last=False)
        return out

    @property
    def head(self) -> int:
        # A promoted primary's log starts empty at the position it was promoted at.
        return max(self.txlog.durable_txid, self.capture.published.txid)

    def lag_seconds(self, acked: int) -> float:
        """How long ago the oldest record the replica lacks became durable."""
        if acked >= self.head:
            return 0.0
        i = bisect.bisect_left(self._durable, acked + 1, key=lambda e: e[0])
        if i == len(self._durable):
            return 0.0
        return max(0.0, time.monotonic() - self._durable[i][1])

    def checksum_at(self, txid: int) -> int | None:
        """The database checksum after ``txid`` in this primary's history, if still known."""
        last, first = self.txlog.durable_txid, self.txlog.first_txid
        if last == 0:  # no record yet: the log starts at capture's base position
            base = self.capture.published
            return base.checksum if txid == base.txid else None
        try:
            if first <= txid <= last:
                return self.txlog.get(txid).post_checksum
            if txid == first - 1:
                return self.txlog.get(first).pre_checksum
        except TxidNotFoundError:
            return None
        return None

    def close(self) -> None:
        try:
            self.capture.close()
        finally:
            self.txlog.close()
