"""The primary's single writer per database, with group commit.

Requests from every client queue up; one thread takes as many as are waiting (up to
``max_group``) and runs them in ONE SQLite transaction, so they share one commit, one txlog
record and one txlog fsync. Each request runs inside its own savepoint (and each statement of a
non-transaction request inside its own), so a failing request is rolled back alone and the
others of the group still commit. After COMMIT the writer captures the commit itself (no wait
for capture's next poll) and answers every request of the group with the position it committed
at, once its record is durable.

Besides SQL, a request may be a *procedure*: a Python function run on the write connection
inside the request's savepoint (the key/value commands: read-modify-write logic that must see
and change the database atomically). It returns a value for the caller and annotation bytes
(the keys it changed, messages to publish); the group's annotations travel with its txlog
record (a msgpack list, one entry per procedure that returned some), so replicas learn what
changed without diffing pages.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from litecluster.engine.capture.capture import Capture, committed_not_durable
from litecluster.engine.position import Position
from litecluster.engine.sqlite import Connection, DatabaseError
from litecluster.errors import LiteclusterError, NotPrimaryError
from litecluster.errors import WriteError as WriteError  # re-exported: defined in the tree
from litecluster.replication.primary.sandbox import sandbox
from litecluster.replication.primary.sqlexec import (
    Result,
    Statement,
    refusal,
    run_statement,
)

log = logging.getLogger("litecluster.writer")


@dataclass
class WriterConfig:
    max_group: int = 512
    statement_timeout: float = 10.0
    allow_pragmas: frozenset[str] = frozenset()
    """PRAGMAs an operator allows in requests besides the sandbox's read-only ones."""


Procedure = Callable[[Connection], tuple[Any, bytes]]
"""Runs inside the writer's transaction; returns (value for the caller, annotation bytes)."""


@dataclass
class WriteOutcome:
    results: list[Result]
    position: Position
    group_size: int
    value: Any = None
    """What a procedure returned."""


def decode_annotations(raw: bytes) -> list[bytes]:
    """The per-procedure annotations of a record written by the writer (empty for others)."""
    if not raw:
        return []
    try:
        got = msgspec.msgpack.decode(raw, type=list[bytes])
    except msgspec.DecodeError:
        return []  # a record annotated by something else: not ours to interpret
    return got


@dataclass
class _Request:
    statements: list[Statement]
    transaction: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[WriteOutcome]
    results: list[Result] = field(default_factory=list)
    procedure: Procedure | None = None
    value: Any = None
    annotation: bytes = b""
    error: BaseException | None = None


class Writer:
    """One thread that owns the write connection of one primary database."""

    def __init__(self, name: str, capture: Capture, config: WriterConfig | None = None) -> None:
        self.name = name
        self.capture = capture
        self.config = config or WriterConfig()
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        # The txlog is the durability point: a request is answered only after capture made
        # its record durable, so the WAL fsync per commit is not needed (see connect_writer).
        self.conn: Connection = capture.connect_writer("NORMAL")
        self.sandbox = sandbox(self.conn, read_only=False, allow_pragmas=self.config.allow_pragmas)
        self.group_sizes: Counter[int] = Counter()
        self.disk_full = False
        """Set when a group failed for lack of disk space (the node then steps down)."""
        self.may_commit: Callable[[], bool] = lambda: True
        """Checked under the write lock before each COMMIT: a deposed primary commits nothing."""
        self.on_commit: list[Callable[[Position, list[bytes]], None]] = []
        """Called in the writer thread after each group whose procedures returned annotations
        is durable, before the next group runs (so state derived from them, such as the last
        change of each key, is current when the next procedure looks)."""
        self._deadline = 0.0
        self.conn.set_progress_handler(self._interrupt, 10_000)
        self._thread = threading.Thread(target=self._run, name=f"writer:{name}", daemon=True)
        self._thread.start()

    def _interrupt(self) -> int:
        return 1 if time.monotonic() > self._deadline else 0

    async def submit(self, statements: list[Statement], *, transaction: bool) -> WriteOutcome:
        loop = asyncio.get_running_loop()
        req = _Request(statements, transaction, loop, loop.create_future())
        self._queue.put(req)
        return await req.future

    async def call(self, procedure: Procedure) -> WriteOutcome:
        """Run ``procedure`` in the next group's transaction; its exception (raised after its
        savepoint was rolled back) fails this request alone."""
        loop = asyncio.get_running_loop()
        req = _Request([], True, loop, loop.create_future(), procedure=procedure)
        self._queue.put(req)
        return await req.future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self.conn.close()

    # ---- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            while len(group) < self.config.max_group:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # stop after this group
                    break
                group.append(nxt)
            try:
                position = self._commit(group)
            except Exception as exc:
                full = _disk_full(exc)
                err = exc if isinstance(exc, LiteclusterError) else WriteError(
                    f"the write failed and was not acknowledged: {exc}",
                    db=self.name, disk_full=full,
                    hint="free disk space on the primary" if full else "retry the request",
                )  # fmt: skip
                if full:
                    self.disk_full = True
                log.error(
                    "writer.group_failed db=%s size=%d error=%r", self.name, len(group), str(exc)
                )
                for req in group:
                    req.loop.call_soon_threadsafe(_fail, req.future, err)
                continue
            self.group_sizes[len(group)] += 1
            notes = [req.annotation for req in group if req.annotation and req.error is None]
            if notes:
                for callback in self.on_commit:
                    try:
                        callback(position, notes)
                    except Exception:  # a listener's bug must not stop the writer
                        log.exception("writer.on_commit_failed db=%s", self.name)
            for req in group:
                if req.error is not None:
                    req.loop.call_soon_threadsafe(_fail, req.future, req.error)
                    continue
                outcome = WriteOutcome(req.results, position, len(group), req.value)
                req.loop.call_soon_threadsafe(_resolve, req.future, outcome)

    def _commit(self, group: list[_Request]) -> Position:
        with self.capture.writer_lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for req in group:
                    req.results = self._run_request(req)
                if not self.may_commit():
                    raise NotPrimaryError("this node is no longer the primary", db=self.name)
                notes = [req.annotation for req in group if req.annotation and req.error is None]
                if notes:
                    self.capture.commit(self.conn, msgspec.msgpack.encode(notes))
                    return self.capture.published
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
        # Capture the commit now (durable when poll returns) instead of at the next poll.
        try:
            self.capture.poll()
        except Exception as exc:
            raise committed_not_durable(exc, self.name) from exc
        return self.capture.published

    def _run_request(self, req: _Request) -> list[Result]:
        self._deadline = time.monotonic() + self.config.statement_timeout
        if req.procedure is not None:
            self._run_procedure(req, req.procedure)
            return []
        if req.transaction:
            return self._in_savepoint("req", req.statements, all_or_nothing=True)
        out: list[Result] = []
        for stmt in req.statements:
            out.extend(self._in_savepoint("stmt", [stmt], all_or_nothing=True))
        return out

    def _run_procedure(self, req: _Request, procedure: Procedure) -> None:
        self.conn.execute("SAVEPOINT proc")
        try:
            req.value, req.annotation = procedure(self.conn)
        except Exception as exc:
            if _disk_full(exc):
                raise  # the whole group fails, and the node steps down (see _run)
            self.conn.execute("ROLLBACK TO proc")
            req.error = exc
        if not self.conn.in_transaction:  # defensive: never lose the group
            raise WriteError("a procedure ended the group transaction", db=self.name)
        self.conn.execute("RELEASE proc")

    def _in_savepoint(
        self, name: str, statements: list[Statement], *, all_or_nothing: bool
    ) -> list[Result]:
        self.conn.execute(f"SAVEPOINT {name}")
        results: list[Result] = []
        failed = False
        for stmt in statements:
            refused = refusal(stmt.sql)
            if refused is not None:
                res = refused
            else:
                res = run_statement(self.conn, stmt, self.sandbox)
                if not self.conn.in_transaction:  # defensive: never lose the group
                    raise WriteError("a statement ended the group transaction", sql=stmt.sql)
                if res.error == "interrupted":
                    res.error = f"statement timeout ({self.config.statement_timeout:g} s)"
            results.append(res)
            if res.error is not None:
                failed = True
                break
        try:
            if failed and all_or_nothing:
                self.conn.execute(f"ROLLBACK TO {name}")
            self.conn.execute(f"RELEASE {name}")
        except DatabaseError as exc:
            raise WriteError(f"savepoint failed: {exc}", db=self.name) from exc
        return results


def _disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return "disk is full" in str(exc) or "No space left" in str(exc)


def _resolve(fut: asyncio.Future[WriteOutcome], outcome: WriteOutcome) -> None:
    if not fut.done():
        fut.set_result(outcome)


def _fail(fut: asyncio.Future[WriteOutcome], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
