"""The embedded replica: a replica node's follower running inside the application process.

It follows the primary's replication stream into a local data directory on a private event
loop thread, with the same code as a replica node, and serves read-only connections to the
local files. It knows nothing of HTTP or of the client's errors: :class:`~litecluster.client.
sync.Client` decides what a missing database or a failed connection means to the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from pathlib import Path

from litecluster.engine.position import Position
from litecluster.engine.sqlite import Connection
from litecluster.engine.sqlite import connect as sqlite_connect
from litecluster.replication.config import Address, ReplicationConfig
from litecluster.replication.history import Reach
from litecluster.replication.replica.follower import Follower
from litecluster.replication.state import NodeState
from litecluster.replication.stats import Stats
from litecluster.replication.tokens import Tokens

POLL = 0.01
"""How often :meth:`EmbeddedReplica.wait_streaming` looks at the follower's state (the
follower announces no state change, and the wait happens once, at connect)."""


class EmbeddedReplica:
    """A follower of ``primary`` (its replication address, ``HOST:PORT``) into ``directory``.

    The local files are not fsynced per record: after a crash of the application the replica
    resynchronises from the primary, which holds every acknowledged write durably.
    """

    def __init__(self, directory: Path, primary: str, token: str, ca: str | None) -> None:
        """Open the local replica files and start following; raises ValueError for a primary
        that is not ``HOST:PORT``. :meth:`close` releases everything."""
        config = ReplicationConfig(
            data_dir=directory, primary=Address.parse(primary),
            tls_ca=Path(ca) if ca else None, replica_durable=False,
        )  # fmt: skip
        self.primary = primary
        self.data_dir = directory
        self.state = NodeState(directory)
        self.state.adopt("", config.cluster_id, 0)
        self.follower = Follower(
            config, Tokens([token]), self.state, "embedded-" + secrets.token_hex(3), Stats(),
            kind="embedded",
        )  # fmt: skip
        self.follower.open_databases()
        self._cond = threading.Condition()
        self.follower.on_apply.append(lambda db, pos: self._applied())
        self._conns: dict[str, Connection] = {}
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._task = self._loop.create_task(self.follower.run())
            started.set()
            # The follower's loop ends only when close() cancels it.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                self._loop.run_until_complete(self._task)

        self._thread = threading.Thread(target=run, name="litecluster-embedded", daemon=True)
        self._thread.start()
        started.wait()

    def wait_streaming(self, timeout: float) -> str | None:
        """Wait until the follower streams from the primary; None once it does, else why not
        (the follower's last error, or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while self.follower.upstream.state != "streaming":
            if time.monotonic() > deadline:
                return self.follower.upstream.last_error or "timeout"
            time.sleep(POLL)
        return None

    def _applied(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def applied(self, db: str) -> int:
        """The txid of ``db`` the local file holds (0: none yet)."""
        rep = self.follower.replicas.get(db)
        return rep.position.txid if rep else 0

    def wait_for(self, db: str, position: Position, timeout: float) -> Reach:
        """Wait until the local ``db`` holds ``position`` or its history excludes it; NOT_YET
        when ``timeout`` passed first."""
        got: list[Reach] = []

        def settled() -> bool:
            got.append(self.follower.reach(db, position))
            return got[-1] is not Reach.NOT_YET

        with self._cond:
            self._cond.wait_for(settled, timeout)
        return got[-1]

    def path(self, db: str) -> Path:
        """The local file of ``db``."""
        return self.data_dir / "db" / f"{db}.db"

    def connection(self, db: str) -> Connection | None:
        """A read-only connection to the local ``db``, opened once and reused (only the
        client's thread uses it); None when the replica has no such database."""
        conn = self._conns.get(db)
        if conn is None:
            path = self.path(db)
            if not path.exists():
                return None
            conn = self._conns[db] = sqlite_connect(path, readonly=True)
        return conn

    def close(self) -> None:
        """Stop following, close the local files (the data directory stays for a restart)."""
        if self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10)
        for conn in self._conns.values():
            conn.close()
        self.follower.close()
        self.state.close()
