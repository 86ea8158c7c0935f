"""litecluster: replicated, highly available SQLite.

The replication engine is a library with no network in it: :class:`Capture` turns the primary's
committed transactions into :class:`TxRecord` records in a :class:`TxLog`, and :class:`Replica`
applies them to a replica file through SQLite's own pager.
"""

from .apply import Replica, ReplicaConfig
from .capture import Capture, CaptureConfig
from .checksum import PageHashes, page_hash
from .client import Client, ClientError, connect
from .errors import (
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
from .kvhelpers import ConfigValues, FeatureFlags, SessionStore
from .position import Position
from .record import RecordKind, TxRecord
from .snapshot import SnapshotHeader, install_snapshot, read_snapshot_header
from .txlog import TxLog, TxlogConfig
from .verify import VerifyResult, database_checksum, verify_replica

__version__ = "0.1.0"

__all__ = [
    "ConfigValues",
    "FeatureFlags",
    "SessionStore",
    "Capture",
    "Client",
    "ClientError",
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
