"""One ``litecluster serve`` process: data directory, role, replication port, HTTP port.

Start-up: lock the data directory, load identity and highest epoch, ask the leadership who is
primary, open the databases (capture on a primary, replica files on a replica), bind the ports,
write ``DIR/node.addr`` (the bound addresses, for scripts and tests that asked for port 0).

The node is the composition root of the server: each front door (HTTP app and SQL API, RESP
server, key/value store, metrics) takes the small protocols it declares (``server/ports.py``
and the doors' own modules), and the node, which implements them, hands each door only those.

Shutdown on SIGTERM/SIGINT: stop accepting, end replica sessions, finish the apply in flight
(each is one SQLite transaction: it commits or rolls back whole), capture and sync the last
commits into the txlog, close everything, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from litecluster import __version__
from litecluster.engine.position import Position
from litecluster.engine.sqlite import Connection, DatabaseError
from litecluster.errors import LiteclusterError, NodeError, UnavailableError
from litecluster.ha.etcd_leadership import EtcdLeadership
from litecluster.ha.leadership import Leadership
from litecluster.ha.loop import HaLoop
from litecluster.ha.roles import HaSettings
from litecluster.ha.static import StaticLeadership
from litecluster.replication.config import Address
from litecluster.replication.history import Reach
from litecluster.replication.primary.primary import Primary
from litecluster.replication.primary.sqlexec import ResultLimits
from litecluster.replication.primary.upkeep import upkeep
from litecluster.replication.protocol import refuse
from litecluster.replication.replica.diskpos import positions_on_disk
from litecluster.replication.replica.follower import Follower, Upstream
from litecluster.replication.state import NodeState
from litecluster.replication.stats import Stats
from litecluster.replication.tls import client_context, server_context
from litecluster.server.addrfile import remove_addr, write_addr
from litecluster.server.config import NodeConfig, read_tokens, resp_passwords
from litecluster.server.credentials import Credentials
from litecluster.server.drain import open_drain
from litecluster.server.forward import Forwarder
from litecluster.server.http.app import make_app, make_runner
from litecluster.server.http.sql import SqlDoor
from litecluster.server.kvstore import KvStore
from litecluster.server.metrics import registry_for
from litecluster.server.resp.pubsub import PubSub
from litecluster.server.resp.server import RespServer, RespSettings
from litecluster.server.waiters import Waiters

log = logging.getLogger("litecluster.node")


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.stats = Stats()
        self.state = NodeState(config.data_dir)
        try:
            self.state.adopt(
                config.node_id, config.cluster_id, config.epoch if config.is_primary else 0
            )
            self.tokens = read_tokens(config)
            self.credentials = Credentials(self.tokens, config.users_file)
            self.server_ssl = server_context(config.tls_cert, config.tls_key)
            forward_ssl = client_context(str(config.tls_ca) if config.tls_ca else None, tls=False)
        except BaseException:
            self.state.close()
            raise
        self.node_id = self.state.node_id
        self.leadership: Leadership
        self.ha: HaLoop | None = None
        if config.etcd:
            self.leadership = EtcdLeadership.connect(
                list(config.etcd), config.cluster_id, self.node_id, config.listen,
                str(config.http), ttl=config.lease_ttl, seen=self._persisted_epoch,
                access=config.etcd_access(),
            )  # fmt: skip
            settings = HaSettings(
                lease_ttl=config.lease_ttl, sync_replicas=config.sync_replicas,
                priority=config.priority, nofailover=config.nofailover,
                maximum_lag_on_failover=config.maximum_lag_on_failover,
            )  # fmt: skip
            self.ha = HaLoop(self.leadership, self, settings)
        else:
            self.leadership = StaticLeadership(
                self.node_id, config.primary, epoch=config.epoch, seen=self._persisted_epoch
            )
        self._role_task: asyncio.Task[None] | None = None
        self._ha_task: asyncio.Task[None] | None = None
        self.primary: Primary | None = None
        self.follower: Follower | None = None
        self.resting: dict[str, Position] | None = None
        """Between roles: the position of each database this node's files hold (None: not
        known yet, see :meth:`load_resting`)."""
        self.ready = False
        self.started_at = time.time()
        self.listen: Address = config.listen
        self.http: Address = config.http
        self._server: asyncio.Server | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.waiters = Waiters(lambda: self.primary or self.follower, config.read_wait_timeout)
        self._client: aiohttp.ClientSession | None = None
        self.forwarder = Forwarder(
            upstream=lambda: self.follower.upstream if self.follower is not None else None,
            session=self.http_client, tls=forward_ssl,
            timeout=config.statement_timeout + 5, wait_applied=self.wait_applied,
            token=lambda: self.tokens.current,
        )  # fmt: skip
        self.queue = open_drain(config, self.node_id, self, self.forwarder)  # ?queue writes
        self.failed: BaseException | None = None
        """Why a background task of the node ended on its own (then the node exits with 1)."""
        self.stopping = asyncio.Event()
        self.kv = KvStore(config.kv_db, self.db_path(config.kv_db), self, self.forwarder)
        self.pubsub = PubSub()
        self.kv.listeners.append(self.pubsub.on_changes)
        self.resp: RespServer | None = None
        self.resp_address = ""

    @property
    def epoch(self) -> int:
        """The epoch this node knows of: its own term's as primary, else the latest leader's
        or the highest it persisted (every epoch it acted on: see the leadership's contract)."""
        return self.leadership.epoch

    def _persisted_epoch(self) -> int:
        return self.state.epoch

    @property
    def role(self) -> str:
        if self.primary is not None:
            return "primary"
        return "replica" if self.follower is not None else "candidate"

    @property
    def upstream(self) -> Upstream | None:
        """As a replica: its view of the primary it follows (None: not a replica)."""
        return self.follower.upstream if self.follower is not None else None

    # ---- lifecycle ----------------------------------------------------------------------------

    def _sql_door(self) -> SqlDoor:
        cfg = self.config
        return SqlDoor(
            local=self, status=self, cluster=self, switchover=self.ha,
            max_request_bytes=cfg.max_request_bytes, max_statements=cfg.max_statements,
            statement_timeout=cfg.statement_timeout, queue=self.queue,
            sql_allow_pragma=frozenset(cfg.sql_allow_pragma),
            limits=ResultLimits(cfg.max_result_rows, cfg.max_result_bytes),
        )  # fmt: skip

    def _resp_settings(self, address: Address) -> RespSettings:
        cfg = self.config
        return RespSettings(
            address, self.server_ssl, resp_passwords(cfg),
            credentials=self.credentials if cfg.resp_auth else None,
            readonly_replica=cfg.resp_replica_writes == "readonly",
            output_limit=cfg.resp_output_limit, read_level=cfg.resp_read_level,
        )  # fmt: skip

    async def start(self) -> None:
        cfg = self.config
        app = make_app(self._sql_door(), self.kv, registry_for(self), self.forwarder,
                       backups=self, allow_origins=cfg.http_allow_origin,
                       open_probes=cfg.http_open_probes,
                       credentials=self.credentials if cfg.http_auth else None)  # fmt: skip
        self._runner = make_runner(app)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.config.http.host, self.config.http.port, ssl_context=self.server_ssl
        )
        try:
            await site.start()
        except OSError as exc:
            raise NodeError(
                f"cannot listen on the HTTP address: {exc.strerror}",
                http=str(self.config.http),
                hint="pick a free port with --http HOST:PORT",
            ) from None
        self.http = Address(self.config.http.host, int(self._runner.addresses[0][1]))
        try:
            self._server = await asyncio.start_server(
                self._dispatch, self.config.listen.host, self.config.listen.port,
                ssl=self.server_ssl, reuse_address=True,
            )  # fmt: skip
        except OSError as exc:
            raise NodeError(
                f"cannot listen on the replication address: {exc.strerror}",
                listen=str(self.config.listen),
                hint="pick a free port with --listen HOST:PORT",
            ) from None
        self.listen = Address(self.config.listen.host, self._server.sockets[0].getsockname()[1])
        if self.config.resp is not None:
            self.resp = RespServer(
                self, self.kv, self.pubsub, self._resp_settings(self.config.resp)
            )
            try:
                self.resp_address = await self.resp.start()
            except OSError as exc:
                raise NodeError(
                    f"cannot listen on the Redis-protocol address: {exc.strerror}",
                    resp=str(self.config.resp), hint="pick a free port with --resp HOST:PORT",
                ) from None  # fmt: skip
        self._watch(asyncio.create_task(self.kv.expire_forever(), name="kv-expiry"))
        self._watch(asyncio.create_task(self.queue.run(), name="queue-drain"))
        self.leadership.identify(self.listen, str(self.http))
        if self.ha is not None:
            self._ha_task = asyncio.create_task(self.ha.run(), name="ha")
            self._watch(self._ha_task)
        elif await self.leadership.acquire():
            await self.become_primary(self.leadership.epoch, {})
        else:
            primary = self.leadership.primary()
            assert primary is not None
            await self.become_replica(primary)
        self._write_addr()
        self.ready = True
        log.info(
            "node.started role=%s node_id=%s epoch=%d listen=%s http=%s tls=%s version=%s",
            self.role, self.node_id, self.epoch, self.listen, self.http,
            "on" if self.server_ssl else "off", __version__,
        )  # fmt: skip

    # ---- roles ----------------------------------------------------------------------------------

    async def become_primary(
        self,
        epoch: int,
        start: dict[str, Position],
        sync_members: set[str] | None = None,
    ) -> None:
        """Serve as primary at ``epoch``; ``start`` continues a promoted replica's numbering
        (its databases' positions); ``sync_members`` are the replicas whose acknowledgements
        count in synchronous mode (None: all)."""
        start_txids = {name: pos.txid for name, pos in start.items()}
        await self.end_role()
        self.state.see_epoch(epoch)
        self.primary = Primary(self.config.replication(), self.tokens, epoch, self.node_id,
                               self.stats, start_txids=start_txids)  # fmt: skip
        self.primary.http = str(self.http)
        self.primary.login = self.credentials.replica_login
        self.primary.sync_members = sync_members
        self.primary.promoted_at = dict(start)
        self.primary.may_write = self.may_write
        self.primary.on_disk_full = self._disk_full
        self.primary.on_durable.append(self.waiters.notify)
        # On the loop, not in a thread: discovering a database starts streams for connected
        # replicas (tasks), and no replica may be admitted before the databases are open.
        self.primary.open_databases(asyncio.get_running_loop())
        self._role_task = asyncio.create_task(
            upkeep(self.primary, self.config.scan_interval, self.stats), name="upkeep"
        )
        self._watch(self._role_task, cancel_ok=True)
        self.kv.attach(asyncio.get_running_loop(), primary=self.primary)
        self.waiters.notify_all()  # a position waited for may be reached, or excluded, now
        log.info("node.role role=primary epoch=%d", epoch)

    async def become_replica(self, primary: Address) -> None:
        await self.end_role()
        config = self.config.replication(primary=primary)
        self.follower = Follower(config, self.tokens, self.state, self.node_id, self.stats)
        self.follower.http = str(self.http)
        self.follower.on_apply.append(self.waiters.notify)
        try:
            await asyncio.to_thread(self.follower.open_databases)
        except (OSError, LiteclusterError) as exc:
            # Disk full, a damaged file: stay between roles; the caller may try again later.
            follower, self.follower = self.follower, None
            await asyncio.to_thread(follower.close)
            raise NodeError(
                f"cannot open the databases as a replica: {exc}",
                hint="free disk space or check the data directory",
            ) from exc
        self.kv.attach(asyncio.get_running_loop(), replica=self.follower)
        self._role_task = asyncio.create_task(self.follower.run(), name="follower")
        self._watch(self._role_task, cancel_ok=True)
        self.waiters.notify_all()
        log.info("node.role role=replica primary=%s", primary)

    async def promote(self, epoch: int, sync_members: set[str] | None = None) -> None:
        """Turn this replica into the primary of ``epoch``, continuing the cluster's txids from
        its own files (what it has applied)."""
        # The follower stops first: positions read while it may still apply would understate
        # what the files hold, and the new primary would number over applied records.
        await self.end_role()
        if self.resting is None:
            await self.load_resting()
        if self.resting is None:
            raise NodeError("the node took another role while being promoted", epoch=epoch)
        positions = dict(self.resting)  # with their epochs: see lineage.stream_start
        # The files are the truth now: an old txlog of this node (from an earlier term as
        # primary) may not match them; it is kept aside for inspection, not deleted.
        txlogs = self.config.data_dir / "txlog"
        if txlogs.exists() and any(txlogs.iterdir()):
            aside = self.config.data_dir / f"txlog.before-epoch-{epoch}"
            await asyncio.to_thread(shutil.move, str(txlogs), str(aside))
            log.warning("node.txlog_moved_aside dir=%s", aside)
        await self.become_primary(epoch, positions, sync_members)

    async def manual_promote(self, *, force: bool) -> int:
        """``litecluster promote`` on a static cluster: this replica becomes the primary of a
        new epoch. Returns the epoch. Refused while the current primary is still streaming to
        it (two primaries would both accept writes), unless forced."""
        static = self.leadership
        if not isinstance(static, StaticLeadership):
            raise NodeError("this cluster elects its primary through etcd",
                            hint="use litecluster switchover --to NODE")  # fmt: skip
        if self.follower is None:
            raise NodeError("this node is already the primary", epoch=self.epoch)
        up = self.follower.upstream
        if up.state == "streaming" and not force:
            raise NodeError(
                "the primary is alive and streaming to this node",
                primary=up.address,
                hint="stop the old primary first (or pass --force after fencing it otherwise)",
            )
        epoch = static.epoch + 1
        self.state.see_epoch(epoch)  # persisted before serving: a restart never goes back
        static.take_over(epoch)
        await self.promote(epoch)
        log.warning("node.promoted_by_operator node_id=%s epoch=%d", self.node_id, epoch)
        return epoch

    async def manual_follow(self, primary: Address) -> None:
        """Point a replica of a static cluster at a new primary (after ``promote``)."""
        static = self.leadership
        if not isinstance(static, StaticLeadership):
            raise NodeError("this cluster elects its primary through etcd")
        if self.primary is not None:
            raise NodeError("a primary cannot be told to follow another node",
                            hint="stop it, and restart it with --primary NEW")  # fmt: skip
        static.follow(primary)
        await self.become_replica(primary)

    def known_primary(self) -> str | None:
        """The HTTP address of the primary as far as this node knows (None: itself, or
        unknown), for "not primary" errors that tell clients where to go."""
        leader = self.leadership.leader
        if leader is not None and leader.node_id != self.node_id and leader.http:
            return leader.http
        if self.follower is not None and self.follower.upstream.http:
            return self.follower.upstream.http
        return None

    def upstream_heads(self) -> dict[str, int] | None:
        """As a replica: the heads its primary last announced (None: not a replica)."""
        return self.follower.upstream.heads if self.follower is not None else None

    def positions(self) -> dict[str, int]:
        """This node's txid per database (as a replica: what it has applied; between roles:
        what its files hold, empty while not known: see :attr:`positions_known`)."""
        if self.follower is not None:
            return {name: r.position.txid for name, r in self.follower.replicas.items()}
        if self.primary is not None:
            return {name: db.head for name, db in self.primary.dbs.items()}
        return {name: pos.txid for name, pos in (self.resting or {}).items()}

    @property
    def positions_known(self) -> bool:
        return self.follower is not None or self.primary is not None or self.resting is not None

    async def load_resting(self) -> None:
        """Between roles: read the positions this node's files hold (each file is read once;
        see :mod:`diskpos`)."""
        found = await asyncio.to_thread(
            positions_on_disk, self.config.data_dir, durable=self.config.replica_durable
        )
        if self.follower is None and self.primary is None:
            self.resting = found
            log.info("node.positions_on_disk positions=%s", {n: str(p) for n, p in found.items()})

    def _disk_full(self) -> None:
        """A primary that cannot write its disk hands over (with etcd) instead of failing
        every write; it stays out of elections until it restarts with space."""
        log.error("node.disk_full node_id=%s: stepping down", self.node_id)
        if self.ha is not None and not self.ha.disk_full:
            self.ha.disk_full = True
            asyncio.get_running_loop().create_task(self.ha.step_down_now())

    def may_write(self) -> bool:
        """False once this node may no longer act as primary (its lease ran out)."""
        return self.leadership.valid()

    def lease_valid(self) -> bool:
        return self.primary is not None and self.leadership.valid()

    async def confirm_leadership(self) -> bool:
        if not self.lease_valid():
            return False
        if isinstance(self.leadership, StaticLeadership):
            # No coordinator: the synchronous replicas vouch that they still follow this
            # node at its epoch (asynchronous mode: nothing to ask; see docs/node.md).
            primary = self.primary
            return primary is not None and await primary.reads.round() and self.lease_valid()
        try:
            leader = await self.leadership.observe()
        except LiteclusterError:
            return False
        if leader is None or (leader.node_id and leader.node_id != self.node_id):
            return False
        if leader.epoch and leader.epoch != self.epoch:
            return False
        # The answer may have taken long enough for the lease to run out meanwhile.
        return self.lease_valid()

    async def confirm_replicated(self, db: str) -> bool:
        primary = self.primary
        if primary is None:
            return False
        try:
            return await primary.reads.replicated(db)
        except (LiteclusterError, DatabaseError, OSError) as exc:
            # The term ended under the read (its capture closed), or capture failed: the read
            # is refused (retryable), and capture's own error is reported where it polls.
            log.warning("node.strong_read_unconfirmed db=%s error=%r", db, str(exc))
            return False

    async def end_role(self) -> None:
        """Stop being primary or replica: the node is between roles afterwards."""
        if self._role_task is not None:
            task, self._role_task = self._role_task, None  # first: see _watch
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if self.primary is not None:
            primary, self.primary = self.primary, None
            self.resting = None  # closing captures the last commits: read the files again
            await primary.end_sessions()
            await asyncio.to_thread(primary.close)
        if self.follower is not None:
            # Nothing applies once the role task has ended: these are the files' positions.
            self.resting = {name: r.position for name, r in self.follower.replicas.items()}
            follower, self.follower = self.follower, None
            await asyncio.to_thread(follower.close)

    async def _dispatch(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.primary is not None:
            await self.primary.handle(reader, writer)
        else:
            await self._not_primary(reader, writer)

    def _watch(self, task: asyncio.Task[None], *, cancel_ok: bool = False) -> None:
        """These tasks run until the node stops: one that ends by itself is a bug, and the node
        stops (exit status 1) so that its supervisor restarts it. Only a role change cancels a
        role task (``cancel_ok``): one cancelled otherwise left a replica alive, not following."""

        def done(t: asyncio.Task[None]) -> None:
            if t.cancelled() and (not self.ready or (cancel_ok and t is not self._role_task)):
                return
            self.failed = (None if t.cancelled() else t.exception()) or NodeError(
                f"background task {t.get_name()} ended unexpectedly"
            )
            log.critical(
                "node.task_failed task=%s error=%r", t.get_name(), str(self.failed),
                exc_info=self.failed,
            )  # fmt: skip
            self.stopping.set()

        task.add_done_callback(done)
        self._tasks.append(task)

    def _write_addr(self) -> None:
        write_addr(self.config.data_dir, node_id=self.node_id, pid=os.getpid(), role=self.role,
                   listen=str(self.listen), http=str(self.http),
                   scheme="https" if self.server_ssl else "http", resp=self.resp_address or None)  # fmt: skip

    async def _not_primary(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """A replica's replication port: refuse, naming the primary."""
        primary = self.follower.config.primary if self.follower else None
        await refuse(writer, "not_primary", f"primary is {primary or 'unknown'}")

    def reload_credentials(self) -> bool:
        """SIGHUP: read the token file and the users file again (rotation without downtime,
        docs/security.md). A file that does not load is logged and changes nothing; False."""
        try:
            self.credentials.reload()
        except LiteclusterError as exc:
            log.error("node.reload_failed error=%r", str(exc))
            return False
        log.info("node.credentials_reloaded tokens=%d users=%d", len(self.tokens.all),
                 len(self.credentials.users))  # fmt: skip
        return True

    async def stop(self) -> None:
        log.info("node.stopping node_id=%s", self.node_id)
        self.ready = False
        self.stopping.set()
        if self._server is not None:
            self._server.close()
        if self.resp is not None:
            await self.resp.close()
        if self.primary is not None:
            await self.primary.end_sessions()
        if self.ha is not None:
            # The HA loop stops before its etcd client closes: a round in flight would
            # otherwise fail on the closed client (and step down, reading every file).
            if self._ha_task is not None:
                self._ha_task.cancel()
                with contextlib.suppress(BaseException):
                    await self._ha_task
            await self.ha.resign()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._client is not None:
            await self._client.close()
        # Captures poll one last time on close, so commits made up to now reach the txlog.
        if self.primary is not None:
            await asyncio.to_thread(self.primary.close)
        if self.follower is not None:
            await asyncio.to_thread(self.follower.close)
        self.kv.close()
        self.queue.close()
        remove_addr(self.config.data_dir)
        self.state.close()
        log.info("node.stopped node_id=%s", self.node_id)

    # ---- SQL API support --------------------------------------------------------------------

    def db_path(self, db: str) -> Path:
        return self.config.data_dir / "db" / f"{db}.db"

    def applied_txid(self, db: str) -> int:
        role = self.primary or self.follower
        return role.applied_txid(db) if role is not None else 0  # 0 between roles

    def frozen(self, db: str) -> AbstractContextManager[tuple[Position, Connection]] | None:
        """A read view of ``db`` at a known position, for backups (see engine/backup.py)."""
        role = self.primary or self.follower
        if role is None:
            raise UnavailableError("this node is between roles and serves no database right now",
                                   hint="retry in a moment, or ask another node")  # fmt: skip
        return role.frozen(db)

    async def wait_applied(self, db: str, position: Position) -> Reach:
        """Wait (bounded by read_wait_timeout) until ``db`` here holds ``position``, or this
        node's history excludes it."""
        return await self.waiters.wait(db, position)

    def http_client(self) -> aiohttp.ClientSession:
        """One pooled client session for forwarding to the primary."""
        if self._client is None or self._client.closed:
            self._client = aiohttp.ClientSession()
        return self._client

    # ---- status -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "node": {
                "id": self.node_id,
                "role": self.role,
                "epoch": self.epoch,
                "cluster": self.config.cluster_id,
                "listen": str(self.listen),
                "http": str(self.http),
                "version": __version__,
                "started_at": self.started_at,
                "pid": os.getpid(),
            },
            "time": time.time(),
            "stats": self.stats.as_dict(),
        }
        if self.primary is not None:
            out.update(self.primary.status())
        if self.follower is not None:
            out.update(self.follower.status())
        if self.ha is not None:
            out["leadership"] = self.ha.status()
        out["queue"] = self.queue.status()
        out.setdefault("databases", {})  # a candidate between roles serves none
        return out
