"""The replica's side of replication: connect to the primary, apply what it streams, ack.

One task reads frames; one task per database applies them in order (batches of records in one
SQLite transaction through :class:`~litecluster.engine.apply.Replica`, or a snapshot spooled to a file
first, so the network never holds a SQLite transaction open). The queues between them are
bounded: a slow disk stops the reading, TCP flow control stops the primary's sender, and the
primary falls back on its txlog instead of buffering. Lost connections are retried with
exponential backoff and jitter; the position survives in the replica files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import shutil
import ssl
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import IO

from litecluster.engine.apply import Replica
from litecluster.engine.position import Position
from litecluster.engine.record import TxRecord
from litecluster.engine.snapshot import install_snapshot, set_aside
from litecluster.engine.sqlite import Connection
from litecluster.engine.txlog import fsync_dir
from litecluster.errors import (
    DivergenceError,
    LiteclusterError,
    PeerRefusedError,
    ProtocolError,
    ReplicaError,
    SnapshotError,
    StaleEpochError,
)
from litecluster.replication.config import DB_NAME, ReplicationConfig
from litecluster.replication.history import Entry, EpochHistory, Reach, history_path
from litecluster.replication.primary.writer import decode_annotations
from litecluster.replication.protocol import (
    PROTOCOL_VERSION,
    Ack,
    Bye,
    Heartbeat,
    Hello,
    Message,
    NeedSnapshot,
    Pos,
    Records,
    Refuse,
    SnapshotChunk,
    SnapshotEnd,
    SnapshotStart,
    Welcome,
    encode_message,
    read_message,
    split_records,
)
from litecluster.replication.replica.diskpos import open_replica
from litecluster.replication.replica.status import replica_status
from litecluster.replication.replica.tasks import (
    ApplyFailed,
    first_line,
    in_thread,
    read_in_own_task,
    session_error,
)
from litecluster.replication.state import NodeState
from litecluster.replication.stats import Stats
from litecluster.replication.tls import client_context
from litecluster.replication.tokens import Tokens

log = logging.getLogger("litecluster.follower")

QUEUE_FRAMES = 64
BATCH_RECORDS = 2048


@dataclass
class _Incoming:
    """A snapshot being received into a spool file."""

    db: str
    position: Position
    size: int
    path: Path
    file: IO[bytes]
    received: int = 0
    _: KW_ONLY  # flags by name: a flag passed by position would count as bytes received
    diverged: bool = False
    unverified: bool = False
    history: tuple[Entry, ...] = ()


@dataclass
class Upstream:
    """The replica's view of its primary, for status."""

    address: str
    state: str = "connecting"
    node_id: str = ""
    http: str = ""
    epoch: int = 0
    heads: dict[str, int] = field(default_factory=dict)
    connected_at: float = 0.0
    last_message_at: float = 0.0
    last_error: str = ""


class Follower:
    def __init__(
        self,
        config: ReplicationConfig,
        tokens: Tokens,
        state: NodeState,
        node_id: str,
        stats: Stats,
        *,
        kind: str = "node",
    ) -> None:
        """``kind`` is what this replica declares in its HELLO: ``node`` (may be promoted) or
        ``embedded`` (an application's copy, whose acks never count in synchronous mode)."""
        assert config.primary is not None
        self.kind = kind
        self.config = config
        self.tokens = tokens
        """Its current token is presented at each connection (so a reload takes effect on the
        next one)."""
        self.state = state
        self.node_id = node_id
        self.stats = stats
        self.replicas: dict[str, Replica] = {}
        self.histories: dict[str, EpochHistory] = {}
        self.upstream = Upstream(str(config.primary))
        self.tmp = config.data_dir / "tmp"
        self.http = ""
        """This node's HTTP address, told to the primary (set by the node once it is bound;
        empty: the replica serves no HTTP)."""
        self.on_annotations: list[Callable[[str, int, list[bytes]], None]] = []
        """Called on the loop with (database, txid, annotations) for each applied record that
        carries annotations, in txid order, once it is visible in the local file."""
        self._diverged: set[str] = set()
        """Databases whose applied records contradicted the primary's stream."""
        self.on_apply: list[Callable[[str, Position], None]] = []
        self.user = ""
        """A users-file login presented instead of the token (embedded replicas only)."""
        self.leaving = False
        """Set before a clean close: the session's end says goodbye (see protocol.Bye)."""
        self._round = 0
        """The newest round (Heartbeat.round) the primary sent on this connection."""
        self._ssl = client_context(
            str(config.tls_ca) if config.tls_ca else None, tls=config.tls_ca is not None
        )

    # ---- replica files ------------------------------------------------------------------------

    def open_databases(self) -> None:
        (self.config.data_dir / "db").mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(exist_ok=True)
        for leftover in self.tmp.glob("recv-*"):
            leftover.unlink()
        for path in sorted((self.config.data_dir / "db").glob("*.db")):
            if DB_NAME.match(path.stem):
                self._replica(path.stem)

    def _replica(self, name: str) -> Replica:
        replica = self.replicas.get(name)
        if replica is None:
            if not DB_NAME.match(name):
                raise ProtocolError("primary sent a bad database name", db=name)
            # A node that was primary takes its file's position from its own txlog; a file
            # matching neither that nor its replica position holds commits no log knows, so
            # it is set aside (not overwritten) if a snapshot replaces it.
            replica = open_replica(self.config.data_dir, name, durable=self.config.replica_durable)
            self.replicas[name] = replica
            self.histories[name] = EpochHistory.load(history_path(self.config.data_dir, name))
            if replica.diverged is not None:
                self._diverged.add(name)
            log.info("replica.opened db=%s position=%s", name, replica.position)
        return replica

    def _set_aside(self, name: str, replica: Replica, why: str) -> Path:
        kept = set_aside(replica, self.config.data_dir / "diverged", why)
        # This node's own txlog (from its term as primary) holds the divergent records.
        logdir = self.config.data_dir / "txlog" / name
        if logdir.is_dir():
            shutil.move(str(logdir), str(kept.with_suffix(".txlog")))
            fsync_dir(kept.parent)  # the rename durable in both directories
            fsync_dir(logdir.parent)
        return kept

    def close(self) -> None:
        for replica in self.replicas.values():
            replica.close()
        self.replicas.clear()

    # ---- connection loop ----------------------------------------------------------------------

    async def run(self) -> None:
        """Stay connected to the primary until cancelled."""
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except ApplyFailed as exc:
                self.stats.error(exc.cause)
                self.upstream.last_error = str(exc)
                log.error("replica.apply_failed error=%r", self.upstream.last_error)
            except (PeerRefusedError, StaleEpochError) as exc:
                self.stats.error(exc)
                self.upstream.last_error = first_line(exc)
                log.error(
                    "replication.refused primary=%s error=%r", self.upstream.address, exc.message
                )
            except ssl.SSLError as exc:
                self.stats.error(exc)
                self.upstream.last_error = f"TLS: {exc}"
                log.error(
                    "replication.tls_failed primary=%s error=%r hint=%r",
                    self.upstream.address, str(exc), "check tls_ca against the primary's certificate",
                )  # fmt: skip
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ProtocolError) as exc:
                if isinstance(exc, ProtocolError):
                    self.stats.error(exc)
                error = first_line(exc)
                # While the primary stays down, say so once, not at every retry.
                log.log(
                    logging.DEBUG if error == self.upstream.last_error else logging.INFO,
                    "replication.disconnected primary=%s error=%r", self.upstream.address, error,
                )  # fmt: skip
                self.upstream.last_error = error
            except LiteclusterError as exc:
                self.stats.error(exc)
                self.upstream.last_error = first_line(exc)
                log.error("replication.failed primary=%s error=%r", self.upstream.address, str(exc))
            except Exception as exc:  # a bug costs one connection, never the replica
                self.stats.error(exc)
                self.upstream.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("replication.failed primary=%s", self.upstream.address)
            self.upstream.state = "disconnected"
            self.stats.reconnects += 1
            attempt = 0 if time.monotonic() - started > 10 * self.config.reconnect_max else attempt
            delay = min(self.config.reconnect_max, self.config.reconnect_min * 2**attempt)
            attempt += 1
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                # A request to stop that arrived while the session was waiting for its tasks
                # was absorbed there; it must still end this loop (a node stuck here never
                # finished its SIGTERM). Nothing else cancels this task, so this is a stop.
                raise asyncio.CancelledError
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _session(self) -> None:
        assert self.config.primary is not None
        host, port = self.config.primary.host, self.config.primary.port
        self.upstream.state = "connecting"
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
        # that arrives as the awaited operation completes, or turn a timeout into one.
        async with asyncio.timeout(self.config.peer_timeout):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=self._ssl, server_hostname=host if self._ssl else None
            )
        tasks: list[asyncio.Task[None]] = []
        try:
            positions = {name: Pos.of(r.position) for name, r in self.replicas.items()}
            hello = Hello(
                PROTOCOL_VERSION, self.config.cluster_id, self.node_id, self.tokens.current, positions,
                self.http, kind=self.kind, durable=self.config.replica_durable,
                nofailover=self.config.nofailover, user=self.user,
            )  # fmt: skip
            writer.write(encode_message(hello))
            await writer.drain()
            async with asyncio.timeout(self.config.peer_timeout):
                msg = await read_message(reader)
            if isinstance(msg, Refuse):
                raise PeerRefusedError(
                    f"primary refused the connection: {msg.reason}", code=msg.code
                )
            if not isinstance(msg, Welcome):
                raise ProtocolError("expected WELCOME", got=type(msg).__name__)
            self.state.see_epoch(msg.epoch)
            up = self.upstream
            up.node_id, up.http, up.epoch = msg.node_id, msg.http, msg.epoch
            up.state, up.connected_at, up.last_message_at = "streaming", time.time(), time.time()
            up.last_error = ""
            log.info(
                "replication.connected primary=%s primary_id=%s epoch=%d databases=%s",
                up.address, msg.node_id, msg.epoch, ",".join(msg.databases),
            )  # fmt: skip
            for name in msg.databases:
                self._replica(name)
            self._round = 0  # rounds are numbered per connection (per primary term)
            tasks.append(asyncio.create_task(self._keepalive(writer)))
            await read_in_own_task(lambda failed: self._receive(reader, writer, tasks, failed))
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            if self.leaving:
                writer.write(encode_message(Bye()))
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _receive(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        tasks: list[asyncio.Task[None]],
        failed: Callable[[asyncio.Task[None]], None],
    ) -> None:
        incoming: dict[str, _Incoming] = {}
        queues: dict[str, asyncio.Queue[object]] = {}

        def queue(db: str) -> asyncio.Queue[object]:
            q = queues.get(db)
            if q is None:
                self._replica(db)
                q = queues[db] = asyncio.Queue(QUEUE_FRAMES)
                task = asyncio.create_task(self._apply_loop(db, q, writer))
                task.add_done_callback(failed)
                tasks.append(task)
            return q

        try:
            while True:
                for task in tasks:
                    if task.done():
                        exc = task.exception()
                        raise session_error(exc) if exc else ProtocolError("apply loop ended")
                async with asyncio.timeout(self.config.peer_timeout):
                    msg = await read_message(reader)
                self.upstream.last_message_at = time.time()
                await self._dispatch(msg, queue, incoming, writer)
        finally:
            for inc in incoming.values():
                inc.file.close()
                inc.path.unlink(missing_ok=True)

    async def _dispatch(
        self,
        msg: Message,
        queue: Callable[[str], asyncio.Queue[object]],
        incoming: dict[str, _Incoming],
        writer: asyncio.StreamWriter,
    ) -> None:
        if isinstance(msg, Records):
            await queue(msg.db).put(msg)
        elif isinstance(msg, Heartbeat):
            if msg.epoch != self.upstream.epoch:
                self.state.see_epoch(msg.epoch)
                self.upstream.epoch = msg.epoch
            self.upstream.heads = dict(msg.heads)
            if msg.round > self._round:
                # Answered at once: the primary's linearizable read waits for it.
                self._round = msg.round
                await self._ack(writer, list(self.replicas))
        elif isinstance(msg, SnapshotStart):
            queue(msg.db)
            if msg.db in incoming or msg.size < 0:
                raise ProtocolError("unexpected snapshot start", db=msg.db)
            path = self.tmp / f"recv-{msg.db}-{secrets.token_hex(4)}"
            spool = open(path, "wb")  # noqa: SIM115 (closed at SnapshotEnd or when the session ends)
            incoming[msg.db] = _Incoming(
                msg.db, msg.position.position(), msg.size, path, spool,
                diverged=msg.diverged, unverified=msg.unverified, history=msg.history,
            )  # fmt: skip
            self.stats.snapshot_bytes_expected = msg.size
            self.stats.snapshot_bytes_received = 0
            log.info(
                "snapshot.receiving db=%s position=%s bytes=%d",
                msg.db,
                msg.position.position(),
                msg.size,
            )
        elif isinstance(msg, SnapshotChunk):
            inc = incoming.get(msg.db)
            if inc is None or inc.received + len(msg.data) > inc.size:
                raise ProtocolError("unexpected snapshot chunk", db=msg.db)
            # In a thread: with gigabytes being written, the kernel may hold a write back for
            # a long while (dirty page throttling), and the loop serves reads and heartbeats.
            await in_thread(inc.file.write, msg.data)
            inc.received += len(msg.data)
            self.stats.snapshot_bytes_received = inc.received
        elif isinstance(msg, SnapshotEnd):
            inc = incoming.pop(msg.db, None)
            if inc is None or inc.received != inc.size:
                raise ProtocolError("snapshot ended early", db=msg.db)
            inc.file.close()
            await queue(msg.db).put(inc)
        else:
            raise ProtocolError("unexpected message from the primary", got=type(msg).__name__)

    async def _keepalive(self, writer: asyncio.StreamWriter) -> None:
        """Positions every heartbeat interval, so the primary sees a live replica when idle."""
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            await self._ack(writer, list(self.replicas))

    async def _ack(self, writer: asyncio.StreamWriter, dbs: list[str]) -> None:
        positions = {db: Pos.of(self.replicas[db].position) for db in dbs}
        await self._send(writer, Ack(positions, self._round))

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, msg: Message) -> None:
        if writer.is_closing():
            # uvloop raises RuntimeError ("the handler is closed") for a write to a closed
            # transport: say what it is, a lost connection.
            raise ConnectionResetError("connection to the primary lost")
        writer.write(encode_message(msg))
        await writer.drain()

    # ---- applying -------------------------------------------------------------------------------

    async def _apply_loop(
        self, db: str, q: asyncio.Queue[object], writer: asyncio.StreamWriter
    ) -> None:
        replica = self.replicas[db]
        waiting_snapshot = False
        while True:
            items = [await q.get()]
            while not q.empty() and len(items) < QUEUE_FRAMES:
                items.append(q.get_nowait())
            batch: list[bytes] = []
            for item in items:
                if isinstance(item, _Incoming):
                    if batch and not waiting_snapshot:
                        waiting_snapshot = await self._apply_records(db, replica, batch, writer)
                    batch = []
                    await self._install(db, replica, item)
                    waiting_snapshot = False
                    await self._ack(writer, [db])
                elif isinstance(item, Records) and not waiting_snapshot:
                    batch.append(item.data)
            if batch and not waiting_snapshot:
                waiting_snapshot = await self._apply_records(db, replica, batch, writer)

    async def _apply_records(
        self, db: str, replica: Replica, batch: list[bytes], writer: asyncio.StreamWriter
    ) -> bool:
        """Apply; True when the replica cannot follow and asked for a snapshot."""

        applied_notes: list[tuple[int, list[bytes]]] = []
        history = self.histories[db]

        def work() -> tuple[int, int]:
            records: list[TxRecord] = []
            for data in batch:
                records.extend(split_records(data, where=f"stream:{db}"))
            # Skip what is already applied (a reconnect may resend the tail).
            have = replica.position.txid
            records = [r for r in records if r.txid > have]
            for i in range(0, len(records), BATCH_RECORDS):
                chunk = records[i : i + BATCH_RECORDS]
                history.before_apply(chunk)  # durable first: a promotion may rely on it
                replica.apply(chunk)
                if self.on_annotations:
                    applied_notes.extend(
                        (r.txid, notes)
                        for r in chunk
                        if (notes := decode_annotations(r.annotations))
                    )
            return len(records), sum(len(d) for d in batch)

        before = replica.position
        try:
            n, size = await in_thread(work)
        except (ReplicaError, SnapshotError) as exc:
            # Divergence, a log restart (RESET), a record that does not follow: re-snapshot.
            self.stats.error(exc)
            if isinstance(exc, DivergenceError):
                self._diverged.add(db)
            log.warning("replica.needs_snapshot db=%s reason=%r", db, exc.message)
            await self._send(writer, NeedSnapshot(db, exc.message))
            return True
        finally:
            # Whatever the end (a failure, the session's end): what was applied is visible.
            self._announce(db, applied_notes)
            if replica.position != before:
                for listener in self.on_apply:
                    listener(db, replica.position)
        self.stats.records_applied += n
        self.stats.bytes_applied += size
        await self._ack(writer, [db])
        return False

    def _announce(self, db: str, notes: list[tuple[int, list[bytes]]]) -> None:
        for txid, record_notes in notes:
            for callback in self.on_annotations:
                try:
                    callback(db, txid, record_notes)
                except Exception:  # a listener's bug must not stop replication
                    log.exception("replica.on_annotations_failed db=%s", db)

    async def _install(self, db: str, replica: Replica, inc: _Incoming) -> None:
        started = time.monotonic()
        history = self.histories[db]
        # Forgotten while the file is replaced: a crash in between leaves an unknown history
        # (a careful primary later), never the old file's history on the new file.
        await in_thread(history.replace, [])
        if inc.diverged or db in self._diverged:
            # Known divergence (here or by the primary) wins over "could not be checked".
            unverified = inc.unverified and db not in self._diverged
            self._diverged.discard(db)
            up = f"the primary of epoch {self.upstream.epoch} ({self.upstream.address})"
            why = (
                f"position older than the txlog of {up}: not known to be on its history"
                if unverified
                else f"diverged from {up}"
            )
            kept = await in_thread(self._set_aside, db, replica, why)
            if unverified:
                # Likely clean (a replica that lagged across several failovers): said as such,
                # so that an operator does not go looking for lost writes that may not exist.
                log.warning(
                    "replica.set_aside_unverified db=%s position=%s kept=%s: the primary could "
                    "not check this position against its history (older than its txlog); the "
                    "copy was kept in case it holds writes no other node has, and may be clean",
                    db, replica.position, kept,
                )  # fmt: skip
            else:
                log.warning(
                    "replica.diverged db=%s position=%s kept=%s: writes no other node has were "
                    "set aside before installing the primary's snapshot", db, replica.position,
                    kept,
                )  # fmt: skip
        try:
            pos = await in_thread(install_snapshot, replica, inc.path)
        finally:
            inc.path.unlink(missing_ok=True)
        await in_thread(history.replace, inc.history)
        self.stats.snapshots_installed += 1
        log.info(
            "snapshot.installed db=%s position=%s bytes=%d seconds=%.2f",
            db, pos, inc.size, time.monotonic() - started,
        )  # fmt: skip
        for listener in self.on_apply:
            listener(db, pos)

    def reach(self, db: str, position: Position) -> Reach:
        """Where ``position`` (epoch, txid) stands against this replica's copy of ``db``,
        judged by its epoch history (history.py)."""
        rep, history = self.replicas.get(db), self.histories.get(db)
        if rep is None or history is None:
            return Reach.REACHED if position.txid == 0 else Reach.NOT_YET
        return history.reach(position, rep.position.txid)

    def applied_txid(self, db: str) -> int:
        """The txid visible in this replica's file of ``db`` (0: no such database)."""
        rep = self.replicas.get(db)
        return rep.position.txid if rep else 0

    def frozen(self, db: str) -> AbstractContextManager[tuple[Position, Connection]] | None:
        """A read view of ``db`` at a known position (backups); None: no such database."""
        rep = self.replicas.get(db)
        return None if rep is None else rep.frozen()

    # ---- status ---------------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        return replica_status(self.replicas, self.upstream, self.stats)
