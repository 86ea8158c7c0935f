"""The primary's side of replication: its databases, and one stream per connected replica.

Each database has a :class:`~litecluster.engine.capture.capture.Capture` thread turning commits into its txlog.
For each replica connection, one task per database reads durable records from the txlog and
writes them to the socket, waiting for the socket to drain before reading more: a slow replica
never makes the primary buffer; it falls behind on the txlog and, once retention removed what it
needs, gets a snapshot instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager

from litecluster.engine.position import Position
from litecluster.engine.snapshot import create_snapshot
from litecluster.engine.sqlite import Connection
from litecluster.errors import (
    LeadershipLostError,
    LiteclusterError,
    NodeError,
    NotPrimaryError,
    ProtocolError,
    SyncTimeoutError,
    TxidNotFoundError,
)
from litecluster.replication.config import DB_NAME, ReplicationConfig
from litecluster.replication.history import Reach
from litecluster.replication.primary.admission import Login, refusal
from litecluster.replication.primary.applied import Once
from litecluster.replication.primary.database import PrimaryDb
from litecluster.replication.primary.departed import Departed
from litecluster.replication.primary.lineage import Start, ack_counts, ack_covers, stream_start
from litecluster.replication.primary.readconfirm import ReadConfirm
from litecluster.replication.primary.session import Session
from litecluster.replication.primary.sqlexec import RequestError, ResultLimits, Statement
from litecluster.replication.primary.status import primary_status
from litecluster.replication.primary.writer import Procedure, WriteOutcome, Writer, WriterConfig
from litecluster.replication.protocol import (
    MAX_HELLO,
    PROTOCOL_VERSION,
    Ack,
    Bye,
    Heartbeat,
    Hello,
    Message,
    NeedSnapshot,
    Pos,
    SnapshotChunk,
    SnapshotEnd,
    SnapshotStart,
    Welcome,
    encode_message,
    read_message,
    refuse,
)
from litecluster.replication.stats import Stats
from litecluster.replication.tokens import Tokens

log = logging.getLogger("litecluster.primary")

SNAPSHOT_CHUNK = 1 << 20
_ZERO = Position()


class Primary:
    """Serves the replication port of a primary node."""

    def __init__(
        self,
        config: ReplicationConfig,
        tokens: Tokens,
        epoch: int,
        node_id: str,
        stats: Stats,
        *,
        start_txids: dict[str, int] | None = None,
    ):
        self.config = config
        self.tokens = tokens
        """The cluster tokens a replica may present (reloaded on SIGHUP by the node)."""
        self.login: Login | None = None
        """Checks an embedded replica's users-file login (admission.py; None: tokens only)."""
        self.epoch = epoch
        self.node_id = node_id
        self.stats = stats
        self.dbs: dict[str, PrimaryDb] = {}
        self.writers: dict[str, Writer] = {}
        self.start_txids = start_txids or {}
        self._acked = asyncio.Event()
        self.reads = ReadConfirm(self)
        """What strong and linearizable reads on this primary wait for after they ran."""
        self.paused = False
        """Set during a planned switchover: new writes are refused (retryable)."""
        self.on_disk_full: Callable[[], None] = lambda: None
        """Called when a write failed for lack of disk space."""
        self.promoted_at: dict[str, Position] = {}
        """Each database's position when this node was promoted (see lineage.stream_start)."""
        self.sync_members: set[str] | None = None
        """Synchronous mode under etcd: only these replicas' acknowledgements count (the set
        published in etcd; see syncstate). None: every connected replica counts."""
        self.sessions_changed = asyncio.Event()
        """Set when a replica connects or disconnects (the sync set follows)."""
        self.may_write: Callable[[], bool] = lambda: True
        """False once this node's leadership ran out: writes are refused from then on."""
        self.on_commit: list[Callable[[str, Position, list[bytes]], None]] = []
        """Called in a writer's thread with (database, position, annotations) after a group
        that carried annotations became durable (see Writer.on_commit)."""
        self.on_durable: list[Callable[[str, int], None]] = []
        """Called on the event loop with (database, durable txid) as records become durable."""
        self.sessions: dict[str, Session] = {}
        self.departed = Departed(config.replica_retention, stats)
        self.tmp = config.data_dir / "tmp"
        self.writer_config = WriterConfig(
            max_group=config.max_group,
            statement_timeout=config.write_timeout,
            allow_pragmas=frozenset(config.sql_allow_pragma),
            limits=ResultLimits(config.max_result_rows, config.max_result_bytes),
        )
        self.http = ""
        """This node's HTTP address, told to replicas (set by the node once it is bound)."""
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- databases ----------------------------------------------------------------------

    def open_databases(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        (self.config.data_dir / "db").mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(exist_ok=True)
        for leftover in self.tmp.glob("snap-*"):
            leftover.unlink()
        for name in self.config.databases:
            path = self.config.data_dir / "db" / f"{name}.db"
            if not path.exists():
                # Left empty for capture to open: SQLite then writes even the first page through
                # the WAL, so the txlog holds the database from its very first byte and a new
                # replica (an empty file too) can follow it from txid 1 without a snapshot.
                path.touch()
                log.info("db.created db=%s file=%s", name, path)
        self.discover()

    def discover(self) -> list[str]:
        """Open databases that appeared as ``DIR/db/NAME.db``; start streams for them."""
        assert self._loop is not None
        found: list[str] = []
        for path in sorted((self.config.data_dir / "db").glob("*.db")):
            name = path.stem
            if name in self.dbs or not DB_NAME.match(name):
                continue
            try:
                db = PrimaryDb(
                    name, self.config, self.epoch, self._durable, self.start_txids.get(name, 0),
                    self.promoted_at.get(name),
                )  # fmt: skip
            except LiteclusterError as exc:
                self.stats.error(exc)
                log.error("db.open_failed db=%s error=%r", name, str(exc))
                continue
            db.start(self._loop)
            self.dbs[name] = db
            found.append(name)
            log.info("db.serving db=%s position=%s", name, db.capture.published)
            for session in self.sessions.values():
                self._start_stream(session, db)
        return found

    def _durable(self, name: str, txid: int) -> None:
        for listener in self.on_durable:
            listener(name, txid)

    def ensure_database(self, name: str) -> PrimaryDb:
        """The database ``name``, created (an empty file, as for ``main``) if it is new."""
        db = self.dbs.get(name)
        if db is None:
            if not DB_NAME.match(name):
                raise RequestError("bad database name", db=name)
            path = self.config.data_dir / "db" / f"{name}.db"
            if not path.exists():
                path.touch()
                log.info("db.created db=%s file=%s", name, path)
            self.discover()
            db = self.dbs.get(name)
            if db is None:
                raise NodeError("the database could not be opened (see the log)", db=name)
        return db

    async def write(self, name: str, statements: list[Statement], *, transaction: bool,
                    once: Once | None = None) -> WriteOutcome:  # fmt: skip
        """SQL in the writer of ``name``; ``once``: a queued entry, applied at most once."""
        return await self._submit(
            name, lambda w: w.submit(statements, transaction=transaction, once=once)
        )

    async def call(self, name: str, procedure: Procedure) -> WriteOutcome:
        """Run ``procedure`` in the writer of database ``name`` (see Writer.call)."""
        return await self._submit(name, lambda w: w.call(procedure))

    def writer(self, name: str) -> Writer:
        db = self.ensure_database(name)
        writer = self.writers.get(name)
        if writer is None:
            writer = self.writers[name] = Writer(name, db.capture, self.writer_config)
            writer.may_commit = self.may_write
            writer.on_commit.append(lambda pos, notes: self._committed(name, pos, notes))
        return writer

    def _committed(self, name: str, position: Position, notes: list[bytes]) -> None:
        for callback in self.on_commit:
            callback(name, position, notes)

    async def _submit(
        self, name: str, run: Callable[[Writer], Awaitable[WriteOutcome]]
    ) -> WriteOutcome:
        if not self.may_write() or self.paused:
            raise NotPrimaryError("this node is no longer the primary", epoch=self.epoch)
        writer = self.writer(name)
        try:
            outcome = await run(writer)
        except LiteclusterError:
            if writer.disk_full:
                self.on_disk_full()
            raise
        if self.config.sync_replicas and not await self._replicated(name, outcome.position):
            raise SyncTimeoutError(
                f"the write is durable here but fewer than {self.config.sync_replicas} replicas "
                f"acknowledged it within {self.config.sync_timeout:g} s; its outcome is "
                "indeterminate (it may survive a failover or not)",
                position=str(outcome.position),
            )
        if not self.may_write():
            # Committed here, but this node's leadership ended meanwhile: another primary may
            # not have it. The outcome is unknown to the client, never reported as success.
            raise LeadershipLostError(
                "leadership was lost while the write committed; its outcome is indeterminate",
                epoch=self.epoch,
            )
        return outcome

    async def drain_writers(self) -> None:
        """Wait until every write already queued has committed (its record is durable)."""
        for writer in list(self.writers.values()):
            await writer.submit([], transaction=True)

    def reach(self, name: str, position: Position) -> Reach:
        """Where ``position`` (epoch, txid) stands against this primary's ``name``, judged by
        its epoch history (history.py): reached once captured, or excluded."""
        db = self.dbs.get(name)
        if db is None:
            return Reach.REACHED if position.txid == 0 else Reach.NOT_YET
        return db.history.reach(position, db.capture.published.txid)

    def applied_txid(self, name: str) -> int:
        """The txid visible in this primary's file of ``name`` (0: no such database)."""
        db = self.dbs.get(name)
        return db.capture.published.txid if db else 0

    def frozen(self, name: str) -> AbstractContextManager[tuple[Position, Connection]] | None:
        """A read view of ``name`` at a known position (backups); None: no such database."""
        db = self.dbs.get(name)
        return None if db is None else db.capture.frozen()

    def acked_by(self, name: str, position: Position) -> int:
        """How many counted replicas have applied the write at ``position`` (epoch, txid) of
        database ``name``."""
        db = self.dbs.get(name)
        if db is None:
            return 0
        return sum(
            1 for s in self.counted_sessions()
            if ack_covers(db, s.acked.get(name, _ZERO), position)
        )  # fmt: skip

    def counted_sessions(self) -> list[Session]:
        """The connected replicas whose acknowledgements count in synchronous mode: durable
        nodes that may be promoted (an embedded copy inside an application, a non-durable or
        a nofailover replica can never hand an acknowledged write to a new primary), and of
        those only the published sync set's members when there is one."""
        members = self.sync_members
        return [
            s
            for s in self.sessions.values()
            if s.promotable and (members is None or s.node_id in members)
        ]

    async def _replicated(self, name: str, position: Position) -> bool:
        """Synchronous mode: wait until ``sync_replicas`` replicas hold ``position`` (durably
        when they run with replica_durable, the default)."""
        return await self.wait_acks(
            lambda: self.acked_by(name, position) >= self.config.sync_replicas
        )

    async def wait_acks(self, done: Callable[[], bool]) -> bool:
        """Wait until ``done()`` holds, looked at after each acknowledgement, for at most
        ``sync_timeout``; whether it held."""
        deadline = time.monotonic() + self.config.sync_timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._acked.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._acked.wait()
        return True

    def check_captures(self) -> None:
        for name, db in list(self.dbs.items()):
            if db.capture.error is not None:
                self.stats.error(db.capture.error)
                log.error("db.capture_failed db=%s error=%r", name, str(db.capture.error))

    def enforce_retention(self) -> None:
        for db in self.dbs.values():
            db.txlog.enforce_retention()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()
        for db in self.dbs.values():
            try:
                db.close()
            except Exception:
                log.exception("db.close_failed db=%s", db.name)
        self.dbs.clear()

    # ---- connections ----------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = "{}:{}".format(*(writer.get_extra_info("peername") or ("?", 0))[:2])
        session: Session | None = None
        try:
            async with asyncio.timeout(self.config.peer_timeout):
                hello = await read_message(reader, max_frame=MAX_HELLO)
            session = await self._admit(hello, peer, writer)
            if session is None:
                return
            await self._serve(session, reader, writer)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ProtocolError) as exc:
            if isinstance(exc, ProtocolError):
                self.stats.error(exc)
            what = "protocol_error" if isinstance(exc, ProtocolError) else "disconnected"
            log.info(
                "replica.%s peer=%s node_id=%s error=%r",
                what, peer, session.node_id if session else "-", str(exc) or type(exc).__name__,
            )  # fmt: skip
        except Exception as exc:  # a bug must cost one connection, never the node
            self.stats.error(exc)
            log.exception("replica.connection_failed peer=%s", peer)
        finally:
            if session is not None:
                await self._end(session)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _admit(
        self, hello: Message, peer: str, writer: asyncio.StreamWriter
    ) -> Session | None:
        if not isinstance(hello, Hello):
            raise ProtocolError("expected HELLO as the first message", got=type(hello).__name__)
        why = await refusal(hello, self.tokens, self.login)
        if why is not None:
            self.stats.errors["auth"] += 1
            log.warning("auth.refused peer=%s node_id=%s reason=%s", peer, hello.node_id, why[0])
            await refuse(writer, "auth", why[1])
            return None
        if hello.version != PROTOCOL_VERSION:
            log.warning("replica.refused peer=%s reason=version version=%s", peer, hello.version)
            await refuse(writer, "version", f"primary speaks version {PROTOCOL_VERSION}")
            return None
        if hello.cluster != self.config.cluster_id:
            log.warning("replica.refused peer=%s reason=cluster cluster=%s", peer, hello.cluster)
            await refuse(writer, "cluster", f"this is cluster {self.config.cluster_id!r}")
            return None
        if not DB_NAME.match(hello.node_id) or hello.node_id == self.node_id:
            await refuse(writer, "node_id", f"unusable node id {hello.node_id!r}")
            return None
        old = self.sessions.get(hello.node_id)
        if old is not None:
            log.info("replica.replaced node_id=%s old_peer=%s", hello.node_id, old.peer)
            await self._end(old)
        session = Session(hello.node_id, peer, hello.http, dict(hello.positions),
                          promotable=hello.promotable, kind=hello.kind)  # fmt: skip
        self.sessions[hello.node_id] = session
        self.sessions_changed.set()
        self.departed.pop(hello.node_id)
        writer.write(encode_message(Welcome(self.node_id, self.epoch, sorted(self.dbs), self.http)))
        await writer.drain()
        log.info(
            "replica.connected node_id=%s peer=%s positions=%s",
            hello.node_id, peer, {k: str(v.position()) for k, v in hello.positions.items()},
        )  # fmt: skip
        return session

    async def _serve(
        self, session: Session, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        session.writer = writer
        for db in self.dbs.values():
            self._start_stream(session, db)
        session.tasks.append(asyncio.create_task(self._heartbeats(session, writer)))
        reading = asyncio.create_task(self._read_acks(session, reader))
        closing = asyncio.create_task(session.closed.wait())
        done, _ = await asyncio.wait([reading, closing], return_when=asyncio.FIRST_COMPLETED)
        reading.cancel()
        closing.cancel()
        # Awaited either way: a read that fails after the session was closed (the replica's
        # socket reset once a paused primary wakes) must not end as "Task exception was never
        # retrieved" in the log.
        read_outcome, _ = await asyncio.gather(reading, closing, return_exceptions=True)
        if reading in done and isinstance(read_outcome, Exception):
            raise read_outcome
        for task in session.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def end_sessions(self) -> None:
        for session in list(self.sessions.values()):
            await self._end(session)

    async def _end(self, session: Session) -> None:
        session.closed.set()
        for task in session.tasks:
            task.cancel()
        for task in session.tasks:
            with contextlib.suppress(BaseException):
                await task
        session.tasks.clear()
        if self.sessions.get(session.node_id) is session:
            del self.sessions[session.node_id]
            self.sessions_changed.set()
            self.departed.add(session)

    def _start_stream(self, session: Session, db: PrimaryDb) -> None:
        if session.writer is None:
            return  # still in the handshake: _serve starts every database's stream
        task = asyncio.create_task(self._stream(session, db, session.writer))
        task.add_done_callback(lambda t: self._stream_done(session, t))
        session.tasks.append(task)

    def _stream_done(self, session: Session, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, ConnectionError):
                log.error("replica.stream_failed node_id=%s error=%r", session.node_id, str(exc))
            session.closed.set()

    async def _read_acks(self, session: Session, reader: asyncio.StreamReader) -> None:
        # Replicas ack at least every heartbeat interval; one silent for peer_timeout is gone
        # (or hung), and its session's buffers are released.
        while True:
            async with asyncio.timeout(self.config.peer_timeout):
                msg = await read_message(reader)
            if isinstance(msg, Ack):
                for name, pos in msg.positions.items():
                    position = pos.position()
                    db = self.dbs.get(name)
                    sent = session.sent.get(name)
                    if not ack_counts(db, position, sent, name in session.verified):
                        continue  # what this session did not send: another history's txid
                    session.verified.add(name)
                    session.acked[name] = position
                session.round = max(session.round, msg.round)
                session.acked_at = time.time()
                self._acked.set()
            elif isinstance(msg, NeedSnapshot):
                db = self.dbs.get(msg.db)
                if db is None:
                    raise ProtocolError("snapshot asked for an unknown database", db=msg.db)
                log.info(
                    "replica.needs_snapshot node_id=%s db=%s reason=%r",
                    session.node_id, msg.db, msg.reason,
                )  # fmt: skip
                session.snapshot_wanted.add(msg.db)
                db.wake()
            elif isinstance(msg, Bye):
                session.left = True
                return
            else:
                raise ProtocolError("unexpected message from a replica", got=type(msg).__name__)

    async def _heartbeats(self, session: Session, writer: asyncio.StreamWriter) -> None:
        while True:
            heads = {name: db.head for name, db in self.dbs.items()}
            writer.write(encode_message(Heartbeat(self.epoch, heads)))
            await writer.drain()
            await asyncio.sleep(self.config.heartbeat_interval)

    def _start_txid(self, session: Session, db: PrimaryDb) -> int | None:
        """Where the replica's stream starts, or None when it needs a snapshot (noting in
        ``session.set_aside`` when its position may not be in this primary's history)."""
        pos = session.hello.get(db.name, Pos(0, 0, 0)).position()
        start = stream_start(db, pos, self.epoch, self.tmp, self.promoted_at.get(db.name))
        if start.txid is not None:
            session.sent[db.name] = start.txid - 1  # the replica holds that much of this history
            session.verified.add(db.name)
            return start.txid
        if start.diverged:
            session.set_aside[db.name] = start
        log.info(
            "replica.position_unknown node_id=%s db=%s position=%s first=%d head=%d diverged=%s "
            "unverified=%s", session.node_id, db.name, pos, db.txlog.first_txid, db.head,
            *start.flags,
        )  # fmt: skip
        return None

    async def _stream(self, session: Session, db: PrimaryDb, writer: asyncio.StreamWriter) -> None:
        wake = db.waiter()
        try:
            nxt = self._start_txid(session, db)
            while True:
                if nxt is None or db.name in session.snapshot_wanted:
                    session.snapshot_wanted.discard(db.name)
                    nxt = await self._send_snapshot(session, db, writer)
                wake.clear()
                try:
                    n, frame = db.batch(nxt)
                except TxidNotFoundError:
                    log.info(
                        "replica.behind_retention node_id=%s db=%s txid=%d first=%d",
                        session.node_id, db.name, nxt, db.txlog.first_txid,
                    )  # fmt: skip
                    nxt = None
                    continue
                if not n:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.config.heartbeat_interval):
                            await wake.wait()
                    continue
                # Noted before sending: an acknowledgement may arrive before drain returns.
                session.sent[db.name] = nxt + n - 1
                writer.write(frame)
                await writer.drain()
                nxt += n
                self.stats.records_shipped += n
                self.stats.bytes_shipped += len(frame)
        finally:
            db.forget(wake)

    async def _send_snapshot(
        self, session: Session, db: PrimaryDb, writer: asyncio.StreamWriter
    ) -> int:
        tmp = self.tmp / f"snap-{db.name}-{session.node_id}-{secrets.token_hex(4)}"
        session.state = "snapshot"
        session.snapshotting = db.name
        started = time.monotonic()
        try:
            header = await asyncio.to_thread(create_snapshot, db.capture, tmp)
            size = tmp.stat().st_size
            log.info(
                "snapshot.sending node_id=%s db=%s position=%s bytes=%d",
                session.node_id, db.name, header.position, size,
            )  # fmt: skip
            aside = session.set_aside.pop(db.name, Start(None))
            # The replica's file is about to be replaced: until it shows the snapshot's
            # position, what it acknowledges is its old file's.
            session.verified.discard(db.name)
            session.acked.pop(db.name, None)
            session.sent.pop(db.name, None)
            pos = Pos.of(header.position)
            lineage = tuple(db.history.upto(header.position.txid))
            writer.write(
                encode_message(SnapshotStart(db.name, pos, size, *aside.flags, history=lineage))
            )
            sent = 0
            with open(tmp, "rb") as f:
                while chunk := await asyncio.to_thread(f.read, SNAPSHOT_CHUNK):
                    writer.write(encode_message(SnapshotChunk(db.name, chunk)))
                    await writer.drain()
                    sent += len(chunk)
                    self.stats.snapshot_bytes_sent += len(chunk)
            writer.write(encode_message(SnapshotEnd(db.name)))
            await writer.drain()
            self.stats.snapshots_sent += 1
            log.info(
                "snapshot.sent node_id=%s db=%s bytes=%d seconds=%.2f",
                session.node_id, db.name, sent, time.monotonic() - started,
            )  # fmt: skip
            session.sent[db.name] = header.position.txid
            return header.position.txid + 1
        finally:
            session.state = "streaming"
            session.snapshotting = ""
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    # ---- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        return primary_status(
            self.epoch, self.dbs, [*self.sessions.values(), *self.departed.current()], self.writers
        )
