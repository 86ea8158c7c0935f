"""A fake node for testing the front doors without a server: it implements the doors'
protocols (``server/ports.py``, ``metrics.MetricsSource``, ``resp.info.InfoSource``) with
plain attributes a test sets, and records the cluster operations it is asked for."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from litecluster.engine.position import Position
from litecluster.engine.sqlite import Connection, connect
from litecluster.replication.config import Address
from litecluster.replication.history import Reach
from litecluster.replication.primary.applied import Once
from litecluster.replication.primary.sqlexec import Result, Statement
from litecluster.replication.primary.writer import Procedure, WriteOutcome
from litecluster.replication.replica.follower import Follower
from litecluster.replication.stats import Stats
from litecluster.server.config import NodeConfig
from litecluster.server.drain import Drain
from litecluster.server.http.sql import SqlDoor


@dataclass
class FakeUpstream:
    address: str = "127.0.0.1:4001"
    http: str = "127.0.0.1:4002"
    state: str = "streaming"
    last_message_at: float = field(default_factory=time.time)
    heads: dict[str, int] = field(default_factory=dict)


@dataclass
class FakeDb:
    head: int


class FakePrimary:
    """Answers each SQL write with one result at ``position`` and records the statements."""

    def __init__(self, position: Position) -> None:
        self.position = position
        self.writes: list[tuple[str, list[str], bool]] = []
        self.dbs = {"main": FakeDb(position.txid)}

    async def write(
        self, name: str, statements: list[Statement], *, transaction: bool,
        once: Once | None = None,
    ) -> WriteOutcome:  # fmt: skip
        self.writes.append((name, [s.sql for s in statements], transaction))
        return WriteOutcome([Result(rows_affected=1)], self.position, group_size=1)

    async def call(self, name: str, procedure: Procedure) -> WriteOutcome:
        raise AssertionError("no procedure expected")

    def status(self) -> dict[str, object]:
        return {"databases": {"main": {"txlog_bytes": 4096}}, "replicas": []}


class FakeNode:
    """Serves databases from ``data_dir/db/NAME.db``; ``applied`` is its txid per database."""

    def __init__(self, data_dir: Path, node_id: str = "n-fake") -> None:
        self.data_dir = data_dir
        self.node_id = node_id
        self.epoch = 3
        self.primary: FakePrimary | None = None
        self.lease = True
        """Whether the fake primary's leadership holds (a lapsed lease refuses strong reads)."""
        self.replicated = True
        """Whether its synchronous replicas hold its commits (False refuses strong reads)."""
        self.upstream: FakeUpstream | None = FakeUpstream()
        self.applied: dict[str, int] = {}
        self.excluded_epochs: set[int] = set()
        """Epochs whose positions this node's (fake) history excludes."""
        self.ready = True
        self.started_at = time.time() - 5
        self.listen = Address("127.0.0.1", 4001)
        self.stats = Stats()
        self.follower: Follower | None = None
        self.queue: Drain | None = None
        self.config = NodeConfig(data_dir=data_dir)
        self.promoted: list[bool] = []
        self.followed: list[Address] = []
        self.replicas: list[dict[str, Any]] = []
        """What a primary's status lists of its replicas."""

    # Local
    def known_primary(self) -> str | None:
        return self.upstream.http if self.upstream is not None else None

    def db_path(self, db: str) -> Path:
        return self.data_dir / "db" / f"{db}.db"

    def frozen(self, db: str) -> AbstractContextManager[tuple[Position, Connection]] | None:
        """A read view of the file at txid ``applied`` (no checksum: the fake keeps none)."""
        path = self.db_path(db)
        if not path.exists():
            return None

        @contextmanager
        def view() -> Iterator[tuple[Position, Connection]]:
            conn = connect(path, readonly=True)
            try:
                conn.execute("BEGIN")
                yield Position(1, self.applied_txid(db)), conn
            finally:
                conn.close()

        return view()

    def applied_txid(self, db: str) -> int:
        return self.applied.get(db, 0)

    async def wait_applied(self, db: str, position: Position) -> Reach:
        if position.epoch in self.excluded_epochs:
            return Reach.EXCLUDED
        return Reach.REACHED if self.applied_txid(db) >= position.txid else Reach.NOT_YET

    def lease_valid(self) -> bool:
        return self.primary is not None and self.lease

    async def confirm_leadership(self) -> bool:
        return self.lease_valid()

    async def confirm_replicated(self, db: str) -> bool:
        return self.primary is not None and self.replicated

    def http_client(self) -> aiohttp.ClientSession:
        raise AssertionError("no forwarding expected")

    # StatusSource
    @property
    def role(self) -> str:
        if self.primary is not None:
            return "primary"
        return "replica" if self.upstream is not None else "candidate"

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"node": {"id": self.node_id, "role": self.role,
                                        "http": "127.0.0.1:4002", "listen": str(self.listen)},
                               "databases": {"main": {"txid": self.applied_txid("main"),
                                                      "lag_records": 2}}}  # fmt: skip
        if self.upstream is not None:
            out["upstream"] = {"primary": self.upstream.address, "primary_id": "n-primary",
                               "primary_http": self.upstream.http,
                               "state": self.upstream.state}  # fmt: skip
        if self.primary is not None:
            out["replicas"] = self.replicas
        return out

    # ClusterOps
    def positions(self) -> dict[str, int]:
        return dict(self.applied)

    async def manual_promote(self, *, force: bool) -> int:
        self.promoted.append(force)
        self.epoch += 1
        return self.epoch

    async def manual_follow(self, primary: Address) -> None:
        self.followed.append(primary)

    def door(self, switchover: Any = None) -> SqlDoor:
        return SqlDoor(local=self, status=self, cluster=self, switchover=switchover,
                       max_request_bytes=1 << 20, max_statements=10,
                       statement_timeout=2.0)  # fmt: skip
