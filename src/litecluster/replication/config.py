"""What the replication layer reads: the settings of a primary's and a replica's side of the
node-to-node protocol, and the address type both use.

A server node builds its :class:`ReplicationConfig` from its full configuration
(``litecluster.server.config.NodeConfig``); the embedded client builds one directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DB_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
"""A database (or node id) name: it becomes a file name, so no separators and no dots."""


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Address:
        host, sep, port = text.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected HOST:PORT, got {text!r}")
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ReplicationConfig:
    """The settings :class:`~litecluster.replication.primary.primary.Primary`,
    :class:`~litecluster.replication.primary.database.PrimaryDb` and
    :class:`~litecluster.replication.replica.follower.Follower` read; nothing else.

    The values are taken as given: a server node validates them (naming where each came from)
    before it builds this.
    """

    data_dir: Path
    primary: Address | None = None
    """The primary's replication address; unset means this node is the primary."""
    cluster_id: str = "litecluster"
    tls_ca: Path | None = None
    """CA bundle that replicas use to check the primary's certificate (enables TLS to it)."""
    databases: tuple[str, ...] = ("main",)
    """Databases created on the primary's first start (others appear as files in ``DIR/db``)."""
    heartbeat_interval: float = 1.0
    peer_timeout: float = 5.0
    reconnect_min: float = 0.1
    reconnect_max: float = 5.0
    replica_durable: bool = True
    checkpoint_frames: int = 1000
    segment_bytes: int = 64 * 1024 * 1024
    retention_bytes: int = 1024 * 1024 * 1024
    retention_seconds: float = 24 * 3600.0
    retention_interval: float = 10.0
    """How often old txlog segments are removed."""
    max_group: int = 512
    """Write requests committed together in one transaction at most (group commit)."""
    statement_timeout: float = 10.0
    """Seconds a read request may run (all its statements) before it is interrupted."""
    write_timeout: float = 1.0
    """Seconds a write request may run on the writer. Much shorter than reads: the writer is
    one thread, so a runaway write delays every other client's writes by up to this."""
    max_result_rows: int = 100_000
    """Rows one statement's result may hold (reads and RETURNING); past it the statement
    fails with a hint to page."""
    max_result_bytes: int = 32 * 1024 * 1024
    """Bytes (as estimated for the JSON answer) one statement's result may hold."""
    sql_allow_pragma: tuple[str, ...] = ()
    """PRAGMAs requests may run besides the read-only ones (docs/http-api.md, "SQL sandbox")."""
    sync_replicas: int = 0
    """Synchronous mode: a write is acknowledged once this many replicas hold it."""
    sync_timeout: float = 10.0
    replica_retention: float = 300.0
    """Seconds a disconnected replica stays in the primary's status and metrics."""
    nofailover: bool = False
    """Never run for primary (declared to the primary: its acks do not count in sync mode)."""
