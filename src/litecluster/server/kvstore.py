"""The key/value store of a node: the :mod:`litecluster.kv` commands run on this node's files.

- Reads run on the local file (a replica's, or the primary's) through a
  :class:`~litecluster.kv.reader.LocalReader`, one read transaction per request, so a
  multi-key read sees one state.
- Writes run on the primary as writer procedures (each command in its own savepoint, a MULTI
  block in one transaction). A replica forwards them to the primary (``POST /kv/exec``) and
  answers once it has applied the result itself, so its client reads its own write.
- Every write procedure annotates its record with what changed (keyspace events, flushed DB
  indexes, published messages). Listeners get them on every node once the change is visible
  locally: pub/sub delivery, keyspace notifications and ``watch`` callbacks all come from it.
- WATCH: the primary remembers the txid of the last change of each key (bounded; older
  changes count as "at the floor"), so an EXEC forwarded with the position its client watched
  from is aborted when a watched key changed after it, whichever node served the WATCH.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec

from litecluster.engine.position import Position
from litecluster.engine.sqlite import Connection, DatabaseError
from litecluster.errors import AtomicAbortedError as AtomicAbortedError  # re-exported
from litecluster.errors import KvRequestError as KvRequestError  # re-exported
from litecluster.errors import LiteclusterError, NotPrimaryError, PermissionDeniedError
from litecluster.ha.roles import HeadDb
from litecluster.kv.commands import classify, run
from litecluster.kv.db import Ctx, expire_cycle
from litecluster.kv.reader import LocalReader
from litecluster.kv.registry import Kind
from litecluster.kv.reply import Err, Reply, dumps, loads
from litecluster.kv.schema import ensure_schema
from litecluster.kv.wire import Changes as Changes  # re-exported for pubsub
from litecluster.kv.wire import ExecReply, ExecRequest, decode_changes, decode_reply, decode_request
from litecluster.kv.wire import encode as _encode
from litecluster.server.credentials import ANYONE, Identity
from litecluster.server.forward import NOT_VISIBLE_WARNING, Forwarder, refusal, transport_failure
from litecluster.server.ports import Local
from litecluster.server.strongread import under_lease

log = logging.getLogger("litecluster.kvstore")


def execute(ctx: Ctx, args: list[bytes]) -> Reply:
    """Run one command in its savepoint; a bug in a command costs its client an error reply,
    not the connection, the group or the node (SQLite errors still propagate: disk full, I/O)."""
    try:
        return run(ctx, args)
    except DatabaseError:
        raise
    except Exception as exc:
        name = args[0].decode("utf-8", "replace").lower()
        log.exception("kv.command_failed command=%s", name)
        return Err(f"ERR internal error in '{name}' ({type(exc).__name__}); see the node's log")


Key = tuple[int, bytes]
"""A key in a Redis DB index."""
READ_LEVELS = ("none", "strong", "linearizable")
"""Key/value read levels (docs/kv.md); RESP clients pick theirs with ``CLIENT READLEVEL``."""
PENDING_TXID = 1 << 62
"""The version of a key changed by a procedure whose group has not committed yet."""


def _require(caller: Identity, perm: str) -> None:
    if not caller.may(perm):
        raise PermissionDeniedError(f"user {caller.name} lacks the {perm} permission",
                                    user=caller.name, permission=perm)  # fmt: skip


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class KeyVersions:
    """The txid of the last change of each key, on the primary (bounded)."""

    def __init__(self, floor: int, capacity: int = 100_000) -> None:
        self._last: OrderedDict[Key, int] = OrderedDict()
        self._flushed: dict[int, int] = {}
        self.floor = floor
        """Changes at or before this txid are not tracked: a watch older than it aborts."""
        self.capacity = capacity
        self._lock = threading.Lock()

    def record(self, txid: int, changes: Changes) -> None:
        with self._lock:
            for key in changes.changed_keys():
                self._last[key] = txid
                self._last.move_to_end(key)
            for db in changes.flushed:
                self._flushed[db] = txid
            while len(self._last) > self.capacity:
                _, old = self._last.popitem(last=False)
                if old != PENDING_TXID:
                    self.floor = max(self.floor, old)

    def changed_since(self, keys: list[Key], txid: int) -> bool:
        with self._lock:
            if txid < self.floor:
                return True
            return any(
                self._last.get(k, 0) > txid or self._flushed.get(k[0], 0) > txid for k in keys
            )


@dataclass
class Request:
    """Commands to run on the primary in one transaction, with what EXEC watched."""

    commands: list[tuple[int, list[bytes]]]
    watch: list[Key] = field(default_factory=list)
    since: int = 0
    """The txid the watched keys were read at."""
    publish: list[tuple[bytes, bytes]] = field(default_factory=list)
    all_or_nothing: bool = False
    """Roll every command back when one fails (the Python client's atomic blocks), instead of
    Redis's EXEC semantics (the others still apply)."""
    caller: str | None = field(default=None, repr=False)
    """The caller's ``Authorization``, sent on when a replica forwards (None: the node's
    token; see :mod:`litecluster.server.forward`)."""


class CommittingPrimary(Protocol):
    """The primary role as the store follows its commits (``primary.Primary`` fits)."""

    on_commit: list[Callable[[str, Position, list[bytes]], None]]
    """Called in the writer's thread with (database, position, annotations) per commit."""

    @property
    def dbs(self) -> Mapping[str, HeadDb]: ...


class AnnotatingReplica(Protocol):
    """The replica role as the store follows what it applies (``follower.Follower`` fits)."""

    on_annotations: list[Callable[[str, int, list[bytes]], None]]
    """Called on the loop with (database, txid, annotations) once a record is visible."""


class KvStore:
    """The key/value store of one node: database ``db_name``, whose file here is ``path``.

    ``local`` says where writes go and what is applied here; ``node`` is what the forward
    step of a replica reads."""

    def __init__(self, db_name: str, path: Path, local: Local, forwarder: Forwarder) -> None:
        self.local = local
        self.forwarder = forwarder
        self.db_name = db_name
        self.path = path
        self.listeners: list[Callable[[Changes], None]] = []
        """Called on the loop with each change once it is visible in this node's file."""
        self.versions = KeyVersions(0)
        self.reader = LocalReader(self.path)
        self._schema_ready = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- wiring -------------------------------------------------------------------------------

    def attach(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        primary: CommittingPrimary | None = None,
        replica: AnnotatingReplica | None = None,
    ) -> None:
        """Follow the node's new role, ``primary`` or ``replica`` (called after each role
        change)."""
        self._loop = loop
        if primary is not None:
            self._schema_ready = False
            db = primary.dbs.get(self.db_name)
            self.versions = KeyVersions(db.head if db is not None else 0)
            primary.on_commit.append(self._committed)
        if replica is not None:
            replica.on_annotations.append(self._applied)

    def _committed(self, db: str, position: Position, notes: list[bytes]) -> None:
        """Writer thread: track versions at once, deliver on the loop."""
        if db != self.db_name:
            return
        # Notes come only from procedures that succeeded, each of which ran on the tables
        # (creating them if needed) in the transaction now committed.
        self._schema_ready = True
        decoded = [c for c in map(decode_changes, notes) if c is not None]
        for changes in decoded:
            self.versions.record(position.txid, changes)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._deliver, decoded)

    def _applied(self, db: str, txid: int, notes: list[bytes]) -> None:
        if db == self.db_name:
            self._deliver([c for c in map(decode_changes, notes) if c is not None])

    def _deliver(self, decoded: list[Changes]) -> None:
        for changes in decoded:
            for listener in list(self.listeners):
                try:
                    listener(changes)
                except Exception:  # one subscriber's bug must not silence the others
                    log.exception("kv.listener_failed")

    # ---- reads --------------------------------------------------------------------------------

    async def read(self, commands: list[tuple[int, list[bytes]]], level: str = "none",
                   caller: str | None = None) -> list[Reply]:  # fmt: skip
        """Run read-only commands in one read transaction, at ``level`` (docs/kv.md):

        - on the primary, on its file, answered only under its lease (checked after the read
          ran; ``linearizable`` also confirmed with the coordinator), whatever the level: a
          primary paused past its lease must not answer from its stale copy, and the check
          is a clock comparison; ``strong`` and ``linearizable`` also wait, in synchronous
          mode, until the sync replicas hold what the read saw (server/strongread.py);
        - elsewhere, ``none`` on this node's file, ``strong`` and ``linearizable`` forwarded to
          the primary.

        A refusal raises a retryable :class:`~litecluster.errors.UnavailableError`."""
        if self.local.primary is not None:

            async def local() -> list[Reply]:
                return self.read_here(commands)

            # A none read is checked against the lease too (a paused primary must not answer
            # from its stale copy), but not held until the sync replicas have what it read.
            strong = level if level != "none" else "strong"
            return await under_lease(self.local, strong, self.db_name, local,
                                     replicated=level != "none")  # fmt: skip
        if level == "none":
            return self.read_here(commands)
        return await self._forward_read(commands, level, caller)

    def read_here(self, commands: list[tuple[int, list[bytes]]]) -> list[Reply]:
        """Run read-only commands on the local file in one read transaction, unchecked."""
        return self.reader.read(commands, now_ms())

    def keyspace(self) -> dict[int, tuple[int, int]]:
        """Keys and keys with an expiry per DB index (INFO keyspace; expired keys not yet
        deleted are counted, as Redis does)."""
        rows = self.reader.select("SELECT db, count(*), count(expire_at) FROM kv_keys GROUP BY db")
        return {int(db): (int(n), int(e)) for db, n, e in rows}

    def applied_txid(self) -> int:
        return self.local.applied_txid(self.db_name)

    # ---- writes -------------------------------------------------------------------------------

    async def write(self, request: Request) -> list[Reply] | None:
        """Run ``request`` on the primary (forwarding from a replica); None when EXEC was
        aborted by a watched key. A forwarded write this node had not applied when the wait
        for it ended is still answered with its replies (the forwarder counts and logs it):
        RESP has no place for a warning, and the replies (INCR's value, EXEC's results) are
        the client's only copy of what the write did."""
        return (await self.write_at(request))[0]

    async def write_at(self, request: Request) -> tuple[list[Reply] | None, Position, str]:
        """Like :meth:`write`, with the position (epoch, txid) at which the write is visible
        on this node and the forwarder's warning (empty, or the write is not visible here
        yet)."""
        if self.local.primary is not None:
            replies, position = await self.run_on_primary(request)
            return replies, position, ""
        return await self._forward(request)

    async def run_on_primary(self, request: Request) -> tuple[list[Reply] | None, Position]:
        primary = self.local.primary
        if primary is None:
            raise NotPrimaryError("this node is not the primary")
        outcome = await primary.call(self.db_name, self._procedure(request))
        replies: list[Reply] | None = outcome.value
        return replies, outcome.position

    def _procedure(self, request: Request) -> Callable[[Connection], tuple[Any, bytes]]:
        def run(conn: Connection) -> tuple[Any, bytes]:
            if not self._schema_ready:
                # Ready only once a commit carried it (see _committed): this request's savepoint
                # or the whole group may still roll the new tables back.
                ensure_schema(conn)
            if request.watch and self.versions.changed_since(request.watch, request.since):
                return None, b""
            now = now_ms()
            events: list[tuple[str, int, bytes]] = []
            flushed: list[int] = []
            replies: list[Reply] = []
            for db, args in request.commands:
                ctx = Ctx(conn, db, now, events, flushed)
                reply = execute(ctx, args)
                if request.all_or_nothing and isinstance(reply, Err):
                    raise AtomicAbortedError(f"nothing was applied: {reply.text}",
                                             command=args[0].decode("utf-8", "replace"))  # fmt: skip
                replies.append(reply)
            if request.publish:
                # A message must travel in a record, and a record needs a change to a page.
                conn.execute(
                    "INSERT INTO kv_meta(name, value) VALUES('published', 1)"
                    " ON CONFLICT(name) DO UPDATE SET value = value + 1"
                )
            if not (events or flushed or request.publish):
                return replies, b""
            changes = Changes(events, flushed, request.publish)
            # Until the group commits (and _committed records the real txid), a later EXEC
            # of the same group must see these keys as changed after any watch.
            self.versions.record(PENDING_TXID, changes)
            return replies, _encode(changes)

        return run

    async def _forward(self, request: Request) -> tuple[list[Reply] | None, Position, str]:
        """Run ``request`` on the primary through the node's forwarder; the replies, the
        primary's position of the write, and a warning when this node had not applied the
        write when the wait for it ended (raises ExcludedByNewerHistoryError when this node's
        history excludes it)."""
        forwarder = self.forwarder
        body = _encode(ExecRequest(request.commands, request.watch, request.since, request.publish,
                             request.all_or_nothing))  # fmt: skip
        got = await forwarder.post("/kv/exec", write=True, data=body, authorization=request.caller,
                                   headers={"Content-Type": "application/msgpack"})  # fmt: skip
        if got.status != 200:
            raise refusal(got.status, got.body, request_error=KvRequestError)
        try:
            reply = decode_reply(got.body)
        except msgspec.DecodeError as exc:  # the primary answered: the write may have applied
            raise transport_failure(exc, write=True, primary=got.primary) from None
        # Answer once this node has the write too: its client then reads what it wrote here.
        position = Position(reply.epoch, reply.txid)
        visible = await forwarder.settle(self.db_name, position)
        replies = None if reply.replies is None else [loads(r) for r in reply.replies]
        return replies, position, "" if visible else NOT_VISIBLE_WARNING

    async def _forward_read(self, commands: list[tuple[int, list[bytes]]], level: str,
                            caller: str | None) -> list[Reply]:  # fmt: skip
        """A strong or linearizable read sent to the primary, which answers it under its
        lease; a failure is retryable (a read changes nothing)."""
        body = _encode(ExecRequest(commands, [], 0, [], False, level))
        got = await self.forwarder.post("/kv/exec", write=False, data=body, authorization=caller,
                                        headers={"Content-Type": "application/msgpack"})  # fmt: skip
        if got.status != 200:
            raise refusal(got.status, got.body, request_error=KvRequestError)
        try:
            reply = decode_reply(got.body)
        except msgspec.DecodeError as exc:
            raise transport_failure(exc, write=False, primary=got.primary) from None
        if reply.replies is None or len(reply.replies) != len(commands):
            raise transport_failure(ValueError("reply does not match the request"), write=False,
                                    primary=got.primary)  # fmt: skip
        return [loads(r) for r in reply.replies]

    async def serve(self, body: bytes, caller: Identity = ANYONE) -> bytes:
        """``POST /kv/exec`` (msgpack): read-only requests run on this node's file; writes
        run on the primary (this node, or forwarded by it) and answer once visible here.
        Replicas forward their clients' writes with it; the Python client sends both.
        ``caller`` needs ``query`` for a read and ``execute`` for a write."""
        try:
            wire = decode_request(body)
        except msgspec.DecodeError as exc:
            raise KvRequestError(f"malformed key/value request: {exc}") from None
        if not wire.commands and not wire.publish:
            raise KvRequestError("a key/value request needs commands")
        if any(not args or not isinstance(db, int) or db < 0 for db, args in wire.commands):
            raise KvRequestError("every command needs a DB index >= 0 and a name")
        level = wire.level or "none"
        if level not in READ_LEVELS:
            raise KvRequestError("level must be none, strong or linearizable", value=level)
        request = Request(wire.commands, [(db, k) for db, k in wire.watch], wire.since,
                          wire.publish, wire.all_or_nothing)  # fmt: skip
        if (
            not request.watch
            and not request.publish
            and all(classify(args) is Kind.READ for _, args in request.commands)
        ):
            _require(caller, "query")
            replies: list[Reply] | None = await self.read(request.commands, level, caller.forward)
            position, warning = Position(self.local.epoch, self.applied_txid()), ""
        else:
            _require(caller, "execute")
            request.caller = caller.forward
            # The write's own epoch: the client's embedded replica judges the txid by it.
            replies, position, warning = await self.write_at(request)
        encoded = None if replies is None else [dumps(r) for r in replies]
        return _encode(ExecReply(encoded, position.txid, position.epoch, warning))

    # ---- expiry -------------------------------------------------------------------------------

    def _anything_expired(self, now: int) -> bool:
        rows = self.reader.select(
            "SELECT EXISTS(SELECT 1 FROM kv_keys WHERE expire_at IS NOT NULL AND expire_at < ?)"
            " OR EXISTS(SELECT 1 FROM kv_garbage)",
            (now,),
        )
        return bool(rows[0][0])

    async def expire_forever(self, interval: float = 0.1, limit: int = 200) -> None:
        """The primary's background deletion of expired keys: bounded work per round, as
        replicated deletions (readers never see expired keys anyway)."""
        while True:
            await asyncio.sleep(interval)
            primary = self.local.primary
            if primary is None or not self._anything_expired(now_ms()):
                continue

            def cycle(conn: Connection) -> tuple[Any, bytes]:
                gone = expire_cycle(conn, now_ms(), limit)
                if not gone:
                    return None, b""
                return None, _encode(Changes([("expired", db, key) for db, key in gone]))

            try:
                await primary.call(self.db_name, cycle)
            except LiteclusterError as exc:
                log.warning("kv.expire_cycle_failed error=%r", exc.message)

    def close(self) -> None:
        self.reader.close()
