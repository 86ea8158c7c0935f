"""The drain of the node's write queue (:mod:`litecluster.server.queue`): a background task
that applies the queued entries, in batches, exactly once, and heals by itself.

On the primary it submits a batch to the writer (group commit) with each entry's
:class:`~litecluster.replication.primary.applied.Once`; on a replica it sends the batch to the
primary's ``POST /db/queue/apply`` (:func:`apply_entries` there). Either way an entry leaves the
queue only once its fate is known:

- applied (or found applied already: a duplicate): on the primary as soon as the writer
  answered (durable in its txlog); on a replica once this node's own copy holds the position
  the primary named, so that a failover to a primary without the write (the old primary's
  unreplicated tail, asynchronous mode) sends it again and the new history holds it once;
- failed as SQL (errors are per statement, with ``transaction`` all or nothing, as rqlite):
  applied as such, recorded, and removed; never retried;
- anything else (no primary, a lost connection, an indeterminate outcome, disk full): kept and
  sent again after a backoff (bounded), which the exactly-once records make safe.

Counters (``/status`` ``queue``): entries queued, applied, duplicates, failed, attempts that
will be retried, and the oldest entry's age.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from litecluster.engine.position import Position
from litecluster.errors import LiteclusterError, RequestError
from litecluster.replication.history import Reach
from litecluster.replication.primary.applied import DUPLICATE, Once
from litecluster.replication.primary.sqlexec import (
    Statement,
    expand_statements,
    needs_expanding,
    parse_statements,
)
from litecluster.replication.primary.writer import WriteOutcome
from litecluster.server.config import NodeConfig
from litecluster.server.forward import Forwarder, refusal, transport_failure
from litecluster.server.ports import Local, WritingPrimary
from litecluster.server.queue import Entry, WriteQueue

log = logging.getLogger("litecluster.queue")

APPLY_PATH = "/db/queue/apply"
APPLIED, DUPLICATED, FAILED, RETRY = "applied", "duplicate", "failed", "retry"


@dataclass
class Outcome:
    """What became of one entry on the primary."""

    seq: int
    state: str
    error: str = ""
    position: Position | None = None
    denied: bool = False
    """Failed because its user may not write on the primary."""

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seq": self.seq, "state": self.state}
        if self.error:
            out["error"] = self.error
        if self.denied:
            out["denied"] = True
        if self.position is not None:
            out["position"] = {"epoch": self.position.epoch, "txid": self.position.txid}
        return out

    @classmethod
    def from_json(cls, raw: Any) -> Outcome:
        pos = raw.get("position")
        position = Position(int(pos["epoch"]), int(pos["txid"])) if pos else None
        return cls(int(raw["seq"]), str(raw["state"]), str(raw.get("error", "")), position,
                   raw.get("denied") is True)  # fmt: skip


def _parse(entries: list[dict[str, Any]], max_statements: int) -> list[list[Statement] | str]:
    """Each entry's statements, expanded as the writer runs them, or why they cannot run."""
    out: list[list[Statement] | str] = []
    for entry in entries:
        try:
            stmts = parse_statements(entry["statements"], max_statements=max_statements)
            if needs_expanding(stmts):
                stmts = expand_statements(stmts, max_statements=max_statements)
            out.append(stmts)
        except RequestError as exc:
            out.append(exc.message)
    return out


async def apply_entries(
    primary: WritingPrimary, origin: str, done_below: int, entries: list[dict[str, Any]],
    *, max_statements: int,
) -> list[Outcome]:  # fmt: skip
    """Apply queued ``entries`` (``seq``, ``db``, ``statements``, ``transaction``) of the queue
    ``origin`` on this primary, each at most once; their outcomes, in order. Submitted together
    so that they share group commits."""
    parsed = await asyncio.to_thread(_parse, entries, max_statements)
    calls: list[asyncio.Future[WriteOutcome] | str] = []
    for entry, stmts in zip(entries, parsed, strict=True):
        if isinstance(stmts, str):
            calls.append(stmts)
            continue
        once = Once(origin, int(entry["seq"]), done_below)
        calls.append(asyncio.ensure_future(primary.write(
            str(entry["db"]), stmts, transaction=bool(entry["transaction"]), once=once)))  # fmt: skip
    out: list[Outcome] = []
    for entry, call in zip(entries, calls, strict=True):
        seq = int(entry["seq"])
        if isinstance(call, str):
            out.append(Outcome(seq, FAILED, call))
            continue
        try:
            got = await call
        except LiteclusterError as exc:
            again = exc.retryable or exc.indeterminate
            out.append(Outcome(seq, RETRY if again else FAILED, exc.message))
            continue
        except Exception as exc:  # a bug: keep the entry, the log says why
            log.exception("queue.apply_error seq=%d", seq)
            out.append(Outcome(seq, RETRY, f"{type(exc).__name__}: {exc}"))
            continue
        errors = [r.error for r in got.results if r.error]
        state = DUPLICATED if got.value == DUPLICATE else APPLIED
        out.append(Outcome(seq, state, "; ".join(errors)[:500], got.position))
    return out


@dataclass
class DrainStats:
    applied: int = 0
    duplicates: int = 0
    failed: int = 0
    retries: int = 0
    last_error: str = ""
    recent: OrderedDict[int, Outcome] = field(default_factory=OrderedDict)


class Drain:
    """Applies ``queue``'s entries from this node (see the module docstring)."""

    def __init__(
        self, queue: WriteQueue, local: Local, forwarder: Forwarder, *, max_statements: int,
        batch: int = 256, batch_bytes: int = 4 << 20, backoff_max: float = 5.0,
    ) -> None:  # fmt: skip
        self.queue = queue
        self.local = local
        self.forwarder = forwarder
        self.max_statements = max_statements
        self.batch = batch
        self.batch_bytes = batch_bytes
        self.backoff_max = backoff_max
        self.stats = DrainStats()
        self._kick = asyncio.Event()
        self._waiters: dict[int, list[asyncio.Future[Outcome]]] = {}

    def kick(self) -> None:
        """A new entry is queued: drain now rather than at the next idle poll."""
        self._kick.set()

    async def wait(self, seq: int, timeout: float) -> Outcome | None:
        """The outcome of entry ``seq`` once it left the queue; None after ``timeout``."""
        done = self.stats.recent.get(seq)
        if done is not None:
            return done
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(seq, []).append(fut)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return None
        finally:
            waiting = self._waiters.get(seq, [])
            if fut in waiting:
                waiting.remove(fut)
            if not waiting:
                self._waiters.pop(seq, None)

    async def run(self) -> None:
        """Forever: drain while there is progress; back off (up to ``backoff_max``) while
        entries cannot be applied; wait for a kick (or a second) while the queue is empty."""
        delay = 0.0
        while True:
            if delay:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), 1.0)
            self._kick.clear()
            try:
                more, progress = await self.drain_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the drain heals by itself: logged, retried
                self.stats.last_error = str(exc)
                self.stats.retries += 1
                log.warning("queue.drain_failed error=%r retry_in=%.2f", str(exc)[:300],
                            min(max(delay * 2, 0.05), self.backoff_max))  # fmt: skip
                more, progress = True, False
            if not more:
                delay = 0.0
            elif progress:
                delay = 0.0
                self._kick.set()  # more to drain: go on at once
            else:
                delay = min(max(delay * 2, 0.05), self.backoff_max)

    async def drain_once(self) -> tuple[bool, bool]:
        """One batch: (entries were pending, some left the queue)."""
        if self.queue.count == 0:
            return False, False  # nothing queued: no read of the file at each idle poll
        entries = await asyncio.to_thread(self.queue.pending, limit=self.batch,
                                          max_bytes=self.batch_bytes)  # fmt: skip
        if not entries:
            return False, False
        low = entries[0].seq  # pending is in seq order: nothing below it is queued any more
        primary = self.local.primary
        raw = [e.as_json() for e in entries]
        if primary is not None:
            outcomes = await apply_entries(primary, self.queue.origin, low, raw,
                                           max_statements=self.max_statements)  # fmt: skip
            settled = {o.seq for o in outcomes if o.state != RETRY}
        else:
            outcomes = await self._forward(raw, low)
            settled = await self._settled(entries, outcomes)
        done = [e for e in entries if e.seq in settled]
        await asyncio.to_thread(self.queue.remove, done)
        by_seq = {o.seq: o for o in outcomes}
        for entry in entries:
            self._count(by_seq[entry.seq], entry.seq in settled)
        return True, bool(done)

    async def _forward(self, raw: list[dict[str, Any]], low: int) -> list[Outcome]:
        body = {"origin": self.queue.origin, "done_below": low, "entries": raw}
        got = await self.forwarder.post(APPLY_PATH, write=True, json=body)
        if got.status != 200:
            raise refusal(got.status, got.body)
        try:
            data = json.loads(got.body)
            outcomes = [Outcome.from_json(o) for o in data["outcomes"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise transport_failure(exc, write=True, primary=got.primary) from None
        if sorted(o.seq for o in outcomes) != sorted(e["seq"] for e in raw):
            raise transport_failure(ValueError("outcomes do not match the entries sent"),
                                    write=True, primary=got.primary)  # fmt: skip
        return outcomes

    async def _settled(self, entries: list[Entry], outcomes: list[Outcome]) -> set[int]:
        """The entries (by seq) whose fate is known on this replica: failed ones, and applied
        ones once this node's copy holds the primary's position of their database."""
        by_seq = {o.seq: o for o in outcomes}
        newest: dict[str, Position] = {}
        for entry in entries:
            pos = by_seq[entry.seq].position
            if by_seq[entry.seq].state in (APPLIED, DUPLICATED) and pos is not None:
                newest[entry.db] = max(newest.get(entry.db, pos), pos)
        reached = {db for db, pos in newest.items()
                   if await self.local.wait_applied(db, pos) is Reach.REACHED}  # fmt: skip
        settled = set()
        for entry in entries:
            o = by_seq[entry.seq]
            if o.state == FAILED or (o.state in (APPLIED, DUPLICATED) and entry.db in reached):
                settled.add(entry.seq)
        return settled

    def _count(self, outcome: Outcome, settled: bool) -> None:
        s = self.stats
        if not settled:
            s.retries += 1
            if outcome.error:
                s.last_error = outcome.error
            return
        if outcome.state == FAILED:
            s.failed += 1
            log.warning("queue.entry_failed seq=%d error=%r", outcome.seq, outcome.error[:300])
        elif outcome.state == DUPLICATED:
            s.duplicates += 1
        else:
            s.applied += 1
        s.recent[outcome.seq] = outcome
        while len(s.recent) > 10_000:
            s.recent.popitem(last=False)
        for fut in self._waiters.pop(outcome.seq, []):
            if not fut.done():
                fut.set_result(outcome)

    def close(self) -> None:
        self.queue.close()

    def status(self) -> dict[str, Any]:
        s = self.stats
        return {
            "origin": self.queue.origin, "queued": self.queue.count, "bytes": self.queue.bytes,
            "oldest_age": round(self.queue.oldest_age(), 3), "applied": s.applied,
            "duplicates": s.duplicates, "failed": s.failed, "retries": s.retries,
            "last_error": s.last_error[:300],
        }  # fmt: skip


def open_drain(config: NodeConfig, node_id: str, local: Local, forwarder: Forwarder) -> Drain:
    """The node's queue (``DIR/queue.db``) and its drain."""
    queue = WriteQueue(config.data_dir / "queue.db", node_id,
                       max_entries=config.queue_max_entries, max_bytes=config.queue_max_bytes)  # fmt: skip
    return Drain(queue, local, forwarder, max_statements=config.max_statements,
                 batch_bytes=config.max_request_bytes)  # fmt: skip
