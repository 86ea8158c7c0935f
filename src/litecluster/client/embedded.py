"""The embedded replica: a replica node's follower running inside the application process.

It follows the cluster's current primary (found and re-found by :mod:`litecluster.client.
follow`) into a local data directory on a private event loop thread, with the same code as a
replica node, and serves read-only connections to the local files, also while no primary can
be reached. It knows nothing of HTTP requests or of the client's errors:
:class:`~litecluster.client.sync.Client` decides what a missing database or a failed
connection means to the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from litecluster.client.follow import NO_PRIMARY, Tracker
from litecluster.client.join import Join
from litecluster.client.locate import Locator
from litecluster.engine.position import Position
from litecluster.engine.sqlite import Connection
from litecluster.engine.sqlite import connect as sqlite_connect
from litecluster.errors import NodeError
from litecluster.replication.config import Address, ReplicationConfig
from litecluster.replication.history import Reach
from litecluster.replication.replica.follower import Follower
from litecluster.replication.state import NodeState
from litecluster.replication.stats import Stats
from litecluster.replication.tokens import Tokens

POLL = 0.01
"""How often the waits of :meth:`EmbeddedReplica.wait_ready` look at the follower's state
(the follower announces no state change; the wait happens at connect)."""

_NOWHERE = Address("unknown", 0)
"""The follower's address until a primary is found (it is never connected to)."""


@dataclass(frozen=True)
class Lag:
    """How far the local copy is behind the primary."""

    records: int
    """Transactions the primary announced that the local copy has not applied (summed over
    the databases; as of the primary's last heartbeat)."""
    seconds: float
    """Since when the local copy is not known to be current: 0 while it streams caught up;
    during an outage, the age of the newest data it holds."""


class EmbeddedReplica:
    """A follower of the cluster ``join`` names, into ``join.directory``.

    The local files are not fsynced per record: after a crash of the application the replica
    resynchronises from the primary, which holds every acknowledged write durably.
    """

    def __init__(self, join: Join) -> None:
        """Open the local replica files and start following. :meth:`close` releases
        everything."""
        config = ReplicationConfig(
            data_dir=join.directory, primary=join.primary or _NOWHERE, cluster_id=join.cluster,
            tls_ca=Path(join.ca) if join.ca else None, replica_durable=False,
            reconnect_max=1.0,
        )  # fmt: skip
        self.join = join
        self.data_dir = join.directory
        try:
            self.state = NodeState(join.directory)
        except NodeError as exc:
            raise NodeError(exc.message, **exc.context, hint="one process per replica "
                            "directory: give each process its own replica=DIR") from None  # fmt: skip
        try:
            wanted = join.node_id or self.state.node_id or "embedded-" + secrets.token_hex(4)
            self.state.adopt(wanted, join.cluster, 0)
            self.node_id = self.state.node_id
            self.follower = Follower(config, Tokens([join.token]), self.state, self.node_id,
                                     Stats(), kind="embedded")  # fmt: skip
            self.follower.user = join.user
            self.follower.open_databases()
        except BaseException:
            self.state.close()
            raise
        locator = None
        if join.seeds or join.etcd:
            locator = Locator(list(join.seeds), list(join.etcd), join.cluster,
                              headers=join.headers, ca=join.ca)  # fmt: skip
        self.tracker = Tracker(self.follower, locator, join.primary)
        self._current_at = self._files_time()
        self._cond = threading.Condition()
        self.follower.on_apply.append(lambda db, pos: self._applied())
        self._conns: dict[str, Connection] = {}
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._task = self._loop.create_task(self.tracker.run())
            started.set()
            # The tracker's loop ends only when close() cancels it.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                self._loop.run_until_complete(self._task)

        self._thread = threading.Thread(target=run, name="litecluster-embedded", daemon=True)
        self._thread.start()
        started.wait()

    def _files_time(self) -> float:
        """When the local files last changed (0: none): how current a copy found at start is."""
        times = [p.stat().st_mtime for p in (self.data_dir / "db").glob("*.db*")]
        return max(times, default=0.0)

    # ---- readiness ----------------------------------------------------------------------------

    @property
    def populated(self) -> bool:
        """The local copy holds data (of some database) to serve during an outage."""
        return any(r.position.txid > 0 for r in self.follower.replicas.values())

    @property
    def streaming(self) -> bool:
        return self.follower.upstream.state == "streaming"

    def unreachable(self) -> str | None:
        """Why no primary is streaming, once a search round is over; None while one is (or
        may be about to)."""
        up = self.follower.upstream
        if self.tracker.rounds == 0 or up.state == "streaming":
            return None
        if up.state == NO_PRIMARY:
            return self.tracker.last_error or "no primary found"
        return up.last_error or None

    def caught_up(self, heads: dict[str, int]) -> bool:
        return all(self.applied(db) >= txid for db, txid in heads.items())

    def wait_ready(self, timeout: float, *, allow_stale: bool) -> str | None:
        """Wait until the local copy holds what the primary held when the wait began (its
        heads as of the first heartbeat seen). None once it does; with ``allow_stale``,
        ``"stale"`` as soon as no primary is reachable (the local copy is served as it is);
        else why not, when ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        target: dict[str, int] | None = None
        while True:
            up = self.follower.upstream
            # The heads come with the primary's first heartbeat (a primary always has a
            # database); until then the position to reach is not known.
            if target is None and self.streaming and up.heads:
                target = dict(up.heads)
            if target is not None and self.caught_up(target):
                self._current_at = time.time()
                return None
            why = self.unreachable()
            if why is not None and allow_stale:
                return "stale"
            if time.monotonic() > deadline:
                if target is not None:
                    behind = {db: f"{self.applied(db)}/{t}" for db, t in target.items()}
                    return f"still catching up (applied/primary: {behind})"
                return why or up.last_error or "no primary streamed in time"
            time.sleep(POLL)

    @property
    def lag(self) -> Lag:
        up = self.follower.upstream
        behind = sum(max(0, h - self.applied(db)) for db, h in up.heads.items())
        if self.streaming and behind == 0:
            self._current_at = time.time()
        seconds = 0.0 if self._current_at == 0 else max(0.0, time.time() - self._current_at)
        return Lag(behind, 0.0 if self.streaming and behind == 0 else seconds)

    def status(self) -> dict[str, object]:
        """What the client's ``status()`` reports of the local copy and its primary."""
        up, lag, found = self.follower.upstream, self.lag, self.tracker.found
        return {
            "node_id": self.node_id,
            "directory": str(self.data_dir),
            "cluster": self.join.cluster,
            "state": up.state,
            "primary": str(found.listen) if found else None,
            "primary_http": self.tracker.primary_http or None,
            "epoch": up.epoch or self.state.epoch,
            "lag_records": lag.records,
            "stale_seconds": round(lag.seconds, 3),
            "last_error": up.last_error or self.tracker.last_error or None,
            "databases": {
                name: {
                    "txid": r.position.txid,
                    "epoch": r.position.epoch,
                    "lag_records": max(0, up.heads.get(name, 0) - r.position.txid),
                }
                for name, r in sorted(self.follower.replicas.items())
            },
        }

    # ---- reads ----------------------------------------------------------------------------------

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
        self.follower.leaving = True  # the primary forgets this replica at once
        if self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()
        for conn in self._conns.values():
            conn.close()
        self.follower.close()
        self.state.close()
