"""litecluster: replicated, highly available SQLite.

The replication engine is a library with no network in it: :class:`Capture` turns the primary's
committed transactions into :class:`TxRecord` records in a :class:`TxLog`, and :class:`Replica`
applies them to a replica file through SQLite's own pager.
"""

from litecluster.client.helpers import ConfigValues, FeatureFlags, SessionStore
from litecluster.client.sync import Client, ClientError, LocalCopyBehindError, connect
from litecluster.engine.apply import Replica, ReplicaConfig
from litecluster.engine.capture.capture import Capture, CaptureConfig
from litecluster.engine.checksum import PageHashes, page_hash
from litecluster.engine.position import Position
from litecluster.engine.record import RecordKind, TxRecord
from litecluster.engine.snapshot import SnapshotHeader, install_snapshot, read_snapshot_header
from litecluster.engine.txlog import TxLog, TxlogConfig
from litecluster.engine.verify import VerifyResult, database_checksum, verify_replica
from litecluster.errors import (
    CaptureGapError,
    ConfigError,
    DivergenceError,
    LiteclusterError,
    LocalWriteError,
    ReplicaError,
    SnapshotCorruptError,
    SnapshotError,
    SnapshotRequiredError,
    TxidNotFoundError,
    TxlogCorruptError,
    TxlogError,
    WalError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigValues",
    "FeatureFlags",
    "SessionStore",
    "Capture",
    "Client",
    "ClientError",
    "LocalCopyBehindError",
    "CaptureConfig",
    "CaptureGapError",
    "ConfigError",
    "DivergenceError",
    "LiteclusterError",
    "LocalWriteError",
    "PageHashes",
    "Position",
    "RecordKind",
    "Replica",
    "ReplicaConfig",
    "ReplicaError",
    "SnapshotCorruptError",
    "SnapshotError",
    "SnapshotHeader",
    "SnapshotRequiredError",
    "TxLog",
    "TxRecord",
    "TxidNotFoundError",
    "TxlogConfig",
    "TxlogCorruptError",
    "TxlogError",
    "VerifyResult",
    "WalError",
    "__version__",
    "connect",
    "database_checksum",
    "install_snapshot",
    "page_hash",
    "read_snapshot_header",
    "verify_replica",
]
