"""Capture's settings: how often it polls, when it restarts the WAL, how it holds writers back.

Kept apart from :mod:`capture` so that the settings and their validation read in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from litecluster.errors import ConfigError


@dataclass(frozen=True)
class CaptureConfig:
    epoch: int = 1
    """Epoch stamped on new records (a static cluster's configured or persisted number)."""
    checkpoint_frames: int = 1000
    """Restart the WAL once it holds this many frames (and everything in it is captured)."""
    poll_interval: float = 0.002
    """Seconds between polls of the follower thread when nobody calls :meth:`Capture.notify`."""
    busy_timeout_ms: int = 5000
    """How long recovery and snapshots wait for other writers to let go of the write lock."""
    checkpoint_busy_ms: int = 100
    """How long a checkpoint waits for the write lock before giving up until a later poll."""
    checkpoint_retry: float = 0.5
    """Seconds to wait before retrying a checkpoint that could not get the write lock."""
    roll_forward_records: int = 100_000
    """How far back a database found behind its log may be rolled forward from the log."""
    retention_interval: float = 10.0
    """Seconds between applications of the txlog's retention limits by the follower thread."""
    busy_poll_interval: float = 0.0005
    """Seconds between polls for ``busy_window`` seconds after a poll found commits: writers of
    other processes cannot wake capture, and a commit waits for the next poll."""
    busy_window: float = 0.05
    start_txid: int = 0
    """For a new (empty) log only: the txid the database is at. A replica promoted to primary
    passes its position's txid, so the new primary's records continue the cluster's numbering
    and the other replicas follow it from where they are."""
    max_batch: int = 256
    """Transactions captured per round."""
    catch_up_rounds: int = 8
    """After this many full rounds in a row a writer outruns capture: the next rounds hold the
    write lock until the backlog is gone, so writers wait (briefly) instead of growing the WAL,
    and the time until their commits are replicable, without bound."""

    def __post_init__(self) -> None:
        if self.epoch < 1:
            raise ConfigError("capture epoch must be >= 1", value=self.epoch)
        if self.checkpoint_frames < 1:
            raise ConfigError("checkpoint_frames must be >= 1", value=self.checkpoint_frames)
        if self.start_txid < 0:
            raise ConfigError("start_txid must be >= 0", value=self.start_txid)
        if self.max_batch < 1:
            raise ConfigError("max_batch must be >= 1", value=self.max_batch)
        if self.poll_interval <= 0:
            raise ConfigError("poll_interval must be > 0", value=self.poll_interval)
