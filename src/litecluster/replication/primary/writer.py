"""The primary's single writer per database, with group commit.

Requests from every client queue up; one thread takes as many as are waiting (up to
``max_group``) and runs them in ONE SQLite transaction, so they share one commit, one txlog
record and one txlog fsync. Each request runs inside its own savepoint (and each statement of a
non-transaction request inside its own), so a failing request is rolled back alone and the
others of the group still commit. After COMMIT the writer captures the commit itself (no wait
for capture's next poll) and answers every request of the group with the position it committed
at, once its record is durable.

One request never fails another:
- client SQL runs in the sandbox (:mod:`.sandbox`: no transaction control, no connection
  settings, no temporary objects), and every error of a statement is its result's ``error``;
- a statement may still end the whole transaction: SQLite rolls it back when a writing
  statement is interrupted (the statement timeout), on ``INSERT OR ROLLBACK`` and on
  ``RAISE(ROLLBACK)``. The writer then runs the group again from ``BEGIN``, that statement
  answered with its error instead of run (a request that keeps doing it is refused whole), so
  the others commit as if it had failed alone. Procedures must therefore be safe to run again
  before a commit (their effects on the database are rolled back; their return value is
  replaced);
- a group stops taking requests once it ran for ``group_seconds``: the rest wait for the next
  group, so requests that already ran are not held back by slow ones after them.
Only failures of the database itself (disk full, I/O errors) fail a group, and then nothing of
it was applied.

Besides SQL, a request may be a *procedure*: a Python function run on the write connection
inside the request's savepoint (the key/value commands: read-modify-write logic that must see
and change the database atomically). It returns a value for the caller and annotation bytes
(the keys it changed, messages to publish); the group's annotations travel with its txlog
record (a msgpack list, one entry per procedure that returned some), so replicas learn what
changed without diffing pages.

A SQL request may carry a :class:`~.applied.Once` (a queued write, which its node may send more
than once): the writer then runs it only if the database holds no record of the entry yet, and
records it in the same savepoint as its statements, so it is applied exactly once whatever the
retries.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
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
from litecluster.engine.sqlite import Connection
from litecluster.errors import (
    IndeterminateWriteError,
    LiteclusterError,
    NotPrimaryError,
    QueueBookkeepingError,
)
from litecluster.errors import WriteError as WriteError  # re-exported: defined in the tree
from litecluster.replication.primary.applied import DUPLICATE, Once
from litecluster.replication.primary.sandbox import sandbox
from litecluster.replication.primary.sqlexec import Result, ResultLimits, Statement, run_statement

log = logging.getLogger("litecluster.writer")


@dataclass
class WriterConfig:
    max_group: int = 512
    statement_timeout: float = 10.0
    """Seconds one request may run (all its statements); then it is interrupted and fails."""
    group_seconds: float = 0.2
    """A group takes no further request once it ran this long (the rest go to the next)."""
    allow_pragmas: frozenset[str] = frozenset()
    """PRAGMAs an operator allows in requests besides the sandbox's read-only ones."""
    limits: ResultLimits = field(default_factory=ResultLimits)
    """The most a statement's result (RETURNING) may hold; past it the statement fails and
    is rolled back."""


# A request whose statements ended the group transaction this many times is refused whole.
MAX_LOSSES = 3
# Errors after which SQLite rolled the transaction back because of the database, not of the
# statement: the group fails (nothing of it was applied) instead of being run again.
_DATABASE_FAILURES = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_NOMEM", "SQLITE_CORRUPT",
                      "SQLITE_NOTADB", "SQLITE_CANTOPEN", "SQLITE_PROTOCOL")  # fmt: skip


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
    poisoned: dict[int, str] = field(default_factory=dict)
    """Statements (by index) that ended the group transaction: answered with this error, not
    run again when the group runs again."""
    refused: BaseException | None = None
    """Set when the request (a procedure, or SQL too often) must not run again at all."""
    losses: int = 0
    once: Once | None = None

    def reset(self) -> None:
        self.results, self.value, self.annotation, self.error = [], None, b"", None


class _Lost(LiteclusterError):
    """The group transaction ended inside ``req``'s statement ``index`` (-1: its procedure).
    Internal to the writer (it reruns the group and never lets this escape), yet in the one
    tree like every error of the package."""

    def __init__(self, error: str | None, req: _Request | None = None, index: int = -1,
                 code: str | None = None, exc: BaseException | None = None) -> None:  # fmt: skip
        super().__init__(error or "the group transaction ended")
        self.req, self.index, self.error, self.code, self.exc = req, index, error, code, exc


class Writer:
    """One thread that owns the write connection of one primary database."""

    def __init__(self, name: str, capture: Capture, config: WriterConfig | None = None) -> None:
        self.name = name
        self.capture = capture
        self._path = str(capture.db_path)
        self.config = config or WriterConfig()
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        # The txlog is the durability point: a request is answered only after capture made
        # its record durable, so the WAL fsync per commit is not needed (see connect_writer).
        self.conn: Connection = capture.connect_writer("NORMAL")
        self.sandbox = sandbox(self.conn, read_only=False, allow_pragmas=self.config.allow_pragmas)
        self.replays = 0
        """Times a group ran again because a statement ended its transaction."""
        self.group_sizes: Counter[int] = Counter()
        self.disk_full = False
        """Set when a group failed for lack of disk space (the node then steps down)."""
        self.may_commit: Callable[[], bool] = lambda: True
        """Checked under the write lock before each COMMIT: a deposed primary commits nothing."""
        self.on_commit: list[Callable[[Position, list[bytes]], None]] = []
        """Called in the writer thread after each group whose procedures returned annotations
        is durable, before the next group runs (so state derived from them, such as the last
        change of each key, is current when the next procedure looks)."""
        self._deadline = math.inf
        """When the running request's time is up; infinite while the writer runs its own SQL
        (a COMMIT is never interrupted)."""
        self.conn.set_progress_handler(self._interrupt, 10_000)
        self._thread = threading.Thread(target=self._run, name=f"writer:{name}", daemon=True)
        self._thread.start()

    def _interrupt(self) -> int:
        return 1 if time.monotonic() > self._deadline else 0

    async def submit(
        self, statements: list[Statement], *, transaction: bool, once: Once | None = None
    ) -> WriteOutcome:
        """Run SQL in the next group; with ``once`` only if that entry is not applied yet
        (else nothing runs and the outcome's value is ``DUPLICATE``)."""
        loop = asyncio.get_running_loop()
        req = _Request(statements, transaction, loop, loop.create_future(), once=once)
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
        carried: list[_Request] = []
        while True:
            if not carried:
                first = self._queue.get()
                if first is None:
                    return
                carried = [first]
            group, carried = carried, []
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
                position, carried = self._commit(group)
                group = group[: len(group) - len(carried)]
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

    def _commit(self, group: list[_Request]) -> tuple[Position, list[_Request]]:
        """Run and commit the group; the position, and the requests left for the next group
        (the group's time ran out before them)."""
        with self.capture.writer_lock:
            ran = self._run_group(group)
            try:
                if not self.may_commit():
                    raise NotPrimaryError("this node is no longer the primary", db=self.name)
                notes = [r.annotation for r in group[:ran] if r.annotation and r.error is None]
                if notes:
                    self.capture.commit(self.conn, msgspec.msgpack.encode(notes))
                    return self.capture.published, group[ran:]
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
        return self.capture.published, group[ran:]

    def _run_group(self, group: list[_Request]) -> int:
        """BEGIN and run the group's requests; how many ran (the transaction is left open).
        Runs the group again, without the statement, when one ended the transaction."""
        started = time.monotonic()
        while True:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for i, req in enumerate(group):
                    if i and time.monotonic() - started > self.config.group_seconds:
                        return i
                    req.reset()
                    if req.refused is not None:
                        req.error = req.refused
                        continue
                    self._deadline = time.monotonic() + self.config.statement_timeout
                    try:
                        if req.procedure is not None:
                            self._run_procedure(req, req.procedure)
                        elif req.once is not None:
                            self._run_once(req, req.once)
                        else:
                            req.results = self._run_sql(req)
                    finally:
                        self._deadline = math.inf
                return len(group)
            except _Lost as lost:
                self._blame(lost)
                self.replays += 1
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

    def _blame(self, lost: _Lost) -> None:
        """Make the request whose statement ended the transaction answer with that statement's
        error from now on; raise when the group itself must fail."""
        req = lost.req
        assert req is not None, "the writer raises _Lost with its request"
        if lost.error is None:
            # It succeeded yet the transaction is gone: it committed or rolled back the group
            # (the sandbox refuses every statement known to). What was applied is unknown.
            raise IndeterminateWriteError(
                "a statement ended the group transaction", db=self.name,
                sql=req.statements[lost.index].sql[:200] if lost.index >= 0 else "procedure",
            )  # fmt: skip
        if (lost.code or "").startswith(_DATABASE_FAILURES) or _disk_full_text(lost.error):
            full = _disk_full_text(lost.error) or (lost.code or "").startswith("SQLITE_FULL")
            if full:
                self.disk_full = True
            raise WriteError(
                f"the write failed and was not acknowledged: {lost.error}", db=self.name,
                disk_full=full, hint="free disk space on the primary" if full else "retry",
            )  # fmt: skip
        req.losses += 1
        log.warning("writer.replay db=%s error=%r", self.name, lost.error)
        if lost.index < 0:
            req.refused = lost.exc or WriteError(lost.error, db=self.name)
        elif req.losses >= MAX_LOSSES:
            message = (f"not run: statements of this request rolled back the node's "
                       f"transaction {req.losses} times ({lost.error})")  # fmt: skip
            req.poisoned = dict.fromkeys(range(len(req.statements)), message)
        else:
            req.poisoned[lost.index] = self._explain(lost)

    def _explain(self, lost: _Lost) -> str:
        if lost.code == "SQLITE_INTERRUPT":
            return self._timeout_message()
        return (f"{lost.error} (the statement rolled back the node's whole transaction; it was "
                "not applied, the other requests were)")  # fmt: skip

    def _timeout_message(self) -> str:
        return f"statement timeout ({self.config.statement_timeout:g} s)"

    def _run_procedure(self, req: _Request, procedure: Procedure) -> None:
        self.conn.execute("SAVEPOINT proc")
        try:
            req.value, req.annotation = procedure(self.conn)
        except Exception as exc:
            if _disk_full(exc):
                raise  # the whole group fails, and the node steps down (see _run)
            if not self.conn.in_transaction:
                raise _Lost(str(exc), req, -1, getattr(exc, "sqlite_errorname", None), exc) from exc
            self.conn.execute("ROLLBACK TO proc")
            req.error = exc
        if not self.conn.in_transaction:
            raise _Lost(None, req, -1)
        self.conn.execute("RELEASE proc")

    def _run_once(self, req: _Request, once: Once) -> None:
        """A queued entry: skipped when already applied, else its statements and its record in
        one savepoint. A failure of the record (not of a statement) fails this request alone,
        rolled back; the database's own failures fail the group as usual."""
        self._savepoint("SAVEPOINT once")
        try:
            if once.seen(self.conn):
                req.value = DUPLICATE
            else:
                req.results = self._run_sql(req)
                once.record(self.conn)
        except (_Lost, WriteError):
            raise
        except Exception as exc:
            if _disk_full(exc) or not self.conn.in_transaction:
                raise
            self.conn.execute("ROLLBACK TO once")
            req.results = []
            req.error = QueueBookkeepingError(
                f"the queued write's exactly-once record failed: {exc}", db=self.name
            )
        self._savepoint("RELEASE once")

    def _run_sql(self, req: _Request) -> list[Result]:
        """rqlite's semantics: with ``transaction`` the first failing statement ends the
        request and rolls all of it back; without, each statement is applied or rolled back
        alone, and a failure ends only the rest of its own string."""
        out: list[Result] = []
        if req.transaction:
            self._savepoint("SAVEPOINT req")
            for i in range(len(req.statements)):
                res = self._statement(req, i)
                out.append(res)
                if res.error is not None:
                    self._savepoint("ROLLBACK TO req")
                    break
            self._savepoint("RELEASE req")
            return out
        string_failed = False
        for i, stmt in enumerate(req.statements):
            if stmt.continues and string_failed:
                continue
            self._savepoint("SAVEPOINT stmt")
            res = self._statement(req, i)
            string_failed = res.error is not None
            if string_failed:
                self._savepoint("ROLLBACK TO stmt")
            self._savepoint("RELEASE stmt")
            out.append(res)
        return out

    def _statement(self, req: _Request, index: int) -> Result:
        poisoned = req.poisoned.get(index)
        if poisoned is not None:
            return Result(error=poisoned)
        res = run_statement(self.conn, req.statements[index], self.sandbox, self.config.limits,
                            types_from=self._path)  # fmt: skip
        if not self.conn.in_transaction:
            raise _Lost(res.error, req, index, res.code)
        if res.code == "SQLITE_INTERRUPT":
            res.error = self._timeout_message()
        return res

    def _savepoint(self, sql: str) -> None:
        try:
            self.conn.execute(sql)
        except Exception as exc:
            raise WriteError(f"savepoint failed: {exc}", db=self.name) from exc


def _disk_full_text(text: str) -> bool:
    return "disk is full" in text or "No space left" in text


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
